//! Anomaly-triggered tasks, detected while streaming.
//!
//! The [`Tracker`] owns the rule engine and lives on ingest's commit thread. It sees every
//! batch stored for the first time (duplicates never reach it) inside the transaction that
//! stores the batch, and writes in that same transaction the tasks its transitions open, the
//! notes of conditions that clear, and the engine's changed state. So a crash loses either
//! the batch and its effects together or neither: a restart neither duplicates a task nor
//! forgets a breach that was pending.
//!
//! Dedupe: at most one live (open or acknowledged) anomaly task per (entity, rule key); a
//! condition that returns while its task is live adds a note to that task.
//!
//! On a PostgreSQL store shared by several collectors (docs/storage.md), the engine's state of
//! an entity belongs to the transaction that holds the entity's `entities` row locked
//! ([`Tracker::claim`], `SELECT … FOR NO KEY UPDATE`, in name order): two collectors that
//! commit readings of one entity take turns, and each reloads the entity's `rule_state` under
//! the lock, so it continues from what the other stored. A collector that dies mid-commit
//! loses its connection and PostgreSQL releases the lock with it; the next claimant reads the
//! last committed state. Opening or clearing a task takes the store's write lock first (the
//! audit chain needs it), and the partial unique index `tasks_one_live_anomaly` still refuses
//! a second live task: the insert says `ON CONFLICT DO NOTHING` and a refused one is treated
//! as the condition returning on the task that exists.

use foldhash::{HashMap, HashMapExt, HashSet};

use serde_json::json;
use spotcheck_protocol::{Batch, Domain, EntityId, Quality, UnixMillis};
use tracing::{info, warn};

use super::store::add_note;
use super::{TaskError, TaskId};
use crate::audit::{self, EntryKind};
use crate::rules::{Calendar, Engine, RuleKey, RuleSet, Transition};
use crate::store::db::{self, args, Backend, Conn, DbError, Sql, Tx};
use crate::store::writer::Observer;

/// Entities locked (and their state read) per statement when a commit claims them.
const CLAIM_PER_STATEMENT: usize = 500;

/// The department and item of an anomaly task whose rule pack no item of the item list names.
pub const UNASSIGNED: &str = "unassigned";

/// The rule engine and what it needs to turn transitions into tasks.
pub struct Tracker {
    engine: Engine,
    out: Vec<Transition>,
    domains: HashMap<EntityId, Domain>,
    /// Rules dropped by a pack replacement, whose live tasks get a note in the next
    /// transaction: the engine no longer watches them, so they will never clear by themselves.
    removed: Vec<RuleKey>,
    /// Tasks opened since start (for the counters).
    opened: u64,
    /// When each watched entity's inactivity clock started (in case no collector has stored
    /// one for it yet when this one claims it on PostgreSQL).
    watched_at: HashMap<EntityId, (Domain, UnixMillis)>,
    /// On PostgreSQL, the entities the open transaction has claimed: only their state is
    /// written ([`Tracker::persist`]); the others' stays in memory until claimed.
    claimed: HashSet<EntityId>,
}

impl Tracker {
    /// A tracker over `rules`, with the engine state persisted in `conn` restored and the
    /// `watched` entities' inactivity clocks started at `now`.
    pub fn load(
        conn: &(impl Sql + ?Sized),
        rules: RuleSet,
        calendar: Calendar,
        watched: &[(EntityId, Domain)],
        now: UnixMillis,
    ) -> Result<Tracker, TaskError> {
        let mut t = Tracker {
            engine: Engine::new(rules, calendar),
            out: Vec::new(),
            domains: HashMap::new(),
            removed: Vec::new(),
            opened: 0,
            watched_at: HashMap::new(),
            claimed: HashSet::default(),
        };
        t.restore(conn)?;
        for (entity, domain) in watched {
            t.engine.watch(entity, *domain, now);
            t.domains.insert(entity.clone(), *domain);
            t.watched_at.insert(entity.clone(), (*domain, now));
        }
        Ok(t)
    }

    fn restore(&mut self, conn: &(impl Sql + ?Sized)) -> Result<(), TaskError> {
        let rows: Vec<(String, String, String)> =
            conn.query("SELECT entity, rule, state FROM rule_state", args![], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
        for (entity, rule, state) in rows {
            let (Ok(e), Some(r)) = (EntityId::new(entity.clone()), RuleKey::parse(&rule)) else {
                warn!(message = "Dropping unreadable rule state.", entity, rule);
                continue;
            };
            if let Err(err) = self.engine.restore(e, r, &state) {
                // A rule that no longer exists, or state from an older build: start afresh.
                warn!(message = "Rule state not restored; the rule starts afresh.", entity, rule, error = %err);
            }
        }
        Ok(())
    }

    /// Throws away the in-memory state and reloads the committed one: after a failed
    /// transaction, whose transitions were rolled back with it.
    pub fn reload(
        &mut self,
        conn: &(impl Sql + ?Sized),
        rules: RuleSet,
        calendar: Calendar,
        now: UnixMillis,
    ) -> Result<(), TaskError> {
        let watched: Vec<_> = self.domains.iter().map(|(e, d)| (e.clone(), *d)).collect();
        let opened = self.opened;
        *self = Tracker::load(conn, rules, calendar, &watched, now)?;
        self.opened = opened;
        Ok(())
    }

    /// Replaces the rule packs; state of rules that still exist is kept. Live tasks of rules
    /// that no longer exist get a note in the next transaction.
    pub fn replace_rules(&mut self, rules: RuleSet) {
        let keys = |set: &RuleSet| -> std::collections::BTreeSet<RuleKey> {
            set.packs()
                .flat_map(|p| p.rules.iter().map(|r| r.key.clone()))
                .collect()
        };
        let (old, new) = (keys(self.engine.rules()), keys(&rules));
        self.removed.extend(old.difference(&new).cloned());
        self.engine.replace_rules(rules);
    }

    /// Tasks opened since start.
    pub fn opened(&self) -> u64 {
        self.opened
    }

    /// On a PostgreSQL store, makes `entities`' state this transaction's: locks their
    /// `entities` rows (`FOR NO KEY UPDATE`, in name order, so two collectors claiming
    /// overlapping sets queue rather than deadlock; chunk and event inserts do not conflict
    /// with that lock) and reloads their `rule_state`, which another collector may have
    /// changed since this one last saw it. Held until the transaction ends. Nothing on SQLite,
    /// where this commit thread is the one writer and its memory is the state.
    pub fn claim(&mut self, conn: &Conn, entities: &[&EntityId]) -> Result<(), TaskError> {
        self.claim_with(conn, entities, "").map(drop)
    }

    /// [`Tracker::claim`]; with `skip` = `" SKIP LOCKED"` the entities another transaction
    /// holds are left out rather than waited for. Returns the names claimed.
    fn claim_with(
        &mut self,
        conn: &Conn,
        entities: &[&EntityId],
        skip: &str,
    ) -> Result<Vec<String>, TaskError> {
        if conn.backend() == Backend::Sqlite || entities.is_empty() {
            return Ok(Vec::new());
        }
        let mut sorted: Vec<&str> = entities.iter().map(|e| e.as_str()).collect();
        sorted.sort_unstable();
        sorted.dedup();
        self.claimed.clear();
        let mut claimed = Vec::new();
        for part in sorted.chunks(CLAIM_PER_STATEMENT) {
            let a: Vec<&dyn db::Arg> = part.iter().map(|s| s as &dyn db::Arg).collect();
            let list = |n: usize| {
                (1..=n)
                    .map(|i| format!("${i}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let locked: Vec<String> = conn.query_once(
                &format!(
                    "SELECT name FROM entities WHERE name IN ({}) ORDER BY name FOR NO KEY UPDATE{skip}",
                    list(part.len())
                ),
                &a,
                |r| r.get(0),
            )?;
            if locked.is_empty() {
                continue;
            }
            let part: Vec<&str> = locked.iter().map(String::as_str).collect();
            let a: Vec<&dyn db::Arg> = part.iter().map(|s| s as &dyn db::Arg).collect();
            let list = list(part.len());
            let rows: Vec<(String, String, String)> = conn.query_once(
                &format!("SELECT entity, rule, state FROM rule_state WHERE entity IN ({list})"),
                &a,
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            for name in &part {
                if let Ok(e) = EntityId::new(*name) {
                    self.engine.forget(&e);
                    self.claimed.insert(e);
                }
            }
            for (entity, rule, state) in rows {
                if let (Ok(e), Some(r)) = (EntityId::new(entity), RuleKey::parse(&rule)) {
                    // A rule no longer in the packs (warned about at start-up) stays fresh.
                    let _ = self.engine.restore(e, r, &state);
                }
            }
            // A watched entity whose clock no collector has stored yet starts it now (as
            // `load` did in memory), under the claim.
            for name in &part {
                let Ok(e) = EntityId::new(*name) else {
                    continue;
                };
                if let Some((domain, at)) = self.watched_at.get(&e) {
                    self.engine.watch(&e, *domain, *at);
                }
            }
            claimed.extend(locked);
        }
        Ok(claimed)
    }

    /// Before time-driven rules on PostgreSQL: [`Tracker::claim`] of every entity the store
    /// knows that no commit holds at this moment (`SKIP LOCKED`: one being written now has
    /// data arriving and is ticked next time). Returns those claimed; `None` on SQLite (all).
    fn claim_idle(&mut self, conn: &Conn) -> Result<Option<HashSet<String>>, TaskError> {
        if conn.backend() == Backend::Sqlite {
            return Ok(None);
        }
        let names: Vec<String> =
            conn.query("SELECT name FROM entities ORDER BY name", args![], |r| {
                r.get(0)
            })?;
        let ids: Vec<EntityId> = names
            .into_iter()
            .filter_map(|n| EntityId::new(n).ok())
            .collect();
        let refs: Vec<&EntityId> = ids.iter().collect();
        let claimed = self.claim_with(conn, &refs, " SKIP LOCKED")?;
        Ok(Some(claimed.into_iter().collect()))
    }

    /// Feeds a batch stored for the first time, inside its transaction.
    pub fn batch(
        &mut self,
        tx: &(impl Sql + ?Sized),
        entity: &EntityId,
        domain: Domain,
        batch: &Batch,
        received: UnixMillis,
    ) -> Result<(), TaskError> {
        if !self.domains.contains_key(entity) {
            self.domains.insert(entity.clone(), domain);
        }
        match batch {
            Batch::Readings(b) => {
                for r in &b.readings {
                    // A reading the sensor itself marks bad says nothing about the water.
                    if r.quality == Quality::Bad {
                        continue;
                    }
                    self.engine.reading(
                        entity,
                        domain,
                        r.metric.as_str(),
                        r.value,
                        r.ts_ms,
                        received,
                        &mut self.out,
                    );
                }
            }
            Batch::Events(b) => {
                for e in &b.events {
                    self.engine
                        .event(entity, domain, e, received, &mut self.out);
                }
            }
        }
        self.apply(tx, received)
    }

    /// Writes the engine's changed state (`rule_state`). [`Tracker::batch`] leaves it to this,
    /// to be called once before the transaction commits: a slot touched by a thousand batches
    /// is written once.
    pub fn persist(&mut self, tx: &(impl Sql + ?Sized)) -> Result<(), TaskError> {
        let dirty = match tx.backend() {
            Backend::Sqlite => self.engine.take_dirty(),
            // Only what this transaction owns (Tracker::claim); the rest waits for its claim.
            Backend::Postgres => {
                let claimed = std::mem::take(&mut self.claimed);
                self.engine.take_dirty_where(|e| claimed.contains(e))
            }
        };
        for (entity, rule, state) in dirty {
            tx.execute(
                "INSERT INTO rule_state (entity, rule, state) VALUES ($1, $2, $3)
                 ON CONFLICT (entity, rule) DO UPDATE SET state = excluded.state",
                args![entity.as_str(), rule.to_string(), state],
            )?;
        }
        Ok(())
    }

    /// Time-driven rules (inactivity, sliding windows), inside a transaction of their own. On
    /// PostgreSQL it first claims every entity no commit holds at the moment
    /// ([`Tracker::claim`] with `SKIP LOCKED`), so the clocks it reads are those the
    /// collectors stored, and ticks only those: it never waits for ingest.
    pub fn tick(&mut self, tx: &Tx<'_>, now: UnixMillis) -> Result<(), TaskError> {
        match self.claim_idle(tx)? {
            None => self.engine.tick(now, &mut self.out),
            Some(claimed) => self
                .engine
                .tick_where(now, &mut self.out, |e| claimed.contains(e.as_str())),
        }
        self.apply(tx, now)?;
        self.persist(tx)
    }

    /// Writes the transitions (tasks opened, cleared) the engine has emitted.
    fn apply(&mut self, tx: &(impl Sql + ?Sized), now: UnixMillis) -> Result<(), TaskError> {
        if self.removed.is_empty() && self.out.is_empty() {
            return Ok(());
        }
        // Tasks and the audit chain are the workflow writers' tables too: on PostgreSQL this
        // (otherwise concurrent) transaction takes the store's write lock before it writes
        // them. Transitions are rare; readings without one never wait for it.
        db::hold_write_lock(tx)?;
        for rule in std::mem::take(&mut self.removed) {
            let live: Vec<i64> = tx.query(
                "SELECT id FROM tasks WHERE kind = 'anomaly' AND rule = $1
                 AND status IN ('open', 'acknowledged')",
                args![rule.as_str()],
                |r| r.get(0),
            )?;
            for id in live {
                add_note(
                    tx,
                    TaskId(id),
                    now,
                    "rule_removed",
                    &format!("rule {rule} is no longer in the active pack: the condition is not watched any more and will not clear by itself; resolve the task"),
                )?;
            }
        }
        for t in std::mem::take(&mut self.out) {
            match t {
                Transition::Open {
                    entity,
                    rule,
                    severity,
                    pack,
                    at,
                    detail,
                } => {
                    let domain = self.domains.get(&entity).copied();
                    if open(
                        tx,
                        &entity,
                        domain,
                        &rule,
                        severity,
                        pack.as_str(),
                        at,
                        &detail,
                        now,
                    )? {
                        self.opened += 1;
                    }
                }
                Transition::Clear {
                    entity,
                    rule,
                    at,
                    detail,
                } => clear(tx, &entity, &rule, at, &detail, now)?,
            }
        }
        Ok(())
    }
}

/// Ingest's commit runs the tracker inside every transaction.
impl Observer for Tracker {
    fn claim(&mut self, tx: &Tx<'_>, entities: &[&EntityId]) -> Result<(), String> {
        Tracker::claim(self, tx, entities).map_err(|e| e.to_string())
    }

    fn stored(
        &mut self,
        tx: &Tx<'_>,
        entity: &EntityId,
        domain: Domain,
        batch: &Batch,
        now: UnixMillis,
    ) -> Result<(), String> {
        self.batch(tx, entity, domain, batch, now)
            .map_err(|e| e.to_string())
    }

    fn finish(&mut self, tx: &Tx<'_>) -> Result<(), String> {
        self.persist(tx).map_err(|e| e.to_string())
    }
}

fn live_task(
    tx: &(impl Sql + ?Sized),
    entity: &EntityId,
    rule: &RuleKey,
) -> Result<Option<TaskId>, DbError> {
    tx.query_opt(
        "SELECT id FROM tasks WHERE kind = 'anomaly' AND entity = $1 AND rule = $2
         AND status IN ('open', 'acknowledged')",
        args![entity.as_str(), rule.to_string()],
        |r| r.get(0).map(TaskId),
    )
}

/// The condition returned while its task is live: the task shows it again.
fn returned(
    tx: &(impl Sql + ?Sized),
    id: TaskId,
    detail: &str,
    now: UnixMillis,
) -> Result<(), TaskError> {
    tx.execute(
        "UPDATE tasks SET cleared_ms = NULL, updated_ms = $2 WHERE id = $1",
        args![id.0, now.0],
    )?;
    add_note(tx, id, now, "returned", detail)?;
    crate::notify::event::anomaly_changed(tx, id.0, true, detail, now)?;
    Ok(())
}

/// Opens a task, or notes on the live one that the condition returned. True if a task opened.
#[allow(clippy::too_many_arguments)]
fn open(
    tx: &(impl Sql + ?Sized),
    entity: &EntityId,
    domain: Option<Domain>,
    rule: &RuleKey,
    severity: crate::rules::Severity,
    pack: &str,
    at: UnixMillis,
    detail: &str,
    now: UnixMillis,
) -> Result<bool, TaskError> {
    if let Some(id) = live_task(tx, entity, rule)? {
        returned(tx, id, detail, now)?;
        return Ok(false);
    }
    // The item list (一单) says which item this rule pack checks and which department owns
    // it; a rule pack that no item names still opens its task (a breach is never dropped),
    // under the department `unassigned`, so the bureau sees it and fixes the item list.
    let owner: Option<(String, String)> = tx.query_opt(
        "SELECT id, department FROM registry_items WHERE rule_pack = $1 ORDER BY id LIMIT 1",
        args![rule.pack()],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let (item, department) = match owner {
        Some(found) => found,
        None => {
            warn!(message = "No item of the item list names this rule pack; the anomaly task is unassigned.", pack = rule.pack(), entity = %entity, ?domain);
            (UNASSIGNED.to_owned(), UNASSIGNED.to_owned())
        }
    };
    let day = super::china_day(at);
    // `tasks_one_live_anomaly` refuses a second live task of (entity, rule): one that another
    // writer opened since the look above is the task this condition returns on.
    let inserted: Option<i64> = tx.query_opt(
        "INSERT INTO tasks (kind, entity, department, item, window_start, window_end, status,
                            rule, severity, opened_ms, detail, updated_ms)
         VALUES ('anomaly', $1, $2, $3, $4, $4, 'open', $5, $6, $7, $8, $7)
         ON CONFLICT DO NOTHING RETURNING id",
        args![
            entity.as_str(),
            department,
            item,
            day,
            rule.to_string(),
            severity.as_str(),
            now.0,
            detail
        ],
        |r| r.get(0),
    )?;
    let Some(id) = inserted.map(TaskId) else {
        if let Some(id) = live_task(tx, entity, rule)? {
            returned(tx, id, detail, now)?;
        }
        return Ok(false);
    };
    audit::append(
        tx,
        EntryKind::TaskOpened,
        &format!("task:{id}"),
        &json!({
            "task": id.0, "kind": "anomaly", "entity": entity.as_str(), "rule": rule.to_string(),
            "pack": pack, "severity": severity.as_str(), "at_ms": at.0, "detail": detail,
        }),
        now,
    )?;
    info!(message = "Anomaly task opened.", task = id.0, entity = %entity, rule = %rule, %detail);
    Ok(true)
}

fn clear(
    tx: &(impl Sql + ?Sized),
    entity: &EntityId,
    rule: &RuleKey,
    at: UnixMillis,
    detail: &str,
    now: UnixMillis,
) -> Result<(), TaskError> {
    if let Some(id) = live_task(tx, entity, rule)? {
        tx.execute(
            "UPDATE tasks SET cleared_ms = $2, updated_ms = $3 WHERE id = $1",
            args![id.0, at.0, now.0],
        )?;
        add_note(tx, id, now, "cleared", detail)?;
        crate::notify::event::anomaly_changed(tx, id.0, false, detail, now)?;
    }
    Ok(())
}
