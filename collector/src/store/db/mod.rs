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

use std::cell::Cell;

pub use url::{DbUrl, DbUrlError};

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

/// One value as both engines know it: SQLite's storage classes, which PostgreSQL's integer,
/// double, text and bytea types map onto.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// SQL NULL.
    Null,
    /// A 64-bit integer (also flags: 0 or 1).
    Int(i64),
    /// A double.
    Real(f64),
    /// UTF-8 text.
    Text(&'a str),
    /// Bytes.
    Blob(&'a [u8]),
}

/// A Rust value that can be a statement's parameter.
pub trait Arg {
    /// The value to bind.
    fn value(&self) -> Value<'_>;

    /// Why the value cannot be stored, if it cannot (an unsigned integer above `i64::MAX`):
    /// checked before binding, so the statement fails with [`DbError::Parameter`] naming it
    /// rather than storing something else.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Every argument's [`Arg::check`], as the error that names the first that fails.
pub(crate) fn check_args(args: &[&dyn Arg]) -> Result<(), DbError> {
    for (i, a) in args.iter().enumerate() {
        a.check().map_err(|reason| DbError::Parameter {
            index: i + 1,
            reason,
        })?;
    }
    Ok(())
}

macro_rules! int_arg {
    ($($t:ty),*) => {$(
        impl Arg for $t {
            fn value(&self) -> Value<'_> {
                Value::Int(i64::from(*self))
            }
        }
    )*};
}
int_arg!(i64, i32, i16, i8, u32, u16, u8, bool);

/// Unsigned integers above `i64::MAX` cannot be stored (both engines' integers are signed
/// 64-bit): [`Arg::check`] refuses them, so the statement fails naming the parameter.
macro_rules! unsigned_arg {
    ($($t:ty),*) => {$(
        impl Arg for $t {
            fn value(&self) -> Value<'_> {
                // Never bound when out of range: `check` refuses it first.
                Value::Int(i64::try_from(*self).unwrap_or(i64::MAX))
            }

            fn check(&self) -> Result<(), String> {
                match i64::try_from(*self) {
                    Ok(_) => Ok(()),
                    Err(_) => Err(format!(
                        "{} is above the largest integer the store keeps ({})",
                        self,
                        i64::MAX
                    )),
                }
            }
        }
    )*};
}
unsigned_arg!(u64, usize);

impl Arg for f64 {
    fn value(&self) -> Value<'_> {
        Value::Real(*self)
    }
}

impl Arg for str {
    fn value(&self) -> Value<'_> {
        Value::Text(self)
    }
}

impl Arg for String {
    fn value(&self) -> Value<'_> {
        Value::Text(self)
    }
}

impl Arg for [u8] {
    fn value(&self) -> Value<'_> {
        Value::Blob(self)
    }
}

impl Arg for Vec<u8> {
    fn value(&self) -> Value<'_> {
        Value::Blob(self)
    }
}

impl<T: Arg + ?Sized> Arg for &T {
    fn value(&self) -> Value<'_> {
        (**self).value()
    }

    fn check(&self) -> Result<(), String> {
        (**self).check()
    }
}

impl<T: Arg> Arg for Option<T> {
    fn value(&self) -> Value<'_> {
        match self {
            Some(v) => v.value(),
            None => Value::Null,
        }
    }

    fn check(&self) -> Result<(), String> {
        self.as_ref().map_or(Ok(()), Arg::check)
    }
}

impl Arg for Value<'_> {
    fn value(&self) -> Value<'_> {
        *self
    }
}

/// The parameters of a statement, `$1` first: `args![a, b]`.
#[macro_export]
macro_rules! args {
    () => { &[] as &[&dyn $crate::store::db::Arg] };
    ($($a:expr),+ $(,)?) => { &[$(&$a as &dyn $crate::store::db::Arg),+] as &[&dyn $crate::store::db::Arg] };
}
pub use args;

/// A Rust type a column can be read as.
pub trait FromColumn: Sized {
    /// Converts the column's value.
    fn from_value(v: Value<'_>) -> Result<Self, String>;
}

impl FromColumn for i64 {
    fn from_value(v: Value<'_>) -> Result<Self, String> {
        match v {
            Value::Int(i) => Ok(i),
            other => Err(format!("expected an integer, found {}", kind(&other))),
        }
    }
}

macro_rules! narrow_int {
    ($($t:ty),*) => {$(
        impl FromColumn for $t {
            fn from_value(v: Value<'_>) -> Result<Self, String> {
                let i = i64::from_value(v)?;
                <$t>::try_from(i).map_err(|_| format!("{i} does not fit in {}", stringify!($t)))
            }
        }
    )*};
}
narrow_int!(i32, u32, u64, usize, u16, u8);

impl FromColumn for bool {
    fn from_value(v: Value<'_>) -> Result<Self, String> {
        Ok(i64::from_value(v)? != 0)
    }
}

impl FromColumn for f64 {
    fn from_value(v: Value<'_>) -> Result<Self, String> {
        match v {
            Value::Real(f) => Ok(f),
            // SQLite keeps a whole-numbered REAL as given; both engines' integer results of
            // arithmetic on reals are read as doubles.
            Value::Int(i) => Ok(i as f64),
            other => Err(format!("expected a number, found {}", kind(&other))),
        }
    }
}

impl FromColumn for String {
    fn from_value(v: Value<'_>) -> Result<Self, String> {
        match v {
            Value::Text(s) => Ok(s.to_owned()),
            other => Err(format!("expected text, found {}", kind(&other))),
        }
    }
}

impl FromColumn for Vec<u8> {
    fn from_value(v: Value<'_>) -> Result<Self, String> {
        match v {
            Value::Blob(b) => Ok(b.to_vec()),
            other => Err(format!("expected bytes, found {}", kind(&other))),
        }
    }
}

impl<T: FromColumn> FromColumn for Option<T> {
    fn from_value(v: Value<'_>) -> Result<Self, String> {
        match v {
            Value::Null => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

fn kind(v: &Value<'_>) -> &'static str {
    match v {
        Value::Null => "NULL",
        Value::Int(_) => "an integer",
        Value::Real(_) => "a real",
        Value::Text(_) => "text",
        Value::Blob(_) => "bytes",
    }
}

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
