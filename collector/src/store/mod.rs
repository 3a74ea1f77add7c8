//! The store: SQLite in WAL mode. Two writers, one transaction mode: ingest's commit thread
//! ([`writer`]: readings, the rule engine's state and the anomaly tasks it opens, in one
//! transaction) and, per process, one workflow writer behind a mutex ([`access`]: everything
//! the API, the demo and the CLI change). Every write transaction is `BEGIN IMMEDIATE`.
//! Queries borrow read-only connections from [`access`]'s pool. ARCHITECTURE.md, "One write
//! path", gives the reasons.
//!
//! - [`schema`]: the migrations, for SQLite and PostgreSQL.
//! - [`db`]: the two engines behind one interface, chosen by the database URL.
//! - [`chunk`]: the packed format of readings (one row per batch and metric).
//! - [`writer`]: commits validated batches and dead letters, deduplicating by (agent, seq).
//! - [`query`]: read-only queries for the API and console.
//! - [`access`]: the workflow writer and the read pool.
//! - [`leader`]: one leader among collectors sharing a PostgreSQL store.

pub mod access;
pub mod chunk;
pub mod db;
pub mod gather;
pub mod leader;
pub mod query;
pub mod schema;
pub mod writer;

use std::path::{Path, PathBuf};

use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::config::Synchronous;

pub use writer::{CommitReport, Writer};

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// What ran inside a commit (the rule engine, tasks) failed; the transaction rolled back.
    #[error("database {path}: {reason}")]
    Observer {
        /// The database file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The store failed (either engine).
    #[error(transparent)]
    Db(#[from] db::DbError),
    /// The database was written by a newer Spotcheck.
    #[error("database {path} has schema version {found}, newer than this build's {known}: upgrade spotcheck-collector")]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Its version.
        found: usize,
        /// Ours.
        known: usize,
    },
}

/// Begins a write transaction the workflow way: `BEGIN IMMEDIATE`, so it takes the write
/// lock at its start (waiting up to the busy timeout) rather than failing midway when it
/// first writes (see ARCHITECTURE.md, "One write path").
pub fn immediate(conn: &mut Connection) -> rusqlite::Result<Transaction<'_>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
}

/// [`immediate`] on a shared connection (the caller must not be inside a transaction).
pub fn immediate_shared(conn: &Connection) -> rusqlite::Result<Transaction<'_>> {
    Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
}

/// The database file inside a data directory.
pub fn db_path(data_dir: &Path) -> PathBuf {
    data_dir.join("spotcheck.db")
}

fn sqlite_err(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Sqlite {
        path: path.to_owned(),
        source,
    }
}

/// Opens (creating if needed) the database for writing and brings its schema up to date.
pub fn open_for_writing(path: &Path, sync: Synchronous) -> Result<Connection, StoreError> {
    let e = sqlite_err(path);
    let mut conn = Connection::open(path).map_err(&e)?;
    let sync = match sync {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA busy_timeout = 5000;"
    ))
    .map_err(&e)?;
    // One transaction mode for every writer: a transaction takes the write lock when it
    // begins (or waits for it), never failing when its first write comes.
    conn.set_transaction_behavior(TransactionBehavior::Immediate);
    // The writer runs some forty distinct statements (ingest, rule engine, tasks, audit);
    // rusqlite's default cache of 16 would re-prepare them in turn.
    conn.set_prepared_statement_cache_capacity(64);
    migrate(&mut conn, path)?;
    Ok(conn)
}

/// Opens the database read-only, for queries.
pub fn open_for_reading(path: &Path) -> Result<Connection, StoreError> {
    let e = sqlite_err(path);
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(&e)?;
    conn.execute_batch("PRAGMA busy_timeout = 5000;")
        .map_err(&e)?;
    Ok(conn)
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let e = sqlite_err(path);
    let known = schema::MIGRATIONS.len();
    // The version is read inside the write transaction: two connections opening a new file
    // at once (a collector and a CLI command) would otherwise both see version 0 and the
    // second would fail creating tables the first had made.
    let tx = immediate(conn).map_err(&e)?;
    let version: usize = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(&e)?;
    if version > known {
        return Err(StoreError::TooNew {
            path: path.to_owned(),
            found: version,
            known,
        });
    }
    for (i, sql) in schema::MIGRATIONS.iter().enumerate().skip(version) {
        tx.execute_batch(sql).map_err(&e)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))
            .map_err(&e)?;
        tracing::info!(message = "Store migrated.", version = i + 1, path = %path.display());
    }
    tx.commit().map_err(&e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_reopening_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let path = db_path(dir.path());
        drop(open_for_writing(&path, Synchronous::Normal).unwrap());
        let conn = open_for_writing(&path, Synchronous::Normal).unwrap();
        let v: usize = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, schema::MIGRATIONS.len());
    }

    #[test]
    fn a_database_from_a_newer_build_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = db_path(dir.path());
        let conn = open_for_writing(&path, Synchronous::Normal).unwrap();
        conn.execute_batch("PRAGMA user_version = 999").unwrap();
        drop(conn);
        let err = open_for_writing(&path, Synchronous::Normal).unwrap_err();
        assert!(
            matches!(err, StoreError::TooNew { found: 999, .. }),
            "{err}"
        );
    }
}
