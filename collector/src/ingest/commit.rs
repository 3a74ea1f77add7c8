//! The commit stage: one thread that owns the store's writer. It takes whatever the sources
//! have queued (about `max_commit` messages at most: whole groups), commits it in one
//! transaction, and only then hands the messages on to be acknowledged. A failing commit is retried, never skipped: the
//! pipeline stalls and the broker holds the rest.

use std::collections::BTreeMap;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use spotcheck_protocol::{
    AgentId, Batch, Checked, Domain, EntityId, Seq, Stream, Topic, UnixMillis,
};
use tokio::sync::mpsc;
use tracing::{error, info};

use std::sync::Arc;

use super::bound::{Bounds, LogLimit, LogLine, UNKNOWN_SOURCE};
use super::order::{Admit, HeldBatch, Sequencer};
use super::source::BrokerAck;
use super::validate::Verdict;
use crate::health::{Alive, Health, Part};
use crate::rulebook::Rulebook;
use crate::store::db::Backend;
use crate::store::leader::Lead;
use crate::store::writer::{CommitReport, DeadLetter, Item, Outcome, SEQ_REUSED};
use crate::store::Writer;
use crate::tasks::anomaly::Tracker;
use crate::telemetry::Stats;

/// A message and what validation made of it.
#[derive(Debug)]
pub struct Validated {
    /// What the broker is owed once it is committed.
    pub ack: BrokerAck,
    /// The verdict.
    pub verdict: Verdict,
    /// When ingest took it from the broker.
    pub received: Instant,
}

/// Messages whose content is committed: they may now be acknowledged, in this order.
#[derive(Debug, Default)]
pub struct Committed {
    /// What the broker is owed for each message, in arrival order.
    pub acks: Vec<BrokerAck>,
    /// Per agent, the sequence numbers now safe in the store (or in the dead-letter table).
    pub confirmations: BTreeMap<AgentId, Vec<Seq>>,
    /// Per confirmed agent, one above the highest sequence number stored from it (the ack's
    /// `next`), where known.
    pub next: BTreeMap<AgentId, Seq>,
}

/// Settings of the commit stage.
#[derive(Debug, Clone)]
pub struct CommitConfig {
    /// Most messages per transaction.
    pub max_commit: usize,
    /// Raw data older than this is deleted.
    pub retention: Duration,
    /// How often retention runs.
    pub prune_every: Duration,
    /// Longest a batch is kept back behind a gap in its agent's sequence (see [`super::order`]).
    pub hold_for: Duration,
    /// Most batches kept back at once.
    pub max_held: usize,
    /// Most batches of one agent kept back at once.
    pub max_held_per_agent: usize,
    /// Dead letters older than this are deleted.
    pub dead_letter_retention: Duration,
    /// Whether this collector leads: only the leader runs retention and the time-driven
    /// rules, each in a transaction that checks the leadership fence (store/leader.rs).
    pub leader: Lead,
}

/// How often a standby's commit thread wakes to see whether it has become the leader (and
/// so has retention to run), when nothing else wakes it.
const STANDBY_LOOK: Duration = Duration::from_secs(1);

/// The rule engine's place in the commit stage: every batch stored for the first time runs
/// through it inside its own transaction; time-driven rules run every `tick`.
pub struct RuleStage {
    /// The engine and the task writer.
    pub tracker: Tracker,
    /// Where rule pack changes come from.
    pub rulebook: Rulebook,
    /// How often time-driven rules (inactivity, sliding windows) are evaluated.
    pub tick: Duration,
}

/// Starts the commit thread. It ends when `rx` closes and everything received is committed.
pub fn spawn(
    mut writer: Writer,
    mut rules: Option<RuleStage>,
    mut rx: mpsc::Receiver<Vec<Validated>>,
    tx: mpsc::Sender<Committed>,
    // The counters, and the dead-letter quota shared with the sources.
    (stats, bounds): (Stats, Arc<Bounds>),
    cfg: CommitConfig,
    health: &Health,
) -> std::io::Result<JoinHandle<()>> {
    // Made before the thread starts and dropped when it ends, however it ends: /healthz
    // reports a dead commit thread (or rule ticker) as down.
    let alive = health.alive(Part::CommitThread);
    let ticker = match rules {
        Some(_) => Some(health.alive(Part::RuleTicker)),
        None => {
            health.off(Part::RuleTicker, "rules.enabled is false");
            None
        }
    };
    // The thread waits on the channel with a timeout (for the rule ticks) through the runtime.
    let runtime = tokio::runtime::Handle::current();
    std::thread::Builder::new()
        .name("ingest-commit".into())
        .spawn(move || {
            let (alive, ticker) = (alive, ticker);
            // Retention runs first thing on the leader, then every prune_every.
            let mut next_prune = Instant::now();
            let mut last_tick = Instant::now();
            let mut rules_version = rules.as_ref().map(|r| r.rulebook.version());
            let mut pending = Vec::with_capacity(cfg.max_commit);
            // When each message in `pending` was taken from the broker.
            let mut arrivals: Vec<Instant> = Vec::with_capacity(cfg.max_commit);
            // Rejections found here (reused seqs, batches let go) log like the sources' do.
            let mut log = LogLimit::new(Duration::from_secs(60), 10);
            // Several collectors share a PostgreSQL store: what is stored is read from it
            // (ingest/order.rs, "shared mode").
            let mut order = Sequencer::new(cfg.hold_for, cfg.max_held, cfg.max_held_per_agent)
                .shared(writer.backend() == Backend::Postgres);
            loop {
                let tick_in = rules
                    .as_ref()
                    .map(|r| r.tick.saturating_sub(last_tick.elapsed()));
                // Kept-back batches are let go on time even if nothing else arrives.
                let expire_in = order
                    .next_expiry()
                    .map(|t| t.saturating_duration_since(Instant::now()));
                // In shared mode, another collector may fill a kept-back batch's gap.
                let expire_in = match (expire_in, order.poll_in()) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                let wait = match (tick_in, expire_in) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                // Retention is due on the leader even when no message arrives.
                let prune_in = if cfg.leader.is_leader() {
                    next_prune.saturating_duration_since(Instant::now())
                } else {
                    STANDBY_LOOK
                };
                let wait = Some(wait.map_or(prune_in, |w| w.min(prune_in)));
                let first = match wait {
                    None => rx.blocking_recv(),
                    Some(wait) => {
                        // The timer must be made inside the runtime, so inside the async block.
                        match runtime
                            .block_on(async { tokio::time::timeout(wait, rx.recv()).await })
                        {
                            Ok(v) => v,
                            Err(_) => {
                                if order.next_expiry().is_some_and(|t| t <= Instant::now())
                                    || order.poll_in().is_some()
                                {
                                    let committed = commit_with_retry(
                                        &mut writer,
                                        rules.as_mut(),
                                        &mut order,
                                        &mut pending,
                                        (&stats, &bounds),
                                        &alive,
                                        &mut log,
                                    );
                                    if tx.blocking_send(committed).is_err() {
                                        error!(
                                            message =
                                                "Confirm stage is gone; stopping commit stage."
                                        );
                                        return;
                                    }
                                }
                                // Evaluate the clock-driven rules when their tick is due.
                                if let Some(r) = rules.as_mut() {
                                    if last_tick.elapsed() >= r.tick {
                                        tick(&mut writer, r, &stats, ticker.as_ref(), &cfg.leader);
                                        last_tick = Instant::now();
                                    }
                                }
                                prune_if_due(&mut writer, &cfg, &stats, &mut next_prune);
                                continue;
                            }
                        }
                    }
                };
                let Some(first) = first else { break };
                pending.extend(first);
                while pending.len() < cfg.max_commit {
                    match rx.try_recv() {
                        Ok(v) => pending.extend(v),
                        Err(_) => break,
                    }
                }
                if let Some(r) = rules.as_mut() {
                    let v = r.rulebook.version();
                    if rules_version != Some(v) {
                        r.tracker.replace_rules((*r.rulebook.rules()).clone());
                        rules_version = Some(v);
                        info!(message = "Rule engine now runs the updated rule packs.");
                    }
                }
                arrivals.clear();
                arrivals.extend(pending.iter().map(|v| v.received));
                let committed = commit_with_retry(
                    &mut writer,
                    rules.as_mut(),
                    &mut order,
                    &mut pending,
                    (&stats, &bounds),
                    &alive,
                    &mut log,
                );
                let now = Instant::now();
                for a in &arrivals {
                    stats
                        .commit_latency
                        .0
                        .observe(now.duration_since(*a).as_secs_f64());
                }
                if tx.blocking_send(committed).is_err() {
                    error!(message = "Confirm stage is gone; stopping commit stage.");
                    return;
                }
                if let Some(r) = rules.as_mut() {
                    if last_tick.elapsed() >= r.tick {
                        tick(&mut writer, r, &stats, ticker.as_ref(), &cfg.leader);
                        last_tick = Instant::now();
                    }
                }
                prune_if_due(&mut writer, &cfg, &stats, &mut next_prune);
            }
        })
}

/// The time-driven rules, on the leader only: a standby's engine sees its own commits'
/// batches, the leader's tick claims every idle entity (store: `Tracker::tick`) and so
/// evaluates all of them once.
fn tick(writer: &mut Writer, r: &mut RuleStage, stats: &Stats, alive: Option<&Alive>, lead: &Lead) {
    let standby = |a: Option<&Alive>| {
        if let Some(a) = a {
            a.standby("another collector leads and evaluates the time-driven rules");
        }
    };
    if !lead.is_leader() {
        standby(alive);
        return;
    }
    let now = UnixMillis::now();
    let before = r.tracker.opened();
    let mut ran = false;
    let result = writer.transact(&mut |tx| {
        // Inside the transaction: a collector that lost the leadership meanwhile does nothing.
        if !lead.fence(tx).map_err(|e| e.to_string())? {
            return Ok(());
        }
        ran = true;
        r.tracker.tick(tx, now).map_err(|e| e.to_string())
    });
    match result {
        Ok(()) if !ran => standby(alive),
        Ok(()) => {
            stats.rule_ticks.inc();
            stats
                .anomaly_tasks_opened
                .inc_by(r.tracker.opened() - before);
            if let Some(a) = alive {
                a.ok();
            }
        }
        Err(e) => {
            error!(message = "Evaluating time-driven rules failed; will retry on the next tick.", error = %e);
            if let Some(a) = alive {
                a.failing(format!("evaluating time-driven rules failed: {e}"));
            }
            reload(writer, r);
        }
    }
}

/// After a rolled-back transaction, the engine's memory is ahead of the store: reload it.
fn reload(writer: &mut Writer, r: &mut RuleStage) {
    let rules = (*r.rulebook.rules()).clone();
    let calendar = (*r.rulebook.calendar()).clone();
    if let Err(e) = r
        .tracker
        .reload(writer.conn(), rules, calendar, UnixMillis::now())
    {
        error!(message = "Reloading the rule engine's state failed.", error = %e);
    }
}

/// Retention, on the leader only, when `next` has come, in a transaction that checks the
/// leadership fence; then due again after `prune_every` (or, refused by the fence, in a
/// second: this collector is about to learn it no longer leads).
fn prune_if_due(writer: &mut Writer, cfg: &CommitConfig, stats: &Stats, next: &mut Instant) {
    if !cfg.leader.is_leader() || Instant::now() < *next {
        return;
    }
    let now = UnixMillis::now().0;
    let before = UnixMillis(now - cfg.retention.as_millis() as i64);
    let dead_before = UnixMillis(now - cfg.dead_letter_retention.as_millis() as i64);
    match writer.prune_if(before, dead_before, &mut |tx| cfg.leader.fence(tx)) {
        Ok(None) => *next = Instant::now() + STANDBY_LOOK,
        Ok(Some(n)) => {
            *next = Instant::now() + cfg.prune_every;
            stats.retention_runs.inc();
            if n > 0 {
                info!(message = "Retention removed old raw data.", rows = n);
            }
        }
        Err(e) => {
            // Tried again after prune_every, as before: retention is not urgent.
            *next = Instant::now() + cfg.prune_every;
            error!(message = "Retention failed; will retry.", error = %e);
        }
    }
}

/// Puts each accepted batch through the sequencer: those behind a gap become
/// [`Verdict::KeptBack`] (acknowledged to the broker, not stored, not confirmed), or dead
/// letters without a seq when there is no room. Returns the kept-back batches whose turn has
/// now come, and those that waited too long, as dead letters. Dead letters made here are not
/// confirmed, so like the sources' they are charged to their agent's daily quota: over it
/// they are only counted.
fn sequence(
    writer: &Writer,
    order: &mut Sequencer,
    pending: &mut [Validated],
    stats: &Stats,
    bounds: &Bounds,
) -> (Vec<HeldBatch>, Vec<DeadLetter>) {
    let fits = |d: &DeadLetter| {
        let source = d.agent.as_ref().map_or(UNKNOWN_SOURCE, |a| a.as_str());
        let bytes = (d.payload.len() + d.topic.len() + d.reason.len()) as u64;
        let fits = bounds
            .quota
            .lock()
            .map(|mut q| q.charge(source, bytes, UnixMillis::now()))
            .unwrap_or(true);
        if !fits {
            stats.dead_letters_over_quota.inc();
        }
        fits
    };
    if order.is_shared() {
        // What other collectors stored since: before any decision (ingest/order.rs).
        let agents = pending.iter().filter_map(|v| match &v.verdict {
            Verdict::Accept { batch, .. } => Some(batch.get().agent()),
            _ => None,
        });
        if let Err(e) = order.refresh(writer.conn(), agents) {
            error!(message = "Reading the stored sequence numbers failed.", error = %e);
        }
    }
    // Batches whose gap another collector filled go now, before any is let go for waiting.
    let mut released = if order.is_shared() {
        order.release()
    } else {
        Vec::new()
    };
    let expired: Vec<DeadLetter> = order
        .expire()
        .into_iter()
        .map(|(h, reason)| let_go(&h.entity, h.domain, h.batch.get(), "gap_not_filled", reason))
        .filter(|d| {
            let keep = fits(d);
            if !keep {
                stats.reject(d.code, d.items);
            }
            keep
        })
        .collect();
    for v in pending.iter_mut() {
        if !matches!(v.verdict, Verdict::Accept { .. }) {
            continue;
        }
        let Verdict::Accept {
            entity,
            domain,
            batch,
        } = std::mem::replace(&mut v.verdict, Verdict::KeptBack)
        else {
            unreachable!("matched above")
        };
        match order.admit(writer.conn(), &entity, domain, batch) {
            Ok((Admit::Now, Some(batch))) => {
                v.verdict = Verdict::Accept {
                    entity,
                    domain,
                    batch,
                }
            }
            Ok((Admit::Full(reason), Some(batch))) => {
                let d = let_go(&entity, domain, batch.get(), "held_full", reason);
                v.verdict = if fits(&d) {
                    Verdict::Reject(d)
                } else {
                    Verdict::OverQuota {
                        code: d.code,
                        items: d.items,
                        source: batch.get().agent().to_string(),
                        topic: d.topic,
                    }
                };
            }
            Ok(_) => {}
            Err(e) => {
                // Cannot tell what is stored: keep it back; the agent sends it again.
                error!(message = "Reading the stored sequence numbers failed.", error = %e);
            }
        }
    }
    released.extend(order.release());
    (released, expired)
}

/// A batch the sequencer could not keep, as a dead letter without its seq: counted and kept
/// with its reason, not confirmed (the agent still holds it and sends it again).
fn let_go(
    entity: &EntityId,
    domain: Domain,
    batch: &Batch,
    code: &'static str,
    reason: String,
) -> DeadLetter {
    DeadLetter {
        topic: Topic::batch(
            match batch {
                Batch::Readings(_) => Stream::Readings,
                Batch::Events(_) => Stream::Events,
            },
            domain,
            entity.clone(),
            batch.agent().clone(),
        )
        .to_string(),
        agent: Some(batch.agent().clone()),
        seq: None,
        code,
        reason,
        payload: batch.encode(),
        items: batch.len() as u64,
    }
}

fn commit_with_retry(
    writer: &mut Writer,
    mut rules: Option<&mut RuleStage>,
    order: &mut Sequencer,
    pending: &mut Vec<Validated>,
    (stats, bounds): (&Stats, &Bounds),
    alive: &Alive,
    log: &mut LogLimit,
) -> Committed {
    let (released, expired) = sequence(writer, order, pending, stats, bounds);
    let gaps = order.take_abandoned();
    stats.batches_kept_back.set(order.held() as i64);
    let items: Vec<Item<'_>> = pending
        .iter()
        .filter_map(|v| match &v.verdict {
            Verdict::Accept {
                entity,
                domain,
                batch,
            } => Some(Item::Batch {
                entity,
                domain: *domain,
                batch,
            }),
            Verdict::Reject(d) => Some(Item::DeadLetter(d)),
            Verdict::Status { .. } | Verdict::KeptBack | Verdict::OverQuota { .. } => None,
        })
        .chain(released.iter().map(|h| Item::Batch {
            entity: &h.entity,
            domain: h.domain,
            batch: &h.batch,
        }))
        .chain(expired.iter().map(Item::DeadLetter))
        .chain(gaps.iter().map(|(agent, first, last)| Item::Gap {
            agent,
            first: *first,
            last: *last,
        }))
        .collect();
    let mut backoff = Duration::from_millis(100);
    // A look for batches another collector let through (shared mode, every `order::POLL`)
    // often finds none: no transaction then, which on PostgreSQL would still take a
    // transaction id and flush a commit record.
    let report = loop {
        if items.is_empty() {
            break CommitReport::default();
        }
        let now = UnixMillis::now();
        let before = rules.as_ref().map_or(0, |r| r.tracker.opened());
        let result = match rules.as_deref_mut() {
            None => writer.commit(&items, now),
            Some(r) => writer.commit_observed(&items, now, &mut r.tracker),
        };
        match result {
            Ok(r) => {
                if let Some(rs) = rules.as_ref() {
                    stats
                        .anomaly_tasks_opened
                        .inc_by(rs.tracker.opened() - before);
                }
                alive.ok();
                break r;
            }
            Err(e) => {
                if let Err(e) = writer.reconnect_if_lost() {
                    error!(message = "Reconnecting to the store failed; will retry.", error = %e);
                }
                if let Some(r) = rules.as_deref_mut() {
                    reload(writer, r);
                }
                order.forget_stored();
                alive.failing(format!(
                    "commits fail and are retried; nothing is acknowledged meanwhile: {e}"
                ));
                error!(message = "Commit failed; retrying. Nothing is acknowledged until it succeeds.", error = %e, retry_in_ms = backoff.as_millis() as u64);
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    };
    if !items.is_empty() {
        stats.commits.inc();
    }
    drop(items);

    let mut committed = Committed::default();
    let mut outcomes = report.outcomes.into_iter();
    for v in pending.drain(..) {
        match &v.verdict {
            Verdict::Accept { batch, .. } => {
                let b = batch.get();
                count_stored(stats, batch, outcomes.next(), log);
                confirm(&mut committed, b.agent(), b.seq());
            }
            Verdict::Reject(d) => {
                outcomes.next();
                stats.reject(d.code, d.items);
                if d.code == "held_full" {
                    if let LogLine::Log { suppressed } = log.allow(d.code, Instant::now()) {
                        tracing::warn!(message = "Batch behind a gap not kept back (no room); kept as a dead letter, not confirmed.", agent = ?d.agent.as_ref().map(|a| a.as_str()), reason = %d.reason, suppressed);
                    }
                }
                if let (Some(agent), Some(seq)) = (&d.agent, d.seq) {
                    confirm(&mut committed, agent, seq);
                }
            }
            Verdict::OverQuota { code, items, .. } => stats.reject(code, *items),
            Verdict::Status { .. } | Verdict::KeptBack => {}
        }
        if v.ack != BrokerAck::Nothing {
            committed.acks.push(v.ack);
        }
    }
    for h in &released {
        let b = h.batch.get();
        count_stored(stats, &h.batch, outcomes.next(), log);
        confirm(&mut committed, b.agent(), b.seq());
    }
    for d in &expired {
        outcomes.next();
        stats.reject(d.code, d.items);
        if let LogLine::Log { suppressed } = log.allow(d.code, Instant::now()) {
            tracing::warn!(message = "Kept-back batch let go; kept as a dead letter, not confirmed.", agent = ?d.agent.as_ref().map(|a| a.as_str()), reason = %d.reason, suppressed);
        }
    }
    for (agent, first, last) in &gaps {
        if let Some(Outcome::Gap(n)) = outcomes.next() {
            if n > 0 {
                stats
                    .batches_given_up
                    .get_or_create(&crate::telemetry::AgentLabel {
                        agent: agent.to_string(),
                    })
                    .inc_by(n);
                if let LogLine::Log { suppressed } = log.allow("seq_gap", Instant::now()) {
                    tracing::warn!(message = "An agent gave up batches that were never stored (its spool overflowed?); recorded in seq_gaps.", %agent, first, last, batches = n, suppressed);
                }
            }
        }
    }
    for agent in committed.confirmations.keys() {
        if let Some(next) = order.next(writer.conn(), agent) {
            committed.next.insert(agent.clone(), next);
        }
    }
    committed
}

fn count_stored(
    stats: &Stats,
    checked: &Checked<Batch>,
    outcome: Option<Outcome>,
    log: &mut LogLimit,
) {
    let b = checked.get();
    match outcome {
        Some(Outcome::Stored) => {
            stats.batches_committed.inc();
            stats.readings_out_of_range.inc_by(checked.flagged() as u64);
            match b {
                Batch::Readings(r) => stats.readings_ingested.inc_by(r.readings.len() as u64),
                Batch::Events(e) => stats.events_ingested.inc_by(e.events.len() as u64),
            };
        }
        Some(Outcome::SeqReused) => {
            stats.reject(SEQ_REUSED, b.len() as u64);
            if let LogLine::Log { suppressed } = log.allow(SEQ_REUSED, Instant::now()) {
                tracing::warn!(message = "Sequence number reused with different content; kept as a dead letter.", agent = %b.agent(), seq = b.seq().0, suppressed);
            }
        }
        _ => {
            stats.duplicates_dropped.inc();
        }
    }
}

fn confirm(c: &mut Committed, agent: &AgentId, seq: Seq) {
    match c.confirmations.get_mut(agent) {
        Some(v) => v.push(seq),
        None => {
            c.confirmations.insert(agent.clone(), vec![seq]);
        }
    }
}
