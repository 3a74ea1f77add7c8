//! The time-series sink against real servers: VictoriaMetrics through `/api/v2/write` (and a
//! restart of it mid-stream), a server that refuses every batch, one that asks for a later retry (429 with
//! `Retry-After`), and InfluxDB 1.x through the
//! v1 API, whose data then back every dashboard panel in `dashboards/`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use spotcheck_e2e::store::{self, open_sqlite};
use spotcheck_e2e::tsdb::{metric, Influx1, VictoriaMetrics};
use spotcheck_e2e::{args, bin, free_port, python_has, servers_required, wait_for, Proc, Sql};

const WAIT: Duration = Duration::from_secs(90);

/// One integer from the demo's store; 0 while the file or its tables do not exist yet.
fn try_count(data: &Path, sql: &str) -> i64 {
    if !data.join("spotcheck.db").exists() {
        return 0;
    }
    open_sqlite(data)
        .query_row(sql, args![], |r| r.get(0))
        .unwrap_or(0)
}

fn start_demo(dir: &Path, http: u16, influx: &[&str]) -> Proc {
    let data = dir.join("data");
    let (http, mqtt) = (
        format!("127.0.0.1:{http}"),
        format!("127.0.0.1:{}", free_port()),
    );
    let data = data.display().to_string();
    let mut args = vec![
        "--http",
        &http,
        "--mqtt",
        &mqtt,
        "--data",
        &data,
        "--per-domain",
        "2",
    ];
    args.extend_from_slice(influx);
    Proc::spawn("demo", &bin("spotcheck-demo"), &args, dir)
}

fn readings_in_store(dir: &Path) -> i64 {
    try_count(
        &dir.join("data"),
        "SELECT CAST(coalesce(sum(n), 0) AS BIGINT) FROM reading_chunks",
    )
}

fn events_in_store(dir: &Path) -> i64 {
    try_count(&dir.join("data"), "SELECT count(*) FROM events")
}

/// Polls `f` until it returns `expected` (points become visible after a short delay); fails
/// with the last value seen, so a loss or a duplicate shows as a number.
fn settles_at(what: &str, expected: i64, mut f: impl FnMut() -> i64) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let got = f();
        if got == expected {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: {got}, expected {expected} (the store's count)"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until the demo's store holds at least `n` more readings than now.
fn wait_for_more_readings(dir: &Path, demo: &mut Proc, n: i64) {
    let before = if dir.join("data/spotcheck.db").exists() {
        readings_in_store(dir)
    } else {
        0
    };
    wait_for(&format!("{n} more readings in the store"), WAIT, || {
        demo.assert_running();
        (dir.join("data/spotcheck.db").exists() && readings_in_store(dir) >= before + n)
            .then_some(())
    });
}

#[test]
fn victoria_metrics_gets_every_reading_exactly_once_across_a_restart() {
    if store::sqlite_only("the demo keeps its store in SQLite, the same on both legs") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(mut vm) = VictoriaMetrics::start(dir.path(), &[]) else {
        return;
    };
    let http = free_port();
    let url = vm.url();
    let mut demo = start_demo(dir.path(), http, &["--influx", &url]);

    wait_for("the first readings in VictoriaMetrics", WAIT, || {
        demo.assert_running();
        (vm.export("pool_value").len() >= 30).then_some(())
    });
    vm.stop();
    // While it is down: writes fail and are counted, ingest goes on, a backlog builds.
    wait_for("a failed write while VictoriaMetrics is down", WAIT, || {
        demo.assert_running();
        metric(http, "spotcheck_sink_write_errors_total").filter(|e| *e >= 1.0)
    });
    wait_for_more_readings(dir.path(), &mut demo, 30);
    wait_for("a backlog while VictoriaMetrics is down", WAIT, || {
        metric(http, "spotcheck_sink_backlog").filter(|b| *b >= 1.0)
    });
    let written = metric(http, "spotcheck_sink_points_written_total").unwrap_or(0.0);
    vm.restart();
    wait_for("the sink to write again after the restart", WAIT, || {
        demo.assert_running();
        metric(http, "spotcheck_sink_points_written_total").filter(|w| *w > written)
    });
    wait_for_more_readings(dir.path(), &mut demo, 20);
    let status = demo.signal_and_wait("TERM");
    assert!(status.success(), "the demo stops cleanly:\n{}", demo.log());

    let readings = readings_in_store(dir.path());
    let events = events_in_store(dir.path());
    assert!(readings > 0 && events > 0);
    // Every reading arrives, and none twice as a distinct point (the export keys by series
    // and timestamp: a point sent twice is one key; a reading lost or shifted changes the count).
    settles_at(
        "distinct reading points in VictoriaMetrics",
        readings,
        || vm.export("pool_value").len() as i64,
    );
    // Event records: one point each with count=1, so the counts add up to the store's rows.
    settles_at("event records counted in VictoriaMetrics", events, || {
        vm.export(r#"{__name__=~".+_events_count"}"#)
            .values()
            .sum::<f64>() as i64
    });
    assert!(
        demo.log()
            .contains("Write to the time-series store failed; retrying."),
        "the outage is logged"
    );
}

/// One answer of [`scripted_server`]: status line, extra headers, body.
type Answer = (&'static str, &'static str, &'static str);

/// A tiny HTTP server that answers the n-th request (from 0) with `answer(n)`; it returns its
/// port and when each request arrived.
fn scripted_server(answer: fn(usize) -> Answer) -> (u16, Arc<Mutex<Vec<Instant>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let arrivals = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let n = {
                let mut a = arrivals.lock().unwrap();
                a.push(Instant::now());
                a.len() - 1
            };
            let (status, headers, msg) = answer(n);
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{msg}",
                msg.len()
            );
        }
    });
    (port, seen)
}

/// A server that refuses every request with 400 and InfluxDB's error shape.
fn refusing_server() -> (u16, Arc<Mutex<Vec<Instant>>>) {
    scripted_server(|_| {
        (
            "400 Bad Request",
            "",
            r#"{"code":"invalid","message":"unable to parse points: test refusal"}"#,
        )
    })
}

#[test]
fn a_refused_batch_is_dead_lettered_with_the_servers_reason_and_ingest_never_stalls() {
    if store::sqlite_only("the demo keeps its store in SQLite, the same on both legs") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (port, requests) = refusing_server();
    let http = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut demo = start_demo(dir.path(), http, &["--influx", &url]);
    let data = dir.path().join("data");
    let dead = |min: i64| {
        (data.join("spotcheck.db").exists()
            && try_count(
                &data,
                "SELECT count(*) FROM dead_letters WHERE code = 'sink_http_400'",
            ) >= min)
            .then_some(())
    };
    wait_for("a sink dead letter", WAIT, || {
        demo.assert_running();
        dead(1)
    });
    let (reason, payload): (String, Vec<u8>) = open_sqlite(&data)
        .query_row(
            "SELECT reason, payload FROM dead_letters WHERE code = 'sink_http_400' LIMIT 1",
            args![],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(
        reason.contains("test refusal"),
        "the server's reason is kept: {reason}"
    );
    let lines = String::from_utf8(payload).unwrap();
    assert!(
        lines.lines().count() >= 1 && lines.contains(" value="),
        "the refused lines are kept: {lines}"
    );
    // The sink moves on (it does not resend a refused batch) and ingest keeps committing.
    wait_for_more_readings(dir.path(), &mut demo, 30);
    wait_for("a second dead letter", WAIT, || dead(2));
    let sent = requests.lock().unwrap().len() as i64;
    let rows = try_count(
        &data,
        "SELECT count(*) FROM dead_letters WHERE code = 'sink_http_400'",
    );
    assert!(
        sent <= rows + 1,
        "a refused batch is not retried: {sent} requests, {rows} dead letters"
    );
    let lettered = metric(http, "spotcheck_sink_points_dead_lettered_total").unwrap();
    assert!(
        lettered >= 2.0,
        "dead-lettered points are counted: {lettered}"
    );
    assert_eq!(
        metric(http, "spotcheck_sink_points_written_total"),
        Some(0.0)
    );
}

#[test]
fn a_busy_server_is_asked_again_after_its_retry_after_and_nothing_is_dead_lettered() {
    if store::sqlite_only("the demo keeps its store in SQLite, the same on both legs") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The first write is answered 429 with `Retry-After: 2`; every later one is taken.
    let (port, requests) = scripted_server(|n| match n {
        0 => (
            "429 Too Many Requests",
            "Retry-After: 2\r\n",
            r#"{"message":"busy"}"#,
        ),
        _ => ("204 No Content", "", ""),
    });
    let http = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut demo = start_demo(dir.path(), http, &["--influx", &url]);
    wait_for("points written after the 429", WAIT, || {
        demo.assert_running();
        metric(http, "spotcheck_sink_points_written_total")
            .filter(|w| *w > 0.0)
            .map(|_| ())
    });
    let arrivals = requests.lock().unwrap().clone();
    assert!(arrivals.len() >= 2, "{} requests", arrivals.len());
    let gap = arrivals[1] - arrivals[0];
    assert!(
        gap >= Duration::from_millis(1900),
        "the retry waited for Retry-After (2 s): it came after {gap:?}"
    );
    assert!(metric(http, "spotcheck_sink_write_errors_total").unwrap_or(0.0) >= 1.0);
    let data = dir.path().join("data");
    assert_eq!(
        try_count(
            &data,
            "SELECT count(*) FROM dead_letters WHERE code LIKE 'sink_http_%'"
        ),
        0,
        "a 429 is retried, never dead-lettered"
    );
    assert!(demo
        .log()
        .contains("Write to the time-series store failed; retrying."));
}

#[test]
fn influxdb_1x_gets_the_same_readings_and_every_dashboard_panel_returns_series() {
    if store::sqlite_only("the demo keeps its store in SQLite, the same on both legs") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(influx) = Influx1::start(dir.path(), "spotcheck") else {
        return;
    };
    let http = free_port();
    // VictoriaMetrics scrapes the demo's /metrics for the Prometheus panels.
    let scrape = dir.path().join("scrape.yml");
    std::fs::write(
        &scrape,
        format!(
            "scrape_configs:\n  - job_name: spotcheck\n    scrape_interval: 1s\n    static_configs:\n      - targets: ['127.0.0.1:{http}']\n"
        ),
    )
    .unwrap();
    let Some(vm) = VictoriaMetrics::start(
        dir.path(),
        &[format!("-promscrape.config={}", scrape.display())],
    ) else {
        return;
    };
    let url = influx.url();
    let mut demo = start_demo(
        dir.path(),
        http,
        &["--influx", &url, "--influx-v1-db", "spotcheck"],
    );
    let data = dir.path().join("data");
    wait_for(
        "events of every kind and readings in the store",
        WAIT,
        || {
            demo.assert_running();
            let db = data.join("spotcheck.db");
            (db.exists()
                && try_count(&data, "SELECT count(DISTINCT kind) FROM events") >= 4
                && readings_in_store(dir.path()) >= 60)
                .then_some(())
        },
    );
    wait_for("InfluxDB to hold events of every kind", WAIT, || {
        demo.assert_running();
        (influx.scalar("spotcheck", "SELECT sum(\"count\") FROM game_events") > 0
            && influx.scalar("spotcheck", "SELECT sum(\"count\") FROM hospital_events") > 0)
            .then_some(())
    });
    wait_for("a few scrapes of the demo's /metrics", WAIT, || {
        (vm.export("spotcheck_readings_ingested_total").len() >= 3).then_some(())
    });
    // The latency panel's quantile is empty (NaN) over a window in which nothing was
    // committed: wait until two scrapes saw the histogram's count move.
    wait_for(
        "commits between two scrapes of the latency histogram",
        WAIT,
        || {
            let counts: std::collections::BTreeSet<u64> = vm
                .export("spotcheck_ingest_commit_latency_seconds_count")
                .values()
                .map(|v| *v as u64)
                .collect();
            (counts.len() >= 2).then_some(())
        },
    );

    // Every panel of every dashboard, against the data above, while the demo runs.
    if python_has("grafana_foundation_sdk") {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let out = Command::new("python3")
            .arg(root.join("dashboards/check.py"))
            .args([
                "--influx",
                &influx.url(),
                "--database",
                "spotcheck",
                "--prometheus",
                &vm.url(),
            ])
            .output()
            .expect("python3 runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "dashboards/check.py failed:\n{text}");
        assert!(text.contains("panels checked"), "{text}");
    } else {
        assert!(!servers_required(), "grafana-foundation-sdk is not installed (pip install grafana-foundation-sdk; see .ci/run)");
        eprintln!("skipping the dashboard check: grafana-foundation-sdk is not installed");
    }

    let status = demo.signal_and_wait("TERM");
    assert!(status.success(), "the demo stops cleanly:\n{}", demo.log());
    let readings = readings_in_store(dir.path());
    settles_at("readings in InfluxDB", readings, || {
        influx.scalar("spotcheck", "SELECT count(\"value\") FROM pool")
    });
}
