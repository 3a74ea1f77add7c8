//! A fresh store with a chain of entries, and ways to tamper with it.

use std::path::Path;

use rusqlite::Connection;
use serde_json::json;
use spotcheck_collector::audit::{self, AuditEntry, EntryKind, Problem};
use spotcheck_collector::config::Synchronous;
use spotcheck_collector::store;
use spotcheck_protocol::UnixMillis;

/// The time of the first entry.
pub const T0: i64 = 1_700_000_000_000;

/// A fresh database in a temporary data directory.
pub fn fresh() -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let conn = store::open_for_writing(&store::db_path(dir.path()), Synchronous::Normal).unwrap();
    (dir, conn)
}

/// Appends `n` entries of cycling kinds, each in its own transaction; returns them.
pub fn append_n(conn: &mut Connection, n: usize) -> Vec<AuditEntry> {
    (0..n)
        .map(|i| {
            let tx = conn.transaction().unwrap();
            let kind = EntryKind::ALL[i % EntryKind::ALL.len()];
            let e = audit::append(
                &tx,
                kind,
                &format!("task:{}", 100 + i),
                &json!({ "task": 100 + i, "outcome": "compliant", "pack": "pool-2026", "n": [i, "水质"] }),
                UnixMillis(T0 + i as i64 * 1000),
            )
            .unwrap();
            tx.commit().unwrap();
            e
        })
        .collect()
}

/// A data directory holding a chain of `n` entries (the connection is closed).
pub fn data_dir_with(n: usize) -> (tempfile::TempDir, Vec<AuditEntry>) {
    let (dir, mut conn) = fresh();
    let entries = append_n(&mut conn, n);
    drop(conn);
    (dir, entries)
}

/// Opens the data directory's database for tampering.
pub fn open(dir: &Path) -> Connection {
    store::open_for_writing(&store::db_path(dir), Synchronous::Normal).unwrap()
}

/// Verifies the stored log.
pub fn problems(conn: &Connection, head: Option<&str>) -> Vec<Problem> {
    audit::verify_store(conn, head).unwrap().problems
}

/// The entries as JSON Lines.
pub fn jsonl(entries: &[AuditEntry]) -> String {
    entries
        .iter()
        .map(|e| serde_json::to_string(e).unwrap() + "\n")
        .collect()
}
