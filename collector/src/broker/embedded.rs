//! The embedded broker: rumqttd on its own thread, listening on a TCP address, plus one
//! in-process link for the collector's own ingest.
//!
//! rumqttd keeps messages in memory only and has no topic ACL; the collector enforces the
//! agent → entity binding itself, and the end-to-end acks make its lack of persistence safe:
//! an agent re-sends whatever the collector has not confirmed.
//!
//! Logins: a client must log in as an agent with a live credential (username = agent id,
//! password = the credential's broker password, checked against the live table at every
//! connect, so a revoked agent is refused on its next connection), with a client id that is
//! the agent id or starts with `{agent}-` (so no one can take over another agent's session).
//! Everyone else is refused, so strangers can neither publish nor read `#`. The collector's
//! own ingest reads in-process and needs no login.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, SegmentConfig, ServerSettings};

use crate::registry::credentials::Credentials;

/// A running embedded broker. It lives as long as the process: rumqttd cannot be stopped.
#[derive(Debug)]
pub struct EmbeddedBroker {
    listen: SocketAddr,
    _thread: JoinHandle<()>,
}

/// A connection to the embedded broker's router inside this process: no socket, no MQTT
/// encoding, messages handed over in groups of up to 200. Made when the broker starts,
/// since rumqttd offers links only before it starts serving.
pub struct InProcessLink {
    /// Publishes and subscribes.
    pub tx: LinkTx,
    /// Receives what the subscriptions match.
    pub rx: LinkRx,
}

impl std::fmt::Debug for InProcessLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessLink")
            .field("id", &self.rx.id())
            .finish()
    }
}

/// Why the embedded broker did not start.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedBrokerError {
    /// The address is taken or not ours to bind.
    #[error("embedded MQTT broker cannot listen on {addr}: {source}; pick a free address with --mqtt or mqtt.embedded_listen, or set mqtt.broker to use an external broker")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The bind error.
        source: std::io::Error,
    },
    /// rumqttd stopped during start-up.
    #[error("embedded MQTT broker on {addr} failed to start: {reason}")]
    Start {
        /// The address.
        addr: SocketAddr,
        /// What rumqttd said.
        reason: String,
    },
    /// It did not accept connections in time.
    #[error("embedded MQTT broker on {addr} did not accept connections within {secs} s")]
    Timeout {
        /// The address.
        addr: SocketAddr,
        /// The wait.
        secs: u64,
    },
}

impl EmbeddedBroker {
    /// Starts rumqttd on `listen` and returns once it accepts TCP connections, with an
    /// in-process link to it.
    ///
    /// `max_payload_bytes` bounds a PUBLISH; `max_inflight` bounds unacknowledged QoS 1
    /// messages per connection (rumqttd's flow control). `buffer_bytes` bounds the messages
    /// rumqttd keeps in memory per subscription filter (four segments of a quarter each; the
    /// oldest segment goes when a fifth would start). `logins`: the agents that may log in
    /// (see the module docs); `None` lets anyone connect, which only the benchmarks' stand-alone
    /// broker does.
    pub fn start(
        listen: SocketAddr,
        max_payload_bytes: usize,
        max_inflight: usize,
        buffer_bytes: usize,
        logins: Option<Credentials>,
    ) -> Result<(EmbeddedBroker, InProcessLink), EmbeddedBrokerError> {
        // rumqttd reports a taken port only from its own thread, with no way to read it here,
        // so try the address first for a clear error.
        let probe = TcpListener::bind(listen).map_err(|source| EmbeddedBrokerError::Bind {
            addr: listen,
            source,
        })?;
        let listen = probe.local_addr().unwrap_or(listen);
        drop(probe);

        let config = config(
            listen,
            max_payload_bytes,
            max_inflight,
            buffer_bytes,
            logins,
        );
        // `Broker::new` starts the router; the link is registered with it before the broker
        // starts listening. The client id is unguessable: a network client taking it over
        // would cut the link.
        let mut broker = Broker::new(config);
        let client_id = format!("spotcheck-ingest-{:016x}", rand::random::<u64>());
        let (tx, rx) = broker
            .link(&client_id)
            .map_err(|e| EmbeddedBrokerError::Start {
                addr: listen,
                reason: format!("in-process link: {e}"),
            })?;
        let (err_tx, err_rx) = std::sync::mpsc::sync_channel::<String>(1);
        let thread = std::thread::Builder::new()
            .name("embedded-broker".into())
            .spawn(move || {
                if let Err(e) = broker.start() {
                    let _ = err_tx.send(e.to_string());
                }
            })
            .map_err(|e| EmbeddedBrokerError::Start {
                addr: listen,
                reason: e.to_string(),
            })?;

        let wait = Duration::from_secs(10);
        let started = Instant::now();
        loop {
            if let Ok(reason) = err_rx.try_recv() {
                return Err(EmbeddedBrokerError::Start {
                    addr: listen,
                    reason,
                });
            }
            if TcpStream::connect_timeout(&listen, Duration::from_millis(200)).is_ok() {
                return Ok((
                    EmbeddedBroker {
                        listen,
                        _thread: thread,
                    },
                    InProcessLink { tx, rx },
                ));
            }
            if started.elapsed() > wait {
                return Err(EmbeddedBrokerError::Timeout {
                    addr: listen,
                    secs: wait.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The address it listens on.
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }
}

/// Whether `client_id` may log in as agent `user` with `password`.
fn login_ok(logins: &Credentials, client_id: &str, user: &str, password: &str) -> bool {
    let own_id = client_id == user
        || client_id
            .strip_prefix(user)
            .is_some_and(|rest| rest.starts_with('-'));
    own_id && logins.check_password(user, password)
}

/// Bytes per segment of an agent's ack log (four segments).
const ACK_SEGMENT_BYTES: usize = 64 * 1024;

fn config(
    listen: SocketAddr,
    max_payload_bytes: usize,
    max_inflight: usize,
    buffer_bytes: usize,
    logins: Option<Credentials>,
) -> Config {
    let mut connections = ConnectionSettings {
        connection_timeout_ms: 60_000,
        // Room for the MQTT header and topic beside the payload limit.
        max_payload_size: max_payload_bytes + 4096,
        max_inflight_count: max_inflight,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    if let Some(logins) = logins {
        connections.set_auth_handler(move |client_id: String, user: String, password: String| {
            let ok = login_ok(&logins, &client_id, &user, &password);
            if !ok {
                tracing::warn!(message = "Embedded broker refused a login.", client_id = %client_id, user = %user);
            }
            std::future::ready(ok)
        });
    }
    let server = ServerSettings {
        name: "v4".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: 10_010,
            max_outgoing_packet_count: 200,
            // rumqttd keeps every message published, read or not, in segments; a segment is
            // full once it holds `max_segment_size` bytes, and the oldest is dropped when a
            // new one would make more than `max_segment_count`.
            max_segment_size: (buffer_bytes / 4).max(max_payload_bytes + 4096),
            max_segment_count: 4,
            // Each agent subscribes to its own ack topic, so each has a log of its own: acks
            // are small and read at once, and a whole buffer per agent would add up to
            // gigabytes with a thousand agents.
            custom_segment: Some(HashMap::from([(
                format!("{}/agents/+/ack", spotcheck_protocol::topic::PREFIX),
                SegmentConfig {
                    max_segment_size: ACK_SEGMENT_BYTES,
                    max_segment_count: 4,
                },
            )])),
            ..RouterConfig::default()
        },
        v4: Some(HashMap::from([("v4".to_owned(), server)])),
        ..Config::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broker_keeps_at_most_its_buffer_per_subscription_and_little_per_ack_topic() {
        let listen: SocketAddr = "127.0.0.1:1883".parse().unwrap();
        let r = config(listen, 262_144, 100, 16 << 20, None).router;
        assert_eq!(r.max_segment_size * r.max_segment_count, 16 << 20);
        // A buffer too small for four of the largest packets still holds one per segment.
        let small = config(listen, 262_144, 100, 1 << 20, None).router;
        assert_eq!(small.max_segment_size, 262_144 + 4096);
        let acks = r.custom_segment.expect("acks have their own bound");
        let (filter, seg) = acks.iter().next().unwrap();
        assert!(rumqttd::protocol::matches(
            "spotcheck/v1/agents/pool-agent-1/ack",
            filter
        ));
        assert!(seg.max_segment_size * seg.max_segment_count <= 256 * 1024);
    }
}
