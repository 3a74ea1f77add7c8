//! `soak hostile`: a steady trickle of bad input, every kind counted by the reason the
//! collector must give for it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use spotcheck_bench::MAX_PACKET_BYTES;
use spotcheck_protocol::{AgentKey, UnixMillis};

pub(crate) struct Hostile {
    pub(crate) broker: (String, u16),
    pub(crate) key: AgentKey,
    pub(crate) password: String,
    pub(crate) agent: String,
    pub(crate) entity: String,
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

    pub(crate) async fn run(
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
