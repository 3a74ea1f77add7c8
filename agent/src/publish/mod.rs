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
use spotcheck_protocol::{Ack, AgentId, AgentState, Limits, Topic};

use crate::config::{AgentConfig, BrokerAddr, ConfigError, TlsConfig};
use crate::credential::{Credential, Signer};
use crate::spool::SpoolError;

pub use connection::{Backoff, Connection};
pub use publisher::{Publisher, PublisherSettings, ShutdownState};

/// What the connection task tells the publisher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetEvent {
    /// The broker accepted the connection (a ConnAck arrived). `counter` is the number of
    /// this connection's online status; its offline status (and last will) is `counter + 1`.
    Connected {
        /// The online status's counter.
        counter: u64,
    },
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
    } else if let Some(c) = Credential::for_config(config)? {
        // The embedded broker's login: the agent id and the credential's broker password.
        o.set_credentials(config.agent.id.as_str(), c.password.0);
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

/// The retained QoS 1 `offline` status number `counter`, signed, as a last will.
pub fn last_will(signer: &Signer, agent: &AgentId, counter: u64) -> LastWill {
    LastWill::new(
        Topic::Status {
            agent: agent.clone(),
        }
        .to_string(),
        signer.status(agent, AgentState::Offline, counter),
        QoS::AtLeastOnce,
        true,
    )
}

/// The MQTT client and its event loop for `config`: [`mqtt_options`] with client id = agent
/// id, the first connection's signed `offline` status as last will (the connection stage
/// sets the next one before each reconnect), and `max_in_flight` unacked publishes.
pub fn mqtt_client(
    config: &AgentConfig,
    broker: &BrokerAddr,
    signer: &Signer,
) -> Result<(AsyncClient, EventLoop), ConfigError> {
    let agent = &config.agent.id;
    let mut o = mqtt_options(config, broker, agent.as_str())?;
    o.set_last_will(last_will(signer, agent, 1));
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

/// The rumqttc TLS settings for `tls` (rustls with ring): the CA the broker must chain to and
/// an optional client certificate. The collector uses it too.
pub fn tls_configuration(tls: &TlsConfig) -> Result<TlsConfiguration, ConfigError> {
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
