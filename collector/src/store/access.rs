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
use std::sync::{Arc, Mutex, OnceLock};

use rusqlite::Connection;

use super::{open_for_reading, open_for_writing, StoreError};
use crate::config::Synchronous;

/// Idle read-only connections kept per database (more are opened under load and closed
/// when given back).
pub const IDLE_READERS: usize = 8;

/// The workflow writer and the read pool of one database file.
pub struct Access {
    path: PathBuf,
    writer: Mutex<Option<Connection>>,
    readers: Mutex<Vec<Connection>>,
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
                readers: Mutex::new(Vec::new()),
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
        let idle = self.readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match idle {
            Some(c) => c,
            None => {
                let c = open_for_reading(&self.path)?;
                c.set_prepared_statement_cache_capacity(32);
                c
            }
        };
        let out = f(&conn);
        let mut idle = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < IDLE_READERS && conn.is_autocommit() {
            idle.push(conn);
        }
        Ok(out)
    }
}
