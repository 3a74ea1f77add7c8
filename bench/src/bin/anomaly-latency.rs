//! `anomaly-latency`: from publish to anomaly task visible through the API (issue 5).
//!
//! Starts the collector in-process (embedded broker, default rule packs, a fresh data
//! directory), then publishes probes: one events batch per probe entity holding a guest game
//! session, which the default game pack's guest-session rule turns into an anomaly task.
//! Each probe's latency runs from just before its publish to the moment
//! `GET /api/v1/tasks?kind=anomaly&entity=…` first lists the task (requests back to back, each a fraction of a millisecond).
//!
//! Two phases in one command: the baseline without background load, then the same probes
//! while a background agent publishes `--background` readings per second (batches of 100,
//! inside every limit so no rule fires). Prints percentiles of both and the ratio.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use spotcheck_collector::config::{AgentBinding, BrokerChoice, RawConfig};
use spotcheck_collector::Collector;
use spotcheck_protocol::{
    AgeBand, AgentId, Batch, Domain, EntityId, Event as Record, EventBatch, GameSession, PersonRef,
    RecordId, Seq, Stream, Topic, UnixMillis, Version,
};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(about = "Publish-to-task latency of anomaly tasks, with and without background load")]
struct Args {
    /// Probes per phase.
    #[arg(long, default_value_t = 200)]
    probes: usize,
    /// Milliseconds between probes.
    #[arg(long, default_value_t = 50)]
    every_ms: u64,
    /// Background readings per second in the loaded phase.
    #[arg(long, default_value_t = 10_000)]
    background: u64,
    /// The collector's MQTT connections (mqtt.connections).
    #[arg(long, default_value_t = 8)]
    connections: usize,
}

fn probe_ids(phase: usize, i: usize) -> (AgentId, EntityId) {
    (
        AgentId::new(format!("probe-{phase}-{i}")).expect("valid"),
        EntityId::new(format!("probe-e{phase}-{i}")).expect("valid"),
    )
}

fn guest_session(agent: &AgentId, i: usize) -> Vec<u8> {
    let now = UnixMillis::now();
    Batch::Events(EventBatch {
        v: Version,
        agent: agent.clone(),
        seq: Seq(1),
        after: None,
        events: vec![Record::GameSession(GameSession {
            id: RecordId::new(format!("s{i}")).expect("valid"),
            player: PersonRef::new(format!("p{i}")).expect("valid"),
            age_band: AgeBand::Adult,
            real_name_verified: false,
            guest: true,
            start_ms: UnixMillis(now.0 - 60_000),
            end_ms: Some(UnixMillis(now.0 - 1_000)),
        })],
    })
    .encode()
}

async fn client(port: u16, id: &str) -> anyhow::Result<(AsyncClient, CancellationToken)> {
    let mut opts = MqttOptions::new(id, "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_max_packet_size(1 << 20, 1 << 20);
    opts.set_inflight(1000);
    let (c, mut ev) = AsyncClient::new(opts, 10_000);
    let stop = CancellationToken::new();
    let s = stop.clone();
    let name = id.to_owned();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut tx = Some(tx);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = s.cancelled() => break,
                e = ev.poll() => match e {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => { if let Some(t) = tx.take() { let _ = t.send(()); } }
                    Ok(_) => {}
                    Err(e) => {
                        // A benchmark on a broken connection measures nothing: stop, and let
                        // the waiting probe fail with its deadline.
                        eprintln!("{name}: MQTT connection failed: {e}");
                        break;
                    }
                },
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .context("broker did not answer")??;
    Ok((c, stop))
}

async fn background(port: u16, per_s: u64, stop: CancellationToken) -> anyhow::Result<u64> {
    let (c, conn_stop) = client(port, "bench-background").await?;
    let (agent, topic) = spotcheck_bench::agent(0)?;
    let batches_per_s = (per_s / 100).max(1);
    // Two minutes' worth: more than the probes take.
    let payloads = spotcheck_bench::agent_payloads(
        &agent,
        (batches_per_s * 120) as usize,
        100,
        UnixMillis::now().0,
    )?;
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / batches_per_s));
    let mut sent = 0u64;
    for p in payloads {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        c.publish(&topic, QoS::AtLeastOnce, false, p).await?;
        sent += 100;
    }
    conn_stop.cancel();
    Ok(sent)
}

async fn phase(
    http: std::net::SocketAddr,
    token: &str,
    c: &AsyncClient,
    phase: usize,
    args: &Args,
) -> anyhow::Result<Vec<f64>> {
    let mut lat = Vec::with_capacity(args.probes);
    // Paces the probes (a rate, not a wait for anything).
    let mut pace = tokio::time::interval(Duration::from_millis(args.every_ms.max(1)));
    for i in 0..args.probes {
        pace.tick().await;
        let (agent, entity) = probe_ids(phase, i);
        let topic = Topic::batch(Stream::Events, Domain::Game, entity.clone(), agent.clone());
        let url = format!("http://{http}/api/v1/tasks?kind=anomaly&entity={entity}");
        let auth = format!("Bearer {token}");
        let start = Instant::now();
        c.publish(
            topic.to_string(),
            QoS::AtLeastOnce,
            false,
            guest_session(&agent, i),
        )
        .await?;
        let seen = tokio::task::spawn_blocking(move || -> anyhow::Result<Duration> {
            let deadline = start + Duration::from_secs(10);
            loop {
                let body: serde_json::Value = ureq::get(&url)
                    .header("Authorization", &auth)
                    .call()?
                    .body_mut()
                    .read_json()?;
                if body.as_array().is_some_and(|a| !a.is_empty()) {
                    return Ok(start.elapsed());
                }
                anyhow::ensure!(Instant::now() < deadline, "no task within 10 s for {url}");
            }
        })
        .await??;
        lat.push(seen.as_secs_f64() * 1000.0);
    }
    Ok(lat)
}

fn report(name: &str, v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let p = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    println!(
        "{name}: n={} p50={:.1} ms p90={:.1} ms p99={:.1} ms max={:.1} ms",
        v.len(),
        p(0.5),
        p(0.9),
        p(0.99),
        v[v.len() - 1]
    );
    p(0.99)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    spotcheck_collector::telemetry::init_tracing();
    let dir = tempfile::tempdir()?;
    let mut raw = RawConfig::parse("", Path::new("<bench>"))?;
    raw.data_dir = dir.path().to_owned();
    raw.http.listen = "127.0.0.1:0".into();
    raw.mqtt.embedded_listen = "127.0.0.1:0".into();
    raw.mqtt.connections = args.connections;
    let (bg_agent, _) = spotcheck_bench::agent(0)?;
    raw.agents.push(AgentBinding {
        id: bg_agent,
        entity: EntityId::new("bench-e0")?,
        domain: Domain::Pool,
    });
    for phase in 0..2 {
        for i in 0..args.probes {
            let (id, entity) = probe_ids(phase, i);
            raw.agents.push(AgentBinding {
                id,
                entity,
                domain: Domain::Game,
            });
        }
    }
    let mut config = raw.validate()?;
    let BrokerChoice::Embedded(_) = config.broker else {
        anyhow::bail!("the benchmark runs the embedded broker")
    };
    config.broker = BrokerChoice::Embedded("127.0.0.1:0".parse()?);
    let collector = Collector::start(config).await?;
    let port = collector.broker_url().port;
    let http = collector.http_addr();
    let token = collector.admin_token().to_owned();

    // One probe connection for both phases. (Connecting a new client to the embedded rumqttd
    // while another publishes at a steady rate has been seen to lose the new client's
    // publishes when it reuses a freed connection slot; see BENCHMARKS.md.)
    let (probe, probe_stop) = client(port, "bench-probe").await?;
    let mut base = phase(http, &token, &probe, 0, &args).await?;
    let stop = CancellationToken::new();
    let bg = tokio::spawn(background(port, args.background, stop.clone()));
    // Probe once the collector has stored a second's worth of the background load.
    let warm = collector.stats().snapshot().readings_ingested + args.background;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut check = tokio::time::interval(Duration::from_millis(10));
    while collector.stats().snapshot().readings_ingested < warm {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the background load was not stored within 30 s"
        );
        check.tick().await;
    }
    let before = collector.stats().snapshot().readings_ingested;
    let t = Instant::now();
    let mut loaded = match phase(http, &token, &probe, 1, &args).await {
        Ok(v) => v,
        Err(e) => {
            eprintln!("collector stats: {:?}", collector.stats().snapshot());
            return Err(e);
        }
    };
    let rate = (collector.stats().snapshot().readings_ingested - before) as f64
        / t.elapsed().as_secs_f64();
    stop.cancel();
    probe_stop.cancel();
    let sent = bg.await??;
    let b99 = report("baseline (no background load)", &mut base);
    let l99 = report(
        &format!("with background load ({rate:.0} readings/s stored)"),
        &mut loaded,
    );
    println!("background readings sent: {sent}");
    println!("ratio p99 loaded / baseline: {:.2}", l99 / b99);
    collector.shutdown().await;
    Ok(())
}
