//! The report's SQL outside the task tables (those figures are in `tasks::figures`, which
//! owns that SQL and is re-exported here): read-only queries, each a count or a list over one department and one
//! period, so that a test can recompute every figure with its own query.

use crate::store::db::{args, DbError, Sql};

pub use crate::tasks::figures::*;

/// A half-open time range in Unix milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Range {
    /// First millisecond.
    pub from_ms: i64,
    /// First millisecond after.
    pub to_ms: i64,
}

/// The library's entities in the domains of the department's items (through their rule
/// packs' domains).
pub fn supervised_entities(conn: &(impl Sql + ?Sized), d: &str) -> Result<Vec<String>, DbError> {
    conn.query(
        "SELECT code FROM registry_entities WHERE domain IN (
             SELECT DISTINCT p.domain FROM registry_items i JOIN rule_packs p ON p.pack = i.rule_pack
             WHERE i.department = $1)
         ORDER BY code",
        args![d],
        |row| row.get(0),
    )
}

/// Distinct China days in the range on which `entity` sent readings or events.
pub fn days_with_data(conn: &(impl Sql + ?Sized), entity: &str, r: Range) -> Result<u64, DbError> {
    const CHINA: i64 = 8 * 3_600_000;
    const DAY: i64 = 86_400_000;
    // Integer division on both engines (the times are never negative here); PostgreSQL
    // wants the derived table named.
    conn.query_row(
        "SELECT COUNT(*) FROM (
             SELECT (c.t0 + CAST($4 AS BIGINT)) / CAST($5 AS BIGINT) FROM reading_chunks c
             JOIN entities e ON e.id = c.entity
             WHERE e.name = $1 AND c.t0 >= $2 AND c.t0 < $3
             UNION
             SELECT (v.ts_ms + CAST($4 AS BIGINT)) / CAST($5 AS BIGINT) FROM events v
             JOIN entities e ON e.id = v.entity
             WHERE e.name = $1 AND v.ts_ms >= $2 AND v.ts_ms < $3) AS days",
        args![entity, r.from_ms, r.to_ms, CHINA, DAY],
        |row| row.get::<i64>(0),
    )
    .map(|n| u64::try_from(n).unwrap_or(0))
}
