//! The PostgreSQL backend, through the synchronous `postgres` client: prepared statements
//! cached per connection, parameters converted to the type the server inferred for them,
//! write transactions serialized across collectors by an advisory lock, migrations run
//! once under a lock when several collectors start together.

use std::cell::RefCell;
use std::collections::HashMap;
use std::error::Error;

use bytes::BytesMut;
/// PostgreSQL's column types, as [`super::Conn::copy_in`] names them.
pub use postgres::types::Type;
use postgres::types::{to_sql_checked, IsNull, ToSql};
use postgres::{NoTls, Statement};

use super::{Arg, DbError, Mode, Row, Value};
use crate::store::schema;

/// The advisory lock every workflow write transaction holds (the equivalent of SQLite's
/// one write lock per file). The number is arbitrary but fixed: "spotchk" in ASCII.
pub const WRITE_LOCK: i64 = 0x73_70_6f_74_63_68_6b;
/// The advisory lock migrations run under.
pub const MIGRATE_LOCK: i64 = WRITE_LOCK + 1;

/// A connection and its prepared statements.
pub struct Client {
    client: RefCell<postgres::Client>,
    prepared: RefCell<HashMap<String, Statement>>,
}

/// The server's own words for an error: severity, SQLSTATE, message, detail, constraint.
pub fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
            if let Some(d) = db.detail() {
                s.push_str(&format!(" ({d})"));
            }
            if let Some(c) = db.constraint() {
                s.push_str(&format!(" [constraint {c}]"));
            }
            s
        }
        None => match e.source() {
            Some(src) => format!("{e}: {src}"),
            None => e.to_string(),
        },
    }
}

impl Client {
    /// Connects; in [`Mode::Write`] brings the schema up to date first.
    pub fn open(config: &postgres::Config, mode: Mode) -> Result<Client, DbError> {
        let client = config.connect(NoTls)?;
        let c = Client {
            client: RefCell::new(client),
            prepared: RefCell::new(HashMap::new()),
        };
        match mode {
            Mode::Write => c.migrate()?,
            Mode::Read => c.batch("SET default_transaction_read_only = on")?,
        }
        Ok(c)
    }

    fn migrate(&self) -> Result<(), DbError> {
        self.batch(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock({MIGRATE_LOCK});
             CREATE TABLE IF NOT EXISTS spotcheck_schema (version BIGINT NOT NULL);"
        ))?;
        let done = (|| {
            let version: i64 = self
                .query("SELECT version FROM spotcheck_schema", &[], &mut |r| {
                    r.get(0)
                })?
                .into_iter()
                .next()
                .unwrap_or(0);
            let known = schema::postgres::MIGRATIONS.len();
            if version as usize > known {
                return Err(DbError::Schema(format!(
                    "the database has schema version {version}, newer than this build's \
                     {known}: upgrade spotcheck-collector"
                )));
            }
            for (i, sql) in schema::postgres::MIGRATIONS
                .iter()
                .enumerate()
                .skip(version as usize)
            {
                self.batch(sql)?;
                tracing::info!(
                    message = "Store migrated.",
                    version = i + 1,
                    backend = "postgres"
                );
            }
            self.batch("DELETE FROM spotcheck_schema")?;
            self.execute(
                "INSERT INTO spotcheck_schema (version) VALUES ($1)",
                &[&(known as i64)],
            )?;
            Ok(())
        })();
        match done {
            Ok(()) => self.batch("COMMIT"),
            Err(e) => {
                let _ = self.batch("ROLLBACK");
                Err(e)
            }
        }
    }

    fn statement(&self, sql: &str) -> Result<Statement, DbError> {
        if let Some(s) = self.prepared.borrow().get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.borrow_mut().prepare(sql)?;
        self.prepared.borrow_mut().insert(sql.to_owned(), s.clone());
        Ok(s)
    }

    pub(super) fn execute(&self, sql: &str, args: &[&dyn Arg]) -> Result<u64, DbError> {
        super::check_args(args)?;
        let stmt = self.statement(sql)?;
        let params = params(args);
        let refs = refs(&params);
        Ok(self.client.borrow_mut().execute(&stmt, &refs)?)
    }

    pub(super) fn batch(&self, sql: &str) -> Result<(), DbError> {
        Ok(self.client.borrow_mut().batch_execute(sql)?)
    }

    pub(super) fn query<T>(
        &self,
        sql: &str,
        args: &[&dyn Arg],
        f: &mut dyn FnMut(&Row<'_>) -> Result<T, DbError>,
    ) -> Result<Vec<T>, DbError> {
        super::check_args(args)?;
        let stmt = self.statement(sql)?;
        let params = params(args);
        let refs = refs(&params);
        let rows = self.client.borrow_mut().query(&stmt, &refs)?;
        rows.iter().map(|r| f(&Row::Postgres(r))).collect()
    }

    /// `BEGIN` and the cluster-wide write lock.
    pub(super) fn begin_serialized(&self) -> Result<(), DbError> {
        self.batch(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})"
        ))
    }

    /// A statement whose text changes with its input (a multi-row `VALUES` list): prepared
    /// unnamed for this one run, not kept in the cache.
    pub(super) fn query_once<T>(
        &self,
        sql: &str,
        args: &[&dyn Arg],
        f: &mut dyn FnMut(&Row<'_>) -> Result<T, DbError>,
    ) -> Result<Vec<T>, DbError> {
        super::check_args(args)?;
        let params = params(args);
        let refs = refs(&params);
        let rows = self.client.borrow_mut().query(sql, &refs)?;
        rows.iter().map(|r| f(&Row::Postgres(r))).collect()
    }

    /// `BEGIN` without the write lock, for transactions that may run beside each other's
    /// (ingest's commits from several collectors). The transaction takes its id at once: the
    /// time-series sink's watermark (`sink::source`) relies on every transaction that writes
    /// readings having an id before it takes any row id.
    pub(super) fn begin_concurrent(&self) -> Result<(), DbError> {
        self.batch("BEGIN; SELECT pg_current_xact_id()")
    }

    /// `COPY … FROM STDIN (FORMAT binary)` of `rows`, each value sent as the column type at
    /// its place in `types`; returns the rows copied.
    pub(super) fn copy_in<const N: usize>(
        &self,
        sql: &str,
        types: &[Type; N],
        rows: &[[Value<'_>; N]],
    ) -> Result<u64, DbError> {
        let mut client = self.client.borrow_mut();
        let sink = client.copy_in(sql)?;
        let mut w = postgres::binary_copy::BinaryCopyInWriter::new(sink, types);
        for row in rows {
            let params: [Param<'_>; N] = std::array::from_fn(|i| Param(row[i]));
            let refs: [&(dyn ToSql + Sync); N] =
                std::array::from_fn(|i| &params[i] as &(dyn ToSql + Sync));
            w.write(&refs)?;
        }
        Ok(w.finish()?)
    }

    pub(super) fn is_closed(&self) -> bool {
        self.client.borrow().is_closed()
    }

    /// Asks the server (an empty query, waiting at most `timeout`) whether the connection
    /// still works.
    pub(super) fn answers(&self, timeout: std::time::Duration) -> bool {
        self.client.borrow_mut().is_valid(timeout).is_ok()
    }
}

fn params<'a>(args: &'a [&'a dyn Arg]) -> Vec<Param<'a>> {
    args.iter().map(|a| Param(a.value())).collect()
}

fn refs<'a>(params: &'a [Param<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

/// A parameter, converted to whatever type the server inferred for its place.
#[derive(Debug)]
struct Param<'a>(Value<'a>);

type BoxError = Box<dyn Error + Sync + Send>;

impl ToSql for Param<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match (self.0, ty) {
            (Value::Null, _) => Ok(IsNull::Yes),
            (Value::Int(i), &Type::INT8) => i.to_sql(ty, out),
            (Value::Int(i), &Type::INT4) => i32::try_from(i)?.to_sql(ty, out),
            (Value::Int(i), &Type::INT2) => i16::try_from(i)?.to_sql(ty, out),
            (Value::Int(i), &Type::BOOL) => (i != 0).to_sql(ty, out),
            (Value::Int(i), &Type::FLOAT8) => (i as f64).to_sql(ty, out),
            (Value::Real(f), &Type::FLOAT8) => f.to_sql(ty, out),
            (Value::Real(f), &Type::FLOAT4) => (f as f32).to_sql(ty, out),
            (Value::Text(s), t) if <&str as ToSql>::accepts(t) => s.to_sql(ty, out),
            (Value::Blob(b), &Type::BYTEA) => b.to_sql(ty, out),
            (v, t) => Err(format!(
                "{} cannot be sent where the statement expects {t}; add a CAST in the SQL",
                super::value::kind(&v)
            )
            .into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Column `i` of `row`, converted through `f`.
pub(super) fn read<T>(
    row: &postgres::Row,
    i: usize,
    f: impl FnOnce(Value<'_>) -> Result<T, String>,
) -> Result<T, String> {
    let ty = row
        .columns()
        .get(i)
        .ok_or_else(|| format!("the row has {} columns", row.len()))?
        .type_()
        .clone();
    let e = |e: postgres::Error| e.to_string();
    let v =
        match ty {
            Type::INT8 => row.try_get::<_, Option<i64>>(i).map_err(e)?.map(Value::Int),
            Type::INT4 => row
                .try_get::<_, Option<i32>>(i)
                .map_err(e)?
                .map(|v| Value::Int(v.into())),
            Type::INT2 => row
                .try_get::<_, Option<i16>>(i)
                .map_err(e)?
                .map(|v| Value::Int(v.into())),
            Type::BOOL => row
                .try_get::<_, Option<bool>>(i)
                .map_err(e)?
                .map(|v| Value::Int(v.into())),
            Type::FLOAT8 => row
                .try_get::<_, Option<f64>>(i)
                .map_err(e)?
                .map(Value::Real),
            Type::FLOAT4 => row
                .try_get::<_, Option<f32>>(i)
                .map_err(e)?
                .map(|v| Value::Real(v.into())),
            Type::BYTEA => {
                let b: Option<&[u8]> = row.try_get(i).map_err(e)?;
                return f(b.map_or(Value::Null, Value::Blob));
            }
            ref t if <&str as postgres::types::FromSql>::accepts(t) => {
                let s: Option<&str> = row.try_get(i).map_err(e)?;
                return f(s.map_or(Value::Null, Value::Text));
            }
            Type::NUMERIC => return Err(
                "PostgreSQL returned numeric (SUM of integers does): CAST(… AS BIGINT) in the SQL"
                    .to_owned(),
            ),
            other => {
                return Err(format!(
                    "PostgreSQL type {other} is not one the store reads"
                ))
            }
        };
    f(v.unwrap_or(Value::Null))
}
