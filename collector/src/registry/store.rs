//! The libraries in the store (tables `registry_*`, migration 2), on SQLite or PostgreSQL. An
//! import writes all its rows in one transaction: inserted, or replacing the row with the same
//! key (and, for an inspector, the row that held their certificate under another id, as
//! SQLite's `INSERT OR REPLACE` did).
//!
//! The import is the one bulk path (a million entities, BENCHMARKS.md): on SQLite each row is
//! one execution of a cached statement, as before; on PostgreSQL rows are sent in multi-row
//! `INSERT`s of [`PG_ROWS`] (a round trip per row would cost more than the rows). Either way
//! the rows stream: memory holds one statement's worth.

use std::collections::HashSet;

use super::handoff;
use super::import::{Checker, ReadError, Record, RecordRef, Records, RowError, RowSource};
use super::model::{Entity, EntityRef, Inspector, Item};
use super::parse::Kind;
use super::CreditCode;
use crate::store::db::{args, with_page_cache, Arg, Backend, Conn, DbError, Sql, Value};

/// Why reading or writing the libraries failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryStoreError {
    /// The store failed (either engine).
    #[error("database: {0}")]
    Db(#[from] DbError),
    /// The audit log refused the entry.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// Revoking a deactivated inspector's credentials failed.
    #[error(transparent)]
    Users(#[from] crate::users::UserError),
    /// A stored row does not parse (a hand-edited database?).
    #[error("stored {table} row {key:?} is corrupt: {reason}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The row's key.
        key: String,
        /// Why.
        reason: String,
    },
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("registry types serialise")
}

fn from_json<T: serde::de::DeserializeOwned>(
    table: &'static str,
    key: &str,
    text: &str,
) -> Result<T, RegistryStoreError> {
    serde_json::from_str(text).map_err(|e| RegistryStoreError::Corrupt {
        table,
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

/// The credit codes in the entity library.
pub fn known_entities(
    conn: &(impl Sql + ?Sized),
) -> Result<HashSet<CreditCode>, RegistryStoreError> {
    let codes: Vec<String> =
        conn.query("SELECT code FROM registry_entities", args![], |r| r.get(0))?;
    let mut out = HashSet::with_capacity(codes.len());
    for c in codes {
        out.insert(from_json("registry_entities", &c, &to_json(&c))?);
    }
    Ok(out)
}

/// Writes every record in one transaction; returns how many rows were written.
pub fn write(conn: &Conn, records: &Records) -> Result<usize, RegistryStoreError> {
    let tx = conn.transaction()?;
    let kind = match records {
        Records::Items(_) => Kind::Items,
        Records::Entities(_) => Kind::Entities,
        Records::Inspectors(_) => Kind::Inspectors,
    };
    let mut w = Writer::new(&tx, kind);
    match records {
        Records::Items(v) => v.iter().try_for_each(|i| w.item(i))?,
        Records::Entities(v) => v.iter().try_for_each(|e| w.entity(&e.into()))?,
        Records::Inspectors(v) => v.iter().try_for_each(|i| w.inspector(i))?,
    }
    let n = w.finish()?;
    tx.commit()?;
    Ok(n)
}

/// What a streamed import came to.
#[derive(Debug)]
pub enum Imported {
    /// Every row was valid: this many were written (or, in a dry run, would be).
    Rows(usize),
    /// Some rows were not: nothing was written.
    Refused {
        /// Rows read.
        rows: usize,
        /// Rows without a problem (they would have been written with the others).
        accepted: usize,
        /// Every problem, by line.
        errors: Vec<RowError>,
    },
}

/// Why a streamed import stopped before it could judge the file.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file could not be read (I/O, broken CSV or JSON).
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] RegistryStoreError),
}

impl From<DbError> for ImportError {
    fn from(e: DbError) -> Self {
        ImportError::Store(e.into())
    }
}

/// Checks `rows` as they stream and, unless `conn` is `None` (a dry run), writes each valid
/// row at once inside one transaction, committed only if every row was valid. Memory holds
/// the keys seen (for the uniqueness check), never the rows. The entity library is read only
/// for an inspector file (their conflicts must name known entities), from `known_from` or
/// else `conn`.
pub fn import(
    conn: Option<&Conn>,
    known_from: Option<&Conn>,
    kind: Kind,
    rows: impl RowSource,
) -> Result<Imported, ImportError> {
    let known = match (kind, known_from.or(conn)) {
        (Kind::Inspectors, Some(c)) => known_entities(c)?,
        _ => HashSet::new(),
    };
    let mut checker = Checker::new(kind, &known);
    let write = || -> Result<Imported, ImportError> {
        let tx = conn.map(Conn::transaction).transpose()?;
        let mut writer = tx.as_ref().map(|tx| Writer::new(tx, kind));
        match (rows.into_rows(), writer.as_mut()) {
            // A file of entities is read and checked on a second thread while this one writes.
            (Ok(file), Some(w)) if kind == Kind::Entities => {
                handoff::import_entities(file, &mut checker, w)?
            }
            (Ok(file), w) => one_thread(file, &mut checker, w)?,
            (Err(rows), w) => one_thread(rows, &mut checker, w)?,
        }
        let rows_read = checker.rows();
        let outcome = checker.finish();
        match (outcome.is_ok(), writer) {
            (true, Some(w)) => {
                w.finish()?;
            }
            (_, w) => drop(w),
        }
        match outcome {
            // The transaction is dropped unfinished: rolled back.
            Err(errors) => {
                let mut bad: Vec<u64> = errors.iter().map(|e| e.line).collect();
                bad.dedup();
                Ok(Imported::Refused {
                    rows: rows_read,
                    accepted: rows_read.saturating_sub(bad.len()),
                    errors,
                })
            }
            Ok(n) => {
                if let Some(tx) = tx {
                    tx.commit()?;
                }
                Ok(Imported::Rows(n))
            }
        }
    };
    match conn {
        // The larger cache lasts as long as the transaction, and is given back after it.
        Some(c) => with_page_cache(c, IMPORT_CACHE_KIB, write)?,
        None => write(),
    }
}

/// SQLite's page cache while an import writes, in KiB (SQLite's default is 2 MiB): with the
/// default, the pages a million-row transaction dirties spill into the WAL before the commit
/// and some are written there again and again (BENCHMARKS.md).
const IMPORT_CACHE_KIB: i64 = 64 * 1024;

/// Checks every row and writes each valid one with `writer` (if any) as it is read; after the
/// first bad row nothing more is written, only problems are collected.
fn one_thread<S: Sql + ?Sized>(
    rows: impl RowSource,
    checker: &mut Checker<'_>,
    mut writer: Option<&mut Writer<'_, S>>,
) -> Result<(), ImportError> {
    rows.each_row(|row| -> Result<(), ImportError> {
        let record = checker.check_view(&row);
        if let (Some(r), Some(w), true) = (record, writer.as_mut(), checker.is_clean()) {
            w.record_ref(&r)?;
        }
        Ok(())
    })
}

/// Rows per multi-row `INSERT` on PostgreSQL (8 parameters each at most: 4,000 parameters, far
/// below the protocol's 65,535).
pub const PG_ROWS: usize = 500;

/// One parameter held until its multi-row statement is sent (PostgreSQL).
#[derive(Debug, Clone)]
enum Held {
    Null,
    Int(i64),
    Text(String),
}

impl Arg for Held {
    fn value(&self) -> Value<'_> {
        match self {
            Held::Null => Value::Null,
            Held::Int(i) => Value::Int(*i),
            Held::Text(s) => Value::Text(s),
        }
    }
}

/// What the libraries' tables look like to the writer.
struct Table {
    name: &'static str,
    columns: &'static [&'static str],
}

impl Table {
    fn of(kind: Kind) -> Table {
        match kind {
            Kind::Items => Table {
                name: "registry_items",
                columns: &[
                    "id",
                    "name",
                    "department",
                    "legal_basis",
                    "kind",
                    "method",
                    "rule_pack",
                ],
            },
            Kind::Entities => Table {
                name: "registry_entities",
                columns: &[
                    "code", "name", "domain", "district", "address", "contact", "risk", "agents",
                ],
            },
            Kind::Inspectors => Table {
                name: "registry_inspectors",
                columns: &[
                    "id",
                    "name",
                    "certificate",
                    "department",
                    "fields",
                    "active",
                    "conflicts",
                ],
            },
        }
    }

    /// `INSERT … VALUES (…), … ON CONFLICT (key) DO UPDATE` for `rows` rows: a row with the
    /// same key is replaced (each key appears once per file: the checker refuses repeats).
    fn insert(&self, rows: usize) -> String {
        let n = self.columns.len();
        let values: Vec<String> = (0..rows)
            .map(|r| {
                let params: Vec<String> = (1..=n).map(|c| format!("${}", r * n + c)).collect();
                format!("({})", params.join(", "))
            })
            .collect();
        let set: Vec<String> = self.columns[1..]
            .iter()
            .map(|c| format!("{c} = excluded.{c}"))
            .collect();
        format!(
            "INSERT INTO {} ({}) VALUES {} ON CONFLICT ({}) DO UPDATE SET {}",
            self.name,
            self.columns.join(", "),
            values.join(", "),
            self.columns[0],
            set.join(", ")
        )
    }
}

/// Writes the rows of one import inside the caller's transaction, then audits it.
pub struct Writer<'t, S: Sql + ?Sized> {
    tx: &'t S,
    kind: Kind,
    table: Table,
    /// The one-row statement (SQLite; on PostgreSQL the rows after the last full batch).
    one: String,
    /// PostgreSQL: parameters of rows not sent yet, and the full batch's statement.
    held: Vec<Held>,
    many: Option<String>,
    /// The keys of the held rows: one statement may not upsert a key twice (an import's
    /// checker refuses repeated keys, but [`write`] takes records as they come).
    held_keys: HashSet<String>,
    /// Inspectors deactivated by this import whose tokens or sessions ended.
    deactivated: Vec<serde_json::Value>,
    rows: usize,
    /// Scratch space for a row's JSON column.
    json: Vec<u8>,
}

impl<'t, S: Sql + ?Sized> Writer<'t, S> {
    /// A writer of `kind` records inside `tx`.
    pub fn new(tx: &'t S, kind: Kind) -> Writer<'t, S> {
        let table = Table::of(kind);
        let batched = tx.backend() == Backend::Postgres;
        Writer {
            tx,
            kind,
            one: table.insert(1),
            many: batched.then(|| table.insert(PG_ROWS)),
            held: Vec::new(),
            held_keys: HashSet::new(),
            table,
            deactivated: Vec::new(),
            rows: 0,
            json: Vec::new(),
        }
    }

    /// Writes one record (of this writer's kind).
    pub fn record(&mut self, r: &Record) -> Result<(), RegistryStoreError> {
        match r {
            Record::Item(i) => self.item(i),
            Record::Entity(e) => self.entity(&e.into()),
            Record::Inspector(i) => self.inspector(i),
        }
    }

    /// [`Writer::record`] for a record that borrows its row.
    pub fn record_ref(&mut self, r: &RecordRef<'_>) -> Result<(), RegistryStoreError> {
        match r {
            RecordRef::Item(i) => self.item(i),
            RecordRef::Entity(e) => self.entity(e),
            RecordRef::Inspector(i) => self.inspector(i),
        }
    }

    /// One row: executed at once (SQLite), or held for the next multi-row statement.
    fn put(&mut self, row: &[&dyn Arg]) -> Result<(), RegistryStoreError> {
        self.rows += 1;
        if self.many.is_none() {
            self.tx.execute(&self.one, row)?;
            return Ok(());
        }
        let key = match row.first().map(|a| a.value()) {
            Some(Value::Text(k)) => k.to_owned(),
            other => unreachable!("the libraries' keys are text, not {other:?}"),
        };
        if self.held_keys.contains(&key) {
            self.send()?;
        }
        self.held_keys.insert(key);
        self.held.extend(row.iter().map(|a| match a.value() {
            Value::Null => Held::Null,
            Value::Int(i) => Held::Int(i),
            Value::Text(s) => Held::Text(s.to_owned()),
            Value::Real(_) | Value::Blob(_) => unreachable!("the libraries hold text and integers"),
        }));
        if self.held.len() == PG_ROWS * self.table.columns.len() {
            self.send()?;
        }
        Ok(())
    }

    /// Sends the held rows (PostgreSQL): a full batch as one statement, the rest of an
    /// import (fewer rows) one row per statement, so that the connection's statement cache
    /// holds two statements per library rather than one per remainder size.
    fn send(&mut self) -> Result<(), RegistryStoreError> {
        let width = self.table.columns.len();
        let params: Vec<&dyn Arg> = self.held.iter().map(|h| h as &dyn Arg).collect();
        match &self.many {
            Some(full) if params.len() == PG_ROWS * width => {
                self.tx.execute(full, &params)?;
            }
            _ => {
                for row in params.chunks(width) {
                    self.tx.execute(&self.one, row)?;
                }
            }
        }
        drop(params);
        self.held.clear();
        self.held_keys.clear();
        Ok(())
    }

    fn item(&mut self, i: &Item) -> Result<(), RegistryStoreError> {
        let (kind, method) = (to_json(&i.kind), to_json(&i.method));
        self.put(args![
            i.id.as_str(),
            i.name,
            i.department.as_str(),
            i.legal_basis,
            kind,
            method,
            i.rule_pack
        ])
    }

    fn entity(&mut self, e: &EntityRef<'_>) -> Result<(), RegistryStoreError> {
        // The agents' JSON array is written into one buffer kept across rows.
        let mut agents = std::mem::take(&mut self.json);
        let put = self.entity_columns(e.columns(&mut agents));
        self.json = agents;
        put
    }

    /// An entity row as its columns' text (code, name, domain, district, address, contact,
    /// risk, agents as a JSON array), from a checked [`EntityRef`] ([`handoff::Chunk`]).
    pub(super) fn entity_columns(
        &mut self,
        [code, name, domain, district, address, contact, risk, agents]: [&str; handoff::COLUMNS],
    ) -> Result<(), RegistryStoreError> {
        self.put(args![
            code, name, domain, district, address, contact, risk, agents
        ])
    }

    fn inspector(&mut self, i: &Inspector) -> Result<(), RegistryStoreError> {
        if !i.active {
            // Deactivating an inspector revokes their user's tokens and ends their sessions
            // (reactivating later revives none of them).
            let user: Option<i64> = self.tx.query_opt(
                "SELECT id FROM users WHERE inspector = $1",
                args![i.id.as_str()],
                |r| r.get(0),
            )?;
            if let Some(user) = user.map(crate::users::UserId) {
                let now = spotcheck_protocol::UnixMillis::now();
                let tokens = crate::users::secrets::revoke_all_in(self.tx, user, now)?;
                let sessions = crate::users::secrets::end_sessions(self.tx, user)?;
                if !tokens.is_empty() || sessions > 0 {
                    self.deactivated.push(serde_json::json!({
                        "inspector": i.id.as_str(), "user": user.0,
                        "tokens_revoked": tokens, "sessions_ended": sessions,
                    }));
                }
            }
        }
        // A certificate is one person's: the row that holds it under another id is replaced
        // (SQLite's INSERT OR REPLACE did this; an upsert by id would fail on the unique
        // certificate instead).
        self.tx.execute(
            "DELETE FROM registry_inspectors WHERE certificate = $1 AND id <> $2",
            args![i.certificate.as_str(), i.id.as_str()],
        )?;
        let (fields, conflicts) = (to_json(&i.fields), to_json(&i.conflicts));
        self.put(args![
            i.id.as_str(),
            i.name,
            i.certificate.as_str(),
            i.department.as_str(),
            fields,
            i.active,
            conflicts
        ])
    }

    /// Sends what is held, audits the import (`registry_changed`); returns how many rows were
    /// written. The caller commits.
    pub fn finish(mut self) -> Result<usize, RegistryStoreError> {
        self.send()?;
        let library = match self.kind {
            Kind::Items => "items",
            Kind::Entities => "entities",
            Kind::Inspectors => "inspectors",
        };
        crate::audit::append(
            self.tx,
            crate::audit::EntryKind::RegistryChanged,
            &format!("registry:{library}"),
            &serde_json::json!({
                "library": library, "rows": self.rows, "credentials_revoked": self.deactivated,
            }),
            spotcheck_protocol::UnixMillis::now(),
        )?;
        Ok(self.rows)
    }
}

/// The item list, by id.
pub fn items(conn: &(impl Sql + ?Sized)) -> Result<Vec<Item>, RegistryStoreError> {
    // Each row becomes its record as it is read: a library is never held twice.
    conn.query(
        "SELECT id, name, department, legal_basis, kind, method, rule_pack
         FROM registry_items ORDER BY id",
        args![],
        |r| {
            let mut v: [String; 6] = Default::default();
            for (i, slot) in v.iter_mut().enumerate() {
                *slot = r.get(i)?;
            }
            let [id, name, department, legal_basis, kind, method] = v;
            let rule_pack = r.get::<Option<String>>(6)?;
            let t = "registry_items";
            Ok((|| -> Result<Item, RegistryStoreError> {
                Ok(Item {
                    id: from_json(t, &id, &to_json(&id))?,
                    name,
                    department: from_json(t, &id, &to_json(&department))?,
                    legal_basis,
                    kind: from_json(t, &id, &kind)?,
                    method: from_json(t, &id, &method)?,
                    rule_pack,
                })
            })())
        },
    )?
    .into_iter()
    .collect()
}

/// The entity library, by credit code.
pub fn entities(conn: &(impl Sql + ?Sized)) -> Result<Vec<Entity>, RegistryStoreError> {
    conn.query(
        "SELECT code, name, domain, district, address, contact, risk, agents
         FROM registry_entities ORDER BY code",
        args![],
        |r| {
            let mut v: [String; 8] = Default::default();
            for (i, slot) in v.iter_mut().enumerate() {
                *slot = r.get(i)?;
            }
            let [code, name, domain, district, address, contact, risk, agents] = v;
            let t = "registry_entities";
            Ok((|| -> Result<Entity, RegistryStoreError> {
                Ok(Entity {
                    code: from_json(t, &code, &to_json(&code))?,
                    name,
                    domain: from_json(t, &code, &to_json(&domain))?,
                    district,
                    address,
                    contact,
                    risk: from_json(t, &code, &to_json(&risk))?,
                    agents: from_json(t, &code, &agents)?,
                })
            })())
        },
    )?
    .into_iter()
    .collect()
}

/// The inspector library, by id.
pub fn inspectors(conn: &(impl Sql + ?Sized)) -> Result<Vec<Inspector>, RegistryStoreError> {
    conn.query(
        "SELECT id, name, certificate, department, fields, conflicts, active
         FROM registry_inspectors ORDER BY id",
        args![],
        |r| {
            let mut v: [String; 6] = Default::default();
            for (i, slot) in v.iter_mut().enumerate() {
                *slot = r.get(i)?;
            }
            let [id, name, certificate, department, fields, conflicts] = v;
            let active = r.get::<bool>(6)?;
            let t = "registry_inspectors";
            Ok((|| -> Result<Inspector, RegistryStoreError> {
                Ok(Inspector {
                    id: from_json(t, &id, &to_json(&id))?,
                    name,
                    certificate: from_json(t, &id, &to_json(&certificate))?,
                    department: from_json(t, &id, &to_json(&department))?,
                    fields: from_json(t, &id, &fields)?,
                    active,
                    conflicts: from_json(t, &id, &conflicts)?,
                })
            })())
        },
    )?
    .into_iter()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::db::{connect, DbUrl, Mode};

    #[test]
    fn migration_15_keeps_the_entities_in_a_table_without_rowid() {
        let dir = tempfile::tempdir().unwrap();
        let path = crate::store::db_path(dir.path());
        {
            // A store as schema version 14 left it, with one entity.
            let c = rusqlite::Connection::open(&path).unwrap();
            for sql in &crate::store::schema::MIGRATIONS[..14] {
                c.execute_batch(sql).unwrap();
            }
            c.execute_batch(
                "PRAGMA user_version = 14;
                 INSERT INTO registry_entities VALUES ('9144030071526726XG', '腾讯', 'game',
                     '南山区', '', '张三', 'B', '[\"game-agent-01\"]');",
            )
            .unwrap();
        }
        let conn = connect(&DbUrl::Sqlite(path), Mode::Write).unwrap();
        let stored = entities(&conn).unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(
            (stored[0].code.as_str(), stored[0].agents[0].as_str()),
            ("9144030071526726XG", "game-agent-01")
        );
        let sql: String = conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE name = 'registry_entities'",
                args![],
                |r| r.get(0),
            )
            .unwrap();
        assert!(sql.contains("WITHOUT ROWID"), "{sql}");
    }
}
