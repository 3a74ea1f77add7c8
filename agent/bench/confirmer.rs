//! A confirming subscriber for the agent's benchmarks: it stands in for the collector, taking
//! every readings/events batch from the broker and publishing an `Ack` for its seq at once,
//! without storing anything, so that a benchmark measures the agent and the broker only.
//!
//! `cargo run --release -p spotcheck-agent --example bench-confirmer -- PORT`
//! Prints `subscribed` once subscribed, then `confirmed N` (batches) once a second.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use spotcheck_protocol::{Ack, AgentId, Seq, Topic};

/// The seq of a batch payload, found without parsing the (large) readings array.
fn seq_of(payload: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(payload.get(..200.min(payload.len()))?).ok()?;
    let at = text.find("\"seq\":")? + 6;
    text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("usage: bench-confirmer PORT");
    let mut o = MqttOptions::new("bench-confirmer", "127.0.0.1", port);
    o.set_max_packet_size(1 << 20, 1 << 20);
    o.set_inflight(1000);
    let (client, mut eventloop) = AsyncClient::new(o, 10_000);
    let mut pending: BTreeMap<String, Vec<Seq>> = BTreeMap::new();
    let mut confirmed = 0u64;
    let mut last_print = Instant::now();
    let mut flush = tokio::time::interval(Duration::from_millis(20));
    loop {
        tokio::select! {
            event = eventloop.poll() => match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    for f in ["spotcheck/v1/+/+/+/readings", "spotcheck/v1/+/+/+/events"] {
                        client.try_subscribe(f, QoS::AtLeastOnce).unwrap();
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => println!("subscribed"),
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if let (Ok(topic), Some(seq)) = (Topic::parse(&p.topic), seq_of(&p.payload)) {
                        pending.entry(topic.agent().to_string()).or_default().push(Seq(seq));
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("connection: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
            _ = flush.tick() => {
                for (agent, seqs) in std::mem::take(&mut pending) {
                    confirmed += seqs.len() as u64;
                    let agent = AgentId::new(agent).expect("a valid agent id");
                    let topic = Topic::Ack { agent: agent.clone() }.to_string();
                    let _ = client.try_publish(topic, QoS::AtLeastOnce, false, Ack::new(agent, seqs).encode());
                }
                if last_print.elapsed() >= Duration::from_secs(1) {
                    println!("confirmed {confirmed}");
                    last_print = Instant::now();
                }
            }
        }
    }
}
