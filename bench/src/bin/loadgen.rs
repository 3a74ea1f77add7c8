//! `loadgen`: publishes N readings batches of B readings, spread over K agents, at QoS 1, as
//! fast as the broker takes them. Payloads are encoded before the clock starts; the clock stops
//! when the broker has acknowledged (PUBACK) every batch.
//!
//! Prints `start_unix_ns=…` when the clock starts and `done_unix_ns=…` when it stops.
//!
//! With `--credentials DIR` (files `DIR/bench-{i}.credential` from `spotcheck-collector agents
//! add`), each connection logs in as its first agent, as the embedded broker requires, and
//! every batch is signed with its agent's key (as agents sign them) unless `--no-sign`.

use std::time::Instant;

use anyhow::{bail, Context};
use clap::Parser;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use spotcheck_bench::{agent, agent_payloads, parse_broker, unix_ns, MAX_PACKET_BYTES};
use spotcheck_protocol::UnixMillis;
use tokio::sync::{oneshot, watch};

#[derive(Parser)]
#[command(about = "Publish readings batches at QoS 1 as fast as the broker takes them")]
struct Args {
    /// The broker, host:port.
    #[arg(long, default_value = "127.0.0.1:1883")]
    broker: String,
    /// Batches to publish in all.
    #[arg(long)]
    batches: usize,
    /// Readings per batch.
    #[arg(long, default_value_t = 1)]
    batch_size: usize,
    /// Agents (bench-0 … bench-{K-1}); batches are spread evenly over them.
    #[arg(long, default_value_t = 4)]
    agents: usize,
    /// MQTT connections; agents are spread over them round-robin. 0 means one per agent.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Unacknowledged publishes allowed per connection.
    #[arg(long, default_value_t = 1000)]
    inflight: u16,
    /// Directory of the agents' credential files: log in and sign.
    #[arg(long)]
    credentials: Option<std::path::PathBuf>,
    /// With --credentials: log in, but send the batches unsigned.
    #[arg(long)]
    no_sign: bool,
    /// The MAC the batches are signed with: `blake3` (the agents' default) or `hmac-sha256`
    /// (the only one collectors before keyed BLAKE3 know: for comparing with such a build).
    #[arg(long, default_value = "blake3", value_parser = parse_mac)]
    mac: spotcheck_protocol::mac::Algorithm,
}

fn parse_mac(s: &str) -> Result<spotcheck_protocol::mac::Algorithm, String> {
    use spotcheck_protocol::mac::Algorithm;
    [Algorithm::Blake3, Algorithm::HmacSha256]
        .into_iter()
        .find(|a| a.as_str() == s)
        .ok_or_else(|| format!("unknown MAC '{s}': expected blake3 or hmac-sha256"))
}

/// An agent's key and broker password from its credential file.
fn credential(
    dir: &std::path::Path,
    agent: &spotcheck_protocol::AgentId,
) -> anyhow::Result<(spotcheck_protocol::AgentKey, String)> {
    let path = dir.join(format!("{agent}.credential"));
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let t: toml::Table = text
        .parse()
        .with_context(|| format!("{} is not a credential file", path.display()))?;
    let field = |k: &str| {
        t.get(k)
            .with_context(|| format!("{}: no {k}", path.display()))
    };
    let generation = field("generation")?.as_integer().unwrap_or(0) as u32;
    let key = spotcheck_protocol::AgentKey::from_hex(
        spotcheck_protocol::KeyGeneration(generation),
        field("key")?.as_str().unwrap_or(""),
    )?;
    let password = field("password")?.as_str().unwrap_or("").to_owned();
    Ok((key, password))
}

/// One connection's share of the work: (topic, payloads) per agent.
type Share = Vec<(String, Vec<Vec<u8>>)>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.agents >= 1 && args.batch_size >= 1,
        "--agents and --batch-size must be at least 1"
    );
    let (host, port) = parse_broker(&args.broker)?;
    let connections = match args.connections {
        0 => args.agents,
        c => c.min(args.agents),
    };

    // Encode everything up front.
    let now_ms = UnixMillis::now().0;
    let mut shares: Vec<Share> = vec![Vec::new(); connections];
    let mut logins: Vec<Option<(String, String)>> = vec![None; connections];
    for i in 0..args.agents {
        let batches = args.batches / args.agents + usize::from(i < args.batches % args.agents);
        let (agent, topic) = agent(i)?;
        let mut payloads = agent_payloads(&agent, batches, args.batch_size, now_ms)?;
        if let Some(dir) = &args.credentials {
            let (key, password) = credential(dir, &agent)?;
            if !args.no_sign {
                for p in payloads.iter_mut() {
                    *p = spotcheck_protocol::mac::sign_with(args.mac, &key, p);
                }
            }
            logins[i % connections].get_or_insert((agent.to_string(), password));
        }
        shares[i % connections].push((topic, payloads));
    }

    let (start_tx, start_rx) = watch::channel(false);
    let mut connected = Vec::new();
    let mut finished = Vec::new();
    for (c, share) in shares.into_iter().enumerate() {
        let expected: usize = share.iter().map(|(_, p)| p.len()).sum();
        let login = logins[c].take();
        let prefix = login
            .as_ref()
            .map_or("bench-loadgen", |(agent, _)| agent.as_str());
        let mut options =
            MqttOptions::new(format!("{prefix}-{}-{c}", std::process::id()), &host, port);
        if let Some((user, password)) = login {
            options.set_credentials(user, password);
        }
        options
            .set_clean_session(true)
            .set_inflight(args.inflight)
            .set_request_channel_capacity(usize::from(args.inflight))
            .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
        let (client, eventloop) = AsyncClient::new(options, usize::from(args.inflight));
        let (conn_tx, conn_rx) = oneshot::channel();
        finished.push(tokio::spawn(drive(eventloop, expected, conn_tx)));
        connected.push(conn_rx);
        tokio::spawn(publish(client, share, start_rx.clone()));
    }
    for c in connected {
        c.await.context("a connection failed before CONNACK")?;
    }

    let started = Instant::now();
    println!("start_unix_ns={}", unix_ns());
    start_tx.send_replace(true);
    for f in finished {
        f.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    println!("done_unix_ns={}", unix_ns());
    let readings = args.batches * args.batch_size;
    eprintln!(
        "loadgen: {} batches × {} = {readings} readings over {} agents / {connections} connections acknowledged by the broker in {secs:.3} s ({:.0} readings/s)",
        args.batches,
        args.batch_size,
        args.agents,
        readings as f64 / secs
    );
    Ok(())
}

/// Publishes a share once the clock starts, one batch per agent in turn, so each agent's
/// sequence numbers go out in order.
async fn publish(client: AsyncClient, share: Share, mut start: watch::Receiver<bool>) {
    if start.wait_for(|s| *s).await.is_err() {
        return;
    }
    let mut agents: Vec<_> = share.into_iter().map(|(t, p)| (t, p.into_iter())).collect();
    loop {
        let mut sent = false;
        for (topic, payloads) in agents.iter_mut() {
            if let Some(payload) = payloads.next() {
                if client
                    .publish(topic.as_str(), QoS::AtLeastOnce, false, payload)
                    .await
                    .is_err()
                {
                    return; // the event loop has stopped and reports why
                }
                sent = true;
            }
        }
        if !sent {
            return;
        }
    }
}

/// Polls the event loop until `expected` PUBACKs have arrived.
async fn drive(
    mut eventloop: rumqttc::EventLoop,
    expected: usize,
    connected: oneshot::Sender<()>,
) -> anyhow::Result<()> {
    let mut connected = Some(connected);
    let mut acked = 0usize;
    while acked < expected {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                if let Some(c) = connected.take() {
                    let _ = c.send(());
                } else {
                    bail!("reconnected to the broker mid-run; the result would not be comparable");
                }
            }
            Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
            Ok(_) => {}
            Err(e) => bail!("MQTT connection failed after {acked} of {expected} acks: {e}"),
        }
    }
    Ok(())
}
