//! The joint-meeting office's report figures over the task tables (`report/` renders them):
//! read-only queries, each a count or a list over one department and one period, so that a
//! test can recompute every figure with its own query. They live here because this module
//! owns the task tables' SQL.

use rusqlite::{params, Connection};

pub use crate::report::query::Range;

/// Every department with a task, an item or a liaison officer.
pub fn departments(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    conn.prepare(
        "SELECT department FROM tasks UNION SELECT department FROM registry_items
         UNION SELECT department FROM contacts WHERE until_ms IS NULL ORDER BY 1",
    )?
    .query_map([], |r| r.get(0))?
    .collect()
}

fn count(conn: &Connection, sql: &str, d: &str, r: Range) -> rusqlite::Result<u64> {
    conn.prepare_cached(sql)?
        .query_row(params![d, r.from_ms, r.to_ms], |row| row.get::<_, i64>(0))
        .map(|n| u64::try_from(n).unwrap_or(0))
}

/// Tasks a draw made for the department, created in the range.
pub fn drawn(conn: &Connection, d: &str, r: Range) -> rusqlite::Result<u64> {
    count(
        conn,
        "SELECT COUNT(*) FROM tasks WHERE department = ?1 AND draw IS NOT NULL
         AND opened_ms >= ?2 AND opened_ms < ?3",
        d,
        r,
    )
}

/// The department's non-anomaly tasks with a remote check in the range.
pub fn checked(conn: &Connection, d: &str, r: Range) -> rusqlite::Result<u64> {
    count(
        conn,
        "SELECT COUNT(DISTINCT t.id) FROM tasks t JOIN checks c ON c.task = t.id
         WHERE t.department = ?1 AND t.kind <> 'anomaly'
         AND c.checked_ms >= ?2 AND c.checked_ms < ?3",
        d,
        r,
    )
}

/// The department's results published in the range.
pub fn published(conn: &Connection, d: &str, r: Range) -> rusqlite::Result<u64> {
    count(
        conn,
        "SELECT COUNT(*) FROM tasks WHERE department = ?1
         AND published_ms >= ?2 AND published_ms < ?3",
        d,
        r,
    )
}

/// Results published in the range later than `within_ms` after they were recorded.
pub fn published_late(
    conn: &Connection,
    d: &str,
    r: Range,
    within_ms: i64,
) -> rusqlite::Result<u64> {
    conn.prepare_cached(
        "SELECT COUNT(*) FROM tasks WHERE department = ?1
         AND published_ms >= ?2 AND published_ms < ?3 AND published_ms > resolved_ms + ?4",
    )?
    .query_row(params![d, r.from_ms, r.to_ms, within_ms], |row| {
        row.get::<_, i64>(0)
    })
    .map(|n| u64::try_from(n).unwrap_or(0))
}

/// Results recorded and still unpublished past their deadline at `now_ms`.
pub fn overdue_now(
    conn: &Connection,
    d: &str,
    within_ms: i64,
    now_ms: i64,
) -> rusqlite::Result<u64> {
    conn.prepare_cached(
        "SELECT COUNT(*) FROM tasks WHERE department = ?1 AND status = 'resolved'
         AND resolved_ms IS NOT NULL AND resolved_ms + ?2 < ?3",
    )?
    .query_row(params![d, within_ms, now_ms], |row| row.get::<_, i64>(0))
    .map(|n| u64::try_from(n).unwrap_or(0))
}

/// Anomaly tasks opened in the range.
pub fn anomalies_opened(conn: &Connection, d: &str, r: Range) -> rusqlite::Result<u64> {
    count(
        conn,
        "SELECT COUNT(*) FROM tasks WHERE department = ?1 AND kind = 'anomaly'
         AND opened_ms >= ?2 AND opened_ms < ?3",
        d,
        r,
    )
}

/// Milliseconds from opening to the first acknowledgement, of the anomaly tasks opened in the
/// range that were acknowledged.
pub fn ack_times(conn: &Connection, d: &str, r: Range) -> rusqlite::Result<Vec<i64>> {
    conn.prepare_cached(
        "SELECT MIN(n.ts_ms) - t.opened_ms FROM tasks t JOIN task_notes n ON n.task = t.id
         WHERE t.department = ?1 AND t.kind = 'anomaly' AND n.kind = 'acknowledged'
         AND t.opened_ms >= ?2 AND t.opened_ms < ?3 GROUP BY t.id",
    )?
    .query_map(params![d, r.from_ms, r.to_ms], |row| row.get(0))?
    .collect()
}

/// Milliseconds from opening to the result, of the anomaly tasks opened in the range that
/// have one.
pub fn resolve_times(conn: &Connection, d: &str, r: Range) -> rusqlite::Result<Vec<i64>> {
    conn.prepare_cached(
        "SELECT resolved_ms - opened_ms FROM tasks WHERE department = ?1 AND kind = 'anomaly'
         AND resolved_ms IS NOT NULL AND opened_ms >= ?2 AND opened_ms < ?3",
    )?
    .query_map(params![d, r.from_ms, r.to_ms], |row| row.get(0))?
    .collect()
}

/// The drawn tasks as the joint-quota rule reads them: [`super::store::scheduled`], drawn only.
pub fn drawn_tasks(conn: &Connection) -> rusqlite::Result<Vec<crate::joint::Task>> {
    let all = super::store::scheduled(conn).map_err(|e| match e {
        super::TaskError::Sqlite(e) => e,
        // A corrupt row: the report cannot be computed; say which.
        other => rusqlite::Error::ToSqlConversionFailure(Box::new(other)),
    })?;
    Ok(all.into_iter().filter(|t| t.drawn).collect())
}
