//! The tasks table, its notes and its inspectors: the only SQL against them in the crate (a
//! test walks the sources to keep it so). Draws, joint plans, plans, checks, results and the
//! API call these functions. Every change is one transaction (`BEGIN IMMEDIATE`, see
//! `store/`) that also appends its audit entry, so the log and the tasks never disagree; the
//! functions that take a `Transaction` run inside their caller's.

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

/// Creates a referral task (a complaint, a tip-off) for an entity of the entity library, for
/// an item of the item list that belongs to the department entering it.
pub fn create_referral(
    conn: &mut Connection,
    r: &NewReferral<'_>,
    now: UnixMillis,
) -> Result<Task, TaskError> {
    if r.reason.trim().is_empty() {
        return Err(TaskError::Invalid(
            "a referral needs a detail saying what was reported".into(),
        ));
    }
    let code = CreditCode::parse(r.entity).map_err(|e| {
        TaskError::Invalid(format!(
            "entity {:?} is not a unified social credit code: {e}",
            r.entity
        ))
    })?;
    let department = Department::new(r.department)
        .map_err(|e| TaskError::Invalid(format!("department: {e}")))?;
    let item = ItemId::new(r.item).map_err(|e| TaskError::Invalid(format!("item: {e}")))?;
    let tx = immediate(conn)?;
    let known: bool = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM registry_entities WHERE code = ?1)")?
        .query_row([code.as_str()], |r| r.get(0))?;
    if !known {
        return Err(TaskError::Invalid(format!(
            "entity {code} is not in the entity library: import it first"
        )));
    }
    let owner: Option<String> = tx
        .prepare_cached("SELECT department FROM registry_items WHERE id = ?1")?
        .query_row([item.as_str()], |r| r.get(0))
        .optional()?;
    match owner {
        None => {
            return Err(TaskError::Invalid(format!(
                "item {item} is not in the item list"
            )))
        }
        Some(owner) if owner != department.as_str() => {
            return Err(TaskError::Invalid(format!(
                "item {item} belongs to department {owner}, not {department}"
            )))
        }
        Some(_) => {}
    }
    let day = super::china_day(now);
    tx.prepare_cached(
        "INSERT INTO tasks (kind, entity, department, item, window_start, window_end, status,
                            opened_ms, detail, entered_by, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7, ?8, ?9, ?7)",
    )?
    .execute(params![
        TaskKind::Referral.as_str(),
        code.as_str(),
        department.as_str(),
        item.as_str(),
        day,
        TaskStatus::Drawn.as_str(),
        now.0,
        r.reason,
        r.entered_by
    ])?;
    let id = TaskId(tx.last_insert_rowid());
    audit::append(
        &tx,
        EntryKind::TaskOpened,
        &format!("task:{id}"),
        &json!({"task": id.0, "kind": TaskKind::Referral.as_str(), "entity": code.as_str(),
                "item": item.as_str()}),
        now,
    )?;
    tx.commit()?;
    get(conn, id)
}

/// A drawn task to create: the kind (random or joint), the entity, the department's item and
/// window, and the inspectors the draw gave it.
#[derive(Debug, Clone)]
pub struct NewDrawn<'a> {
    /// [`Kind::Random`] or [`Kind::Joint`].
    pub kind: &'a Kind,
    /// The entity.
    pub entity: &'a CreditCode,
    /// The department.
    pub department: &'a Department,
    /// Its item.
    pub item: &'a ItemId,
    /// The inspection window.
    pub window: (&'a str, &'a str),
    /// The inspectors drawn for it.
    pub inspectors: &'a [InspectorId],
}

/// Creates a drawn task and assigns its inspectors, inside the caller's transaction (the
/// draw's reveal).
pub fn create_drawn(
    tx: &Transaction<'_>,
    t: &NewDrawn<'_>,
    now: UnixMillis,
) -> Result<TaskId, TaskError> {
    let (draw, batch, plan, departments) = match t.kind {
        Kind::Random { draw, batch } => (draw, batch, None, None),
        Kind::Joint {
            draw,
            batch,
            plan,
            departments,
        } => (
            draw,
            batch,
            Some(plan.as_str()),
            Some(serde_json::to_string(departments).expect("departments serialise")),
        ),
        other => {
            return Err(TaskError::Invalid(format!(
                "a draw makes random and joint tasks, not {} tasks",
                other.tag()
            )))
        }
    };
    tx.prepare_cached(
        "INSERT INTO tasks (draw, batch, joint_plan, departments, kind, entity, department, item,
                            window_start, window_end, status, opened_ms, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12)",
    )?
    .execute(params![
        draw.as_str(),
        batch,
        plan,
        departments,
        t.kind.tag().as_str(),
        t.entity.as_str(),
        t.department.as_str(),
        t.item.as_str(),
        t.window.0,
        t.window.1,
        TaskStatus::Drawn.as_str(),
        now.0
    ])?;
    let id = TaskId(tx.last_insert_rowid());
    let inspectors: Vec<String> = t.inspectors.iter().map(|i| i.to_string()).collect();
    assign(tx, id, &inspectors, now)?;
    Ok(id)
}

/// After a recusal in draw `draw`: the replacement takes the recused inspector's place on the
/// entity's tasks of that draw.
pub fn replace_inspector(
    tx: &Transaction<'_>,
    draw: &str,
    entity: &str,
    recused: &str,
    replacement: &str,
) -> Result<(), TaskError> {
    tx.prepare_cached(
        "UPDATE OR IGNORE task_inspectors SET inspector = ?4
         WHERE inspector = ?3 AND task IN (SELECT id FROM tasks WHERE draw = ?1 AND entity = ?2)",
    )?
    .execute(params![draw, entity, recused, replacement])?;
    Ok(())
}

/// Assigns inspectors to a task (replacing earlier ones), with an audit entry.
pub fn assign(
    tx: &Transaction<'_>,
    id: TaskId,
    inspectors: &[String],
    now: UnixMillis,
) -> Result<(), TaskError> {
    tx.prepare_cached("DELETE FROM task_inspectors WHERE task = ?1")?
        .execute([id.0])?;
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
    let mut unique = inspectors.to_vec();
    unique.sort();
    unique.dedup();
    if unique.len() < 2 {
        return Err(TaskError::Invalid(format!(
            "a task needs at least two different inspectors; {} given",
            unique.len()
        )));
    }
    let tx = immediate(conn)?;
    let task = get(&tx, id)?;
    for i in &unique {
        let row: Option<(String, bool, String)> = tx
            .prepare_cached(
                "SELECT department, active, conflicts FROM registry_inspectors WHERE id = ?1",
            )?
            .query_row([i], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        let Some((department, active, conflicts)) = row else {
            return Err(TaskError::Invalid(format!(
                "inspector {i} is not in the inspector library"
            )));
        };
        if !active {
            return Err(TaskError::Invalid(format!("inspector {i} is not active")));
        }
        if department != task.department.as_str() {
            return Err(TaskError::Invalid(format!(
                "inspector {i} belongs to {department}, the task to {}",
                task.department
            )));
        }
        let conflicts: Vec<String> = serde_json::from_str(&conflicts).unwrap_or_default();
        if conflicts.iter().any(|c| c == task.entity.as_str()) {
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

/// A task's place in the year's schedule, as joint inspections and quotas need it.
pub fn scheduled(conn: &Connection) -> Result<Vec<crate::joint::Task>, TaskError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, entity, department, item, window_start, window_end, draw IS NOT NULL
         FROM tasks ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, bool>(6)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, entity, department, item, start, end, drawn) = row?;
        // Tasks of entities outside the library (anomalies on agents' own entity ids) and
        // of no item take part in no joint inspection.
        let (Ok(entity), Ok(department), Ok(item)) = (
            CreditCode::parse(&entity),
            Department::new(&department),
            ItemId::new(&item),
        ) else {
            continue;
        };
        let corrupt = |column, value: &str| TaskError::Corrupt {
            id,
            column,
            value: value.to_owned(),
        };
        out.push(crate::joint::Task {
            id,
            entity,
            department,
            item,
            start: PlanDate::new(&start).map_err(|_| corrupt("window_start", &start))?,
            end: PlanDate::new(&end).map_err(|_| corrupt("window_end", &end))?,
            drawn,
        });
    }
    Ok(out)
}

/// A drawn task of a plan, as progress counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanTask {
    /// The entity.
    pub entity: String,
    /// The department.
    pub department: String,
    /// Its status.
    pub status: TaskStatus,
}

/// The tasks drawn in the revealed draws of plan `plan`.
pub fn of_plan(conn: &Connection, plan: &str) -> Result<Vec<PlanTask>, TaskError> {
    let mut stmt = conn.prepare_cached(
        "SELECT t.id, t.entity, t.department, t.status FROM tasks t
         JOIN draws d ON d.id = t.draw WHERE d.plan = ?1 ORDER BY t.id",
    )?;
    let rows = stmt.query_map([plan], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, entity, department, status) = row?;
        out.push(PlanTask {
            entity,
            department,
            status: status.parse().map_err(|_| TaskError::Corrupt {
                id,
                column: "status",
                value: status,
            })?,
        });
    }
    Ok(out)
}

/// The entities drawn in the revealed draws of plan `plan`.
pub fn drawn_for_plan(conn: &Connection, plan: &str) -> Result<HashSet<String>, TaskError> {
    Ok(of_plan(conn, plan)?.into_iter().map(|t| t.entity).collect())
}

/// A published task joined with the libraries, as the public feed shows it.
#[derive(Debug, Clone)]
pub struct PublishedRow {
    /// The task.
    pub task_id: i64,
    /// Its kind.
    pub kind: String,
    /// The entity.
    pub entity_code: String,
    /// Its registered name, or "".
    pub entity_name: String,
    /// Its domain, or "".
    pub domain: String,
    /// The department.
    pub department: String,
    /// The item.
    pub item: String,
    /// The item's name, or "".
    pub item_name: String,
    /// First day of the window.
    pub window_start: String,
    /// Last day.
    pub window_end: String,
    /// The result category's code.
    pub result: Option<String>,
    /// When it was published.
    pub published_ms: i64,
}

/// Published tasks matching `filter`, newest first.
pub fn published(
    conn: &Connection,
    filter: &crate::results::PublicFilter,
) -> Result<Vec<PublishedRow>, TaskError> {
    let mut stmt = conn.prepare_cached(
        "SELECT t.id, t.kind, t.entity, COALESCE(re.name, ''),
                COALESCE(re.domain, e.domain, ''), t.department, t.item, COALESCE(ri.name, ''),
                t.window_start, t.window_end, t.result, t.published_ms
         FROM tasks t
         LEFT JOIN registry_entities re ON re.code = t.entity
         LEFT JOIN entities e ON e.name = t.entity
         LEFT JOIN registry_items ri ON ri.id = t.item
         WHERE t.status = ?7 AND t.published_ms IS NOT NULL
           AND (?1 IS NULL OR COALESCE(re.domain, e.domain) = ?1)
           AND (?2 IS NULL OR t.department = ?2)
           AND (?3 IS NULL OR t.entity = ?3)
           AND (?4 IS NULL OR t.published_ms >= ?4)
           AND (?5 IS NULL OR t.published_ms < ?5)
         ORDER BY t.published_ms DESC, t.id DESC
         LIMIT ?6",
    )?;
    let limit = filter.limit.map_or(-1, i64::from);
    let rows = stmt.query_map(
        params![
            filter.domain,
            filter.department,
            filter.entity,
            filter.since_ms,
            filter.until_ms,
            limit,
            TaskStatus::Published.as_str()
        ],
        |r| {
            Ok(PublishedRow {
                task_id: r.get(0)?,
                kind: r.get(1)?,
                entity_code: r.get(2)?,
                entity_name: r.get(3)?,
                domain: r.get(4)?,
                department: r.get(5)?,
                item: r.get(6)?,
                item_name: r.get(7)?,
                window_start: r.get(8)?,
                window_end: r.get(9)?,
                result: r.get(10)?,
                published_ms: r.get(11)?,
            })
        },
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// What a notification says about a task, read in the caller's transaction.
#[derive(Debug, Clone)]
pub struct TaskLabels {
    /// The task's department.
    pub department: String,
    /// The entity.
    pub entity: String,
    /// An anomaly task's rule.
    pub rule: Option<String>,
    /// An anomaly task's severity.
    pub severity: Option<String>,
    /// The item.
    pub item: String,
    /// When an anomaly task opened.
    pub opened_ms: Option<i64>,
    /// The entity's domain: from its agents, else from the entity library.
    pub domain: Option<String>,
}

/// The labels of task `id`, if it exists (plain SQLite errors: the notification hooks run
/// inside other modules' transactions and speak rusqlite).
pub fn labels(conn: &(impl Sql + ?Sized), id: TaskId) -> Result<Option<TaskLabels>, DbError> {
    conn.query_opt(
        "SELECT t.department, t.entity, t.rule, t.severity, t.item, t.opened_ms,
                coalesce((SELECT domain FROM agents a WHERE a.entity = t.entity LIMIT 1),
                         (SELECT domain FROM registry_entities e WHERE e.code = t.entity))
         FROM tasks t WHERE t.id = $1",
        args![id.0],
        |r| {
            Ok(TaskLabels {
                department: r.get(0)?,
                entity: r.get(1)?,
                rule: r.get(2)?,
                severity: r.get(3)?,
                item: r.get(4)?,
                opened_ms: r.get(5)?,
                domain: r.get(6)?,
            })
        },
    )
}

/// Anomaly tasks in one of `statuses` that opened at or before `cutoff_ms`, by id.
pub fn anomalies_opened_by(
    conn: &Connection,
    statuses: &[TaskStatus],
    cutoff_ms: i64,
) -> rusqlite::Result<Vec<TaskId>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, status FROM tasks WHERE kind = ?1 AND opened_ms <= ?2 ORDER BY id",
    )?;
    let rows = stmt.query_map(params![TaskKind::Anomaly.as_str(), cutoff_ms], |r| {
        Ok((TaskId(r.get(0)?), r.get::<_, String>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, status) = row?;
        if statuses.iter().any(|s| s.as_str() == status) {
            out.push(id);
        }
    }
    Ok(out)
}

/// Resolved tasks whose result was recorded at or before `cutoff_ms`: (id, resolved_ms).
pub fn resolved_by(conn: &Connection, cutoff_ms: i64) -> rusqlite::Result<Vec<(TaskId, i64)>> {
    conn.prepare_cached(
        "SELECT id, resolved_ms FROM tasks
         WHERE status = ?1 AND resolved_ms IS NOT NULL AND resolved_ms <= ?2 ORDER BY id",
    )?
    .query_map(params![TaskStatus::Resolved.as_str(), cutoff_ms], |r| {
        Ok((TaskId(r.get(0)?), r.get(1)?))
    })?
    .collect()
}

/// The department of the entity's newest task, if it has any.
pub fn newest_department(conn: &Connection, entity: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT department FROM tasks WHERE entity = ?1 ORDER BY id DESC LIMIT 1")?
        .query_row([entity], |r| r.get(0))
        .optional()
}
