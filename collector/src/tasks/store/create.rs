//! Opening referral and drawn tasks.

use std::collections::HashMap;

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

/// The columns a drawn task's kind fills: draw, batch, joint plan, departments (JSON).
type DrawnColumns<'a> = (
    &'a DrawId,
    &'a Option<String>,
    Option<&'a str>,
    Option<String>,
);

fn drawn_columns(kind: &Kind) -> Result<DrawnColumns<'_>, TaskError> {
    match kind {
        Kind::Random { draw, batch } => Ok((draw, batch, None, None)),
        Kind::Joint {
            draw,
            batch,
            plan,
            departments,
        } => Ok((
            draw,
            batch,
            Some(plan.as_str()),
            Some(serde_json::to_string(departments).expect("departments serialise")),
        )),
        other => Err(TaskError::Invalid(format!(
            "a draw makes random and joint tasks, not {} tasks",
            other.tag()
        ))),
    }
}

/// Creates a drawn task and assigns its inspectors, inside the caller's transaction (the
/// draw's reveal).
pub fn create_drawn(
    tx: &(impl Sql + ?Sized),
    t: &NewDrawn<'_>,
    now: UnixMillis,
) -> Result<TaskId, TaskError> {
    let (draw, batch, plan, departments) = drawn_columns(t.kind)?;
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

/// The drawn tasks of one draw for one department: what [`NewDrawn`] holds, with the entity
/// and its inspectors per task.
#[derive(Debug, Clone)]
pub struct NewDrawnAll<'a> {
    /// [`Kind::Random`] or [`Kind::Joint`].
    pub kind: &'a Kind,
    /// The department.
    pub department: &'a Department,
    /// Its item.
    pub item: &'a ItemId,
    /// The inspection window.
    pub window: (&'a str, &'a str),
    /// Per task, in the order the tasks are created: the entity (each once) and the
    /// inspectors drawn for it.
    pub teams: Vec<(&'a CreditCode, &'a [InspectorId])>,
}

/// Rows per multi-row `INSERT` into `tasks` (and half of it into `task_inspectors`, two
/// parameters a row). SQLite finds a parameter by its name with a scan of the statement's
/// names, so a statement's cost per row grows with its parameters: a few dozen rows take most
/// of the per-statement cost away and keep that scan short.
const TASKS_PER_INSERT: usize = 64;

/// The sizes a list of `n` rows is written in: full chunks of `max`, then the remainder in
/// powers of two, so that a handful of statement texts serve every length (each is prepared
/// once and kept in the connection's cache).
fn chunk_sizes(mut n: usize, max: usize) -> Vec<usize> {
    let mut out = vec![max; n / max];
    n %= max;
    let mut size = max.next_power_of_two();
    while n > 0 {
        while size > n {
            size /= 2;
        }
        out.push(size);
        n -= size;
    }
    out
}

/// [`create_drawn`] for every team of `t`, inside the caller's transaction (the draw's
/// reveal): the same rows, with the task ids given in the order of `t.teams`, and the same
/// audit entries in the same order, but a few dozen tasks and assignments per statement
/// instead of four statements a task (at 300,000 drawn entities the statements were most of
/// the reveal: BENCHMARKS.md, issue 17). Returns the ids in the order of `t.teams`.
pub fn create_drawn_all(
    tx: &(impl Sql + ?Sized),
    t: &NewDrawnAll<'_>,
    now: UnixMillis,
) -> Result<Vec<TaskId>, TaskError> {
    let (draw, batch, plan, departments) = drawn_columns(t.kind)?;
    let tag = t.kind.tag();
    let status = TaskStatus::Drawn.as_str();
    let mut ids: Vec<TaskId> = Vec::with_capacity(t.teams.len());
    let mut at = 0;
    for size in chunk_sizes(t.teams.len(), TASKS_PER_INSERT) {
        let chunk = &t.teams[at..at + size];
        at += size;
        // $1–$11 are the same for every row; each row adds its entity.
        let mut sql = String::from(
            "INSERT INTO tasks (draw, batch, joint_plan, departments, kind, department, item,
                                window_start, window_end, status, opened_ms, updated_ms, entity)
             VALUES ",
        );
        for i in 0..size {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!(
                "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, ${})",
                12 + i
            ));
        }
        sql.push_str(" RETURNING id, entity");
        let common: [&dyn Arg; 11] = [
            &draw.as_str(),
            batch,
            &plan,
            &departments,
            &tag.as_str(),
            &t.department.as_str(),
            &t.item.as_str(),
            &t.window.0,
            &t.window.1,
            &status,
            &now.0,
        ];
        let entities: Vec<&str> = chunk.iter().map(|(e, _)| e.as_str()).collect();
        let mut params: Vec<&dyn Arg> = common.to_vec();
        params.extend(entities.iter().map(|e| e as &dyn Arg));
        let rows: Vec<(i64, String)> = tx.query(&sql, &params, |r| Ok((r.get(0)?, r.get(1)?)))?;
        // The order of RETURNING's rows is the engine's to choose: match them by entity.
        let mut by_entity: HashMap<String, i64> =
            rows.into_iter().map(|(id, entity)| (entity, id)).collect();
        for e in &entities {
            let id = by_entity.remove(*e).ok_or_else(|| {
                TaskError::Invalid(format!(
                    "entity {e} is listed twice among the tasks of one draw"
                ))
            })?;
            ids.push(TaskId(id));
        }
    }
    // The assignments: two parameters a row.
    let pairs: Vec<(i64, &str)> = ids
        .iter()
        .zip(&t.teams)
        .flat_map(|(id, (_, team))| team.iter().map(move |i| (id.0, i.as_str())))
        .collect();
    let mut at = 0;
    for size in chunk_sizes(pairs.len(), TASKS_PER_INSERT / 2) {
        let chunk = &pairs[at..at + size];
        at += size;
        let mut sql = String::from("INSERT INTO task_inspectors (task, inspector) VALUES ");
        let mut params: Vec<&dyn Arg> = Vec::with_capacity(2 * size);
        for (i, (task, inspector)) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("(${}, ${})", 2 * i + 1, 2 * i + 2));
            params.push(task);
            params.push(inspector);
        }
        tx.execute(&sql, &params)?;
    }
    // One entry per task, as [`assign`] writes it, in task order; appended in one pass (the
    // chain's head read once, a few entries per statement), the same entries as one by one.
    audit::append_all(
        tx,
        ids.iter().zip(&t.teams).map(|(id, (_, team))| {
            let inspectors: Vec<&str> = team.iter().map(InspectorId::as_str).collect();
            audit::NewEntry {
                kind: EntryKind::Assignment,
                subject: format!("task:{id}"),
                body: json!({"task": id.0, "inspectors": inspectors}),
            }
        }),
        now,
    )?;
    Ok(ids)
}
