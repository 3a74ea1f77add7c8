//! Dead letters written by the writer itself (a batch whose number was reused with other
//! content) or handed to it by ingest, and the ranges of numbers an agent gave up.

use rusqlite::{params, CachedStatement, Transaction};
use spotcheck_protocol::{AgentId, Batch, Domain, EntityId, UnixMillis};

use super::DeadLetter;

/// Keeps a batch whose sequence number is already stored with other content as a dead letter
/// (`seq_reused`), re-encoded without its MAC.
pub(super) fn reused(
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

/// Records the numbers of `first..=last` that are not dead letters, as ranges; returns how many.
pub(super) fn insert_gap(
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

pub(super) fn insert_dead_letter(
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
