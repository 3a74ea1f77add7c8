//! The joint-meeting office's report figures over the task tables (`report/` renders them):
//! read-only queries, each a count or a list over one department and one period, so that a
//! test can recompute every figure with its own query. They live here because this module
//! owns the task tables' SQL.

use crate::store::db::{args, DbError, Sql};

pub use crate::report::query::Range;

/// Every department with a task, an item or a liaison officer, sorted by code point (in Rust:
/// the same on both engines whatever PostgreSQL's collation).
pub fn departments(conn: &(impl Sql + ?Sized)) -> Result<Vec<String>, DbError> {
    let mut out: Vec<String> = conn.query(
        "SELECT department FROM tasks UNION SELECT department FROM registry_items
         UNION SELECT department FROM contacts WHERE until_ms IS NULL",
        args![],
        |r| r.get(0),
    )?;
    out.sort();
    Ok(out)
}

fn count(conn: &(impl Sql + ?Sized), sql: &str, d: &str, r: Range) -> Result<u64, DbError> {
    conn.query_row(sql, args![d, r.from_ms, r.to_ms], |row| row.get::<i64>(0))
        .map(|n| u64::try_from(n).unwrap_or(0))
}

/// Tasks a draw made for the department, created in the range.
pub fn drawn(conn: &(impl Sql + ?Sized), d: &str, r: Range) -> Result<u64, DbError> {
    count(
        conn,
        "SELECT COUNT(*) FROM tasks WHERE department = $1 AND draw IS NOT NULL
         AND opened_ms >= $2 AND opened_ms < $3",
        d,
        r,
    )
}

/// The department's non-anomaly tasks with a remote check in the range.
pub fn checked(conn: &(impl Sql + ?Sized), d: &str, r: Range) -> Result<u64, DbError> {
    count(
        conn,
        "SELECT COUNT(DISTINCT t.id) FROM tasks t JOIN checks c ON c.task = t.id
         WHERE t.department = $1 AND t.kind <> 'anomaly'
         AND c.checked_ms >= $2 AND c.checked_ms < $3",
        d,
        r,
    )
}

/// The department's results published in the range.
pub fn published(conn: &(impl Sql + ?Sized), d: &str, r: Range) -> Result<u64, DbError> {
    count(
        conn,
        "SELECT COUNT(*) FROM tasks WHERE department = $1
         AND published_ms >= $2 AND published_ms < $3",
        d,
        r,
    )
}

/// Results published in the range later than `within_ms` after they were recorded.
pub fn published_late(
    conn: &(impl Sql + ?Sized),
    d: &str,
    r: Range,
    within_ms: i64,
) -> Result<u64, DbError> {
    conn.query_row(
        "SELECT COUNT(*) FROM tasks WHERE department = $1
         AND published_ms >= $2 AND published_ms < $3 AND published_ms > resolved_ms + $4",
        args![d, r.from_ms, r.to_ms, within_ms],
        |row| row.get::<i64>(0),
    )
    .map(|n| u64::try_from(n).unwrap_or(0))
}

/// Results recorded and still unpublished past their deadline at `now_ms`.
pub fn overdue_now(
    conn: &(impl Sql + ?Sized),
    d: &str,
    within_ms: i64,
    now_ms: i64,
) -> Result<u64, DbError> {
    conn.query_row(
        "SELECT COUNT(*) FROM tasks WHERE department = $1 AND status = 'resolved'
         AND resolved_ms IS NOT NULL AND resolved_ms + $2 < $3",
        args![d, within_ms, now_ms],
        |row| row.get::<i64>(0),
    )
    .map(|n| u64::try_from(n).unwrap_or(0))
}

/// Anomaly tasks opened in the range.
pub fn anomalies_opened(conn: &(impl Sql + ?Sized), d: &str, r: Range) -> Result<u64, DbError> {
    count(
        conn,
        "SELECT COUNT(*) FROM tasks WHERE department = $1 AND kind = 'anomaly'
         AND opened_ms >= $2 AND opened_ms < $3",
        d,
        r,
    )
}

/// Milliseconds from opening to the first acknowledgement, of the anomaly tasks opened in the
/// range that were acknowledged, by task.
pub fn ack_times(conn: &(impl Sql + ?Sized), d: &str, r: Range) -> Result<Vec<i64>, DbError> {
    conn.query(
        "SELECT MIN(n.ts_ms) - t.opened_ms FROM tasks t JOIN task_notes n ON n.task = t.id
         WHERE t.department = $1 AND t.kind = 'anomaly' AND n.kind = 'acknowledged'
         AND t.opened_ms >= $2 AND t.opened_ms < $3 GROUP BY t.id, t.opened_ms ORDER BY t.id",
        args![d, r.from_ms, r.to_ms],
        |row| row.get(0),
    )
}

/// Milliseconds from opening to the result, of the anomaly tasks opened in the range that
/// have one, by task.
pub fn resolve_times(conn: &(impl Sql + ?Sized), d: &str, r: Range) -> Result<Vec<i64>, DbError> {
    conn.query(
        "SELECT resolved_ms - opened_ms FROM tasks WHERE department = $1 AND kind = 'anomaly'
         AND resolved_ms IS NOT NULL AND opened_ms >= $2 AND opened_ms < $3 ORDER BY id",
        args![d, r.from_ms, r.to_ms],
        |row| row.get(0),
    )
}

/// The drawn tasks as the joint-quota rule reads them: [`super::store::scheduled`], drawn only.
pub fn drawn_tasks(
    conn: &(impl Sql + ?Sized),
) -> Result<Vec<crate::joint::Task>, super::TaskError> {
    let all = super::store::scheduled(conn)?;
    Ok(all.into_iter().filter(|t| t.drawn).collect())
}
