//! Remote-check benchmark (issue 5): one check over 30 days of one-minute data for six pool
//! metrics (259,200 readings) of one entity, from the SQLite store through the verdict, next
//! to the baseline in the same run: only loading the same window from the store.
//!
//! `cargo bench -p spotcheck-collector --bench check` (timings are printed; no harness).

use std::time::Instant;

use spotcheck_collector::check;
use spotcheck_collector::config::Synchronous;
use spotcheck_collector::rulebook::Rulebook;
use spotcheck_collector::store::{self, query, writer::Item, Writer};
use spotcheck_collector::tasks::{store as tasks, TaskId};
use spotcheck_protocol::{
    Batch, Domain, EntityId, Limits, Metric, Quality, Reading, ReadingBatch, Seq, Unit, UnixMillis,
    Version,
};

const DAYS: i64 = 30;
const MINUTE: i64 = 60_000;
const RUNS: usize = 10;

const METRICS: [(&str, Unit, f64); 6] = [
    (Metric::FREE_CHLORINE, Unit::MilligramPerLitre, 0.6),
    (Metric::COMBINED_CHLORINE, Unit::MilligramPerLitre, 0.2),
    (Metric::PH, Unit::Ph, 7.4),
    (Metric::TURBIDITY, Unit::Ntu, 0.3),
    (Metric::ORP, Unit::Millivolt, 700.0),
    (Metric::WATER_TEMPERATURE, Unit::Celsius, 27.0),
];

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = store::db_path(dir.path());
    let code = spotcheck_collector::registry::CreditCode::complete("91440305MA5BENCH0")
        .expect("a valid credit code");
    let entity = EntityId::new(code.as_str()).expect("valid");
    let agent = spotcheck_protocol::AgentId::new("pool-agent-bench").expect("valid");
    let end = UnixMillis::now().0 / MINUTE * MINUTE;
    let start = end - DAYS * 24 * 60 * MINUTE;

    let mut writer = Writer::open(&db, Synchronous::Normal).expect("store opens");
    writer
        .register_agents(&[spotcheck_collector::config::AgentBinding {
            id: agent.clone(),
            entity: entity.clone(),
            domain: Domain::Pool,
        }])
        .expect("agents");
    let limits = Limits {
        max_age_ms: i64::MAX / 2,
        ..Limits::default()
    };
    // Agents send a batch every ten minutes: ten readings of each metric.
    let t0 = Instant::now();
    let mut seq = 0;
    let mut t = start;
    let mut items = Vec::new();
    while t < end {
        seq += 1;
        let mut readings = Vec::new();
        for k in 0..10 {
            let ts = t + k * MINUTE;
            if ts >= end {
                break;
            }
            for (i, (m, unit, base)) in METRICS.iter().enumerate() {
                // A slow wiggle, and a free-chlorine dip every few days to give violations.
                let wiggle = ((ts / MINUTE + i as i64) % 97) as f64 / 970.0 - 0.05;
                let dip = *m == Metric::FREE_CHLORINE && (ts / MINUTE) % (3 * 1440) < 45;
                readings.push(Reading {
                    metric: Metric::new(*m).expect("valid"),
                    value: if dip { 0.15 } else { base + wiggle },
                    unit: *unit,
                    ts_ms: UnixMillis(ts),
                    quality: Quality::Good,
                });
            }
        }
        let batch = Batch::Readings(ReadingBatch {
            v: Version,
            agent: agent.clone(),
            seq: Seq(seq),
            after: None,
            readings,
        });
        items.push(spotcheck_protocol::check(batch, &limits, UnixMillis(end)).expect("valid"));
        t += 10 * MINUTE;
        if items.len() == 500 || t >= end {
            let its: Vec<Item<'_>> = items
                .iter()
                .map(|b| Item::Batch {
                    entity: &entity,
                    domain: Domain::Pool,
                    batch: b,
                })
                .collect();
            writer.commit(&its, UnixMillis(end)).expect("commit");
            items.clear();
        }
    }
    drop(writer);
    println!(
        "loaded {} readings in {:.1} s",
        DAYS * 24 * 60 * METRICS.len() as i64,
        t0.elapsed().as_secs_f64()
    );

    let conn = store::open_for_writing(&db, Synchronous::Normal).expect("open");
    let book = Rulebook::load(None).expect("default packs");
    let rules = book.rules();
    let calendar = book.calendar();
    conn.execute(
            "INSERT INTO registry_items (id, name, department, legal_basis, kind, method, rule_pack)
             VALUES ('pool-water-quality', 'pool', 'health', 'GB 37488-2019', 'general', 'remote', 'pool')
             ON CONFLICT DO NOTHING",
            [],
        )
        .expect("item");
    conn.execute(
        "INSERT INTO registry_entities (code, name, domain, district, address, contact, risk, agents)
         VALUES (?1, 'bench pool', 'pool', 'nanshan', '', '', 'A', '[]') ON CONFLICT DO NOTHING",
        [entity.as_str()],
    )
    .expect("entity");
    let referral = tasks::NewReferral {
        entity: entity.as_str(),
        department: "health",
        item: "pool-water-quality",
        reason: "benchmark",
        entered_by: "bench",
    };
    let store = spotcheck_collector::store::db::connect(
        &spotcheck_collector::store::db::DbUrl::Sqlite(db.clone()),
        spotcheck_collector::store::db::Mode::Write,
    )
    .expect("open");
    let task = tasks::create_referral(&store, &referral, UnixMillis(end))
        .expect("task")
        .id;

    let mut load = Vec::new();
    let mut full = Vec::new();
    let mut outcome = String::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        let data = query::window_data(&conn, &[entity.to_string()], start, end).expect("load");
        load.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(
            data.series.iter().map(|s| s.1.len()).sum::<usize>() as i64,
            DAYS * 24 * 60 * METRICS.len() as i64
        );
        let t = Instant::now();
        let c = check::run(
            &store,
            &rules,
            &calendar,
            TaskId(task.0),
            Some((start, end)),
            UnixMillis(end),
        )
        .expect("check runs");
        full.push(t.elapsed().as_secs_f64() * 1000.0);
        outcome = c.outcome;
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (l, f) = (median(&mut load), median(&mut full));
    println!("window load only (baseline): median {l:.1} ms over {RUNS} runs");
    println!("remote check (load + rules + record): median {f:.1} ms over {RUNS} runs; verdict {outcome}");
    println!("ratio check / load: {:.2}", f / l);
}
