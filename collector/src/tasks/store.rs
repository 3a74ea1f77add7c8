//! Tasks in SQLite. Every change is one transaction that also appends its audit entry, so
//! the log and the tasks never disagree.

use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};
use serde_json::json;

use super::{Note, Task, TaskError, TaskFilter, TaskId, TaskKind, TaskStatus};
use crate::audit::{self, EntryKind};
use crate::results::Category;
use spotcheck_protocol::UnixMillis;

const COLUMNS: &str = "id, kind, status, entity, department, item, draw, joint, window_start, \
     window_end, rule, severity, opened_ms, detail, cleared_ms, updated_ms, result, comment, \
     resolved_ms, published_ms";

fn parse<T: std::str::FromStr>(
    id: i64,
    column: &'static str,
    value: String,
) -> Result<T, TaskError> {
    value
        .parse()
        .map_err(|_| TaskError::Corrupt { id, column, value })
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<(Task, String, String, Option<String>)> {
    Ok((
        Task {
            id: TaskId(r.get(0)?),
            kind: super::TaskKind::Random,
            status: TaskStatus::Drawn,
            entity: r.get(3)?,
            department: r.get(4)?,
            item: r.get(5)?,
            draw: r.get(6)?,
            joint: r.get(7)?,
            window_start: r.get(8)?,
            window_end: r.get(9)?,
            rule: r.get(10)?,
            severity: None,
            opened_ms: r.get(12)?,
            detail: r.get(13)?,
            cleared_ms: r.get(14)?,
            updated_ms: r.get(15)?,
            result: r.get(16)?,
            comment: r.get(17)?,
            resolved_ms: r.get(18)?,
            published_ms: r.get(19)?,
            inspectors: Vec::new(),
        },
        r.get(1)?,
        r.get(2)?,
        r.get(11)?,
    ))
}

fn finish(
    conn: &Connection,
    (mut t, kind, status, severity): (Task, String, String, Option<String>),
) -> Result<Task, TaskError> {
    t.kind = parse(t.id.0, "kind", kind)?;
    t.status = parse(t.id.0, "status", status)?;
    t.severity = severity.map(|s| parse(t.id.0, "severity", s)).transpose()?;
    t.inspectors = inspectors(conn, t.id)?;
    Ok(t)
}

/// The inspectors assigned to a task.
pub fn inspectors(conn: &Connection, id: TaskId) -> Result<Vec<String>, TaskError> {
    let mut stmt = conn.prepare_cached(
        "SELECT inspector FROM task_inspectors WHERE task = ?1 ORDER BY inspector",
    )?;
    let rows = stmt.query_map([id.0], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Tasks matching `filter`, newest first.
pub fn list(conn: &Connection, filter: &TaskFilter) -> Result<Vec<Task>, TaskError> {
    let mut sql = format!("SELECT {COLUMNS} FROM tasks t WHERE 1 = 1");
    let mut args: Vec<Box<dyn rusqlite::ToSql>> = Vec::new();
    if let Some(k) = filter.kind {
        args.push(Box::new(k.as_str()));
        sql += &format!(" AND kind = ?{}", args.len());
    }
    if let Some(s) = filter.status {
        args.push(Box::new(s.as_str()));
        sql += &format!(" AND status = ?{}", args.len());
    }
    if let Some(e) = &filter.entity {
        args.push(Box::new(e.clone()));
        sql += &format!(" AND entity = ?{}", args.len());
    }
    if let Some(d) = &filter.department {
        args.push(Box::new(d.clone()));
        sql += &format!(" AND department = ?{}", args.len());
    }
    if let Some(i) = &filter.inspector {
        args.push(Box::new(i.clone()));
        sql += &format!(
            " AND EXISTS (SELECT 1 FROM task_inspectors ti WHERE ti.task = t.id AND ti.inspector = ?{})",
            args.len()
        );
    }
    if let Some(b) = filter.before {
        args.push(Box::new(b.0));
        sql += &format!(" AND id < ?{}", args.len());
    }
    args.push(Box::new(i64::from(filter.limit)));
    sql += &format!(" ORDER BY id DESC LIMIT ?{}", args.len());
    let mut stmt = conn.prepare(&sql)?;
    let rows: Vec<_> = stmt
        .query_map(rusqlite::params_from_iter(args.iter()), from_row)?
        .collect::<Result<_, _>>()?;
    rows.into_iter().map(|r| finish(conn, r)).collect()
}

/// One task.
pub fn get(conn: &Connection, id: TaskId) -> Result<Task, TaskError> {
    let row = conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM tasks t WHERE id = ?1"),
            [id.0],
            from_row,
        )
        .optional()?
        .ok_or(TaskError::NotFound(id))?;
    finish(conn, row)
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
    tx: &Transaction<'_>,
    id: TaskId,
    now: UnixMillis,
    kind: &str,
    text: &str,
) -> rusqlite::Result<()> {
    tx.prepare_cached("INSERT INTO task_notes (task, ts_ms, kind, text) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![id.0, now.0, kind, text])?;
    Ok(())
}

fn status_of(tx: &Transaction<'_>, id: TaskId) -> Result<(TaskKind, TaskStatus), TaskError> {
    let (kind, status): (String, String) = tx
        .query_row(
            "SELECT kind, status FROM tasks WHERE id = ?1",
            [id.0],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .ok_or(TaskError::NotFound(id))?;
    Ok((parse(id.0, "kind", kind)?, parse(id.0, "status", status)?))
}

/// A supervisor has seen an open anomaly task.
pub fn acknowledge(
    conn: &mut Connection,
    id: TaskId,
    by: &str,
    now: UnixMillis,
) -> Result<Task, TaskError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let (_, status) = status_of(&tx, id)?;
    if status != TaskStatus::Open {
        return Err(TaskError::WrongStatus {
            id,
            status,
            action: "acknowledging",
            needs: "open",
        });
    }
    tx.execute(
        "UPDATE tasks SET status = 'acknowledged', updated_ms = ?2 WHERE id = ?1",
        params![id.0, now.0],
    )?;
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
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let (kind, status) = status_of(&tx, id)?;
    match kind {
        TaskKind::Anomaly | TaskKind::Referral => {}
        TaskKind::Random | TaskKind::Joint => {
            return Err(TaskError::Invalid(format!(
                "task {id} is a {kind} task: its result comes from an assigned inspector's decision on its remote check (POST /api/v1/checks/ID/decision)"
            )))
        }
    }
    if !matches!(
        status,
        TaskStatus::Open | TaskStatus::Acknowledged | TaskStatus::Drawn
    ) {
        return Err(TaskError::WrongStatus {
            id,
            status,
            action: "resolving",
            needs: "open, acknowledged or drawn",
        });
    }
    if comment.trim().is_empty() {
        return Err(TaskError::Invalid(
            "a result needs a comment saying what was found and done".into(),
        ));
    }
    record_result(&tx, id, result, comment, now)?;
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

/// Sets a task's result (inside the caller's transaction, which also writes the audit entry).
pub(crate) fn record_result(
    tx: &Transaction<'_>,
    id: TaskId,
    result: Category,
    comment: &str,
    now: UnixMillis,
) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE tasks SET status = 'resolved', result = ?2, comment = ?3, resolved_ms = ?4,
         updated_ms = ?4 WHERE id = ?1",
        params![id.0, result.code(), comment, now.0],
    )?;
    Ok(())
}

/// Creates a referral task (a complaint, a tip-off) for an entity.
pub fn create_referral(
    conn: &mut Connection,
    entity: &str,
    department: &str,
    item: &str,
    detail: &str,
    now: UnixMillis,
) -> Result<Task, TaskError> {
    if detail.trim().is_empty() {
        return Err(TaskError::Invalid(
            "a referral needs a detail saying what was reported".into(),
        ));
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let day = super::china_day(now);
    tx.execute(
        "INSERT INTO tasks (kind, entity, department, item, window_start, window_end, status,
                            opened_ms, detail, updated_ms)
         VALUES ('referral', ?1, ?2, ?3, ?4, ?4, 'drawn', ?5, ?6, ?5)",
        params![entity, department, item, day, now.0, detail],
    )?;
    let id = TaskId(tx.last_insert_rowid());
    audit::append(
        &tx,
        EntryKind::TaskOpened,
        &format!("task:{id}"),
        &json!({"task": id.0, "kind": "referral", "entity": entity, "item": item}),
        now,
    )?;
    tx.commit()?;
    get(conn, id)
}

/// Assigns inspectors to a task (replacing earlier ones), with an audit entry.
pub fn assign(
    tx: &Transaction<'_>,
    id: TaskId,
    inspectors: &[String],
    now: UnixMillis,
) -> Result<(), TaskError> {
    tx.execute("DELETE FROM task_inspectors WHERE task = ?1", [id.0])?;
    let mut ins =
        tx.prepare_cached("INSERT INTO task_inspectors (task, inspector) VALUES (?1, ?2)")?;
    for i in inspectors {
        ins.execute(params![id.0, i])?;
    }
    audit::append(
        tx,
        EntryKind::Assignment,
        &format!("task:{id}"),
        &json!({"task": id.0, "inspectors": inspectors}),
        now,
    )?;
    Ok(())
}

/// Assigns inspectors to a task by hand (a referral, say): each must be an active inspector
/// of the task's department without a conflict of interest with the entity, and at least two
/// are needed (行政处罚法 art. 42).
pub fn assign_checked(
    conn: &mut Connection,
    id: TaskId,
    inspectors: &[String],
    now: UnixMillis,
) -> Result<Task, TaskError> {
    let task = get(conn, id)?;
    let mut unique = inspectors.to_vec();
    unique.sort();
    unique.dedup();
    if unique.len() < 2 {
        return Err(TaskError::Invalid(format!(
            "a task needs at least two different inspectors; {} given",
            unique.len()
        )));
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for i in &unique {
        let row: Option<(String, bool, String)> = tx
            .query_row(
                "SELECT department, active, conflicts FROM registry_inspectors WHERE id = ?1",
                [i],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((department, active, conflicts)) = row else {
            return Err(TaskError::Invalid(format!(
                "inspector {i} is not in the inspector library"
            )));
        };
        if !active {
            return Err(TaskError::Invalid(format!("inspector {i} is not active")));
        }
        if department != task.department {
            return Err(TaskError::Invalid(format!(
                "inspector {i} belongs to {department}, the task to {}",
                task.department
            )));
        }
        let conflicts: Vec<String> = serde_json::from_str(&conflicts).unwrap_or_default();
        if conflicts.contains(&task.entity) {
            return Err(TaskError::Invalid(format!(
                "inspector {i} has a conflict of interest with {} and must recuse",
                task.entity
            )));
        }
    }
    assign(&tx, id, &unique, now)?;
    tx.commit()?;
    get(conn, id)
}
