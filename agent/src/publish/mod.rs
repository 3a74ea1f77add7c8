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

use rumqttc::{AsyncClient, EventLoop, LastWill, MqttOptions, QoS, TlsConfiguration, Transport};
use spotcheck_protocol::{Ack, AgentState, Limits, Status, Topic};

use crate::config::{AgentConfig, BrokerAddr, ConfigError, TlsConfig};
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

/// The connection options every client of this agent shares: broker address, keep-alive,
/// clean session, packet size, credentials and TLS. With an `mqtts://` broker the connection
/// uses TLS (rustls, ring): the broker's certificate must chain to `mqtt.tls.ca_file` and name
/// the broker's host; a client certificate is presented when configured. The PEM files are
/// read here; an unreadable one is an error.
pub fn mqtt_options(
    config: &AgentConfig,
    broker: &BrokerAddr,
    client_id: &str,
) -> Result<MqttOptions, ConfigError> {
    let mut o = MqttOptions::new(client_id, broker.host.clone(), broker.port);
    o.set_keep_alive(Duration::from_secs(config.mqtt.keepalive_s.max(1)));
    o.set_clean_session(true);
    let max_packet = Limits::default().max_payload_bytes + PACKET_HEADROOM;
    o.set_max_packet_size(max_packet, max_packet);
    if let (Some(user), Some(password)) = (&config.mqtt.username, &config.mqtt.password) {
        o.set_credentials(user.clone(), password.0.clone());
    }
    if broker.tls {
        let tls = config
            .mqtt
            .tls
            .as_ref()
            .ok_or_else(|| ConfigError::Invalid {
                problems: vec!["mqtt.broker is mqtts:// but [mqtt.tls] is missing".into()],
            })?;
        o.set_transport(Transport::tls_with_config(tls_configuration(tls)?));
    }
    Ok(o)
}

/// The MQTT client and its event loop for `config`: [`mqtt_options`] with client id = agent
/// id, a retained QoS 1 `offline` status as last will, and `max_in_flight` unacked publishes.
pub fn mqtt_client(
    config: &AgentConfig,
    broker: &BrokerAddr,
) -> Result<(AsyncClient, EventLoop), ConfigError> {
    let agent = &config.agent.id;
    let mut o = mqtt_options(config, broker, agent.as_str())?;
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
    Ok(AsyncClient::new(o, in_flight + CONTROL_REQUESTS))
}

fn read_pem(key: &str, path: &std::path::Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| ConfigError::Invalid {
        problems: vec![format!(
            "mqtt.tls.{key}: cannot read {}: {e}",
            path.display()
        )],
    })
}

fn tls_configuration(tls: &TlsConfig) -> Result<TlsConfiguration, ConfigError> {
    // One crypto provider for the process (ring); a second install attempt is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = read_pem("ca_file", &tls.ca_file)?;
    let client_auth = match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => {
            Some((read_pem("client_cert", cert)?, read_pem("client_key", key)?))
        }
        _ => None,
    };
    Ok(TlsConfiguration::Simple {
        ca,
        alpn: None,
        client_auth,
    })
}
