//! The report's SQL outside the task tables (those figures are in `tasks::figures`, which
//! owns that SQL and is re-exported here): read-only queries, each a count or a list over one department and one
//! period, so that a test can recompute every figure with its own query.

use rusqlite::{params, Connection};

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
pub fn supervised_entities(conn: &Connection, d: &str) -> rusqlite::Result<Vec<String>> {
    conn.prepare_cached(
        "SELECT code FROM registry_entities WHERE domain IN (
             SELECT DISTINCT p.domain FROM registry_items i JOIN rule_packs p ON p.pack = i.rule_pack
             WHERE i.department = ?1)
         ORDER BY code",
    )?
    .query_map([d], |row| row.get(0))?
    .collect()
}

/// Distinct China days in the range on which `entity` sent readings or events.
pub fn days_with_data(conn: &Connection, entity: &str, r: Range) -> rusqlite::Result<u64> {
    const CHINA: i64 = 8 * 3_600_000;
    const DAY: i64 = 86_400_000;
    conn.prepare_cached(
        "SELECT COUNT(*) FROM (
             SELECT (c.t0 + ?4) / ?5 FROM reading_chunks c JOIN entities e ON e.id = c.entity
             WHERE e.name = ?1 AND c.t0 >= ?2 AND c.t0 < ?3
             UNION
             SELECT (v.ts_ms + ?4) / ?5 FROM events v JOIN entities e ON e.id = v.entity
             WHERE e.name = ?1 AND v.ts_ms >= ?2 AND v.ts_ms < ?3)",
    )?
    .query_row(params![entity, r.from_ms, r.to_ms, CHINA, DAY], |row| {
        row.get::<_, i64>(0)
    })
    .map(|n| u64::try_from(n).unwrap_or(0))
}
