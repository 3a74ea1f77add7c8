//! What lies behind a task: its rule with the limit it checks, the readings of the rule's
//! metric around the breach, the violation intervals the window evaluation finds, and the
//! event records that broke the rule.

use serde::Serialize;
use spotcheck_protocol::{Event, UnixMillis};

use crate::rules::predicate::{violates, PredicateContext};
use crate::rules::{
    evaluate, Band, Calendar, Completeness, Rule, RuleKey, RuleKind, RulePack, RuleSet, SeriesData,
    Severity, ViolationInterval, Window,
};
use crate::store::db::{DbError, Sql};
use crate::store::query::{self, Point};
use crate::tasks::Task;

const HOUR_MS: i64 = 3_600_000;
/// Readings drawn at most, per series (evenly thinned beyond, the extremes kept).
pub const MAX_POINTS: usize = 2_000;
/// Records listed at most.
pub const MAX_RECORDS: usize = 500;

/// A rule as the console shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleView {
    /// `pack/rule`.
    pub key: String,
    /// Its title in English.
    pub title: String,
    /// Its title in Chinese (the English one when the pack has none).
    pub title_zh: String,
    /// Severity.
    pub severity: Severity,
    /// The clause it comes from.
    pub source: String,
    /// `range`, `rate`, `inactivity` or `ratio`.
    pub kind: &'static str,
    /// The metric watched (range and rate rules).
    pub metric: Option<String>,
    /// Its unit.
    pub unit: Option<String>,
    /// The limit in words: "0.3–1.0 mg/L", "≤ 0.3 mg/L per minute", "no data for 2h",
    /// "share of game_session records that are guest > 0 % over 24h".
    pub limit: String,
    /// The allowed band (range rules): the chart's limit lines.
    pub allowed: Option<Band>,
    /// The band a breach must return to before it clears (range rules).
    pub clear: Option<Band>,
    /// The records counted (ratio rules).
    pub event: Option<String>,
    /// What makes a record a violation (ratio rules).
    pub predicate: Option<String>,
}

impl RuleView {
    /// The view of `rule`.
    pub fn of(rule: &Rule) -> RuleView {
        let mut v = RuleView {
            key: rule.key.to_string(),
            title: rule.title.clone(),
            title_zh: rule.chinese_title().to_owned(),
            severity: rule.severity,
            source: rule.source.clone(),
            kind: rule.kind.name(),
            metric: rule.kind.metric().map(|m| m.as_str().to_owned()),
            unit: None,
            limit: String::new(),
            allowed: None,
            clear: None,
            event: None,
            predicate: None,
        };
        match &rule.kind {
            RuleKind::Range(r) => {
                v.unit = Some(r.unit.as_str().to_owned());
                v.limit = format!("{} {}", r.allowed.describe(), r.unit.as_str());
                v.allowed = Some(r.allowed);
                v.clear = Some(r.clear);
            }
            RuleKind::Rate(r) => {
                v.unit = Some(r.unit.as_str().to_owned());
                v.limit = format!("≤ {} {} / min", r.max_change_per_minute, r.unit.as_str());
            }
            RuleKind::Inactivity(r) => v.limit = format!("no data for {}", r.after),
            RuleKind::Ratio(r) => {
                v.event = Some(r.event.as_str().to_owned());
                v.predicate = Some(r.predicate.as_str().to_owned());
                v.limit = format!(
                    "{} {} records: share ≤ {} % over {}",
                    r.predicate.as_str(),
                    r.event.as_str(),
                    r.max_share * 100.0,
                    r.window
                );
            }
        }
        v
    }
}

/// The rule a task's key names, with its pack.
pub fn rule_of<'a>(rules: &'a RuleSet, key: &str) -> Option<(&'a RulePack, &'a Rule)> {
    let key = RuleKey::parse(key)?;
    let pack = rules.by_id(key.pack())?;
    Some((pack, pack.rule(&key)?))
}

/// One metric's readings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesView {
    /// The metric.
    pub metric: String,
    /// The points, oldest first (thinned to [`MAX_POINTS`]).
    pub points: Vec<Point>,
    /// Readings in the range before thinning.
    pub count: usize,
}

/// An event record and the rules it broke.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordView {
    /// When, Unix ms.
    pub ts_ms: i64,
    /// Record kind.
    pub kind: &'static str,
    /// Record id.
    pub id: String,
    /// The record as sent.
    pub record: serde_json::Value,
    /// Keys of the rules it broke.
    pub breaches: Vec<String>,
}

/// The evidence behind a task.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskEvidence {
    /// The rule (anomaly tasks whose rule is loaded).
    pub rule: Option<RuleView>,
    /// The range shown, Unix ms, `[start, end)`.
    pub start_ms: i64,
    /// End of the range.
    pub end_ms: i64,
    /// The rule's metric (range and rate rules), or every metric of the entity (other tasks).
    pub series: Vec<SeriesView>,
    /// The intervals in the range in which the rule was broken.
    pub violations: Vec<ViolationInterval>,
    /// The records in the range that broke the rule, newest first (at most [`MAX_RECORDS`]).
    pub records: Vec<RecordView>,
    /// Records of the rule's kind in the range.
    pub records_in_range: usize,
}

/// The default range around `task`: an hour before it opened to half an hour after it
/// cleared (or now); a day back from now for tasks without an opening time.
pub fn default_range(task: &Task, now: UnixMillis) -> (i64, i64) {
    match task.opened_ms {
        Some(o) => {
            let end = task
                .cleared_ms()
                .map_or(now.0, |c| (c + HOUR_MS / 2).min(now.0));
            (o - HOUR_MS, end.max(o + 1))
        }
        None => (now.0 - 24 * HOUR_MS, now.0),
    }
}

/// Evenly thins `points` to at most `max`, keeping the first, the last and the extremes.
pub fn thin(points: Vec<Point>, max: usize) -> Vec<Point> {
    if points.len() <= max || max < 4 {
        return points;
    }
    let step = points.len().div_ceil(max / 2);
    let mut out = Vec::with_capacity(max + 2);
    for chunk in points.chunks(step) {
        let lo = chunk.iter().min_by(|a, b| a.value.total_cmp(&b.value));
        let hi = chunk.iter().max_by(|a, b| a.value.total_cmp(&b.value));
        let (Some(lo), Some(hi)) = (lo, hi) else {
            continue;
        };
        let (a, b) = if lo.ts_ms <= hi.ts_ms {
            (lo, hi)
        } else {
            (hi, lo)
        };
        out.push(*a);
        if a != b {
            out.push(*b);
        }
    }
    out
}

/// The evidence of `task` over `[start, end)`.
pub fn of_task(
    conn: &(impl Sql + ?Sized),
    rules: &RuleSet,
    calendar: &Calendar,
    task: &Task,
    (start, end): (i64, i64),
    now: UnixMillis,
) -> Result<TaskEvidence, DbError> {
    let entity = task.entity.as_str().to_owned();
    let data = query::window_data(conn, std::slice::from_ref(&entity), start, end)?;
    let found = task.rule().and_then(|k| rule_of(rules, k.as_str()));
    let mut ev = TaskEvidence {
        rule: found.map(|(_, r)| RuleView::of(r)),
        start_ms: start,
        end_ms: end,
        series: Vec::new(),
        violations: Vec::new(),
        records: Vec::new(),
        records_in_range: 0,
    };
    let wanted = found.and_then(|(_, r)| r.kind.metric()).map(|m| m.as_str());
    for (metric, points) in &data.series {
        if wanted.is_some_and(|w| w != metric) {
            continue;
        }
        let points: Vec<Point> = points
            .iter()
            .map(|(t, v)| Point {
                ts_ms: t.0,
                value: *v,
            })
            .collect();
        ev.series.push(SeriesView {
            metric: metric.clone(),
            count: points.len(),
            points: thin(points, MAX_POINTS),
        });
    }
    let Some((pack, rule)) = found else {
        return Ok(ev);
    };
    let series: Vec<SeriesData> = data
        .series
        .iter()
        .map(|(m, p)| SeriesData {
            metric: m,
            points: p,
        })
        .collect();
    let window = Window {
        start: UnixMillis(start),
        end: UnixMillis(end),
    };
    let judged = evaluate(
        pack,
        calendar,
        window,
        &series,
        &data.events,
        &Completeness::default(),
    );
    ev.violations = judged
        .violations
        .into_iter()
        .filter(|v| v.rule == rule.key)
        .collect();
    if let RuleKind::Ratio(r) = &rule.kind {
        let ctx = PredicateContext {
            calendar,
            minor_play: &pack.minor_play,
            caps: &pack.caps,
            received: now,
        };
        for e in data.events.iter().rev() {
            if crate::rules::predicate::EventKind::of(e) != r.event {
                continue;
            }
            ev.records_in_range += 1;
            if violates(r.predicate, e, &ctx) == Some(true) && ev.records.len() < MAX_RECORDS {
                ev.records.push(record_view(e, vec![rule.key.to_string()]));
            }
        }
    }
    Ok(ev)
}

/// The view of one record.
pub fn record_view(e: &Event, breaches: Vec<String>) -> RecordView {
    RecordView {
        ts_ms: e.ts().0,
        kind: e.kind(),
        id: e.id().to_string(),
        record: serde_json::to_value(e).unwrap_or(serde_json::Value::Null),
        breaches,
    }
}

/// Which of `pack`'s record rules `e` breaks (the monthly spending cap needs running sums and
/// is left to the rule engine).
pub fn breaches(pack: &RulePack, calendar: &Calendar, e: &Event, now: UnixMillis) -> Vec<String> {
    let ctx = PredicateContext {
        calendar,
        minor_play: &pack.minor_play,
        caps: &pack.caps,
        received: now,
    };
    pack.rules
        .iter()
        .filter_map(|rule| match &rule.kind {
            RuleKind::Ratio(r) if violates(r.predicate, e, &ctx) == Some(true) => {
                Some(rule.key.to_string())
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinning_keeps_the_extremes_and_the_order() {
        let points: Vec<Point> = (0..10_000)
            .map(|i| Point {
                ts_ms: i,
                value: if i == 5_432 { 99.0 } else { (i % 7) as f64 },
            })
            .collect();
        let thinned = thin(points, 200);
        assert!(thinned.len() <= 202, "{}", thinned.len());
        assert!(thinned.windows(2).all(|w| w[0].ts_ms < w[1].ts_ms));
        assert!(thinned.iter().any(|p| p.value == 99.0));
    }

    #[test]
    fn every_default_rule_states_its_limit() {
        for pack in RuleSet::defaults().packs() {
            for rule in &pack.rules {
                let v = RuleView::of(rule);
                assert!(!v.limit.is_empty(), "{}", v.key);
                if let RuleKind::Range(_) = rule.kind {
                    assert!(v.allowed.is_some() && v.unit.is_some(), "{}", v.key);
                }
            }
        }
    }
}
