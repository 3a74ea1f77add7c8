//! Publishing: the spool's pending records go to the broker, and the collector's acks come back.
//!
//! Two stages, joined by a small bounded channel of [`NetEvent`]s:
//!
//! - [`Connection`] owns the rumqttc `EventLoop` and polls it continuously in its own task (it
//!   never awaits anything else but that channel and its backoff sleep). It reports connects,
//!   disconnects and decoded [`Ack`]s, and reconnects with exponential backoff and jitter.
//! - [`Publisher`] owns the spool. It appends the sources' batches, publishes pending records
//!   QoS 1 with `try_publish` (never blocking on the client's bounded request channel, which only
//!   the event loop drains), keeps at most `max_in_flight` unconfirmed, re-sends those left
//!   unconfirmed after `ack_timeout_ms`, and after every connect subscribes to its ack topic,
//!   publishes its retained `online` status and re-sends every pending record in seq order.
//!
//! A record leaves the spool only when an [`Ack`] on `spotcheck/v1/agents/{agent}/ack` names its
//! seq; the broker's PUBACK means nothing to the spool.

mod connection;
mod publisher;

use std::time::Duration;

use rumqttc::{AsyncClient, EventLoop, LastWill, MqttOptions, QoS};
use spotcheck_protocol::{Ack, AgentState, Limits, Status, Topic};

use crate::config::{AgentConfig, BrokerAddr};
use crate::spool::SpoolError;

pub use connection::{Backoff, Connection};
pub use publisher::{Publisher, PublisherSettings, ShutdownState};

/// What the connection task tells the publisher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetEvent {
    /// The broker accepted the connection (a ConnAck arrived).
    Connected,
    /// The connection failed or broke; the connection task is backing off.
    Disconnected,
    /// The collector confirmed these sequence numbers.
    Acked(Ack),
}

/// Why publishing stopped.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The spool failed; batches can no longer be kept safely.
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

/// Room above the largest payload for the topic and MQTT headers.
const PACKET_HEADROOM: usize = 64 * 1024;
/// Client requests beyond `max_in_flight` publishes: subscribe, status, disconnect.
const CONTROL_REQUESTS: usize = 16;

/// The MQTT client and its event loop for `config`: client id = agent id, clean session, the
/// configured keep-alive, a retained QoS 1 `offline` status as last will, and packets large
/// enough for the largest payload the protocol allows.
pub fn mqtt_client(config: &AgentConfig, broker: &BrokerAddr) -> (AsyncClient, EventLoop) {
    let agent = &config.agent.id;
    let mut o = MqttOptions::new(agent.as_str(), broker.host.clone(), broker.port);
    o.set_keep_alive(Duration::from_secs(config.mqtt.keepalive_s.max(1)));
    o.set_clean_session(true);
    let max_packet = Limits::default().max_payload_bytes + PACKET_HEADROOM;
    o.set_max_packet_size(max_packet, max_packet);
    o.set_last_will(LastWill::new(
        Topic::Status {
            agent: agent.clone(),
        }
        .to_string(),
        Status::new(agent.clone(), AgentState::Offline).encode(),
        QoS::AtLeastOnce,
        true,
    ));
    let in_flight = config.mqtt.max_in_flight.clamp(1, u16::MAX as usize);
    o.set_inflight(in_flight as u16);
    if let (Some(user), Some(password)) = (&config.mqtt.username, &config.mqtt.password) {
        o.set_credentials(user.clone(), password.0.clone());
    }
    AsyncClient::new(o, in_flight + CONTROL_REQUESTS)
}
