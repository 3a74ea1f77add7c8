//! The write side of the store. One `Writer` lives on ingest's commit thread; each call to
//! [`Writer::commit`] is one transaction, and only after it returns may the messages in it be
//! acknowledged to the broker and confirmed to their agents.

use foldhash::{HashMap, HashMapExt};
use std::path::{Path, PathBuf};

use rusqlite::{params, CachedStatement, Connection, OptionalExtension, Transaction};
use spotcheck_protocol::{
    AgentId, Batch, Checked, Domain, EntityId, Metric, Seq, Unit, UnixMillis,
};

use super::chunk::Sample;
use super::gather::{Chunk, Gatherer, Series};
use super::{open_for_writing, sqlite_err, StoreError};
use crate::config::{AgentBinding, Synchronous};

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
        })
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
                    let outcome =
                        insert_batch(&tx, &mut inserts, ids, entity, *domain, batch.get(), now)
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

/// The id of (metric, unit), interned on first sight.
fn metric_id(
    tx: &Transaction<'_>,
    cache: &mut HashMap<String, Vec<(Unit, i64)>>,
    metric: &Metric,
    unit: Unit,
) -> rusqlite::Result<i64> {
    if let Some(id) = cache
        .get(metric.as_str())
        .and_then(|units| units.iter().find(|(u, _)| *u == unit))
    {
        return Ok(id.1);
    }
    let id = intern(
        tx,
        "SELECT id FROM metrics WHERE name = ?1 AND unit = ?2",
        "INSERT INTO metrics (name, unit) VALUES (?1, ?2)",
        &[&metric.as_str(), &unit.as_str()],
        2,
    )?;
    cache
        .entry(metric.as_str().to_owned())
        .or_default()
        .push((unit, id));
    Ok(id)
}

/// The id caches, borrowed apart from the connection.
struct Ids<'a> {
    agents: &'a mut HashMap<AgentId, i64>,
    entities: &'a mut HashMap<EntityId, i64>,
    metrics: &'a mut HashMap<String, Vec<(Unit, i64)>>,
}

/// The id of the row `select` finds by the leading `key_len` values of `row`, inserting `row`
/// with `insert` when there is none.
fn intern(
    tx: &Transaction<'_>,
    select: &str,
    insert: &str,
    row: &[&dyn rusqlite::ToSql],
    key_len: usize,
) -> rusqlite::Result<i64> {
    if let Some(id) = tx
        .prepare_cached(select)?
        .query_row(&row[..key_len], |r| r.get(0))
        .optional()?
    {
        return Ok(id);
    }
    tx.prepare_cached(insert)?.execute(row)?;
    Ok(tx.last_insert_rowid())
}

/// The statements a commit runs per item, prepared once per transaction, and the readings
/// gathered into chunks so far.
struct Inserts<'tx> {
    gathered: Gatherer,
    batch: CachedStatement<'tx>,
    chunk: CachedStatement<'tx>,
    event: CachedStatement<'tx>,
    dead_letter: CachedStatement<'tx>,
}

impl<'tx> Inserts<'tx> {
    fn prepare(tx: &'tx Transaction<'_>) -> rusqlite::Result<Inserts<'tx>> {
        Ok(Inserts {
            gathered: Gatherer::default(),
            batch: tx.prepare_cached(
                "INSERT OR IGNORE INTO batches (agent, seq, stream, items, received_ms, digest) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?,
            chunk: tx.prepare_cached(
                "INSERT INTO reading_chunks (entity, metric, t0, t1, agent, seq, n, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?,
            event: tx.prepare_cached(
                "INSERT INTO events (entity, kind, record_id, ts_ms, end_ms, agent, seq, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?,
            dead_letter: tx.prepare_cached(
                "INSERT OR IGNORE INTO dead_letters (received_ms, topic, agent, seq, code, reason, payload)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?,
        })
    }
}

impl Inserts<'_> {
    /// Writes the chunks still open.
    fn finish(mut self) -> rusqlite::Result<()> {
        for c in self.gathered.drain() {
            insert_chunk(&mut self.chunk, &c)?;
        }
        Ok(())
    }
}

fn insert_batch(
    tx: &Transaction<'_>,
    inserts: &mut Inserts<'_>,
    ids: Ids<'_>,
    entity: &EntityId,
    domain: Domain,
    batch: &Batch,
    now: UnixMillis,
) -> rusqlite::Result<Outcome> {
    let agent_id = match ids.agents.get(batch.agent()) {
        Some(id) => *id,
        None => {
            let id = intern(
                tx,
                "SELECT id FROM agents WHERE name = ?1",
                "INSERT INTO agents (name, entity, domain) VALUES (?1, ?2, ?3)",
                &[&batch.agent().as_str(), &entity.as_str(), &domain.as_str()],
                1,
            )?;
            ids.agents.insert(batch.agent().clone(), id);
            id
        }
    };
    let (stream, items) = match batch {
        Batch::Readings(b) => ("readings", b.readings.len()),
        Batch::Events(b) => ("events", b.events.len()),
    };
    let seq = batch.seq().0 as i64;
    let digest = batch.digest();
    let fresh = inserts.batch.execute(params![
        agent_id,
        seq,
        stream,
        items as i64,
        now.0,
        &digest[..]
    ])?;
    if fresh == 0 {
        let stored: Option<Vec<u8>> = tx
            .prepare_cached("SELECT digest FROM batches WHERE agent = ?1 AND seq = ?2")?
            .query_row(params![agent_id, seq], |r| r.get(0))?;
        return match stored {
            Some(d) if d != digest => {
                reused(&mut inserts.dead_letter, entity, domain, batch, now)?;
                Ok(Outcome::SeqReused)
            }
            _ => Ok(Outcome::Duplicate),
        };
    }
    let entity_id = match ids.entities.get(entity) {
        Some(id) => *id,
        None => {
            let id = intern(
                tx,
                "SELECT id FROM entities WHERE name = ?1",
                "INSERT INTO entities (name, domain) VALUES (?1, ?2)",
                &[&entity.as_str(), &domain.as_str()],
                1,
            )?;
            ids.entities.insert(entity.clone(), id);
            id
        }
    };
    match batch {
        Batch::Readings(b) => {
            for r in &b.readings {
                let series = Series {
                    entity: entity_id,
                    metric: metric_id(tx, ids.metrics, &r.metric, r.unit)?,
                    agent: agent_id,
                };
                let sample = Sample {
                    ts: r.ts_ms,
                    value: r.value,
                    quality: r.quality,
                };
                if let Some(full) = inserts.gathered.add(series, seq, sample) {
                    insert_chunk(&mut inserts.chunk, &full)?;
                }
            }
        }
        Batch::Events(b) => {
            for ev in &b.events {
                let body = serde_json::to_string(ev).expect("events always serialize");
                inserts.event.execute(params![
                    entity_id,
                    ev.kind(),
                    ev.id().as_str(),
                    ev.ts().0,
                    ev.end().map(|t| t.0),
                    agent_id,
                    seq,
                    body
                ])?;
            }
        }
    }
    Ok(Outcome::Stored)
}

/// Keeps a batch whose sequence number is already stored with other content as a dead letter
/// (`seq_reused`), re-encoded without its MAC.
fn reused(
    insert: &mut CachedStatement<'_>,
    entity: &EntityId,
    domain: Domain,
    batch: &Batch,
    now: UnixMillis,
) -> rusqlite::Result<()> {
    let (agent, seq) = (batch.agent().clone(), batch.seq());
    let topic = match batch {
        Batch::Readings(_) => spotcheck_protocol::Topic::Readings {
            domain,
            entity: entity.clone(),
            agent: agent.clone(),
        },
        Batch::Events(_) => spotcheck_protocol::Topic::Events {
            domain,
            entity: entity.clone(),
            agent: agent.clone(),
        },
    };
    let d = DeadLetter {
        topic: topic.to_string(),
        agent: Some(agent),
        seq: Some(seq),
        code: SEQ_REUSED,
        reason: format!(
            "sequence number {seq} was already stored with different content: a sequence number must never be reused (did the agent lose its spool?); the ack's `next` says where to continue"
        ),
        payload: batch.encode(),
        items: batch.len() as u64,
    };
    insert_dead_letter(insert, &d, now)
}

/// The dead-letter code of a sequence number reused with different content.
pub const SEQ_REUSED: &str = "seq_reused";

fn insert_chunk(insert: &mut CachedStatement<'_>, c: &Chunk) -> rusqlite::Result<()> {
    let (t0, t1) = c.span();
    insert.execute(params![
        c.series.entity,
        c.series.metric,
        t0,
        t1,
        c.series.agent,
        c.seq,
        c.samples.len() as i64,
        c.encode()
    ])?;
    Ok(())
}

/// Records the numbers of `first..=last` that are not dead letters, as ranges; returns how many.
fn insert_gap(
    tx: &Transaction<'_>,
    agent: &AgentId,
    first: u64,
    last: u64,
    now: UnixMillis,
) -> rusqlite::Result<u64> {
    let dead: Vec<i64> = tx
        .prepare_cached(
            "SELECT seq FROM dead_letters WHERE agent = ?1 AND seq BETWEEN ?2 AND ?3 ORDER BY seq",
        )?
        .query_map(params![agent.as_str(), first as i64, last as i64], |r| {
            r.get(0)
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO seq_gaps (agent, first, last, noticed_ms) VALUES (?1, ?2, ?3, ?4)",
    )?;
    let mut from = first;
    let mut total = 0;
    for d in dead
        .into_iter()
        .map(|d| d as u64)
        .chain([last.saturating_add(1)])
    {
        if d > from {
            let to = d - 1;
            insert.execute(params![agent.as_str(), from as i64, to as i64, now.0])?;
            total += to - from + 1;
        }
        from = d.saturating_add(1);
    }
    Ok(total)
}

fn insert_dead_letter(
    insert: &mut CachedStatement<'_>,
    d: &DeadLetter,
    now: UnixMillis,
) -> rusqlite::Result<()> {
    insert.execute(params![
        now.0,
        d.topic,
        d.agent.as_ref().map(|a| a.as_str()),
        d.seq.map(|s| s.0 as i64),
        d.code,
        d.reason,
        d.payload
    ])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use spotcheck_protocol::{check, Limits, Metric, Quality, Reading, ReadingBatch, Version};

    fn batch(agent: &str, seq: u64, n: usize) -> Checked<Batch> {
        let now = UnixMillis::now();
        let readings = (0..n)
            .map(|i| Reading {
                metric: Metric::new(Metric::PH).unwrap(),
                value: 7.0 + i as f64 / 100.0,
                unit: Unit::Ph,
                ts_ms: now,
                quality: Quality::Good,
            })
            .collect();
        let b = Batch::Readings(ReadingBatch {
            v: Version,
            agent: AgentId::new(agent).unwrap(),
            seq: Seq(seq),
            after: None,
            readings,
        });
        check(b, &Limits::default(), now).unwrap()
    }

    fn count(w: &Writer, table: &str) -> i64 {
        w.conn
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_batch_committed_twice_is_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::open(&dir.path().join("db"), Synchronous::Normal).unwrap();
        let entity = EntityId::new("pool-1").unwrap();
        let b = batch("a1", 1, 5);
        let item = || Item::Batch {
            entity: &entity,
            domain: Domain::Pool,
            batch: &b,
        };
        let first = w.commit(&[item(), item()], UnixMillis::now()).unwrap();
        assert_eq!(first.outcomes, vec![Outcome::Stored, Outcome::Duplicate]);
        let again = w.commit(&[item()], UnixMillis::now()).unwrap();
        assert_eq!(again.outcomes, vec![Outcome::Duplicate]);
        assert_eq!(count(&w, "reading_chunks"), 1, "one metric: one chunk");
        let n: i64 = w
            .conn
            .query_row("SELECT sum(n) FROM reading_chunks", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 5);
        assert_eq!(count(&w, "batches"), 1);
    }

    #[test]
    fn a_sequence_number_reused_with_other_content_is_a_dead_letter_not_a_duplicate() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::open(&dir.path().join("db"), Synchronous::Normal).unwrap();
        let entity = EntityId::new("pool-1").unwrap();
        let first = batch("a1", 1, 5);
        let redelivered = {
            let mut b = first.clone().into_inner();
            if let Batch::Readings(r) = &mut b {
                r.after = Some(Seq(1));
            }
            check(b, &Limits::default(), UnixMillis::now()).unwrap()
        };
        let other = batch("a1", 1, 3);
        let item = |b| Item::Batch {
            entity: &entity,
            domain: Domain::Pool,
            batch: b,
        };
        let r = w
            .commit(
                &[item(&first), item(&redelivered), item(&other)],
                UnixMillis::now(),
            )
            .unwrap();
        assert_eq!(
            r.outcomes,
            vec![Outcome::Stored, Outcome::Duplicate, Outcome::SeqReused]
        );
        let (code, seq, reason): (String, i64, String) = w
            .conn
            .query_row("SELECT code, seq, reason FROM dead_letters", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!((code.as_str(), seq), ("seq_reused", 1));
        assert!(
            reason.contains("already stored with different content"),
            "{reason}"
        );
        let n: i64 = w
            .conn
            .query_row("SELECT sum(n) FROM reading_chunks", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            n, 5,
            "the first content stays; the second is not stored as data"
        );
    }

    #[test]
    fn a_gap_is_recorded_without_the_numbers_that_are_dead_letters() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::open(&dir.path().join("db"), Synchronous::Normal).unwrap();
        let agent = AgentId::new("a1").unwrap();
        let d = DeadLetter {
            topic: "t".into(),
            agent: Some(agent.clone()),
            seq: Some(Seq(5)),
            code: "unit_mismatch",
            reason: "r".into(),
            payload: b"{}".to_vec(),
            items: 1,
        };
        w.commit(&[Item::DeadLetter(&d)], UnixMillis::now())
            .unwrap();
        let r = w
            .commit(
                &[Item::Gap {
                    agent: &agent,
                    first: 3,
                    last: 9,
                }],
                UnixMillis::now(),
            )
            .unwrap();
        assert_eq!(r.outcomes, vec![Outcome::Gap(6)]);
        let mut st = w
            .conn
            .prepare("SELECT first, last FROM seq_gaps ORDER BY first")
            .unwrap();
        let ranges: Vec<(i64, i64)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(ranges, vec![(3, 4), (6, 9)]);
    }

    #[test]
    fn batches_of_one_series_in_one_commit_share_a_chunk_and_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut w = Writer::open(&path, Synchronous::Normal).unwrap();
        let entity = EntityId::new("pool-1").unwrap();
        let batches: Vec<_> = (1..=4).map(|seq| batch("a1", seq, 1)).collect();
        let items: Vec<Item<'_>> = batches
            .iter()
            .map(|b| Item::Batch {
                entity: &entity,
                domain: Domain::Pool,
                batch: b,
            })
            .collect();
        w.commit(&items[..3], UnixMillis::now()).unwrap();
        w.commit(&items[3..], UnixMillis::now()).unwrap();
        assert_eq!(count(&w, "batches"), 4);
        assert_eq!(count(&w, "reading_chunks"), 2, "one per commit");
        let first: (i64, i64) = w
            .conn
            .query_row(
                "SELECT seq, n FROM reading_chunks ORDER BY seq LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(first, (1, 3), "named by its first batch, holding three");
        let read = crate::store::open_for_reading(&path).unwrap();
        let points = crate::store::query::series(&read, "pool-1", Metric::PH, 0, 100).unwrap();
        assert_eq!(points.len(), 4);
    }

    #[test]
    fn dead_letters_keep_payload_and_reason_once_per_agent_and_seq() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::open(&dir.path().join("db"), Synchronous::Normal).unwrap();
        let d = DeadLetter {
            topic: "t".into(),
            agent: Some(AgentId::new("a").unwrap()),
            seq: Some(Seq(3)),
            code: "unit_mismatch",
            reason: "field `readings[0].unit`: …".into(),
            payload: b"{}".to_vec(),
            items: 1,
        };
        let anonymous = DeadLetter {
            agent: None,
            seq: None,
            ..d.clone()
        };
        let items = [
            Item::DeadLetter(&d),
            Item::DeadLetter(&d),
            Item::DeadLetter(&anonymous),
            Item::DeadLetter(&anonymous),
        ];
        w.commit(&items, UnixMillis::now()).unwrap();
        assert_eq!(count(&w, "dead_letters"), 3);
    }

    #[test]
    fn pruning_removes_only_old_rows() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::open(&dir.path().join("db"), Synchronous::Normal).unwrap();
        let entity = EntityId::new("pool-1").unwrap();
        let b = batch("a1", 1, 3);
        let d = DeadLetter {
            topic: "t".into(),
            agent: None,
            seq: None,
            code: "bad_topic",
            reason: "r".into(),
            payload: b"x".to_vec(),
            items: 0,
        };
        w.commit(
            &[
                Item::Batch {
                    entity: &entity,
                    domain: Domain::Pool,
                    batch: &b,
                },
                Item::DeadLetter(&d),
            ],
            UnixMillis(1_000),
        )
        .unwrap();
        assert_eq!(w.prune(UnixMillis(0), UnixMillis(0)).unwrap(), 0);
        assert_eq!(
            w.prune(UnixMillis(i64::MAX), UnixMillis(0)).unwrap(),
            1,
            "one chunk of three readings"
        );
        assert_eq!(count(&w, "dead_letters"), 1, "not yet past its retention");
        assert_eq!(w.prune(UnixMillis(0), UnixMillis(1_001)).unwrap(), 1);
        assert_eq!(count(&w, "dead_letters"), 0, "past its retention");
        assert_eq!(count(&w, "batches"), 1, "dedupe keys outlive the readings");
    }
}
