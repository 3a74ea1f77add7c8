//! Plans in SQLite, committing and revealing a batch's draw, and progress against the plan.

use std::collections::HashSet;

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::{Plan, PlanError};
use crate::draw::store::{self as draw_store, Commitment, DrawStoreError};
use crate::draw::{DrawError, DrawInput, DrawRecord};
use crate::registry::model::Entity;
use crate::registry::store::{self as registry_store, RegistryStoreError};
use crate::registry::CreditCode;

/// Why a plan operation failed. Every failure leaves the store unchanged.
#[derive(Debug, thiserror::Error)]
pub enum PlanStoreError {
    /// SQLite failed.
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
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
pub fn save(conn: &Connection, plan: &Plan) -> Result<(), PlanStoreError> {
    plan.validate()?;
    conn.execute(
        "INSERT OR REPLACE INTO plans (id, body) VALUES (?1, ?2)",
        params![
            plan.id.as_str(),
            serde_json::to_string(plan).expect("plans serialise")
        ],
    )?;
    Ok(())
}

/// Every plan, by id.
pub fn plans(conn: &Connection) -> Result<Vec<Plan>, PlanStoreError> {
    let mut stmt = conn.prepare("SELECT id, body FROM plans ORDER BY id")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (id, body) = row?;
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
pub fn plan(conn: &Connection, id: &str) -> Result<Plan, PlanStoreError> {
    let body: Option<String> = conn
        .query_row("SELECT body FROM plans WHERE id = ?1", [id], |r| r.get(0))
        .optional()?;
    let body = body.ok_or_else(|| PlanStoreError::NotFound(format!("no plan {id:?}")))?;
    serde_json::from_str(&body).map_err(|e| PlanStoreError::Corrupt {
        id: id.to_owned(),
        reason: e.to_string(),
    })
}

/// Entities drawn in revealed draws of `plan`.
fn already_drawn(conn: &Connection, plan: &str) -> Result<HashSet<CreditCode>, PlanStoreError> {
    let mut stmt = conn.prepare(
        "SELECT DISTINCT t.entity FROM tasks t JOIN draws d ON d.id = t.draw WHERE d.plan = ?1",
    )?;
    let rows = stmt.query_map([plan], |r| r.get::<_, String>(0))?;
    let mut out = HashSet::new();
    for code in rows {
        let code = code?;
        out.insert(
            CreditCode::parse(&code).map_err(|e| PlanStoreError::Corrupt {
                id: plan.to_owned(),
                reason: e.to_string(),
            })?,
        );
    }
    Ok(out)
}

fn batch_input(conn: &Connection, plan: &Plan, label: &str) -> Result<DrawInput, PlanStoreError> {
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
    let entities = registry_store::entities(conn)?;
    let inspectors = registry_store::inspectors(conn)?;
    let drawn = already_drawn(conn, plan.id.as_str())?;
    Ok(plan.draw_input(batch, &entities, &inspectors, &drawn)?)
}

/// Commits the draw of batch `label` of plan `plan_id`: stores a fresh secret seed and returns
/// the commitment to publish. Checks the draw is possible first (impossibility does not depend
/// on the seed), so an impossible draw fails here with its reason and stores nothing.
pub fn commit_batch(
    conn: &Connection,
    plan_id: &str,
    label: &str,
    now_ms: i64,
) -> Result<Commitment, PlanStoreError> {
    let plan = plan(conn, plan_id)?;
    let input = batch_input(conn, &plan, label)?;
    let end = plan.batch(label).map(|b| b.end.as_str());
    Ok(draw_store::commit(
        conn,
        Some(plan_id),
        &input,
        end,
        now_ms,
    )?)
}

/// Reveals the committed draw of batch `label` of plan `plan_id`, creating the tasks of the
/// department and of every partner department.
pub fn reveal_batch(
    conn: &mut Connection,
    plan_id: &str,
    label: &str,
    now_ms: i64,
) -> Result<DrawRecord, PlanStoreError> {
    let plan = plan(conn, plan_id)?;
    let input = batch_input(conn, &plan, label)?;
    let batch = plan.batch(label).expect("batch_input checked it");
    let mut tasks_for = vec![(plan.department.as_str(), plan.item.as_str())];
    tasks_for.extend(
        plan.partners
            .iter()
            .map(|p| (p.department.as_str(), p.item.as_str())),
    );
    let id = input.parameters.draw_id.to_string();
    Ok(draw_store::reveal(
        conn,
        &id,
        &input,
        &tasks_for,
        (batch.start.as_str(), batch.end.as_str()),
        now_ms,
    )?)
}

/// A plan's progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// The plan.
    pub plan: String,
    /// Entities the plan's ratios give over today's library, per batch, times the batches.
    pub planned: u64,
    /// Entities drawn so far.
    pub drawn: u64,
    /// Tasks checked.
    pub checked: u64,
    /// Tasks published.
    pub published: u64,
    /// Batches revealed, of all.
    pub batches_drawn: u64,
    /// Batches in the plan.
    pub batches: u64,
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

/// Progress of `plan` against its ratios.
pub fn progress(conn: &Connection, plan: &Plan) -> Result<Progress, PlanStoreError> {
    let entities = registry_store::entities(conn)?;
    let count = |sql: &str| -> Result<u64, rusqlite::Error> {
        conn.query_row(
            sql,
            params![plan.id.as_str(), plan.department.as_str()],
            |r| r.get(0),
        )
    };
    Ok(Progress {
        plan: plan.id.to_string(),
        planned: planned_entities(plan, &entities),
        drawn: count(
            "SELECT COUNT(*) FROM tasks t JOIN draws d ON d.id = t.draw
             WHERE d.plan = ?1 AND t.department = ?2",
        )?,
        checked: count(
            "SELECT COUNT(*) FROM tasks t JOIN draws d ON d.id = t.draw
             WHERE d.plan = ?1 AND t.department = ?2 AND t.status IN ('checked', 'resolved', 'published')",
        )?,
        published: count(
            "SELECT COUNT(*) FROM tasks t JOIN draws d ON d.id = t.draw
             WHERE d.plan = ?1 AND t.department = ?2 AND t.status = 'published'",
        )?,
        batches_drawn: count(
            "SELECT COUNT(*) FROM draws WHERE plan = ?1 AND record IS NOT NULL AND ?2 = ?2",
        )?,
        batches: plan.batches.len() as u64,
    })
}
