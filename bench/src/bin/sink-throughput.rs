//! `sink-throughput`: points/s from Spotcheck's store into a time-series server through the
//! sink, next to the ceiling: the same points, encoded beforehand, POSTed back to back as plain
//! line protocol (no store reads, no cursor, no gzip) by one client over one connection, from a
//! thread at the sink's CPU priority (`--nice`, the sink's `nice` setting; 10 by default, as
//! the sink's own threads run).
//!
//! Fills a fresh store with `--readings` readings (chunks of 100, 100 entities × 6 metrics),
//! then per round: ceiling, sink without gzip, sink with gzip (each from a fresh cursor into the
//! same server; identical points overwrite). Prints the median of each as a Markdown table.
//!
//! Usage: victoria-metrics -retentionPeriod=100y -dedup.minScrapeInterval=1ms &
//!        cargo run --release -p spotcheck-bench --bin sink-throughput -- --url http://127.0.0.1:8428

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use rusqlite::params;
use spotcheck_collector::config::Synchronous;
use spotcheck_collector::sink::config::RawSinkConfig;
use spotcheck_collector::sink::cursor::Cursor;
use spotcheck_collector::sink::line::Precision;
use spotcheck_collector::sink::source::Source;
use spotcheck_collector::sink::Sink;
use spotcheck_collector::store::{self, chunk};
use spotcheck_collector::telemetry::SinkStats;
use spotcheck_protocol::{Quality, UnixMillis};

#[derive(Parser)]
#[command(about = "Sink throughput into a time-series server, against a plain bulk write")]
struct Args {
    /// The server's base URL (v2 write API).
    #[arg(long, default_value = "http://127.0.0.1:8428")]
    url: String,
    /// Readings in the store.
    #[arg(long, default_value_t = 1_000_000)]
    readings: usize,
    /// Points per request (the sink's batch_points; the ceiling's batches are the same).
    #[arg(long, default_value_t = 5000)]
    batch: usize,
    /// Rounds (medians reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The sink's niceness (`[sink] nice`, 0–19); the ceiling's writer runs at the same.
    #[arg(long, default_value_t = spotcheck_collector::sink::SINK_NICE)]
    nice: i32,
}

const PER_CHUNK: usize = 100;
const ENTITIES: i64 = 100;
const METRICS: [(&str, &str); 6] = [
    ("free_chlorine", "mg/L"),
    ("combined_chlorine", "mg/L"),
    ("ph", "pH"),
    ("turbidity", "NTU"),
    ("orp", "mV"),
    ("water_temperature", "Cel"),
];

fn fill(db: &std::path::Path, readings: usize) -> anyhow::Result<()> {
    let mut conn = store::open_for_writing(db, Synchronous::Normal)?;
    let tx = conn.transaction()?;
    for e in 0..ENTITIES {
        tx.execute(
            "INSERT INTO entities (id, name, domain) VALUES (?1, ?2, 'pool')",
            params![e + 1, format!("bench-e{e}")],
        )?;
        tx.execute(
            "INSERT INTO agents (id, name, entity, domain) VALUES (?1, ?2, ?3, 'pool')",
            params![e + 1, format!("bench-{e}"), format!("bench-e{e}")],
        )?;
    }
    for (i, (name, unit)) in METRICS.iter().enumerate() {
        tx.execute(
            "INSERT INTO metrics (id, name, unit) VALUES (?1, ?2, ?3)",
            params![i as i64 + 1, name, unit],
        )?;
    }
    let base = UnixMillis::now().0 - 30 * 86_400_000;
    let chunks = readings / PER_CHUNK;
    let series = ENTITIES * METRICS.len() as i64;
    for c in 0..chunks as i64 {
        let (entity, metric, seq) = (c % ENTITIES + 1, (c / ENTITIES) % 6 + 1, c / series);
        let t0 = base + seq * PER_CHUNK as i64 * 1000;
        let samples = (0..PER_CHUNK as i32).map(|i| chunk::Sample {
            ts: UnixMillis(t0 + i64::from(i) * 1000),
            value: 0.5 + f64::from(i % 7) * 0.01,
            quality: Quality::Good,
        });
        let data = chunk::encode(
            &[chunk::Run {
                seq,
                n: PER_CHUNK as u32,
            }],
            samples,
        );
        if metric == 1 {
            tx.execute(
                "INSERT OR IGNORE INTO batches (agent, seq, stream, items, received_ms) VALUES (?1, ?2, 'readings', ?3, ?4)",
                params![entity, seq, PER_CHUNK as i64 * 6, t0],
            )?;
        }
        tx.execute(
            "INSERT INTO reading_chunks (entity, metric, t0, t1, agent, seq, n, data) VALUES (?1, ?2, ?3, ?4, ?1, ?5, ?6, ?7)",
            params![entity, metric, t0, t0 + (PER_CHUNK as i64 - 1) * 1000, seq, PER_CHUNK as i64, data],
        )?;
    }
    tx.commit()?;
    Ok(())
}

fn ceiling(args: &Args, db: &std::path::Path) -> anyhow::Result<f64> {
    let mut source = Source::open(db)?;
    let upto = Cursor {
        chunk: i64::MAX,
        event: i64::MAX,
    };
    let mut cursor = Cursor::default();
    let mut bodies = Vec::new();
    let mut points = 0;
    loop {
        let b = source.read(cursor, upto, args.batch, Precision::Ms)?;
        if b.readings == 0 {
            break;
        }
        points += b.points;
        cursor = b.next;
        bodies.push(b.body);
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!(
        "{}/api/v2/write?org=spotcheck&bucket=spotcheck&precision=ms",
        args.url
    );
    // At the sink's own CPU priority, as the sink's threads run: the ratio is then the sink's
    // own cost, not the scheduler's preference for a normal thread over a nice one.
    std::thread::scope(|s| {
        s.spawn(|| {
            spotcheck_collector::sink::yield_to_ingest_at(args.nice);
            let start = Instant::now();
            for body in &bodies {
                let resp = agent.post(&url).send(body.as_bytes())?;
                if !resp.status().is_success() {
                    bail!("the server answered {}", resp.status());
                }
            }
            Ok(points as f64 / start.elapsed().as_secs_f64())
        })
        .join()
        .expect("the ceiling's thread")
    })
}

fn through_sink(args: &Args, dir: &std::path::Path, gzip: bool) -> anyhow::Result<f64> {
    // Each run starts from the beginning: the sink's cursor is kept in the store.
    rusqlite::Connection::open(store::db_path(dir))?.execute("DELETE FROM sink_cursors", [])?;
    let raw = RawSinkConfig {
        url: Some(args.url.clone()),
        batch_points: args.batch,
        gzip,
        nice: args.nice,
        ..RawSinkConfig::default()
    };
    let mut problems = Vec::new();
    let config = raw
        .validate(&mut problems)
        .with_context(|| problems.join("; "))?;
    let stats = SinkStats::default();
    let start = Instant::now();
    let sink = Sink::start(config, dir, stats.clone())?;
    let deadline = start + Duration::from_secs(600);
    while stats.points_written.get() < args.readings as u64 {
        if Instant::now() > deadline || stats.write_errors.get() > 0 {
            bail!(
                "the sink did not deliver (write errors: {})",
                stats.write_errors.get()
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let rate = args.readings as f64 / start.elapsed().as_secs_f64();
    sink.stop();
    Ok(rate)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let db = store::db_path(dir.path());
    fill(&db, args.readings)?;
    let readings = args.readings / PER_CHUNK * PER_CHUNK;
    let args = Args { readings, ..args };
    let (mut c, mut s, mut g) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..args.rounds {
        c.push(ceiling(&args, &db)?);
        s.push(through_sink(&args, dir.path(), false)?);
        g.push(through_sink(&args, dir.path(), true)?);
        eprintln!(
            "round {round}: ceiling {:.0}, sink {:.0}, sink+gzip {:.0} points/s",
            c[round], s[round], g[round]
        );
    }
    let (c, s, g) = (median(c), median(s), median(g));
    println!("| write | points/s | × ceiling |");
    println!("|---|---:|---:|");
    println!("| ceiling: pre-encoded line protocol, POSTed back to back | {c:.0} | 1.00 |");
    println!("| sink, gzip off | {s:.0} | {:.2} |", s / c);
    println!("| sink, gzip on (default) | {g:.0} | {:.2} |", g / c);
    println!(
        "({} readings, batches of {}, niceness {}, median of {} rounds)",
        args.readings, args.batch, args.nice, args.rounds
    );
    Ok(())
}
