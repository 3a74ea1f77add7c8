use proptest::prelude::*;
use spotcheck_protocol::{AgeBand, GamePayment, GameSession, PersonRef, Prescription, RecordId};

use super::*;
use crate::rules::calendar::ChinaDay;
use crate::rules::pack::parse_pack;

const S: i64 = 1_000;
const MIN: i64 = 60 * S;
const HOUR: i64 = 60 * MIN;
/// Some Friday noon, UTC; the exact day does not matter for readings.
const T0: i64 = 1_795_752_000_000;

/// A pool pack with round numbers for timing tests: free chlorine 0.3–1.0, opens after 10 min,
/// clears after 10 min in 0.35–0.95; a gap over 30 min resets a pending breach.
const TIMING_PACK: &str = r#"[pack]
id = "pool"
domain = "pool"
title = "timing"
sources = ["GB 37488-2019"]
max_gap = "30m"
expected_interval = "10m"

[[rule]]
id = "free_chlorine"
title = "Free chlorine"
severity = "high"
source = "GB 37488-2019"
kind = "range"
metric = "free_chlorine"
unit = "mg/L"
min = 0.3
max = 1.0
for = "10m"
clear_min = 0.35
clear_max = 0.95
clear_for = "10m"

[[rule]]
id = "silent"
title = "Silent"
severity = "high"
source = "s"
kind = "inactivity"
after = "30m"
"#;

fn pool() -> EntityId {
    EntityId::new("pool-1").unwrap()
}

fn fc() -> RuleKey {
    RuleKey::new("pool", "free_chlorine")
}

fn timing_engine() -> Engine {
    let set = RuleSet::default().with_pack(parse_pack(TIMING_PACK, "timing.toml").unwrap());
    Engine::new(set, Calendar::china_default())
}

fn default_engine() -> Engine {
    Engine::new(RuleSet::defaults(), Calendar::china_default())
}

/// Feeds (minutes after T0, value) readings of one metric, received on time.
fn feed(engine: &mut Engine, metric: &str, points: &[(i64, f64)]) -> Vec<Transition> {
    let mut out = Vec::new();
    for &(m, v) in points {
        let t = UnixMillis(T0 + m * MIN);
        engine.reading(&pool(), Domain::Pool, metric, v, t, t, &mut out);
    }
    out
}

fn opens(ts: &[Transition]) -> Vec<&Transition> {
    ts.iter()
        .filter(|t| matches!(t, Transition::Open { .. }))
        .collect()
}

fn clears(ts: &[Transition]) -> Vec<&Transition> {
    ts.iter()
        .filter(|t| matches!(t, Transition::Clear { .. }))
        .collect()
}

fn minutes(from: i64, to: i64, v: f64) -> Vec<(i64, f64)> {
    (from..to).map(|m| (m, v)).collect()
}

#[test]
fn the_band_ends_are_compliant_and_just_outside_is_not() {
    let mut e = timing_engine();
    let mut stream = minutes(0, 60, 0.3);
    stream.extend(minutes(60, 120, 1.0));
    assert!(feed(&mut e, "free_chlorine", &stream).is_empty());
    let out = feed(&mut e, "free_chlorine", &minutes(120, 131, 0.29));
    assert_eq!(opens(&out).len(), 1, "{out:?}");
    let Transition::Open {
        at,
        detail,
        severity,
        ..
    } = &out[0]
    else {
        unreachable!()
    };
    assert_eq!(*at, UnixMillis(T0 + 130 * MIN));
    assert_eq!(*severity, Severity::High);
    assert_eq!(detail, "free_chlorine 0.29 mg/L below 0.3 for 10 min");
    assert!(e.is_active(&pool(), &fc()));
}

#[test]
fn a_breach_shorter_than_for_opens_nothing() {
    let mut e = timing_engine();
    let mut stream = minutes(0, 9, 0.2);
    stream.extend(minutes(9, 30, 0.5));
    stream.extend(minutes(30, 39, 1.5));
    stream.extend(minutes(39, 50, 0.5));
    assert!(feed(&mut e, "free_chlorine", &stream).is_empty());
}

#[test]
fn flapping_around_the_threshold_opens_once_and_clears_once_with_hysteresis() {
    let mut e = timing_engine();
    // 0.28 / 0.33 alternating: in and out of the band, never back in the clear band.
    let flapping: Vec<(i64, f64)> = (0..120)
        .map(|m| (m, if m % 2 == 0 { 0.28 } else { 0.33 }))
        .collect();
    let out = feed(&mut e, "free_chlorine", &flapping);
    // The breach restarts at every in-band reading, so it never lasts 10 minutes...
    assert!(out.is_empty(), "{out:?}");
    // ...but a real one does, and after that flapping does not re-open or clear it.
    let mut out = feed(&mut e, "free_chlorine", &minutes(120, 131, 0.28));
    let flapping: Vec<(i64, f64)> = (131..250)
        .map(|m| (m, if m % 2 == 0 { 0.28 } else { 0.34 }))
        .collect();
    out.extend(feed(&mut e, "free_chlorine", &flapping));
    assert_eq!(opens(&out).len(), 1, "{out:?}");
    assert!(clears(&out).is_empty(), "{out:?}");
    // Back in the clear band, but for less than clear_for: still open.
    out.extend(feed(&mut e, "free_chlorine", &minutes(250, 259, 0.5)));
    out.extend(feed(&mut e, "free_chlorine", &[(259, 0.32)]));
    assert!(clears(&out).is_empty(), "{out:?}");
    out.extend(feed(&mut e, "free_chlorine", &minutes(260, 280, 0.5)));
    assert_eq!(opens(&out).len(), 1);
    assert_eq!(clears(&out).len(), 1, "{out:?}");
    let Transition::Clear { at, detail, .. } = clears(&out)[0] else {
        unreachable!()
    };
    assert_eq!(*at, UnixMillis(T0 + 270 * MIN));
    assert!(detail.contains("back in 0.35–0.95"), "{detail}");
    assert!(!e.is_active(&pool(), &fc()));
}

#[test]
fn a_gap_in_the_data_resets_a_pending_breach() {
    let mut e = timing_engine();
    // 0.2 at 0 and 5 min, then nothing for 35 min (over max_gap), then 0.2 again.
    let out = feed(
        &mut e,
        "free_chlorine",
        &[(0, 0.2), (5, 0.2), (40, 0.2), (45, 0.2)],
    );
    assert!(out.is_empty(), "{out:?}");
    let out = feed(&mut e, "free_chlorine", &[(50, 0.2)]);
    assert_eq!(opens(&out).len(), 1);
    let Transition::Open { detail, .. } = &out[0] else {
        unreachable!()
    };
    assert!(detail.ends_with("for 10 min"), "{detail}");
    // A gap within max_gap does not reset it: 0.2 at 100, 120 (gap 20 min) opens again later.
}

#[test]
fn inactivity_opens_after_its_time_and_clears_on_data() {
    let mut e = timing_engine();
    let silent = RuleKey::new("pool", "silent");
    let mut out = Vec::new();
    e.watch(&pool(), Domain::Pool, UnixMillis(T0));
    e.tick(UnixMillis(T0 + 29 * MIN), &mut out);
    assert!(out.is_empty());
    e.tick(UnixMillis(T0 + 30 * MIN), &mut out);
    assert_eq!(opens(&out).len(), 1);
    e.tick(UnixMillis(T0 + 60 * MIN), &mut out);
    assert_eq!(out.len(), 1, "no second Open while silent: {out:?}");
    assert!(e.is_active(&pool(), &silent));
    // Data with a badly skewed agent clock still counts: inactivity uses receive time.
    e.reading(
        &pool(),
        Domain::Pool,
        "ph",
        7.4,
        UnixMillis(T0 - 48 * HOUR),
        UnixMillis(T0 + 61 * MIN),
        &mut out,
    );
    assert_eq!(clears(&out).len(), 1, "{out:?}");
    assert!(!e.is_active(&pool(), &silent));
    e.tick(UnixMillis(T0 + 90 * MIN), &mut out);
    assert_eq!(out.len(), 2);
    e.tick(UnixMillis(T0 + 91 * MIN), &mut out);
    assert_eq!(opens(&out).len(), 2);
}

#[test]
fn watching_an_entity_that_already_reports_does_not_reset_its_clock() {
    let mut e = timing_engine();
    let mut out = Vec::new();
    feed(&mut e, "free_chlorine", &[(0, 0.5)]);
    e.watch(&pool(), Domain::Pool, UnixMillis(T0 + 20 * MIN));
    e.tick(UnixMillis(T0 + 30 * MIN), &mut out);
    assert_eq!(opens(&out).len(), 1);
}

#[test]
fn late_and_out_of_order_readings_change_no_state() {
    let mut e = timing_engine();
    let mut out = feed(&mut e, "free_chlorine", &minutes(0, 5, 0.2));
    // A reading from before the newest one, even a good one, does not end the breach.
    out.extend(feed(&mut e, "free_chlorine", &[(2, 0.5)]));
    assert_eq!(e.late(), 1);
    out.extend(feed(&mut e, "free_chlorine", &minutes(5, 11, 0.2)));
    assert_eq!(opens(&out).len(), 1, "{out:?}");
    // Nor does a late bad one re-open after the clear.
    out.extend(feed(&mut e, "free_chlorine", &minutes(11, 30, 0.5)));
    assert_eq!(clears(&out).len(), 1);
    out.extend(feed(&mut e, "free_chlorine", &[(12, 0.1), (13, 0.1)]));
    assert_eq!(e.late(), 3);
    assert_eq!(opens(&out).len(), 1);
}

#[test]
fn a_future_skewed_reading_does_not_stretch_or_reverse_durations() {
    let mut e = timing_engine();
    let mut out = Vec::new();
    let at = |m: i64| UnixMillis(T0 + m * MIN);
    // The agent's clock runs two hours ahead for one reading.
    e.reading(
        &pool(),
        Domain::Pool,
        "free_chlorine",
        0.2,
        at(120),
        at(0),
        &mut out,
    );
    assert!(
        out.is_empty(),
        "a breach 'lasting' two hours must not open at once: {out:?}"
    );
    // Readings with correct clocks afterwards are not dropped as late.
    for m in 1..=10 {
        e.reading(
            &pool(),
            Domain::Pool,
            "free_chlorine",
            0.2,
            at(m),
            at(m),
            &mut out,
        );
    }
    assert_eq!(e.late(), 0);
    assert_eq!(opens(&out).len(), 1);
    let Transition::Open {
        at: opened, detail, ..
    } = &out[0]
    else {
        unreachable!()
    };
    assert_eq!(*opened, at(10));
    assert!(
        detail.ends_with("for 10 min") && !detail.contains('-'),
        "{detail}"
    );
}

#[test]
fn every_default_pool_range_rule_opens_on_a_breach_and_clears_in_its_clear_band() {
    let pack = RuleSet::defaults().get(Domain::Pool).unwrap().clone();
    for rule in &pack.rules {
        let RuleKind::Range(r) = &rule.kind else {
            continue;
        };
        let mut e = default_engine();
        let inside = match (r.clear.min, r.clear.max) {
            (Some(a), Some(b)) => (a + b) / 2.0,
            (Some(a), None) => a + 10.0,
            (None, Some(b)) => b / 2.0,
            (None, None) => unreachable!(),
        };
        let outside = r
            .allowed
            .max
            .map_or_else(|| r.allowed.min.unwrap() * 0.9, |m| m * 1.1);
        let mut out = Vec::new();
        let mut at = T0;
        // Only this rule's transitions (the rate rule on the same metric may fire too).
        let mut send = |e: &mut Engine, v: f64, n: usize, out: &mut Vec<Transition>| {
            for _ in 0..n {
                e.reading(
                    &pool(),
                    Domain::Pool,
                    r.metric.as_str(),
                    v,
                    UnixMillis(at),
                    UnixMillis(at),
                    out,
                );
                at += S;
            }
            out.retain(|t| matches!(t, Transition::Open { rule: k, .. } | Transition::Clear { rule: k, .. } if *k == rule.key));
        };
        send(&mut e, inside, 20, &mut out);
        assert!(out.is_empty(), "{}: {out:?}", rule.key);
        // Steps of one second, so the rule's 5 s delay is 6 readings; 4 do not open.
        send(&mut e, outside, 4, &mut out);
        assert!(out.is_empty(), "{}: {out:?}", rule.key);
        send(&mut e, inside, 1, &mut out);
        send(&mut e, outside, 20, &mut out);
        assert_eq!(opens(&out).len(), 1, "{}: {out:?}", rule.key);
        send(&mut e, inside, 20, &mut out);
        assert_eq!(clears(&out).len(), 1, "{}: {out:?}", rule.key);
        assert!(out.iter().all(|t| match t {
            Transition::Open {
                rule: k, pack: h, ..
            } => k == &rule.key && h == pack.hash(),
            Transition::Clear { rule: k, .. } => k == &rule.key,
        }));
    }
}

#[test]
fn the_rate_rule_fires_on_a_jump_but_not_on_noise() {
    let mut e = default_engine();
    let jump = RuleKey::new("pool", "free_chlorine_jump");
    let mut out = Vec::new();
    let mut at = T0;
    for i in 0..600 {
        let v = 0.55 + if i % 2 == 0 { 0.03 } else { -0.03 };
        e.reading(
            &pool(),
            Domain::Pool,
            "free_chlorine",
            v,
            UnixMillis(at),
            UnixMillis(at),
            &mut out,
        );
        at += S;
    }
    assert!(out.is_empty(), "{out:?}");
    for v in [0.95, 0.96, 0.95] {
        e.reading(
            &pool(),
            Domain::Pool,
            "free_chlorine",
            v,
            UnixMillis(at),
            UnixMillis(at),
            &mut out,
        );
        at += S;
    }
    let rate: Vec<_> = out.iter().filter(|t| matches!(t, Transition::Open { rule, .. } | Transition::Clear { rule, .. } if *rule == jump)).collect();
    assert_eq!(rate.len(), 2, "{out:?}");
    assert!(
        matches!(rate[0], Transition::Open { detail, .. } if detail.contains("from 0.52 to 0.95"))
    );
    // Ten minutes between readings: a change of 1.0 is 0.1 a minute, within the limit.
    let mut e = default_engine();
    let mut out = feed(&mut e, "free_chlorine", &[(0, 0.3), (10, 0.9)]);
    out.retain(|t| matches!(t, Transition::Open { rule, .. } if *rule == jump));
    assert!(out.is_empty());
}

fn session(player: &str, band: AgeBand, guest: bool, start: UnixMillis, minutes: i64) -> Event {
    Event::GameSession(GameSession {
        id: RecordId::new("s").unwrap(),
        player: PersonRef::new(player).unwrap(),
        age_band: band,
        real_name_verified: !guest,
        guest,
        start_ms: start,
        end_ms: Some(UnixMillis(start.0 + minutes * MIN)),
    })
}

fn game() -> EntityId {
    EntityId::new("game-1").unwrap()
}

#[test]
fn a_guest_session_opens_once_and_clears_when_the_window_has_passed() {
    let mut e = default_engine();
    let guest = RuleKey::new("game", "guest_session");
    let mut out = Vec::new();
    let t = |m: i64| UnixMillis(T0 + m * MIN);
    for m in 0..30 {
        e.event(
            &game(),
            Domain::Game,
            &session("p1", AgeBand::Adult, false, t(m), 20),
            t(m + 21),
            &mut out,
        );
    }
    assert!(out.is_empty(), "{out:?}");
    e.event(
        &game(),
        Domain::Game,
        &session("p2", AgeBand::Adult, true, t(30), 5),
        t(36),
        &mut out,
    );
    e.event(
        &game(),
        Domain::Game,
        &session("p3", AgeBand::Adult, true, t(31), 5),
        t(37),
        &mut out,
    );
    let o: Vec<_> = out
        .iter()
        .filter(|x| matches!(x, Transition::Open { rule, .. } if *rule == guest))
        .collect();
    assert_eq!(o.len(), 1, "{out:?}");
    assert!(
        matches!(o[0], Transition::Open { detail, .. } if detail.starts_with("game_session guest: 1 of 31 records"))
    );
    // The 24-hour window slides on tick; the guest sessions (filed at their end, 35 and 36
    // min) leave it a day later, give or take one bucket (an hour).
    e.tick(t(24 * 60), &mut out);
    assert!(e.is_active(&game(), &guest));
    e.tick(t(26 * 60), &mut out);
    assert!(!e.is_active(&game(), &guest), "{out:?}");
    assert_eq!(
        out.iter()
            .filter(|x| matches!(x, Transition::Clear { rule, .. } if *rule == guest))
            .count(),
        1
    );
}

#[test]
fn minors_outside_the_window_open_and_adults_do_not() {
    let mut e = default_engine();
    let key = RuleKey::new("game", "minor_outside_window");
    let mut out = Vec::new();
    // 2026-11-25 is a Wednesday.
    let wed = ChinaDay::from_ymd(2026, 11, 25).unwrap().at(20 * HOUR);
    e.event(
        &game(),
        Domain::Game,
        &session("a", AgeBand::Adult, false, wed, 30),
        UnixMillis(wed.0 + HOUR),
        &mut out,
    );
    assert!(!e.is_active(&game(), &key));
    e.event(
        &game(),
        Domain::Game,
        &session("m", AgeBand::From8To16, false, wed, 30),
        UnixMillis(wed.0 + HOUR),
        &mut out,
    );
    assert!(e.is_active(&game(), &key), "{out:?}");
}

#[test]
fn a_minor_on_a_day_outside_the_calendar_opens_nothing_and_is_counted() {
    let mut e = default_engine();
    let key = RuleKey::new("game", "minor_outside_window");
    let mut out = Vec::new();
    // 2027-02-08, a Monday of the Spring Festival: the default calendar stops at 2026.
    let mon = ChinaDay::from_ymd(2027, 2, 8).unwrap().at(20 * HOUR);
    e.event(
        &game(),
        Domain::Game,
        &session("m", AgeBand::From8To16, false, mon, 30),
        UnixMillis(mon.0 + HOUR),
        &mut out,
    );
    assert!(!e.is_active(&game(), &key), "{out:?}");
    assert_eq!(e.unjudgeable(), 1);
}

#[test]
fn monthly_caps_cross_the_month_boundary_in_china_time() {
    let mut e = default_engine();
    let key = RuleKey::new("game", "minor_monthly_cap");
    let mut out = Vec::new();
    let pay = |fen: u64, ts: UnixMillis| {
        Event::GamePayment(GamePayment {
            id: RecordId::new("g").unwrap(),
            player: PersonRef::new("kid").unwrap(),
            age_band: AgeBand::From8To16,
            amount_fen: fen,
            ts_ms: ts,
        })
    };
    let nov30 = ChinaDay::from_ymd(2026, 11, 30).unwrap();
    for h in 0..4 {
        let t = nov30.at((19 + h) * HOUR);
        e.event(&game(), Domain::Game, &pay(5_000, t), t, &mut out);
    }
    assert!(
        out.is_empty(),
        "200 yuan in November is the cap, not over it: {out:?}"
    );
    // 00:30 on 1 December in China is still 30 November in UTC: a new month all the same.
    let dec1 = ChinaDay::from_ymd(2026, 12, 1).unwrap().at(30 * MIN);
    e.event(&game(), Domain::Game, &pay(5_000, dec1), dec1, &mut out);
    assert!(!e.is_active(&game(), &key), "{out:?}");
    // 23:59 on 30 November, arriving late but inside the rolling window: over November's cap.
    let late = nov30.at(23 * HOUR + 59 * MIN);
    e.event(&game(), Domain::Game, &pay(100, late), dec1, &mut out);
    assert!(e.is_active(&game(), &key), "{out:?}");
}

#[test]
fn a_controlled_drug_prescription_opens_a_critical_anomaly() {
    let mut e = default_engine();
    let mut out = Vec::new();
    let rx = Event::Prescription(Prescription {
        id: RecordId::new("rx").unwrap(),
        consultation: RecordId::new("c").unwrap(),
        doctor: PersonRef::new("d").unwrap(),
        issued_ms: UnixMillis(T0),
        pharmacist_reviewed_ms: Some(UnixMillis(T0 + MIN)),
        effective_ms: Some(UnixMillis(T0 + 2 * MIN)),
        ai_generated: false,
        controlled_drug: true,
    });
    let h = EntityId::new("hosp-1").unwrap();
    e.event(
        &h,
        Domain::Hospital,
        &rx,
        UnixMillis(T0 + 3 * MIN),
        &mut out,
    );
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(
        matches!(&out[0], Transition::Open { rule, severity: Severity::Critical, .. } if rule.as_str() == "hospital/controlled_drug")
    );
}

/// Persists every dirty state into a fresh engine, as a restart would.
fn restart(
    e: &mut Engine,
    stored: &mut std::collections::BTreeMap<(String, String), String>,
    make: fn() -> Engine,
) -> Engine {
    for (entity, rule, json) in e.take_dirty() {
        stored.insert((entity.to_string(), rule.to_string()), json);
    }
    let mut fresh = make();
    for ((entity, rule), json) in stored.iter() {
        fresh
            .restore(
                EntityId::new(entity.clone()).unwrap(),
                RuleKey::parse(rule).unwrap(),
                json,
            )
            .unwrap();
    }
    fresh
}

#[test]
fn a_restored_engine_neither_repeats_an_open_nor_forgets_a_pending_breach() {
    let mut stored = Default::default();
    let mut e = timing_engine();
    // Pending: 6 minutes of breach before the restart, 4 after: opens at 10 min, not 16.
    let mut out = feed(&mut e, "free_chlorine", &minutes(0, 6, 0.2));
    let mut e = restart(&mut e, &mut stored, timing_engine);
    out.extend(feed(&mut e, "free_chlorine", &minutes(6, 11, 0.2)));
    assert_eq!(opens(&out).len(), 1, "{out:?}");
    assert!(
        matches!(opens(&out)[0], Transition::Open { at, .. } if *at == UnixMillis(T0 + 10 * MIN))
    );
    // Active: a restart and more breach must not open again; the clear still comes once.
    let mut e = restart(&mut e, &mut stored, timing_engine);
    assert!(e.is_active(&pool(), &fc()));
    out.extend(feed(&mut e, "free_chlorine", &minutes(11, 30, 0.2)));
    out.extend(feed(&mut e, "free_chlorine", &minutes(30, 45, 0.5)));
    assert_eq!(opens(&out).len(), 1, "{out:?}");
    assert_eq!(clears(&out).len(), 1, "{out:?}");
    // A late reading after the restart is still late.
    let mut e = restart(&mut e, &mut stored, timing_engine);
    feed(&mut e, "free_chlorine", &[(20, 0.1)]);
    assert_eq!(e.late(), 1);
}

#[test]
fn restoring_rejects_unknown_rules_bad_json_and_other_kinds() {
    let mut e = timing_engine();
    let bad_rule = e.restore(pool(), RuleKey::new("pool", "nope"), "{}");
    assert!(matches!(bad_rule, Err(StateError::UnknownRule { .. })));
    let bad_json = e.restore(pool(), fc(), "{not json");
    assert!(matches!(bad_json, Err(StateError::Json { .. })));
    let other = e.restore(
        pool(),
        fc(),
        r#"{"kind":"inactivity","last_seen":1,"active_since":null}"#,
    );
    assert!(
        matches!(
            other,
            Err(StateError::KindMismatch {
                expected: "range",
                found: "inactivity",
                ..
            })
        ),
        "{other:?}"
    );
    assert!(other.unwrap_err().to_string().contains("drop it"));
}

#[test]
fn replacing_the_rules_keeps_the_state_of_keys_that_still_exist() {
    let mut e = timing_engine();
    let out = feed(&mut e, "free_chlorine", &minutes(0, 11, 0.2));
    assert_eq!(opens(&out).len(), 1);
    // A new version with a looser band: the anomaly stays open and is not opened again.
    let looser = TIMING_PACK
        .replace("min = 0.3", "min = 0.1")
        .replace("clear_min = 0.35", "clear_min = 0.15");
    e.replace_rules(RuleSet::default().with_pack(parse_pack(&looser, "v2").unwrap()));
    assert!(e.is_active(&pool(), &fc()));
    let out = feed(&mut e, "free_chlorine", &minutes(11, 30, 0.2));
    assert!(opens(&out).is_empty(), "{out:?}");
    assert_eq!(clears(&out).len(), 1, "now in the new clear band: {out:?}");
    assert!(!e.take_dirty().is_empty());
}

#[test]
fn take_dirty_returns_each_changed_state_once() {
    let mut e = timing_engine();
    feed(&mut e, "free_chlorine", &minutes(0, 3, 0.5));
    let dirty = e.take_dirty();
    let keys: Vec<String> = dirty.iter().map(|(_, k, _)| k.to_string()).collect();
    assert_eq!(keys, ["pool/free_chlorine", "pool/silent"]);
    assert!(e.take_dirty().is_empty());
}

proptest! {
    #[test]
    fn a_stream_that_never_leaves_the_allowed_band_never_opens(
        values in proptest::collection::vec(0.3f64..=1.0, 1..300),
        steps in proptest::collection::vec(0i64..20 * MIN, 1..300),
    ) {
        let mut e = default_engine();
        let mut out = Vec::new();
        let mut t = T0;
        for (v, dt) in values.iter().zip(steps.iter().cycle()) {
            t += dt;
            e.reading(&pool(), Domain::Pool, "free_chlorine", *v, UnixMillis(t), UnixMillis(t), &mut out);
        }
        let range_opens = out.iter().filter(|x| matches!(x, Transition::Open { rule, .. } if *rule == fc())).count();
        prop_assert_eq!(range_opens, 0);
    }

    #[test]
    fn state_json_round_trips(
        values in proptest::collection::vec(0.0f64..2.0, 1..200),
        steps in proptest::collection::vec(-2 * MIN..15 * MIN, 1..200),
    ) {
        let mut e = timing_engine();
        let mut out = Vec::new();
        let mut t = T0;
        for (v, dt) in values.iter().zip(steps.iter().cycle()) {
            t += dt;
            e.reading(&pool(), Domain::Pool, "free_chlorine", *v, UnixMillis(t), UnixMillis(t + S), &mut out);
        }
        let dirty = e.take_dirty();
        let mut restored = timing_engine();
        for (entity, rule, json) in &dirty {
            restored.restore(entity.clone(), rule.clone(), json).unwrap();
        }
        // Mark everything dirty in both by a no-op rule replacement, then compare the JSON.
        let set = e.rules().clone();
        e.replace_rules(set.clone());
        restored.replace_rules(set);
        prop_assert_eq!(e.take_dirty(), restored.take_dirty());
        prop_assert_eq!(e.is_active(&pool(), &fc()), restored.is_active(&pool(), &fc()));
        // And both go on identically.
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for (i, v) in values.iter().enumerate() {
            let ts = UnixMillis(t + (i as i64 + 1) * MIN);
            e.reading(&pool(), Domain::Pool, "free_chlorine", *v, ts, ts, &mut a);
            restored.reading(&pool(), Domain::Pool, "free_chlorine", *v, ts, ts, &mut b);
        }
        prop_assert_eq!(a, b);
    }
}
