//! The SQLite backend: parameters bound by their names `$1`, `$2`, … (SQLite numbers named
//! parameters in order of first appearance, which need not be their number), statements
//! from the connection's cache.

use std::path::Path;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, Statement, ToSql};

use super::{Arg, DbError, Mode, Row, Value};
use crate::config::Synchronous;

/// Opens the file: for writing with `synchronous = FULL` and the schema brought up to date
/// (the store's usual opener), or read-only.
pub fn open(path: &Path, mode: Mode) -> Result<Connection, DbError> {
    let opened = match mode {
        Mode::Write => crate::store::open_for_writing(path, Synchronous::Full),
        Mode::Read => crate::store::open_for_reading(path),
    };
    opened.map_err(|e| match e {
        crate::store::StoreError::Sqlite { source, .. } => DbError::Sqlite(source),
        other => DbError::Schema(other.to_string()),
    })
}

/// A parameter as rusqlite binds it.
struct Bound<'a>(Value<'a>);

impl ToSql for Bound<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self.0 {
            Value::Null => ValueRef::Null,
            Value::Int(i) => ValueRef::Integer(i),
            Value::Real(f) => ValueRef::Real(f),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

/// `$1` … `$32`, the names most statements bind, without formatting them per row.
const NAMES: [&str; 32] = [
    "$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8", "$9", "$10", "$11", "$12", "$13", "$14", "$15",
    "$16", "$17", "$18", "$19", "$20", "$21", "$22", "$23", "$24", "$25", "$26", "$27", "$28",
    "$29", "$30", "$31", "$32",
];

fn bind(stmt: &mut Statement<'_>, args: &[&dyn Arg]) -> Result<(), DbError> {
    super::check_args(args)?;
    let expected = stmt.parameter_count();
    if expected != args.len() {
        return Err(DbError::Parameter {
            index: args.len().min(expected) + 1,
            reason: format!(
                "the statement has {expected} parameters, {} were given",
                args.len()
            ),
        });
    }
    for (i, a) in args.iter().enumerate() {
        let formatted;
        let name = match NAMES.get(i) {
            Some(n) => *n,
            None => {
                formatted = format!("${}", i + 1);
                formatted.as_str()
            }
        };
        let at = stmt
            .parameter_index(name)?
            .ok_or_else(|| DbError::Parameter {
                index: i + 1,
                reason: format!("the statement has no {name}: write parameters as $1, $2, …"),
            })?;
        stmt.raw_bind_parameter(at, Bound(a.value()))?;
    }
    Ok(())
}

pub(super) fn execute(c: &Connection, sql: &str, args: &[&dyn Arg]) -> Result<u64, DbError> {
    let mut stmt = c.prepare_cached(sql)?;
    bind(&mut stmt, args)?;
    Ok(stmt.raw_execute()? as u64)
}

pub(super) fn query<T>(
    c: &Connection,
    sql: &str,
    args: &[&dyn Arg],
    f: &mut dyn FnMut(&Row<'_>) -> Result<T, DbError>,
) -> Result<Vec<T>, DbError> {
    let mut stmt = c.prepare_cached(sql)?;
    query_prepared(&mut stmt, args, f)
}

pub(super) fn query_prepared<T>(
    stmt: &mut Statement<'_>,
    args: &[&dyn Arg],
    f: &mut dyn FnMut(&Row<'_>) -> Result<T, DbError>,
) -> Result<Vec<T>, DbError> {
    bind(stmt, args)?;
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(f(&Row::Sqlite(r))?);
    }
    Ok(out)
}

/// A column's value.
pub(super) fn value(v: ValueRef<'_>) -> Result<Value<'_>, String> {
    Ok(match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => {
            Value::Text(std::str::from_utf8(t).map_err(|e| format!("text is not UTF-8: {e}"))?)
        }
        ValueRef::Blob(b) => Value::Blob(b),
    })
}
