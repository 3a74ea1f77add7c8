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
