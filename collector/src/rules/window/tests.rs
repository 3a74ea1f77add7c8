use spotcheck_protocol::{AgeBand, GamePayment, GameSession, PersonRef, RecordId};

use super::*;
use crate::rules::pack::RuleSet;
use spotcheck_protocol::Domain;

const MIN: i64 = 60_000;
const DAY: i64 = 24 * HOUR_MS;
/// 2026-11-02 00:00 China time (a Monday).
fn start() -> i64 {
    ChinaDay::from_ymd(2026, 11, 2).unwrap().at(0).0
}

fn pool_pack() -> RulePack {
    RuleSet::defaults().get(Domain::Pool).unwrap().clone()
}

fn game_pack() -> RulePack {
    RuleSet::defaults().get(Domain::Game).unwrap().clone()
}

const METRICS: [(&str, f64); 6] = [
    ("free_chlorine", 0.55),
    ("combined_chlorine", 0.2),
    ("ph", 7.4),
    ("turbidity", 0.3),
    ("orp", 720.0),
    ("water_temperature", 27.0),
];

/// One point a minute for `days` days of every pool metric at its usual value.
fn pool_data(days: i64) -> Vec<(&'static str, Vec<(UnixMillis, f64)>)> {
    METRICS
        .iter()
        .map(|&(m, v)| {
            (
                m,
                (0..days * 24 * 60)
                    .map(|i| (UnixMillis(start() + i * MIN), v))
                    .collect(),
            )
        })
        .collect()
}

fn run(pack: &RulePack, days: i64, data: &[(&'static str, Vec<(UnixMillis, f64)>)]) -> Evidence {
    let series: Vec<SeriesData> = data
        .iter()
        .map(|(m, p)| SeriesData {
            metric: m,
            points: p,
        })
        .collect();
    let w = Window {
        start: UnixMillis(start()),
        end: UnixMillis(start() + days * DAY),
    };
    evaluate(
        pack,
        &Calendar::china_default(),
        w,
        &series,
        &[],
        &Completeness::default(),
    )
}

fn set(
    data: &mut [(&'static str, Vec<(UnixMillis, f64)>)],
    metric: &str,
    from_min: i64,
    to_min: i64,
    v: f64,
) {
    let s = data.iter_mut().find(|(m, _)| *m == metric).unwrap();
    for p in &mut s.1[from_min as usize..to_min as usize] {
        p.1 = v;
    }
}

#[test]
fn steady_data_inside_every_band_is_compliant() {
    let ev = run(&pool_pack(), 1, &pool_data(1));
    assert_eq!(ev.outcome, Outcome::Compliant, "{ev:?}");
    assert_eq!(ev.completeness, 1.0);
    assert_eq!(ev.compliance_share, 1.0);
    assert!(ev.violations.is_empty());
    assert_eq!(&ev.pack, pool_pack().hash());
    assert_eq!(ev.per_rule.len(), pool_pack().rules.len());
}

#[test]
fn the_band_ends_are_compliant() {
    let mut data = pool_data(1);
    set(&mut data, "free_chlorine", 0, 720, 0.3);
    set(&mut data, "free_chlorine", 720, 1440, 1.0);
    let ev = run(&pool_pack(), 1, &data);
    // The jump from 0.3 to 1.0 in a minute trips only the (low) rate rule.
    assert!(
        ev.violations
            .iter()
            .all(|v| v.rule.as_str() == "pool/free_chlorine_jump"),
        "{:?}",
        ev.violations
    );
}

#[test]
fn a_breach_gives_an_interval_with_its_worst_value() {
    let mut data = pool_data(1);
    set(&mut data, "free_chlorine", 600, 630, 0.25);
    set(&mut data, "free_chlorine", 610, 611, 0.21);
    // And a one-minute dip that is shorter than the rule's `for`... is still two readings apart
    // from nothing: a single reading breaches for 0 s and is not a violation.
    set(&mut data, "ph", 100, 101, 6.5);
    let ev = run(&pool_pack(), 1, &data);
    assert_eq!(ev.outcome, Outcome::Violations);
    let fc: Vec<_> = ev
        .violations
        .iter()
        .filter(|v| v.rule.as_str() == "pool/free_chlorine")
        .collect();
    assert_eq!(fc.len(), 1, "{:?}", ev.violations);
    assert_eq!(fc[0].start, UnixMillis(start() + 600 * MIN));
    assert_eq!(fc[0].end, UnixMillis(start() + 630 * MIN));
    assert_eq!(fc[0].worst, Some(0.21));
    assert_eq!(fc[0].count, 30);
    assert_eq!(
        fc[0].detail,
        "free_chlorine 0.21 mg/L below 0.3 for 30 min (30 readings)"
    );
    assert!(!ev.violations.iter().any(|v| v.rule.as_str() == "pool/ph"));
    // 30 of 6 × 1440 covered minutes were in breach.
    let expected = 1.0 - 30.0 / (6.0 * 1440.0);
    assert!(
        (ev.compliance_share - expected).abs() < 1e-9,
        "{}",
        ev.compliance_share
    );
    let rule = ev
        .per_rule
        .iter()
        .find(|r| r.rule.as_str() == "pool/free_chlorine")
        .unwrap();
    assert!(rule.violated && rule.checked);
    assert_eq!(rule.violating, 30 * MIN as u64);
}

#[test]
fn going_offline_cannot_pass() {
    // Only the first 12 hours of a day: half the window is missing.
    let data: Vec<_> = pool_data(1)
        .into_iter()
        .map(|(m, p)| (m, p[..720].to_vec()))
        .collect();
    let ev = run(&pool_pack(), 1, &data);
    assert_eq!(ev.outcome, Outcome::CannotVerify);
    assert!((ev.completeness - 0.5).abs() < 0.02, "{}", ev.completeness);
    assert!(ev
        .reason
        .as_deref()
        .unwrap()
        .contains("cannot be verified remotely; on-site check needed"));
    // No data at all.
    let ev = run(&pool_pack(), 1, &[]);
    assert_eq!(ev.outcome, Outcome::CannotVerify);
    assert!(ev
        .reason
        .as_deref()
        .unwrap()
        .starts_with("no data in the window"));
    // One dead sensor is enough to make the check impossible.
    let data: Vec<_> = pool_data(1)
        .into_iter()
        .filter(|(m, _)| *m != "ph")
        .collect();
    assert_eq!(run(&pool_pack(), 1, &data).outcome, Outcome::CannotVerify);
}

#[test]
fn sparse_data_counts_gaps_beyond_the_tolerance_as_missing() {
    // A reading every 10 minutes is complete; every 20 minutes covers 15 of each 20.
    let every = |step: i64| -> Vec<_> {
        METRICS
            .iter()
            .map(|&(m, v)| {
                (
                    m,
                    (0..DAY / (step * MIN))
                        .map(|i| (UnixMillis(start() + i * step * MIN), v))
                        .collect(),
                )
            })
            .collect()
    };
    let ev = run(&pool_pack(), 1, &every(10));
    assert_eq!(ev.outcome, Outcome::Compliant);
    assert_eq!(ev.completeness, 1.0);
    let ev = run(&pool_pack(), 1, &every(20));
    assert!((ev.completeness - 0.75).abs() < 1e-9, "{}", ev.completeness);
    assert_eq!(ev.outcome, Outcome::CannotVerify);
}

#[test]
fn a_caller_may_demand_more_completeness_but_not_less() {
    let data: Vec<_> = pool_data(1)
        .into_iter()
        .map(|(m, p)| (m, p[..1300].to_vec()))
        .collect();
    let series: Vec<SeriesData> = data
        .iter()
        .map(|(m, p)| SeriesData {
            metric: m,
            points: p,
        })
        .collect();
    let w = Window {
        start: UnixMillis(start()),
        end: UnixMillis(start() + DAY),
    };
    let cal = Calendar::china_default();
    let lax = evaluate(
        &pool_pack(),
        &cal,
        w,
        &series,
        &[],
        &Completeness {
            min_share: Some(0.1),
        },
    );
    assert_eq!(lax.outcome, Outcome::Compliant);
    let strict = evaluate(
        &pool_pack(),
        &cal,
        w,
        &series,
        &[],
        &Completeness {
            min_share: Some(0.99),
        },
    );
    assert_eq!(strict.outcome, Outcome::CannotVerify);
}

#[test]
fn thirty_days_of_minute_data_for_six_metrics_evaluate_quickly() {
    let data = pool_data(30);
    let started = std::time::Instant::now();
    let ev = run(&pool_pack(), 30, &data);
    let took = started.elapsed();
    assert_eq!(ev.outcome, Outcome::Compliant);
    // Linear in the data: a few milliseconds in release; a loose bound for debug builds.
    assert!(took.as_secs_f64() < 3.0, "took {took:?}");
}

fn session(i: i64, guest: bool, band: AgeBand, start_ms: i64) -> Event {
    Event::GameSession(GameSession {
        id: RecordId::new(format!("s{i}")).unwrap(),
        player: PersonRef::new(format!("p{i}")).unwrap(),
        age_band: band,
        real_name_verified: !guest,
        guest,
        start_ms: UnixMillis(start_ms),
        end_ms: Some(UnixMillis(start_ms + 30 * MIN)),
    })
}

fn adult_sessions(days: i64) -> Vec<Event> {
    (0..days * 24 * 6)
        .map(|i| session(i, false, AgeBand::Adult, start() + i * 10 * MIN))
        .collect()
}

fn run_events(days: i64, events: &[Event]) -> Evidence {
    let w = Window {
        start: UnixMillis(start()),
        end: UnixMillis(start() + days * DAY),
    };
    evaluate(
        &game_pack(),
        &Calendar::china_default(),
        w,
        &[],
        events,
        &Completeness::default(),
    )
}

#[test]
fn event_feeds_are_judged_by_share_and_completeness() {
    let ev = run_events(2, &adult_sessions(2));
    assert_eq!(ev.outcome, Outcome::Compliant, "{ev:?}");
    assert_eq!(ev.completeness, 1.0);

    let mut events = adult_sessions(2);
    events.push(session(
        9_001,
        true,
        AgeBand::Adult,
        start() + 5 * HOUR_MS + 1,
    ));
    events.push(session(
        9_002,
        true,
        AgeBand::Adult,
        start() + 5 * HOUR_MS + 2,
    ));
    // A minor on a Monday evening.
    events.push(session(
        9_003,
        false,
        AgeBand::From8To16,
        start() + 20 * HOUR_MS,
    ));
    let ev = run_events(2, &events);
    assert_eq!(ev.outcome, Outcome::Violations);
    let guest: Vec<_> = ev
        .violations
        .iter()
        .filter(|v| v.rule.as_str() == "game/guest_session")
        .collect();
    assert_eq!(guest.len(), 1);
    assert_eq!(guest[0].count, 2);
    assert_eq!(guest[0].start, UnixMillis(start() + 5 * HOUR_MS));
    assert!(ev
        .violations
        .iter()
        .any(|v| v.rule.as_str() == "game/minor_outside_window"));
    let n = events.len() as f64;
    assert!((ev.compliance_share - (n - 3.0) / n).abs() < 1e-9);
    // 3 unverified of ~290 sessions is under the 5 % share: judged, not violated.
    let unverified = ev
        .per_rule
        .iter()
        .find(|r| r.rule.as_str() == "game/unverified_session")
        .unwrap();
    assert!(unverified.checked && !unverified.violated);
}

#[test]
fn an_event_feed_that_goes_quiet_cannot_be_verified() {
    let events = adult_sessions(1);
    let ev = run_events(2, &events);
    assert_eq!(ev.outcome, Outcome::CannotVerify);
    assert!((ev.completeness - 0.5).abs() < 1e-9);
    assert_eq!(run_events(2, &[]).outcome, Outcome::CannotVerify);
}

#[test]
fn monthly_sums_count_payments_from_before_the_window() {
    let pay = |i: i64, fen: u64, ts: i64| {
        Event::GamePayment(GamePayment {
            id: RecordId::new(format!("g{i}")).unwrap(),
            player: PersonRef::new("kid").unwrap(),
            age_band: AgeBand::From16To18,
            amount_fen: fen,
            ts_ms: UnixMillis(ts),
        })
    };
    let mut events = adult_sessions(1);
    // 400 yuan on 1 November, before the window; 1 yuan more on 2 November is over the cap.
    for i in 0..4 {
        events.push(pay(i, 10_000, start() - 12 * HOUR_MS));
    }
    events.push(pay(9, 100, start() + HOUR_MS));
    let ev = run_events(1, &events);
    assert_eq!(ev.outcome, Outcome::Violations);
    let monthly: Vec<_> = ev
        .violations
        .iter()
        .filter(|v| v.rule.as_str() == "game/minor_monthly_cap")
        .collect();
    assert_eq!(monthly.len(), 1, "{:?}", ev.violations);
    assert!(!ev
        .violations
        .iter()
        .any(|v| v.rule.as_str() == "game/minor_top_up_cap"));
}

#[test]
fn evidence_serialises_for_storage() {
    let mut data = pool_data(1);
    set(&mut data, "turbidity", 60, 90, 1.5);
    let ev = run(&pool_pack(), 1, &data);
    let json = serde_json::to_string(&ev).unwrap();
    assert!(json.contains("\"outcome\":\"violations\""), "{json}");
    let back: Evidence = serde_json::from_str(&json).unwrap();
    assert_eq!(back, ev);
}

#[test]
fn a_pack_with_nothing_to_judge_cannot_verify() {
    let mut pack = pool_pack();
    pack.rules
        .retain(|r| matches!(r.kind, RuleKind::Inactivity(_)));
    let ev = run(&pack, 1, &pool_data(1));
    assert_eq!(ev.outcome, Outcome::CannotVerify);
    assert!(ev.reason.unwrap().contains("no rule that can be judged"));
}

#[test]
fn a_minor_on_a_day_the_calendar_does_not_cover_cannot_be_verified_remotely() {
    // Two days from 2027-02-08 (a Monday in the Spring Festival; the calendar stops at 2026).
    let start = ChinaDay::from_ymd(2027, 2, 8).unwrap().at(0).0;
    let mut events: Vec<Event> = (0..2 * 24 * 6)
        .map(|i| session(i, false, AgeBand::Adult, start + i * 10 * MIN))
        .collect();
    events.push(session(
        9_003,
        false,
        AgeBand::From8To16,
        start + 20 * HOUR_MS,
    ));
    let w = Window {
        start: UnixMillis(start),
        end: UnixMillis(start + 2 * DAY),
    };
    let ev = evaluate(
        &game_pack(),
        &Calendar::china_default(),
        w,
        &[],
        &events,
        &Completeness::default(),
    );
    assert_eq!(ev.outcome, Outcome::CannotVerify, "{ev:?}");
    assert!(ev.uncovered_days);
    assert!(
        ev.reason
            .as_deref()
            .is_some_and(|r| r.contains("holiday calendar does not list")),
        "{ev:?}"
    );
    assert!(ev.violations.is_empty(), "{ev:?}");
}
