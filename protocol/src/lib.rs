//! Spotcheck's wire contract between field agents and the collector. No I/O, no async.
//!
//! In the order a reading travels:
//!
//! - [`ids`]: the identifiers that go into topics and payloads (`AgentId`, `EntityId`, `Domain`,
//!   `Seq`), each checked when made, so none can hold an MQTT wildcard.
//! - [`reading`] and [`event`]: what is measured or recorded, with units and times.
//! - [`batch`]: the versioned JSON payloads that carry them, one sequence number per batch.
//! - [`topic`]: where batches, statuses and acks are published; built and parsed only here.
//! - [`limits`] and [`decode`]: the bounds a payload is held to and the one function that turns
//!   bytes into a [`Checked`] batch or an error that names the field at fault.
//! - [`mac`]: the MAC (keyed BLAKE3 or HMAC-SHA256, named on the wire) that proves who wrote a
//!   batch, a status or an ack.
//! - [`ack`]: the collector's end-to-end confirmation of committed sequence numbers, and the
//!   agents' retained online/offline status.
//!
//! The JSON Schema of every payload is `protocol/schema/spotcheck-v1.schema.json`.

pub mod ack;
pub mod batch;
pub mod decode;
pub mod event;
mod fast;
pub mod ids;
pub mod limits;
pub mod mac;
pub mod reading;
pub mod topic;

pub use ack::{Ack, AgentState, SeqRange, SignedError, Status};
pub use batch::{with_after, Batch, EventBatch, ReadingBatch, Version, VERSION};
pub use decode::{check, check_domain, decode, Checked, DecodeError};
pub use event::{AgeBand, Consultation, Event, GamePayment, GameSession, Prescription, Visit};
pub use ids::{AgentId, Domain, EntityId, IdError, PersonRef, RecordId, Seq, MAX_ID_LEN};
pub use limits::Limits;
pub use mac::{AgentKey, KeyError, KeyGeneration, MacError, KEY_LEN};
pub use reading::{Metric, MetricSpec, Quality, Reading, Unit, UnixMillis, METRICS};
pub use topic::{Stream, Topic, TopicError};
