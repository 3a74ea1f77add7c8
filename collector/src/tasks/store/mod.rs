//! The tasks table, its notes and its inspectors: the only SQL against them in the crate (a
//! test walks the sources to keep it so). Draws, joint plans, plans, checks, results and the
//! API call these functions. Every change is one transaction (`BEGIN IMMEDIATE`, see
//! `store/`) that also appends its audit entry, so the log and the tasks never disagree; the
//! functions that take a `Transaction` run inside their caller's.

mod assign;
mod create;
mod labels;
mod plans;

pub use assign::*;
pub use create::*;
pub use labels::*;
pub use plans::*;

use std::collections::HashSet;

use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};
use serde_json::json;

use super::{Kind, Note, Task, TaskError, TaskFilter, TaskId, TaskKind, TaskStatus, Transition};
use crate::audit::{self, EntryKind};
use crate::plan::PlanDate;
use crate::registry::model::{Department, DrawId, InspectorId, ItemId};
use crate::registry::CreditCode;
use crate::results::Category;
use crate::rules::RuleKey;
use crate::store::db::{args, DbError, Sql};
use crate::store::immediate;
use spotcheck_protocol::{EntityId, UnixMillis};

/// The columns [`from_row`] reads, in order; the inspectors come in the same statement,
/// joined with commas (an inspector id has none), so a list is one query however many tasks
/// it holds.
const COLUMNS: &str = "t.id, t.kind, t.status, t.entity, t.department, t.item, t.draw, t.batch, \
     t.joint_plan, t.departments, t.window_start, t.window_end, t.rule, t.severity, t.opened_ms, \
     t.detail, t.entered_by, t.cleared_ms, t.updated_ms, t.result, t.comment, t.resolved_ms, \
     t.published_ms, (SELECT group_concat(inspector, ',') FROM task_inspectors ti \
     WHERE ti.task = t.id)";

/// One row as stored, before it is checked into a [`Task`].
struct Raw {
    id: i64,
    kind: String,
    status: String,
    entity: String,
    department: String,
    item: String,
    draw: Option<String>,
    batch: Option<String>,
    joint_plan: Option<String>,
    departments: Option<String>,
    window_start: String,
    window_end: String,
    rule: Option<String>,
    severity: Option<String>,
    opened_ms: Option<i64>,
    detail: Option<String>,
    entered_by: Option<String>,
    cleared_ms: Option<i64>,
    updated_ms: Option<i64>,
    result: Option<String>,
    comment: Option<String>,
    resolved_ms: Option<i64>,
    published_ms: Option<i64>,
    inspectors: Option<String>,
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<Raw> {
    Ok(Raw {
        id: r.get(0)?,
        kind: r.get(1)?,
        status: r.get(2)?,
        entity: r.get(3)?,
        department: r.get(4)?,
        item: r.get(5)?,
        draw: r.get(6)?,
        batch: r.get(7)?,
        joint_plan: r.get(8)?,
        departments: r.get(9)?,
        window_start: r.get(10)?,
        window_end: r.get(11)?,
        rule: r.get(12)?,
        severity: r.get(13)?,
        opened_ms: r.get(14)?,
        detail: r.get(15)?,
        entered_by: r.get(16)?,
        cleared_ms: r.get(17)?,
        updated_ms: r.get(18)?,
        result: r.get(19)?,
        comment: r.get(20)?,
        resolved_ms: r.get(21)?,
        published_ms: r.get(22)?,
        inspectors: r.get(23)?,
    })
}

impl Raw {
    fn check(self) -> Result<Task, TaskError> {
        let id = self.id;
        let corrupt = |column: &'static str, value: &str| TaskError::Corrupt {
            id,
            column,
            value: value.to_owned(),
        };
        let kind: TaskKind = self.kind.parse().map_err(|_| corrupt("kind", &self.kind))?;
        let status: TaskStatus = self
            .status
            .parse()
            .map_err(|_| corrupt("status", &self.status))?;
        let draw = |d: Option<String>| -> Result<DrawId, TaskError> {
            let d = d.ok_or_else(|| corrupt("draw", "NULL"))?;
            DrawId::new(&d).map_err(|_| corrupt("draw", &d))
        };
        let kind = match kind {
            TaskKind::Random => Kind::Random {
                draw: draw(self.draw)?,
                batch: self.batch,
            },
            TaskKind::Joint => {
                let plan = self.joint_plan.unwrap_or_default();
                let departments = self.departments.unwrap_or_default();
                Kind::Joint {
                    draw: draw(self.draw)?,
                    batch: self.batch,
                    plan: DrawId::new(&plan).map_err(|_| corrupt("joint_plan", &plan))?,
                    departments: serde_json::from_str(&departments)
                        .map_err(|_| corrupt("departments", &departments))?,
                }
            }
            TaskKind::Anomaly => {
                let rule = self.rule.unwrap_or_default();
                let severity = self.severity.unwrap_or_default();
                Kind::Anomaly {
                    rule: RuleKey::parse(&rule).ok_or_else(|| corrupt("rule", &rule))?,
                    severity: severity
                        .parse()
                        .map_err(|_| corrupt("severity", &severity))?,
                    cleared_ms: self.cleared_ms,
                }
            }
            TaskKind::Referral => Kind::Referral {
                entered_by: self.entered_by.unwrap_or_else(|| "unknown".into()),
                reason: self.detail.clone().unwrap_or_default(),
            },
        };
        let item = match ItemId::new(&self.item) {
            Ok(item) => item,
            // Before issue 11 an anomaly of no item was filed under its rule key.
            Err(_) if matches!(kind, Kind::Anomaly { .. }) => {
                ItemId::new(super::anomaly::UNASSIGNED).expect("a valid item id")
            }
            Err(_) => return Err(corrupt("item", &self.item)),
        };
        let mut inspectors: Vec<&str> = self
            .inspectors
            .as_deref()
            .map(|s| s.split(',').collect())
            .unwrap_or_default();
        inspectors.sort_unstable();
        Ok(Task {
            id: TaskId(id),
            status,
            entity: EntityId::new(&self.entity).map_err(|_| corrupt("entity", &self.entity))?,
            department: Department::new(&self.department)
                .map_err(|_| corrupt("department", &self.department))?,
            item,
            window_start: PlanDate::new(&self.window_start)
                .map_err(|_| corrupt("window_start", &self.window_start))?,
            window_end: PlanDate::new(&self.window_end)
                .map_err(|_| corrupt("window_end", &self.window_end))?,
            opened_ms: self.opened_ms,
            detail: match kind {
                Kind::Referral { .. } => None,
                _ => self.detail,
            },
            updated_ms: self.updated_ms,
            result: self.result,
            comment: self.comment,
            resolved_ms: self.resolved_ms,
            published_ms: self.published_ms,
            inspectors: inspectors
                .into_iter()
                .map(|i| InspectorId::new(i).map_err(|_| corrupt("inspector", i)))
                .collect::<Result<_, _>>()?,
            kind,
        })
    }
}

/// Whether `inspector` is assigned to task `id`.
pub fn is_assigned(conn: &Connection, id: TaskId, inspector: &str) -> Result<bool, TaskError> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM task_inspectors WHERE task = ?1 AND inspector = ?2)",
        )?
        .query_row(params![id.0, inspector], |r| r.get(0))?)
}

/// Tasks matching `filter`, newest first, in one query.
pub fn list(conn: &Connection, filter: &TaskFilter) -> Result<Vec<Task>, TaskError> {
    let mut args: Vec<Box<dyn rusqlite::ToSql>> = Vec::new();
    // An inspector's queue walks the (inspector, task) index newest first and stops at the
    // limit, instead of testing every task for membership.
    let (mut sql, order) = match &filter.inspector {
        Some(i) => {
            args.push(Box::new(i.clone()));
            (
                format!(
                    "SELECT {COLUMNS} FROM task_inspectors q JOIN tasks t ON t.id = q.task
                     WHERE q.inspector = ?1"
                ),
                "q.task",
            )
        }
        None => (format!("SELECT {COLUMNS} FROM tasks t WHERE 1 = 1"), "t.id"),
    };
    if let Some(k) = filter.kind {
        args.push(Box::new(k.as_str()));
        sql += &format!(" AND t.kind = ?{}", args.len());
    }
    if let Some(s) = filter.status {
        args.push(Box::new(s.as_str()));
        sql += &format!(" AND t.status = ?{}", args.len());
    }
    if let Some(e) = &filter.entity {
        args.push(Box::new(e.clone()));
        sql += &format!(" AND t.entity = ?{}", args.len());
    }
    if let Some(d) = &filter.department {
        args.push(Box::new(d.clone()));
        sql += &format!(" AND t.department = ?{}", args.len());
    }
    if let Some(d) = &filter.draw {
        args.push(Box::new(d.clone()));
        sql += &format!(" AND t.draw = ?{}", args.len());
    }
    if let Some(b) = filter.before {
        args.push(Box::new(b.0));
        sql += &format!(" AND {order} < ?{}", args.len());
    }
    args.push(Box::new(i64::from(filter.limit)));
    sql += &format!(" ORDER BY {order} DESC LIMIT ?{}", args.len());
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows: Vec<Raw> = stmt
        .query_map(rusqlite::params_from_iter(args.iter()), from_row)?
        .collect::<Result<_, _>>()?;
    rows.into_iter().map(Raw::check).collect()
}

/// One task.
pub fn get(conn: &Connection, id: TaskId) -> Result<Task, TaskError> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM tasks t WHERE t.id = ?1"))?
        .query_row([id.0], from_row)
        .optional()?
        .ok_or(TaskError::NotFound(id))?
        .check()
}

/// Resolved tasks not yet published, oldest result first.
pub fn awaiting_publication(conn: &Connection) -> Result<Vec<Task>, TaskError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM tasks t WHERE t.status = ?1 AND t.published_ms IS NULL
         ORDER BY t.resolved_ms, t.id"
    ))?;
    let rows: Vec<Raw> = stmt
        .query_map([TaskStatus::Resolved.as_str()], from_row)?
        .collect::<Result<_, _>>()?;
    rows.into_iter().map(Raw::check).collect()
}

/// A task's notes, oldest first.
pub fn notes(conn: &Connection, id: TaskId) -> Result<Vec<Note>, TaskError> {
    let mut stmt = conn.prepare_cached(
        "SELECT ts_ms, kind, text FROM task_notes WHERE task = ?1 ORDER BY ts_ms, rowid",
    )?;
    let rows = stmt.query_map([id.0], |r| {
        Ok(Note {
            ts_ms: r.get(0)?,
            kind: r.get(1)?,
            text: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Adds a note to a task.
pub fn add_note(
    tx: &(impl Sql + ?Sized),
    id: TaskId,
    now: UnixMillis,
    kind: &str,
    text: &str,
) -> Result<(), DbError> {
    tx.execute(
        "INSERT INTO task_notes (task, ts_ms, kind, text) VALUES ($1, $2, $3, $4)",
        args![id.0, now.0, kind, text],
    )?;
    Ok(())
}

/// Applies `t` to task `id` inside the caller's transaction: the task's own rules
/// ([`Task::next`]) decide whether it may, and the update holds only from the status they
/// were asked about. Returns the task as it was.
pub fn apply(
    tx: &Transaction<'_>,
    id: TaskId,
    t: Transition,
    now: UnixMillis,
) -> Result<Task, TaskError> {
    let task = get(tx, id)?;
    let next = task.next(t)?;
    let n = tx
        .prepare_cached(
            "UPDATE tasks SET status = ?3, updated_ms = ?4,
                    published_ms = CASE WHEN ?3 = ?5 THEN ?4 ELSE published_ms END
             WHERE id = ?1 AND status = ?2",
        )?
        .execute(params![
            id.0,
            task.status.as_str(),
            next.as_str(),
            now.0,
            TaskStatus::Published.as_str()
        ])?;
    if n != 1 {
        return Err(TaskError::Invalid(format!(
            "task {id} changed while {t:?} was applied; try again"
        )));
    }
    Ok(task)
}

/// A supervisor has seen an open anomaly task.
pub fn acknowledge(
    conn: &mut Connection,
    id: TaskId,
    by: &str,
    now: UnixMillis,
) -> Result<Task, TaskError> {
    let tx = immediate(conn)?;
    apply(&tx, id, Transition::Acknowledge, now)?;
    add_note(
        &tx,
        id,
        now,
        "acknowledged",
        &format!("acknowledged by {by}"),
    )?;
    audit::append(
        &tx,
        EntryKind::TaskAcknowledged,
        &format!("task:{id}"),
        &json!({"task": id.0, "by": by}),
        now,
    )?;
    tx.commit()?;
    get(conn, id)
}

/// Records a supervisor's result on an anomaly or referral task (drawn and joint tasks get
/// theirs through an inspector's decision on a remote check, [`crate::check`]).
pub fn resolve(
    conn: &mut Connection,
    id: TaskId,
    result: Category,
    comment: &str,
    by: &str,
    now: UnixMillis,
) -> Result<Task, TaskError> {
    let tx = immediate(conn)?;
    get(&tx, id)?.next(Transition::Resolve)?;
    if comment.trim().is_empty() {
        return Err(TaskError::Invalid(
            "a result needs a comment saying what was found and done".into(),
        ));
    }
    record_result(&tx, id, Transition::Resolve, result, comment, now)?;
    audit::append(
        &tx,
        EntryKind::ResultRecorded,
        &format!("task:{id}"),
        &json!({"task": id.0, "result": result.code(), "by": by}),
        now,
    )?;
    tx.commit()?;
    get(conn, id)
}

/// Sets a task's result by `t` ([`Transition::Resolve`] or [`Transition::Decide`]) inside the
/// caller's transaction, which also writes the audit entry.
pub fn record_result(
    tx: &Transaction<'_>,
    id: TaskId,
    t: Transition,
    result: Category,
    comment: &str,
    now: UnixMillis,
) -> Result<(), TaskError> {
    apply(tx, id, t, now)?;
    tx.prepare_cached(
        "UPDATE tasks SET result = ?2, comment = ?3, resolved_ms = ?4 WHERE id = ?1",
    )?
    .execute(params![id.0, result.code(), comment, now.0])?;
    Ok(())
}

/// What a referral names, checked against the item list and the entity library.
#[derive(Debug, Clone)]
pub struct NewReferral<'a> {
    /// The entity's credit code.
    pub entity: &'a str,
    /// The department entering it.
    pub department: &'a str,
    /// The item.
    pub item: &'a str,
    /// What was reported.
    pub reason: &'a str,
    /// Who entered it (`user:ID`, `cli`, `demo`).
    pub entered_by: &'a str,
}
