//! Inspectors on a task: assigning, checking the assignment, replacing one.

use super::*;

/// After a recusal in draw `draw`: the replacement takes the recused inspector's place on the
/// entity's tasks of that draw.
pub fn replace_inspector(
    tx: &(impl Sql + ?Sized),
    draw: &str,
    entity: &str,
    recused: &str,
    replacement: &str,
) -> Result<(), TaskError> {
    // A task the replacement is already on keeps the recused inspector's row (what SQLite's
    // `UPDATE OR IGNORE` did; PostgreSQL has no `OR` clauses).
    tx.execute(
        "UPDATE task_inspectors SET inspector = $4
         WHERE inspector = $3 AND task IN (SELECT id FROM tasks WHERE draw = $1 AND entity = $2)
           AND NOT EXISTS (SELECT 1 FROM task_inspectors x
                           WHERE x.task = task_inspectors.task AND x.inspector = $4)",
        args![draw, entity, recused, replacement],
    )?;
    Ok(())
}

/// Assigns inspectors to a task (replacing earlier ones), with an audit entry.
pub fn assign(
    tx: &(impl Sql + ?Sized),
    id: TaskId,
    inspectors: &[String],
    now: UnixMillis,
) -> Result<(), TaskError> {
    tx.execute("DELETE FROM task_inspectors WHERE task = $1", args![id.0])?;
    for i in inspectors {
        tx.execute(
            "INSERT INTO task_inspectors (task, inspector) VALUES ($1, $2)",
            args![id.0, i],
        )?;
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
    conn: &Conn,
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
    let tx = conn.transaction()?;
    let task = get(&tx, id)?;
    for i in &unique {
        let row: Option<(String, bool, String)> = tx.query_opt(
            "SELECT department, active, conflicts FROM registry_inspectors WHERE id = $1",
            args![i],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
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
