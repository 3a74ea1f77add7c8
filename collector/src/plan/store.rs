//! Plans in the store (SQLite or PostgreSQL), committing and revealing a batch's draw, and progress against the plan.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use spotcheck_protocol::UnixMillis;

use super::{Plan, PlanError};
use crate::draw::store::{self as draw_store, Commitment, DrawStoreError};
use crate::draw::{Candidate, DrawError, DrawInput, DrawRecord};
use crate::registry::model::{DrawId, Entity, RiskClass};
use crate::registry::store::{self as registry_store, RegistryStoreError};
use crate::registry::CreditCode;
use crate::store::db::{args, Conn, DbError, Sql, Tx};
use crate::tasks::store::{self as tasks, NewDrawnAll, PlanTask};
use crate::tasks::{Kind, TaskError, TaskStatus};

/// Why a plan operation failed. Every failure leaves the store unchanged.
#[derive(Debug, thiserror::Error)]
pub enum PlanStoreError {
    /// The store failed.
    #[error("database: {0}")]
    Db(#[from] DbError),
    /// Reading the libraries failed.
    #[error(transparent)]
    Registry(#[from] RegistryStoreError),
    /// The plan is invalid.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The draw input cannot be built or the draw is impossible.
    #[error(transparent)]
    Draw(#[from] DrawError),
    /// Storing the draw failed.
    #[error(transparent)]
    DrawStore(#[from] DrawStoreError),
    /// Reading or creating tasks failed.
    #[error(transparent)]
    Task(#[from] TaskError),
    /// No such plan or batch.
    #[error("{0}")]
    NotFound(String),
    /// A stored plan does not parse.
    #[error("stored plan {id:?} is corrupt: {reason}")]
    Corrupt {
        /// The plan.
        id: String,
        /// Why.
        reason: String,
    },
}

/// Stores (or replaces) a plan after validating it.
pub fn save(conn: &(impl Sql + ?Sized), plan: &Plan) -> Result<(), PlanStoreError> {
    plan.validate()?;
    conn.execute(
        "INSERT INTO plans (id, body) VALUES ($1, $2)
         ON CONFLICT (id) DO UPDATE SET body = excluded.body",
        args![
            plan.id.as_str(),
            serde_json::to_string(plan).expect("plans serialise")
        ],
    )?;
    Ok(())
}

/// Every plan, by id.
pub fn plans(conn: &(impl Sql + ?Sized)) -> Result<Vec<Plan>, PlanStoreError> {
    let mut rows: Vec<(String, String)> =
        conn.query("SELECT id, body FROM plans", args![], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    // By id in code-point order, in Rust: the same on both engines whatever the collation.
    rows.sort();
    let mut out = Vec::new();
    for (id, body) in rows {
        out.push(
            serde_json::from_str(&body).map_err(|e| PlanStoreError::Corrupt {
                id,
                reason: e.to_string(),
            })?,
        );
    }
    Ok(out)
}

/// The plan `id`.
pub fn plan(conn: &(impl Sql + ?Sized), id: &str) -> Result<Plan, PlanStoreError> {
    let body: Option<String> =
        conn.query_opt("SELECT body FROM plans WHERE id = $1", args![id], |r| {
            r.get(0)
        })?;
    let body = body.ok_or_else(|| PlanStoreError::NotFound(format!("no plan {id:?}")))?;
    serde_json::from_str(&body).map_err(|e| PlanStoreError::Corrupt {
        id: id.to_owned(),
        reason: e.to_string(),
    })
}

/// Entities drawn in revealed draws of `plan`.
fn already_drawn(
    conn: &(impl Sql + ?Sized),
    plan: &str,
) -> Result<HashSet<CreditCode>, PlanStoreError> {
    tasks::drawn_for_plan(conn, plan)?
        .into_iter()
        .map(|code| {
            CreditCode::parse(&code).map_err(|e| PlanStoreError::Corrupt {
                id: plan.to_owned(),
                reason: e.to_string(),
            })
        })
        .collect()
}

/// The plan's candidates ([`Plan::is_candidate`]): the code and class of each entity of its
/// field (and district), the two columns a draw needs, read in one query and checked as the
/// library reader checks them. The order is the draw's to make ([`DrawInput::new`] sorts).
fn plan_candidates(
    conn: &(impl Sql + ?Sized),
    plan: &Plan,
) -> Result<Vec<Candidate>, PlanStoreError> {
    let row = |r: &crate::store::db::Row<'_>| Ok((r.get::<String>(0)?, r.get::<String>(1)?));
    let rows = match &plan.district {
        None => conn.query(
            "SELECT code, risk FROM registry_entities WHERE domain = $1",
            args![plan.domain.as_str()],
            row,
        )?,
        Some(district) => conn.query(
            "SELECT code, risk FROM registry_entities WHERE domain = $1 AND district = $2",
            args![plan.domain.as_str(), district],
            row,
        )?,
    };
    rows.into_iter()
        .map(|(code, risk)| {
            let corrupt = |reason: String| RegistryStoreError::Corrupt {
                table: "registry_entities",
                key: code.clone(),
                reason,
            };
            Ok(Candidate {
                code: CreditCode::parse(&code).map_err(|e| corrupt(e.to_string()))?,
                class: RiskClass::new(risk).map_err(|e| corrupt(e.to_string()))?,
            })
        })
        .collect()
}

fn batch_input(
    conn: &(impl Sql + ?Sized),
    plan: &Plan,
    label: &str,
) -> Result<BatchInputs, PlanStoreError> {
    let batch = plan.batch(label).ok_or_else(|| {
        PlanStoreError::NotFound(format!("plan {} has no batch {label:?}", plan.id))
    })?;
    let items = registry_store::items(conn)?;
    for (department, item) in std::iter::once((&plan.department, &plan.item))
        .chain(plan.partners.iter().map(|p| (&p.department, &p.item)))
    {
        match items.iter().find(|i| &i.id == item) {
            None => {
                return Err(PlanStoreError::NotFound(format!(
                    "item {item} of plan {} is not in the item list: import it first",
                    plan.id
                )))
            }
            Some(i) if &i.department != department => {
                return Err(PlanStoreError::Plan(PlanError {
                    plan: plan.id.to_string(),
                    problems: vec![format!(
                        "item {item} belongs to department {}, not {department}",
                        i.department
                    )],
                }))
            }
            Some(_) => {}
        }
    }
    let candidates = plan_candidates(conn, plan)?;
    let inspectors = registry_store::inspectors(conn)?;
    let drawn = already_drawn(conn, plan.id.as_str())?;
    let input = plan.draw_input_over(batch, candidates, &inspectors, &drawn)?;
    let partners = plan
        .partners
        .iter()
        .map(|p| plan.partner_input(p, batch, &input.candidates, &inspectors))
        .collect::<Result<_, _>>()?;
    Ok(BatchInputs {
        input,
        partners,
        inspectors,
    })
}

/// A batch's draw input and its partners' inputs over the same candidates.
struct BatchInputs {
    input: DrawInput,
    partners: Vec<DrawInput>,
    inspectors: Vec<crate::registry::model::Inspector>,
}

/// Commits the draw of batch `label` of plan `plan_id`: stores a fresh secret seed and returns
/// the commitment to publish. Checks the draw is possible first (impossibility does not depend
/// on the seed), so an impossible draw fails here with its reason and stores nothing.
pub fn commit_batch(
    conn: &Conn,
    plan_id: &str,
    label: &str,
    now_ms: i64,
) -> Result<Commitment, PlanStoreError> {
    let plan = plan(conn, plan_id)?;
    let inputs = batch_input(conn, &plan, label)?;
    let end = plan.batch(label).map(|b| b.end.as_str());
    Ok(draw_store::commit_joint(
        conn,
        Some(plan_id),
        &inputs.input,
        &inputs.partners,
        end,
        now_ms,
    )?)
}

/// Reveals the committed draw of batch `label` of plan `plan_id` in one transaction: the
/// department's draw gives the entities and its inspectors; each partner department of a
/// joint plan then draws its own inspectors for the same entities from its own pool (a draw
/// of its own, `{plan}-{batch}-{department}`, seeded from the joint draw's seed,
/// [`draw_store::partner_seed`]); one task per department and entity, each with its own
/// department's inspectors. Returns the department's record.
pub fn reveal_batch(
    conn: &Conn,
    plan_id: &str,
    label: &str,
    now_ms: i64,
) -> Result<DrawRecord, PlanStoreError> {
    // The inputs are read before the write transaction, so that reading a large library does
    // not hold the store's write lock (on SQLite, ingest's too). A library changed meanwhile
    // cannot slip in: the reveal checks the inputs against the committed digests, and a batch
    // another collector revealed meanwhile is refused as revealed.
    let plan = plan(conn, plan_id)?;
    let inputs = batch_input(conn, &plan, label)?;
    let batch = plan.batch(label).expect("batch_input checked it");
    let window = (batch.start.as_str(), batch.end.as_str());
    let now = UnixMillis(now_ms);
    let id = inputs.input.parameters.draw_id.clone();
    let kind_of = |draw: &DrawId| -> Kind {
        if plan.partners.is_empty() {
            Kind::Random {
                draw: draw.clone(),
                batch: Some(batch.label.clone()),
            }
        } else {
            Kind::Joint {
                draw: draw.clone(),
                batch: Some(batch.label.clone()),
                plan: plan.id.clone(),
                departments: std::iter::once(plan.department.clone())
                    .chain(plan.partners.iter().map(|p| p.department.clone()))
                    .collect(),
            }
        }
    };
    // The tasks of one department's draw, the initiator's or a partner's.
    let create_tasks = |tx: &Tx<'_>, drawn: &DrawRecord, department, item| {
        tasks::create_drawn_all(
            tx,
            &NewDrawnAll {
                kind: &kind_of(&drawn.parameters.draw_id),
                department,
                item,
                window,
                teams: drawn
                    .draws
                    .iter()
                    .map(|a| (&a.entity, &a.inspectors[..]))
                    .collect(),
            },
            now,
        )
    };
    let tx = conn.transaction()?;
    let (record, committed) = draw_store::reveal_in(&tx, id.as_str(), &inputs.input, now_ms)?;
    create_tasks(&tx, &record, &plan.department, &plan.item)?;
    // A set, not a scan of the draws per candidate: a million candidates times 300,000
    // drawn entities was minutes of the reveal (BENCHMARKS.md, issue 17).
    let drawn_codes: HashSet<&CreditCode> = record.draws.iter().map(|a| &a.entity).collect();
    let drawn: Vec<Candidate> = inputs
        .input
        .candidates
        .iter()
        .filter(|c| drawn_codes.contains(&c.code))
        .cloned()
        .collect();
    for (partner, over_candidates) in plan.partners.iter().zip(&inputs.partners) {
        draw_store::check_partner(id.as_str(), &committed, over_candidates, &record.salt_key)?;
        let input = plan.partner_input(partner, batch, &drawn, &inputs.inspectors)?;
        let seed = draw_store::partner_seed(&record.seed, &partner.department);
        let teams = draw_store::store_partner_draw(
            &tx,
            Some(plan_id),
            &input,
            seed,
            record.salt_key,
            Some(batch.end.as_str()),
            now_ms,
        )?;
        create_tasks(&tx, &teams, &partner.department, &partner.item)?;
    }
    tx.commit()?;
    Ok(record)
}

/// A plan's progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// The plan.
    pub plan: String,
    /// Entities the plan's ratios give over today's library for the year (the sum of the
    /// classes' annual targets).
    pub planned: u64,
    /// Entities drawn so far.
    pub drawn: u64,
    /// The department's tasks checked (or past it).
    pub checked: u64,
    /// The department's tasks published.
    pub published: u64,
    /// Batches revealed, of all.
    pub batches_drawn: u64,
    /// Batches in the plan.
    pub batches: u64,
    /// The same per risk class, in the plan's order.
    pub classes: Vec<ClassProgress>,
}

/// A plan's progress in one risk class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClassProgress {
    /// The class.
    pub class: RiskClass,
    /// Candidates of the class in today's library.
    pub population: u64,
    /// The annual target ([`super::ClassRatio::annual_target`]).
    pub planned: u64,
    /// Drawn so far.
    pub drawn: u64,
    /// The department's tasks of the class checked (or past it).
    pub checked: u64,
    /// The department's tasks of the class published.
    pub published: u64,
}

/// Entities `plan` draws over its year: the sum of its classes' annual targets over today's
/// `entities`.
pub fn planned_entities(plan: &Plan, entities: &[Entity]) -> u64 {
    plan.ratios
        .iter()
        .map(|r| {
            let n = entities
                .iter()
                .filter(|e| plan.is_candidate(e) && e.risk == r.class)
                .count() as u64;
            r.annual_target(n)
        })
        .sum()
}

/// Progress of `plan` against its ratios, in total and per class.
pub fn progress(conn: &(impl Sql + ?Sized), plan: &Plan) -> Result<Progress, PlanStoreError> {
    let entities = registry_store::entities(conn)?;
    let class_of: HashMap<&str, &RiskClass> = entities
        .iter()
        .map(|e| (e.code.as_str(), &e.risk))
        .collect();
    let own: Vec<PlanTask> = tasks::of_plan(conn, plan.id.as_str())?
        .into_iter()
        .filter(|t| t.department == plan.department.as_str())
        .collect();
    let is_checked = |t: &PlanTask| {
        matches!(
            t.status,
            TaskStatus::Checked | TaskStatus::Resolved | TaskStatus::Published
        )
    };
    let is_published = |t: &PlanTask| t.status == TaskStatus::Published;
    let classes: Vec<ClassProgress> = plan
        .ratios
        .iter()
        .map(|r| {
            let population = entities
                .iter()
                .filter(|e| plan.is_candidate(e) && e.risk == r.class)
                .count() as u64;
            let of_class: Vec<&PlanTask> = own
                .iter()
                .filter(|t| class_of.get(t.entity.as_str()) == Some(&&r.class))
                .collect();
            ClassProgress {
                class: r.class.clone(),
                population,
                planned: r.annual_target(population),
                drawn: of_class.len() as u64,
                checked: of_class.iter().filter(|t| is_checked(t)).count() as u64,
                published: of_class.iter().filter(|t| is_published(t)).count() as u64,
            }
        })
        .collect();
    Ok(Progress {
        plan: plan.id.to_string(),
        planned: classes.iter().map(|c| c.planned).sum(),
        drawn: own.len() as u64,
        checked: own.iter().filter(|t| is_checked(t)).count() as u64,
        published: own.iter().filter(|t| is_published(t)).count() as u64,
        batches_drawn: batches_drawn(conn, plan)?,
        batches: plan.batches.len() as u64,
        classes,
    })
}

fn batches_drawn(conn: &(impl Sql + ?Sized), plan: &Plan) -> Result<u64, PlanStoreError> {
    let mut n = 0;
    for b in &plan.batches {
        n += u64::from(draw_store::is_revealed(conn, plan.draw_id(b)?.as_str())?);
    }
    Ok(n)
}
