//! Results in the store (SQLite or PostgreSQL): which resolved results await publication, publishing them, and the
//! public feed.

use std::collections::HashSet;
use std::fmt;

use serde::Serialize;
use serde_json::json;
use spotcheck_protocol::UnixMillis;

use super::deadline::Deadline;
use super::{Category, ResultsError};
use crate::audit::{self, EntryKind};
use crate::store::db::{Conn, Sql};
use crate::tasks::store as tasks;
use crate::tasks::{TaskError, TaskId, TaskStatus, Transition};

/// Why one task cannot be published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Refusal {
    /// No task has this id.
    NoSuchTask {
        /// The id given.
        task: i64,
    },
    /// The task has no recorded result yet.
    NotResolved {
        /// The task.
        task: i64,
        /// Its status.
        status: String,
    },
    /// The task is published already.
    AlreadyPublished {
        /// The task.
        task: i64,
    },
    /// The task is resolved but without a valid result category.
    NoResult {
        /// The task.
        task: i64,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NoSuchTask { task } => write!(f, "task {task}: no such task"),
            Refusal::NotResolved { task, status } => write!(
                f,
                "task {task}: not resolved (status {status:?}); record its result first"
            ),
            Refusal::AlreadyPublished { task } => {
                write!(f, "task {task}: already published")
            }
            Refusal::NoResult { task } => write!(
                f,
                "task {task}: resolved without a valid result category; record its result again"
            ),
        }
    }
}

/// A task just published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Published {
    /// The task.
    pub task: i64,
    /// Its result.
    pub result: Category,
    /// When it was published.
    pub published_ms: i64,
    /// The seq of its `publication` audit entry.
    pub audit_seq: i64,
}

/// Marks resolved tasks published at `now` and appends one `publication` audit entry per task,
/// all in one transaction: either every task is published or, if any is refused (unknown,
/// not resolved, already published, no result), none is and every refusal is reported.
/// Repeated ids count once. Opens its own write transaction.
pub fn publish(
    conn: &Conn,
    task_ids: &[i64],
    now: UnixMillis,
) -> Result<Vec<Published>, ResultsError> {
    let tx = conn.transaction()?;
    let mut seen = HashSet::new();
    let mut refusals = Vec::new();
    let mut ready = Vec::new();
    for &task in task_ids {
        if !seen.insert(task) {
            continue;
        }
        match tasks::get(&tx, TaskId(task)) {
            Err(TaskError::NotFound(_)) => refusals.push(Refusal::NoSuchTask { task }),
            Err(e) => return Err(e.into()),
            Ok(t) if t.status == TaskStatus::Published => {
                refusals.push(Refusal::AlreadyPublished { task })
            }
            Ok(t) if t.status != TaskStatus::Resolved => refusals.push(Refusal::NotResolved {
                task,
                status: t.status.to_string(),
            }),
            Ok(t) => match t.result.as_deref().map(Category::parse) {
                Some(Ok(category)) => ready.push((t, category)),
                _ => refusals.push(Refusal::NoResult { task }),
            },
        }
    }
    if !refusals.is_empty() {
        return Err(ResultsError::Refused { refusals });
    }
    let mut out = Vec::with_capacity(ready.len());
    for (t, result) in ready {
        let task = t.id.0;
        tasks::apply(&tx, t.id, Transition::Publish, now)?;
        // Ids and codes only: the entity is a business, by its credit code.
        let entry = audit::append(
            &tx,
            EntryKind::Publication,
            &format!("task:{task}"),
            &json!({
                "task": task,
                "entity": t.entity.as_str(),
                "result": result.code(),
                "resolved_ms": t.resolved_ms,
                "published_ms": now.0,
            }),
            now,
        )?;
        out.push(Published {
            task,
            result,
            published_ms: now.0,
            audit_seq: entry.seq,
        });
    }
    tx.commit()?;
    Ok(out)
}

/// A resolved result waiting to be published, with its deadline (for staff, not the public).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingPublication {
    /// The task.
    pub task: i64,
    /// random | joint | anomaly | referral.
    pub kind: String,
    /// The entity (its credit code).
    pub entity: String,
    /// The department.
    pub department: String,
    /// The item.
    pub item: String,
    /// The result.
    pub result: Category,
    /// When the result was recorded.
    pub resolved_ms: i64,
    /// Publish by then.
    pub due_ms: i64,
    /// Whole days left (0 on the last day, negative once overdue).
    pub days_left: i64,
    /// Past the deadline.
    pub overdue: bool,
}

/// Every resolved, unpublished task with its deadline at `now`, most urgent first.
pub fn pending_publication(
    conn: &(impl Sql + ?Sized),
    deadline: Deadline,
    now: UnixMillis,
) -> Result<Vec<PendingPublication>, ResultsError> {
    let mut out = Vec::new();
    for t in tasks::awaiting_publication(conn)? {
        let task = t.id.0;
        let corrupt = |reason: &str| ResultsError::Corrupt {
            task,
            reason: reason.to_owned(),
        };
        let result = Category::parse(t.result.as_deref().ok_or_else(|| corrupt("no result"))?)
            .map_err(|e| corrupt(&e.to_string()))?;
        let resolved_ms = t
            .resolved_ms
            .ok_or_else(|| corrupt("resolved without resolved_ms"))?;
        let due = deadline.due(UnixMillis(resolved_ms));
        out.push(PendingPublication {
            task,
            kind: t.kind().to_string(),
            entity: t.entity.to_string(),
            department: t.department.to_string(),
            item: t.item.to_string(),
            result,
            resolved_ms,
            due_ms: due.due_ms,
            days_left: due.days_left(now),
            overdue: due.overdue(now),
        });
    }
    Ok(out)
}

/// Which published results to list. Every field narrows; the default lists all.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PublicFilter {
    /// Only this domain (`pool`, `game`, `hospital`).
    pub domain: Option<String>,
    /// Only this department.
    pub department: Option<String>,
    /// Only this entity (credit code).
    pub entity: Option<String>,
    /// Only results published at or after this time (Unix ms).
    pub since_ms: Option<i64>,
    /// Only results published before this time (Unix ms).
    pub until_ms: Option<i64>,
    /// At most this many rows, newest first.
    pub limit: Option<u32>,
}

/// One row of the public feed. The field order is the column order of the CSV and JSON
/// renderings ([`super::COLUMNS`], `docs/publication.md`).
///
/// Deliberately absent: inspectors (names, ids, certificates), the task's comment and notes
/// (free text that may name people: the entity's staff, patients, players, inspectors), the
/// check's evidence (may carry event records about patients or players) and the entity's
/// address and contact. The entity is a business identified by its public registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PublicResult {
    /// The task id.
    pub task_id: i64,
    /// random | joint | anomaly | referral.
    pub kind: String,
    /// The entity's unified social credit code (as stored on the task).
    pub entity_code: String,
    /// The entity's registered name; empty if it is not in the entity library.
    pub entity_name: String,
    /// pool | game | hospital; empty if unknown.
    pub domain: String,
    /// The inspecting department.
    pub department: String,
    /// The item id.
    pub item: String,
    /// The item's name; empty if it is not in the item list.
    pub item_name: String,
    /// First day of the inspection window (YYYY-MM-DD).
    pub window_start: String,
    /// Last day of the inspection window (YYYY-MM-DD).
    pub window_end: String,
    /// The result category's code.
    pub result_code: String,
    /// The result category's label (Chinese).
    pub result_label: String,
    /// The date of publication in China Standard Time (UTC+8), YYYY-MM-DD.
    pub published_date: String,
    /// The moment of publication, Unix ms (for incremental fetching).
    pub published_ms: i64,
}

/// Published results matching `filter`, newest first.
pub fn public_results(
    conn: &(impl Sql + ?Sized),
    filter: &PublicFilter,
) -> Result<Vec<PublicResult>, ResultsError> {
    let mut out = Vec::new();
    for row in tasks::published(conn, filter)? {
        let result = Category::parse(row.result.as_deref().unwrap_or_default()).map_err(|e| {
            ResultsError::Corrupt {
                task: row.task_id,
                reason: e.to_string(),
            }
        })?;
        out.push(PublicResult {
            task_id: row.task_id,
            kind: row.kind,
            entity_code: row.entity_code,
            entity_name: row.entity_name,
            domain: row.domain,
            department: row.department,
            item: row.item,
            item_name: row.item_name,
            window_start: row.window_start,
            window_end: row.window_end,
            result_code: result.code().to_owned(),
            result_label: result.label().to_owned(),
            published_date: china_date(row.published_ms),
            published_ms: row.published_ms,
        });
    }
    Ok(out)
}

/// The calendar date of `ms` in China Standard Time (UTC+8, no daylight saving since 1991).
pub fn china_date(ms: i64) -> String {
    crate::rules::ChinaDay::of(UnixMillis(ms)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_in_china_standard_time() {
        assert_eq!(china_date(0), "1970-01-01");
        // 2023-11-14T22:13:20Z is already the 15th in Beijing.
        assert_eq!(china_date(1_700_000_000_000), "2023-11-15");
        // 2024-02-29T15:59:59.999Z is the last moment of the 29th in Beijing.
        assert_eq!(china_date(1_709_222_399_999), "2024-02-29");
        assert_eq!(china_date(1_709_222_400_000), "2024-03-01");
    }
}
