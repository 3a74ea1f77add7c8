//! The store's two backends behind one interface: SQLite (the default, one file beside the
//! collector) and PostgreSQL (shared by several collectors), chosen by the database URL.
//!
//! Code that owns a table writes its SQL once, in the subset both engines run the same way
//! (docs/storage.md lists it): parameters are `$1`, `$2`, … on both; integers are 64-bit,
//! reals are doubles, flags are integers 0/1, byte strings are `BLOB`/`BYTEA`; `INSERT … ON
//! CONFLICT … DO NOTHING/UPDATE` and `RETURNING` instead of `INSERT OR …` and
//! `last_insert_rowid()`; aggregates that PostgreSQL widens to `numeric` (`SUM` of integers)
//! are `CAST(… AS BIGINT)`. What the engines cannot share (connection settings, the schema
//! version, locks) lives in [`sqlite`] and [`postgres`].
//!
//! Connections are synchronous, like the commit thread and the workflow writer that use
//! them; async code reaches them through `spawn_blocking`, as for SQLite already (the
//! PostgreSQL client runs its own small runtime and must not be driven from a Tokio worker).

pub mod postgres;
pub mod sqlite;
mod url;
mod value;

use std::cell::Cell;

pub use url::{DbUrl, DbUrlError};
pub(crate) use value::check_args;
pub use value::{Arg, FromColumn, Value};

/// Which engine a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite, in WAL mode.
    Sqlite,
    /// PostgreSQL 13 or newer.
    Postgres,
}

/// What went wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// SQLite failed.
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed (connection, statement or constraint); the message is the server's.
    #[error("PostgreSQL: {}", postgres::describe(.0))]
    Postgres(#[from] ::postgres::Error),
    /// The schema cannot be used by this build (written by a newer one).
    #[error("{0}")]
    Schema(String),
    /// A query meant to return one row returned none.
    #[error("the query returned no row")]
    NoRow,
    /// A column could not be read as the type asked for.
    #[error("column {column}: {reason}")]
    Column {
        /// Its index, from 0.
        column: usize,
        /// What did not fit.
        reason: String,
    },
    /// What this engine does not do (PostgreSQL's `COPY` asked of SQLite).
    #[error("not on this engine: {0}")]
    Unsupported(&'static str),
    /// A parameter could not be sent as the type the statement needs.
    #[error("parameter ${index}: {reason}")]
    Parameter {
        /// Its number, from 1.
        index: usize,
        /// What did not fit.
        reason: String,
    },
}

/// Inside a transaction, takes the store's write lock for the rest of it: nothing on SQLite,
/// whose write transactions all hold it from their start; on PostgreSQL the cluster-wide
/// advisory lock of [`Conn::transaction`]. For a transaction begun with
/// [`Conn::transaction_concurrent`] that is about to write what the workflow writers write
/// (an anomaly task and its audit entry).
pub fn hold_write_lock(db: &(impl Sql + ?Sized)) -> Result<(), DbError> {
    match db.backend() {
        Backend::Sqlite => Ok(()),
        Backend::Postgres => {
            db.query(
                "SELECT pg_advisory_xact_lock($1)",
                crate::args![postgres::WRITE_LOCK],
                |_| Ok(()),
            )?;
            Ok(())
        }
    }
}

impl DbError {
    /// Whether a unique or primary-key constraint refused the row (a duplicate).
    pub fn is_unique_violation(&self) -> bool {
        match self {
            DbError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.extended_code,
                rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            ),
            DbError::Postgres(e) => {
                e.code() == Some(&::postgres::error::SqlState::UNIQUE_VIOLATION)
            }
            _ => false,
        }
    }
}

/// The parameters of a statement, `$1` first: `args![a, b]`.
#[macro_export]
macro_rules! args {
    () => { &[] as &[&dyn $crate::store::db::Arg] };
    ($($a:expr),+ $(,)?) => { &[$(&$a as &dyn $crate::store::db::Arg),+] as &[&dyn $crate::store::db::Arg] };
}
pub use args;

/// One row of a result.
pub enum Row<'r> {
    /// From SQLite.
    Sqlite(&'r rusqlite::Row<'r>),
    /// From PostgreSQL.
    Postgres(&'r ::postgres::Row),
}

impl Row<'_> {
    /// Column `i` (from 0) as `T`.
    pub fn get<T: FromColumn>(&self, i: usize) -> Result<T, DbError> {
        let column = |reason| DbError::Column { column: i, reason };
        match self {
            Row::Sqlite(r) => {
                let v = r.get_ref(i)?;
                T::from_value(sqlite::value(v).map_err(column)?).map_err(column)
            }
            Row::Postgres(r) => postgres::read(r, i, T::from_value).map_err(column),
        }
    }
}

/// A connection to either engine.
pub struct Conn {
    inner: Inner,
    /// Inside a transaction begun by [`Conn::transaction`].
    in_tx: Cell<bool>,
}

enum Inner {
    Sqlite(rusqlite::Connection),
    Postgres(Box<postgres::Client>),
}

impl Conn {
    /// Which engine this is.
    pub fn backend(&self) -> Backend {
        match self.inner {
            Inner::Sqlite(_) => Backend::Sqlite,
            Inner::Postgres(_) => Backend::Postgres,
        }
    }

    /// The SQLite connection underneath, for code not yet moved to this interface.
    pub fn as_sqlite(&self) -> Option<&rusqlite::Connection> {
        match &self.inner {
            Inner::Sqlite(c) => Some(c),
            Inner::Postgres(_) => None,
        }
    }

    /// [`Conn::as_sqlite`], mutably (rusqlite begins transactions on `&mut`).
    pub fn as_sqlite_mut(&mut self) -> Option<&mut rusqlite::Connection> {
        match &mut self.inner {
            Inner::Sqlite(c) => Some(c),
            Inner::Postgres(_) => None,
        }
    }

    /// Runs statements separated by `;`, without parameters (schema, settings).
    pub fn execute_batch(&self, sql: &str) -> Result<(), DbError> {
        match &self.inner {
            Inner::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Inner::Postgres(c) => c.batch(sql),
        }
    }

    /// Begins a write transaction that holds the store's write lock from its start: SQLite's
    /// `BEGIN IMMEDIATE`; on PostgreSQL a transaction-scoped advisory lock shared by every
    /// collector, so that workflow writes are serialized across the cluster as they are
    /// within one SQLite file. Rolled back when dropped without [`Tx::commit`].
    pub fn transaction(&self) -> Result<Tx<'_>, DbError> {
        assert!(
            !self.in_tx.get(),
            "a transaction is already open on this connection"
        );
        match &self.inner {
            Inner::Sqlite(c) => c.execute_batch("BEGIN IMMEDIATE")?,
            Inner::Postgres(c) => c.begin_serialized()?,
        }
        self.in_tx.set(true);
        Ok(Tx {
            conn: self,
            open: true,
        })
    }

    /// Begins a write transaction that does NOT take the store's write lock: for ingest's
    /// commits, which several collectors sharing a PostgreSQL store run at once. On SQLite it
    /// is [`Conn::transaction`] (one file has one writer whatever the transaction says). On
    /// PostgreSQL it is a plain `READ COMMITTED` transaction: what two of them must not do at
    /// once is ordered by the rows they write (the `batches` key: a redelivery waits for the
    /// transaction that stores the batch, then finds it stored) and by row locks they take
    /// (an entity's rule state); a commit that writes what the workflow tables' writers also
    /// write (anomaly tasks, the audit log) takes the write lock for the rest of the
    /// transaction first ([`hold_write_lock`]). Taking the write lock for every commit would
    /// make N collectors commit readings one at a time (docs/storage.md).
    pub fn transaction_concurrent(&self) -> Result<Tx<'_>, DbError> {
        assert!(
            !self.in_tx.get(),
            "a transaction is already open on this connection"
        );
        match &self.inner {
            Inner::Sqlite(c) => c.execute_batch("BEGIN IMMEDIATE")?,
            Inner::Postgres(c) => c.begin_concurrent()?,
        }
        self.in_tx.set(true);
        Ok(Tx {
            conn: self,
            open: true,
        })
    }

    /// A SQLite connection opened elsewhere (with settings of its own, e.g. the writer's
    /// `synchronous`), as a `Conn`.
    pub fn from_sqlite(conn: rusqlite::Connection) -> Conn {
        Conn {
            inner: Inner::Sqlite(conn),
            in_tx: Cell::new(false),
        }
    }

    /// Runs a query whose text is made for this one run (a multi-row `VALUES` list of a length
    /// that varies): not kept among the prepared statements. Same as [`Sql::query`] otherwise.
    pub fn query_once<T>(
        &self,
        sql: &str,
        args: &[&dyn Arg],
        mut f: impl FnMut(&Row<'_>) -> Result<T, DbError>,
    ) -> Result<Vec<T>, DbError> {
        match &self.inner {
            Inner::Sqlite(c) => {
                check_args(args)?;
                let mut stmt = c.prepare(sql)?;
                sqlite::query_prepared(&mut stmt, args, &mut f)
            }
            Inner::Postgres(c) => c.query_once(sql, args, &mut f),
        }
    }

    /// PostgreSQL's `COPY … FROM STDIN (FORMAT binary)`: `rows` into the columns `sql` names,
    /// each value sent as the type at its place in `types`; returns the rows copied. The
    /// fastest way to write many rows (BENCHMARKS.md, "storing readings on PostgreSQL");
    /// PostgreSQL only: on SQLite it fails with [`DbError::Unsupported`].
    pub fn copy_in<const N: usize>(
        &self,
        sql: &str,
        types: &[postgres::Type; N],
        rows: &[[Value<'_>; N]],
    ) -> Result<u64, DbError> {
        match &self.inner {
            Inner::Sqlite(_) => Err(DbError::Unsupported("COPY is PostgreSQL's")),
            Inner::Postgres(c) => c.copy_in(sql, types, rows),
        }
    }

    /// Whether the connection is gone (PostgreSQL: the server closed it or it broke; a
    /// SQLite connection never is).
    pub fn is_closed(&self) -> bool {
        match &self.inner {
            Inner::Sqlite(_) => false,
            Inner::Postgres(c) => c.is_closed(),
        }
    }

    /// Whether the server still answers on this connection (PostgreSQL: a round trip of at most
    /// `timeout`; SQLite: always). After an error, [`Conn::is_closed`] can still say `false`
    /// for a connection the server has just ended, until the client has read the end.
    pub fn answers(&self, timeout: std::time::Duration) -> bool {
        match &self.inner {
            Inner::Sqlite(_) => true,
            Inner::Postgres(c) => c.answers(timeout),
        }
    }

    /// Whether no transaction is open (a connection left inside one is not reused).
    pub fn is_idle(&self) -> bool {
        match &self.inner {
            Inner::Sqlite(c) => c.is_autocommit(),
            Inner::Postgres(c) => !self.in_tx.get() && !c.is_closed(),
        }
    }

    fn end(&self, sql: &str) -> Result<(), DbError> {
        self.in_tx.set(false);
        match &self.inner {
            Inner::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Inner::Postgres(c) => c.batch(sql),
        }
    }
}

/// Running SQL, on a [`Conn`] of either engine or on a plain SQLite connection or
/// transaction. Code that owns tables takes `&impl Sql`: on PostgreSQL it is given a `Conn`,
/// and modules that still hold `rusqlite` connections can call it with theirs while they
/// move over (docs/storage.md).
pub trait Sql {
    /// Which engine this is.
    fn backend(&self) -> Backend;

    /// Runs one statement; returns the rows it changed.
    fn execute(&self, sql: &str, args: &[&dyn Arg]) -> Result<u64, DbError>;

    /// Every row of a query, each through `f`.
    fn query<T>(
        &self,
        sql: &str,
        args: &[&dyn Arg],
        f: impl FnMut(&Row<'_>) -> Result<T, DbError>,
    ) -> Result<Vec<T>, DbError>;

    /// The first row of a query, if any.
    fn query_opt<T>(
        &self,
        sql: &str,
        args: &[&dyn Arg],
        f: impl FnOnce(&Row<'_>) -> Result<T, DbError>,
    ) -> Result<Option<T>, DbError> {
        let mut f = Some(f);
        let mut out = None;
        // Reads all rows on PostgreSQL (the protocol sends them anyway); callers ask for one.
        self.query(sql, args, |r| {
            if let Some(f) = f.take() {
                out = Some(f(r)?);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// The one row of a query; [`DbError::NoRow`] when there is none.
    fn query_row<T>(
        &self,
        sql: &str,
        args: &[&dyn Arg],
        f: impl FnOnce(&Row<'_>) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        self.query_opt(sql, args, f)?.ok_or(DbError::NoRow)
    }
}

impl Sql for Conn {
    fn backend(&self) -> Backend {
        Conn::backend(self)
    }

    fn execute(&self, sql: &str, args: &[&dyn Arg]) -> Result<u64, DbError> {
        match &self.inner {
            Inner::Sqlite(c) => sqlite::execute(c, sql, args),
            Inner::Postgres(c) => c.execute(sql, args),
        }
    }

    fn query<T>(
        &self,
        sql: &str,
        args: &[&dyn Arg],
        mut f: impl FnMut(&Row<'_>) -> Result<T, DbError>,
    ) -> Result<Vec<T>, DbError> {
        match &self.inner {
            Inner::Sqlite(c) => sqlite::query(c, sql, args, &mut f),
            Inner::Postgres(c) => c.query(sql, args, &mut f),
        }
    }
}

/// A plain SQLite connection and a SQLite transaction run SQL the same way.
macro_rules! sqlite_sql {
    ($($t:ty),*) => {$(
        impl Sql for $t {
            fn backend(&self) -> Backend {
                Backend::Sqlite
            }

            fn execute(&self, sql: &str, args: &[&dyn Arg]) -> Result<u64, DbError> {
                sqlite::execute(self, sql, args)
            }

            fn query<T>(
                &self,
                sql: &str,
                args: &[&dyn Arg],
                mut f: impl FnMut(&Row<'_>) -> Result<T, DbError>,
            ) -> Result<Vec<T>, DbError> {
                sqlite::query(self, sql, args, &mut f)
            }
        }
    )*};
}
sqlite_sql!(rusqlite::Connection, rusqlite::Transaction<'_>);

impl<S: Sql + ?Sized> Sql for &S {
    fn backend(&self) -> Backend {
        (**self).backend()
    }

    fn execute(&self, sql: &str, args: &[&dyn Arg]) -> Result<u64, DbError> {
        (**self).execute(sql, args)
    }

    fn query<T>(
        &self,
        sql: &str,
        args: &[&dyn Arg],
        f: impl FnMut(&Row<'_>) -> Result<T, DbError>,
    ) -> Result<Vec<T>, DbError> {
        (**self).query(sql, args, f)
    }
}

impl Sql for Tx<'_> {
    fn backend(&self) -> Backend {
        self.conn.backend()
    }

    fn execute(&self, sql: &str, args: &[&dyn Arg]) -> Result<u64, DbError> {
        Sql::execute(self.conn, sql, args)
    }

    fn query<T>(
        &self,
        sql: &str,
        args: &[&dyn Arg],
        f: impl FnMut(&Row<'_>) -> Result<T, DbError>,
    ) -> Result<Vec<T>, DbError> {
        Sql::query(self.conn, sql, args, f)
    }
}

/// While modules move to [`Sql`], callers that still return `rusqlite::Result` can use `?`
/// on a moved function: a SQLite error comes back as itself, anything else (which a SQLite
/// connection does not produce but the types allow) as a conversion failure carrying it.
impl From<DbError> for rusqlite::Error {
    fn from(e: DbError) -> rusqlite::Error {
        match e {
            DbError::Sqlite(e) => e,
            DbError::NoRow => rusqlite::Error::QueryReturnedNoRows,
            other => rusqlite::Error::ToSqlConversionFailure(Box::new(other)),
        }
    }
}

/// A write transaction; dereferences to its connection.
pub struct Tx<'c> {
    conn: &'c Conn,
    open: bool,
}

impl Tx<'_> {
    /// Commits.
    pub fn commit(mut self) -> Result<(), DbError> {
        self.open = false;
        self.conn.end("COMMIT")
    }
}

impl std::ops::Deref for Tx<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if self.open {
            if let Err(e) = self.conn.end("ROLLBACK") {
                tracing::warn!(message = "Rolling a transaction back failed.", error = %e);
            }
        }
    }
}

/// Runs `f`, which may call the synchronous PostgreSQL client, where that is allowed: the
/// client drives a runtime of its own and panics inside a Tokio worker, so from one it runs
/// under `block_in_place` (or, on a current-thread runtime, on a thread of its own). SQLite
/// (`needed` false) runs `f` in place, as a lookup always did.
pub fn off_the_runtime<T: Send>(needed: bool, f: impl FnOnce() -> T + Send) -> T {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return f();
    };
    if !needed {
        return f();
    }
    match handle.runtime_flavor() {
        tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => std::thread::scope(|scope| {
            scope
                .spawn(f)
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        }),
    }
}

/// How a connection is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Writes, and brings the schema up to date first.
    Write,
    /// Reads only.
    Read,
}

/// Opens a connection to the database at `url`. In [`Mode::Write`], the schema is brought up
/// to date first (on PostgreSQL under a lock, so collectors starting together migrate once).
pub fn connect(url: &DbUrl, mode: Mode) -> Result<Conn, DbError> {
    let inner = match url {
        DbUrl::Sqlite(path) => Inner::Sqlite(sqlite::open(path, mode)?),
        DbUrl::Postgres(config) => Inner::Postgres(Box::new(postgres::Client::open(config, mode)?)),
    };
    Ok(Conn {
        inner,
        in_tx: Cell::new(false),
    })
}

/// Runs `f` with this connection's SQLite page cache raised to `kib` KiB, then sets it back
/// to what it was (whatever `f` returned). For one transaction that writes hundreds of
/// megabytes at random places of large indexes (a draw's reveal at a million candidates):
/// with the default 2 MiB cache SQLite spills dirty pages to the WAL in the middle of the
/// transaction and reads them back, rewriting the same index pages many times (BENCHMARKS.md,
/// issue 17). The cache grows only as pages are used. PostgreSQL: runs `f` as it is.
pub fn with_page_cache<T>(conn: &Conn, kib: i64, f: impl FnOnce() -> T) -> Result<T, DbError> {
    let Some(c) = conn.as_sqlite() else {
        return Ok(f());
    };
    let was: i64 = c.query_row("PRAGMA cache_size", [], |r| r.get(0))?;
    c.execute_batch(&format!("PRAGMA cache_size = {}", -kib.abs()))?;
    let out = f();
    c.execute_batch(&format!("PRAGMA cache_size = {was}"))?;
    Ok(out)
}
