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
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use rusqlite::Connection;

use super::db::{self, Conn, DbUrl, Mode};
use super::StoreError;

/// Read-only connections per database at most: a read beyond them waits for one to be given
/// back rather than opening another. Opening a connection costs more than most API reads,
/// and on a few cores more concurrent SQLite reads only queue for the CPU anyway.
pub const MAX_READERS: usize = 8;

/// Kept for compatibility with callers that sized things by it: every reader is kept idle.
pub const IDLE_READERS: usize = MAX_READERS;

/// The read pool: idle connections and how many exist in all.
#[derive(Default)]
struct Readers {
    idle: Vec<Conn>,
    open: usize,
}

/// The workflow writer and the read pool of one database.
pub struct Access {
    url: DbUrl,
    writer: Mutex<Option<Conn>>,
    readers: Mutex<Readers>,
    /// Signalled when a connection is given back.
    returned: Condvar,
}

/// The [`Access`] of the SQLite database file `path` in this process (made on first use).
pub fn of(path: &Path) -> Arc<Access> {
    of_url(&DbUrl::Sqlite(path.to_owned()))
}

/// The [`Access`] of the database at `url` in this process (made on first use).
pub fn of_url(url: &DbUrl) -> Arc<Access> {
    static ALL: OnceLock<Mutex<HashMap<String, Arc<Access>>>> = OnceLock::new();
    let mut all = ALL
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    all.entry(url.to_string())
        .or_insert_with(|| {
            Arc::new(Access {
                url: url.clone(),
                writer: Mutex::new(None),
                readers: Mutex::new(Readers::default()),
                returned: Condvar::new(),
            })
        })
        .clone()
}

/// What code not yet moved to [`db::Sql`] is given: the SQLite connection underneath.
fn sqlite(conn: &Conn) -> &Connection {
    conn.as_sqlite()
        .expect("code that runs SQLite directly was given a PostgreSQL store (docs/storage.md)")
}

impl Access {
    /// The database this is the access of.
    pub fn url(&self) -> &DbUrl {
        &self.url
    }

    /// Runs `f` with the writer, alone: no other workflow write of this process runs
    /// meanwhile. `f` opens its own write transactions ([`Conn::transaction`]).
    pub fn write_db<T>(&self, f: impl FnOnce(&Conn) -> T) -> Result<T, StoreError> {
        self.with_writer(|c| f(c))
    }

    /// [`Access::write_db`] for code that still runs SQLite directly.
    pub fn write<T>(&self, f: impl FnOnce(&mut Connection) -> T) -> Result<T, StoreError> {
        self.with_writer(|c| {
            f(c.as_sqlite_mut().expect(
                "code that runs SQLite directly was given a PostgreSQL store (docs/storage.md)",
            ))
        })
    }

    fn with_writer<T>(&self, f: impl FnOnce(&mut Conn) -> T) -> Result<T, StoreError> {
        let mut guard = self.writer.lock().unwrap_or_else(|e| {
            // A panic inside `f` rolled its transaction back when it unwound; the
            // connection is still sound, but open a fresh one to be sure.
            let mut g = e.into_inner();
            *g = None;
            g
        });
        if guard.as_ref().is_some_and(|c| !c.is_idle()) {
            // Left inside a transaction (or lost): not reusable.
            *guard = None;
        }
        if guard.is_none() {
            *guard = Some(db::connect(&self.url, Mode::Write)?);
        }
        Ok(f(guard.as_mut().expect("opened above")))
    }

    /// Runs `f` with a read-only connection from the pool.
    pub fn read_db<T>(&self, f: impl FnOnce(&Conn) -> T) -> Result<T, StoreError> {
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
                match db::connect(&self.url, Mode::Read) {
                    Ok(c) => {
                        if let Some(s) = c.as_sqlite() {
                            s.set_prepared_statement_cache_capacity(32);
                        }
                        break c;
                    }
                    Err(e) => {
                        lock().open -= 1;
                        self.returned.notify_one();
                        return Err(e.into());
                    }
                }
            }
            pool = self.returned.wait(pool).unwrap_or_else(|e| e.into_inner());
        };
        let out = f(&conn);
        let mut pool = lock();
        if conn.is_idle() {
            pool.idle.push(conn);
        } else {
            // Left inside a transaction: not reusable.
            pool.open -= 1;
        }
        drop(pool);
        self.returned.notify_one();
        Ok(out)
    }

    /// [`Access::read_db`] for code that still runs SQLite directly.
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> T) -> Result<T, StoreError> {
        self.read_db(|c| f(sqlite(c)))
    }
}
