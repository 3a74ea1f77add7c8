//! The limits every payload is held to.

use serde::{Deserialize, Serialize};

/// Explicit bounds on what the collector accepts; agents split their batches to stay inside them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest payload, in bytes.
    pub max_payload_bytes: usize,
    /// Most readings or records in one batch.
    pub max_batch_len: usize,
    /// How far a timestamp may lie ahead of the collector's clock, in milliseconds.
    pub max_future_skew_ms: i64,
    /// How far a timestamp may lie behind the collector's clock, in milliseconds: an agent's
    /// spool may hold data through a long outage, so this is generous.
    pub max_age_ms: i64,
}

/// 256 KiB: far above a 1,000-reading batch (about 90 KiB), far below broker limits.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// Most readings or records in a batch by default.
pub const DEFAULT_MAX_BATCH_LEN: usize = 1_000;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            max_batch_len: DEFAULT_MAX_BATCH_LEN,
            max_future_skew_ms: 5 * 60 * 1000,
            max_age_ms: 90 * 24 * 60 * 60 * 1000,
        }
    }
}
