//! Where ingest takes messages from: a broker link, and what acknowledging a message means on it.
//!
//! - [`mqtt`]: rumqttc connections to a broker over TCP (an external broker), with manual
//!   acks after commit.
//! - [`local`]: the in-process link to the embedded broker. No network, no acks: rumqttd
//!   acknowledges an agent's publish when it takes it, and holds it only in this process's
//!   memory, so the agent's end-to-end confirmation is what makes it safe either way.
//! - [`check`]: both check what they read on several threads and settle it in order.

pub mod check;
pub mod local;
pub mod mqtt;

use std::time::Instant;

use bytes::Bytes;

/// A message taken from the broker.
#[derive(Debug)]
pub struct Received {
    /// The topic it was published on (UTF-8 per MQTT; checked by validation).
    pub topic: Bytes,
    /// The payload.
    pub payload: Bytes,
    /// What to send the broker once the message is committed.
    pub ack: BrokerAck,
    /// When ingest took it from the broker: the start of its ingest-to-commit latency.
    pub at: Instant,
}

/// What the broker is owed for a message once it is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerAck {
    /// A QoS 1 (or 2) delivery on MQTT connection `conn`: acknowledged after commit, in
    /// arrival order on that connection, or the broker delivers it again.
    Mqtt {
        /// The connection it came on.
        conn: usize,
        /// Its packet id.
        pkid: u16,
        /// Its QoS as delivered.
        qos: rumqttc::QoS,
    },
    /// Nothing: a QoS 0 delivery, or the in-process link.
    Nothing,
}

impl Received {
    /// A message as rumqttc delivered it on connection `conn`. No copy: the topic's buffer
    /// and the payload move.
    pub fn from_mqtt(conn: usize, p: rumqttc::Publish) -> Received {
        let ack = match p.qos {
            rumqttc::QoS::AtMostOnce => BrokerAck::Nothing,
            qos => BrokerAck::Mqtt {
                conn,
                pkid: p.pkid,
                qos,
            },
        };
        Received {
            topic: Bytes::from(p.topic),
            payload: p.payload,
            ack,
            at: Instant::now(),
        }
    }
}

/// `f`'s output if it is ready without waiting, else `None`, dropping `f`. Only for futures
/// that lose nothing when dropped: rumqttd's link `next` takes its buffer only once woken.
/// Not for rumqttc's `EventLoop::poll`: dropped while writing, it loses the packet it was
/// writing (a PUBACK, say), and grouping its publishes this way stalled ingest through
/// Mosquitto.
pub async fn ready_now<T>(f: impl std::future::Future<Output = T>) -> Option<T> {
    tokio::select! {
        biased;
        v = f => Some(v),
        () = std::future::ready(()) => None,
    }
}
