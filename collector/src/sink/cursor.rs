//! The sink's place in the store: the last reading chunk and the last event row it has
//! delivered, kept in `DATA/sink.db`, one row per target.
//!
//! A file of its own, not a table in `spotcheck.db`: SQLite lets one connection write a
//! database file at a time, and ingest's commit thread is that writer. A cursor saved after
//! every request would make the commit thread wait on the sink's write lock; in its own file it
//! never can.
//!
//! Rowids only grow: ingest is the one writer of `reading_chunks` and `events`, and a row's id
//! is larger than every id committed before it, so "everything after the cursor" is exactly
//! what the sink has not delivered. (Retention deletes old rows; a rowid can be reused only if
//! the newest row of a table were deleted, which needs a store with no reading younger than
//! `store.retention_days`.)

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

/// Where the sink stands: rows up to these rowids are delivered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    /// The last `reading_chunks` rowid delivered.
    pub chunk: i64,
    /// The last `events` rowid delivered.
    pub event: i64,
}

/// The cursor file.
pub struct CursorStore {
    conn: Connection,
    target: String,
}

impl CursorStore {
    /// Opens (creating) `path`; returns the cursor saved for `target`, or the start of the
    /// store for a target never written to.
    pub fn open(path: &Path, target: &str) -> Result<(CursorStore, Cursor), rusqlite::Error> {
        let conn = Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;
             CREATE TABLE IF NOT EXISTS cursors (
                 target     TEXT PRIMARY KEY,
                 chunk      INTEGER NOT NULL,
                 event      INTEGER NOT NULL,
                 updated_ms INTEGER NOT NULL
             );",
        )?;
        let cursor = conn
            .query_row(
                "SELECT chunk, event FROM cursors WHERE target = ?1",
                [target],
                |r| {
                    Ok(Cursor {
                        chunk: r.get(0)?,
                        event: r.get(1)?,
                    })
                },
            )
            .optional()?
            .unwrap_or_default();
        Ok((
            CursorStore {
                conn,
                target: target.to_owned(),
            },
            cursor,
        ))
    }

    /// Records that everything up to `cursor` is delivered. Losing the last save (a crash
    /// before the sync) only means sending those points again, and points are idempotent.
    pub fn save(&mut self, cursor: Cursor, now_ms: i64) -> Result<(), rusqlite::Error> {
        self.conn
            .prepare_cached(
                "INSERT INTO cursors (target, chunk, event, updated_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (target) DO UPDATE SET chunk = ?2, event = ?3, updated_ms = ?4",
            )?
            .execute(params![self.target, cursor.chunk, cursor.event, now_ms])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_cursor_survives_reopening_and_targets_keep_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sink.db");
        let (mut store, c) = CursorStore::open(&path, "http://a").unwrap();
        assert_eq!(c, Cursor::default());
        store.save(Cursor { chunk: 7, event: 3 }, 1).unwrap();
        store.save(Cursor { chunk: 9, event: 4 }, 2).unwrap();
        drop(store);
        let (_, c) = CursorStore::open(&path, "http://a").unwrap();
        assert_eq!(c, Cursor { chunk: 9, event: 4 });
        let (_, other) = CursorStore::open(&path, "http://b").unwrap();
        assert_eq!(
            other,
            Cursor::default(),
            "a new target starts from the beginning"
        );
    }
}
