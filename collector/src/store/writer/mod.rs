//! The write side of the store. One `Writer` lives on ingest's commit thread; each call to
//! [`Writer::commit`] is one transaction, and only after it returns may the messages in it be
//! acknowledged to the broker and confirmed to their agents.
//!
//! - this file: what a commit takes and reports, the [`Writer`] and its transactions;
//! - `batch.rs`: a batch's rows: ids interned, the batch row with its digest (a duplicate
//!   or a reused number), readings gathered into chunks, events;
//! - `dead.rs`: dead letters (`seq_reused` among them) and the ranges of given-up numbers.

use foldhash::{HashMap, HashMapExt};
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, Transaction};
use spotcheck_protocol::{AgentId, Batch, Checked, Domain, EntityId, Seq, Unit, UnixMillis};

use super::{open_for_writing, sqlite_err, StoreError};
use crate::config::{AgentBinding, Synchronous};

mod batch;
mod dead;
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
    /// A batch stored for the first time (never called for a duplicate); `now` is the
    /// commit's time.
    fn stored(
        &mut self,
        tx: &Transaction<'_>,
        entity: &EntityId,
        domain: Domain,
        batch: &Batch,
        now: UnixMillis,
    ) -> Result<(), String>;

    /// Every item is written; the transaction commits next. State that many batches touch is
    /// written here once per commit rather than once per batch.
    fn finish(&mut self, tx: &Transaction<'_>) -> Result<(), String>;
}

/// No observer: only the data is written.
impl Observer for () {
    fn stored(
        &mut self,
        _: &Transaction<'_>,
        _: &EntityId,
        _: Domain,
        _: &Batch,
        _: UnixMillis,
    ) -> Result<(), String> {
        Ok(())
    }

    fn finish(&mut self, _: &Transaction<'_>) -> Result<(), String> {
        Ok(())
    }
}

/// Ingest's writer: the readings, the rule engine's state and the anomaly tasks, in one
/// transaction per commit (the workflow tables' other writer is `store::access`).
pub struct Writer {
    conn: Connection,
    path: PathBuf,
    agents: HashMap<AgentId, i64>,
    entities: HashMap<EntityId, i64>,
    metrics: HashMap<String, Vec<(Unit, i64)>>,
    /// Whether each batch's digest is computed and stored (always, but in the benchmark).
    digests: bool,
}

impl Writer {
    /// Opens the database at `path` for writing, migrating it if needed.
    pub fn open(path: &Path, sync: Synchronous) -> Result<Writer, StoreError> {
        Ok(Writer {
            conn: open_for_writing(path, sync)?,
            path: path.to_owned(),
            agents: HashMap::new(),
            entities: HashMap::new(),
            metrics: HashMap::new(),
            digests: true,
        })
    }

    /// A writer that stores no digests, as before sequence numbers reused with other content
    /// were told apart from duplicates (such a batch is then dropped as a duplicate). Only for
    /// the benchmark of what the digest costs (`digest-cost`, BENCHMARKS.md).
    pub fn without_digests(mut self) -> Writer {
        self.digests = false;
        self
    }

    /// Records the agent → entity bindings from configuration (replacing earlier ones).
    pub fn register_agents(&mut self, bindings: &[AgentBinding]) -> Result<(), StoreError> {
        let e = sqlite_err(&self.path);
        let tx = self.conn.transaction().map_err(&e)?;
        for b in bindings {
            tx.execute(
                "INSERT INTO agents (name, entity, domain) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET entity = excluded.entity, domain = excluded.domain",
                params![b.id.as_str(), b.entity.as_str(), b.domain.as_str()],
            )
            .map_err(&e)?;
            tx.execute(
                "INSERT INTO entities (name, domain) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
                params![b.entity.as_str(), b.domain.as_str()],
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
        let path = self.path.clone();
        let e = sqlite_err(&path);
        let tx = self.conn.transaction().map_err(&e)?;
        let mut outcomes = Vec::with_capacity(items.len());
        let mut inserts = Inserts::prepare(&tx).map_err(&e)?;
        for item in items {
            let outcome = match item {
                Item::Batch {
                    entity,
                    domain,
                    batch,
                } => {
                    let ids = Ids {
                        agents: &mut self.agents,
                        entities: &mut self.entities,
                        metrics: &mut self.metrics,
                    };
                    let outcome = insert_batch(
                        &tx,
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
                    Outcome::Gap(insert_gap(&tx, agent, *first, *last, now).map_err(&e)?)
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
        tx.commit().map_err(&e)?;
        Ok(CommitReport { outcomes })
    }

    /// Runs `f` in a transaction of its own (time-driven rule evaluation).
    pub fn transact(
        &mut self,
        f: &mut dyn FnMut(&Transaction<'_>) -> Result<(), String>,
    ) -> Result<(), StoreError> {
        let e = sqlite_err(&self.path);
        let tx = self.conn.transaction().map_err(&e)?;
        f(&tx).map_err(|reason| StoreError::Observer {
            path: self.path.clone(),
            reason,
        })?;
        tx.commit().map_err(&e)
    }

    /// The connection, for reading state at start-up.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Deletes raw readings and events stamped before `before`, and dead letters received
    /// before `dead_before`; returns how many rows went. A reading chunk goes only when all of
    /// it is older (its latest reading, `t1`).
    pub fn prune(
        &mut self,
        before: UnixMillis,
        dead_before: UnixMillis,
    ) -> Result<u64, StoreError> {
        let e = sqlite_err(&self.path);
        let tx = self.conn.transaction().map_err(&e)?;
        let r = tx
            .execute("DELETE FROM reading_chunks WHERE t1 < ?1", [before.0])
            .map_err(&e)?;
        let ev = tx
            .execute("DELETE FROM events WHERE ts_ms < ?1", [before.0])
            .map_err(&e)?;
        let dl = tx
            .execute(
                "DELETE FROM dead_letters WHERE received_ms < ?1",
                [dead_before.0],
            )
            .map_err(&e)?;
        tx.commit().map_err(&e)?;
        Ok((r + ev + dl) as u64)
    }
}
