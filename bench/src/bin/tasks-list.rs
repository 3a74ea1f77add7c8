//! `tasks-list`: latency of `GET /api/v1/tasks` with a large task table and many clients
//! (issue 11).
//!
//! Fills a fresh store with `--tasks` drawn tasks (two inspectors each, spread over 200
//! inspectors and 20,000 entities), serves the API in-process on 127.0.0.1, and runs
//! `--clients` concurrent clients, each on its own keep-alive connection, sending
//! `--requests` requests back to back. Three phases in one command:
//!
//! 1. baseline: `GET /api/v1/tasks?limit=1` as the admin (authentication, one row: the fixed
//!    cost of a request);
//! 2. the admin's queue: `GET /api/v1/tasks` (the default page, 100 tasks with their
//!    inspectors);
//! 3. an inspector's queue: `GET /api/v1/tasks` with an inspector's token (their tasks only).
//!
//! Prints p50, p90, p99 and max latency and the request rate of each, and the ratio of each
//! p99 to the baseline's.

use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use rusqlite::params;
use spotcheck_collector::api::{router, AppState};
use spotcheck_collector::config::Synchronous;
use spotcheck_collector::rulebook::Rulebook;
use spotcheck_collector::store;
use spotcheck_protocol::UnixMillis;

#[derive(Parser)]
#[command(about = "GET /api/v1/tasks latency with many tasks and concurrent clients")]
struct Args {
    /// Tasks in the store.
    #[arg(long, default_value_t = 100_000)]
    tasks: u32,
    /// Concurrent clients.
    #[arg(long, default_value_t = 50)]
    clients: usize,
    /// Requests per client and phase.
    #[arg(long, default_value_t = 200)]
    requests: usize,
}

const ADMIN: &str = "bench-admin-token-0123456789abcdef";
const INSPECTORS: u32 = 200;
const ENTITIES: u32 = 20_000;

fn code(i: u32) -> String {
    spotcheck_collector::registry::CreditCode::complete(&format!("91440300MA{i:07}"))
        .expect("a valid credit code")
        .to_string()
}

/// A fresh store with `n` drawn tasks, the admin's token and an inspector's.
fn fill(db: &std::path::Path, n: u32) -> anyhow::Result<String> {
    let mut conn = store::open_for_writing(db, Synchronous::Normal)?;
    let now = UnixMillis::now();
    {
        use spotcheck_collector::store::db::{connect, DbUrl, Mode};
        let users = connect(&DbUrl::Sqlite(db.to_owned()), Mode::Write)?;
        spotcheck_collector::users::store::bootstrap_with(&users, ADMIN, now)?;
    }
    let tx = conn.transaction()?;
    {
        let mut insp = tx.prepare(
            "INSERT INTO registry_inspectors (id, name, certificate, department, fields, active, conflicts)
             VALUES (?1, ?2, ?3, 'health', '[\"pool\"]', 1, '[]')",
        )?;
        for i in 0..INSPECTORS {
            insp.execute(params![
                format!("hb-{i:04}"),
                format!("inspector {i}"),
                format!("CERT-{i:06}")
            ])?;
        }
        let mut task = tx.prepare(
            "INSERT INTO tasks (id, draw, batch, kind, entity, department, item, window_start,
                                window_end, status, opened_ms, updated_ms)
             VALUES (?1, ?2, 'b1', 'random', ?3, 'health', 'pool-water-quality', '2026-03-01',
                     '2026-03-31', 'drawn', ?4, ?4)",
        )?;
        let mut team =
            tx.prepare("INSERT INTO task_inspectors (task, inspector) VALUES (?1, ?2)")?;
        for id in 1..=n {
            let draw = format!("2026-health-pool-b{}", id % 8 + 1);
            task.execute(params![id, draw, code(id % ENTITIES), now.0])?;
            let a = id % INSPECTORS;
            let b = (id * 7 + 3) % INSPECTORS;
            let b = if a == b { (b + 1) % INSPECTORS } else { b };
            team.execute(params![id, format!("hb-{a:04}")])?;
            team.execute(params![id, format!("hb-{b:04}")])?;
        }
    }
    // The inspector's token, as the API issues it.
    let user = spotcheck_collector::users::store::for_inspector(&tx, "hb-0001", now)?;
    let (_, secret) = spotcheck_collector::users::secrets::issue(&tx, user.id, "bench", 90, now)?;
    tx.commit()?;
    Ok(secret)
}

struct Phase {
    name: &'static str,
    lat_ms: Vec<f64>,
    elapsed: Duration,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `clients` threads, each with its own keep-alive agent, `requests` requests each.
fn run_phase(
    name: &'static str,
    addr: SocketAddr,
    path: &str,
    token: &str,
    clients: usize,
    requests: usize,
) -> anyhow::Result<Phase> {
    let url = format!("http://{addr}{path}");
    let start = Arc::new(Barrier::new(clients + 1));
    let mut handles = Vec::new();
    for _ in 0..clients {
        let (url, auth, start) = (url.clone(), format!("Bearer {token}"), start.clone());
        handles.push(std::thread::spawn(move || -> anyhow::Result<Vec<f64>> {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .max_idle_connections_per_host(1)
                .build()
                .into();
            // One warm-up request opens the connection.
            agent.get(&url).header("Authorization", &auth).call()?;
            start.wait();
            let mut lat = Vec::with_capacity(requests);
            for _ in 0..requests {
                let t = Instant::now();
                let body = agent
                    .get(&url)
                    .header("Authorization", &auth)
                    .call()?
                    .body_mut()
                    .read_to_string()?;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                anyhow::ensure!(body.starts_with('['), "not a task list: {body}");
            }
            Ok(lat)
        }));
    }
    start.wait();
    let t0 = Instant::now();
    let mut lat_ms = Vec::with_capacity(clients * requests);
    for h in handles {
        lat_ms.extend(h.join().expect("client thread")?);
    }
    let elapsed = t0.elapsed();
    lat_ms.sort_by(f64::total_cmp);
    Ok(Phase {
        name,
        lat_ms,
        elapsed,
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let db = store::db_path(dir.path());
    let t = Instant::now();
    let inspector_token = fill(&db, args.tasks).context("filling the store")?;
    println!(
        "{} tasks, {} inspectors, in {:.1} s",
        args.tasks,
        INSPECTORS,
        t.elapsed().as_secs_f64()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let addr = runtime.block_on(async {
        let state = AppState {
            credentials: Default::default(),
            stats: Default::default(),
            bindings: Default::default(),
            presence: Default::default(),
            store: spotcheck_collector::store::db::DbUrl::Sqlite(db.clone()),
            data_dir: db.parent().unwrap().to_owned(),
            people: Default::default(),
            rulebook: Rulebook::load(None).expect("default rule packs"),
            publish_within_days: 20,
            health: Default::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await });
        anyhow::Ok(addr)
    })?;
    let phases = [
        run_phase(
            "baseline: admin, ?limit=1",
            addr,
            "/api/v1/tasks?limit=1",
            ADMIN,
            args.clients,
            args.requests,
        )?,
        run_phase(
            "admin's queue (100 tasks)",
            addr,
            "/api/v1/tasks",
            ADMIN,
            args.clients,
            args.requests,
        )?,
        run_phase(
            "inspector's queue",
            addr,
            "/api/v1/tasks",
            &inspector_token,
            args.clients,
            args.requests,
        )?,
    ];
    let base = percentile(&phases[0].lat_ms, 0.99);
    println!(
        "{} clients x {} requests per phase",
        args.clients, args.requests
    );
    println!(
        "{:<28} {:>8} {:>8} {:>8} {:>8} {:>9} {:>10}",
        "phase", "p50 ms", "p90 ms", "p99 ms", "max ms", "req/s", "p99/base"
    );
    for p in &phases {
        let p99 = percentile(&p.lat_ms, 0.99);
        println!(
            "{:<28} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>9.0} {:>10.2}",
            p.name,
            percentile(&p.lat_ms, 0.5),
            percentile(&p.lat_ms, 0.9),
            p99,
            p.lat_ms.last().copied().unwrap_or_default(),
            p.lat_ms.len() as f64 / p.elapsed.as_secs_f64(),
            p99 / base
        );
    }
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}
