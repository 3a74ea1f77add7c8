//! `digest-cost`: what the per-batch content digest costs (issue 16: a sequence number
//! reused with other content is told apart from a duplicate by comparing digests).
//!
//! In one command, for batches of 1 and of 100 readings and for event batches:
//!
//! - **digest alone**: `Batch::digest()` over every batch, in a loop (ns per batch);
//! - **commit with digests** (the collector as it runs) and **commit without** (the baseline:
//!   `Writer::without_digests`, as before hardening, storing no digest): the same batches
//!   committed through ingest's `Writer` into a fresh database, in transactions of 256
//!   batches like ingest's, `synchronous = normal` so that the CPU is what is measured
//!   (with `full`, each commit's fsync dwarfs both). Rounds alternate with and without;
//!   medians are printed.
//!
//! Times are the benchmark thread's own CPU time (`CLOCK_THREAD_CPUTIME_ID`: everything runs
//! on that thread, SQLite included), not wall-clock time, so that other work on a shared
//! machine does not count. Prints a Markdown table.

/// Seconds of CPU time this thread has used.
fn cpu_now() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the call to fill in.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(r, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

use clap::Parser;
use spotcheck_collector::config::Synchronous;
use spotcheck_collector::store::writer::Item;
use spotcheck_collector::store::Writer;
use spotcheck_protocol::{
    check, AgentId, Batch, Checked, Domain, EntityId, Event, EventBatch, Limits, Metric, Quality,
    Reading, ReadingBatch, Seq, Unit, UnixMillis, Version,
};

#[derive(Parser)]
#[command(about = "What the per-batch digest costs, against committing without it")]
struct Args {
    /// Batches per round (for batches of 100 readings: a tenth of this).
    #[arg(long, default_value_t = 20_000)]
    batches: usize,
    /// Rounds per cell (median reported); with and without alternate.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

const METRICS: [(&str, Unit, f64); 5] = [
    (Metric::WATER_TEMPERATURE, Unit::Celsius, 27.1),
    (Metric::PH, Unit::Ph, 7.4),
    (Metric::FREE_CHLORINE, Unit::MilligramPerLitre, 0.6),
    (Metric::TURBIDITY, Unit::Ntu, 0.3),
    (Metric::ORP, Unit::Millivolt, 700.0),
];

fn readings(agent: &AgentId, n: usize, size: usize, now: UnixMillis) -> Vec<Checked<Batch>> {
    (0..n)
        .map(|i| {
            let readings = (0..size)
                .map(|j| {
                    let (m, unit, v) = METRICS[j % METRICS.len()];
                    Reading {
                        metric: Metric::new(m).unwrap(),
                        value: v + (i % 7) as f64 / 100.0,
                        unit,
                        ts_ms: UnixMillis(now.0 - ((n - i) * size + j) as i64),
                        quality: Quality::Good,
                    }
                })
                .collect();
            let b = Batch::Readings(ReadingBatch {
                v: Version,
                agent: agent.clone(),
                seq: Seq(i as u64 + 1),
                after: None,
                readings,
            });
            check(b, &Limits::default(), now).expect("a valid batch")
        })
        .collect()
}

fn events(agent: &AgentId, n: usize, now: UnixMillis) -> Vec<Checked<Batch>> {
    (0..n)
        .map(|i| {
            let ts = now.0 - (n - i) as i64 * 1000;
            let record: Event = serde_json::from_value(serde_json::json!({
                "kind": "game_session", "id": format!("s{i}"), "player": format!("p{}", i % 50),
                "age_band": "adult", "real_name_verified": true, "guest": false,
                "start_ms": ts, "end_ms": ts + 600
            }))
            .expect("a valid game session");
            let b = Batch::Events(EventBatch {
                v: Version,
                agent: agent.clone(),
                seq: Seq(i as u64 + 1),
                after: None,
                events: vec![record],
            });
            check(b, &Limits::default(), now).expect("a valid batch")
        })
        .collect()
}

/// Seconds to commit `batches` into a fresh database, 256 to a transaction.
fn commit(batches: &[Checked<Batch>], domain: Domain, digests: bool) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(&dir.path().join("spotcheck.db"), Synchronous::Normal).unwrap();
    if !digests {
        w = w.without_digests();
    }
    let entity = EntityId::new("bench-e0").unwrap();
    let started = cpu_now();
    for group in batches.chunks(256) {
        let items: Vec<Item<'_>> = group
            .iter()
            .map(|b| Item::Batch {
                entity: &entity,
                domain,
                batch: b,
            })
            .collect();
        w.commit(&items, UnixMillis::now()).unwrap();
    }
    cpu_now() - started
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args = Args::parse();
    let agent = AgentId::new("bench-0").unwrap();
    let now = UnixMillis::now();
    let cells: Vec<(&str, Domain, Vec<Checked<Batch>>)> = vec![
        (
            "readings, batch of 1",
            Domain::Pool,
            readings(&agent, args.batches, 1, now),
        ),
        (
            "readings, batch of 100",
            Domain::Pool,
            readings(&agent, args.batches / 10, 100, now),
        ),
        (
            "events (1 game session)",
            Domain::Game,
            events(&agent, args.batches, now),
        ),
    ];
    println!(
        "| batches | n | digest alone, ns/batch | commit without digest, CPU µs/batch | commit with digest, CPU µs/batch | cost of the digest |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, domain, batches) in &cells {
        let n = batches.len();
        let mut alone = Vec::new();
        let mut with = Vec::new();
        let mut without = Vec::new();
        for _ in 0..args.rounds {
            let started = cpu_now();
            let mut acc = 0u8;
            for b in batches {
                acc ^= std::hint::black_box(b.get().digest())[0];
            }
            std::hint::black_box(acc);
            alone.push(cpu_now() - started);
            without.push(commit(batches, *domain, false));
            with.push(commit(batches, *domain, true));
        }
        let (alone, with, without) = (median(alone), median(with), median(without));
        let per = |s: f64| s / n as f64;
        println!(
            "| {name} | {n} | {:.0} | {:.2} | {:.2} | {:+.1} % |",
            per(alone) * 1e9,
            per(without) * 1e6,
            per(with) * 1e6,
            (with / without - 1.0) * 100.0
        );
    }
}
