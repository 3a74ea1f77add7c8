//! `store-ingest`: what storing committed batches costs on each engine (issue 14), to choose
//! how the PostgreSQL store writes readings.
//!
//! First the real ingest writer (`store::Writer`, SQLite, `synchronous = FULL`) commits
//! `--batches` batches of `--readings` pH readings from `--agents` agents, `--per-commit`
//! batches per transaction: the baseline. Then the rows it wrote (the `batches` dedupe rows
//! and the packed `reading_chunks`, byte for byte) are written again, with the same
//! transactions, to PostgreSQL (default settings: `fsync` and `synchronous_commit` on), in
//! the ways the PostgreSQL store could:
//!
//! - `pg-rows`: one prepared statement per row through `store::db` (the dedupe insert with
//!   `ON CONFLICT … DO NOTHING RETURNING`, then the batch's chunks);
//! - `pg-multirow`: one multi-row insert for the transaction's batches and one for its chunks;
//! - `pg-copy`: the batches' multi-row insert, and the chunks through `COPY … FROM STDIN
//!   (FORMAT binary)`;
//! - `sqlite-db`: `pg-rows`'s statements on SQLite through `store::db`, to show what the
//!   interface itself costs against the hand-tuned writer;
//! - `pg-writer`: the real ingest writer on PostgreSQL (`Writer::open_url`), which does what
//!   `pg-copy` does plus interning names and reading its own ids.
//!
//! Prints readings/s for each and the ratio to the writer's. The PostgreSQL database given by
//! `--postgres` is emptied (its tables truncated) before each run.

use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::Type;
use spotcheck_collector::config::Synchronous;
use spotcheck_collector::store::db::{self, Conn, DbUrl, Mode, Sql};
use spotcheck_collector::store::writer::Item;
use spotcheck_collector::store::Writer;
use spotcheck_protocol::{
    check, AgentId, Batch, Domain, EntityId, Limits, Metric, Quality, Reading, ReadingBatch, Seq,
    Unit, UnixMillis, Version,
};

#[derive(Parser)]
#[command(about = "Storing committed batches: SQLite's writer against PostgreSQL's options")]
struct Args {
    /// PostgreSQL database to write to (its tables are truncated).
    #[arg(long)]
    postgres: String,
    /// Batches in all.
    #[arg(long, default_value_t = 20_000)]
    batches: u64,
    /// Readings per batch.
    #[arg(long, default_value_t = 100)]
    readings: usize,
    /// Agents (each its own entity).
    #[arg(long, default_value_t = 50)]
    agents: u64,
    /// Batches per transaction.
    #[arg(long, default_value_t = 64)]
    per_commit: usize,
    /// Runs of each variant (the median is reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

/// A `batches` row: agent, seq, stream, items, received_ms, digest.
type BatchRow = (i64, i64, String, i64, i64, Option<Vec<u8>>);
/// A `reading_chunks` row: entity, metric, t0, t1, agent, seq, n, data.
type ChunkRow = (i64, i64, i64, i64, i64, i64, i64, Vec<u8>);

/// A committed batch's rows, as the writer stored them.
struct Rows {
    batch: BatchRow,
    chunks: Vec<ChunkRow>,
}

fn batches(args: &Args) -> anyhow::Result<Vec<(EntityId, spotcheck_protocol::Checked<Batch>)>> {
    let now = UnixMillis::now();
    let mut out = Vec::new();
    for i in 0..args.batches {
        let a = i % args.agents;
        let seq = i / args.agents + 1;
        let readings = (0..args.readings)
            .map(|j| Reading {
                metric: Metric::new(Metric::PH).unwrap(),
                value: 7.0 + (j % 50) as f64 / 100.0,
                unit: Unit::Ph,
                ts_ms: UnixMillis(now.0 - 1_000_000 + (seq as i64) * 1000 + j as i64),
                quality: Quality::Good,
            })
            .collect();
        let b = Batch::Readings(ReadingBatch {
            v: Version,
            agent: AgentId::new(format!("bench-{a}")).unwrap(),
            seq: Seq(seq),
            after: None,
            readings,
        });
        let checked = check(b, &Limits::default(), now).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        out.push((EntityId::new(format!("pool-{a}")).unwrap(), checked));
    }
    Ok(out)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let input = batches(&args)?;
    let readings = (args.batches as usize * args.readings) as f64;
    let pg_url: DbUrl = args.postgres.parse()?;
    let DbUrl::Postgres(pg_config) = &pg_url else {
        anyhow::bail!("--postgres must be a postgres:// URL");
    };

    // Baseline: the real writer.
    let mut writer_rates = Vec::new();
    let mut stored: Vec<Vec<Rows>> = Vec::new();
    for _ in 0..args.rounds {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("spotcheck.db");
        let mut w = Writer::open(&path, Synchronous::Full)?;
        let start = Instant::now();
        for group in input.chunks(args.per_commit) {
            let items: Vec<Item<'_>> = group
                .iter()
                .map(|(entity, batch)| Item::Batch {
                    entity,
                    domain: Domain::Pool,
                    batch,
                })
                .collect();
            w.commit(&items, UnixMillis::now())?;
        }
        writer_rates.push(readings / start.elapsed().as_secs_f64());
        drop(w);
        if stored.is_empty() {
            stored = read_back(&path, args.per_commit)?;
        }
    }
    let base = median(writer_rates);
    let chunks: usize = stored.iter().flatten().map(|r| r.chunks.len()).sum();
    println!(
        "{} batches of {} readings, {} agents, {} per transaction; {} chunk rows",
        args.batches, args.readings, args.agents, args.per_commit, chunks
    );
    let mut rates = Vec::new();
    for _ in 0..args.rounds {
        let dir = tempfile::tempdir()?;
        let url: DbUrl = format!("sqlite://{}", dir.path().join("s.db").display()).parse()?;
        let c = db::connect(&url, Mode::Write)?;
        rates.push(readings / rows_one_by_one(&c, &stored)?);
    }
    let same_rows = median(rates);
    println!("| variant | readings/s | ratio to the SQLite writer | ratio to sqlite-db (the same rows) |");
    println!("|---|---:|---:|---:|");
    println!(
        "| sqlite-writer | {base:.0} | 1.00× | {:.2}× |",
        base / same_rows
    );
    let report = |name: &str, rates: Vec<f64>| {
        let m = median(rates);
        println!(
            "| {name} | {m:.0} | {:.2}× | {:.2}× |",
            m / base,
            m / same_rows
        );
    };
    report("sqlite-db", vec![same_rows]);

    for (name, how) in [
        ("pg-rows", 0),
        ("pg-multirow", 1),
        ("pg-copy", 2),
        ("pg-writer", 3),
    ] {
        let mut rates = Vec::new();
        for _ in 0..args.rounds {
            let c = db::connect(&pg_url, Mode::Write)?;
            c.execute_batch("TRUNCATE batches, reading_chunks")?;
            let secs = match how {
                0 => rows_one_by_one(&c, &stored)?,
                1 => multirow(&stored, false, pg_config)?,
                2 => multirow(&stored, true, pg_config)?,
                _ => pg_writer(&pg_url, &input, args.per_commit)?,
            };
            rates.push(readings / secs);
        }
        report(name, rates);
    }
    Ok(())
}

/// The real ingest writer on PostgreSQL (`Writer::open_url`: one multi-row insert for the
/// commit's batches, one `COPY` for its chunks); seconds taken.
fn pg_writer(
    url: &DbUrl,
    input: &[(EntityId, spotcheck_protocol::Checked<Batch>)],
    per_commit: usize,
) -> anyhow::Result<f64> {
    let mut w = Writer::open_url(url, Synchronous::Full)?;
    let start = Instant::now();
    for group in input.chunks(per_commit) {
        let items: Vec<Item<'_>> = group
            .iter()
            .map(|(entity, batch)| Item::Batch {
                entity,
                domain: Domain::Pool,
                batch,
            })
            .collect();
        w.commit(&items, UnixMillis::now())?;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// The writer's rows, grouped by the transactions they were committed in.
fn read_back(path: &std::path::Path, per_commit: usize) -> anyhow::Result<Vec<Vec<Rows>>> {
    let c = rusqlite::Connection::open(path)?;
    let mut all: Vec<Rows> = c
        .prepare(
            "SELECT agent, seq, stream, items, received_ms, digest FROM batches ORDER BY received_ms, seq, agent",
        )?
        .query_map([], |r| {
            Ok(Rows {
                batch: (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?),
                chunks: Vec::new(),
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut chunks = c.prepare(
        "SELECT entity, metric, t0, t1, agent, seq, n, data FROM reading_chunks WHERE agent = ?1 AND seq = ?2",
    )?;
    for b in &mut all {
        b.chunks = chunks
            .query_map([b.batch.0, b.batch.1], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            })?
            .collect::<Result<_, _>>()?;
    }
    let mut groups = Vec::new();
    let mut it = all.into_iter().peekable();
    while it.peek().is_some() {
        groups.push(it.by_ref().take(per_commit).collect());
    }
    Ok(groups)
}

/// One statement per row, through `store::db`; seconds taken.
fn rows_one_by_one(c: &Conn, groups: &[Vec<Rows>]) -> anyhow::Result<f64> {
    let start = Instant::now();
    for g in groups {
        let tx = c.transaction()?;
        for r in g {
            let (agent, seq, stream, items, received, digest) = &r.batch;
            let new = tx.query_opt(
                "INSERT INTO batches (agent, seq, stream, items, received_ms, digest)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (agent, seq) DO NOTHING RETURNING seq",
                db::args![agent, seq, stream, items, received, digest],
                |r| r.get::<i64>(0),
            )?;
            anyhow::ensure!(new.is_some(), "batch {agent}/{seq} was already there");
            for (entity, metric, t0, t1, agent, seq, n, data) in &r.chunks {
                tx.execute(
                    "INSERT INTO reading_chunks (entity, metric, t0, t1, agent, seq, n, data)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    db::args![entity, metric, t0, t1, agent, seq, n, data],
                )?;
            }
        }
        tx.commit()?;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Multi-row inserts (and `COPY` for the chunks if `copy`); seconds taken. Uses the client
/// directly: `COPY` is not part of `store::db`.
fn multirow(groups: &[Vec<Rows>], copy: bool, config: &postgres::Config) -> anyhow::Result<f64> {
    let mut client = config.connect(postgres::NoTls).context("connecting")?;
    let start = Instant::now();
    for g in groups {
        let mut tx = client.transaction()?;
        let mut sql = String::from(
            "INSERT INTO batches (agent, seq, stream, items, received_ms, digest) VALUES ",
        );
        let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> = Vec::new();
        for (i, r) in g.iter().enumerate() {
            let (agent, seq, stream, items, received, digest) = &r.batch;
            let k = i * 6;
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "(${},${},${},${},${},${})",
                k + 1,
                k + 2,
                k + 3,
                k + 4,
                k + 5,
                k + 6
            ));
            params.extend([
                agent as &(dyn postgres::types::ToSql + Sync),
                seq,
                stream,
                items,
                received,
                digest,
            ]);
        }
        sql.push_str(" ON CONFLICT (agent, seq) DO NOTHING RETURNING agent, seq");
        let new = tx.query(&sql, &params)?;
        anyhow::ensure!(new.len() == g.len(), "some batches were already there");
        let chunks: Vec<_> = g.iter().flat_map(|r| &r.chunks).collect();
        if copy {
            let sink = tx.copy_in(
                "COPY reading_chunks (entity, metric, t0, t1, agent, seq, n, data) FROM STDIN (FORMAT binary)",
            )?;
            let types = [
                Type::INT8,
                Type::INT8,
                Type::INT8,
                Type::INT8,
                Type::INT8,
                Type::INT8,
                Type::INT8,
                Type::BYTEA,
            ];
            let mut w = BinaryCopyInWriter::new(sink, &types);
            for (entity, metric, t0, t1, agent, seq, n, data) in chunks {
                let row: [&(dyn postgres::types::ToSql + Sync); 8] =
                    [entity, metric, t0, t1, agent, seq, n, data];
                w.write(&row)?;
            }
            w.finish()?;
        } else {
            let mut sql = String::from(
                "INSERT INTO reading_chunks (entity, metric, t0, t1, agent, seq, n, data) VALUES ",
            );
            let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> = Vec::new();
            for (i, (entity, metric, t0, t1, agent, seq, n, data)) in chunks.into_iter().enumerate()
            {
                let k = i * 8;
                if i > 0 {
                    sql.push(',');
                }
                sql.push('(');
                sql.push_str(
                    &(1..=8)
                        .map(|j| format!("${}", k + j))
                        .collect::<Vec<_>>()
                        .join(","),
                );
                sql.push(')');
                params.extend([
                    entity as &(dyn postgres::types::ToSql + Sync),
                    metric,
                    t0,
                    t1,
                    agent,
                    seq,
                    n,
                    data,
                ]);
            }
            tx.execute(&sql, &params)?;
        }
        tx.commit()?;
    }
    Ok(start.elapsed().as_secs_f64())
}
