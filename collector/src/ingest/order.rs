//! Storing each agent's batches in sequence order.
//!
//! An agent publishes in sequence order, but order can break on the way: a broker that
//! restarts empty drops the batches sent before the collector re-subscribed, which the agent
//! re-sends only later; and the connections of a shared subscription deliver in parallel. So
//! every batch carries `after`, the lowest sequence number its agent still held unconfirmed
//! when it sent the batch. Everything between `after` and the batch's own number must be
//! stored first. The [`Sequencer`] lets a batch through when that holds and keeps it back
//! otherwise, until the gap is filled.
//!
//! A kept-back batch has already been acknowledged to the broker and is not confirmed to its
//! agent; it lives only in memory. Lost in a crash, or dropped when it waited longer than
//! `hold_for` or when too many are waiting, it costs nothing: the agent still has it in its
//! spool and sends it again. Batches without `after` (other clients) are stored on arrival.

use std::collections::BTreeMap;

use foldhash::{HashMap, HashMapExt};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension};
use spotcheck_protocol::{AgentId, Batch, Checked, Domain, EntityId};

/// A batch kept back until the batches before it are stored.
#[derive(Debug)]
pub struct HeldBatch {
    /// The entity.
    pub entity: EntityId,
    /// Its domain.
    pub domain: Domain,
    /// The batch.
    pub batch: Checked<Batch>,
    since: Instant,
}

/// What the sequencer decided for one batch.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Store it now.
    Now,
    /// Kept back behind a gap.
    Held,
}

/// Per agent: the highest stored sequence number, and the batches waiting behind a gap.
#[derive(Debug)]
pub struct Sequencer {
    high: HashMap<AgentId, u64>,
    held: HashMap<AgentId, BTreeMap<u64, HeldBatch>>,
    held_count: usize,
    hold_for: Duration,
    max_held: usize,
    dropped: u64,
}

impl Sequencer {
    /// A sequencer that keeps a batch back at most `hold_for`, and at most `max_held` in all.
    pub fn new(hold_for: Duration, max_held: usize) -> Sequencer {
        Sequencer {
            high: HashMap::new(),
            held: HashMap::new(),
            held_count: 0,
            hold_for,
            max_held,
            dropped: 0,
        }
    }

    /// The highest stored sequence number of `agent` (read from the store on first use).
    fn high(&mut self, conn: &Connection, agent: &AgentId) -> rusqlite::Result<u64> {
        if let Some(h) = self.high.get(agent) {
            return Ok(*h);
        }
        let h: Option<i64> = conn
            .prepare_cached(
                "SELECT max(b.seq) FROM batches b JOIN agents a ON a.id = b.agent WHERE a.name = ?1",
            )?
            .query_row([agent.as_str()], |r| r.get(0))
            .optional()?
            .flatten();
        let h = h.unwrap_or(0) as u64;
        self.high.insert(agent.clone(), h);
        Ok(h)
    }

    /// Decides for a batch taken off the queue, in arrival order. `Now` also counts it as
    /// stored (callers store every `Now` batch in the transaction they are building).
    pub fn admit(
        &mut self,
        conn: &Connection,
        entity: &EntityId,
        domain: Domain,
        batch: Checked<Batch>,
    ) -> rusqlite::Result<(Admit, Option<Checked<Batch>>)> {
        let b = batch.get();
        let (agent, seq) = (b.agent().clone(), b.seq().0);
        let high = self.high(conn, &agent)?;
        let Some(after) = b.after() else {
            self.stored(&agent, seq);
            return Ok((Admit::Now, Some(batch)));
        };
        // Stored already (a duplicate, for the store to drop), next in line, or nothing older is
        // still pending at the agent.
        if seq <= high.saturating_add(1) || seq == after.0 {
            self.stored(&agent, seq);
            return Ok((Admit::Now, Some(batch)));
        }
        if self.held_count >= self.max_held {
            self.dropped += 1;
            return Ok((Admit::Held, None));
        }
        let queue = self.held.entry(agent).or_default();
        if queue
            .insert(
                seq,
                HeldBatch {
                    entity: entity.clone(),
                    domain,
                    batch,
                    since: Instant::now(),
                },
            )
            .is_none()
        {
            self.held_count += 1;
        }
        Ok((Admit::Held, None))
    }

    /// One above the highest sequence number stored from `agent` (an ack's `next`); `None`
    /// if the store cannot say, or nothing could follow `u64::MAX`.
    pub fn next(&mut self, conn: &Connection, agent: &AgentId) -> Option<spotcheck_protocol::Seq> {
        let high = self.high(conn, agent).ok()?;
        high.checked_add(1).map(spotcheck_protocol::Seq)
    }

    fn stored(&mut self, agent: &AgentId, seq: u64) {
        let h = self.high.entry(agent.clone()).or_insert(0);
        *h = (*h).max(seq);
    }

    /// Kept-back batches whose turn has come, in sequence order per agent; call after each
    /// round of [`Sequencer::admit`], and store what it returns in the same transaction.
    pub fn release(&mut self) -> Vec<HeldBatch> {
        let mut out = Vec::new();
        for (agent, queue) in self.held.iter_mut() {
            let high = self.high.entry(agent.clone()).or_insert(0);
            while let Some(entry) = queue.first_entry() {
                let seq = *entry.key();
                let after = entry.get().batch.get().after().map_or(seq, |a| a.0);
                if seq <= high.saturating_add(1) || seq == after {
                    *high = (*high).max(seq);
                    out.push(entry.remove());
                    self.held_count -= 1;
                } else {
                    break;
                }
            }
        }
        self.held.retain(|_, q| !q.is_empty());
        out
    }

    /// Drops batches kept back longer than `hold_for` (their agents will send them again);
    /// returns how many.
    pub fn expire(&mut self) -> usize {
        let before = self.held_count;
        let hold_for = self.hold_for;
        for queue in self.held.values_mut() {
            queue.retain(|_, h| h.since.elapsed() < hold_for);
        }
        self.held.retain(|_, q| !q.is_empty());
        self.held_count = self.held.values().map(BTreeMap::len).sum();
        let n = before - self.held_count;
        self.dropped += n as u64;
        n
    }

    /// Forgets what it believes is stored: after a failed transaction, the store is the truth.
    pub fn forget_stored(&mut self) {
        self.high.clear();
    }

    /// Batches kept back now.
    pub fn held(&self) -> usize {
        self.held_count
    }

    /// Batches dropped so far (waited too long, or no room): their agents re-send them.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spotcheck_protocol::{check, Limits, ReadingBatch, Seq, UnixMillis, Version};

    fn batch(seq: u64, after: Option<u64>) -> Checked<Batch> {
        let b = Batch::Readings(ReadingBatch {
            v: Version,
            agent: AgentId::new("a1").unwrap(),
            seq: Seq(seq),
            after: after.map(Seq),
            readings: vec![spotcheck_protocol::Reading {
                metric: spotcheck_protocol::Metric::new("ph").unwrap(),
                value: 7.2,
                unit: spotcheck_protocol::Unit::Ph,
                ts_ms: UnixMillis::now(),
                quality: spotcheck_protocol::Quality::Good,
            }],
        });
        check(b, &Limits::default(), UnixMillis::now()).unwrap()
    }

    fn db() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(crate::store::schema::MIGRATIONS[0])
            .unwrap();
        c
    }

    fn admit(s: &mut Sequencer, c: &Connection, seq: u64, after: Option<u64>) -> Admit {
        let e = EntityId::new("e1").unwrap();
        s.admit(c, &e, Domain::Pool, batch(seq, after)).unwrap().0
    }

    fn seqs(v: Vec<HeldBatch>) -> Vec<u64> {
        v.into_iter().map(|h| h.batch.get().seq().0).collect()
    }

    #[test]
    fn a_batch_behind_a_gap_waits_until_the_gap_is_filled() {
        let (c, mut s) = (db(), Sequencer::new(Duration::from_secs(60), 100));
        assert_eq!(admit(&mut s, &c, 1, Some(1)), Admit::Now);
        // 2 and 3 were lost by the broker; 4 and 5 arrive first.
        assert_eq!(admit(&mut s, &c, 4, Some(2)), Admit::Held);
        assert_eq!(admit(&mut s, &c, 5, Some(2)), Admit::Held);
        assert!(s.release().is_empty());
        assert_eq!(admit(&mut s, &c, 2, Some(2)), Admit::Now);
        assert!(s.release().is_empty(), "3 is still missing");
        assert_eq!(admit(&mut s, &c, 3, Some(2)), Admit::Now);
        assert_eq!(seqs(s.release()), vec![4, 5]);
        assert_eq!(s.held(), 0);
    }

    #[test]
    fn a_gap_the_agent_no_longer_holds_does_not_block() {
        let (c, mut s) = (db(), Sequencer::new(Duration::from_secs(60), 100));
        assert_eq!(admit(&mut s, &c, 1, Some(1)), Admit::Now);
        // The agent's spool dropped 2..=9 (overflow): its lowest pending is 10.
        assert_eq!(admit(&mut s, &c, 10, Some(10)), Admit::Now);
        assert_eq!(admit(&mut s, &c, 11, Some(10)), Admit::Now);
    }

    #[test]
    fn batches_without_after_and_duplicates_pass() {
        let (c, mut s) = (db(), Sequencer::new(Duration::from_secs(60), 100));
        assert_eq!(admit(&mut s, &c, 7, None), Admit::Now);
        assert_eq!(admit(&mut s, &c, 3, Some(1)), Admit::Now, "a duplicate");
    }

    #[test]
    fn held_batches_expire_and_the_count_is_bounded() {
        let (c, mut s) = (db(), Sequencer::new(Duration::ZERO, 2));
        admit(&mut s, &c, 5, Some(1));
        admit(&mut s, &c, 6, Some(1));
        assert_eq!(s.held(), 2);
        assert_eq!(admit(&mut s, &c, 7, Some(1)), Admit::Held);
        assert_eq!(s.held(), 2, "no room: dropped");
        assert_eq!(s.expire(), 2);
        assert_eq!((s.held(), s.dropped()), (0, 3));
    }
}
