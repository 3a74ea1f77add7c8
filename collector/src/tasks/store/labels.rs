//! What the notification scans read: a task's labels, anomalies by age, resolutions, an entity's department.

use super::*;

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
    conn: &(impl Sql + ?Sized),
    statuses: &[TaskStatus],
    cutoff_ms: i64,
) -> Result<Vec<TaskId>, DbError> {
    let rows = conn.query(
        "SELECT id, status FROM tasks WHERE kind = $1 AND opened_ms <= $2 ORDER BY id",
        args![TaskKind::Anomaly.as_str(), cutoff_ms],
        |r| Ok((TaskId(r.get(0)?), r.get::<String>(1)?)),
    )?;
    Ok(rows
        .into_iter()
        .filter(|(_, status)| statuses.iter().any(|s| s.as_str() == status))
        .map(|(id, _)| id)
        .collect())
}

/// Resolved tasks whose result was recorded at or before `cutoff_ms`: (id, resolved_ms).
pub fn resolved_by(
    conn: &(impl Sql + ?Sized),
    cutoff_ms: i64,
) -> Result<Vec<(TaskId, i64)>, DbError> {
    conn.query(
        "SELECT id, resolved_ms FROM tasks
         WHERE status = $1 AND resolved_ms IS NOT NULL AND resolved_ms <= $2 ORDER BY id",
        args![TaskStatus::Resolved.as_str(), cutoff_ms],
        |r| Ok((TaskId(r.get(0)?), r.get(1)?)),
    )
}

/// The department of the entity's newest task, if it has any.
pub fn newest_department(
    conn: &(impl Sql + ?Sized),
    entity: &str,
) -> Result<Option<String>, DbError> {
    conn.query_opt(
        "SELECT department FROM tasks WHERE entity = $1 ORDER BY id DESC LIMIT 1",
        args![entity],
        |r| r.get(0),
    )
}
