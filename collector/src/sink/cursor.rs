//! The sink's place in the store: the last reading chunk and the last event row it has
//! delivered, one row per target in the store's `sink_cursors` table (migration 13), on
//! either engine.
//!
//! In the store, not in a file beside the collector, because with several collectors on one
//! PostgreSQL store the sink runs on whichever leads (store/leader.rs), and a new leader must
//! continue where the old one stopped: a file on the old leader's disk is out of its reach.
//! On SQLite it is the same table, for one reason more: a backup of the store restores the
//! cursor that goes with its rows (a cursor newer than a restored store would skip the rows
//! written after the backup again). It is saved at most once a second
//! ([`super::SAVE_EVERY`]): on SQLite each save takes the store's write lock for one short
//! transaction, which ingest's commit thread then waits for. A crash loses at most that
//! second of saves, which the sink sends again: points are idempotent.
//!
//! A save checks the leadership fence inside its transaction ([`Lead::fence`]): a collector
//! that no longer leads cannot move the cursor.
//!
//! Rowids only grow (on PostgreSQL: up to the sink's watermark, see [`super::source`]), so
//! "everything after the cursor" is exactly what the sink has not delivered. (Retention
//! deletes old rows; a rowid can be reused only if the newest row of a table were deleted,
//! which needs a store with no reading younger than `store.retention_days`.)
//!
//! Earlier builds kept the cursor in `DATA/sink.db`. [`import_file`] moves it into the store
//! at start, once: the store's row wins if there is one (never moving a cursor back), a
//! cursor past the store's newest rows is not taken (it belongs to another store), and the
//! file is renamed `sink.db.imported`. So an upgrade neither sends everything again nor
//! skips anything.

use std::path::{Path, PathBuf};

use rusqlite::OpenFlags;
use tracing::{info, warn};

use crate::store::db::{self, args, Conn, DbError, DbUrl, Mode, Sql};
use crate::store::leader::Lead;

/// Where the sink stands: rows up to these rowids are delivered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    /// The last `reading_chunks` rowid delivered.
    pub chunk: i64,
    /// The last `events` rowid delivered.
    pub event: i64,
}

/// The cursor file of earlier builds, in the data directory.
pub const OLD_FILE: &str = "sink.db";

/// What went wrong with the cursor.
#[derive(Debug, thiserror::Error)]
pub enum CursorError {
    /// The store failed.
    #[error("the sink's cursor in the store: {0}")]
    Db(#[from] DbError),
    /// The cursor file of an earlier build could not be read or moved aside.
    #[error("the sink's old cursor file {path}: {reason}")]
    OldFile {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
}

/// The cursor's row in the store, through a write connection of the sink's own.
pub struct CursorStore {
    conn: Conn,
    url: DbUrl,
    target: String,
    lead: Lead,
}

impl CursorStore {
    /// Connects to the store at `url`, moves an earlier build's cursor file from `data_dir`
    /// into it ([`import_file`]), and returns the cursor saved for `target` (the start of the
    /// store for a target never written to).
    pub fn open(
        url: &DbUrl,
        data_dir: &Path,
        target: &str,
        lead: Lead,
    ) -> Result<(CursorStore, Cursor), CursorError> {
        let conn = db::connect(url, Mode::Write)?;
        import_file(&conn, data_dir, &lead)?;
        let cursor = load(&conn, target)?.unwrap_or_default();
        Ok((
            CursorStore {
                conn,
                url: url.clone(),
                target: target.to_owned(),
                lead,
            },
            cursor,
        ))
    }

    /// Records that everything up to `cursor` is delivered. `Ok(false)`: this collector no
    /// longer leads, nothing was saved, and the sink must stop.
    pub fn save(&mut self, cursor: Cursor, now_ms: i64) -> Result<bool, DbError> {
        if self.conn.is_closed() {
            self.conn = db::connect(&self.url, Mode::Write)?;
        }
        let tx = self.conn.transaction_concurrent()?;
        if !self.lead.fence(&tx)? {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO sink_cursors (target, chunk, event, updated_ms) VALUES ($1, $2, $3, $4)
             ON CONFLICT (target) DO UPDATE SET chunk = excluded.chunk, event = excluded.event,
                 updated_ms = excluded.updated_ms",
            args![self.target.as_str(), cursor.chunk, cursor.event, now_ms],
        )?;
        tx.commit()?;
        Ok(true)
    }
}

/// The cursor saved for `target`, if any.
pub fn load(conn: &(impl Sql + ?Sized), target: &str) -> Result<Option<Cursor>, DbError> {
    conn.query_opt(
        "SELECT chunk, event FROM sink_cursors WHERE target = $1",
        args![target],
        |r| {
            Ok(Cursor {
                chunk: r.get(0)?,
                event: r.get(1)?,
            })
        },
    )
}

/// Moves the cursors of an earlier build's `DATA/sink.db` into the store, once; returns how
/// many were taken. A target the store already has a cursor for keeps the store's; a cursor
/// past the store's newest rows is left out with a warning (the file belongs to another
/// store, and taking it would skip rows). The file is then renamed `sink.db.imported`. Does
/// nothing (and leaves the file) if this collector does not lead.
pub fn import_file(conn: &Conn, data_dir: &Path, lead: &Lead) -> Result<u64, CursorError> {
    let path = data_dir.join(OLD_FILE);
    if !path.exists() {
        return Ok(0);
    }
    let old_err = |reason: String| CursorError::OldFile {
        path: path.clone(),
        reason,
    };
    let rows = read_file(&path).map_err(|e| old_err(e.to_string()))?;
    let newest: (i64, i64) = conn.query_row(
        "SELECT (SELECT coalesce(max(rowid), 0) FROM reading_chunks),
                (SELECT coalesce(max(rowid), 0) FROM events)",
        args![],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let tx = conn.transaction_concurrent()?;
    if !lead.fence(&tx)? {
        return Ok(0);
    }
    let mut taken = 0;
    for (target, cursor, updated_ms) in &rows {
        if cursor.chunk > newest.0 || cursor.event > newest.1 {
            warn!(message = "The old sink cursor file points past this store's newest rows; not taken (the sink starts from this store's own cursor).", file = %path.display(), target, chunk = cursor.chunk, event = cursor.event, store_chunk = newest.0, store_event = newest.1);
            continue;
        }
        taken += tx.execute(
            "INSERT INTO sink_cursors (target, chunk, event, updated_ms) VALUES ($1, $2, $3, $4)
             ON CONFLICT (target) DO NOTHING",
            args![target.as_str(), cursor.chunk, cursor.event, *updated_ms],
        )?;
    }
    tx.commit()?;
    for suffix in ["", "-wal", "-shm"] {
        let from = data_dir.join(format!("{OLD_FILE}{suffix}"));
        if from.exists() {
            let to = data_dir.join(format!("{OLD_FILE}.imported{suffix}"));
            std::fs::rename(&from, &to).map_err(|e| old_err(format!("renaming it: {e}")))?;
        }
    }
    info!(message = "Moved the sink's cursor from its old file into the store.", file = %path.display(), cursors = rows.len(), taken);
    Ok(taken)
}

/// Every (target, cursor, updated_ms) of an old cursor file (none if it has no table).
fn read_file(path: &Path) -> Result<Vec<(String, Cursor, i64)>, rusqlite::Error> {
    // Read-write (a WAL file left by a crash is applied), never created.
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let exists: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'cursors'",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare("SELECT target, chunk, event, updated_ms FROM cursors")?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                Cursor {
                    chunk: r.get(1)?,
                    event: r.get(2)?,
                },
                r.get(3)?,
            ))
        })?
        .collect();
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A migrated SQLite store in `dir` with `chunks` reading chunks and `events` events.
    fn store(dir: &Path, chunks: i64, events: i64) -> DbUrl {
        let url = DbUrl::Sqlite(dir.join("spotcheck.db"));
        let conn = db::connect(&url, Mode::Write).unwrap();
        for i in 0..chunks {
            conn.execute(
                "INSERT INTO reading_chunks (entity, metric, t0, t1, agent, seq, n, data)
                 VALUES (1, 1, $1, $1, 1, $1, 1, x'00')",
                args![i],
            )
            .unwrap();
        }
        for i in 0..events {
            conn.execute(
                "INSERT INTO events (entity, kind, record_id, ts_ms, agent, seq, body)
                 VALUES (1, 'k', $1, 0, 1, 1, '{}')",
                args![i.to_string()],
            )
            .unwrap();
        }
        url
    }

    /// An earlier build's cursor file, as its `CursorStore` wrote it.
    fn old_file(dir: &Path, rows: &[(&str, i64, i64)]) {
        let c = rusqlite::Connection::open(dir.join(OLD_FILE)).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE cursors (target TEXT PRIMARY KEY, chunk INTEGER NOT NULL,
                 event INTEGER NOT NULL, updated_ms INTEGER NOT NULL);",
        )
        .unwrap();
        for (t, chunk, event) in rows {
            c.execute(
                "INSERT INTO cursors VALUES (?1, ?2, ?3, 1)",
                rusqlite::params![t, chunk, event],
            )
            .unwrap();
        }
    }

    #[test]
    fn an_old_cursor_file_is_moved_into_the_store_once_and_the_file_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let url = store(dir.path(), 10, 5);
        old_file(dir.path(), &[("http://a", 7, 3), ("http://b", 2, 1)]);
        let (_, c) = CursorStore::open(&url, dir.path(), "http://a", Lead::sole()).unwrap();
        assert_eq!(
            c,
            Cursor { chunk: 7, event: 3 },
            "continues, neither resending nor skipping"
        );
        assert!(!dir.path().join(OLD_FILE).exists());
        assert!(dir.path().join("sink.db.imported").exists());
        // Every target of the file came over; opening again reads the store.
        let (mut s, b) = CursorStore::open(&url, dir.path(), "http://b", Lead::sole()).unwrap();
        assert_eq!(b, Cursor { chunk: 2, event: 1 });
        assert!(s.save(Cursor { chunk: 9, event: 4 }, 2).unwrap());
        let (_, b) = CursorStore::open(&url, dir.path(), "http://b", Lead::sole()).unwrap();
        assert_eq!(b, Cursor { chunk: 9, event: 4 });
    }

    #[test]
    fn the_stores_cursor_wins_over_an_old_file_and_never_goes_back() {
        let dir = tempfile::tempdir().unwrap();
        let url = store(dir.path(), 10, 5);
        let (mut s, _) = CursorStore::open(&url, dir.path(), "http://a", Lead::sole()).unwrap();
        assert!(s.save(Cursor { chunk: 9, event: 5 }, 1).unwrap());
        old_file(dir.path(), &[("http://a", 4, 2)]);
        let (_, c) = CursorStore::open(&url, dir.path(), "http://a", Lead::sole()).unwrap();
        assert_eq!(c, Cursor { chunk: 9, event: 5 });
        assert!(!dir.path().join(OLD_FILE).exists());
    }

    #[test]
    fn an_old_cursor_past_the_stores_newest_rows_is_not_taken() {
        let dir = tempfile::tempdir().unwrap();
        let url = store(dir.path(), 3, 3);
        old_file(dir.path(), &[("http://a", 500, 2)]);
        let (_, c) = CursorStore::open(&url, dir.path(), "http://a", Lead::sole()).unwrap();
        assert_eq!(c, Cursor::default(), "it would have skipped rows 4 to 500");
    }

    #[test]
    fn without_an_old_file_nothing_is_created_and_targets_start_at_the_beginning() {
        let dir = tempfile::tempdir().unwrap();
        let url = store(dir.path(), 0, 0);
        let (mut a, c) = CursorStore::open(&url, dir.path(), "http://a", Lead::sole()).unwrap();
        assert_eq!(c, Cursor::default());
        assert!(a.save(Cursor { chunk: 7, event: 3 }, 1).unwrap());
        let (_, other) = CursorStore::open(&url, dir.path(), "http://b", Lead::sole()).unwrap();
        assert_eq!(
            other,
            Cursor::default(),
            "a new target starts from the beginning"
        );
        assert!(!dir.path().join(OLD_FILE).exists());
    }

    #[test]
    fn a_collector_that_does_not_lead_neither_saves_nor_imports() {
        let dir = tempfile::tempdir().unwrap();
        let url = store(dir.path(), 10, 5);
        old_file(dir.path(), &[("http://a", 7, 3)]);
        let (mut s, c) = CursorStore::open(&url, dir.path(), "http://a", Lead::standby()).unwrap();
        assert_eq!(c, Cursor::default());
        assert!(dir.path().join(OLD_FILE).exists(), "left for the leader");
        assert!(!s.save(Cursor { chunk: 9, event: 4 }, 1).unwrap());
        let conn = db::connect(&url, Mode::Read).unwrap();
        assert_eq!(load(&conn, "http://a").unwrap(), None);
    }
}
