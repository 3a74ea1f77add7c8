//! Batches: the payloads of the readings and events topics.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::event::Event;
use crate::ids::{AgentId, Seq};
use crate::reading::Reading;

/// The payload version this crate reads and writes.
pub const VERSION: u32 = 1;

/// The payload version field; only [`VERSION`] deserializes.
///
/// Agents write `v` first, so a payload of another version fails on this field before any other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Version;

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(VERSION)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Version, D::Error> {
        let v = u32::deserialize(d)?;
        if v == VERSION {
            Ok(Version)
        } else {
            Err(serde::de::Error::custom(format_args!(
                "unsupported payload version {v}; this side speaks version {VERSION}"
            )))
        }
    }
}

/// Numeric readings from one agent, under one sequence number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadingBatch {
    /// Payload version; always [`VERSION`].
    pub v: Version,
    /// The publishing agent; must equal the topic's agent level.
    pub agent: AgentId,
    /// The agent's sequence number for this batch.
    pub seq: Seq,
    /// The lowest sequence number the agent still held unconfirmed when it sent this batch
    /// (this one's at most). The collector stores the agent's batches in sequence order and
    /// keeps this batch back until every batch from `after` up to it is stored. Absent: no
    /// order is claimed, the batch is stored on arrival.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Seq>,
    /// The readings, at least one.
    pub readings: Vec<Reading>,
}

/// Event records from one agent, under one sequence number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventBatch {
    /// Payload version; always [`VERSION`].
    pub v: Version,
    /// The publishing agent; must equal the topic's agent level.
    pub agent: AgentId,
    /// The agent's sequence number for this batch.
    pub seq: Seq,
    /// The lowest sequence number the agent still held unconfirmed when it sent this batch
    /// (this one's at most). The collector stores the agent's batches in sequence order and
    /// keeps this batch back until every batch from `after` up to it is stored. Absent: no
    /// order is claimed, the batch is stored on arrival.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Seq>,
    /// The records, at least one.
    pub events: Vec<Event>,
}

/// Either kind of batch; which one is decided by the topic, not by the payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Batch {
    /// A readings batch.
    Readings(ReadingBatch),
    /// An events batch.
    Events(EventBatch),
}

impl Batch {
    /// The publishing agent.
    pub fn agent(&self) -> &AgentId {
        match self {
            Batch::Readings(b) => &b.agent,
            Batch::Events(b) => &b.agent,
        }
    }

    /// The batch's sequence number.
    pub fn seq(&self) -> Seq {
        match self {
            Batch::Readings(b) => b.seq,
            Batch::Events(b) => b.seq,
        }
    }

    /// The lowest unconfirmed sequence number at the agent when it was sent, if it says.
    pub fn after(&self) -> Option<Seq> {
        match self {
            Batch::Readings(b) => b.after,
            Batch::Events(b) => b.after,
        }
    }

    /// How many readings or records it holds.
    pub fn len(&self) -> usize {
        match self {
            Batch::Readings(b) => b.readings.len(),
            Batch::Events(b) => b.events.len(),
        }
    }

    /// Whether it holds nothing (never true of a decoded batch).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A digest of what the batch says, `after` left out (it changes when a batch is sent
    /// again): the first 16 bytes of SHA-256 over a fixed binary form of its agent, stream and
    /// items. Two batches with one sequence number and different digests mean a sequence
    /// number was reused.
    pub fn digest(&self) -> [u8; 16] {
        use sha2::{Digest, Sha256};
        let full = Sha256::digest(self.digest_input());
        let mut out = [0; 16];
        out.copy_from_slice(&full[..16]);
        out
    }

    /// The bytes [`Batch::digest`] hashes, written out whole and hashed in one call: fed to
    /// SHA-256 a field at a time (seven small updates a reading) the digest of a batch of 100
    /// took 1.08 times as long (BENCHMARKS.md, "Session 24: the profile at batches of 100").
    /// The bytes are the same as always: stored digests stay comparable.
    fn digest_input(&self) -> Vec<u8> {
        fn field(out: &mut Vec<u8>, b: &[u8]) {
            out.extend_from_slice(&(b.len() as u64).to_le_bytes());
            out.extend_from_slice(b);
        }
        let agent = self.agent().as_str().as_bytes();
        let mut out = Vec::with_capacity(32 + agent.len() + self.len() * 64);
        field(&mut out, agent);
        out.extend_from_slice(&self.seq().0.to_le_bytes());
        match self {
            Batch::Readings(b) => {
                out.extend_from_slice(b"readings");
                for r in &b.readings {
                    field(&mut out, r.metric.as_str().as_bytes());
                    field(&mut out, r.unit.as_str().as_bytes());
                    out.extend_from_slice(&r.value.to_bits().to_le_bytes());
                    out.extend_from_slice(&r.ts_ms.0.to_le_bytes());
                    field(&mut out, r.quality.as_str().as_bytes());
                }
            }
            Batch::Events(b) => {
                out.extend_from_slice(b"events");
                for e in &b.events {
                    field(
                        &mut out,
                        &serde_json::to_vec(e).expect("events always serialize"),
                    );
                }
            }
        }
        out
    }

    /// The JSON payload.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing these types cannot fail: every map key is a string and every float is
        // finite once decoded or built by an agent (a NaN would serialize as null, not fail).
        match self {
            Batch::Readings(b) => serde_json::to_vec(b),
            Batch::Events(b) => serde_json::to_vec(b),
        }
        .expect("batch types always serialize")
    }
}

/// An encoded batch with `after` set, without decoding it again.
///
/// An agent encodes a batch once, when it spools it, but `after` (the lowest sequence number
/// still unconfirmed) is only known when the batch is sent. `payload` must be what
/// [`Batch::encode`] made of a batch whose `after` is `None` (a JSON object, so this adds the
/// member first); anything else is returned unchanged.
pub fn with_after(payload: &[u8], after: Seq) -> Vec<u8> {
    match payload.split_first() {
        Some((b'{', rest)) => {
            let mut out = Vec::with_capacity(payload.len() + 24);
            out.extend_from_slice(b"{\"after\":");
            out.extend_from_slice(after.0.to_string().as_bytes());
            if rest.first() != Some(&b'}') {
                out.push(b',');
            }
            out.extend_from_slice(rest);
            out
        }
        _ => payload.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::{Metric, Quality, Unit, UnixMillis};

    fn batch(seq: u64, after: Option<u64>, value: f64) -> Batch {
        Batch::Readings(ReadingBatch {
            v: Version,
            agent: AgentId::new("a1").unwrap(),
            seq: Seq(seq),
            after: after.map(Seq),
            readings: vec![Reading {
                metric: Metric::new("ph").unwrap(),
                value,
                unit: Unit::Ph,
                ts_ms: UnixMillis(1),
                quality: Quality::Good,
            }],
        })
    }

    #[test]
    fn the_digest_ignores_after_and_sees_the_content() {
        assert_eq!(
            batch(5, None, 7.0).digest(),
            batch(5, Some(3), 7.0).digest()
        );
        assert_ne!(batch(5, None, 7.0).digest(), batch(5, None, 7.1).digest());
        assert_ne!(batch(5, None, 7.0).digest(), batch(6, None, 7.0).digest());
    }
}
