//! Remote checks of drawn, joint and referral tasks.
//!
//! A check runs the item's rule pack over a window of the entity's readings and event records
//! ([`crate::rules::window`]) and records the verdict with its evidence: violation intervals,
//! compliance share and data completeness. Too little data gives "cannot be verified
//! remotely; on-site check needed", never "no problem found", so going offline is never a
//! way to pass. The verdict is a proposal: only an inspector assigned to the task can accept
//! it or override it with a reason ([`decide`]), and that decision is the task's result.

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::json;
use spotcheck_protocol::UnixMillis;

use crate::audit::{self, EntryKind};
use crate::results::Category;
use crate::rules::window::{self, Completeness, Evidence, Outcome, SeriesData, Window};
use crate::rules::{Calendar, ChinaDay, RuleSet};
use crate::store::query;
use crate::tasks::store as tasks;
use crate::tasks::{TaskError, TaskId, TaskStatus, Transition};

/// A check's row id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CheckId(pub i64);

/// A recorded check.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Check {
    /// Row id.
    pub id: CheckId,
    /// The task.
    pub task: TaskId,
    /// The rule pack's content hash ("" when the item has no remote rule pack).
    pub pack: String,
    /// The window, Unix ms, start inclusive.
    pub window_start_ms: i64,
    /// The window's end, exclusive.
    pub window_end_ms: i64,
    /// `compliant`, `violations` or `cannot_verify`.
    pub outcome: String,
    /// The evidence (see `rules::window::Evidence`).
    pub evidence: serde_json::Value,
    /// When it ran.
    pub checked_ms: i64,
    /// `accepted` or `overridden`, once an assigned inspector decided.
    pub decision: Option<String>,
    /// Who decided: an inspector id, or `user:ID` for the bureau's override.
    pub decided_by: Option<String>,
    /// The reason for an override.
    pub reason: Option<String>,
    /// When the decision was made.
    pub decided_ms: Option<i64>,
}

/// An assigned inspector's decision on a verdict.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case", deny_unknown_fields)]
pub enum Decision {
    /// The verdict stands. For a verdict with violations the inspector names what was done
    /// (`corrected` or `pending_follow_up`, the default).
    Accept {
        /// The result category, for a verdict with violations.
        #[serde(default)]
        result: Option<Category>,
        /// An optional comment.
        #[serde(default)]
        comment: Option<String>,
    },
    /// The inspector records another result, with the reason (for example after the on-site
    /// check a `cannot_verify` verdict calls for).
    Override {
        /// The result category.
        result: Category,
        /// Why the verdict does not stand.
        reason: String,
    },
}

/// Why a check could not run or a decision was refused.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The task side refused.
    #[error(transparent)]
    Task(#[from] TaskError),
    /// No such check.
    #[error("check {0} does not exist")]
    NotFound(i64),
    /// The request is wrong.
    #[error("{0}")]
    Invalid(String),
    /// The decider may not make this decision.
    #[error("{0}")]
    Forbidden(String),
    /// SQLite failed.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// The audit log refused the entry.
    #[error(transparent)]
    Audit(#[from] audit::AuditError),
}

/// The data entities of a task's entity: itself (agents may report under the credit code)
/// and the entities its bound agents report for.
fn data_entities(conn: &Connection, entity: &str) -> rusqlite::Result<Vec<String>> {
    let mut names = vec![entity.to_owned()];
    let agents: Option<String> = conn
        .query_row(
            "SELECT agents FROM registry_entities WHERE code = ?1",
            [entity],
            |r| r.get(0),
        )
        .optional()?;
    let agents: Vec<String> = agents
        .and_then(|a| serde_json::from_str(&a).ok())
        .unwrap_or_default();
    let mut stmt = conn.prepare_cached("SELECT entity FROM agents WHERE name = ?1")?;
    for a in agents {
        if let Some(e) = stmt.query_row([&a], |r| r.get::<_, String>(0)).optional()? {
            names.push(e);
        }
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// The task window as Unix ms: from the first day's 00:00 to the day after the last day,
/// China time.
pub fn task_window(start: &str, end: &str) -> Option<(i64, i64)> {
    let (first, last) = (ChinaDay::parse(start)?, ChinaDay::parse(end)?);
    Some((first.at(0).0, ChinaDay(last.0 + 1).at(0).0))
}

/// Runs the remote check of task `id` over `window` (default: the task's inspection window,
/// cut at `now`) and records the verdict.
pub fn run(
    conn: &mut Connection,
    rules: &RuleSet,
    calendar: &Calendar,
    id: TaskId,
    window: Option<(i64, i64)>,
    now: UnixMillis,
) -> Result<Check, CheckError> {
    let task = tasks::get(conn, id)?;
    task.next(Transition::Check)?;
    let (start, end) = match window {
        Some(w) => w,
        None => {
            let (s, e) = task_window(task.window_start.as_str(), task.window_end.as_str())
                .ok_or_else(|| {
                    CheckError::Invalid(format!(
                        "task {id} has an unreadable window {}..{}",
                        task.window_start, task.window_end
                    ))
                })?;
            (s, e.min(now.0))
        }
    };
    if end <= start {
        return Err(CheckError::Invalid(format!(
            "the window {start}..{end} (Unix ms) is empty{}",
            if window.is_none() {
                "; the task's inspection window has not begun yet, give one with window_start_ms and window_end_ms"
            } else {
                ""
            }
        )));
    }
    let pack_id: Option<String> = conn
        .query_row(
            "SELECT rule_pack FROM registry_items WHERE id = ?1",
            [task.item.as_str()],
            |r| r.get(0),
        )
        .optional()?
        .flatten();
    let pack = pack_id.as_deref().and_then(|p| rules.by_id(p));
    let (pack_hash, outcome, evidence) = match pack {
        None => {
            let reason = match pack_id {
                None => format!(
                    "item {} has no remote rule pack: it cannot be verified remotely; on-site check needed",
                    task.item
                ),
                Some(p) => format!(
                    "rule pack {p:?} of item {} is not loaded: it cannot be verified remotely; on-site check needed",
                    task.item
                ),
            };
            (
                String::new(),
                "cannot_verify".to_owned(),
                json!({"outcome": "cannot_verify", "reason": reason}),
            )
        }
        Some(pack) => {
            let entities = data_entities(conn, task.entity.as_str())?;
            let data =
                query::window_data(conn, &entities, start, end).map_err(rusqlite::Error::from)?;
            let series: Vec<SeriesData<'_>> = data
                .series
                .iter()
                .map(|(m, p)| SeriesData {
                    metric: m,
                    points: p,
                })
                .collect();
            let ev: Evidence = window::evaluate(
                pack,
                calendar,
                Window {
                    start: UnixMillis(start),
                    end: UnixMillis(end),
                },
                &series,
                &data.events,
                &Completeness::default(),
            );
            let outcome = outcome_code(ev.outcome).to_owned();
            let hash = ev.pack.as_str().to_owned();
            (
                hash,
                outcome,
                serde_json::to_value(&ev).expect("evidence serialises"),
            )
        }
    };
    let tx = crate::store::immediate(conn)?;
    tx.execute(
        "INSERT INTO checks (task, pack_hash, window_start_ms, window_end_ms, outcome, evidence, checked_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![id.0, pack_hash, start, end, outcome, evidence.to_string(), now.0],
    )?;
    let check = CheckId(tx.last_insert_rowid());
    tasks::apply(&tx, id, Transition::Check, now)?;
    tasks::add_note(
        &tx,
        id,
        now,
        "checked",
        &format!("remote check {}: {outcome}", check.0),
    )
    .map_err(rusqlite::Error::from)?;
    audit::append(
        &tx,
        EntryKind::Verdict,
        &format!("task:{id}"),
        &json!({
            "task": id.0, "check": check.0, "pack": pack_hash, "outcome": outcome,
            "window_start_ms": start, "window_end_ms": end,
            "compliance_share": evidence.get("compliance_share"),
            "completeness": evidence.get("completeness"),
        }),
        now,
    )?;
    tx.commit()?;
    get(conn, check.0)
}

fn outcome_code(o: Outcome) -> &'static str {
    match o {
        Outcome::Compliant => "compliant",
        Outcome::Violations => "violations",
        Outcome::CannotVerify => "cannot_verify",
    }
}

/// One check.
pub fn get(conn: &Connection, id: i64) -> Result<Check, CheckError> {
    conn.query_row(
        "SELECT id, task, pack_hash, window_start_ms, window_end_ms, outcome, evidence, checked_ms,
                decision, decided_by, reason, decided_ms FROM checks WHERE id = ?1",
        [id],
        row,
    )
    .optional()?
    .ok_or(CheckError::NotFound(id))
}

/// A task's checks, newest first.
pub fn of_task(conn: &Connection, task: TaskId) -> Result<Vec<Check>, CheckError> {
    let mut stmt = conn.prepare(
        "SELECT id, task, pack_hash, window_start_ms, window_end_ms, outcome, evidence, checked_ms,
                decision, decided_by, reason, decided_ms FROM checks WHERE task = ?1 ORDER BY id DESC",
    )?;
    let rows = stmt.query_map([task.0], row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Check> {
    let evidence: String = r.get(6)?;
    Ok(Check {
        id: CheckId(r.get(0)?),
        task: TaskId(r.get(1)?),
        pack: r.get(2)?,
        window_start_ms: r.get(3)?,
        window_end_ms: r.get(4)?,
        outcome: r.get(5)?,
        evidence: serde_json::from_str(&evidence).unwrap_or(serde_json::Value::String(evidence)),
        checked_ms: r.get(7)?,
        decision: r.get(8)?,
        decided_by: r.get(9)?,
        reason: r.get(10)?,
        decided_ms: r.get(11)?,
    })
}

/// Who decides on a verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decider {
    /// An inspector assigned to the task (by inspector id): accepts or overrides.
    Inspector(String),
    /// The bureau (the admin or the department's supervisor, as `user:ID`): can only override,
    /// with a reason, and is recorded as itself, never as an inspector.
    Bureau(String),
}

impl Decider {
    /// What `decided_by` records: the inspector id, or `user:ID`.
    pub fn recorded_as(&self) -> &str {
        match self {
            Decider::Inspector(i) | Decider::Bureau(i) => i,
        }
    }
}

/// Records a decision on check `id`; the task gets its result.
pub fn decide(
    conn: &mut Connection,
    id: i64,
    by: &Decider,
    decision: Decision,
    now: UnixMillis,
) -> Result<Check, CheckError> {
    let check = get(conn, id)?;
    let task = check.task;
    let tx = crate::store::immediate(conn)?;
    match by {
        Decider::Inspector(inspector) => {
            if !tasks::is_assigned(&tx, task, inspector)? {
                return Err(TaskError::NotAssigned {
                    id: task,
                    inspector: inspector.to_owned(),
                }
                .into());
            }
        }
        Decider::Bureau(_) => {
            if matches!(decision, Decision::Accept { .. }) {
                return Err(CheckError::Forbidden(
                    "accepting a verdict is the assigned inspectors' decision, made with their own login; the bureau can only override it with a reason, under its own name".into(),
                ));
            }
        }
    }
    let inspector = by.recorded_as();
    if check.decision.is_some() {
        return Err(CheckError::Invalid(format!(
            "check {id} was already decided ({}); run a new check to decide again",
            check.decision.unwrap_or_default()
        )));
    }
    let newest: i64 = tx.query_row(
        "SELECT max(id) FROM checks WHERE task = ?1",
        [task.0],
        |r| r.get(0),
    )?;
    if newest != id {
        return Err(CheckError::Invalid(format!(
            "check {id} is not task {task}'s newest check ({newest}); decide on the newest"
        )));
    }
    let status = tasks::get(&tx, task)?.status;
    if status != TaskStatus::Checked {
        return Err(CheckError::Invalid(format!(
            "task {task} is {status}; a decision needs it to be checked"
        )));
    }
    let (kind, result, comment, reason, audit_kind) = match decision {
        Decision::Accept { result, comment } => {
            let result = match (check.outcome.as_str(), result) {
                ("compliant", None | Some(Category::NoProblem)) => Category::NoProblem,
                ("compliant", Some(other)) => {
                    return Err(CheckError::Invalid(format!(
                        "the verdict found no problem, so accepting it records no_problem, not {}; override it with a reason instead",
                        other.code()
                    )))
                }
                ("violations", None) => Category::PendingFollowUp,
                ("violations", Some(c @ (Category::Corrected | Category::PendingFollowUp))) => c,
                ("violations", Some(other)) => {
                    return Err(CheckError::Invalid(format!(
                        "the verdict found violations: accept it as corrected or pending_follow_up, or override it with a reason (not {})",
                        other.code()
                    )))
                }
                _ => {
                    return Err(CheckError::Invalid(
                        "the verdict is cannot_verify: it cannot be accepted as a result; check on site and override it with the result and a reason".into(),
                    ))
                }
            };
            let comment = comment.unwrap_or_else(|| format!("remote check {id} accepted"));
            ("accepted", result, comment, None, EntryKind::ResultRecorded)
        }
        Decision::Override { result, reason } => {
            if reason.trim().is_empty() {
                return Err(CheckError::Invalid(
                    "an override needs a reason saying why the verdict does not stand".into(),
                ));
            }
            (
                "overridden",
                result,
                reason.clone(),
                Some(reason),
                EntryKind::Override,
            )
        }
    };
    tx.execute(
        "UPDATE checks SET decision = ?2, decided_by = ?3, reason = ?4, decided_ms = ?5 WHERE id = ?1",
        params![id, kind, inspector, reason, now.0],
    )?;
    tasks::record_result(&tx, task, Transition::Decide, result, &comment, now)?;
    audit::append(
        &tx,
        audit_kind,
        &format!("task:{task}"),
        &json!({
            "task": task.0, "check": id, "decision": kind,
            "inspector": match by { Decider::Inspector(i) => Some(i.as_str()), Decider::Bureau(_) => None },
            "verdict": check.outcome, "result": result.code(),
            // The reason is free text that may name people: the log commits to it by hash.
            "reason_sha256": reason.as_deref().map(|r| {
                use sha2::Digest;
                hex::encode(sha2::Sha256::digest(r.as_bytes()))
            }),
        }),
        now,
    )?;
    tx.commit()?;
    get(conn, id)
}
