//! The libraries in SQLite (tables `registry_*`, migration 2). An import writes all its rows
//! in one transaction: inserted, or replacing the row with the same key.

use std::collections::HashSet;

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::import::{Checker, RawRow, ReadError, Record, Records, RowError};
use super::model::{Entity, Inspector, Item};
use super::parse::Kind;
use super::CreditCode;

/// Why reading or writing the libraries failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryStoreError {
    /// SQLite failed.
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The store failed (either engine).
    #[error("database: {0}")]
    Db(#[from] crate::store::db::DbError),
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
pub fn known_entities(conn: &Connection) -> Result<HashSet<CreditCode>, RegistryStoreError> {
    let mut stmt = conn.prepare("SELECT code FROM registry_entities")?;
    let codes = stmt.query_map([], |r| r.get::<_, String>(0))?;
    let mut out = HashSet::new();
    for c in codes {
        let c = c?;
        out.insert(from_json("registry_entities", &c, &to_json(&c))?);
    }
    Ok(out)
}

/// Writes every record in one transaction; returns how many rows were written.
pub fn write(conn: &mut Connection, records: &Records) -> Result<usize, RegistryStoreError> {
    let tx = conn.transaction()?;
    let kind = match records {
        Records::Items(_) => Kind::Items,
        Records::Entities(_) => Kind::Entities,
        Records::Inspectors(_) => Kind::Inspectors,
    };
    let mut w = Writer::new(&tx, kind)?;
    match records {
        Records::Items(v) => v.iter().try_for_each(|i| w.item(i))?,
        Records::Entities(v) => v.iter().try_for_each(|e| w.entity(e))?,
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

impl From<rusqlite::Error> for ImportError {
    fn from(e: rusqlite::Error) -> Self {
        ImportError::Store(e.into())
    }
}

/// Checks `rows` as they stream and, unless `conn` is `None` (a dry run), writes each valid
/// row at once inside one transaction, committed only if every row was valid. Memory holds
/// the keys seen (for the uniqueness check), never the rows. The entity library is read only
/// for an inspector file (their conflicts must name known entities).
pub fn import(
    conn: Option<&mut Connection>,
    known_from: Option<&Connection>,
    kind: Kind,
    rows: impl Iterator<Item = Result<RawRow, ReadError>>,
) -> Result<Imported, ImportError> {
    let known = match (kind, known_from.or(conn.as_deref())) {
        (Kind::Inspectors, Some(c)) => known_entities(c)?,
        _ => HashSet::new(),
    };
    let mut checker = Checker::new(kind, &known);
    let tx = conn.map(|c| c.transaction()).transpose()?;
    let mut writer = tx.as_ref().map(|tx| Writer::new(tx, kind)).transpose()?;
    for row in rows {
        let row = row?;
        let record = checker.check(&row);
        // After the first bad row nothing more is written: only problems are collected.
        if let (Some(r), Some(w), true) = (record, writer.as_mut(), checker.is_clean()) {
            w.record(&r)?;
        }
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
}

/// Writes the rows of one import inside the caller's transaction, then audits it.
pub struct Writer<'t, 'c> {
    tx: &'t Transaction<'c>,
    kind: Kind,
    stmt: rusqlite::Statement<'t>,
    /// Inspectors deactivated by this import whose tokens or sessions ended.
    deactivated: Vec<serde_json::Value>,
    rows: usize,
}

impl<'t, 'c> Writer<'t, 'c> {
    /// Prepares the insert for `kind`.
    pub fn new(tx: &'t Transaction<'c>, kind: Kind) -> Result<Writer<'t, 'c>, RegistryStoreError> {
        let sql = match kind {
            Kind::Items => {
                "INSERT OR REPLACE INTO registry_items
                 (id, name, department, legal_basis, kind, method, rule_pack)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
            }
            Kind::Entities => {
                "INSERT OR REPLACE INTO registry_entities
                 (code, name, domain, district, address, contact, risk, agents)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            }
            Kind::Inspectors => {
                "INSERT OR REPLACE INTO registry_inspectors
                 (id, name, certificate, department, fields, active, conflicts)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
            }
        };
        Ok(Writer {
            tx,
            kind,
            stmt: tx.prepare(sql)?,
            deactivated: Vec::new(),
            rows: 0,
        })
    }

    /// Writes one record (of this writer's kind).
    pub fn record(&mut self, r: &Record) -> Result<(), RegistryStoreError> {
        match r {
            Record::Item(i) => self.item(i),
            Record::Entity(e) => self.entity(e),
            Record::Inspector(i) => self.inspector(i),
        }
    }

    fn item(&mut self, i: &Item) -> Result<(), RegistryStoreError> {
        self.stmt.execute(params![
            i.id.as_str(),
            i.name,
            i.department.as_str(),
            i.legal_basis,
            to_json(&i.kind),
            to_json(&i.method),
            i.rule_pack
        ])?;
        self.rows += 1;
        Ok(())
    }

    fn entity(&mut self, e: &Entity) -> Result<(), RegistryStoreError> {
        self.stmt.execute(params![
            e.code.as_str(),
            e.name,
            e.domain.as_str(),
            e.district,
            e.address,
            e.contact,
            e.risk.as_str(),
            to_json(&e.agents)
        ])?;
        self.rows += 1;
        Ok(())
    }

    fn inspector(&mut self, i: &Inspector) -> Result<(), RegistryStoreError> {
        if !i.active {
            // Deactivating an inspector revokes their user's tokens and ends their sessions
            // (reactivating later revives none of them).
            let user: Option<i64> = self
                .tx
                .query_row(
                    "SELECT id FROM users WHERE inspector = ?1",
                    [i.id.as_str()],
                    |r| r.get(0),
                )
                .optional()?;
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
        self.stmt.execute(params![
            i.id.as_str(),
            i.name,
            i.certificate.as_str(),
            i.department.as_str(),
            to_json(&i.fields),
            i.active,
            to_json(&i.conflicts)
        ])?;
        self.rows += 1;
        Ok(())
    }

    /// Audits the import (`registry_changed`); returns how many rows were written. The caller
    /// commits.
    pub fn finish(self) -> Result<usize, RegistryStoreError> {
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
pub fn items(
    conn: &(impl crate::store::db::Sql + ?Sized),
) -> Result<Vec<Item>, RegistryStoreError> {
    let rows = conn.query(
        "SELECT id, name, department, legal_basis, kind, method, rule_pack
         FROM registry_items ORDER BY id",
        crate::store::db::args![],
        |r| {
            let mut v: [String; 6] = Default::default();
            for (i, slot) in v.iter_mut().enumerate() {
                *slot = r.get(i)?;
            }
            Ok((v, r.get::<Option<String>>(6)?))
        },
    )?;
    let mut out = Vec::new();
    for ([id, name, department, legal_basis, kind, method], rule_pack) in rows {
        let t = "registry_items";
        out.push(Item {
            id: from_json(t, &id, &to_json(&id))?,
            name,
            department: from_json(t, &id, &to_json(&department))?,
            legal_basis,
            kind: from_json(t, &id, &kind)?,
            method: from_json(t, &id, &method)?,
            rule_pack,
        });
    }
    Ok(out)
}

/// The entity library, by credit code.
pub fn entities(
    conn: &(impl crate::store::db::Sql + ?Sized),
) -> Result<Vec<Entity>, RegistryStoreError> {
    let rows = conn.query(
        "SELECT code, name, domain, district, address, contact, risk, agents
         FROM registry_entities ORDER BY code",
        crate::store::db::args![],
        |r| {
            let mut v: [String; 8] = Default::default();
            for (i, slot) in v.iter_mut().enumerate() {
                *slot = r.get(i)?;
            }
            Ok(v)
        },
    )?;
    let mut out = Vec::new();
    for [code, name, domain, district, address, contact, risk, agents] in rows {
        let t = "registry_entities";
        out.push(Entity {
            code: from_json(t, &code, &to_json(&code))?,
            name,
            domain: from_json(t, &code, &to_json(&domain))?,
            district,
            address,
            contact,
            risk: from_json(t, &code, &to_json(&risk))?,
            agents: from_json(t, &code, &agents)?,
        });
    }
    Ok(out)
}

/// The inspector library, by id.
pub fn inspectors(
    conn: &(impl crate::store::db::Sql + ?Sized),
) -> Result<Vec<Inspector>, RegistryStoreError> {
    let rows = conn.query(
        "SELECT id, name, certificate, department, fields, conflicts, active
         FROM registry_inspectors ORDER BY id",
        crate::store::db::args![],
        |r| {
            let mut v: [String; 6] = Default::default();
            for (i, slot) in v.iter_mut().enumerate() {
                *slot = r.get(i)?;
            }
            Ok((v, r.get::<bool>(6)?))
        },
    )?;
    let mut out = Vec::new();
    for ([id, name, certificate, department, fields, conflicts], active) in rows {
        let t = "registry_inspectors";
        out.push(Inspector {
            id: from_json(t, &id, &to_json(&id))?,
            name,
            certificate: from_json(t, &id, &to_json(&certificate))?,
            department: from_json(t, &id, &to_json(&department))?,
            fields: from_json(t, &id, &fields)?,
            active,
            conflicts: from_json(t, &id, &conflicts)?,
        });
    }
    Ok(out)
}
