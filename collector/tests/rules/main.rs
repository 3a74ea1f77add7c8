//! The default rule packs against the agent's simulated feeds: they must fire on the
//! simulators' excursions, and not constantly.

use std::collections::BTreeMap;

use spotcheck_agent::sources::simulate::Generator;
use spotcheck_collector::rules::{Calendar, Engine, RuleSet, Transition};
use spotcheck_protocol::{AgentId, Batch, Domain, EntityId, UnixMillis};

/// 2026-11-27 00:00 China time, a Friday.
const START: i64 = 1_795_708_800_000;

/// Runs `batches` batches of a simulated feed through the default engine; returns per rule
/// key (opens, clears, share of batches during which it was active).
fn simulate(
    domain: Domain,
    batches: i64,
    interval_ms: i64,
) -> BTreeMap<String, (usize, usize, f64)> {
    let mut engine = Engine::new(RuleSet::defaults(), Calendar::china_default());
    let mut generator = Generator::new(
        domain,
        7,
        match domain {
            Domain::Pool => 1,
            Domain::Game => 4,
            Domain::Hospital => 2,
        },
    );
    let agent = AgentId::new("sim").unwrap();
    let entity = EntityId::new("site").unwrap();
    let mut out = Vec::new();
    let mut stats: BTreeMap<String, (usize, usize, f64)> = BTreeMap::new();
    let mut active: BTreeMap<String, bool> = BTreeMap::new();
    engine.watch(&entity, domain, UnixMillis(START));
    for i in 0..batches {
        let now = UnixMillis(START + i * interval_ms);
        match generator.next_batch(&agent, now, interval_ms as u64) {
            Batch::Readings(b) => {
                for r in &b.readings {
                    engine.reading(
                        &entity,
                        domain,
                        r.metric.as_str(),
                        r.value,
                        r.ts_ms,
                        now,
                        &mut out,
                    );
                }
            }
            Batch::Events(b) => {
                for e in &b.events {
                    engine.event(&entity, domain, e, now, &mut out);
                }
            }
        }
        engine.tick(now, &mut out);
        for t in out.drain(..) {
            let (key, open) = match &t {
                Transition::Open { rule, .. } => (rule.to_string(), true),
                Transition::Clear { rule, .. } => (rule.to_string(), false),
            };
            let was = active.insert(key.clone(), open).unwrap_or(false);
            assert_ne!(
                was, open,
                "{key}: an Open must be followed by a Clear and vice versa: {t:?}"
            );
            let s = stats.entry(key).or_default();
            if open {
                s.0 += 1;
            } else {
                s.1 += 1;
            }
        }
        for (key, &on) in &active {
            if on {
                stats.get_mut(key).unwrap().2 += 1.0 / batches as f64;
            }
        }
        // Persisting is part of the hot path's contract: exercise it.
        assert!(engine
            .take_dirty()
            .iter()
            .all(|(_, _, json)| json.starts_with('{')));
    }
    stats
}

#[test]
fn default_pool_rules_fire_on_the_simulators_excursions_but_not_constantly() {
    let stats = simulate(Domain::Pool, 30_000, 1_000);
    eprintln!("pool: {stats:#?}");
    for rule in [
        "free_chlorine",
        "combined_chlorine",
        "ph",
        "turbidity",
        "orp",
        "water_temperature",
    ] {
        let key = format!("pool/{rule}");
        let (opens, _, active) = stats.get(&key).copied().unwrap_or_default();
        assert!(opens >= 1, "{key} never fired: {stats:?}");
        // About 60 excursions per channel in 30 000 samples; flapping would give many more.
        assert!(opens <= 80, "{key} opened {opens} times: {stats:?}");
        assert!(
            active < 0.2,
            "{key} active {active:.2} of the time: {stats:?}"
        );
    }
    assert!(!stats.contains_key("pool/silent"), "{stats:?}");
}

#[test]
fn default_game_and_hospital_rules_fire_once_and_do_not_flap() {
    for (domain, interval) in [(Domain::Game, 60_000), (Domain::Hospital, 60_000)] {
        // Three days of one batch a minute.
        let stats = simulate(domain, 3 * 24 * 60, interval);
        eprintln!("{domain}: {stats:#?}");
        assert!(!stats.is_empty(), "{domain}: nothing fired");
        for (key, (opens, _, _)) in &stats {
            // Zero-tolerance rules have 24h windows: a steady trickle is one anomaly.
            assert!(
                *opens <= 3,
                "{key} opened {opens} times in three days: {stats:?}"
            );
        }
    }
}
