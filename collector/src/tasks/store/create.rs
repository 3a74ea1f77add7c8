//! Opening referral and drawn tasks.

use super::*;

/// Creates a referral task (a complaint, a tip-off) for an entity of the entity library, for
/// an item of the item list that belongs to the department entering it.
pub fn create_referral(
    conn: &Conn,
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
    let tx = conn.transaction()?;
    let known: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM registry_entities WHERE code = $1)",
        args![code.as_str()],
        |r| r.get(0),
    )?;
    if !known {
        return Err(TaskError::Invalid(format!(
            "entity {code} is not in the entity library: import it first"
        )));
    }
    let owner: Option<String> = tx.query_opt(
        "SELECT department FROM registry_items WHERE id = $1",
        args![item.as_str()],
        |r| r.get(0),
    )?;
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
    let day = crate::tasks::china_day(now);
    let id = TaskId(tx.query_row(
        "INSERT INTO tasks (kind, entity, department, item, window_start, window_end, status,
                            opened_ms, detail, entered_by, updated_ms)
         VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8, $9, $7) RETURNING id",
        args![
            TaskKind::Referral.as_str(),
            code.as_str(),
            department.as_str(),
            item.as_str(),
            day,
            TaskStatus::Drawn.as_str(),
            now.0,
            r.reason,
            r.entered_by
        ],
        |r| r.get(0),
    )?);
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
    tx: &(impl Sql + ?Sized),
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
    let id = TaskId(tx.query_row(
        "INSERT INTO tasks (draw, batch, joint_plan, departments, kind, entity, department, item,
                            window_start, window_end, status, opened_ms, updated_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) RETURNING id",
        args![
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
        ],
        |r| r.get(0),
    )?);
    let inspectors: Vec<String> = t.inspectors.iter().map(|i| i.to_string()).collect();
    assign(tx, id, &inspectors, now)?;
    Ok(id)
}
