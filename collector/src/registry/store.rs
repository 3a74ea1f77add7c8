//! The libraries in SQLite (tables `registry_*`, migration 2). An import writes all its rows
//! in one transaction: inserted, or replacing the row with the same key.

use std::collections::HashSet;

use rusqlite::{params, Connection, OptionalExtension};

use super::import::Records;
use super::model::{Entity, Inspector, Item};
use super::CreditCode;

/// Why reading or writing the libraries failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryStoreError {
    /// SQLite failed.
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
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
    let mut deactivated = Vec::new();
    match records {
        Records::Items(items) => {
            let mut stmt = tx.prepare(
                "INSERT OR REPLACE INTO registry_items
                 (id, name, department, legal_basis, kind, method, rule_pack)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for i in items {
                stmt.execute(params![
                    i.id.as_str(),
                    i.name,
                    i.department.as_str(),
                    i.legal_basis,
                    to_json(&i.kind),
                    to_json(&i.method),
                    i.rule_pack
                ])?;
            }
        }
        Records::Entities(entities) => {
            let mut stmt = tx.prepare(
                "INSERT OR REPLACE INTO registry_entities
                 (code, name, domain, district, address, contact, risk, agents)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for e in entities {
                stmt.execute(params![
                    e.code.as_str(),
                    e.name,
                    e.domain.as_str(),
                    e.district,
                    e.address,
                    e.contact,
                    e.risk.as_str(),
                    to_json(&e.agents)
                ])?;
            }
        }
        Records::Inspectors(inspectors) => {
            // Deactivating an inspector revokes their user's tokens and ends their sessions
            // (reactivating later revives none of them).
            let now = spotcheck_protocol::UnixMillis::now();
            for i in inspectors.iter().filter(|i| !i.active) {
                let user: Option<i64> = tx
                    .query_row(
                        "SELECT id FROM users WHERE inspector = ?1",
                        [i.id.as_str()],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some(user) = user.map(crate::users::UserId) {
                    let tokens = crate::users::secrets::revoke_all_in(&tx, user, now)?;
                    let sessions = crate::users::secrets::end_sessions(&tx, user)?;
                    if !tokens.is_empty() || sessions > 0 {
                        deactivated.push(serde_json::json!({
                            "inspector": i.id.as_str(), "user": user.0,
                            "tokens_revoked": tokens, "sessions_ended": sessions,
                        }));
                    }
                }
            }
            let mut stmt = tx.prepare(
                "INSERT OR REPLACE INTO registry_inspectors
                 (id, name, certificate, department, fields, active, conflicts)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for i in inspectors {
                stmt.execute(params![
                    i.id.as_str(),
                    i.name,
                    i.certificate.as_str(),
                    i.department.as_str(),
                    to_json(&i.fields),
                    i.active,
                    to_json(&i.conflicts)
                ])?;
            }
        }
    }
    let library = match records {
        Records::Items(_) => "items",
        Records::Entities(_) => "entities",
        Records::Inspectors(_) => "inspectors",
    };
    crate::audit::append(
        &tx,
        crate::audit::EntryKind::RegistryChanged,
        &format!("registry:{library}"),
        &serde_json::json!({
            "library": library, "rows": records.len(), "credentials_revoked": deactivated,
        }),
        spotcheck_protocol::UnixMillis::now(),
    )?;
    tx.commit()?;
    Ok(records.len())
}

/// The item list, by id.
pub fn items(conn: &Connection) -> Result<Vec<Item>, RegistryStoreError> {
    let mut stmt = conn.prepare(
        "SELECT id, name, department, legal_basis, kind, method, rule_pack
         FROM registry_items ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        let mut v: [String; 6] = Default::default();
        for (i, slot) in v.iter_mut().enumerate() {
            *slot = r.get(i)?;
        }
        Ok((v, r.get::<_, Option<String>>(6)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let ([id, name, department, legal_basis, kind, method], rule_pack) = row?;
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
pub fn entities(conn: &Connection) -> Result<Vec<Entity>, RegistryStoreError> {
    let mut stmt = conn.prepare(
        "SELECT code, name, domain, district, address, contact, risk, agents
         FROM registry_entities ORDER BY code",
    )?;
    let rows = stmt.query_map([], |r| {
        let mut v: [String; 8] = Default::default();
        for (i, slot) in v.iter_mut().enumerate() {
            *slot = r.get(i)?;
        }
        Ok(v)
    })?;
    let mut out = Vec::new();
    for row in rows {
        let [code, name, domain, district, address, contact, risk, agents] = row?;
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
pub fn inspectors(conn: &Connection) -> Result<Vec<Inspector>, RegistryStoreError> {
    let mut stmt = conn.prepare(
        "SELECT id, name, certificate, department, fields, conflicts, active
         FROM registry_inspectors ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        let mut v: [String; 6] = Default::default();
        for (i, slot) in v.iter_mut().enumerate() {
            *slot = r.get(i)?;
        }
        Ok((v, r.get::<_, bool>(6)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let ([id, name, certificate, department, fields, conflicts], active) = row?;
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
