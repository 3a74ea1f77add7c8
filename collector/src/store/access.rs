//! One write path for the workflow tables, and a pool of read-only connections.
//!
//! Per database file this process keeps one [`Access`]: a single writable connection behind
//! a mutex (the *workflow writer*: plans, draws, tasks, checks, results, registry, people,
//! rule packs, written by the API, the demo and the CLI), and a few idle read-only
//! connections that queries borrow and give back. Every write transaction on a writable
//! connection is `BEGIN IMMEDIATE` ([`super::open_for_writing`] sets it), so a transaction
//! takes SQLite's write lock when it begins or waits for it (busy timeout), never failing
//! halfway when a read turns into a write. ARCHITECTURE.md ("One write path") says why.
//!
//! The one other writer in the process is ingest's commit thread ([`super::Writer`]): the
//! readings, the rule engine's state and the anomaly tasks it opens commit together there,
//! which is what makes a breach and its task atomic. The two never write at once; SQLite's
//! lock orders them and both use the same transaction mode.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use rusqlite::Connection;

use super::{open_for_reading, open_for_writing, StoreError};
use crate::config::Synchronous;

/// Read-only connections per database at most: a read beyond them waits for one to be given
/// back rather than opening another. Opening a connection costs more than most API reads,
/// and on a few cores more concurrent SQLite reads only queue for the CPU anyway.
pub const MAX_READERS: usize = 8;

/// Kept for compatibility with callers that sized things by it: every reader is kept idle.
pub const IDLE_READERS: usize = MAX_READERS;

/// The read pool: idle connections and how many exist in all.
#[derive(Default)]
struct Readers {
    idle: Vec<Connection>,
    open: usize,
}

/// The workflow writer and the read pool of one database file.
pub struct Access {
    path: PathBuf,
    writer: Mutex<Option<Connection>>,
    readers: Mutex<Readers>,
    /// Signalled when a connection is given back.
    returned: Condvar,
}

/// The [`Access`] of database `path` in this process (made on first use).
pub fn of(path: &Path) -> Arc<Access> {
    static ALL: OnceLock<Mutex<HashMap<PathBuf, Arc<Access>>>> = OnceLock::new();
    let mut all = ALL
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    all.entry(path.to_owned())
        .or_insert_with(|| {
            Arc::new(Access {
                path: path.to_owned(),
                writer: Mutex::new(None),
                readers: Mutex::new(Readers::default()),
                returned: Condvar::new(),
            })
        })
        .clone()
}

impl Access {
    /// Runs `f` with the writer, alone: no other workflow write of this process runs
    /// meanwhile. `f` opens its own `BEGIN IMMEDIATE` transactions.
    pub fn write<T>(&self, f: impl FnOnce(&mut Connection) -> T) -> Result<T, StoreError> {
        let mut guard = self.writer.lock().unwrap_or_else(|e| {
            // A panic inside `f` rolled its transaction back when it unwound; the
            // connection is still sound, but open a fresh one to be sure.
            let mut g = e.into_inner();
            *g = None;
            g
        });
        if guard.is_none() {
            *guard = Some(open_for_writing(&self.path, Synchronous::Full)?);
        }
        let conn = guard.as_mut().expect("opened above");
        Ok(f(conn))
    }

    /// Runs `f` with a read-only connection from the pool.
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> T) -> Result<T, StoreError> {
        let lock = || self.readers.lock().unwrap_or_else(|e| e.into_inner());
        let mut pool = lock();
        let conn = loop {
            if let Some(c) = pool.idle.pop() {
                drop(pool);
                break c;
            }
            if pool.open < MAX_READERS {
                pool.open += 1;
                drop(pool);
                match open_for_reading(&self.path) {
                    Ok(c) => {
                        c.set_prepared_statement_cache_capacity(32);
                        break c;
                    }
                    Err(e) => {
                        lock().open -= 1;
                        self.returned.notify_one();
                        return Err(e);
                    }
                }
            }
            pool = self.returned.wait(pool).unwrap_or_else(|e| e.into_inner());
        };
        let out = f(&conn);
        let mut pool = lock();
        if conn.is_autocommit() {
            pool.idle.push(conn);
        } else {
            // Left inside a transaction: not reusable.
            pool.open -= 1;
        }
        drop(pool);
        self.returned.notify_one();
        Ok(out)
    }
}
