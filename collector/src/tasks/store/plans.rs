//! Tasks by plan and by publication: what a plan drew, what was published.

use super::*;

/// A task's place in the year's schedule, as joint inspections and quotas need it.
pub fn scheduled(conn: &(impl Sql + ?Sized)) -> Result<Vec<crate::joint::Task>, TaskError> {
    let rows = conn.query(
        "SELECT id, entity, department, item, window_start, window_end,
                CASE WHEN draw IS NULL THEN 0 ELSE 1 END
         FROM tasks ORDER BY id",
        args![],
        |r| {
            Ok((
                r.get::<i64>(0)?,
                r.get::<String>(1)?,
                r.get::<String>(2)?,
                r.get::<String>(3)?,
                r.get::<String>(4)?,
                r.get::<String>(5)?,
                r.get::<bool>(6)?,
            ))
        },
    )?;
    let mut out = Vec::new();
    for (id, entity, department, item, start, end, drawn) in rows {
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
pub fn of_plan(conn: &(impl Sql + ?Sized), plan: &str) -> Result<Vec<PlanTask>, TaskError> {
    let rows = conn.query(
        "SELECT t.id, t.entity, t.department, t.status FROM tasks t
         JOIN draws d ON d.id = t.draw WHERE d.plan = $1 ORDER BY t.id",
        args![plan],
        |r| {
            Ok((
                r.get::<i64>(0)?,
                r.get::<String>(1)?,
                r.get::<String>(2)?,
                r.get::<String>(3)?,
            ))
        },
    )?;
    let mut out = Vec::new();
    for (id, entity, department, status) in rows {
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
pub fn drawn_for_plan(
    conn: &(impl Sql + ?Sized),
    plan: &str,
) -> Result<HashSet<String>, TaskError> {
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
    conn: &(impl Sql + ?Sized),
    filter: &crate::results::PublicFilter,
) -> Result<Vec<PublishedRow>, TaskError> {
    // Each optional filter's parameter is cast, so PostgreSQL knows its type when it is NULL;
    // no limit is the largest one (PostgreSQL refuses SQLite's -1).
    let limit = filter.limit.map_or(i64::MAX, i64::from);
    let rows = conn.query(
        "SELECT t.id, t.kind, t.entity, COALESCE(re.name, ''),
                COALESCE(re.domain, e.domain, ''), t.department, t.item, COALESCE(ri.name, ''),
                t.window_start, t.window_end, t.result, t.published_ms
         FROM tasks t
         LEFT JOIN registry_entities re ON re.code = t.entity
         LEFT JOIN entities e ON e.name = t.entity
         LEFT JOIN registry_items ri ON ri.id = t.item
         WHERE t.status = $7 AND t.published_ms IS NOT NULL
           AND (CAST($1 AS TEXT) IS NULL OR COALESCE(re.domain, e.domain) = $1)
           AND (CAST($2 AS TEXT) IS NULL OR t.department = $2)
           AND (CAST($3 AS TEXT) IS NULL OR t.entity = $3)
           AND (CAST($4 AS BIGINT) IS NULL OR t.published_ms >= $4)
           AND (CAST($5 AS BIGINT) IS NULL OR t.published_ms < $5)
         ORDER BY t.published_ms DESC, t.id DESC
         LIMIT $6",
        args![
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
    Ok(rows)
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
