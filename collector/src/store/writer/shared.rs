//! A commit on PostgreSQL, where several collectors' writers commit at once
//! (docs/storage.md, "Readings and dedupe").
//!
//! The transaction does not take the store's write lock ([`Conn::transaction_concurrent`]).
//! What must not happen twice is ordered by the rows themselves:
//!
//! - dedupe: the commit's batches go into `batches` in ONE multi-row `INSERT … ON CONFLICT
//!   (agent, seq) DO NOTHING RETURNING agent, seq` (sorted by key, so two commits that share
//!   batches wait for each other in one order and never deadlock). A batch another collector
//!   is storing at that moment makes the insert wait for that transaction: committed, the
//!   batch comes back as a duplicate (its stored digest is read and compared, as on SQLite);
//!   rolled back, it is stored here.
//! - chunks: every chunk of the commit through one binary `COPY` (BENCHMARKS.md: 0.96× of
//!   SQLite's writer, against 0.71× for multi-row inserts and 0.38× row by row).
//! - names (agents, entities, metrics): `INSERT … ON CONFLICT DO NOTHING RETURNING id`, and
//!   a second look when another collector inserted the same name first.
//! - the rule engine: [`Observer::claim`] with the entities of the stored batches, before
//!   any of them reaches the engine.
//!
//! Lock order, so that two collectors' commits wait for each other rather than deadlock:
//! first every wait on a unique key (new agent names in name order, the batches in key order,
//! new entity and metric names in name order, dead letters), then the entities' row locks
//! ([`Observer::claim`], in name order, all at once), then the store's write lock (taken by
//! the rule engine only when it writes a task). A transaction never waits on a unique key
//! after it holds a row lock or the write lock, and the workflow writers take the write lock
//! without ever locking an entity row. (PostgreSQL would break a deadlock anyway, failing
//! one commit, which the commit stage retries.)
//!
//! Outcomes are in input order, and so are the dead letters' ids and what the rule engine
//! sees, as on SQLite.

use foldhash::{HashMap, HashMapExt};

use spotcheck_protocol::{AgentId, Batch, Domain, EntityId, Metric, Unit, UnixMillis};

use super::dead::{insert_dead_letter_sql, insert_gap, reused_letter};
use super::{CommitReport, Item, Observer, Outcome, StoreError, Writer};
use crate::store::chunk::Sample;
use crate::store::db::postgres::Type;
use crate::store::db::{args, Arg, Conn, DbError, Sql, Value};
use crate::store::gather::{Chunk, Gatherer, Series};

/// Rows per multi-row statement: PostgreSQL takes at most 65,535 parameters in one.
const ROWS_PER_INSERT: usize = 8_000;
/// Keys per `OR` list when reading back the digests of duplicates.
const KEYS_PER_LOOKUP: usize = 500;

/// The id of the row `select` finds by the leading `key_len` values of `row`, inserting `row`
/// with `insert` (which ends in `ON CONFLICT … DO NOTHING RETURNING id`) when there is none.
/// A name another collector inserted meanwhile is found by the second look: the insert
/// waited for that transaction and did nothing.
fn intern(
    tx: &Conn,
    select: &str,
    insert: &str,
    row: &[&dyn Arg],
    key_len: usize,
) -> Result<i64, DbError> {
    if let Some(id) = tx.query_opt(select, &row[..key_len], |r| r.get(0))? {
        return Ok(id);
    }
    if let Some(id) = tx.query_opt(insert, row, |r| r.get(0))? {
        return Ok(id);
    }
    tx.query_row(select, &row[..key_len], |r| r.get(0))
}

fn agent_id(
    tx: &Conn,
    cache: &mut HashMap<AgentId, i64>,
    agent: &AgentId,
    entity: &EntityId,
    domain: Domain,
) -> Result<i64, DbError> {
    if let Some(id) = cache.get(agent) {
        return Ok(*id);
    }
    let id = intern(
        tx,
        "SELECT id FROM agents WHERE name = $1",
        "INSERT INTO agents (name, entity, domain) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO NOTHING RETURNING id",
        args![agent.as_str(), entity.as_str(), domain.as_str()],
        1,
    )?;
    cache.insert(agent.clone(), id);
    Ok(id)
}

fn entity_id(
    tx: &Conn,
    cache: &mut HashMap<EntityId, i64>,
    entity: &EntityId,
    domain: Domain,
) -> Result<i64, DbError> {
    if let Some(id) = cache.get(entity) {
        return Ok(*id);
    }
    let id = intern(
        tx,
        "SELECT id FROM entities WHERE name = $1",
        "INSERT INTO entities (name, domain) VALUES ($1, $2)
         ON CONFLICT (name) DO NOTHING RETURNING id",
        args![entity.as_str(), domain.as_str()],
        1,
    )?;
    cache.insert(entity.clone(), id);
    Ok(id)
}

fn metric_id(
    tx: &Conn,
    cache: &mut HashMap<String, Vec<(Unit, i64)>>,
    metric: &Metric,
    unit: Unit,
) -> Result<i64, DbError> {
    if let Some(id) = cache
        .get(metric.as_str())
        .and_then(|units| units.iter().find(|(u, _)| *u == unit))
    {
        return Ok(id.1);
    }
    let id = intern(
        tx,
        "SELECT id FROM metrics WHERE name = $1 AND unit = $2",
        "INSERT INTO metrics (name, unit) VALUES ($1, $2)
         ON CONFLICT (name, unit) DO NOTHING RETURNING id",
        args![metric.as_str(), unit.as_str()],
        2,
    )?;
    cache
        .entry(metric.as_str().to_owned())
        .or_default()
        .push((unit, id));
    Ok(id)
}

/// `($k+1, …, $k+n)` for row `i` of a multi-row statement with `n` values a row.
fn row_params(sql: &mut String, i: usize, n: usize) {
    use std::fmt::Write;
    if i > 0 {
        sql.push(',');
    }
    sql.push('(');
    for j in 1..=n {
        if j > 1 {
            sql.push(',');
        }
        let _ = write!(sql, "${}", i * n + j);
    }
    sql.push(')');
}

/// A batch's `batches` row, and where its first copy in the commit is.
struct Key {
    agent: i64,
    seq: i64,
}

/// What a batch item of the commit is, before it is written.
enum Plan {
    /// The first copy of (agent, seq) in the commit: stored if the insert returned it.
    First { agent: i64, seq: i64 },
    /// A later copy of a key already met in this commit.
    Again { agent: i64, seq: i64 },
    /// Not a batch.
    Other,
}

/// Commits `items` on PostgreSQL (see the module docs).
pub(super) fn commit(
    w: &mut Writer,
    items: &[Item<'_>],
    now: UnixMillis,
    observer: &mut dyn Observer,
) -> Result<CommitReport, StoreError> {
    let path = w.path.clone();
    let e = |err: DbError| StoreError::Db(err);
    let oe = |reason: String| StoreError::Observer {
        path: path.clone(),
        reason,
    };
    let tx = w.conn.transaction_concurrent().map_err(e)?;
    let ids = &mut w.ids;

    // Names first, each kind in name order: two commits that both insert a new name wait
    // for each other in one order (module docs, "lock order").
    let mut agents: Vec<(&AgentId, &EntityId, Domain)> = items
        .iter()
        .filter_map(|item| match item {
            Item::Batch {
                entity,
                domain,
                batch,
            } => Some((batch.get().agent(), *entity, *domain)),
            _ => None,
        })
        .collect();
    agents.sort_unstable_by(|a, b| a.0.cmp(b.0));
    agents.dedup_by(|a, b| a.0 == b.0);
    for (agent, entity, domain) in agents {
        agent_id(&tx, &mut ids.agents, agent, entity, domain).map_err(e)?;
    }

    // The batches' keys, each key's first copy in the commit planned for the insert.
    let mut plans = Vec::with_capacity(items.len());
    let mut first_of: foldhash::HashSet<(i64, i64)> = foldhash::HashSet::default();
    let mut rows: Vec<(i64, i64, usize)> = Vec::new();
    let mut digests: Vec<Option<[u8; 16]>> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Item::Batch {
            entity,
            domain,
            batch,
        } = item
        else {
            plans.push(Plan::Other);
            digests.push(None);
            continue;
        };
        let b = batch.get();
        let agent = agent_id(&tx, &mut ids.agents, b.agent(), entity, *domain).map_err(e)?;
        let seq = i64::try_from(b.seq().0).map_err(|_| {
            e(DbError::Parameter {
                index: 2,
                reason: format!("sequence number {} is above {}", b.seq().0, i64::MAX),
            })
        })?;
        digests.push(w.digests.then(|| b.digest()));
        if first_of.insert((agent, seq)) {
            rows.push((agent, seq, i));
            plans.push(Plan::First { agent, seq });
        } else {
            plans.push(Plan::Again { agent, seq });
        }
    }

    // One multi-row insert (more only beyond 8,000 batches), in key order.
    rows.sort_unstable();
    let mut fresh: foldhash::HashSet<(i64, i64)> = foldhash::HashSet::default();
    for part in rows.chunks(ROWS_PER_INSERT) {
        let mut sql = String::from(
            "INSERT INTO batches (agent, seq, stream, items, received_ms, digest) VALUES ",
        );
        let mut values: Vec<Value<'_>> = Vec::with_capacity(part.len() * 6);
        for (k, (agent, seq, i)) in part.iter().enumerate() {
            row_params(&mut sql, k, 6);
            let Item::Batch { batch, .. } = &items[*i] else {
                unreachable!("only batches are planned")
            };
            let (stream, n) = match batch.get() {
                Batch::Readings(b) => ("readings", b.readings.len()),
                Batch::Events(b) => ("events", b.events.len()),
            };
            values.extend([
                Value::Int(*agent),
                Value::Int(*seq),
                Value::Text(stream),
                Value::Int(n as i64),
                Value::Int(now.0),
                digests[*i].as_ref().map_or(Value::Null, |d| Value::Blob(d)),
            ]);
        }
        sql.push_str(" ON CONFLICT (agent, seq) DO NOTHING RETURNING agent, seq");
        let refs: Vec<&dyn Arg> = values.iter().map(|v| v as &dyn Arg).collect();
        for key in tx
            .query_once(&sql, &refs, |r| Ok((r.get::<i64>(0)?, r.get::<i64>(1)?)))
            .map_err(e)?
        {
            fresh.insert(key);
        }
    }

    // The digests already stored under the keys that were not new.
    let mut stored_digest: HashMap<(i64, i64), Option<Vec<u8>>> = HashMap::new();
    let known: Vec<Key> = rows
        .iter()
        .filter(|(a, s, _)| !fresh.contains(&(*a, *s)))
        .map(|(agent, seq, _)| Key {
            agent: *agent,
            seq: *seq,
        })
        .collect();
    for part in known.chunks(KEYS_PER_LOOKUP) {
        let mut sql = String::from("SELECT agent, seq, digest FROM batches WHERE ");
        let mut values: Vec<Value<'_>> = Vec::with_capacity(part.len() * 2);
        for (k, key) in part.iter().enumerate() {
            if k > 0 {
                sql.push_str(" OR ");
            }
            sql.push_str(&format!(
                "(agent = ${} AND seq = ${})",
                2 * k + 1,
                2 * k + 2
            ));
            values.extend([Value::Int(key.agent), Value::Int(key.seq)]);
        }
        let refs: Vec<&dyn Arg> = values.iter().map(|v| v as &dyn Arg).collect();
        for (a, s, d) in tx
            .query_once(&sql, &refs, |r| {
                Ok((
                    r.get::<i64>(0)?,
                    r.get::<i64>(1)?,
                    r.get::<Option<Vec<u8>>>(2)?,
                ))
            })
            .map_err(e)?
        {
            stored_digest.insert((a, s), d);
        }
    }
    // A key stored by this commit keeps its first copy's digest.
    for (agent, seq, i) in &rows {
        if fresh.contains(&(*agent, *seq)) {
            stored_digest.insert((*agent, *seq), digests[*i].map(|d| d.to_vec()));
        }
    }

    // What each batch item is.
    let outcome_of = |i: usize, agent: i64, seq: i64, first: bool| -> Outcome {
        if first && fresh.contains(&(agent, seq)) {
            return Outcome::Stored;
        }
        match (stored_digest.get(&(agent, seq)), &digests[i]) {
            (Some(Some(d)), Some(digest)) if d[..] != digest[..] => Outcome::SeqReused,
            _ => Outcome::Duplicate,
        }
    };
    let outcomes: Vec<Option<Outcome>> = plans
        .iter()
        .enumerate()
        .map(|(i, p)| match p {
            Plan::First { agent, seq } => Some(outcome_of(i, *agent, *seq, true)),
            Plan::Again { agent, seq } => Some(outcome_of(i, *agent, *seq, false)),
            Plan::Other => None,
        })
        .collect();

    // The stored batches' entities and metrics, in name order.
    let mut entities: Vec<(&EntityId, Domain)> = Vec::new();
    let mut metrics: Vec<(&Metric, Unit)> = Vec::new();
    for (item, o) in items.iter().zip(&outcomes) {
        if let (
            Item::Batch {
                entity,
                domain,
                batch,
            },
            Some(Outcome::Stored),
        ) = (item, o)
        {
            entities.push((*entity, *domain));
            if let Batch::Readings(b) = batch.get() {
                metrics.extend(b.readings.iter().map(|r| (&r.metric, r.unit)));
            }
        }
    }
    entities.sort_unstable_by(|a, b| a.0.cmp(b.0));
    entities.dedup_by(|a, b| a.0 == b.0);
    metrics
        .sort_unstable_by(|a, b| (a.0.as_str(), a.1.as_str()).cmp(&(b.0.as_str(), b.1.as_str())));
    metrics.dedup();
    for (entity, domain) in &entities {
        entity_id(&tx, &mut ids.entities, entity, *domain).map_err(e)?;
    }
    for (metric, unit) in metrics {
        metric_id(&tx, &mut ids.metrics, metric, unit).map_err(e)?;
    }

    // Dead letters (kept once per agent and number) and gaps, in input order.
    let mut report: Vec<Option<Outcome>> = Vec::with_capacity(items.len());
    for (item, outcome) in items.iter().zip(&outcomes) {
        report.push(match item {
            Item::Batch {
                entity,
                domain,
                batch,
            } => {
                if *outcome == Some(Outcome::SeqReused) {
                    let d = reused_letter(entity, *domain, batch.get());
                    insert_dead_letter_sql(&*tx, &d, now).map_err(e)?;
                }
                *outcome
            }
            Item::DeadLetter(d) => {
                insert_dead_letter_sql(&*tx, d, now).map_err(e)?;
                Some(Outcome::DeadLettered)
            }
            Item::Gap { .. } => None,
        });
    }
    for (item, slot) in items.iter().zip(report.iter_mut()) {
        if let Item::Gap { agent, first, last } = item {
            *slot = Some(Outcome::Gap(
                insert_gap(&*tx, agent, *first, *last, now).map_err(e)?,
            ));
        }
    }

    // The rule engine makes the stored batches' entities its own before it sees them: after
    // every wait on a unique key above, before the write lock it may take.
    let claimed: Vec<&EntityId> = entities.iter().map(|(e, _)| *e).collect();
    if !claimed.is_empty() {
        observer.claim(&tx, &claimed).map_err(oe)?;
    }

    // The stored batches in input order: chunks gathered, events, the rule engine.
    let mut gathered = Gatherer::default();
    let mut chunks: Vec<Chunk> = Vec::new();
    for (item, outcome) in items.iter().zip(&outcomes) {
        if let (
            Item::Batch {
                entity,
                domain,
                batch,
            },
            Some(Outcome::Stored),
        ) = (item, outcome)
        {
            let b = batch.get();
            write_batch(&tx, ids, entity, b, &mut gathered, &mut chunks).map_err(e)?;
            observer.stored(&tx, entity, *domain, b, now).map_err(oe)?;
        }
    }
    chunks.extend(gathered.drain());
    let report: Vec<Outcome> = report
        .into_iter()
        .map(|o| o.expect("every item has its outcome"))
        .collect();
    copy_chunks(&tx, &chunks).map_err(e)?;
    observer.finish(&tx).map_err(oe)?;
    tx.commit().map_err(e)?;
    Ok(CommitReport { outcomes: report })
}

/// A stored batch's readings into the commit's chunks, its events into `events`; its names
/// are interned already.
fn write_batch(
    tx: &Conn,
    ids: &super::Caches,
    entity: &EntityId,
    batch: &Batch,
    gathered: &mut Gatherer,
    full: &mut Vec<Chunk>,
) -> Result<(), DbError> {
    let agent = ids.agents[batch.agent()];
    let entity_id = ids.entities[entity];
    let seq = batch.seq().0 as i64;
    match batch {
        Batch::Readings(b) => {
            for r in &b.readings {
                let metric = ids.metrics[r.metric.as_str()]
                    .iter()
                    .find(|(u, _)| *u == r.unit)
                    .expect("interned above")
                    .1;
                let series = Series {
                    entity: entity_id,
                    metric,
                    agent,
                };
                let sample = Sample {
                    ts: r.ts_ms,
                    value: r.value,
                    quality: r.quality,
                };
                if let Some(c) = gathered.add(series, seq, sample) {
                    full.push(c);
                }
            }
        }
        Batch::Events(b) => {
            for ev in &b.events {
                let body = serde_json::to_string(ev).expect("events always serialize");
                tx.execute(
                    "INSERT INTO events (entity, kind, record_id, ts_ms, end_ms, agent, seq, body)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    args![
                        entity_id,
                        ev.kind(),
                        ev.id().as_str(),
                        ev.ts().0,
                        ev.end().map(|t| t.0),
                        agent,
                        seq,
                        body
                    ],
                )?;
            }
        }
    }
    Ok(())
}

/// Every chunk of the commit in one binary `COPY`.
fn copy_chunks(tx: &Conn, chunks: &[Chunk]) -> Result<(), DbError> {
    if chunks.is_empty() {
        return Ok(());
    }
    let encoded: Vec<Vec<u8>> = chunks.iter().map(Chunk::encode).collect();
    let rows: Vec<[Value<'_>; 8]> = chunks
        .iter()
        .zip(&encoded)
        .map(|(c, data)| {
            let (t0, t1) = c.span();
            [
                Value::Int(c.series.entity),
                Value::Int(c.series.metric),
                Value::Int(t0),
                Value::Int(t1),
                Value::Int(c.series.agent),
                Value::Int(c.seq),
                Value::Int(c.samples.len() as i64),
                Value::Blob(data),
            ]
        })
        .collect();
    tx.copy_in(
        "COPY reading_chunks (entity, metric, t0, t1, agent, seq, n, data) FROM STDIN (FORMAT binary)",
        &[
            Type::INT8,
            Type::INT8,
            Type::INT8,
            Type::INT8,
            Type::INT8,
            Type::INT8,
            Type::INT8,
            Type::BYTEA,
        ],
        &rows,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::row_params;

    #[test]
    fn multi_row_parameters_number_on_across_rows() {
        let mut s = String::new();
        row_params(&mut s, 0, 2);
        row_params(&mut s, 1, 2);
        assert_eq!(s, "($1,$2),($3,$4)");
    }
}
