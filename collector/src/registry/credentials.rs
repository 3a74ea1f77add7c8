//! Agent credentials: each agent's HMAC key (which proves its batches and statuses, and with
//! which the collector signs its acks) and its broker password (for the embedded broker's
//! login, or an external broker's password file).
//!
//! Issued, rotated and revoked by `spotcheck-collector agents …` or the admin API, each in one
//! transaction with its audit entry. The key is stored as is (the collector must hold it to
//! verify a MAC); the broker password only as its SHA-256 (a random 192-bit secret needs no
//! slow hash). [`Credentials`] is the in-memory table ingest and the broker read; it is
//! reloaded after every change made through the API and every few seconds from the database,
//! so a change made with the CLI while the collector runs takes effect within that time.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use spotcheck_protocol::{AgentId, AgentKey, KeyGeneration, UnixMillis, KEY_LEN};

use crate::audit::{self, AuditError, EntryKind};
use crate::store::db::{args, Conn, DbError, Sql};

/// Why a credential could not be issued, rotated, revoked or read.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The store failed (either engine).
    #[error("agent credentials: database: {0}")]
    Db(#[from] DbError),
    /// The audit entry could not be written (nothing was changed).
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// `add` for an agent that already has one.
    #[error("agent {0} already has a credential; use `agents rotate {0}` for a new one")]
    Exists(AgentId),
    /// `rotate` or `revoke` for an agent without one.
    #[error("agent {0} has no credential; issue one with `agents add {0}`")]
    Missing(AgentId),
    /// `revoke` twice.
    #[error("agent {0}'s credential is already revoked; `agents rotate {0}` issues a new one")]
    AlreadyRevoked(AgentId),
    /// A stored row is not one of ours (hand-edited database).
    #[error("agent {agent}'s stored credential is corrupt: {reason}")]
    Corrupt {
        /// The agent.
        agent: String,
        /// Why.
        reason: String,
    },
}

/// A freshly issued credential: shown once, to be installed on the agent.
#[derive(Clone)]
pub struct Issued {
    /// The agent.
    pub agent: AgentId,
    /// The HMAC key, with its generation.
    pub key: AgentKey,
    /// The broker password (username: the agent id).
    pub password: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("agent", &self.agent)
            .field("generation", &self.key.generation())
            .finish_non_exhaustive()
    }
}

impl Issued {
    /// The credential file the agent reads (`agent.credential_file`), TOML.
    pub fn to_file_text(&self) -> String {
        format!(
            "# Spotcheck agent credential, issued by the collector. Keep it secret (mode 0600).\n\
             agent = \"{}\"\ngeneration = {}\nkey = \"{}\"\npassword = \"{}\"\n",
            self.agent,
            self.key.generation(),
            self.key.to_hex(),
            self.password
        )
    }
}

/// What `agents list` and the API show of a credential: never the secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CredentialInfo {
    /// The agent.
    pub agent: String,
    /// The current key generation.
    pub generation: u32,
    /// When the current key was issued, Unix ms.
    pub issued_ms: i64,
    /// When it was revoked, if it was.
    pub revoked_ms: Option<i64>,
}

#[derive(Clone)]
struct Entry {
    key: AgentKey,
    password_hash: [u8; 32],
    revoked: bool,
}

/// What the table knows of an agent's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLookup {
    /// The current key.
    Current(AgentKey),
    /// The credential was revoked.
    Revoked,
    /// No credential was ever issued.
    None,
}

/// The live credential table, shared by ingest, the confirm stage, the embedded broker's
/// login check and the API. Cheap to clone.
#[derive(Clone, Default)]
pub struct Credentials(Arc<RwLock<HashMap<AgentId, Entry>>>);

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("agents", &self.read().len())
            .finish()
    }
}

impl Credentials {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<AgentId, Entry>> {
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    /// A table of these keys, none revoked, with no broker password that any login matches
    /// (for tests and tools that check MACs only).
    pub fn from_keys(keys: impl IntoIterator<Item = (AgentId, AgentKey)>) -> Credentials {
        let map = keys
            .into_iter()
            .map(|(agent, key)| {
                let entry = Entry {
                    key,
                    // No password hashes to all ones.
                    password_hash: [0xff; 32],
                    revoked: false,
                };
                (agent, entry)
            })
            .collect();
        Credentials(Arc::new(RwLock::new(map)))
    }

    /// The table as stored in `conn`.
    pub fn load(conn: &(impl Sql + ?Sized)) -> Result<Credentials, CredentialError> {
        let c = Credentials::default();
        c.reload(conn)?;
        Ok(c)
    }

    /// Replaces the table with what `conn` holds.
    pub fn reload(&self, conn: &(impl Sql + ?Sized)) -> Result<(), CredentialError> {
        let rows = conn.query(
            "SELECT agent, generation, key, password_hash, revoked_ms FROM agent_credentials",
            args![],
            |r| {
                Ok((
                    r.get::<String>(0)?,
                    r.get::<i64>(1)?,
                    r.get::<Vec<u8>>(2)?,
                    r.get::<Vec<u8>>(3)?,
                    r.get::<Option<i64>>(4)?,
                ))
            },
        )?;
        let mut map = HashMap::new();
        for (agent, generation, key, hash, revoked) in rows {
            let corrupt = |reason: &str| CredentialError::Corrupt {
                agent: agent.clone(),
                reason: reason.to_owned(),
            };
            let id = AgentId::new(&agent).map_err(|e| corrupt(&e.to_string()))?;
            let bytes: [u8; KEY_LEN] = key
                .try_into()
                .map_err(|_| corrupt("the key is not 32 bytes"))?;
            let generation = u32::try_from(generation).map_err(|_| corrupt("bad generation"))?;
            let key = AgentKey::new(KeyGeneration(generation), bytes)
                .map_err(|e| corrupt(&e.to_string()))?;
            let password_hash: [u8; 32] = hash
                .try_into()
                .map_err(|_| corrupt("the password hash is not 32 bytes"))?;
            map.insert(
                id,
                Entry {
                    key,
                    password_hash,
                    revoked: revoked.is_some(),
                },
            );
        }
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = map;
        Ok(())
    }

    /// The agent's current key, or why there is none.
    pub fn key(&self, agent: &AgentId) -> KeyLookup {
        match self.read().get(agent) {
            Some(e) if e.revoked => KeyLookup::Revoked,
            Some(e) => KeyLookup::Current(e.key.clone()),
            None => KeyLookup::None,
        }
    }

    /// Runs `f` with the agent's key without copying it (the ingest hot path).
    pub fn with_key<T>(&self, agent: &AgentId, f: impl FnOnce(KeyLookupRef<'_>) -> T) -> T {
        let map = self.read();
        let lookup = match map.get(agent) {
            Some(e) if e.revoked => KeyLookupRef::Revoked,
            Some(e) => KeyLookupRef::Current(&e.key),
            None => KeyLookupRef::None,
        };
        f(lookup)
    }

    /// Whether `password` is the broker password of `agent`'s live (unrevoked) credential.
    pub fn check_password(&self, agent: &str, password: &str) -> bool {
        let Ok(id) = AgentId::new(agent) else {
            return false;
        };
        match self.read().get(&id) {
            Some(e) if !e.revoked => hash_password(password) == e.password_hash,
            _ => false,
        }
    }

    /// Agents with a live credential.
    pub fn len(&self) -> usize {
        self.read().values().filter(|e| !e.revoked).count()
    }

    /// Whether no agent has a live credential.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A borrowed [`KeyLookup`], for [`Credentials::with_key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyLookupRef<'a> {
    /// The current key.
    Current(&'a AgentKey),
    /// The credential was revoked.
    Revoked,
    /// No credential was ever issued.
    None,
}

fn hash_password(password: &str) -> [u8; 32] {
    Sha256::digest(password.as_bytes()).into()
}

fn new_secret() -> ([u8; KEY_LEN], String) {
    let mut key = [0u8; KEY_LEN];
    rand::rng().fill_bytes(&mut key);
    let mut password = [0u8; 24];
    rand::rng().fill_bytes(&mut password);
    (key, hex::encode(password))
}

fn current(
    tx: &(impl Sql + ?Sized),
    agent: &AgentId,
) -> Result<Option<(u32, bool)>, CredentialError> {
    Ok(tx
        .query_opt(
            "SELECT generation, revoked_ms FROM agent_credentials WHERE agent = $1",
            args![agent.as_str()],
            |r| Ok((r.get::<i64>(0)?, r.get::<Option<i64>>(1)?)),
        )?
        .map(|(g, revoked)| (g as u32, revoked.is_some())))
}

fn write(
    tx: &(impl Sql + ?Sized),
    agent: &AgentId,
    generation: u32,
    kind: EntryKind,
    now: UnixMillis,
) -> Result<Issued, CredentialError> {
    let (bytes, password) = new_secret();
    let key = AgentKey::new(KeyGeneration(generation), bytes).expect("generation >= 1");
    tx.execute(
        "INSERT INTO agent_credentials (agent, generation, key, password_hash, issued_ms, revoked_ms)
         VALUES ($1, $2, $3, $4, $5, NULL)
         ON CONFLICT (agent) DO UPDATE SET generation = excluded.generation, key = excluded.key,
             password_hash = excluded.password_hash, issued_ms = excluded.issued_ms,
             revoked_ms = NULL",
        args![
            agent.as_str(),
            i64::from(generation),
            &bytes[..],
            &hash_password(&password)[..],
            now.0
        ],
    )?;
    audit::append(
        tx,
        kind,
        &format!("agent:{agent}"),
        &serde_json::json!({ "agent": agent.as_str(), "generation": generation }),
        now,
    )?;
    Ok(Issued {
        agent: agent.clone(),
        key,
        password,
    })
}

/// Issues the first credential of `agent` (audited).
pub fn add(conn: &Conn, agent: &AgentId, now: UnixMillis) -> Result<Issued, CredentialError> {
    let tx = conn.transaction()?;
    if current(&tx, agent)?.is_some() {
        return Err(CredentialError::Exists(agent.clone()));
    }
    let issued = write(&tx, agent, 1, EntryKind::AgentCredentialIssued, now)?;
    tx.commit()?;
    Ok(issued)
}

/// Replaces `agent`'s credential with a new one of the next generation (audited); the old key
/// and password stop working at once. Also re-issues a revoked credential.
pub fn rotate(conn: &Conn, agent: &AgentId, now: UnixMillis) -> Result<Issued, CredentialError> {
    let tx = conn.transaction()?;
    let Some((generation, _)) = current(&tx, agent)? else {
        return Err(CredentialError::Missing(agent.clone()));
    };
    let issued = write(
        &tx,
        agent,
        generation + 1,
        EntryKind::AgentCredentialRotated,
        now,
    )?;
    tx.commit()?;
    Ok(issued)
}

/// Revokes `agent`'s credential (audited): its batches are dead-lettered and its next broker
/// login is refused.
pub fn revoke(conn: &Conn, agent: &AgentId, now: UnixMillis) -> Result<(), CredentialError> {
    let tx = conn.transaction()?;
    match current(&tx, agent)? {
        None => return Err(CredentialError::Missing(agent.clone())),
        Some((_, true)) => return Err(CredentialError::AlreadyRevoked(agent.clone())),
        Some((generation, false)) => {
            tx.execute(
                "UPDATE agent_credentials SET revoked_ms = $2 WHERE agent = $1",
                args![agent.as_str(), now.0],
            )?;
            audit::append(
                &tx,
                EntryKind::AgentCredentialRevoked,
                &format!("agent:{agent}"),
                &serde_json::json!({ "agent": agent.as_str(), "generation": generation }),
                now,
            )?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Every credential, without its secrets, by agent id.
pub fn list(conn: &(impl Sql + ?Sized)) -> Result<Vec<CredentialInfo>, CredentialError> {
    Ok(conn.query(
        "SELECT agent, generation, issued_ms, revoked_ms FROM agent_credentials ORDER BY agent",
        args![],
        |r| {
            Ok(CredentialInfo {
                agent: r.get(0)?,
                generation: r.get::<i64>(1)? as u32,
                issued_ms: r.get(2)?,
                revoked_ms: r.get(3)?,
            })
        },
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, Conn) {
        let dir = tempfile::tempdir().unwrap();
        let url = crate::store::db::DbUrl::Sqlite(dir.path().join("db"));
        let conn = crate::store::db::connect(&url, crate::store::db::Mode::Write).unwrap();
        (dir, conn)
    }

    #[test]
    fn issuing_rotating_and_revoking_change_what_the_table_accepts_and_are_audited() {
        let (_d, conn) = db();
        let a = AgentId::new("a1").unwrap();
        let first = add(&conn, &a, UnixMillis(1)).unwrap();
        assert!(matches!(
            add(&conn, &a, UnixMillis(2)),
            Err(CredentialError::Exists(_))
        ));
        let table = Credentials::load(&conn).unwrap();
        assert_eq!(table.key(&a), KeyLookup::Current(first.key.clone()));
        assert!(table.check_password("a1", &first.password));
        assert!(!table.check_password("a1", "wrong"));

        let second = rotate(&conn, &a, UnixMillis(3)).unwrap();
        assert_eq!(second.key.generation(), KeyGeneration(2));
        table.reload(&conn).unwrap();
        assert!(!table.check_password("a1", &first.password));
        assert!(table.check_password("a1", &second.password));

        revoke(&conn, &a, UnixMillis(4)).unwrap();
        table.reload(&conn).unwrap();
        assert_eq!(table.key(&a), KeyLookup::Revoked);
        assert!(!table.check_password("a1", &second.password));
        assert_eq!(table.key(&AgentId::new("zz").unwrap()), KeyLookup::None);

        let kinds: Vec<EntryKind> = audit::read_all(&conn)
            .unwrap()
            .0
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(
            kinds,
            [
                EntryKind::AgentCredentialIssued,
                EntryKind::AgentCredentialRotated,
                EntryKind::AgentCredentialRevoked
            ]
        );
        let listed = list(&conn).unwrap();
        assert_eq!((listed[0].generation, listed[0].revoked_ms), (2, Some(4)));
    }

    #[test]
    fn the_credential_file_and_debug_output() {
        let (_d, conn) = db();
        let issued = add(&conn, &AgentId::new("a1").unwrap(), UnixMillis(1)).unwrap();
        let text = issued.to_file_text();
        assert!(text.contains(&issued.key.to_hex()) && text.contains(&issued.password));
        let debug = format!("{issued:?}");
        assert!(!debug.contains(&issued.key.to_hex()) && !debug.contains(&issued.password));
    }
}
