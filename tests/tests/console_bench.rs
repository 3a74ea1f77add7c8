//! Benchmarks of the console (BENCHMARKS.md, "Console"): time to a usable task queue with
//! 100,000 tasks in the store, and the bytes an idle open console moves, each beside a
//! baseline measured in the same run. Run with
//! `cargo test -p spotcheck-e2e --test console_bench -- --ignored --nocapture`
//! (`SPOTCHECK_BENCH_IDLE_S` sets the idle period, default 180 s).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spotcheck_e2e::api::*;
use spotcheck_e2e::browser::Browser;
use spotcheck_e2e::*;

const TASKS: i64 = 100_000;

/// Fills the store with `TASKS` tasks: mostly resolved and published drawn tasks, a tail of
/// open and acknowledged anomaly tasks of every severity, over a year of days.
fn fill(db: &rusqlite::Connection) {
    db.execute_batch("BEGIN").unwrap();
    let mut stmt = db
        .prepare(
            "INSERT INTO tasks (kind, entity, department, item, window_start, window_end, status,
             rule, severity, opened_ms, detail, updated_ms, draw)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7, ?8, ?9, ?10, ?9, ?11)",
        )
        .unwrap();
    let t0 = spotcheck_protocol::UnixMillis::now().0 - 365 * 86_400_000;
    for i in 0..TASKS {
        let anomaly = i % 4 == 0;
        let status = match (anomaly, i % 7) {
            (true, 0) => "open",
            (true, 1) => "acknowledged",
            (true, _) => "published",
            (false, 0) => "drawn",
            (false, 1) => "checked",
            (false, _) => "published",
        };
        let severity = anomaly.then(|| ["low", "medium", "high", "critical"][(i / 4 % 4) as usize]);
        let ts = t0 + i * (365 * 86_400_000 / TASKS);
        let day = china_day(ts);
        stmt.execute(rusqlite::params![
            if anomaly { "anomaly" } else { "random" },
            // At most one live anomaly task per (entity, rule): live ones get an entity each.
            if matches!(status, "open" | "acknowledged") {
                format!("91440305LIVE{i:06}")
            } else {
                format!("91440305BENCH{:05}", i % 300)
            },
            if i % 3 == 0 { "culture" } else { "health" },
            "pool-water-quality",
            day,
            status,
            anomaly.then_some("pool/free_chlorine"),
            severity,
            ts,
            "bench",
            // A drawn task names its draw (the store refuses to read one without).
            (!anomaly).then_some("bench-2026-b1"),
        ])
        .unwrap();
    }
    drop(stmt);
    db.execute_batch("COMMIT").unwrap();
}

/// `YYYY-MM-DD` of `ms` in China (UTC+8), by the civil-from-days algorithm.
fn china_day(ms: i64) -> String {
    let z = (ms + 8 * 3_600_000).div_euclid(86_400_000) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// A TCP relay to `target` that counts the bytes it carries both ways.
fn counting_proxy(target: std::net::SocketAddr) -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let bytes = Arc::new(AtomicU64::new(0));
    let counter = bytes.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(target) else {
                continue;
            };
            for (mut from, mut to) in [
                (client.try_clone().unwrap(), server.try_clone().unwrap()),
                (server, client),
            ] {
                let counter = counter.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 || to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        counter.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    let _ = to.shutdown(std::net::Shutdown::Both);
                });
            }
        }
    });
    (addr.to_string(), bytes)
}

/// Median wall time of `n` GETs of `path`.
fn median_ms(c: &Collector, path: &str, token: &str, n: usize) -> f64 {
    let mut times: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            let (s, _) = get(c, path, Some(token));
            assert_eq!(s, 200, "{path}");
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[n / 2]
}

#[test]
#[ignore = "benchmark (minutes): run with --ignored, figures in BENCHMARKS.md"]
fn console_with_100k_tasks_and_an_idle_hour() {
    if store::sqlite_only(
        "it fills the SQLite file directly; its figures in BENCHMARKS.md are SQLite's",
    ) {
        return;
    }
    let Some(browser) = spotcheck_e2e::browser::chromium() else {
        eprintln!("skipping: chromium is not installed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), None, &agent_binding(AGENT, ENTITY, "pool"));
    let token = admin_token(&c.data);
    let t = Instant::now();
    let db = rusqlite::Connection::open(c.data.join("spotcheck.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    fill(&db);
    eprintln!("filled {TASKS} tasks in {:.1} s", t.elapsed().as_secs_f64());

    // The API: the queue's pages beside the plain list the old console read.
    let n = 21;
    let rows = [
        (
            "baseline GET /api/v1/tasks?limit=50",
            "/api/v1/tasks?limit=50",
        ),
        ("GET /api/v1/queue (first page, counts)", "/api/v1/queue"),
        (
            "GET /api/v1/queue?status=open&severity=critical",
            "/api/v1/queue?status=open&severity=critical",
        ),
        (
            "GET /api/v1/queue?sort=severity",
            "/api/v1/queue?sort=severity",
        ),
        (
            "GET /api/v1/queue?offset=50000",
            "/api/v1/queue?offset=50000",
        ),
        (
            "GET /api/v1/queue?entity=BENCH00042",
            "/api/v1/queue?entity=BENCH00042",
        ),
    ];
    for (_, path) in rows {
        median_ms(&c, path, &token, 3); // warm the page cache and the statements
    }
    let base = median_ms(&c, rows[0].1, &token, n);
    for (what, path) in rows {
        let ms = median_ms(&c, path, &token, n);
        eprintln!("{what}: median {ms:.1} ms ({:.2}x the baseline)", ms / base);
    }

    // The browser: first contentful paint and the queue on screen, five fresh loads.
    let (proxy, bytes) = counting_proxy(c.http);
    let mut b = Browser::launch(&browser, &dir.path().join("profile"));
    let mut fcp = Vec::new();
    let mut filled = Vec::new();
    for i in 0..5 {
        b.navigate(&format!("http://{proxy}/?load={i}#token={token}&go=/queue"));
        b.wait_until(
            "the queue",
            "performance.getEntriesByName('queue-filled').length > 0 && document.querySelectorAll('#tasks tr.task').length === 50",
            Duration::from_secs(60),
        );
        let v = b.eval(
            "[performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? -1,
              performance.getEntriesByName('queue-filled')[0].startTime]",
        );
        fcp.push(v[0].as_f64().unwrap());
        filled.push(v[1].as_f64().unwrap());
    }
    fcp.sort_by(f64::total_cmp);
    filled.sort_by(f64::total_cmp);
    eprintln!(
        "browser: first contentful paint median {:.0} ms, queue filled median {:.0} ms (5 loads; min {:.0}, max {:.0})",
        fcp[2], filled[2], filled[0], filled[4]
    );
    // The stream is up once its first counts event (sent right after `ready`) arrived: from
    // then on nothing but keep-alives should cross the wire.
    b.wait_until(
        "the live stream's first counts",
        "document.getElementById('live').classList.contains('online') && Number(document.getElementById('live').dataset.counts) > 0",
        Duration::from_secs(30),
    );

    // Idle: nothing happens; count what crosses the wire.
    let idle = std::env::var("SPOTCHECK_BENCH_IDLE_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(180u64);
    let start = bytes.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(idle));
    let moved = bytes.load(Ordering::Relaxed) - start;
    let per_hour = moved as f64 * 3600.0 / idle as f64;

    // Baseline: one round of the requests the old console repeated every 2 s.
    let before = bytes.load(Ordering::Relaxed);
    let agent = ureq::agent();
    for path in [
        "/api/v1/stats",
        "/api/v1/public/draws?limit=10",
        "/api/v1/public/results?limit=20",
        "/api/v1/tasks?limit=50",
        "/api/v1/entities",
        "/api/v1/agents",
        "/api/v1/dead-letters?limit=20",
    ] {
        let mut r = agent
            .get(&format!("http://{proxy}{path}"))
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .unwrap();
        let _ = r.body_mut().read_to_vec().unwrap();
    }
    let round = bytes.load(Ordering::Relaxed) - before;
    let polled = round as f64 * 1800.0;
    eprintln!(
        "idle console: {moved} bytes in {idle} s = {:.1} KB/hour; polling every 2 s (the old console's requests, {round} bytes a round): {:.1} MB/hour; ratio {:.5}",
        per_hour / 1000.0,
        polled / 1e6,
        per_hour / polled
    );
    assert!(
        per_hour < 1e6,
        "an idle console moves less than 1 MB an hour"
    );
}
