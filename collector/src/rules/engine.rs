//! The streaming rule engine: readings and event records in, anomaly [`Transition`]s out.
//!
//! It runs on the ingest commit thread, so per reading it does a couple of hash lookups and
//! updates a few numbers in place; it allocates only when it meets a new entity, a new player
//! (monthly sums) or emits a transition. Its state per (entity, rule key) is plain JSON
//! ([`Engine::take_dirty`]) that the caller writes in the same transaction as the data that
//! changed it and hands back with [`Engine::restore`] after a restart.
//!
//! Time: range, rate and duration logic runs on event time (the reading's own timestamp),
//! capped at the receive time so that an agent clock running ahead cannot stretch or reverse a
//! duration; a reading older than the newest one seen for its (entity, metric) changes no
//! state and is counted ([`Engine::late`]). Inactivity runs on receive time and the caller's
//! clock ([`Engine::tick`]), so agent clock skew does not matter to it.

use foldhash::{HashMap, HashMapExt};

use spotcheck_protocol::{Domain, EntityId, Event, UnixMillis};

use super::calendar::Calendar;
use super::pack::{PackHash, RangeRule, RateRule, Rule, RuleKey, RuleKind, RuleSet, Severity};
use super::predicate::{
    judgeable, violates, EventKind, MinorPlay, Predicate, PredicateContext, SpendingCaps,
};

mod state;

pub(crate) use state::{breach_text, human};
use state::{bucket_width, judge_ratio, slide_ratio, step_range, step_rate, Bucket, RuleState};

/// A change in whether a rule's condition holds for an entity.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// The condition started to hold: open an anomaly (once per activation).
    Open {
        /// The entity.
        entity: EntityId,
        /// The rule; (entity, rule) is the dedupe key.
        rule: RuleKey,
        /// The rule's severity.
        severity: Severity,
        /// The version of the pack that decided.
        pack: PackHash,
        /// When it opened (event time; receive time for inactivity).
        at: UnixMillis,
        /// A short human text: `free_chlorine 0.21 mg/L below 0.3 for 12 min`.
        detail: String,
    },
    /// The clear condition held: the anomaly's condition is over.
    Clear {
        /// The entity.
        entity: EntityId,
        /// The rule.
        rule: RuleKey,
        /// When it cleared.
        at: UnixMillis,
        /// A short human text.
        detail: String,
    },
}

/// Why a persisted state was not restored.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The rule key names no rule of the active packs (a pack was changed or removed).
    #[error("rule {rule} is not in the active rule packs; drop its stored state (and close its open anomaly, if any)")]
    UnknownRule {
        /// The key.
        rule: RuleKey,
    },
    /// The JSON is not a state this version understands.
    #[error(
        "stored state of rule {rule} is not valid: {source}; drop it and the rule starts fresh"
    )]
    Json {
        /// The key.
        rule: RuleKey,
        /// The parse error.
        source: serde_json::Error,
    },
    /// The state belongs to another kind of rule than the active one with this key.
    #[error("stored state of rule {rule} is for a {found} rule but the rule is now {expected}; drop it and the rule starts fresh")]
    KindMismatch {
        /// The key.
        rule: RuleKey,
        /// The active rule's kind.
        expected: &'static str,
        /// The stored state's kind.
        found: &'static str,
    },
}

#[derive(Debug, Clone)]
struct Slot {
    state: RuleState,
    dirty: bool,
}

#[derive(Debug)]
struct EntityState {
    id: EntityId,
    domain: Domain,
    slots: Vec<Slot>,
    dirty: bool,
}

/// One domain's pack, indexed for the hot path.
#[derive(Debug)]
struct Compiled {
    pack_id: String,
    hash: PackHash,
    rules: Vec<Rule>,
    by_key: HashMap<RuleKey, usize>,
    by_metric: HashMap<String, Vec<usize>>,
    inactivity: Vec<usize>,
    by_event: [Vec<usize>; 4],
    max_gap_ms: i64,
    caps: SpendingCaps,
    minor_play: MinorPlay,
}

fn event_slot(kind: EventKind) -> usize {
    match kind {
        EventKind::GameSession => 0,
        EventKind::GamePayment => 1,
        EventKind::Consultation => 2,
        EventKind::Prescription => 3,
    }
}

fn domain_slot(d: Domain) -> usize {
    match d {
        Domain::Pool => 0,
        Domain::Game => 1,
        Domain::Hospital => 2,
    }
}

impl Compiled {
    fn new(pack: &super::pack::RulePack) -> Compiled {
        let mut c = Compiled {
            pack_id: pack.id.clone(),
            hash: pack.hash().clone(),
            rules: pack.rules.clone(),
            by_key: HashMap::new(),
            by_metric: HashMap::new(),
            inactivity: Vec::new(),
            by_event: Default::default(),
            max_gap_ms: pack.max_gap.millis,
            caps: pack.caps.clone(),
            minor_play: pack.minor_play.clone(),
        };
        for (i, rule) in pack.rules.iter().enumerate() {
            c.by_key.insert(rule.key.clone(), i);
            match &rule.kind {
                RuleKind::Range(RangeRule { metric, .. })
                | RuleKind::Rate(RateRule { metric, .. }) => c
                    .by_metric
                    .entry(metric.as_str().to_owned())
                    .or_default()
                    .push(i),
                RuleKind::Inactivity(_) => c.inactivity.push(i),
                RuleKind::Ratio(r) => c.by_event[event_slot(r.event)].push(i),
            }
        }
        c
    }

    fn fresh_slots(&self) -> Vec<Slot> {
        self.rules
            .iter()
            .map(|r| Slot {
                state: RuleState::fresh(&r.kind),
                dirty: false,
            })
            .collect()
    }
}

/// The streaming rule engine. See the module docs.
#[derive(Debug)]
pub struct Engine {
    rules: RuleSet,
    calendar: Calendar,
    compiled: [Option<Compiled>; 3],
    entities: Vec<EntityState>,
    index: HashMap<EntityId, usize>,
    dirty_entities: Vec<usize>,
    late: u64,
    /// Records left out because the holiday calendar does not cover their day.
    unjudgeable: u64,
}

/// Marks a slot and its entity as changed.
fn touch(dirty_entities: &mut Vec<usize>, entity_dirty: &mut bool, slot: &mut Slot, idx: usize) {
    slot.dirty = true;
    if !*entity_dirty {
        *entity_dirty = true;
        dirty_entities.push(idx);
    }
}

impl Engine {
    /// An engine with `rules` and `calendar` and no state.
    pub fn new(rules: RuleSet, calendar: Calendar) -> Engine {
        let compiled = Self::compile(&rules);
        Engine {
            rules,
            calendar,
            compiled,
            entities: Vec::new(),
            index: HashMap::new(),
            dirty_entities: Vec::new(),
            late: 0,
            unjudgeable: 0,
        }
    }

    fn compile(rules: &RuleSet) -> [Option<Compiled>; 3] {
        Domain::ALL.map(|d| rules.get(d).map(Compiled::new))
    }

    /// The active rules.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Readings and records that arrived older than the newest one seen for their stream and
    /// so changed no state.
    pub fn late(&self) -> u64 {
        self.late
    }

    /// Records a rule could not judge because the holiday calendar does not list their year
    /// (see [`super::predicate::judgeable`]); they count neither way.
    pub fn unjudgeable(&self) -> u64 {
        self.unjudgeable
    }

    /// Switches to `rules`, keeping the state of every rule key that still exists. A rule whose
    /// watched metric, predicate or window changed starts fresh but stays active if it was, so
    /// no second Open is emitted; it clears when its (new) clear condition holds. States of
    /// removed rule keys are dropped: the caller should close their open anomalies.
    pub fn replace_rules(&mut self, rules: RuleSet) {
        let compiled = Self::compile(&rules);
        for (idx, e) in self.entities.iter_mut().enumerate() {
            let d = domain_slot(e.domain);
            let old_slots = std::mem::take(&mut e.slots);
            let Some(new) = &compiled[d] else { continue };
            let mut slots = new.fresh_slots();
            if let Some(old) = &self.compiled[d] {
                for (old_i, slot) in old_slots.into_iter().enumerate() {
                    let old_rule = &old.rules[old_i];
                    if let Some(&new_i) = new.by_key.get(&old_rule.key) {
                        slots[new_i] = Slot {
                            state: slot
                                .state
                                .carry_over(&old_rule.kind, &new.rules[new_i].kind),
                            dirty: true,
                        };
                    }
                }
            }
            if slots.iter().any(|s| s.dirty) && !e.dirty {
                e.dirty = true;
                self.dirty_entities.push(idx);
            }
            e.slots = slots;
        }
        self.compiled = compiled;
        self.rules = rules;
    }

    fn entity_index(&mut self, entity: &EntityId, domain: Domain) -> usize {
        if let Some(&i) = self.index.get(entity) {
            if self.entities[i].domain != domain {
                // An entity belongs to one domain; if the registry moved it, start over.
                let slots = self.compiled[domain_slot(domain)]
                    .as_ref()
                    .map(Compiled::fresh_slots)
                    .unwrap_or_default();
                let e = &mut self.entities[i];
                e.domain = domain;
                e.slots = slots;
            }
            return i;
        }
        let slots = self.compiled[domain_slot(domain)]
            .as_ref()
            .map(Compiled::fresh_slots)
            .unwrap_or_default();
        let i = self.entities.len();
        self.entities.push(EntityState {
            id: entity.clone(),
            domain,
            slots,
            dirty: false,
        });
        self.index.insert(entity.clone(), i);
        i
    }

    /// Restores the persisted state of one (entity, rule) after a restart. Call before any data.
    pub fn restore(
        &mut self,
        entity: EntityId,
        rule: RuleKey,
        state_json: &str,
    ) -> Result<(), StateError> {
        let (domain, slot) = Domain::ALL
            .into_iter()
            .find_map(|d| {
                let c = self.compiled[domain_slot(d)].as_ref()?;
                (c.pack_id == rule.pack()).then(|| c.by_key.get(&rule).map(|&i| (d, i)))?
            })
            .ok_or_else(|| StateError::UnknownRule { rule: rule.clone() })?;
        let state: RuleState =
            serde_json::from_str(state_json).map_err(|source| StateError::Json {
                rule: rule.clone(),
                source,
            })?;
        let expected = self.compiled[domain_slot(domain)]
            .as_ref()
            .map_or("", |c| c.rules[slot].kind.name());
        if state.kind_name() != expected {
            return Err(StateError::KindMismatch {
                rule,
                expected,
                found: state.kind_name(),
            });
        }
        let i = self.entity_index(&entity, domain);
        self.entities[i].slots[slot] = Slot {
            state,
            dirty: false,
        };
        Ok(())
    }

    /// Puts `entity`'s state back to fresh (its domain kept), before restoring what another
    /// writer of a shared store persisted for it (`tasks::anomaly::Tracker::claim`).
    pub fn forget(&mut self, entity: &EntityId) {
        let Some(&i) = self.index.get(entity) else {
            return;
        };
        let domain = self.entities[i].domain;
        self.entities[i].slots = self.compiled[domain_slot(domain)]
            .as_ref()
            .map(Compiled::fresh_slots)
            .unwrap_or_default();
    }

    /// Registers an entity that is expected to report: its inactivity clock starts at `now`
    /// unless it has already reported.
    pub fn watch(&mut self, entity: &EntityId, domain: Domain, now: UnixMillis) {
        let i = self.entity_index(entity, domain);
        let Some(c) = &self.compiled[domain_slot(domain)] else {
            return;
        };
        let e = &mut self.entities[i];
        for &r in &c.inactivity {
            let slot = &mut e.slots[r];
            if let RuleState::Inactivity(s) = &mut slot.state {
                if s.last_seen.is_none() {
                    s.last_seen = Some(now.0);
                    touch(&mut self.dirty_entities, &mut e.dirty, slot, i);
                }
            }
        }
    }

    /// Data arrived from the entity: restart its inactivity clocks, clear silent anomalies.
    fn seen(
        c: &Compiled,
        dirty: &mut Vec<usize>,
        e: &mut EntityState,
        i: usize,
        received: UnixMillis,
        out: &mut Vec<Transition>,
    ) {
        let EntityState {
            id,
            slots,
            dirty: entity_dirty,
            ..
        } = e;
        for &r in &c.inactivity {
            let slot = &mut slots[r];
            let RuleState::Inactivity(s) = &mut slot.state else {
                continue;
            };
            let before = s.last_seen;
            s.last_seen = Some(before.map_or(received.0, |t| t.max(received.0)));
            let changed = s.last_seen != before || s.active_since.is_some();
            if let Some(since) = s.active_since.take() {
                let silent = before.map_or(0, |b| received.0 - b);
                out.push(Transition::Clear {
                    entity: id.clone(),
                    rule: c.rules[r].key.clone(),
                    at: received,
                    detail: format!(
                        "data again after {} of silence (open since {})",
                        human(silent),
                        UnixMillis(since)
                    ),
                });
            }
            if changed {
                touch(dirty, entity_dirty, slot, i);
            }
        }
    }

    /// One numeric reading, `ts` by the agent's clock, `received` by ours.
    #[allow(clippy::too_many_arguments)]
    pub fn reading(
        &mut self,
        entity: &EntityId,
        domain: Domain,
        metric: &str,
        value: f64,
        ts: UnixMillis,
        received: UnixMillis,
        out: &mut Vec<Transition>,
    ) {
        if self.compiled[domain_slot(domain)].is_none() {
            return;
        }
        let i = self.entity_index(entity, domain);
        let Some(c) = &self.compiled[domain_slot(domain)] else {
            return;
        };
        let e = &mut self.entities[i];
        Self::seen(c, &mut self.dirty_entities, e, i, received, out);
        let Some(rules) = c.by_metric.get(metric) else {
            return;
        };
        if !value.is_finite() {
            return;
        }
        // An agent clock ahead of ours must not stretch a duration into the future.
        let ts = ts.0.min(received.0);
        let newest = rules.iter().find_map(|&r| match &e.slots[r].state {
            RuleState::Range(s) => s.last_ts,
            RuleState::Rate(s) => s.last_ts,
            _ => None,
        });
        if newest.is_some_and(|n| ts < n) {
            self.late += 1;
            return;
        }
        let EntityState {
            id, slots, dirty, ..
        } = e;
        for &r in rules {
            let rule = &c.rules[r];
            let slot = &mut slots[r];
            let emit = |open, detail| out.push(transition(id, rule, &c.hash, open, ts, detail));
            match (&rule.kind, &mut slot.state) {
                (RuleKind::Range(rr), RuleState::Range(s)) => {
                    step_range(rr, s, c.max_gap_ms, value, ts, emit)
                }
                (RuleKind::Rate(rr), RuleState::Rate(s)) => {
                    step_rate(rr, s, c.max_gap_ms, value, ts, emit)
                }
                _ => continue,
            }
            touch(&mut self.dirty_entities, dirty, slot, i);
        }
    }

    /// One event record.
    pub fn event(
        &mut self,
        entity: &EntityId,
        domain: Domain,
        event: &Event,
        received: UnixMillis,
        out: &mut Vec<Transition>,
    ) {
        if self.compiled[domain_slot(domain)].is_none() {
            return;
        }
        let i = self.entity_index(entity, domain);
        let Some(c) = &self.compiled[domain_slot(domain)] else {
            return;
        };
        let e = &mut self.entities[i];
        Self::seen(c, &mut self.dirty_entities, e, i, received, out);
        let rules = &c.by_event[event_slot(EventKind::of(event))];
        // A record counts when it is complete (a session at its end), and never later than
        // it arrived, so a long session is not slid out of the window the moment it arrives.
        let t = event.end().unwrap_or(event.ts()).0.min(received.0);
        let ctx = PredicateContext {
            calendar: &self.calendar,
            minor_play: &c.minor_play,
            caps: &c.caps,
            received,
        };
        let EntityState {
            id, slots, dirty, ..
        } = e;
        for &r in rules {
            let rule = &c.rules[r];
            let slot = &mut slots[r];
            let (RuleKind::Ratio(rr), RuleState::Ratio(s)) = (&rule.kind, &mut slot.state) else {
                continue;
            };
            if s.newest.is_some_and(|n| t <= n - rr.window.millis) {
                self.late += 1;
                continue;
            }
            if !judgeable(rr.predicate, event, &self.calendar) {
                self.unjudgeable += 1;
                continue;
            }
            let violated = match (rr.predicate, event, s.monthly.as_mut()) {
                (Predicate::MinorOverMonthlyCap, Event::GamePayment(p), Some(m)) => {
                    m.add(p, &c.caps)
                }
                _ => violates(rr.predicate, event, &ctx).unwrap_or(false),
            };
            let width = bucket_width(rr);
            let start = t.div_euclid(width) * width;
            match s.buckets.iter_mut().rev().find(|b| b.start == start) {
                Some(b) => {
                    b.events += 1;
                    b.violations += u32::from(violated);
                }
                None => {
                    let b = Bucket {
                        start,
                        events: 1,
                        violations: u32::from(violated),
                    };
                    let pos = s
                        .buckets
                        .iter()
                        .rposition(|x| x.start < start)
                        .map_or(0, |p| p + 1);
                    s.buckets.insert(pos, b);
                }
            }
            let now = s.newest.map_or(t, |n| n.max(t));
            s.newest = Some(now);
            slide_ratio(rr, s, now);
            judge_ratio(rr, s, now, |open, detail| {
                out.push(transition(id, rule, &c.hash, open, now, detail))
            });
            touch(&mut self.dirty_entities, dirty, slot, i);
        }
    }

    /// Periodic work at `now` (our clock): opens inactivity anomalies and slides ratio windows.
    pub fn tick(&mut self, now: UnixMillis, out: &mut Vec<Transition>) {
        self.tick_where(now, out, |_| true);
    }

    /// [`Engine::tick`] for the entities `keep` accepts only (on a shared store, those whose
    /// state this transaction could claim; the others are ticked next time).
    pub fn tick_where(
        &mut self,
        now: UnixMillis,
        out: &mut Vec<Transition>,
        keep: impl Fn(&EntityId) -> bool,
    ) {
        for (i, e) in self.entities.iter_mut().enumerate() {
            let Some(c) = &self.compiled[domain_slot(e.domain)] else {
                continue;
            };
            if !keep(&e.id) {
                continue;
            }
            let EntityState {
                id, slots, dirty, ..
            } = e;
            for &r in &c.inactivity {
                let rule = &c.rules[r];
                let slot = &mut slots[r];
                let (RuleKind::Inactivity(ir), RuleState::Inactivity(s)) =
                    (&rule.kind, &mut slot.state)
                else {
                    continue;
                };
                let Some(last) = s.last_seen else { continue };
                if s.active_since.is_none() && now.0 - last >= ir.after.millis {
                    s.active_since = Some(now.0);
                    let detail =
                        format!("no data for {} (limit {})", human(now.0 - last), ir.after);
                    out.push(transition(id, rule, &c.hash, true, now.0, detail));
                    touch(&mut self.dirty_entities, dirty, slot, i);
                }
            }
            for slot_list in &c.by_event {
                for &r in slot_list {
                    let rule = &c.rules[r];
                    let slot = &mut slots[r];
                    let (RuleKind::Ratio(rr), RuleState::Ratio(s)) = (&rule.kind, &mut slot.state)
                    else {
                        continue;
                    };
                    if s.buckets.is_empty() && s.active_since.is_none() {
                        continue;
                    }
                    let before = s.buckets.len();
                    slide_ratio(rr, s, now.0);
                    if s.buckets.len() != before {
                        judge_ratio(rr, s, now.0, |open, detail| {
                            out.push(transition(id, rule, &c.hash, open, now.0, detail))
                        });
                        touch(&mut self.dirty_entities, dirty, slot, i);
                    }
                }
            }
        }
    }

    /// The states changed since the last call, as (entity, rule, JSON), to persist in the same
    /// transaction as the data that changed them.
    pub fn take_dirty(&mut self) -> Vec<(EntityId, RuleKey, String)> {
        self.take_dirty_where(|_| true)
    }

    /// [`Engine::take_dirty`] of the entities `keep` accepts; the others stay changed (on a
    /// shared store, those this transaction has not claimed).
    pub fn take_dirty_where(
        &mut self,
        keep: impl Fn(&EntityId) -> bool,
    ) -> Vec<(EntityId, RuleKey, String)> {
        let mut out = Vec::new();
        // Taken out and put back, so the list keeps its capacity from commit to commit.
        let mut list = std::mem::take(&mut self.dirty_entities);
        list.retain(|&i| {
            let e = &mut self.entities[i];
            if !keep(&e.id) {
                return true;
            }
            e.dirty = false;
            let Some(c) = &self.compiled[domain_slot(e.domain)] else {
                return false;
            };
            for (r, slot) in e.slots.iter_mut().enumerate() {
                if std::mem::take(&mut slot.dirty) {
                    let json = serde_json::to_string(&slot.state).expect(
                        "rule states serialise (no maps with non-string keys, finite floats)",
                    );
                    out.push((e.id.clone(), c.rules[r].key.clone(), json));
                }
            }
            false
        });
        self.dirty_entities = list;
        out
    }

    /// Whether (entity, rule) is between its Open and its Clear.
    pub fn is_active(&self, entity: &EntityId, rule: &RuleKey) -> bool {
        let Some(&i) = self.index.get(entity) else {
            return false;
        };
        let e = &self.entities[i];
        let Some(c) = &self.compiled[domain_slot(e.domain)] else {
            return false;
        };
        c.by_key
            .get(rule)
            .is_some_and(|&r| e.slots[r].state.active_since().is_some())
    }
}

fn transition(
    entity: &EntityId,
    rule: &Rule,
    hash: &PackHash,
    open: bool,
    at: i64,
    detail: String,
) -> Transition {
    if open {
        Transition::Open {
            entity: entity.clone(),
            rule: rule.key.clone(),
            severity: rule.severity,
            pack: hash.clone(),
            at: UnixMillis(at),
            detail,
        }
    } else {
        Transition::Clear {
            entity: entity.clone(),
            rule: rule.key.clone(),
            at: UnixMillis(at),
            detail,
        }
    }
}

#[cfg(test)]
mod tests;
