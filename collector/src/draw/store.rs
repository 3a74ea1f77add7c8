//! Draws in the store (SQLite or PostgreSQL): a commitment is stored (seed and salt key kept secret) and published first;
//! the reveal rebuilds the input, refuses it if any input — parameters, candidates and their
//! classes, pool or conflicts — no longer matches the committed digests, makes the draw and
//! stores the full record and its random tasks in one transaction.

use serde::Serialize;

pub use super::commitment::{Commitment, CommittedDigests};
use super::input::{strata_digest, DrawInput, SaltKey, Seed, Sha256};
use super::record::{DrawRecord, Replacement};
use super::DrawError;
use crate::audit::{self, EntryKind};
use crate::registry::model::{Department, InspectorId};
use crate::registry::CreditCode;
use crate::store::db::{args, Backend, Conn, DbError, Sql};
use crate::tasks::store as tasks;
use spotcheck_protocol::UnixMillis;

/// Why a stored draw operation failed. Every failure leaves the store unchanged.
#[derive(Debug, thiserror::Error)]
pub enum DrawStoreError {
    /// The store failed.
    #[error("database: {0}")]
    Db(#[from] DbError),
    /// The draw itself is impossible.
    #[error(transparent)]
    Draw(#[from] DrawError),
    /// The audit log refused an entry.
    #[error(transparent)]
    Audit(#[from] audit::AuditError),
    /// Assigning the drawn inspectors to the tasks failed.
    #[error("assigning inspectors: {0}")]
    Task(String),
    /// No draw with that id.
    #[error("no draw {0:?}: commit it first")]
    NotFound(String),
    /// The id is taken.
    #[error("draw {0:?} already exists: choose another draw id")]
    Exists(String),
    /// Revealed already.
    #[error("draw {0:?} is already revealed")]
    Revealed(String),
    /// Not revealed yet.
    #[error("draw {0:?} is not revealed yet")]
    NotRevealed(String),
    /// The libraries changed between commit and reveal.
    #[error("the {what} of draw {id:?} changed since the commitment was published (committed digest {committed}, now {now}): the draw cannot be revealed; undo the change or commit a new draw")]
    InputChanged {
        /// The draw.
        id: String,
        /// Which input.
        what: &'static str,
        /// Digest at commit.
        committed: Sha256,
        /// Digest now.
        now: Sha256,
    },
    /// A stored row does not parse (a bug or a hand-edited database).
    #[error("stored draw {id:?} is corrupt: {reason}")]
    Corrupt {
        /// The draw.
        id: String,
        /// Why.
        reason: String,
    },
}

/// A draw stored before schema v4 (no salt key): its commitment fixed neither the conflicts nor
/// the stratum lists, so it can be neither revealed, nor published under the disclosure policy,
/// nor read as a record of this version.
fn legacy(id: &str) -> DrawStoreError {
    DrawStoreError::Corrupt {
        id: id.to_owned(),
        reason: "it was committed by an earlier version, before conflicts and the stratum \
                 lists were committed (no salt key); this version cannot read or publish it: \
                 export the database for the record, then delete the draw's row or start \
                 from a new data directory"
            .to_owned(),
    }
}

fn corrupt(id: &str) -> impl Fn(String) -> DrawStoreError + '_ {
    move |reason| DrawStoreError::Corrupt {
        id: id.to_owned(),
        reason,
    }
}

/// The digests of `input` that a commitment fixes.
pub fn committed_digests(input: &DrawInput, key: &SaltKey) -> CommittedDigests {
    CommittedDigests {
        parameters: input.parameters_digest(),
        inspectors: input.inspectors_digest(),
        conflicts: input.conflicts_digest(key),
        strata: strata_digest(&input.stratum_lists(key)),
    }
}

/// Stores a commitment for `input` with a fresh secret seed and salt key. An impossible draw
/// is refused first, by the checks the draw makes before it uses the seed
/// ([`super::algorithm::check_possible`]: impossibility does not depend on the seed).
pub fn commit(
    conn: &Conn,
    plan: Option<&str>,
    input: &DrawInput,
    window_end: Option<&str>,
    now_ms: i64,
) -> Result<Commitment, DrawStoreError> {
    commit_joint(conn, plan, input, &[], window_end, now_ms)
}

/// The digests of a partner department's inspector pool and conflicts, fixed when a joint
/// draw is committed: the partner draws its own inspectors at the reveal, from this pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PartnerDigests {
    /// The partner department.
    pub department: Department,
    /// Its pool ([`DrawInput::inspectors_digest`]).
    pub inspectors: Sha256,
    /// Its conflicts with the candidates, keyed with the draw's salt key.
    pub conflicts: Sha256,
}

impl PartnerDigests {
    /// The digests of `input` (the partner's pool over the draw's candidates).
    pub fn of(input: &DrawInput, key: &SaltKey) -> PartnerDigests {
        PartnerDigests {
            department: input.parameters.department.clone(),
            inspectors: input.inspectors_digest(),
            conflicts: input.conflicts_digest(key),
        }
    }
}

/// [`commit`] for a joint draw: also fixes each partner's pool and conflicts (`partners`:
/// the partners' inputs over the same candidates).
pub fn commit_joint(
    conn: &Conn,
    plan: Option<&str>,
    input: &DrawInput,
    partners: &[DrawInput],
    window_end: Option<&str>,
    now_ms: i64,
) -> Result<Commitment, DrawStoreError> {
    super::algorithm::check_possible(input)?;
    for p in partners {
        let (pool, needed) = (p.inspectors.len(), p.parameters.inspectors_per_entity);
        if pool < needed as usize {
            return Err(DrawError::Input(format!(
                "partner department {} has {pool} active inspector(s) in the field, and each entity needs {needed} of its own: add inspectors to its library",
                p.parameters.department
            ))
            .into());
        }
    }
    let id = input.parameters.draw_id.as_str();
    let seed = Seed::generate();
    let key = SaltKey::generate();
    let c = Commitment {
        commitment: seed.commitment(),
        parameters: input.parameters.clone(),
        digests: committed_digests(input, &key),
        plan: plan.map(str::to_owned),
        committed_ms: now_ms,
        revealed_ms: None,
        window_end: window_end.map(str::to_owned),
    };
    let partner_digests: Vec<PartnerDigests> = partners
        .iter()
        .map(|p| PartnerDigests::of(p, &key))
        .collect();
    // The draw and its audit entry commit together.
    let tx = conn.transaction()?;
    let n = tx.execute(
        "INSERT INTO draws (id, plan, commitment, parameters, digests, committed_ms, seed,
                            salt_key, window_end, partners)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING",
        args![
            id,
            plan,
            c.commitment.to_string(),
            json(&c.parameters),
            json(&c.digests),
            now_ms,
            seed.to_string(),
            key.to_string(),
            window_end,
            (!partner_digests.is_empty()).then(|| json(&partner_digests))
        ],
    )?;
    if n == 0 {
        return Err(DrawStoreError::Exists(id.to_owned()));
    }
    audit::append(
        &tx,
        EntryKind::DrawCommitted,
        &format!("draw:{id}"),
        &serde_json::json!({"draw": id, "plan": plan, "commitment": c.commitment.to_string(),
            "parameters": c.digests.parameters.to_string(), "inspectors": c.digests.inspectors.to_string(),
            "conflicts": c.digests.conflicts.to_string(), "strata": c.digests.strata.to_string(),
            "partners": partner_digests}),
        UnixMillis(now_ms),
    )?;
    tx.commit()?;
    Ok(c)
}

/// Draw ids in code-point order on both engines (PostgreSQL's text order otherwise follows the
/// database's collation), for the ties of a list that stops at a limit.
fn id_order(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "id",
        Backend::Postgres => "id COLLATE \"C\"",
    }
}

/// Serialises a value of ours (cannot fail for these types).
fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("draw types serialise")
}

/// Every commitment, newest first.
pub fn commitments(
    conn: &(impl Sql + ?Sized),
    limit: u32,
) -> Result<Vec<Commitment>, DrawStoreError> {
    let rows = conn.query(
        &format!(
            "SELECT id, commitment, parameters, digests, plan, committed_ms, revealed_ms,
                    window_end, CASE WHEN salt_key IS NULL THEN 1 ELSE 0 END
             FROM draws ORDER BY committed_ms DESC, {} LIMIT $1",
            id_order(conn.backend())
        ),
        args![limit],
        |r| {
            Ok((
                r.get::<String>(0)?,
                r.get::<String>(1)?,
                r.get::<String>(2)?,
                r.get::<String>(3)?,
                r.get::<Option<String>>(4)?,
                r.get::<i64>(5)?,
                r.get::<Option<i64>>(6)?,
                r.get::<Option<String>>(7)?,
                r.get::<bool>(8)?,
            ))
        },
    )?;
    let mut out = Vec::new();
    for row in rows {
        let (id, commitment, parameters, digests, plan, committed_ms, revealed_ms, window_end, old) =
            row;
        if old {
            return Err(legacy(&id));
        }
        let bad = corrupt(&id);
        out.push(Commitment {
            commitment: serde_json::from_value(serde_json::Value::String(commitment))
                .map_err(|e| bad(e.to_string()))?,
            parameters: serde_json::from_str(&parameters).map_err(|e| bad(e.to_string()))?,
            digests: serde_json::from_str(&digests).map_err(|e| bad(e.to_string()))?,
            plan,
            committed_ms,
            revealed_ms,
            window_end,
        });
    }
    Ok(out)
}

/// Reveals draw `id` over `input` (rebuilt from the libraries now) inside the caller's
/// transaction: checks the input against the committed digests, makes the draw and stores the
/// record. The caller creates the tasks in the same transaction. Returns the record and the
/// partner digests committed with it (empty unless a joint draw).
pub fn reveal_in(
    tx: &(impl Sql + ?Sized),
    id: &str,
    input: &DrawInput,
    now_ms: i64,
) -> Result<(DrawRecord, Vec<PartnerDigests>), DrawStoreError> {
    /// seed, salt key, digests, record, partners.
    type Row = (
        String,
        Option<String>,
        String,
        Option<String>,
        Option<String>,
    );
    let row: Option<Row> = tx.query_opt(
        "SELECT seed, salt_key, digests, record, partners FROM draws WHERE id = $1",
        args![id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
    )?;
    let (seed, key, digests, record, partners) =
        row.ok_or_else(|| DrawStoreError::NotFound(id.to_owned()))?;
    if record.is_some() {
        return Err(DrawStoreError::Revealed(id.to_owned()));
    }
    let bad = corrupt(id);
    let hex = |s: String| serde_json::Value::String(s);
    let seed: Seed = serde_json::from_value(hex(seed)).map_err(|e| bad(e.to_string()))?;
    let key = key.ok_or_else(|| legacy(id))?;
    let key: SaltKey = serde_json::from_value(hex(key)).map_err(|e| bad(e.to_string()))?;
    let committed: CommittedDigests =
        serde_json::from_str(&digests).map_err(|e| bad(e.to_string()))?;
    let partners: Vec<PartnerDigests> = partners
        .map(|p| serde_json::from_str(&p))
        .transpose()
        .map_err(|e| bad(e.to_string()))?
        .unwrap_or_default();
    let now_digests = committed_digests(input, &key);
    let now = &now_digests;
    for (what, was, now) in [
        ("parameters", committed.parameters, now.parameters),
        (
            "candidate list (or a candidate's risk class)",
            committed.strata,
            now.strata,
        ),
        ("inspector pool", committed.inspectors, now.inspectors),
        ("conflicts (回避)", committed.conflicts, now.conflicts),
    ] {
        if was != now {
            return Err(DrawStoreError::InputChanged {
                id: id.to_owned(),
                what,
                committed: was,
                now,
            });
        }
    }
    // The digests just compared are the record's.
    let record = DrawRecord::make_with(seed, key, input, &now_digests)?;
    tx.execute(
        "UPDATE draws SET record = $2, revealed_ms = $3 WHERE id = $1",
        args![
            id,
            serde_json::to_string(&record).expect("records serialise"),
            now_ms
        ],
    )?;
    audit::append(
        tx,
        EntryKind::DrawRevealed,
        &format!("draw:{id}"),
        &serde_json::json!({"draw": id, "seed": record.seed.to_string(),
            "drawn": record.draws.iter().map(|a| a.entity.as_str()).collect::<Vec<_>>()}),
        UnixMillis(now_ms),
    )?;
    Ok((record, partners))
}

/// Checks a partner's pool and conflicts (`over_candidates`: its input over the joint draw's
/// candidates, rebuilt now) against the digests committed with draw `id`.
pub fn check_partner(
    id: &str,
    committed: &[PartnerDigests],
    over_candidates: &DrawInput,
    key: &SaltKey,
) -> Result<(), DrawStoreError> {
    let now = PartnerDigests::of(over_candidates, key);
    let Some(was) = committed.iter().find(|p| p.department == now.department) else {
        return Err(DrawStoreError::Corrupt {
            id: id.to_owned(),
            reason: format!(
                "the commitment fixed no pool for partner department {}; commit a new draw",
                now.department
            ),
        });
    };
    for (what, was, now) in [
        ("partner's inspector pool", was.inspectors, now.inspectors),
        ("partner's conflicts (回避)", was.conflicts, now.conflicts),
    ] {
        if was != now {
            return Err(DrawStoreError::InputChanged {
                id: id.to_owned(),
                what,
                committed: was,
                now,
            });
        }
    }
    Ok(())
}

/// The seed of a partner department's inspector draw in joint draw `seed`: SHA-256 over
/// `spotcheck-partner-v1`, a zero byte, the joint draw's seed and the department. Fixed by the
/// joint draw's commitment and unknown until its reveal, like the joint draw's own.
pub fn partner_seed(seed: &Seed, department: &Department) -> Seed {
    let mut bytes = b"spotcheck-partner-v1\0".to_vec();
    bytes.extend_from_slice(&seed.0);
    bytes.extend_from_slice(department.as_str().as_bytes());
    Seed(Sha256::of(&bytes).0)
}

/// Stores a partner department's inspector draw (its own draw id, seed from
/// [`partner_seed`]) as committed and revealed at once, inside the joint draw's reveal.
pub fn store_partner_draw(
    tx: &(impl Sql + ?Sized),
    plan: Option<&str>,
    input: &DrawInput,
    seed: Seed,
    key: SaltKey,
    window_end: Option<&str>,
    now_ms: i64,
) -> Result<DrawRecord, DrawStoreError> {
    let id = input.parameters.draw_id.as_str();
    let digests = committed_digests(input, &key);
    let record = DrawRecord::make_with(seed, key, input, &digests)?;
    let n = tx.execute(
        "INSERT INTO draws (id, plan, commitment, parameters, digests, committed_ms, seed,
                            salt_key, window_end, record, revealed_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $6) ON CONFLICT (id) DO NOTHING",
        args![
            id,
            plan,
            record.commitment.to_string(),
            json(&input.parameters),
            json(&digests),
            now_ms,
            seed.to_string(),
            key.to_string(),
            window_end,
            serde_json::to_string(&record).expect("records serialise"),
        ],
    )?;
    if n == 0 {
        return Err(DrawStoreError::Exists(id.to_owned()));
    }
    audit::append(
        tx,
        EntryKind::DrawRevealed,
        &format!("draw:{id}"),
        &serde_json::json!({"draw": id, "seed": record.seed.to_string(),
            "commitment": record.commitment.to_string(),
            "drawn": record.draws.iter().map(|a| a.entity.as_str()).collect::<Vec<_>>()}),
        UnixMillis(now_ms),
    )?;
    Ok(record)
}

/// Revealed full records, newest first, in the JSON form `draw verify` reads.
pub fn records(conn: &(impl Sql + ?Sized), limit: u32) -> Result<Vec<DrawRecord>, DrawStoreError> {
    Ok(revealed(conn, limit)?
        .into_iter()
        .map(|r| r.record)
        .collect())
}

/// A revealed draw with the last day of its batch's inspection window.
#[derive(Debug, Clone)]
pub struct Revealed {
    /// The full record.
    pub record: DrawRecord,
    /// The window's last day, `YYYY-MM-DD` (None: the draw belongs to no plan batch).
    pub window_end: Option<String>,
}

/// The query of revealed draws, newest first, `LIMIT $1`: the id, `columns`, and whether the
/// draw predates salted commitments (legacy, refused by its readers).
fn revealed_query(backend: Backend, columns: &str) -> String {
    format!(
        "SELECT id, {columns}, CASE WHEN salt_key IS NULL THEN 1 ELSE 0 END
         FROM draws WHERE record IS NOT NULL
         ORDER BY revealed_ms DESC NULLS LAST, {} LIMIT $1",
        id_order(backend)
    )
}

/// Revealed draws, newest first, as [`revealed`] lists them, with the last days of their
/// windows (None: the draw belongs to no plan batch), without reading the records.
pub fn revealed_windows(
    conn: &(impl Sql + ?Sized),
    limit: u32,
) -> Result<Vec<(String, Option<String>)>, DrawStoreError> {
    let rows = conn.query(
        &revealed_query(conn.backend(), "window_end"),
        args![limit],
        |r| {
            Ok((
                r.get::<String>(0)?,
                r.get::<Option<String>>(1)?,
                r.get::<bool>(2)?,
            ))
        },
    )?;
    rows.into_iter()
        .map(|(id, window_end, old)| {
            if old {
                Err(legacy(&id))
            } else {
                Ok((id, window_end))
            }
        })
        .collect()
}

/// A revealed draw's public form as stored, or its record to make it from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicForm {
    /// The public form's JSON text, made from the current record ([`store_public`]).
    Stored(String),
    /// No public form is stored: the record's JSON text, as stored.
    Record(String),
}

/// The public form of revealed draw `id` as stored, else its record.
pub fn public_form(conn: &(impl Sql + ?Sized), id: &str) -> Result<PublicForm, DrawStoreError> {
    let row: Option<(Option<String>, Option<String>)> = conn.query_opt(
        "SELECT public_record, CASE WHEN public_record IS NULL THEN record END
         FROM draws WHERE id = $1",
        args![id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    match row {
        None => Err(DrawStoreError::NotFound(id.to_owned())),
        Some((Some(public), _)) => Ok(PublicForm::Stored(public)),
        Some((None, Some(record))) => Ok(PublicForm::Record(record)),
        Some((None, None)) => Err(DrawStoreError::NotRevealed(id.to_owned())),
    }
}

/// Stores `public`, the JSON text of the public form of the record `record` (its JSON text as
/// [`public_form`] returned it), as draw `id`'s public form, unless the stored record is no
/// longer `record` (a recusal committed meanwhile): then nothing is stored and the next
/// request makes the form again. Returns whether it was stored.
pub fn store_public(
    conn: &(impl Sql + ?Sized),
    id: &str,
    record: &str,
    public: &str,
) -> Result<bool, DrawStoreError> {
    let n = conn.execute(
        "UPDATE draws SET public_record = $2 WHERE id = $1 AND record = $3",
        args![id, public, record],
    )?;
    Ok(n == 1)
}

/// Revealed draws, newest first, with their windows.
pub fn revealed(conn: &(impl Sql + ?Sized), limit: u32) -> Result<Vec<Revealed>, DrawStoreError> {
    let rows = conn.query(
        &revealed_query(conn.backend(), "record, window_end"),
        args![limit],
        |r| {
            Ok((
                r.get::<String>(0)?,
                r.get::<String>(1)?,
                r.get::<Option<String>>(2)?,
                r.get::<bool>(3)?,
            ))
        },
    )?;
    let mut out = Vec::new();
    for (id, json, window_end, old) in rows {
        if old {
            return Err(legacy(&id));
        }
        out.push(Revealed {
            record: serde_json::from_str(&json).map_err(|e| corrupt(&id)(e.to_string()))?,
            window_end,
        });
    }
    Ok(out)
}

/// The revealed record of draw `id` (None: no such draw, or not revealed yet).
pub fn record(conn: &(impl Sql + ?Sized), id: &str) -> Result<Option<DrawRecord>, DrawStoreError> {
    let json: Option<Option<String>> =
        conn.query_opt("SELECT record FROM draws WHERE id = $1", args![id], |r| {
            r.get(0)
        })?;
    json.flatten()
        .map(|j| serde_json::from_str(&j).map_err(|e| corrupt(id)(e.to_string())))
        .transpose()
}

/// Draw `prefix` of plan `plan` and the draws named `{prefix}-…` (a batch's draw and its
/// partners' inspector draws).
pub fn ids_of_plan(
    conn: &(impl Sql + ?Sized),
    plan: &str,
    prefix: &str,
) -> Result<Vec<String>, DrawStoreError> {
    let mut rows: Vec<String> =
        conn.query("SELECT id FROM draws WHERE plan = $1", args![plan], |r| {
            r.get(0)
        })?;
    // By code point, in Rust: the same on both engines whatever PostgreSQL's collation.
    rows.sort();
    let mut out = Vec::new();
    for id in rows {
        if id == prefix
            || id
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('-'))
        {
            out.push(id);
        }
    }
    Ok(out)
}

/// Whether draw `id` is revealed.
pub fn is_revealed(conn: &(impl Sql + ?Sized), id: &str) -> Result<bool, DrawStoreError> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM draws WHERE id = $1 AND record IS NOT NULL)",
        args![id],
        |r| r.get(0),
    )?)
}

/// Records a recusal in draw `id` and draws the replacement with a fresh seed.
pub fn recuse(
    conn: &Conn,
    id: &str,
    entity: &CreditCode,
    inspector: &InspectorId,
) -> Result<Replacement, DrawStoreError> {
    let tx = conn.transaction()?;
    let json: Option<Option<String>> =
        tx.query_opt("SELECT record FROM draws WHERE id = $1", args![id], |r| {
            r.get(0)
        })?;
    let json = json
        .ok_or_else(|| DrawStoreError::NotFound(id.to_owned()))?
        .ok_or_else(|| DrawStoreError::NotRevealed(id.to_owned()))?;
    let mut record: DrawRecord =
        serde_json::from_str(&json).map_err(|e| corrupt(id)(e.to_string()))?;
    let r = record.recuse(entity, inspector, Seed::generate())?.clone();
    tx.execute(
        // The public form made from the record before the recusal is stale now.
        "UPDATE draws SET record = $2, public_record = NULL WHERE id = $1",
        args![
            id,
            serde_json::to_string(&record).expect("records serialise")
        ],
    )?;
    let now = UnixMillis::now();
    // The replacement takes the recused inspector's place on the entity's tasks of this draw.
    tasks::replace_inspector(
        &tx,
        id,
        entity.as_str(),
        r.recused.as_str(),
        r.replacement.as_str(),
    )
    .map_err(|e| DrawStoreError::Task(e.to_string()))?;
    audit::append(
        &tx,
        EntryKind::Recusal,
        &format!("draw:{id}"),
        &serde_json::json!({"draw": id, "entity": entity.as_str(), "recused": r.recused.as_str(),
            "replacement": r.replacement.as_str(), "commitment": r.commitment.to_string(),
            "seed": r.seed.to_string()}),
        now,
    )?;
    tx.commit()?;
    Ok(r)
}
