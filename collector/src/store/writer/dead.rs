//! Dead letters written by the writer itself (a batch whose number was reused with other
//! content) or handed to it by ingest, and the ranges of numbers an agent gave up.

use rusqlite::{params, CachedStatement};
use spotcheck_protocol::{AgentId, Batch, Domain, EntityId, UnixMillis};

use super::DeadLetter;
use crate::store::db::{args, DbError, Sql};

/// Keeps a batch whose sequence number is already stored with other content as a dead letter
/// (`seq_reused`), re-encoded without its MAC.
pub(super) fn reused(
    insert: &mut CachedStatement<'_>,
    entity: &EntityId,
    domain: Domain,
    batch: &Batch,
    now: UnixMillis,
) -> rusqlite::Result<()> {
    insert_dead_letter(insert, &reused_letter(entity, domain, batch), now)
}

/// The dead letter of a batch whose sequence number is already stored with other content.
pub(super) fn reused_letter(entity: &EntityId, domain: Domain, batch: &Batch) -> DeadLetter {
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
    DeadLetter {
        topic: topic.to_string(),
        agent: Some(agent),
        seq: Some(seq),
        code: SEQ_REUSED,
        reason: format!(
            "sequence number {seq} was already stored with different content: a sequence number must never be reused (did the agent lose its spool?); the ack's `next` says where to continue"
        ),
        payload: batch.encode(),
        items: batch.len() as u64,
    }
}

/// The dead-letter code of a sequence number reused with different content.
pub const SEQ_REUSED: &str = "seq_reused";

/// Records the numbers of `first..=last` that are not dead letters, as ranges; returns how many.
pub(super) fn insert_gap(
    tx: &(impl Sql + ?Sized),
    agent: &AgentId,
    first: u64,
    last: u64,
    now: UnixMillis,
) -> Result<u64, DbError> {
    let dead: Vec<i64> = tx.query(
        "SELECT seq FROM dead_letters WHERE agent = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq",
        args![agent.as_str(), first, last],
        |r| r.get(0),
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
            tx.execute(
                "INSERT INTO seq_gaps (agent, first, last, noticed_ms) VALUES ($1, $2, $3, $4)",
                args![agent.as_str(), from, to, now.0],
            )?;
            total += to - from + 1;
        }
        from = d.saturating_add(1);
    }
    Ok(total)
}

/// The statement that keeps a dead letter, once per (agent, seq) (the partial unique index
/// `dead_letters_once`); the same text on both engines.
pub(super) const INSERT_DEAD_LETTER: &str =
    "INSERT INTO dead_letters (received_ms, topic, agent, seq, code, reason, payload)
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING";

/// Keeps a dead letter through [`Sql`] (PostgreSQL's path).
pub(super) fn insert_dead_letter_sql(
    tx: &(impl Sql + ?Sized),
    d: &DeadLetter,
    now: UnixMillis,
) -> Result<(), DbError> {
    tx.execute(
        INSERT_DEAD_LETTER,
        args![
            now.0,
            d.topic,
            d.agent.as_ref().map(|a| a.as_str()),
            d.seq.map(|s| s.0),
            d.code,
            d.reason,
            d.payload
        ],
    )?;
    Ok(())
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
