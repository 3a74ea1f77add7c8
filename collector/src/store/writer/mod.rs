//! The write side of the store. One `Writer` lives on ingest's commit thread; each call to
//! [`Writer::commit`] is one transaction, and only after it returns may the messages in it be
//! acknowledged to the broker and confirmed to their agents.
//!
//! - this file: what a commit takes and reports, the [`Writer`] and its transactions;
//! - `batch.rs`: a batch's rows: ids interned, the batch row with its digest (a duplicate
//!   or a reused number), readings gathered into chunks, events;
//! - `dead.rs`: dead letters (`seq_reused` among them) and the ranges of given-up numbers;
//! - `shared.rs`: the same commit on PostgreSQL, where several collectors' writers commit at
//!   once (one multi-row insert dedupes a commit's batches, `COPY` writes its chunks).
//!
//! On SQLite the writer's connection is a [`Conn`] like every other, but its hot loop
//! (`batch.rs`) keeps running rusqlite's statements prepared once per transaction: the same
//! statements, settings and speed as before the store had two engines.

use foldhash::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;
use spotcheck_protocol::{AgentId, Batch, Checked, Domain, EntityId, Seq, Unit, UnixMillis};

use super::db::{self, args, Backend, Conn, DbError, DbUrl, Sql, Tx};
use super::{open_for_writing, sqlite_err, StoreError};
use crate::config::{AgentBinding, Synchronous};

mod batch;
mod dead;
mod shared;
#[cfg(test)]
mod tests;

use batch::{insert_batch, Ids, Inserts};
pub use dead::SEQ_REUSED;
use dead::{insert_dead_letter, insert_gap};

/// A rejected message, kept with its reason so that nothing received is ever lost.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The topic it arrived on.
    pub topic: String,
    /// The agent, if the topic or payload named a valid one.
    pub agent: Option<AgentId>,
    /// The batch's sequence number, if it could be read.
    pub seq: Option<Seq>,
    /// A stable reason code (`bad_json`, `unknown_agent`, …).
    pub code: &'static str,
    /// The full reason, naming the field at fault.
    pub reason: String,
    /// The payload as received.
    pub payload: Vec<u8>,
    /// How many readings or records it held, where that could be counted.
    pub items: u64,
}

/// One message for the store.
#[derive(Debug)]
pub enum Item<'a> {
    /// A valid batch from an agent bound to `entity`.
    Batch {
        /// The entity the agent is bound to.
        entity: &'a EntityId,
        /// Its domain.
        domain: Domain,
        /// The batch.
        batch: &'a Checked<Batch>,
    },
    /// A rejected message.
    DeadLetter(&'a DeadLetter),
    /// Sequence numbers `first..=last` that `agent` gave up (see `ingest::order`); those
    /// among them that are dead letters are left out.
    Gap {
        /// The agent.
        agent: &'a AgentId,
        /// The first number given up.
        first: u64,
        /// The last.
        last: u64,
    },
}

/// What became of one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Stored for the first time.
    Stored,
    /// (agent, seq) was already stored with the same content; nothing written.
    Duplicate,
    /// (agent, seq) was already stored with different content: the batch was written to the
    /// dead-letter table as `seq_reused` instead.
    SeqReused,
    /// Kept in the dead-letter table (or already there).
    DeadLettered,
    /// A gap recorded: how many numbers were given up without being stored or dead-lettered.
    Gap(u64),
}

/// What one transaction did, item by item in input order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CommitReport {
    /// One outcome per item.
    pub outcomes: Vec<Outcome>,
}

/// What runs inside every commit's transaction beside the inserts (the rule engine), so that
/// what it writes (tasks, rule state) commits or rolls back with the data. An error from it
/// rolls the whole transaction back.
pub trait Observer {
    /// On PostgreSQL, before the first [`Observer::stored`] of a commit: the entities whose
    /// batches the commit stores, sorted, each once. The observer makes their state its own
    /// for the rest of the transaction here (the rule engine locks it and reloads what other
    /// collectors stored). Not called on SQLite, whose one writer owns everything.
    fn claim(&mut self, _tx: &Tx<'_>, _entities: &[&EntityId]) -> Result<(), String> {
        Ok(())
    }

    /// A batch stored for the first time (never called for a duplicate); `now` is the
    /// commit's time.
    fn stored(
        &mut self,
        tx: &Tx<'_>,
        entity: &EntityId,
        domain: Domain,
        batch: &Batch,
        now: UnixMillis,
    ) -> Result<(), String>;

    /// Every item is written; the transaction commits next. State that many batches touch is
    /// written here once per commit rather than once per batch.
    fn finish(&mut self, tx: &Tx<'_>) -> Result<(), String>;
}

/// No observer: only the data is written.
impl Observer for () {
    fn stored(
        &mut self,
        _: &Tx<'_>,
        _: &EntityId,
        _: Domain,
        _: &Batch,
        _: UnixMillis,
    ) -> Result<(), String> {
        Ok(())
    }

    fn finish(&mut self, _: &Tx<'_>) -> Result<(), String> {
        Ok(())
    }
}

/// The id caches, interned names to store ids.
#[derive(Default)]
struct Caches {
    agents: HashMap<AgentId, i64>,
    entities: HashMap<EntityId, i64>,
    metrics: HashMap<String, Vec<(Unit, i64)>>,
}

/// Ingest's writer: the readings, the rule engine's state and the anomaly tasks, in one
/// transaction per commit (the workflow tables' other writer is `store::access`).
pub struct Writer {
    conn: Conn,
    /// Where a PostgreSQL writer reconnects when its connection is lost (a server restart, a
    /// terminated backend); `None` on SQLite, whose file connection is not lost that way.
    reconnect: Option<DbUrl>,
    /// The database, for errors: the SQLite file, or the PostgreSQL URL without password.
    path: PathBuf,
    ids: Caches,
    /// Whether each batch's digest is computed and stored (always, but in the benchmark).
    digests: bool,
    /// A write failed: before the next one, ask the server whether the connection still
    /// works, since the client may not yet know that the server ended it.
    suspect: bool,
}

impl Writer {
    /// Opens the SQLite database at `path` for writing, migrating it if needed.
    pub fn open(path: &Path, sync: Synchronous) -> Result<Writer, StoreError> {
        Ok(Writer {
            conn: Conn::from_sqlite(open_for_writing(path, sync)?),
            reconnect: None,
            path: path.to_owned(),
            ids: Caches::default(),
            digests: true,
            suspect: false,
        })
    }

    /// Opens the database at `url` for writing (SQLite with `sync`; PostgreSQL with its
    /// server's own durability settings), migrating it if needed.
    pub fn open_url(url: &DbUrl, sync: Synchronous) -> Result<Writer, StoreError> {
        match url {
            DbUrl::Sqlite(path) => Writer::open(path, sync),
            DbUrl::Postgres(_) => Ok(Writer {
                conn: db::connect(url, db::Mode::Write)?,
                reconnect: Some(url.clone()),
                path: PathBuf::from(url.to_string()),
                ids: Caches::default(),
                digests: true,
                suspect: false,
            }),
        }
    }

    /// A writer that stores no digests, as before sequence numbers reused with other content
    /// were told apart from duplicates (such a batch is then dropped as a duplicate). Only for
    /// the benchmark of what the digest costs (`digest-cost`, BENCHMARKS.md).
    pub fn without_digests(mut self) -> Writer {
        self.digests = false;
        self
    }

    /// Which engine it writes to.
    pub fn backend(&self) -> Backend {
        self.conn.backend()
    }

    /// On PostgreSQL, a new connection if the old one is gone: the commit stage retries a
    /// failed commit, and the retry must not go to the dead connection again. (Every write
    /// here calls it first; the commit stage also calls it before reloading the rule engine.)
    pub fn reconnect_if_lost(&mut self) -> Result<(), StoreError> {
        if let Some(url) = &self.reconnect {
            let suspect = std::mem::take(&mut self.suspect);
            if self.conn.is_closed() || (suspect && !self.conn.answers(Duration::from_secs(5))) {
                tracing::warn!(message = "Ingest's store connection was lost; reconnecting.", store = %url);
                self.conn = db::connect(url, db::Mode::Write)?;
                self.ids = Caches::default();
            }
        }
        Ok(())
    }

    fn db_err(&self) -> impl Fn(DbError) -> StoreError + '_ {
        move |e| match e {
            DbError::Sqlite(source) => StoreError::Sqlite {
                path: self.path.clone(),
                source,
            },
            other => StoreError::Db(other),
        }
    }

    fn observer_err(&self) -> impl Fn(String) -> StoreError + '_ {
        move |reason| StoreError::Observer {
            path: self.path.clone(),
            reason,
        }
    }

    /// Records the agent → entity bindings from configuration (replacing earlier ones).
    pub fn register_agents(&mut self, bindings: &[AgentBinding]) -> Result<(), StoreError> {
        self.reconnect_if_lost()?;
        let e = self.db_err();
        let tx = self.conn.transaction().map_err(&e)?;
        for b in bindings {
            tx.execute(
                "INSERT INTO agents (name, entity, domain) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET entity = excluded.entity, domain = excluded.domain",
                args![b.id.as_str(), b.entity.as_str(), b.domain.as_str()],
            )
            .map_err(&e)?;
            tx.execute(
                "INSERT INTO entities (name, domain) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                args![b.entity.as_str(), b.domain.as_str()],
            )
            .map_err(&e)?;
        }
        tx.commit().map_err(&e)
    }

    /// Commits `items` in one transaction.
    pub fn commit(
        &mut self,
        items: &[Item<'_>],
        now: UnixMillis,
    ) -> Result<CommitReport, StoreError> {
        self.commit_observed(items, now, &mut ())
    }

    /// Commits `items` in one transaction, with `observer` told of every batch stored for the
    /// first time, inside that transaction (see [`Observer`]).
    pub fn commit_observed(
        &mut self,
        items: &[Item<'_>],
        now: UnixMillis,
        observer: &mut dyn Observer,
    ) -> Result<CommitReport, StoreError> {
        self.reconnect_if_lost()?;
        let done = match self.conn.backend() {
            Backend::Sqlite => self.commit_sqlite(items, now, observer),
            Backend::Postgres => shared::commit(self, items, now, observer),
        };
        if done.is_err() {
            // Ids interned by the rolled-back transaction do not exist.
            self.ids = Caches::default();
            self.suspect = true;
        }
        done
    }

    fn commit_sqlite(
        &mut self,
        items: &[Item<'_>],
        now: UnixMillis,
        observer: &mut dyn Observer,
    ) -> Result<CommitReport, StoreError> {
        let path = self.path.clone();
        let e = sqlite_err(&path);
        let de = |err: DbError| match err {
            DbError::Sqlite(source) => StoreError::Sqlite {
                path: path.clone(),
                source,
            },
            other => StoreError::Db(other),
        };
        let tx = self.conn.transaction().map_err(de)?;
        let c = tx.as_sqlite().expect("a SQLite writer");
        let mut outcomes = Vec::with_capacity(items.len());
        let mut inserts = Inserts::prepare(c).map_err(&e)?;
        for item in items {
            let outcome = match item {
                Item::Batch {
                    entity,
                    domain,
                    batch,
                } => {
                    let ids = Ids {
                        agents: &mut self.ids.agents,
                        entities: &mut self.ids.entities,
                        metrics: &mut self.ids.metrics,
                    };
                    let outcome = insert_batch(
                        c,
                        &mut inserts,
                        ids,
                        (entity, *domain),
                        batch.get(),
                        now,
                        self.digests,
                    )
                    .map_err(&e)?;
                    if outcome == Outcome::Stored {
                        observer
                            .stored(&tx, entity, *domain, batch.get(), now)
                            .map_err(|reason| StoreError::Observer {
                                path: path.clone(),
                                reason,
                            })?;
                    }
                    outcome
                }
                Item::DeadLetter(d) => {
                    insert_dead_letter(&mut inserts.dead_letter, d, now).map_err(&e)?;
                    Outcome::DeadLettered
                }
                Item::Gap { agent, first, last } => {
                    Outcome::Gap(insert_gap(c, agent, *first, *last, now).map_err(de)?)
                }
            };
            outcomes.push(outcome);
        }
        inserts.finish().map_err(&e)?;
        observer
            .finish(&tx)
            .map_err(|reason| StoreError::Observer {
                path: path.clone(),
                reason,
            })?;
        tx.commit().map_err(de)?;
        Ok(CommitReport { outcomes })
    }

    /// Runs `f` in a transaction of its own (time-driven rule evaluation). On PostgreSQL it
    /// does not take the write lock at its start: `f` takes it before writing what the
    /// workflow writers write (see [`Conn::transaction_concurrent`]).
    pub fn transact(
        &mut self,
        f: &mut dyn FnMut(&Tx<'_>) -> Result<(), String>,
    ) -> Result<(), StoreError> {
        self.reconnect_if_lost()?;
        let e = self.db_err();
        let tx = self.conn.transaction_concurrent().map_err(&e)?;
        f(&tx).map_err(self.observer_err())?;
        tx.commit().map_err(&e)
    }

    /// The connection, for reading state at start-up and between commits.
    pub fn conn(&self) -> &Conn {
        &self.conn
    }

    /// The SQLite connection underneath, for code not yet moved to [`Sql`] (credentials at
    /// start-up, tests). Panics on a PostgreSQL writer.
    pub fn connection(&self) -> &Connection {
        self.conn
            .as_sqlite()
            .expect("code that runs SQLite directly was given a PostgreSQL store (docs/storage.md)")
    }

    /// Deletes raw readings and events stamped before `before`, and dead letters received
    /// before `dead_before`; returns how many rows went. A reading chunk goes only when all of
    /// it is older (its latest reading, `t1`).
    pub fn prune(
        &mut self,
        before: UnixMillis,
        dead_before: UnixMillis,
    ) -> Result<u64, StoreError> {
        self.prune_if(before, dead_before, &mut |_| Ok(true))
            .map(Option::unwrap_or_default)
    }

    /// [`Writer::prune`] if `allowed`, asked inside the transaction, says so (the leader's
    /// fence, store/leader.rs); `None` when it did not.
    pub fn prune_if(
        &mut self,
        before: UnixMillis,
        dead_before: UnixMillis,
        allowed: &mut dyn FnMut(&Tx<'_>) -> Result<bool, DbError>,
    ) -> Result<Option<u64>, StoreError> {
        self.reconnect_if_lost()?;
        let e = self.db_err();
        let tx = self.conn.transaction_concurrent().map_err(&e)?;
        if !allowed(&tx).map_err(&e)? {
            return Ok(None);
        }
        let r = tx
            .execute("DELETE FROM reading_chunks WHERE t1 < $1", args![before.0])
            .map_err(&e)?;
        let ev = tx
            .execute("DELETE FROM events WHERE ts_ms < $1", args![before.0])
            .map_err(&e)?;
        let dl = tx
            .execute(
                "DELETE FROM dead_letters WHERE received_ms < $1",
                args![dead_before.0],
            )
            .map_err(&e)?;
        tx.commit().map_err(&e)?;
        Ok(Some(r + ev + dl))
    }
}
