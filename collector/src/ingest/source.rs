//! The MQTT side of ingest: one rumqttc connection with manual acks, its event loop polled in
//! its own task. Publishes go into a bounded queue; when the queue is full this task waits,
//! the broker's in-flight window fills, and the broker holds further messages (backpressure).

use std::time::Duration;

use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Packet, Publish, QoS};
use spotcheck_protocol::topic::filter;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::broker::BrokerUrl;

/// Connection settings of the collector's MQTT client.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// The broker.
    pub broker: BrokerUrl,
    /// Client id.
    pub client_id: String,
    /// Shared-subscription group.
    pub shared_group: Option<String>,
    /// Broker → us in-flight window.
    pub max_inflight: u16,
    /// Largest packet accepted.
    pub max_packet_bytes: usize,
}

/// Why the broker could not be used at start-up.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// No CONNACK within the wait.
    #[error("cannot reach MQTT broker at {broker} within {secs} s: {reason}; check mqtt.broker and that the broker runs")]
    Unreachable {
        /// The broker.
        broker: BrokerUrl,
        /// The wait.
        secs: u64,
        /// The last connection error.
        reason: String,
    },
}

/// The subscriptions, each as a filter at QoS 1.
fn filters(shared_group: Option<&str>) -> Vec<String> {
    let plain = [
        filter::all_readings(),
        filter::all_events(),
        filter::all_status(),
    ];
    plain
        .into_iter()
        .map(|f| match shared_group {
            // Status is retained and small: every collector reads all of it.
            Some(g) if !f.contains("/agents/") => filter::shared(g, &f),
            _ => f,
        })
        .collect()
}

/// Connects and waits for the first CONNACK, so that a wrong address fails start-up clearly.
pub async fn connect(
    cfg: &SourceConfig,
    wait: Duration,
    request_capacity: usize,
) -> Result<(AsyncClient, EventLoop), SourceError> {
    let mut opts = MqttOptions::new(&cfg.client_id, &cfg.broker.host, cfg.broker.port);
    opts.set_manual_acks(true)
        // A persistent session lets an external broker hold our messages while we restart.
        .set_clean_session(false)
        .set_keep_alive(Duration::from_secs(30))
        .set_inflight(cfg.max_inflight)
        .set_max_packet_size(cfg.max_packet_bytes, cfg.max_packet_bytes);
    let (client, mut eventloop) = AsyncClient::new(opts, request_capacity);
    let deadline = tokio::time::Instant::now() + wait;
    let mut last = String::from("no answer");
    loop {
        match tokio::time::timeout_at(deadline, eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                subscribe(&client, cfg);
                info!(message = "Connected to MQTT broker.", broker = %cfg.broker);
                return Ok((client, eventloop));
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                last = e.to_string();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(_) => {
                return Err(SourceError::Unreachable {
                    broker: cfg.broker.clone(),
                    secs: wait.as_secs(),
                    reason: last,
                })
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(SourceError::Unreachable {
                broker: cfg.broker.clone(),
                secs: wait.as_secs(),
                reason: last,
            });
        }
    }
}

fn subscribe(client: &AsyncClient, cfg: &SourceConfig) {
    for f in filters(cfg.shared_group.as_deref()) {
        // try_: this runs beside the event loop, which must never wait on its own queue.
        if let Err(e) = client.try_subscribe(f.clone(), QoS::AtLeastOnce) {
            warn!(message = "Subscribe request not queued.", filter = %f, error = %e);
        }
    }
}

/// Polls the event loop until `stop` fires and `drained` says every accepted message has been
/// acknowledged; forwards publishes into `out` until `stop`.
pub async fn run(
    client: AsyncClient,
    mut eventloop: EventLoop,
    cfg: SourceConfig,
    out: mpsc::Sender<Publish>,
    stop: CancellationToken,
    drained: CancellationToken,
) {
    let mut out = Some(out);
    let mut backoff = Duration::from_millis(100);
    loop {
        let event = tokio::select! {
            e = eventloop.poll() => e,
            _ = stop.cancelled(), if out.is_some() => {
                // Close the queue: the stages behind us finish what they hold.
                out = None;
                continue;
            }
            _ = drained.cancelled() => break,
        };
        match event {
            Ok(Event::Incoming(Packet::Publish(p))) => {
                backoff = Duration::from_millis(100);
                if let Some(tx) = &out {
                    // Waiting here is the backpressure: the broker's window fills.
                    if tx.send(p).await.is_err() {
                        out = None;
                    }
                }
                // After stop a publish is neither forwarded nor acked: the broker (or the
                // agent's spool) delivers it again to the next session.
            }
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                info!(message = "Reconnected to MQTT broker.", broker = %cfg.broker, session_present = ack.session_present);
                subscribe(&client, &cfg);
            }
            Ok(_) => {}
            Err(e) => {
                if matches!(e, ConnectionError::RequestsDone) {
                    break;
                }
                warn!(message = "MQTT connection lost; retrying.", broker = %cfg.broker, error = %e, retry_in_ms = backoff.as_millis() as u64);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = drained.cancelled() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
    let _ = client.try_disconnect();
    // Let the DISCONNECT go out.
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        while eventloop.poll().await.is_ok() {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_groups_apply_to_batches_but_not_to_status() {
        let f = filters(Some("g"));
        assert!(f.contains(&"$share/g/spotcheck/v1/+/+/+/readings".to_string()));
        assert!(f.contains(&"spotcheck/v1/agents/+/status".to_string()));
        assert_eq!(filters(None)[0], "spotcheck/v1/+/+/+/readings");
    }
}
