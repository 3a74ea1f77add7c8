//! Ingest from a broker over TCP: rumqttc connections with manual acks, each event loop polled
//! in its own task. Publishes go into a bounded queue; when the queue is full the broker's
//! in-flight window fills, and the broker holds further messages (backpressure).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Packet, QoS};
use spotcheck_protocol::topic::filter;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::check::{self, spawn_check};
use super::Received;
use crate::broker::tls::{Secret, TlsConfig};
use crate::broker::BrokerUrl;
use crate::ingest::commit::Validated;
use crate::ingest::validate::Validator;
use crate::ingest::CHUNK;

/// Connection settings of the collector's MQTT client.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// The broker.
    pub broker: BrokerUrl,
    /// Client id; connection `i` uses `{client_id}-{i}` when there is more than one.
    pub client_id: String,
    /// Shared-subscription group.
    pub shared_group: Option<String>,
    /// MQTT connections that share the readings (see [`Received`]).
    pub connections: usize,
    /// Broker → us in-flight window.
    pub max_inflight: u16,
    /// Largest packet accepted.
    pub max_packet_bytes: usize,
    /// User name and password for the broker, if it wants them.
    pub login: Option<(String, Secret)>,
    /// TLS settings for an `mqtts://` broker.
    pub tls: Option<TlsConfig>,
}

/// Why the broker could not be used at start-up.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The TLS files could not be read.
    #[error("mqtt.tls: {0}")]
    Tls(String),
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

/// The shared-subscription group used when none is configured but there are several connections.
pub const DEFAULT_GROUP: &str = "spotcheck";

/// The subscriptions of connection `conn`, each a filter at QoS 1.
///
/// Batches are shared among the connections (and among collectors in the same group): a broker
/// keeps only so many unacknowledged messages in flight per connection (rumqttd: 100), and
/// ingest acknowledges after commit, so several connections multiply the window. Status is
/// retained and small: connection 0 reads all of it, unshared.
fn filters(cfg: &SourceConfig, conn: usize) -> Vec<String> {
    let group = match (&cfg.shared_group, cfg.connections) {
        (Some(g), _) => Some(g.as_str()),
        (None, n) if n > 1 => Some(DEFAULT_GROUP),
        (None, _) => None,
    };
    // One group per filter: rumqttd keeps one read cursor per group name, so a group that
    // shared two filters would read events at the readings' offsets and lose them.
    let mut out: Vec<String> = [
        (filter::all_readings(), "readings"),
        (filter::all_events(), "events"),
    ]
    .into_iter()
    .map(|(f, stream)| match group {
        Some(g) => filter::shared(&format!("{g}-{stream}"), &f),
        None => f,
    })
    .collect();
    if conn == 0 {
        out.push(filter::all_status());
    }
    out
}

/// Whether to connect with a clean session. A lone collector keeps a persistent session, so
/// that an external broker holds its messages while it restarts. A collector that shares the
/// readings with others (`mqtt.shared_group`) does not: brokers deal a shared subscription's
/// messages to every session in the group, connected or not (Mosquitto, EMQX by default), so
/// a killed collector's persistent session would keep taking its share of every agent's
/// batches, queued for a client that may never return, while the agents wait and re-send.
/// With a clean session the broker forgets the dead member, the others get everything, and
/// what it held unconfirmed its agents send again (they release a batch only on a
/// confirmation, which follows a commit).
fn clean_session(cfg: &SourceConfig) -> bool {
    cfg.shared_group.is_some()
}

/// Connects connection `conn` and waits for its first CONNACK, so that a wrong address fails
/// start-up clearly.
pub async fn connect(
    cfg: &SourceConfig,
    conn: usize,
    wait: Duration,
    request_capacity: usize,
) -> Result<(AsyncClient, EventLoop), SourceError> {
    let client_id = if cfg.connections > 1 {
        format!("{}-{conn}", cfg.client_id)
    } else {
        cfg.client_id.clone()
    };
    let mut opts = MqttOptions::new(client_id, &cfg.broker.host, cfg.broker.port);
    opts.set_manual_acks(true)
        .set_clean_session(clean_session(cfg))
        .set_keep_alive(Duration::from_secs(30))
        .set_inflight(cfg.max_inflight)
        .set_max_packet_size(cfg.max_packet_bytes, cfg.max_packet_bytes);
    if let Some((user, password)) = &cfg.login {
        opts.set_credentials(user.clone(), password.0.clone());
    }
    if cfg.broker.tls {
        let tls = cfg.tls.as_ref().ok_or_else(|| {
            SourceError::Tls("mqtt.broker is mqtts:// but [mqtt.tls] is missing".into())
        })?;
        let tls = crate::broker::tls::tls_configuration(tls).map_err(SourceError::Tls)?;
        opts.set_transport(rumqttc::Transport::tls_with_config(tls));
    }
    let (client, mut eventloop) = AsyncClient::new(opts, request_capacity);
    let deadline = tokio::time::Instant::now() + wait;
    let mut last = String::from("no answer");
    loop {
        match tokio::time::timeout_at(deadline, eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                subscribe(&client, cfg, conn);
                info!(message = "Connected to MQTT broker.", broker = %cfg.broker, conn);
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

fn subscribe(client: &AsyncClient, cfg: &SourceConfig, conn: usize) {
    for f in filters(cfg, conn) {
        // try_: this runs beside the event loop, which must never wait on its own queue.
        if let Err(e) = client.try_subscribe(f.clone(), QoS::AtLeastOnce) {
            warn!(message = "Subscribe request not queued.", filter = %f, error = %e);
        }
    }
}

/// Most messages held here while the queue to the commit stage is full. The broker sends at
/// most its in-flight window of unacknowledged messages per connection (rumqttd: 100,
/// Mosquitto: `max_inflight_messages`), so this is only reached with a broker configured beyond
/// it; then the event loop pauses until the queue drains.
const MAX_HELD: usize = 65_536;

/// Polls the event loop until `stop` fires and `drained` says every accepted message has been
/// acknowledged; validates publishes and forwards them into `out` in groups until `stop`.
///
/// The event loop is polled even while `out` is full: it also carries our PUBACKs and
/// keep-alive pings, and a paused loop would deadlock the confirm stage and get the connection
/// dropped by the broker. Publishes that arrive meanwhile wait in `held`, in order.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    conn: usize,
    client: AsyncClient,
    eventloop: EventLoop,
    cfg: SourceConfig,
    validator: Validator,
    out: mpsc::Sender<Vec<Validated>>,
    stop: CancellationToken,
    drained: CancellationToken,
) {
    // What is read is checked on other tasks and settled in order ([`super::check`]); `out`
    // here is the queue of chunks being checked, which the forwarder empties into the commit
    // stage's.
    let validator = Arc::new(validator);
    let (checking, forwarder) = check::start(validator.clone(), out, stop.clone());
    let mut out = Some(checking);
    let mut held: Vec<Received> = Vec::new();
    let mut backoff = Duration::from_millis(100);
    let mut poller = Poller::new(eventloop);
    loop {
        let event = tokio::select! {
            permit = reserve(out.clone()), if !held.is_empty() => {
                match permit {
                    Some(permit) => {
                        permit.send(spawn_check(&validator, take_chunk(&mut held)));
                    }
                    None => {
                        out = None;
                        held.clear();
                    }
                }
                continue;
            }
            e = poller.next(), if held.len() < MAX_HELD => e,
            _ = stop.cancelled(), if out.is_some() => {
                // Close the queue: the stages behind us finish what they hold. What is still
                // held here is neither forwarded nor acked: it is delivered again later.
                out = None;
                held.clear();
                continue;
            }
            _ = drained.cancelled() => break,
        };
        match event {
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                backoff = Duration::from_millis(100);
                if out.is_some() {
                    held.push(Received::from_mqtt(conn, publish));
                    if held.len() == MAX_HELD {
                        warn!(message = "Holding the most messages allowed while the commit stage is busy; pausing reads from the broker.", conn, held = held.len());
                    }
                }
            }
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                info!(message = "Reconnected to MQTT broker.", broker = %cfg.broker, conn, session_present = ack.session_present);
                subscribe(&client, &cfg, conn);
            }
            Ok(_) => {}
            Err(e) => {
                if matches!(e, ConnectionError::RequestsDone) {
                    break;
                }
                warn!(message = "MQTT connection lost; retrying.", broker = %cfg.broker, conn, error = %e, retry_in_ms = backoff.as_millis() as u64);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = drained.cancelled() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
        // Hand on what is held if there is room; else keep it and keep polling.
        let closed = match (&out, held.is_empty()) {
            (Some(tx), false) => match tx.try_reserve() {
                Ok(permit) => {
                    permit.send(spawn_check(&validator, take_chunk(&mut held)));
                    false
                }
                Err(mpsc::error::TrySendError::Full(())) => false,
                Err(mpsc::error::TrySendError::Closed(())) => true,
            },
            _ => false,
        };
        if closed {
            out = None;
            held.clear();
        }
    }
    drop(out);
    if let Err(e) = forwarder.await {
        warn!(message = "Ingest's forwarding task failed.", conn, error = %e);
    }
    let _ = client.try_disconnect();
    // Let the DISCONNECT go out.
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        while poller.next().await.is_ok() {}
    })
    .await;
}

/// The event loop's `poll`, never dropped half-way: a poll dropped while its socket write
/// waits loses the packet it was writing (a PUBACK, a PINGREQ), the request being already off
/// rumqttc's queue. Here the poll in progress survives when another branch of the source's
/// `select!` wins, and the next call resumes it.
struct Poller {
    pending: Pin<Box<dyn Future<Output = Polled> + Send>>,
}

/// An event and the event loop, handed back for the next poll.
type Polled = (Result<Event, ConnectionError>, EventLoop);

impl Poller {
    fn new(eventloop: EventLoop) -> Poller {
        Poller {
            pending: Box::pin(poll(eventloop)),
        }
    }

    /// The next event; cancel-safe.
    async fn next(&mut self) -> Result<Event, ConnectionError> {
        let (event, eventloop) = (&mut self.pending).await;
        self.pending = Box::pin(poll(eventloop));
        event
    }
}

async fn poll(mut eventloop: EventLoop) -> Polled {
    let event = eventloop.poll().await;
    (event, eventloop)
}

/// The oldest [`CHUNK`] held messages at most: a chunk is checked on one task, so a long
/// backlog is checked in pieces, several at once.
fn take_chunk(held: &mut Vec<Received>) -> Vec<Received> {
    if held.len() <= CHUNK {
        std::mem::take(held)
    } else {
        held.drain(..CHUNK).collect()
    }
}

/// A slot in `out`, or `None` once it is closed.
async fn reserve<T>(out: Option<mpsc::Sender<T>>) -> Option<mpsc::OwnedPermit<T>> {
    out?.reserve_owned().await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(group: Option<&str>, connections: usize) -> SourceConfig {
        SourceConfig {
            broker: "mqtt://127.0.0.1:1883".parse().unwrap(),
            client_id: "c".into(),
            shared_group: group.map(str::to_owned),
            connections,
            max_inflight: 100,
            max_packet_bytes: 1024,
            login: None,
            tls: None,
        }
    }

    #[test]
    fn shared_groups_apply_to_batches_but_not_to_status() {
        let f = filters(&cfg(Some("g"), 1), 0);
        assert!(f.contains(&"$share/g-readings/spotcheck/v1/+/+/+/readings".to_string()));
        assert!(f.contains(&"$share/g-events/spotcheck/v1/+/+/+/events".to_string()));
        assert!(f.contains(&"spotcheck/v1/agents/+/status".to_string()));
        assert_eq!(filters(&cfg(None, 1), 0)[0], "spotcheck/v1/+/+/+/readings");
    }

    #[test]
    fn only_a_collector_sharing_a_group_with_others_connects_with_a_clean_session() {
        assert!(
            !clean_session(&cfg(None, 1)),
            "a lone collector keeps its session"
        );
        assert!(
            !clean_session(&cfg(None, 4)),
            "its own connections share the default group, and die together"
        );
        assert!(clean_session(&cfg(Some("g"), 1)));
    }

    #[test]
    fn several_connections_share_batches_and_only_the_first_reads_status() {
        let c = cfg(None, 3);
        assert_eq!(filters(&c, 0).len(), 3);
        assert_eq!(
            filters(&c, 2),
            vec![
                "$share/spotcheck-readings/spotcheck/v1/+/+/+/readings".to_string(),
                "$share/spotcheck-events/spotcheck/v1/+/+/+/events".to_string(),
            ]
        );
    }
}
