//! A batch's rows, inside the writer's transaction: the agent, entity and metric ids (interned
//! and cached), the `batches` row with the batch's digest (an existing row with the same
//! digest is a duplicate, with another a reused number), readings gathered into chunks, and
//! events. This is SQLite's path, statements prepared once per transaction and bound by
//! position (the writer's hot loop); PostgreSQL's is `shared.rs`.

use foldhash::HashMap;

use rusqlite::{params, CachedStatement, Connection, OptionalExtension};
use spotcheck_protocol::{AgentId, Batch, Domain, EntityId, Metric, Unit, UnixMillis};

use super::dead::reused;
use super::Outcome;
use crate::store::chunk::Sample;
use crate::store::gather::{Chunk, Gatherer, Series};

/// The id of (metric, unit), interned on first sight.
fn metric_id(
    tx: &Connection,
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
pub(super) struct Ids<'a> {
    pub(super) agents: &'a mut HashMap<AgentId, i64>,
    pub(super) entities: &'a mut HashMap<EntityId, i64>,
    pub(super) metrics: &'a mut HashMap<String, Vec<(Unit, i64)>>,
}

/// The id of the row `select` finds by the leading `key_len` values of `row`, inserting `row`
/// with `insert` when there is none.
fn intern(
    tx: &Connection,
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
pub(super) struct Inserts<'tx> {
    gathered: Gatherer,
    batch: CachedStatement<'tx>,
    chunk: CachedStatement<'tx>,
    event: CachedStatement<'tx>,
    pub(super) dead_letter: CachedStatement<'tx>,
}

impl<'tx> Inserts<'tx> {
    pub(super) fn prepare(tx: &'tx Connection) -> rusqlite::Result<Inserts<'tx>> {
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
    pub(super) fn finish(mut self) -> rusqlite::Result<()> {
        for c in self.gathered.drain() {
            insert_chunk(&mut self.chunk, &c)?;
        }
        Ok(())
    }
}

pub(super) fn insert_batch(
    tx: &Connection,
    inserts: &mut Inserts<'_>,
    ids: Ids<'_>,
    (entity, domain): (&EntityId, Domain),
    batch: &Batch,
    now: UnixMillis,
    digests: bool,
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
    let digest = digests.then(|| batch.digest());
    let fresh = inserts.batch.execute(params![
        agent_id,
        seq,
        stream,
        items as i64,
        now.0,
        digest.as_ref().map(|d| &d[..])
    ])?;
    if fresh == 0 {
        let stored: Option<Vec<u8>> = tx
            .prepare_cached("SELECT digest FROM batches WHERE agent = ?1 AND seq = ?2")?
            .query_row(params![agent_id, seq], |r| r.get(0))?;
        return match (stored, digest) {
            (Some(d), Some(digest)) if d != digest => {
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
