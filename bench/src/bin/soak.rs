//! `soak`: the two halves of `bench/soak.sh` that a shell script cannot do well.
//!
//! - `soak hostile`: a steady trickle of hostile input into the embedded broker for a given
//!   time, logged in as a registered agent (`soak-evil`, pool): garbage from unknown sources
//!   (empty, truncated, NUL bytes, deep nesting, an unknown agent), and from `soak-evil` a
//!   reused sequence number, an event kind of the wrong domain, an impossible pH, a batch
//!   kept back behind a gap that never fills, a forged MAC; now and then a payload over
//!   `limits.max_payload_bytes` (dead letter `too_large`) and one over the broker's packet
//!   limit (refused by the broker on its own connection). Writes what it sent, and what the
//!   collector must therefore have counted, to a JSON report.
//! - `soak check`: after the run, asserts the accounting (every batch the real agents made is
//!   stored exactly once and whole; every hostile message is counted under its reason; the
//!   dead-letter quota held) and the bounds over the sampled CSV (memory plateau, open files,
//!   kept-back batches, `/healthz`), and prints the figures as a Markdown table.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use clap::{Parser, Subcommand};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use spotcheck_bench::{parse_broker, MAX_PACKET_BYTES};
use spotcheck_protocol::{AgentKey, KeyGeneration, UnixMillis};

#[derive(Parser)]
#[command(about = "The hostile trickle and the final checks of bench/soak.sh")]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Publish hostile input for a while; write what was sent to --report.
    Hostile {
        /// The embedded broker, host:port.
        #[arg(long)]
        broker: String,
        /// The credential file of the registered agent to log in and sign as.
        #[arg(long)]
        credential: PathBuf,
        /// Its agent id (a pool agent).
        #[arg(long, default_value = "soak-evil")]
        agent: String,
        /// Its entity.
        #[arg(long, default_value = "soak-evil-pool")]
        entity: String,
        /// Seconds to run.
        #[arg(long)]
        duration_s: u64,
        /// One round of every kind of hostile message per this many milliseconds.
        #[arg(long, default_value_t = 2000)]
        period_ms: u64,
        /// A `too_large` payload every this many rounds (0: never).
        #[arg(long, default_value_t = 10)]
        too_large_every: u64,
        /// A packet over the broker's limit every this many rounds (0: never).
        #[arg(long, default_value_t = 60)]
        oversized_every: u64,
        /// Where to write the JSON report.
        #[arg(long)]
        report: PathBuf,
    },
    /// Check the accounting and the bounds after a run.
    Check {
        /// The collector's data directory.
        #[arg(long)]
        data: PathBuf,
        /// The collector's HTTP address, host:port.
        #[arg(long)]
        http: String,
        /// The hostile trickle's report.
        #[arg(long)]
        report: PathBuf,
        /// The sampled CSV.
        #[arg(long)]
        csv: PathBuf,
        /// A real agent's `id=spool_dir` (repeat for each).
        #[arg(long = "agent")]
        agents: Vec<String>,
        /// `ingest.dead_letter_quota_bytes` of the run.
        #[arg(long)]
        quota: u64,
        /// `ingest.max_held` of the run.
        #[arg(long)]
        max_held: u64,
        /// How long to wait for the last counts to arrive.
        #[arg(long, default_value_t = 120)]
        settle_s: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Args::parse().cmd {
        Cmd::Hostile {
            broker,
            credential,
            agent,
            entity,
            duration_s,
            period_ms,
            too_large_every,
            oversized_every,
            report,
        } => {
            let (key, password) = read_credential(&credential)?;
            let h = Hostile {
                broker: parse_broker(&broker)?,
                key,
                password,
                agent,
                entity,
            };
            let r = h
                .run(
                    Duration::from_secs(duration_s),
                    Duration::from_millis(period_ms),
                    too_large_every,
                    oversized_every,
                )
                .await?;
            std::fs::write(&report, serde_json::to_vec_pretty(&r)?)?;
            eprintln!("soak hostile: {r}");
            Ok(())
        }
        Cmd::Check {
            data,
            http,
            report,
            csv,
            agents,
            quota,
            max_held,
            settle_s,
        } => check(
            &data, &http, &report, &csv, &agents, quota, max_held, settle_s,
        ),
    }
}

/// An agent's key and broker password from its credential file.
fn read_credential(path: &Path) -> anyhow::Result<(AgentKey, String)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let t: toml::Table = text.parse().context("not a credential file")?;
    let generation = t
        .get("generation")
        .and_then(|v| v.as_integer())
        .context("no generation")? as u32;
    let key = AgentKey::from_hex(
        KeyGeneration(generation),
        t.get("key").and_then(|v| v.as_str()).context("no key")?,
    )?;
    let password = t
        .get("password")
        .and_then(|v| v.as_str())
        .context("no password")?
        .to_owned();
    Ok((key, password))
}

struct Hostile {
    broker: (String, u16),
    key: AgentKey,
    password: String,
    agent: String,
    entity: String,
}

/// The held batches' numbers start here, far beyond what the run stores.
const HELD_BASE: u64 = 1_000_000_000;

fn now_ms() -> i64 {
    UnixMillis::now().0
}

impl Hostile {
    fn options(&self, suffix: &str) -> MqttOptions {
        let mut o = MqttOptions::new(
            format!("{}-soak-{suffix}-{}", self.agent, std::process::id()),
            &self.broker.0,
            self.broker.1,
        );
        o.set_credentials(&self.agent, &self.password)
            .set_clean_session(true)
            .set_keep_alive(Duration::from_secs(30))
            .set_max_packet_size(4 * MAX_PACKET_BYTES, 4 * MAX_PACKET_BYTES);
        o
    }

    fn batch(&self, seq: u64, after: Option<u64>, ph: f64) -> Vec<u8> {
        let after = after.map_or(String::new(), |a| format!(r#""after":{a},"#));
        format!(
            r#"{{{after}"v":1,"agent":"{}","seq":{seq},"readings":[{{"metric":"ph","value":{ph},"unit":"pH","ts_ms":{}}}]}}"#,
            self.agent,
            now_ms()
        )
        .into_bytes()
    }

    async fn run(
        &self,
        duration: Duration,
        period: Duration,
        too_large_every: u64,
        oversized_every: u64,
    ) -> anyhow::Result<Value> {
        let (client, mut eventloop) = AsyncClient::new(self.options("main"), 64);
        let acked = Arc::new(AtomicU64::new(0));
        let connects = Arc::new(AtomicU64::new(0));
        let driver = {
            let (acked, connects) = (acked.clone(), connects.clone());
            tokio::spawn(async move {
                loop {
                    match eventloop.poll().await {
                        Ok(Event::Incoming(Packet::PubAck(_))) => {
                            acked.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            connects.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            eprintln!("soak hostile: connection: {e}; reconnecting");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            })
        };
        let readings = format!("spotcheck/v1/pool/{}/{}/readings", self.entity, self.agent);
        let events = format!("spotcheck/v1/pool/{}/{}/events", self.entity, self.agent);
        let forged = AgentKey::new(self.key.generation(), [0x5a; 32])?;
        let mut sent: BTreeMap<&'static str, u64> = BTreeMap::new();
        let mut published = 0u64;
        let mut seq = 1u64;
        let mut rounds = 0u64;
        let mut oversized_refused = 0u64;
        let started = Instant::now();
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while started.elapsed() < duration {
            tick.tick().await;
            rounds += 1;
            let stranger = format!("spotcheck/v1/pool/pool-x/stranger{}/readings", rounds % 97);
            let deep = "[".repeat(10_000);
            let mut round: Vec<(&'static str, String, Vec<u8>)> = vec![
                // Garbage on the registered agent's topic (charged to its quota) …
                ("empty", readings.clone(), Vec::new()),
                ("truncated", readings.clone(), br#"{"v":1,"agent":"#.to_vec()),
                ("nul", readings.clone(), b"\0\0\0{\0}".to_vec()),
                ("deep", readings.clone(), deep.into_bytes()),
                // … and a batch of an agent nobody registered (the source `unknown`).
                (
                    "unknown_agent",
                    stranger.clone(),
                    format!(
                        r#"{{"v":1,"agent":"stranger{}","seq":1,"readings":[{{"metric":"ph","value":7.1,"unit":"pH","ts_ms":{}}}]}}"#,
                        rounds % 97,
                        now_ms()
                    )
                    .into_bytes(),
                ),
                // A batch stored, then its number reused with other content.
                (
                    "stored",
                    readings.clone(),
                    spotcheck_protocol::mac::sign(&self.key, &self.batch(seq, None, 7.2)),
                ),
                (
                    "seq_reused",
                    readings.clone(),
                    spotcheck_protocol::mac::sign(&self.key, &self.batch(seq, None, 7.3)),
                ),
                (
                    "wrong_domain",
                    events.clone(),
                    spotcheck_protocol::mac::sign(
                        &self.key,
                        format!(
                            r#"{{"v":1,"agent":"{}","seq":{},"events":[{{"kind":"game_payment","id":"p{rounds}","player":"u1","age_band":"adult","amount_fen":600,"ts_ms":{}}}]}}"#,
                            self.agent,
                            seq + 1,
                            now_ms()
                        )
                        .as_bytes(),
                    ),
                ),
                // pH −1 cannot be measured: stored, flagged bad.
                (
                    "stored_out_of_range",
                    readings.clone(),
                    spotcheck_protocol::mac::sign(&self.key, &self.batch(seq + 2, None, -1.0)),
                ),
                // Kept back behind a number far ahead of anything stored, which never
                // comes: let go on the timer. (A batch behind a nearer gap would be let
                // through once a later batch without `after` raised the agent's highest
                // stored number past it.)
                (
                    "held",
                    readings.clone(),
                    spotcheck_protocol::mac::sign(
                        &self.key,
                        &self.batch(HELD_BASE + rounds, Some(HELD_BASE + rounds - 1), 7.2),
                    ),
                ),
                (
                    "bad_mac",
                    readings.clone(),
                    spotcheck_protocol::mac::sign(&forged, &self.batch(seq + 3, None, 7.2)),
                ),
            ];
            seq += 3; // seq + 3 was forged, so it is still free for the next round
            if too_large_every > 0 && rounds % too_large_every == 0 {
                let mut big = br#"{"v":1,"agent":"stranger","seq":9,"pad":""#.to_vec();
                big.resize(258 * 1024, b'x');
                big.extend_from_slice(b"\"}");
                round.push(("too_large", stranger.clone(), big));
            }
            for (kind, topic, payload) in round {
                client
                    .publish(topic, QoS::AtLeastOnce, false, payload)
                    .await
                    .context("the hostile connection's event loop stopped")?;
                published += 1;
                *sent.entry(kind).or_default() += 1;
            }
            if oversized_every > 0 && rounds % oversized_every == 0 {
                *sent.entry("oversized").or_default() += 1;
                if self.oversized(rounds).await? {
                    oversized_refused += 1;
                }
            }
        }
        // Every QoS 1 publish acknowledged by the broker (it then has it).
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked.load(Ordering::SeqCst) < published {
            ensure!(
                Instant::now() < deadline,
                "the broker acknowledged {} of {published} hostile publishes",
                acked.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = client.disconnect().await;
        driver.abort();
        let n = |k: &str| sent.get(k).copied().unwrap_or(0);
        // What the collector must count: everything but the two stored kinds is a rejection;
        // the oversized ones are the broker's refusals.
        let rejected: u64 = sent
            .iter()
            .filter(|(k, _)| !matches!(**k, "stored" | "stored_out_of_range" | "oversized"))
            .map(|(_, v)| v)
            .sum();
        Ok(json!({
            "rounds": rounds,
            "published": published,
            "connects": connects.load(Ordering::SeqCst),
            "sent": sent,
            "expect": {
                "messages_rejected": rejected,
                "evil_batches_stored": n("stored") + n("stored_out_of_range"),
                "readings_out_of_range": n("stored_out_of_range"),
                "broker_refused_oversized": n("oversized"),
                "oversized_connection_closed": oversized_refused,
                "seq_reused": n("seq_reused"),
                "wrong_domain": n("wrong_domain"),
                // Unsigned garbage on a registered agent's topic fails authentication first.
                "bad_mac": n("bad_mac") + n("empty") + n("truncated") + n("nul") + n("deep"),
                "held": n("held"),
                "too_large": n("too_large"),
                "unknown_agent": n("unknown_agent"),
            }
        }))
    }

    /// A packet over the broker's limit on a connection of its own; whether the broker closed
    /// that connection (as it must).
    async fn oversized(&self, round: u64) -> anyhow::Result<bool> {
        let (client, mut eventloop) = AsyncClient::new(self.options(&format!("big{round}")), 4);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut published = false;
        loop {
            let polled = tokio::time::timeout_at(deadline, eventloop.poll()).await;
            match polled {
                Err(_) => return Ok(false),
                Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) if !published => {
                    let mut huge =
                        format!(r#"{{"v":1,"agent":"{}","pad":""#, self.agent).into_bytes();
                    huge.resize(300 * 1024, b'x');
                    huge.extend_from_slice(b"\"}");
                    client
                        .publish(
                            format!("spotcheck/v1/pool/{}/{}/readings", self.entity, self.agent),
                            QoS::AtMostOnce,
                            false,
                            huge,
                        )
                        .await?;
                    published = true;
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) if published => {
                    let _ = e;
                    return Ok(true);
                }
                Ok(Err(e)) => bail!("the oversized connection failed before publishing: {e}"),
            }
        }
    }
}

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

/// One sampled row of the CSV.
struct Sample {
    elapsed_s: f64,
    rss_kb: f64,
    fds: f64,
    data_bytes: f64,
    kept_back: f64,
    healthz: String,
    api_bad: f64,
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
            })
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn check(
    data: &Path,
    http: &str,
    report: &Path,
    csv: &Path,
    agents: &[String],
    quota: u64,
    max_held: u64,
    settle_s: u64,
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
    println!();
    if failures.is_empty() {
        println!("soak check: all passed");
        Ok(())
    } else {
        bail!("soak check: {} failed: {failures:#?}", failures.len())
    }
}
