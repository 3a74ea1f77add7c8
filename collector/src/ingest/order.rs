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
//! agent; it lives only in memory. Lost in a crash it costs nothing: the agent still has it in
//! its spool and sends it again. Memory is bounded: at most `max_held` batches in all and
//! `max_held_per_agent` per agent; a batch beyond either bound is refused at once, and one
//! that waited `hold_for` is let go by the commit stage's timer (whether or not its agent
//! sends anything else). Both become dead letters (`held_full`, `gap_not_filled`) without a
//! sequence number, so they are counted and logged but not confirmed: the agent keeps the
//! batch and sends it again. Batches without `after` (other clients) are stored on arrival.
//!
//! Several collectors sharing a PostgreSQL store (docs/storage.md): a shared subscription
//! splits one agent's batches between them, so the batches a gap waits for are often stored
//! by another collector. What lives in the database is what is stored: `batches`, whose
//! highest sequence number per agent is the one fact the decisions above need. What lives in
//! memory is each collector's own: the kept-back batches (acknowledged to the broker, not
//! confirmed: a collector that dies loses them and the agent sends them again, as with one
//! collector) and a cache of those highest numbers. In shared mode ([`Sequencer::shared`])
//! the cache is re-read from the store for every agent of a commit and every agent with a
//! batch kept back ([`Sequencer::refresh`], one query per commit) before any decision, and
//! the commit thread looks again every [`POLL`] while something is kept back: a batch waits
//! for the other collector's commit, not for `hold_for`. A range of numbers is recorded as
//! given up only after that re-read, so one collector never records as abandoned what another
//! stored: the agent names in `after` only numbers it has had confirmed, which a collector
//! confirms after its commit, so a batch that says its predecessors are confirmed arrives
//! after the commit that stored them is visible.

use std::collections::BTreeMap;

use foldhash::{HashMap, HashMapExt};
use std::time::{Duration, Instant};

use spotcheck_protocol::{AgentId, Batch, Checked, Domain, EntityId};

use crate::store::db::{self, args, Conn, DbError, Sql};

/// How often, in shared mode, the commit thread looks whether another collector filled the
/// gap a kept-back batch waits for. A shared subscription deals an agent's batches to the
/// collectors in turn, so each batch of a busy agent waits for the previous one's commit on
/// another collector: this is added to every such hop (250 ms held three collectors to a
/// few batches a second per agent). A look is one indexed query ([`highest_stored_sql`]),
/// and a look that releases nothing commits nothing.
pub const POLL: Duration = Duration::from_millis(20);

/// The highest stored sequence number of agent row `a`, as a column: `max` over the
/// primary key's range for one agent, which PostgreSQL and SQLite both read from the end of
/// the index. (A `max` over a join grouped by name read every stored batch of the agents,
/// a cost that grew with the table on every look.)
const HIGHEST: &str = "(SELECT max(b.seq) FROM batches b WHERE b.agent = a.id)";

/// The query [`Sequencer::refresh`] runs: each named agent's name and highest stored number
/// (NULL when none is stored), for the parameter list `list` (`$1, $2, …`).
pub fn highest_stored_sql(list: &str) -> String {
    format!("SELECT a.name, {HIGHEST} FROM agents a WHERE a.name IN ({list})")
}

/// Agents whose highest stored number is read per statement in [`Sequencer::refresh`].
const AGENTS_PER_STATEMENT: usize = 500;

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
    /// Behind a gap, but no room to keep it: the reason (the batch is handed back).
    Full(String),
}

/// Per agent: the highest stored sequence number, and the batches waiting behind a gap.
#[derive(Debug)]
pub struct Sequencer {
    high: HashMap<AgentId, u64>,
    held: HashMap<AgentId, BTreeMap<u64, HeldBatch>>,
    held_count: usize,
    hold_for: Duration,
    max_held: usize,
    max_per_agent: usize,
    dropped: u64,
    abandoned: Vec<(AgentId, u64, u64)>,
    /// Other collectors store this store's batches too (PostgreSQL).
    shared: bool,
}

impl Sequencer {
    /// A sequencer that keeps a batch back at most `hold_for`, at most `max_held` in all and
    /// `max_per_agent` per agent.
    pub fn new(hold_for: Duration, max_held: usize, max_per_agent: usize) -> Sequencer {
        Sequencer {
            high: HashMap::new(),
            held: HashMap::new(),
            held_count: 0,
            hold_for,
            max_held,
            max_per_agent,
            dropped: 0,
            abandoned: Vec::new(),
            shared: false,
        }
    }

    /// In shared mode when `shared`: other collectors store batches of the same agents (see
    /// the module docs).
    pub fn shared(mut self, shared: bool) -> Sequencer {
        self.shared = shared;
        self
    }

    /// Whether other collectors store batches of the same agents.
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// The highest stored sequence number of `agent` (read from the store on first use).
    fn high(&mut self, conn: &(impl Sql + ?Sized), agent: &AgentId) -> Result<u64, DbError> {
        if let Some(h) = self.high.get(agent) {
            return Ok(*h);
        }
        let h: Option<i64> = conn
            .query_opt(
                &format!("SELECT a.name, {HIGHEST} FROM agents a WHERE a.name = $1"),
                args![agent.as_str()],
                |r| r.get(1),
            )?
            .flatten();
        let h = h.unwrap_or(0) as u64;
        self.high.insert(agent.clone(), h);
        Ok(h)
    }

    /// In shared mode, re-reads the highest stored number of `agents` and of every agent with
    /// a batch kept back (another collector may have stored more since); nothing otherwise.
    /// Call before a round of [`Sequencer::admit`] and before [`Sequencer::release`].
    pub fn refresh<'a>(
        &mut self,
        conn: &Conn,
        agents: impl IntoIterator<Item = &'a AgentId>,
    ) -> Result<(), DbError> {
        if !self.shared {
            return Ok(());
        }
        let mut names: Vec<String> = agents
            .into_iter()
            .map(AgentId::to_string)
            .chain(self.held.keys().map(AgentId::to_string))
            .collect();
        names.sort_unstable();
        names.dedup();
        let mut found = Vec::new();
        for part in names.chunks(AGENTS_PER_STATEMENT) {
            let list = (1..=part.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let a: Vec<&dyn db::Arg> = part.iter().map(|s| s as &dyn db::Arg).collect();
            found.extend(conn.query_once(&highest_stored_sql(&list), &a, |r| {
                Ok((r.get::<String>(0)?, r.get::<Option<i64>>(1)?))
            })?);
        }
        let now = Instant::now();
        for (name, h) in found {
            let (Ok(agent), Some(h)) = (AgentId::new(name), h) else {
                continue;
            };
            let cached = self.high.entry(agent.clone()).or_insert(0);
            if h as u64 > *cached {
                *cached = h as u64;
                // The agent's batches are moving through the other collectors: what waits
                // here waits for that chain, not for a gap nobody fills. `hold_for` counts
                // from the last progress, so a long chain of kept-back batches is not let go
                // (and re-sent by its agent) while it drains.
                if let Some(queue) = self.held.get_mut(&agent) {
                    for h in queue.values_mut() {
                        h.since = now;
                    }
                }
            }
        }
        Ok(())
    }

    /// In shared mode with a batch kept back: how soon to look again whether another
    /// collector filled its gap ([`Sequencer::refresh`], then [`Sequencer::release`]).
    pub fn poll_in(&self) -> Option<Duration> {
        (self.shared && self.held_count > 0).then_some(POLL)
    }

    /// Decides for a batch taken off the queue, in arrival order. `Now` also counts it as
    /// stored (callers store every `Now` batch in the transaction they are building).
    pub fn admit(
        &mut self,
        conn: &(impl Sql + ?Sized),
        entity: &EntityId,
        domain: Domain,
        batch: Checked<Batch>,
    ) -> Result<(Admit, Option<Checked<Batch>>), DbError> {
        let b = batch.get();
        let (agent, seq) = (b.agent().clone(), b.seq().0);
        let high = self.high(conn, &agent)?;
        let Some(after) = b.after() else {
            self.stored(&agent, seq);
            return Ok((Admit::Now, Some(batch)));
        };
        // Nothing older is pending at the agent, yet numbers between the highest stored and
        // `after` never came: the agent gave them up (its spool overflowed and dropped them,
        // or they were dead-lettered).
        if seq == after.0 && after.0 > high.saturating_add(1) {
            self.abandoned.push((agent.clone(), high + 1, after.0 - 1));
        }
        // Stored already (a duplicate, for the store to drop), next in line, or nothing older is
        // still pending at the agent.
        if seq <= high.saturating_add(1) || seq == after.0 {
            self.stored(&agent, seq);
            return Ok((Admit::Now, Some(batch)));
        }
        let waiting = self.held.get(&agent).map_or(0, BTreeMap::len);
        let already = self.held.get(&agent).is_some_and(|q| q.contains_key(&seq));
        if !already && (self.held_count >= self.max_held || waiting >= self.max_per_agent) {
            self.dropped += 1;
            let reason = format!(
                "batch {seq} waits for batches {}..{} of its agent, but {} (at most {} per agent, {} in all): not kept; the agent sends it again",
                high.max(after.0.saturating_sub(1)).saturating_add(1),
                seq - 1,
                if waiting >= self.max_per_agent {
                    format!("{waiting} of its batches already wait")
                } else {
                    format!("{} batches already wait", self.held_count)
                },
                self.max_per_agent,
                self.max_held,
            );
            return Ok((Admit::Full(reason), Some(batch)));
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
    pub fn next(
        &mut self,
        conn: &(impl Sql + ?Sized),
        agent: &AgentId,
    ) -> Option<spotcheck_protocol::Seq> {
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

    /// Lets go of the batches kept back `hold_for` or longer (their agents will send them
    /// again) and returns them, each with the reason.
    pub fn expire(&mut self) -> Vec<(HeldBatch, String)> {
        let hold_for = self.hold_for;
        let mut out = Vec::new();
        for (agent, queue) in self.held.iter_mut() {
            let high = self.high.get(agent).copied().unwrap_or(0);
            let expired: Vec<u64> = queue
                .iter()
                .filter(|(_, h)| h.since.elapsed() >= hold_for)
                .map(|(s, _)| *s)
                .collect();
            for seq in expired {
                let h = queue.remove(&seq).expect("listed above");
                let reason = format!(
                    "batch {seq} waited {} s for batches {}..{} of its agent, which did not come: not stored now; the agent sends it again",
                    hold_for.as_secs_f32(),
                    high.saturating_add(1),
                    seq - 1
                );
                out.push((h, reason));
            }
        }
        self.held.retain(|_, q| !q.is_empty());
        self.held_count = self.held.values().map(BTreeMap::len).sum();
        self.dropped += out.len() as u64;
        out
    }

    /// When the batch kept back longest is due to be let go, if any is kept back.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.held
            .values()
            .filter_map(|q| q.values().map(|h| h.since).min())
            .min()
            .map(|since| since + self.hold_for)
    }

    /// The ranges of sequence numbers agents gave up without their being stored, seen since
    /// the last call: `(agent, first, last)`.
    pub fn take_abandoned(&mut self) -> Vec<(AgentId, u64, u64)> {
        std::mem::take(&mut self.abandoned)
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

    fn db() -> rusqlite::Connection {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        c.execute_batch(crate::store::schema::MIGRATIONS[0])
            .unwrap();
        c
    }

    fn admit(s: &mut Sequencer, c: &(impl Sql + ?Sized), seq: u64, after: Option<u64>) -> Admit {
        let e = EntityId::new("e1").unwrap();
        s.admit(c, &e, Domain::Pool, batch(seq, after)).unwrap().0
    }

    fn seqs(v: Vec<HeldBatch>) -> Vec<u64> {
        v.into_iter().map(|h| h.batch.get().seq().0).collect()
    }

    #[test]
    fn a_batch_behind_a_gap_waits_until_the_gap_is_filled() {
        let (c, mut s) = (db(), Sequencer::new(Duration::from_secs(60), 100, 100));
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
        let (c, mut s) = (db(), Sequencer::new(Duration::from_secs(60), 100, 100));
        assert_eq!(admit(&mut s, &c, 1, Some(1)), Admit::Now);
        // The agent's spool dropped 2..=9 (overflow): its lowest pending is 10.
        assert_eq!(admit(&mut s, &c, 10, Some(10)), Admit::Now);
        assert_eq!(admit(&mut s, &c, 11, Some(10)), Admit::Now);
    }

    #[test]
    fn numbers_an_agent_gave_up_are_reported_as_a_range() {
        let (c, mut s) = (db(), Sequencer::new(Duration::from_secs(60), 100, 100));
        assert_eq!(admit(&mut s, &c, 1, Some(1)), Admit::Now);
        assert_eq!(admit(&mut s, &c, 2, Some(2)), Admit::Now);
        assert!(s.take_abandoned().is_empty());
        assert_eq!(admit(&mut s, &c, 10, Some(10)), Admit::Now);
        assert_eq!(
            s.take_abandoned(),
            vec![(AgentId::new("a1").unwrap(), 3, 9)]
        );
        assert_eq!(admit(&mut s, &c, 11, Some(10)), Admit::Now);
        assert!(s.take_abandoned().is_empty());
    }

    #[test]
    fn batches_without_after_and_duplicates_pass() {
        let (c, mut s) = (db(), Sequencer::new(Duration::from_secs(60), 100, 100));
        assert_eq!(admit(&mut s, &c, 7, None), Admit::Now);
        assert_eq!(admit(&mut s, &c, 3, Some(1)), Admit::Now, "a duplicate");
    }

    #[test]
    fn held_batches_expire_with_a_reason_and_the_count_is_bounded() {
        let (c, mut s) = (db(), Sequencer::new(Duration::ZERO, 2, 10));
        admit(&mut s, &c, 5, Some(1));
        admit(&mut s, &c, 6, Some(1));
        assert_eq!(s.held(), 2);
        assert!(s.next_expiry().is_some());
        let Admit::Full(reason) = admit(&mut s, &c, 7, Some(1)) else {
            panic!("kept beyond the bound")
        };
        assert!(reason.contains("2 batches already wait"), "{reason}");
        assert_eq!(s.held(), 2, "no room: handed back");
        let expired = s.expire();
        assert_eq!(expired.len(), 2);
        assert!(expired[0].1.contains("batches 1..4"), "{}", expired[0].1);
        assert_eq!((s.held(), s.dropped()), (0, 3));
        assert!(s.next_expiry().is_none());
    }

    #[test]
    fn in_shared_mode_what_another_collector_stored_fills_the_gap() {
        let c = Conn::from_sqlite(db());
        let mut s = Sequencer::new(Duration::from_secs(60), 100, 100).shared(true);
        assert_eq!(admit(&mut s, &c, 1, Some(1)), Admit::Now);
        assert_eq!(admit(&mut s, &c, 3, Some(2)), Admit::Held, "waits for 2");
        assert_eq!(s.poll_in(), Some(POLL), "looks again soon");
        // Another collector stores 1 (this one's commit) and 2.
        c.execute_batch(
            "INSERT INTO agents (id, name, entity, domain) VALUES (1, 'a1', 'e1', 'pool');
             INSERT INTO batches (agent, seq, stream, items, received_ms)
             VALUES (1, 1, 'readings', 1, 0), (1, 2, 'readings', 1, 0);",
        )
        .unwrap();
        assert!(s.release().is_empty(), "not before it looks");
        s.refresh(&c, []).unwrap();
        assert_eq!(seqs(s.release()), vec![3]);
        assert_eq!(s.poll_in(), None);
        // 4 and 5 stored elsewhere; 6 says nothing older is pending: no range given up.
        c.execute_batch(
            "INSERT INTO batches (agent, seq, stream, items, received_ms)
             VALUES (1, 4, 'readings', 1, 0), (1, 5, 'readings', 1, 0);",
        )
        .unwrap();
        let a1 = AgentId::new("a1").unwrap();
        s.refresh(&c, [&a1]).unwrap();
        assert_eq!(admit(&mut s, &c, 6, Some(6)), Admit::Now);
        assert!(s.take_abandoned().is_empty());
        assert_eq!(s.next(&c, &a1), Some(Seq(7)));
    }

    /// Makes every kept-back batch look as if it had waited `by`.
    fn backdate(s: &mut Sequencer, by: Duration) {
        for q in s.held.values_mut() {
            for h in q.values_mut() {
                h.since -= by;
            }
        }
    }

    #[test]
    fn in_shared_mode_a_batch_waits_while_its_agent_moves_on_elsewhere_and_not_longer() {
        let c = Conn::from_sqlite(db());
        let hold_for = Duration::from_secs(10);
        let mut s = Sequencer::new(hold_for, 100, 100).shared(true);
        c.execute_batch(
            "INSERT INTO agents (id, name, entity, domain) VALUES (1, 'a1', 'e1', 'pool');",
        )
        .unwrap();
        assert_eq!(admit(&mut s, &c, 5, Some(1)), Admit::Held, "waits for 1..4");
        backdate(&mut s, hold_for * 2);
        // Other collectors store 1 and 2 meanwhile: the chain moves, 5 keeps waiting.
        c.execute_batch(
            "INSERT INTO batches (agent, seq, stream, items, received_ms)
             VALUES (1, 1, 'readings', 1, 0), (1, 2, 'readings', 1, 0);",
        )
        .unwrap();
        s.refresh(&c, []).unwrap();
        assert!(s.release().is_empty());
        assert!(
            s.expire().is_empty(),
            "let go while its predecessors are being stored"
        );
        // Nothing more is stored for `hold_for`: now it is let go.
        backdate(&mut s, hold_for);
        s.refresh(&c, []).unwrap();
        let expired = s.expire();
        assert_eq!(expired.len(), 1);
        assert!(expired[0].1.contains("batches 3..4"), "{}", expired[0].1);
    }

    #[test]
    fn the_refresh_reads_agents_with_nothing_stored_as_nothing() {
        let c = Conn::from_sqlite(db());
        let mut s = Sequencer::new(Duration::from_secs(60), 100, 100).shared(true);
        c.execute_batch(
            "INSERT INTO agents (id, name, entity, domain) VALUES (1, 'a1', 'e1', 'pool');",
        )
        .unwrap();
        let a1 = AgentId::new("a1").unwrap();
        s.refresh(&c, [&a1]).unwrap();
        assert_eq!(s.next(&c, &a1), Some(Seq(1)));
    }

    #[test]
    fn one_agent_cannot_take_all_the_room() {
        let (c, mut s) = (db(), Sequencer::new(Duration::from_secs(60), 100, 2));
        admit(&mut s, &c, 5, Some(1));
        admit(&mut s, &c, 6, Some(1));
        let Admit::Full(reason) = admit(&mut s, &c, 7, Some(1)) else {
            panic!("kept beyond the per-agent bound")
        };
        assert!(reason.contains("2 of its batches already wait"), "{reason}");
        assert_eq!(
            admit(&mut s, &c, 6, Some(1)),
            Admit::Held,
            "a redelivery of one held"
        );
    }
}
