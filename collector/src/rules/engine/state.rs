//! Per-(entity, rule) state of the streaming engine and the steps that advance it. The states
//! are what [`Engine::take_dirty`](super::Engine::take_dirty) persists as JSON, so their serde
//! shape is a storage format: add fields with `#[serde(default)]`.

use std::collections::VecDeque;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::rules::pack::{Band, RangeRule, RateRule, RatioRule, RuleKind};
use crate::rules::predicate::MonthlySpend;

/// Range rule state.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub(super) struct RangeState {
    /// Newest (effective) reading time seen.
    pub(super) last_ts: Option<i64>,
    /// Start of the current breach (pending or active).
    pub(super) breach_since: Option<i64>,
    /// The worst value of the current breach.
    pub(super) worst: Option<f64>,
    /// Set from Open until Clear.
    pub(super) active_since: Option<i64>,
    /// Start of the current run of readings inside the clear band, while active.
    pub(super) clear_since: Option<i64>,
}

/// Rate rule state.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub(super) struct RateState {
    pub(super) last_ts: Option<i64>,
    pub(super) last_value: Option<f64>,
    pub(super) worst_rate: Option<f64>,
    pub(super) active_since: Option<i64>,
}

/// Inactivity rule state (receive time).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub(super) struct InactivityState {
    pub(super) last_seen: Option<i64>,
    pub(super) active_since: Option<i64>,
}

/// One slice of a ratio rule's rolling window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Bucket {
    pub(super) start: i64,
    pub(super) events: u32,
    pub(super) violations: u32,
}

/// Ratio rule state: counts in buckets of 1/24 of the window, so the state stays small
/// whatever the record rate; the window slides by whole buckets.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub(super) struct RatioState {
    pub(super) buckets: VecDeque<Bucket>,
    pub(super) newest: Option<i64>,
    pub(super) active_since: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) monthly: Option<MonthlySpend>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(super) enum RuleState {
    Range(RangeState),
    Rate(RateState),
    Inactivity(InactivityState),
    Ratio(RatioState),
}

impl RuleState {
    pub(super) fn fresh(kind: &RuleKind) -> RuleState {
        match kind {
            RuleKind::Range(_) => RuleState::Range(RangeState::default()),
            RuleKind::Rate(_) => RuleState::Rate(RateState::default()),
            RuleKind::Inactivity(_) => RuleState::Inactivity(InactivityState::default()),
            RuleKind::Ratio(r) => RuleState::Ratio(RatioState {
                monthly: r.predicate.needs_monthly_sums().then(MonthlySpend::default),
                ..RatioState::default()
            }),
        }
    }

    pub(super) fn kind_name(&self) -> &'static str {
        match self {
            RuleState::Range(_) => "range",
            RuleState::Rate(_) => "rate",
            RuleState::Inactivity(_) => "inactivity",
            RuleState::Ratio(_) => "ratio",
        }
    }

    pub(super) fn active_since(&self) -> Option<i64> {
        match self {
            RuleState::Range(s) => s.active_since,
            RuleState::Rate(s) => s.active_since,
            RuleState::Inactivity(s) => s.active_since,
            RuleState::Ratio(s) => s.active_since,
        }
    }

    pub(super) fn set_active_since(&mut self, at: Option<i64>) {
        match self {
            RuleState::Range(s) => s.active_since = at,
            RuleState::Rate(s) => s.active_since = at,
            RuleState::Inactivity(s) => s.active_since = at,
            RuleState::Ratio(s) => s.active_since = at,
        }
    }

    /// The state to keep when a rule set replaces `old`'s rule with `new`: all of it when the
    /// rule still watches the same thing the same way, else a fresh state that stays active
    /// (so that no second Open is emitted for an anomaly that is already open).
    pub(super) fn carry_over(self, old: &RuleKind, new: &RuleKind) -> RuleState {
        let same = match (old, new) {
            (RuleKind::Range(a), RuleKind::Range(b)) => a.metric == b.metric,
            (RuleKind::Rate(a), RuleKind::Rate(b)) => a.metric == b.metric,
            (RuleKind::Inactivity(_), RuleKind::Inactivity(_)) => true,
            (RuleKind::Ratio(a), RuleKind::Ratio(b)) => {
                a.predicate == b.predicate && a.window == b.window
            }
            _ => false,
        };
        if same && self.kind_name() == new.name() {
            return self;
        }
        let mut fresh = RuleState::fresh(new);
        fresh.set_active_since(self.active_since());
        fresh
    }
}

/// "12 min", "45 s", "3.5 h".
pub(crate) fn human(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 60_000 {
        format!("{} s", ms / 1000)
    } else if ms < 2 * 3_600_000 {
        format!("{} min", ms / 60_000)
    } else {
        format!("{:.1} h", ms as f64 / 3_600_000.0)
    }
}

/// How far outside `band` the value lies (0 inside).
pub(super) fn excess(band: &Band, v: f64) -> f64 {
    let below = band.min.map_or(0.0, |m| m - v);
    let above = band.max.map_or(0.0, |m| v - m);
    below.max(above).max(0.0)
}

pub(crate) fn breach_text(metric: &str, unit: &str, band: &Band, v: f64) -> String {
    let mut s = format!("{metric} {v:?} {unit}");
    match (band.min, band.max) {
        (Some(m), _) if v < m => {
            let _ = write!(s, " below {m:?}");
        }
        (_, Some(m)) if v > m => {
            let _ = write!(s, " above {m:?}");
        }
        _ => {}
    }
    s
}

pub(super) fn step_range(
    rule: &RangeRule,
    s: &mut RangeState,
    max_gap_ms: i64,
    v: f64,
    ts: i64,
    mut emit: impl FnMut(bool, String),
) {
    if s.last_ts.is_some_and(|last| ts - last > max_gap_ms) {
        // A breach is not assumed to continue through missing data.
        s.breach_since = None;
        s.clear_since = None;
        if s.active_since.is_none() {
            s.worst = None;
        }
    }
    s.last_ts = Some(ts);
    let breached = !rule.allowed.contains(v);
    if breached
        && s.worst
            .is_none_or(|w| excess(&rule.allowed, v) > excess(&rule.allowed, w))
    {
        s.worst = Some(v);
    }
    match s.active_since {
        None if breached => {
            let since = *s.breach_since.get_or_insert(ts);
            if ts - since >= rule.open_after.millis {
                s.active_since = Some(since);
                s.clear_since = None;
                let worst = s.worst.unwrap_or(v);
                emit(
                    true,
                    format!(
                        "{} for {}",
                        breach_text(
                            rule.metric.as_str(),
                            rule.unit.as_str(),
                            &rule.allowed,
                            worst
                        ),
                        human(ts - since)
                    ),
                );
            }
        }
        None => {
            s.breach_since = None;
            s.worst = None;
        }
        Some(since) => {
            if rule.clear.contains(v) {
                let clear_since = *s.clear_since.get_or_insert(ts);
                if ts - clear_since >= rule.clear_after.millis {
                    let worst = s.worst.unwrap_or(v);
                    emit(
                        false,
                        format!(
                            "{} {v:?} {} back in {} after {} (worst {worst:?})",
                            rule.metric,
                            rule.unit,
                            rule.clear.describe(),
                            human(ts - since)
                        ),
                    );
                    *s = RangeState {
                        last_ts: Some(ts),
                        ..RangeState::default()
                    };
                }
            } else {
                s.clear_since = None;
            }
        }
    }
}

pub(super) fn step_rate(
    rule: &RateRule,
    s: &mut RateState,
    max_gap_ms: i64,
    v: f64,
    ts: i64,
    mut emit: impl FnMut(bool, String),
) {
    let prev = match (s.last_ts, s.last_value) {
        (Some(t), Some(x)) if ts - t <= max_gap_ms => Some((t, x)),
        _ => None,
    };
    s.last_ts = Some(ts);
    s.last_value = Some(v);
    let Some((t0, v0)) = prev else { return };
    // Intervals under a minute count as a minute: a fast sensor's noise is not a slope.
    let minutes = ((ts - t0) as f64 / 60_000.0).max(1.0);
    let rate = (v - v0).abs() / minutes;
    let limit = rule.max_change_per_minute;
    match s.active_since {
        None if rate > limit => {
            s.active_since = Some(ts);
            s.worst_rate = Some(rate);
            emit(
                true,
                format!(
                    "{} changed from {v0} to {v} {} ({rate:.3}/min, limit {limit}/min)",
                    rule.metric, rule.unit
                ),
            );
        }
        Some(_) if rate <= limit => {
            let worst = s.worst_rate.take().unwrap_or(rate);
            s.active_since = None;
            emit(
                false,
                format!(
                    "{} steady again at {v} {} (worst {worst:.3}/min)",
                    rule.metric, rule.unit
                ),
            );
        }
        Some(_) => s.worst_rate = Some(s.worst_rate.map_or(rate, |w| w.max(rate))),
        None => {}
    }
}

pub(super) fn bucket_width(rule: &RatioRule) -> i64 {
    (rule.window.millis / 24).max(1_000)
}

/// Drops buckets that lie wholly before the window ending at `now`.
pub(super) fn slide_ratio(rule: &RatioRule, s: &mut RatioState, now: i64) {
    let width = bucket_width(rule);
    let horizon = now - rule.window.millis;
    while s
        .buckets
        .front()
        .is_some_and(|b| b.start + width <= horizon)
    {
        s.buckets.pop_front();
    }
}

pub(super) fn judge_ratio(
    rule: &RatioRule,
    s: &mut RatioState,
    now: i64,
    mut emit: impl FnMut(bool, String),
) {
    let (events, violations) = s.buckets.iter().fold((0u64, 0u64), |(e, v), b| {
        (e + u64::from(b.events), v + u64::from(b.violations))
    });
    let share = if events == 0 {
        0.0
    } else {
        violations as f64 / events as f64
    };
    let text = || {
        format!(
            "{} {}: {violations} of {events} records ({:.1} %) in the last {}",
            rule.event,
            rule.predicate,
            share * 100.0,
            rule.window
        )
    };
    match s.active_since {
        None if events >= u64::from(rule.min_events)
            && violations > 0
            && share > rule.max_share =>
        {
            s.active_since = Some(now);
            emit(true, text());
        }
        Some(_)
            if violations == 0
                || (events >= u64::from(rule.min_events) && share <= rule.clear_share) =>
        {
            s.active_since = None;
            emit(false, text());
        }
        _ => {}
    }
}
