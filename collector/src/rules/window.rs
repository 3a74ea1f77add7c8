//! Remote checks: a pack evaluated over a window of one entity's stored data, giving a verdict
//! with evidence (violation intervals, compliance share, completeness).
//!
//! Missing data is never evidence of compliance: when the data covers less of the window than
//! the pack's `min_completeness` the outcome is [`Outcome::CannotVerify`] ("cannot be verified
//! remotely; on-site check needed"), whatever the data that is there shows; no data at all is
//! the same. Going offline therefore cannot pass a check.
//!
//! Readings with quality `bad` count as missing: leave them out of the series.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use spotcheck_protocol::{Event, UnixMillis};

use super::calendar::{Calendar, ChinaDay};
use super::engine::{breach_text, human};
use super::pack::{
    PackHash, RangeRule, RateRule, RatioRule, Rule, RuleKey, RuleKind, RulePack, Severity,
};
use super::predicate::{judgeable, violates, EventKind, MonthlySpend, Predicate, PredicateContext};

const HOUR_MS: i64 = 3_600_000;

/// The checked period, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// First instant checked.
    pub start: UnixMillis,
    /// First instant after the window.
    pub end: UnixMillis,
}

impl Window {
    fn len(&self) -> i64 {
        (self.end.0 - self.start.0).max(0)
    }

    fn contains(&self, t: UnixMillis) -> bool {
        t >= self.start && t < self.end
    }
}

/// One metric's points, sorted by time (points outside the window are ignored).
#[derive(Debug, Clone, Copy)]
pub struct SeriesData<'a> {
    /// The metric name.
    pub metric: &'a str,
    /// (time, value), sorted by time.
    pub points: &'a [(UnixMillis, f64)],
}

/// What the caller adds to the pack's completeness policy for one check.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Completeness {
    /// A stricter minimum share of covered time than the pack's; the larger of the two
    /// applies, so a check can demand more data than the pack, never less.
    pub min_share: Option<f64>,
}

/// The verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Enough data, and no rule was broken.
    Compliant,
    /// Enough data, and at least one rule was broken.
    Violations,
    /// Too little data (or no remote rule): an on-site check is needed.
    CannotVerify,
}

/// A period (or, for records, an hour) in which a rule was broken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViolationInterval {
    /// The rule.
    pub rule: RuleKey,
    /// Start of the breach.
    pub start: UnixMillis,
    /// End of the breach (exclusive).
    pub end: UnixMillis,
    /// The worst value (range and rate rules: the value or rate per minute).
    pub worst: Option<f64>,
    /// How many readings or records broke the rule in the interval.
    pub count: u64,
    /// A short human text.
    pub detail: String,
}

/// What one rule found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleEvidence {
    /// The rule.
    pub rule: RuleKey,
    /// Its title.
    pub title: String,
    /// Its severity.
    pub severity: Severity,
    /// Whether the rule could be judged from the data.
    pub checked: bool,
    /// Whether it was broken.
    pub violated: bool,
    /// Covered milliseconds (readings) or records counted (events).
    pub observed: u64,
    /// Milliseconds in breach (range), breaching steps (rate) or violating records (ratio).
    pub violating: u64,
    /// Why the rule was not judged, or how.
    pub note: Option<String>,
}

/// The evidence of a remote check, stored as JSON with the verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The pack version that judged.
    pub pack: PackHash,
    /// The verdict.
    pub outcome: Outcome,
    /// Share of covered time (readings) or of records (events) not in violation.
    pub compliance_share: f64,
    /// Share of the window covered by data (the least-covered metric for readings).
    pub completeness: f64,
    /// Every breach, in rule order then time.
    pub violations: Vec<ViolationInterval>,
    /// Per rule.
    pub per_rule: Vec<RuleEvidence>,
    /// Why the outcome is what it is, when it is not plain.
    pub reason: Option<String>,
    /// Whether some records fell on days the holiday calendar does not cover: a rule that
    /// needs the calendar could not judge them, so the check cannot be verified remotely.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub uncovered_days: bool,
}

const ON_SITE: &str = "cannot be verified remotely; on-site check needed";

/// Evaluates `pack` over `window`. `series` holds the readings (for pools), `events` the
/// records (for games and hospitals); events before `window.start` are used only to build the
/// monthly spending sums, so pass the month's earlier payments too. Linear in the data.
pub fn evaluate(
    pack: &RulePack,
    calendar: &Calendar,
    window: Window,
    series: &[SeriesData],
    events: &[Event],
    completeness: &Completeness,
) -> Evidence {
    let mut ev = Evidence {
        pack: pack.hash().clone(),
        outcome: Outcome::CannotVerify,
        compliance_share: 0.0,
        completeness: 0.0,
        violations: Vec::new(),
        per_rule: Vec::new(),
        reason: None,
        uncovered_days: false,
    };
    if window.len() == 0 {
        ev.reason = Some(format!("the window is empty: {ON_SITE}"));
        return ev;
    }
    let checkable = pack
        .rules
        .iter()
        .any(|r| !matches!(r.kind, RuleKind::Inactivity(_)));
    if !checkable {
        ev.reason = Some(format!(
            "pack {} has no rule that can be judged from data: {ON_SITE}",
            pack.id
        ));
        return ev;
    }
    let reading_rules = pack
        .rules
        .iter()
        .any(|r| matches!(r.kind, RuleKind::Range(_) | RuleKind::Rate(_)));
    let (compl, share, any_data) = if reading_rules {
        readings(pack, window, series, &mut ev)
    } else {
        records(pack, calendar, window, events, &mut ev)
    };
    ev.completeness = compl;
    ev.compliance_share = share;
    let min = pack
        .completeness
        .min_completeness
        .max(completeness.min_share.unwrap_or(0.0));
    let found = ev.violations.len();
    if !any_data {
        ev.reason = Some(format!("no data in the window: {ON_SITE}"));
    } else if ev.uncovered_days {
        ev.reason = Some(format!(
            "records fall on days of a year the holiday calendar does not list, which the minors' play-time rule cannot judge: {ON_SITE} ({found} violation interval(s) found in the rest)"
        ));
    } else if compl < min {
        ev.reason = Some(format!(
            "data covers {:.1} % of the window, below the {:.1} % required: {ON_SITE} ({found} violation interval(s) found in the data there is)",
            compl * 100.0,
            min * 100.0
        ));
    } else if ev.per_rule.iter().any(|r| r.violated) {
        ev.outcome = Outcome::Violations;
    } else {
        ev.outcome = Outcome::Compliant;
    }
    for r in pack
        .rules
        .iter()
        .filter(|r| matches!(r.kind, RuleKind::Inactivity(_)))
    {
        ev.per_rule.push(rule_evidence(
            r,
            false,
            false,
            0,
            0,
            Some("silence is judged through completeness".into()),
        ));
    }
    ev
}

fn rule_evidence(
    rule: &Rule,
    checked: bool,
    violated: bool,
    observed: u64,
    violating: u64,
    note: Option<String>,
) -> RuleEvidence {
    RuleEvidence {
        rule: rule.key.clone(),
        title: rule.title.clone(),
        severity: rule.severity,
        checked,
        violated,
        observed,
        violating,
        note,
    }
}

/// The points of `metric` inside the window.
fn points_in<'a>(series: &[SeriesData<'a>], metric: &str, w: Window) -> &'a [(UnixMillis, f64)] {
    let Some(s) = series.iter().find(|s| s.metric == metric) else {
        return &[];
    };
    let lo = s.points.partition_point(|p| p.0 < w.start);
    let hi = s.points.partition_point(|p| p.0 < w.end);
    &s.points[lo..hi.max(lo)]
}

/// How long after point `i` the data still counts as present.
fn cover(points: &[(UnixMillis, f64)], i: usize, w: Window, allowed_gap: i64) -> i64 {
    let next = points.get(i + 1).map_or(w.end.0, |p| p.0 .0);
    (next - points[i].0 .0).clamp(0, allowed_gap)
}

fn covered(points: &[(UnixMillis, f64)], w: Window, allowed_gap: i64) -> i64 {
    let Some(first) = points.first() else {
        return 0;
    };
    // Data that starts within one allowed gap of the window's start is on time.
    let lead = first.0 .0 - w.start.0;
    let lead = if lead <= allowed_gap { lead } else { 0 };
    lead + (0..points.len())
        .map(|i| cover(points, i, w, allowed_gap))
        .sum::<i64>()
}

/// Returns (completeness, compliance share, any data).
fn readings(
    pack: &RulePack,
    w: Window,
    series: &[SeriesData],
    ev: &mut Evidence,
) -> (f64, f64, bool) {
    let allowed_gap = (pack.completeness.expected_interval.millis as f64
        * pack.completeness.gap_tolerance) as i64;
    let mut metrics: Vec<&str> = pack
        .rules
        .iter()
        .filter_map(|r| r.kind.metric())
        .map(|m| m.as_str())
        .collect();
    metrics.sort_unstable();
    metrics.dedup();
    let mut least = 1.0f64;
    let (mut total_cov, mut total_bad) = (0i64, 0i64);
    let mut any = false;
    for metric in metrics {
        let pts = points_in(series, metric, w);
        any |= !pts.is_empty();
        let cov = covered(pts, w, allowed_gap);
        least = least.min(cov as f64 / w.len() as f64);
        let mut bad: Vec<(i64, i64)> = Vec::new();
        for rule in pack
            .rules
            .iter()
            .filter(|r| r.kind.metric().is_some_and(|m| m.as_str() == metric))
        {
            match &rule.kind {
                RuleKind::Range(rr) => {
                    let (violating, found) = range_runs(
                        rule,
                        rr,
                        pts,
                        w,
                        allowed_gap,
                        pack.max_gap.millis,
                        &mut ev.violations,
                    );
                    bad.extend(found);
                    ev.per_rule.push(rule_evidence(
                        rule,
                        !pts.is_empty(),
                        violating > 0,
                        cov as u64,
                        violating as u64,
                        None,
                    ));
                }
                RuleKind::Rate(rr) => {
                    let steps = rate_steps(rule, rr, pts, pack.max_gap.millis, &mut ev.violations);
                    ev.per_rule.push(rule_evidence(
                        rule,
                        pts.len() > 1,
                        steps > 0,
                        cov as u64,
                        steps,
                        None,
                    ));
                }
                _ => {}
            }
        }
        // The union of breach time on this metric, so two rules on it do not count twice.
        bad.sort_unstable();
        let mut union = 0i64;
        let mut cur: Option<(i64, i64)> = None;
        for (a, b) in bad {
            match &mut cur {
                Some((_, e)) if a <= *e => *e = (*e).max(b),
                _ => {
                    union += cur.map_or(0, |(s, e)| e - s);
                    cur = Some((a, b));
                }
            }
        }
        union += cur.map_or(0, |(s, e)| e - s);
        total_cov += cov;
        total_bad += union.min(cov);
    }
    let share = if total_cov == 0 {
        0.0
    } else {
        1.0 - total_bad as f64 / total_cov as f64
    };
    (least, share, any)
}

/// Breach runs of a range rule that last at least its `for`; returns (ms in breach, intervals).
fn range_runs(
    rule: &Rule,
    rr: &RangeRule,
    pts: &[(UnixMillis, f64)],
    w: Window,
    allowed_gap: i64,
    max_gap: i64,
    out: &mut Vec<ViolationInterval>,
) -> (i64, Vec<(i64, i64)>) {
    struct Run {
        first: i64,
        last: i64,
        end: i64,
        worst: f64,
        excess: f64,
        count: u64,
        ms: i64,
    }
    let mut total = 0;
    let mut spans = Vec::new();
    let mut run: Option<Run> = None;
    let mut flush = |run: Option<Run>, total: &mut i64| {
        let Some(r) = run else { return };
        if r.last - r.first >= rr.open_after.millis {
            *total += r.ms;
            spans.push((r.first, r.end));
            out.push(ViolationInterval {
                rule: rule.key.clone(),
                start: UnixMillis(r.first),
                end: UnixMillis(r.end),
                worst: Some(r.worst),
                count: r.count,
                detail: format!(
                    "{} for {} ({} readings)",
                    breach_text(rr.metric.as_str(), rr.unit.as_str(), &rr.allowed, r.worst),
                    human(r.end - r.first),
                    r.count
                ),
            });
        }
    };
    let excess = |v: f64| {
        let below = rr.allowed.min.map_or(0.0, |m| m - v);
        let above = rr.allowed.max.map_or(0.0, |m| v - m);
        below.max(above)
    };
    let mut prev_t: Option<i64> = None;
    for (i, &(t, v)) in pts.iter().enumerate() {
        let t = t.0;
        if prev_t.is_some_and(|p| t - p > max_gap) {
            // A breach does not continue through missing data.
            flush(run.take(), &mut total);
        }
        prev_t = Some(t);
        if rr.allowed.contains(v) {
            flush(run.take(), &mut total);
            continue;
        }
        let c = cover(pts, i, w, allowed_gap);
        let x = excess(v);
        match &mut run {
            Some(r) => {
                r.last = t;
                r.end = t + c;
                r.count += 1;
                r.ms += c;
                if x > r.excess {
                    r.excess = x;
                    r.worst = v;
                }
            }
            None => {
                run = Some(Run {
                    first: t,
                    last: t,
                    end: t + c,
                    worst: v,
                    excess: x,
                    count: 1,
                    ms: c,
                })
            }
        }
    }
    flush(run.take(), &mut total);
    (total, spans)
}

/// Consecutive readings changing faster than the rule allows; returns how many steps did.
fn rate_steps(
    rule: &Rule,
    rr: &RateRule,
    pts: &[(UnixMillis, f64)],
    max_gap: i64,
    out: &mut Vec<ViolationInterval>,
) -> u64 {
    let mut n = 0;
    for pair in pts.windows(2) {
        let ((t0, v0), (t1, v1)) = (pair[0], pair[1]);
        if t1.0 - t0.0 > max_gap {
            continue;
        }
        let rate = (v1 - v0).abs() / ((t1.0 - t0.0) as f64 / 60_000.0).max(1.0);
        if rate > rr.max_change_per_minute {
            n += 1;
            out.push(ViolationInterval {
                rule: rule.key.clone(),
                start: t0,
                end: t1,
                worst: Some(rate),
                count: 1,
                detail: format!(
                    "{} changed from {v0} to {v1} {} ({rate:.3}/min)",
                    rr.metric, rr.unit
                ),
            });
        }
    }
    n
}

/// Returns (completeness, compliance share, any data).
fn records(
    pack: &RulePack,
    calendar: &Calendar,
    w: Window,
    events: &[Event],
    ev: &mut Evidence,
) -> (f64, f64, bool) {
    let mut order: Vec<usize> = (0..events.len()).collect();
    order.sort_by_key(|&i| events[i].ts());
    let in_window: Vec<bool> = events.iter().map(|e| w.contains(e.ts())).collect();
    let n_in = in_window.iter().filter(|&&b| b).count();

    // Completeness: the share of expected intervals with at least one record.
    let step = pack.completeness.expected_interval.millis.max(1);
    let slots = ((w.len() + step - 1) / step).max(1) as usize;
    let mut seen = vec![false; slots];
    for (e, _) in events.iter().zip(&in_window).filter(|(_, &b)| b) {
        seen[((e.ts().0 - w.start.0) / step) as usize] = true;
    }
    let compl = seen.iter().filter(|&&b| b).count() as f64 / slots as f64;

    let mut bad = vec![false; events.len()];
    for rule in &pack.rules {
        let RuleKind::Ratio(rr) = &rule.kind else {
            continue;
        };
        let RatioCount {
            count,
            hours,
            unjudgeable,
        } = ratio_over(pack, calendar, rr, events, &order, &in_window, w, &mut bad);
        let violations: u64 = hours.values().sum();
        let judged = count >= u64::from(rr.min_events);
        let share = if count == 0 {
            0.0
        } else {
            violations as f64 / count as f64
        };
        let violated = judged && violations > 0 && share > rr.max_share;
        let note = if unjudgeable > 0 {
            ev.uncovered_days = true;
            Some(format!(
                "{unjudgeable} {} record(s) fall on days of a year the holiday calendar does not list: {ON_SITE}",
                rr.event
            ))
        } else if !judged && count > 0 {
            Some(format!(
                "{count} {} records, fewer than the {} needed to judge a share",
                rr.event, rr.min_events
            ))
        } else {
            Some(format!(
                "{violations} of {count} records ({:.2} %), limit {:.2} %",
                share * 100.0,
                rr.max_share * 100.0
            ))
        };
        if violated {
            for (hour, n) in hours {
                ev.violations.push(ViolationInterval {
                    rule: rule.key.clone(),
                    start: UnixMillis(hour),
                    end: UnixMillis(hour + HOUR_MS),
                    worst: None,
                    count: n,
                    detail: format!("{n} {} record(s) {}", rr.event, rr.predicate),
                });
            }
        }
        ev.per_rule.push(rule_evidence(
            rule, judged, violated, count, violations, note,
        ));
    }
    let clean = (0..events.len())
        .filter(|&i| in_window[i] && !bad[i])
        .count();
    let share = if n_in == 0 {
        0.0
    } else {
        clean as f64 / n_in as f64
    };
    (compl, share, n_in > 0)
}

/// Counts one ratio rule's records in the window and its violations per hour (hour start →
/// count); marks violating records in `bad`.
#[allow(clippy::too_many_arguments)]
fn ratio_over(
    pack: &RulePack,
    calendar: &Calendar,
    rr: &RatioRule,
    events: &[Event],
    order: &[usize],
    in_window: &[bool],
    w: Window,
    bad: &mut [bool],
) -> RatioCount {
    let mut monthly = MonthlySpend::default();
    let mut hours = BTreeMap::new();
    let mut count = 0;
    let mut unjudgeable = 0;
    for &i in order {
        let e = &events[i];
        if EventKind::of(e) != rr.event {
            continue;
        }
        // A record is judged as at the window's end: a session still running then is cut there.
        let ctx = PredicateContext {
            calendar,
            minor_play: &pack.minor_play,
            caps: &pack.caps,
            received: w.end,
        };
        let v = match (rr.predicate, e) {
            (Predicate::MinorOverMonthlyCap, Event::GamePayment(p)) => monthly.add(p, &pack.caps),
            _ => in_window[i] && violates(rr.predicate, e, &ctx).unwrap_or(false),
        };
        if !in_window[i] {
            continue;
        }
        if !judgeable(rr.predicate, e, calendar) {
            unjudgeable += 1;
            continue;
        }
        count += 1;
        if v {
            bad[i] = true;
            let hour = ChinaDay::of(e.ts()).at(0).0
                + (e.ts().0 - ChinaDay::of(e.ts()).at(0).0) / HOUR_MS * HOUR_MS;
            *hours.entry(hour).or_insert(0) += 1;
        }
    }
    RatioCount {
        count,
        hours,
        unjudgeable,
    }
}

/// What [`ratio_over`] found for one rule.
struct RatioCount {
    /// Records judged.
    count: u64,
    /// Violations per hour (hour start → count).
    hours: BTreeMap<i64, u64>,
    /// Records in the window that could not be judged (a day outside the holiday calendar).
    unjudgeable: u64,
}

#[cfg(test)]
mod tests;
