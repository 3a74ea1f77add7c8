//! `soak check`: the final accounting and bounds of a soak run, from the sampled CSV and
//! the collector's `/metrics`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use serde_json::Value;

use crate::latency::{self, Buckets};

/// The Prometheus samples of `/metrics`: name with labels → value.
fn metrics(http: &str) -> anyhow::Result<BTreeMap<String, f64>> {
    let text = ureq::get(&format!("http://{http}/metrics"))
        .call()?
        .body_mut()
        .read_to_string()?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect())
}

fn metric(m: &BTreeMap<String, f64>, name: &str) -> u64 {
    m.get(name).copied().unwrap_or(0.0) as u64
}

fn rejected_by_reason(m: &BTreeMap<String, f64>) -> BTreeMap<String, u64> {
    m.iter()
        .filter_map(|(k, v)| {
            let r = k.strip_prefix("spotcheck_messages_rejected_total{reason=\"")?;
            Some((r.trim_end_matches("\"}").to_owned(), *v as u64))
        })
        .collect()
}

/// The reports of what ran beside ingest, where it did.
pub(crate) struct Beside {
    /// `soak api`'s report.
    pub api: Option<std::path::PathBuf>,
    /// `soak console`'s report.
    pub console: Option<std::path::PathBuf>,
}

/// Per minute of the run: (minute, messages committed, p99 ingest-to-commit latency in ms).
fn latency_by_minute(samples: &[Sample]) -> Vec<(usize, f64, Option<f64>)> {
    let with: Vec<(&Sample, &Buckets)> = samples
        .iter()
        .filter_map(|s| s.latency.as_ref().map(|l| (s, l)))
        .collect();
    let mut out = Vec::new();
    let mut start = 0;
    while start < with.len() {
        let t0 = with[start].0.elapsed_s;
        let Some(end) = (start + 1..with.len()).find(|&j| with[j].0.elapsed_s >= t0 + 60.0) else {
            break;
        };
        let (a, b) = (with[start].1, with[end].1);
        out.push((
            out.len() + 1,
            latency::observed(a, b),
            latency::quantile(a, b, 0.99).map(|s| s * 1000.0),
        ));
        start = end;
    }
    out
}

/// One sampled row of the CSV.
struct Sample {
    elapsed_s: f64,
    rss_kb: f64,
    fds: f64,
    data_bytes: f64,
    kept_back: f64,
    healthz: String,
    api_bad: f64,
    /// The ingest-to-commit histogram at this sample (CSVs of older runs have none).
    latency: Option<Buckets>,
}

fn read_csv(path: &Path) -> anyhow::Result<Vec<Sample>> {
    let text = std::fs::read_to_string(path)?;
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().context("empty CSV")?.split(',').collect();
    let col = |name: &str| {
        head.iter()
            .position(|h| *h == name)
            .with_context(|| format!("CSV has no column {name}"))
    };
    let (e, r, f, d, k, h, a) = (
        col("elapsed_s")?,
        col("rss_kb")?,
        col("fds")?,
        col("data_bytes")?,
        col("kept_back")?,
        col("healthz")?,
        col("api_bad")?,
    );
    let lat = head.iter().position(|h| *h == "latency_buckets");
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Vec<&str> = l.split(',').collect();
            let num = |i: usize| -> anyhow::Result<f64> {
                v.get(i)
                    .and_then(|s| s.parse().ok())
                    .with_context(|| format!("bad CSV row {l:?}"))
            };
            Ok(Sample {
                elapsed_s: num(e)?,
                rss_kb: num(r)?,
                fds: num(f)?,
                data_bytes: num(d)?,
                kept_back: num(k)?,
                healthz: v.get(h).unwrap_or(&"").to_string(),
                api_bad: num(a)?,
                latency: lat.and_then(|i| v.get(i)).and_then(|c| latency::parse(c)),
            })
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn check(
    data: &Path,
    http: &str,
    report: &Path,
    csv: &Path,
    agents: &[String],
    quota: u64,
    max_held: u64,
    settle_s: u64,
    beside: &Beside,
) -> anyhow::Result<()> {
    let report: Value = serde_json::from_slice(&std::fs::read(report)?)?;
    let expect = |k: &str| report["expect"][k].as_u64().unwrap_or(0);
    let mut failures: Vec<String> = Vec::new();
    let mut fail = |ok: bool, what: String| {
        println!("- {} {what}", if ok { "ok:" } else { "FAILED:" });
        if !ok {
            failures.push(what);
        }
    };

    // The last rejections (batches kept back are let go on a timer) arrive within settle_s.
    let deadline = Instant::now() + Duration::from_secs(settle_s);
    let m = loop {
        let m = metrics(http)?;
        let rejected: u64 = rejected_by_reason(&m).values().sum();
        if rejected >= expect("messages_rejected") && metric(&m, "spotcheck_batches_kept_back") == 0
            || Instant::now() > deadline
        {
            break m;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let reasons = rejected_by_reason(&m);
    let rejected: u64 = reasons.values().sum();
    println!("rejections by reason: {reasons:?}");

    let db = rusqlite::Connection::open_with_flags(
        data.join("spotcheck.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    db.busy_timeout(Duration::from_secs(10))?;
    let one = |sql: &str, p: &[&dyn rusqlite::ToSql]| -> anyhow::Result<i64> {
        Ok(db
            .query_row(sql, p, |r| r.get::<_, Option<i64>>(0))?
            .unwrap_or(0))
    };

    // The real agents: every batch they made stored exactly once and whole, none rejected.
    let mut made_total = 0u64;
    let mut items_total = 0i64;
    for a in agents {
        let (id, spool) = a.split_once('=').context("--agent id=spool_dir")?;
        let made = spotcheck_agent::spool_next_seq(Path::new(spool))? - 1;
        made_total += made;
        let agent_row = one("SELECT id FROM agents WHERE name = ?1", &[&id])?;
        let stored = one(
            "SELECT count(*) FROM batches WHERE agent = ?1",
            &[&agent_row],
        )? as u64;
        let span = one(
            "SELECT coalesce(max(seq), 0) - coalesce(min(seq), 1) + 1 FROM batches WHERE agent = ?1",
            &[&agent_row],
        )? as u64;
        let items = one(
            "SELECT sum(items) FROM batches WHERE agent = ?1",
            &[&agent_row],
        )?;
        let readings = one(
            "SELECT sum(n) FROM reading_chunks WHERE agent = ?1",
            &[&agent_row],
        )?;
        let events = one(
            "SELECT count(*) FROM events WHERE agent = ?1",
            &[&agent_row],
        )?;
        let dead = one("SELECT count(*) FROM dead_letters WHERE agent = ?1", &[&id])?;
        items_total += items;
        fail(
            stored == made && span == made,
            format!("{id}: made {made} batches, stored {stored} (seq 1..{span})"),
        );
        fail(
            items == readings + events,
            format!(
                "{id}: {items} items in its batches = {readings} readings + {events} events stored"
            ),
        );
        fail(dead == 0, format!("{id}: {dead} dead letters"));
    }

    // The hostile agent: its two good batches a round stored, one of them flagged.
    let evil = one("SELECT id FROM agents WHERE name = 'soak-evil'", &[])?;
    let evil_stored = one("SELECT count(*) FROM batches WHERE agent = ?1", &[&evil])? as u64;
    fail(
        evil_stored == expect("evil_batches_stored"),
        format!(
            "soak-evil: {evil_stored} batches stored, {} sent to be stored",
            expect("evil_batches_stored")
        ),
    );
    let oor = metric(&m, "spotcheck_readings_out_of_range_total");
    fail(
        oor == expect("readings_out_of_range"),
        format!(
            "readings out of range: {oor} flagged, {} sent",
            expect("readings_out_of_range")
        ),
    );

    // Every hostile message counted under its reason.
    fail(
        rejected == expect("messages_rejected"),
        format!(
            "messages rejected: {rejected} counted, {} hostile messages sent to be rejected",
            expect("messages_rejected")
        ),
    );
    let r = |k: &str| reasons.get(k).copied().unwrap_or(0);
    // Every reason the trickle provokes, each counted exactly (the garbage on soak-evil's
    // topic, being unsigned, is `bad_mac`).
    for code in [
        "seq_reused",
        "wrong_domain",
        "bad_mac",
        "too_large",
        "unknown_agent",
    ] {
        fail(
            r(code) == expect(code),
            format!("{code}: {} counted, {} sent", r(code), expect(code)),
        );
    }
    fail(
        r("gap_not_filled") + r("held_full") == expect("held"),
        format!(
            "kept back and let go: {} gap_not_filled + {} held_full, {} sent",
            r("gap_not_filled"),
            r("held_full"),
            expect("held")
        ),
    );
    let refused = metric(&m, "spotcheck_broker_refused_oversized_total");
    fail(
        refused == expect("broker_refused_oversized")
            && expect("oversized_connection_closed") == expect("broker_refused_oversized"),
        format!(
            "oversized packets: {refused} refused by the broker (counted), {} sent, {} connections closed",
            expect("broker_refused_oversized"),
            expect("oversized_connection_closed")
        ),
    );

    // Bounds: dead letters not confirmed to an agent stay within the quota per source and day.
    let mut st = db.prepare(
        "SELECT CASE WHEN d.agent IN (SELECT name FROM agents) THEN d.agent ELSE 'unknown' END,
                d.received_ms / 86400000, sum(length(d.payload)), count(*)
         FROM dead_letters d WHERE d.seq IS NULL GROUP BY 1, 2",
    )?;
    let rows: Vec<(String, i64, i64, i64)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    for (source, day, bytes, n) in &rows {
        fail(
            *bytes as u64 <= quota,
            format!("dead letters of source {source} on day {day}: {n} kept, {bytes} bytes (quota {quota})"),
        );
    }
    let over = metric(&m, "spotcheck_dead_letters_over_quota_total");
    let kept = one("SELECT count(*) FROM dead_letters", &[])? as u64;
    fail(
        kept + over == rejected,
        format!(
            "{kept} dead letters kept + {over} only counted (over quota) = {rejected} rejected"
        ),
    );
    let check: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    fail(check == "ok", format!("PRAGMA integrity_check: {check}"));

    // Over time: memory, files, kept-back batches, health.
    let samples = read_csv(csv)?;
    ensure!(samples.len() >= 8, "too few samples ({})", samples.len());
    let warm = samples.len() / 10;
    let (first, second) = samples[warm..].split_at((samples.len() - warm) / 2);
    let max = |s: &[Sample], f: fn(&Sample) -> f64| s.iter().map(f).fold(f64::MIN, f64::max);
    let rss1 = max(first, |s| s.rss_kb);
    let rss2 = max(second, |s| s.rss_kb);
    fail(
        rss2 <= rss1 * 1.10 + 8192.0,
        format!(
            "memory plateau: max RSS {:.1} MiB in the first half after warm-up, {:.1} MiB in the second (allowed: +10 % + 8 MiB)",
            rss1 / 1024.0,
            rss2 / 1024.0
        ),
    );
    let fds1 = max(first, |s| s.fds);
    let fds2 = max(second, |s| s.fds);
    fail(
        fds2 <= fds1 + 8.0,
        format!("open files: max {fds1} in the first half, {fds2} in the second"),
    );
    let held = max(&samples, |s| s.kept_back);
    fail(
        held <= max_held as f64,
        format!("batches kept back: at most {held} at once (bound {max_held})"),
    );
    let unhealthy = samples.iter().filter(|s| s.healthz != "200").count();
    fail(
        unhealthy == 0,
        format!("/healthz not 200 in {unhealthy} samples"),
    );
    let api_bad: f64 = samples.iter().map(|s| s.api_bad).sum();
    fail(
        api_bad == 0.0,
        format!("API answers other than expected: {api_bad}"),
    );

    // Beside ingest: the API traffic answered, the console stayed live.
    let read_json = |p: &Path| -> anyhow::Result<Value> {
        Ok(serde_json::from_slice(&std::fs::read(p).with_context(
            || format!("cannot read {}", p.display()),
        )?)?)
    };
    let api = beside.api.as_deref().map(read_json).transpose()?;
    if let Some(a) = &api {
        fail(
            a["errors"] == 0 && a["requests"].as_u64().unwrap_or(0) > 0,
            format!(
                "API traffic: {} requests, {} not 200 {}",
                a["requests"], a["errors"], a["failures"]
            ),
        );
    }
    let console = beside.console.as_deref().map(read_json).transpose()?;
    if let Some(c) = &console {
        fail(
            c["probes_offline"] == 0 && c["script_errors"] == 0,
            format!(
                "console: {} probes, live stream down in {}, {} script errors",
                c["probes"], c["probes_offline"], c["script_errors"]
            ),
        );
    }
    let minutes = latency_by_minute(&samples);
    let p99s: Vec<f64> = minutes.iter().filter_map(|m| m.2).collect();
    if samples.iter().any(|s| s.latency.is_some()) {
        fail(
            !p99s.is_empty(),
            format!(
                "ingest-to-commit latency measured in {} minutes",
                p99s.len()
            ),
        );
    }

    let (s0, s1) = (&samples[0], &samples[samples.len() - 1]);
    let hours = (s1.elapsed_s - s0.elapsed_s) / 3600.0;
    let mib = |kb: f64| kb / 1024.0;
    println!();
    println!("| figure | value |");
    println!("|---|---:|");
    println!(
        "| samples | {} over {:.1} min |",
        samples.len(),
        hours * 60.0
    );
    println!(
        "| collector RSS start / end / max | {:.1} / {:.1} / {:.1} MiB |",
        mib(s0.rss_kb),
        mib(s1.rss_kb),
        mib(max(&samples, |s| s.rss_kb))
    );
    println!(
        "| open files start / end / max | {} / {} / {} |",
        s0.fds,
        s1.fds,
        max(&samples, |s| s.fds)
    );
    println!(
        "| data dir start / end | {:.1} / {:.1} MiB ({:.1} MiB per hour) |",
        s0.data_bytes / 1048576.0,
        s1.data_bytes / 1048576.0,
        (s1.data_bytes - s0.data_bytes) / 1048576.0 / hours.max(1e-9)
    );
    println!("| real agents' batches made = stored | {made_total} ({items_total} readings and records) |");
    println!(
        "| readings / events ingested (all agents) | {} / {} |",
        metric(&m, "spotcheck_readings_ingested_total"),
        metric(&m, "spotcheck_events_ingested_total")
    );
    println!(
        "| hostile messages published (rounds) | {} ({}) |",
        report["published"], report["rounds"]
    );
    println!("| messages rejected (kept / only counted) | {rejected} ({kept} / {over}) |");
    println!("| broker refusals (oversized) | {refused} |");
    println!("| readings stored flagged out of range | {oor} |");
    println!("| batches kept back, max at once | {held} |");
    println!(
        "| duplicates dropped | {} |",
        metric(&m, "spotcheck_duplicates_dropped_total")
    );
    println!(
        "| store commits | {} |",
        metric(&m, "spotcheck_store_commits_total")
    );
    if let Some(a) = &api {
        println!(
            "| API requests (rate) / p50 / p99 / max | {} ({}/s) / {:.1} / {:.1} / {:.1} ms |",
            a["requests"],
            a["rate_per_s"],
            a["p50_ms"].as_f64().unwrap_or(0.0),
            a["p99_ms"].as_f64().unwrap_or(0.0),
            a["max_ms"].as_f64().unwrap_or(0.0)
        );
    }
    if let Some(c) = &console {
        let last = &c["samples"][c["samples"]
            .as_array()
            .map_or(0, |v| v.len().saturating_sub(1))]["page"];
        println!(
            "| console probes (live) / `counts` events / API reads / bytes fetched | {} ({}) / {} / {} / {:.1} MiB |",
            c["probes"],
            c["probes"].as_u64().unwrap_or(0) - c["probes_offline"].as_u64().unwrap_or(0),
            last["counts"],
            last["reads"],
            last["bytes"].as_f64().unwrap_or(0.0) / 1048576.0
        );
    }
    if !p99s.is_empty() {
        let mut sorted = p99s.clone();
        sorted.sort_by(f64::total_cmp);
        println!(
            "| p99 ingest-to-commit per minute: median / max | {:.1} / {:.1} ms |",
            sorted[(sorted.len() - 1) / 2],
            sorted[sorted.len() - 1]
        );
        println!();
        println!("| minute | messages committed | p99 ingest-to-commit |");
        println!("|---:|---:|---:|");
        for (m, n, p) in &minutes {
            let p = p.map_or("–".to_owned(), |p| format!("{p:.1} ms"));
            println!("| {m} | {n} | {p} |");
        }
    }
    println!();
    if failures.is_empty() {
        println!("soak check: all passed");
        Ok(())
    } else {
        bail!("soak check: {} failed: {failures:#?}", failures.len())
    }
}
