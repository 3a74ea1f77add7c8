//! A throwaway Mosquitto broker, a test-side collector that acks batches, and agent configs.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use spotcheck_agent::AgentConfig;
use spotcheck_protocol::{
    decode, Ack, AgentId, Domain, EntityId, Limits, Seq, Status, Stream, Topic, UnixMillis,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;

pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";
pub const WAIT: Duration = Duration::from_secs(30);

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Mosquitto process on `127.0.0.1:port`, killed on drop.
pub struct Broker {
    _child: Child,
    _dir: tempfile::TempDir,
}

impl Broker {
    /// Starts Mosquitto and returns once it logs that it is running.
    pub async fn start(port: u16) -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\nlog_dest stderr\n"),
        )
        .unwrap();
        let mut child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("mosquitto is installed at /usr/sbin/mosquitto");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        timeout(WAIT, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.contains(" running") {
                    // Keep draining its log so that it never blocks on a full pipe.
                    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                    return;
                }
            }
            panic!("mosquitto exited before it was running");
        })
        .await
        .expect("mosquitto starts within the timeout");
        Broker {
            _child: child,
            _dir: dir,
        }
    }
}

pub fn ids() -> (AgentId, EntityId) {
    (
        AgentId::new("pool-agent-t").unwrap(),
        EntityId::new("pool-t").unwrap(),
    )
}

/// An agent config for a simulated pool feed of `batches` batches.
pub fn agent_config(port: u16, spool: &Path, batches: u64, ack_timeout_ms: u64) -> AgentConfig {
    let (agent, entity) = ids();
    let text = format!(
        r#"
[agent]
id = "{agent}"
entity = "{entity}"
domain = "pool"

[mqtt]
broker = "mqtt://127.0.0.1:{port}"
ack_timeout_ms = {ack_timeout_ms}

[spool]
dir = "{}"
fsync = false

[[sources]]
type = "simulate"
feed = "pool"
interval_ms = 10
seed = 1
batches = {batches}
"#,
        spool.display()
    );
    let config = AgentConfig::from_toml_str(&text).unwrap();
    config.validate().unwrap();
    config
}

/// What the test-side collector saw.
#[derive(Debug)]
pub enum Seen {
    /// A batch with this seq (every delivery, duplicates included).
    Batch(Seq),
    /// A status message.
    Status(Status),
}

/// Plays the collector: decodes every readings batch of the test agent and acks it unless
/// `ack(seq, delivery)` (delivery counts from 1) says no. Returns once subscribed.
pub async fn collector(
    port: u16,
    ack: impl Fn(Seq, usize) -> bool + Send + 'static,
) -> mpsc::Receiver<Seen> {
    let (agent, entity) = ids();
    let mut o = MqttOptions::new("test-collector", "127.0.0.1", port);
    o.set_max_packet_size(512 * 1024, 512 * 1024);
    let (client, mut eventloop) = AsyncClient::new(o, 64);
    let readings = Topic::batch(Stream::Readings, Domain::Pool, entity, agent.clone()).to_string();
    let status = Topic::Status {
        agent: agent.clone(),
    }
    .to_string();
    let ack_topic = Topic::Ack {
        agent: agent.clone(),
    }
    .to_string();
    client.subscribe(&readings, QoS::AtLeastOnce).await.unwrap();
    client.subscribe(&status, QoS::AtLeastOnce).await.unwrap();
    let (seen_tx, seen_rx) = mpsc::channel(1024);
    let (ready_tx, ready_rx) = oneshot::channel();
    tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        let mut subacks = 0;
        let mut deliveries: HashMap<Seq, usize> = HashMap::new();
        loop {
            let event = match eventloop.poll().await {
                Ok(e) => e,
                Err(_) => return,
            };
            match event {
                Event::Incoming(Packet::SubAck(_)) => {
                    subacks += 1;
                    if subacks == 2 {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                }
                Event::Incoming(Packet::Publish(p)) if p.topic == readings => {
                    let batch = decode(
                        Stream::Readings,
                        &agent,
                        &p.payload,
                        &Limits::default(),
                        UnixMillis::now(),
                    )
                    .expect("the agent publishes valid batches")
                    .into_inner();
                    let seq = batch.seq();
                    let n = deliveries.entry(seq).or_default();
                    *n += 1;
                    if ack(seq, *n) {
                        let payload = Ack::new(agent.clone(), [seq]).encode();
                        // Never await the client inside the event loop's own task.
                        let _ = client.try_publish(&ack_topic, QoS::AtLeastOnce, false, payload);
                    }
                    let _ = seen_tx.send(Seen::Batch(seq)).await;
                }
                Event::Incoming(Packet::Publish(p)) if p.topic == status => {
                    let _ = seen_tx
                        .send(Seen::Status(Status::decode(&p.payload).unwrap()))
                        .await;
                }
                _ => {}
            }
        }
    });
    timeout(WAIT, ready_rx)
        .await
        .expect("collector subscribes in time")
        .unwrap();
    seen_rx
}
