//! Inspectors on a task: assigning, checking the assignment, replacing one.

use super::*;

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
