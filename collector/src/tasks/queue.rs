//! The task queue: filters, a stable sort, counts of open critical and high tasks, and pages.

use serde::Serialize;

use crate::store::db::{args, Arg, Backend, DbError, Sql};
use crate::tasks::{Severity, TaskId, TaskKind, TaskStatus};

/// How the queue is ordered; every order ends with the task id, so rows never swap places
/// between two reads of the same data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    /// Newest first (the default).
    #[default]
    Newest,
    /// Oldest first.
    Oldest,
    /// Most severe first, then newest.
    Severity,
    /// Most recently changed first.
    Updated,
    /// By entity, then newest.
    Entity,
    /// By status (lifecycle order), then newest.
    Status,
}

impl Sort {
    /// Every spelling, for error messages.
    pub const NAMES: &'static str = "newest, oldest, severity, updated, entity, status";

    /// Parses the API spelling.
    pub fn parse(s: &str) -> Option<Sort> {
        Some(match s {
            "newest" => Sort::Newest,
            "oldest" => Sort::Oldest,
            "severity" => Sort::Severity,
            "updated" => Sort::Updated,
            "entity" => Sort::Entity,
            "status" => Sort::Status,
            _ => return None,
        })
    }

    fn order_by(self, backend: Backend) -> &'static str {
        match self {
            Sort::Newest => "t.id DESC",
            Sort::Oldest => "t.id ASC",
            Sort::Severity => {
                "CASE t.severity WHEN 'critical' THEN 4 WHEN 'high' THEN 3 WHEN 'medium' THEN 2 \
                 WHEN 'low' THEN 1 ELSE 0 END DESC, t.id DESC"
            }
            Sort::Updated => "coalesce(t.updated_ms, t.opened_ms, 0) DESC, t.id DESC",
            // By code point on both engines (PostgreSQL's text order follows the database's
            // collation otherwise).
            Sort::Entity => match backend {
                Backend::Sqlite => "t.entity ASC, t.id DESC",
                Backend::Postgres => "t.entity COLLATE \"C\" ASC, t.id DESC",
            },
            Sort::Status => {
                "CASE t.status WHEN 'open' THEN 0 WHEN 'drawn' THEN 1 WHEN 'acknowledged' THEN 2 \
                 WHEN 'checked' THEN 3 WHEN 'resolved' THEN 4 ELSE 5 END, t.id DESC"
            }
        }
    }
}

/// What the queue shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueQuery {
    /// Any of these kinds (empty: all).
    pub kinds: Vec<TaskKind>,
    /// Any of these statuses (empty: all).
    pub statuses: Vec<TaskStatus>,
    /// Any of these severities (empty: all, tasks without one included).
    pub severities: Vec<Severity>,
    /// Only this department.
    pub department: Option<String>,
    /// Only this item.
    pub item: Option<String>,
    /// The entity's code, or part of its code or registered name.
    pub entity: Option<String>,
    /// Filed on or after this China day (`YYYY-MM-DD`, the task's first window day).
    pub since_day: Option<String>,
    /// Filed on or before this China day.
    pub until_day: Option<String>,
    /// The order.
    pub sort: Sort,
    /// Rows skipped.
    pub offset: u32,
    /// Rows returned.
    pub limit: u32,
}

/// Open tasks the caller may see, by severity: what a supervisor must not miss.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Open (not yet acknowledged) critical tasks.
    pub open_critical: u64,
    /// Open high-severity tasks.
    pub open_high: u64,
    /// All open tasks.
    pub open: u64,
    /// Acknowledged, not yet resolved.
    pub acknowledged: u64,
}

/// One page of the queue: the ids in order, how many match in all.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The page's task ids, in order.
    pub ids: Vec<TaskId>,
    /// Tasks matching the filters.
    pub total: u64,
}

/// A statement's parameters as they are added: each addition returns its placeholder.
#[derive(Default)]
struct Params(Vec<String>);

impl Params {
    fn push(&mut self, v: impl Into<String>) -> String {
        self.0.push(v.into());
        format!("${}", self.0.len())
    }

    fn list<'a>(&mut self, vs: impl Iterator<Item = &'a str>) -> String {
        vs.map(|v| self.push(v)).collect::<Vec<_>>().join(", ")
    }

    fn args(&self) -> Vec<&dyn Arg> {
        self.0.iter().map(|a| a as &dyn Arg).collect()
    }
}

/// `needle` occurs in `haystack` (case-sensitive on both engines, unlike SQLite's `LIKE`).
fn contains(backend: Backend, haystack: &str, needle: &str) -> String {
    match backend {
        Backend::Sqlite => format!("instr({haystack}, {needle}) > 0"),
        Backend::Postgres => format!("strpos({haystack}, {needle}) > 0"),
    }
}

/// The page of `q` that `scope` may see.
pub fn page(conn: &(impl Sql + ?Sized), scope: &Scope, q: &QueueQuery) -> Result<Page, DbError> {
    let backend = conn.backend();
    let mut cond = vec!["1 = 1".to_owned()];
    let mut p = Params::default();
    if let Some(c) = scope.condition(&mut p) {
        cond.push(c);
    }
    if !q.kinds.is_empty() {
        cond.push(format!(
            "t.kind IN ({})",
            p.list(q.kinds.iter().map(|k| k.as_str()))
        ));
    }
    if !q.statuses.is_empty() {
        cond.push(format!(
            "t.status IN ({})",
            p.list(q.statuses.iter().map(|k| k.as_str()))
        ));
    }
    if !q.severities.is_empty() {
        cond.push(format!(
            "t.severity IN ({})",
            p.list(q.severities.iter().map(|k| k.as_str()))
        ));
    }
    if let Some(d) = &q.department {
        cond.push(format!("t.department = {}", p.push(d.as_str())));
    }
    if let Some(i) = &q.item {
        cond.push(format!("t.item = {}", p.push(i.as_str())));
    }
    if let Some(e) = &q.entity {
        let e = p.push(e.as_str());
        cond.push(format!(
            "(t.entity = {e} OR {} OR t.entity IN \
             (SELECT code FROM registry_entities WHERE {}))",
            contains(backend, "t.entity", &e),
            contains(backend, "name", &e),
        ));
    }
    if let Some(d) = &q.since_day {
        cond.push(format!("t.window_start >= {}", p.push(d.as_str())));
    }
    if let Some(d) = &q.until_day {
        cond.push(format!("t.window_start <= {}", p.push(d.as_str())));
    }
    let filter = cond.join(" AND ");
    let args = p.args();
    let total: i64 = conn.query_row(
        &format!("SELECT count(*) FROM tasks t WHERE {filter}"),
        &args,
        |r| r.get(0),
    )?;
    // The page as parameters, not in the text: one prepared statement serves every page.
    let (limit, offset) = (i64::from(q.limit), i64::from(q.offset));
    let sql = format!(
        "SELECT t.id FROM tasks t WHERE {filter} ORDER BY {} LIMIT ${} OFFSET ${}",
        q.sort.order_by(backend),
        args.len() + 1,
        args.len() + 2
    );
    let mut args = args;
    args.extend([&limit as &dyn Arg, &offset]);
    let ids = conn.query(&sql, &args, |r| Ok(TaskId(r.get(0)?)))?;
    Ok(Page {
        ids,
        total: total as u64,
    })
}

/// The open-task counts `scope` may see.
pub fn counts(conn: &(impl Sql + ?Sized), scope: &Scope) -> Result<Counts, DbError> {
    let mut p = Params::default();
    let cond = scope.condition(&mut p).unwrap_or_else(|| "1 = 1".into());
    let mut out = Counts::default();
    let sql = format!(
        "SELECT t.status, t.severity, count(*) FROM tasks t
         WHERE t.status IN ('open', 'acknowledged') AND {cond} GROUP BY t.status, t.severity"
    );
    let rows = conn.query(&sql, &p.args(), |r| {
        Ok((
            r.get::<String>(0)?,
            r.get::<Option<String>>(1)?,
            r.get::<i64>(2)? as u64,
        ))
    })?;
    for (status, severity, n) in rows {
        if status == "acknowledged" {
            out.acknowledged += n;
            continue;
        }
        out.open += n;
        match severity.as_deref() {
            Some("critical") => out.open_critical += n,
            Some("high") => out.open_high += n,
            _ => {}
        }
    }
    Ok(out)
}

/// Human names beside a task's codes: the entity's registered name and the item's name.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Names {
    /// The entity's name in the entity library.
    pub entity_name: Option<String>,
    /// The item's name in the item list.
    pub item_name: Option<String>,
}

/// The names of `entity` and `item`, where the registry has them.
pub fn names(conn: &(impl Sql + ?Sized), entity: &str, item: &str) -> Result<Names, DbError> {
    Ok(Names {
        entity_name: conn.query_opt(
            "SELECT name FROM registry_entities WHERE code = $1",
            args![entity],
            |r| r.get(0),
        )?,
        item_name: conn.query_opt(
            "SELECT name FROM registry_items WHERE id = $1",
            args![item],
            |r| r.get(0),
        )?,
    })
}

/// Who is asking, as far as which tasks they may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every task (admin, auditor).
    All,
    /// One department's tasks (a supervisor).
    Department(String),
    /// The tasks assigned to one inspector.
    Inspector(String),
}

impl Scope {
    /// The SQL condition on `tasks t`, its argument added to `p`, if any.
    fn condition(&self, p: &mut Params) -> Option<String> {
        match self {
            Scope::All => None,
            Scope::Department(d) => Some(format!("t.department = {}", p.push(d.as_str()))),
            Scope::Inspector(i) => Some(format!(
                "EXISTS (SELECT 1 FROM task_inspectors ti WHERE ti.task = t.id AND ti.inspector = {})",
                p.push(i.as_str())
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::db::{connect, Conn, DbUrl, Mode};

    fn db() -> (tempfile::TempDir, Conn) {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::db_path(dir.path());
        let conn = connect(&DbUrl::Sqlite(db), Mode::Write).unwrap();
        for (i, (status, severity, dept)) in [
            ("open", Some("critical"), "health"),
            ("open", Some("high"), "health"),
            ("open", Some("critical"), "culture"),
            ("acknowledged", Some("critical"), "health"),
            ("drawn", None, "health"),
        ]
        .into_iter()
        .enumerate()
        {
            conn.execute(
                "INSERT INTO tasks (id, kind, entity, department, item, window_start, window_end,
                 status, severity, opened_ms) VALUES ($1, $2, $3, $4, 'x', $5, $5, $6, $7, $8)",
                args![
                    i as i64 + 1,
                    if severity.is_some() {
                        "anomaly"
                    } else {
                        "random"
                    },
                    format!("E{}", i % 2),
                    dept,
                    format!("2026-01-0{}", i + 1),
                    status,
                    severity,
                    i as i64,
                ],
            )
            .unwrap();
        }
        (dir, conn)
    }

    fn ids(p: &Page) -> Vec<i64> {
        p.ids.iter().map(|t| t.0).collect()
    }

    #[test]
    fn filters_combine_and_the_total_counts_every_page() {
        let (_d, conn) = db();
        let q = QueueQuery {
            statuses: vec![TaskStatus::Open],
            severities: vec![Severity::Critical],
            limit: 1,
            ..QueueQuery::default()
        };
        let p = page(&conn, &Scope::All, &q).unwrap();
        assert_eq!((ids(&p), p.total), (vec![3], 2));
        let p = page(
            &conn,
            &Scope::All,
            &QueueQuery {
                offset: 1,
                ..q.clone()
            },
        )
        .unwrap();
        assert_eq!(ids(&p), vec![1]);
        let p = page(&conn, &Scope::Department("health".into()), &q).unwrap();
        assert_eq!((ids(&p), p.total), (vec![1], 1));
        let dated = QueueQuery {
            since_day: Some("2026-01-02".into()),
            until_day: Some("2026-01-04".into()),
            limit: 10,
            ..QueueQuery::default()
        };
        assert_eq!(
            ids(&page(&conn, &Scope::All, &dated).unwrap()),
            vec![4, 3, 2]
        );
    }

    #[test]
    fn severity_order_breaks_ties_by_id_and_counts_split_open_from_acknowledged() {
        let (_d, conn) = db();
        let q = QueueQuery {
            sort: Sort::Severity,
            limit: 10,
            ..QueueQuery::default()
        };
        assert_eq!(
            ids(&page(&conn, &Scope::All, &q).unwrap()),
            vec![4, 3, 1, 2, 5]
        );
        let c = counts(&conn, &Scope::Department("health".into())).unwrap();
        assert_eq!(
            c,
            Counts {
                open_critical: 1,
                open_high: 1,
                open: 2,
                acknowledged: 1
            }
        );
    }
}
