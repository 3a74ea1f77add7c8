//! Decoding and validation: raw bytes from the broker become a [`Checked`] batch or a
//! [`DecodeError`] that names the field at fault. Nothing here panics on any input.

use serde::de::DeserializeOwned;

use crate::batch::{Batch, EventBatch, ReadingBatch};
use crate::ids::{AgentId, Domain};
use crate::limits::Limits;
use crate::reading::{Metric, Quality, Unit, UnixMillis};
use crate::topic::Stream;

/// A value that passed every check of this module; only [`decode`] and [`check`] make one.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked<T> {
    value: T,
    flagged: usize,
}

impl<T> Checked<T> {
    /// The checked value.
    pub fn get(&self) -> &T {
        &self.value
    }

    /// Unwraps the checked value.
    pub fn into_inner(self) -> T {
        self.value
    }

    /// How many readings the check marked `bad` because their value lies outside the
    /// physically possible range of their metric ([`crate::MetricSpec`]).
    pub fn flagged(&self) -> usize {
        self.flagged
    }
}

/// Why a payload was rejected. Each variant names what was wrong and where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// The payload exceeds [`Limits::max_payload_bytes`].
    #[error("payload is {bytes} bytes; the limit is {max}: split the batch")]
    TooLarge {
        /// The payload's size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// The payload is not JSON at all.
    #[error("payload is not valid JSON: {reason}")]
    NotJson {
        /// What the parser found wrong, with line and column.
        reason: String,
    },
    /// The payload is JSON, but not of the expected shape.
    #[error("field `{path}`: {reason}")]
    Json {
        /// The JSON path of the field at fault (`.` for the document itself).
        path: String,
        /// What serde found wrong there.
        reason: String,
    },
    /// The batch holds no readings or records.
    #[error("field `{field}`: the batch is empty; send at least one")]
    Empty {
        /// `readings` or `events`.
        field: &'static str,
    },
    /// The batch holds more than [`Limits::max_batch_len`] items.
    #[error("field `{field}`: {len} items; the limit is {max}: split the batch")]
    TooLong {
        /// `readings` or `events`.
        field: &'static str,
        /// How many items it holds.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The payload's agent differs from the topic's agent level.
    #[error("field `agent`: payload says {payload:?} but the topic says {topic:?}")]
    AgentMismatch {
        /// The agent in the topic.
        topic: String,
        /// The agent in the payload.
        payload: String,
    },
    /// A value is NaN or infinite.
    #[error("field `{path}`: value is not a finite number")]
    NotFinite {
        /// The field at fault.
        path: String,
    },
    /// A well-known metric carries the wrong unit.
    #[error("field `{path}`: metric {metric} must be in {expected}, not {found}")]
    UnitMismatch {
        /// The field at fault.
        path: String,
        /// The metric.
        metric: String,
        /// The unit the metric requires.
        expected: Unit,
        /// The unit sent.
        found: Unit,
    },
    /// A timestamp lies too far ahead of the collector's clock.
    #[error("field `{path}`: timestamp {ts} lies {ahead_ms} ms in the future (limit {max_ms} ms): check the agent's clock")]
    InFuture {
        /// The field at fault.
        path: String,
        /// The timestamp.
        ts: i64,
        /// How far ahead it is.
        ahead_ms: i64,
        /// The allowed skew.
        max_ms: i64,
    },
    /// A timestamp lies too far in the past.
    #[error("field `{path}`: timestamp {ts} is {age_ms} ms old (limit {max_ms} ms)")]
    TooOld {
        /// The field at fault.
        path: String,
        /// The timestamp.
        ts: i64,
        /// Its age.
        age_ms: i64,
        /// The allowed age.
        max_ms: i64,
    },
    /// `after` names a sequence number beyond the batch's own.
    #[error("field `after`: {after} lies beyond the batch's seq {seq}; `after` is the lowest sequence number still unconfirmed at the agent, this batch's at most")]
    AfterBeyondSeq {
        /// The batch's `after`.
        after: u64,
        /// The batch's `seq`.
        seq: u64,
    },
    /// A record or metric that agents of another domain send.
    #[error("field `{path}`: {what} comes from {expected} agents, but this agent serves {domain}")]
    WrongDomain {
        /// The field at fault.
        path: String,
        /// The record kind or metric.
        what: String,
        /// The domain it belongs to.
        expected: Domain,
        /// The agent's domain.
        domain: Domain,
    },
    /// An interval ends before it starts.
    #[error("field `{path}`: ends before it starts")]
    EndBeforeStart {
        /// The field at fault.
        path: String,
    },
}

impl DecodeError {
    /// A short, stable name for counters and the dead-letter table.
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::NotJson { .. } | DecodeError::Json { .. } => "bad_json",
            DecodeError::Empty { .. } => "empty_batch",
            DecodeError::TooLong { .. } => "batch_too_long",
            DecodeError::AgentMismatch { .. } => "agent_mismatch",
            DecodeError::NotFinite { .. } => "not_finite",
            DecodeError::UnitMismatch { .. } => "unit_mismatch",
            DecodeError::InFuture { .. } => "in_future",
            DecodeError::TooOld { .. } => "too_old",
            DecodeError::EndBeforeStart { .. } => "end_before_start",
            DecodeError::AfterBeyondSeq { .. } => "after_beyond_seq",
            DecodeError::WrongDomain { .. } => "wrong_domain",
        }
    }
}

fn from_json<T: DeserializeOwned>(payload: &[u8]) -> Result<T, DecodeError> {
    // Fast path: plain serde_json. Only a payload that fails is parsed again with path
    // tracking, which costs a third of the decode time, to name the field at fault.
    match serde_json::from_slice(payload) {
        Ok(v) => Ok(v),
        Err(_) => Err(explain::<T>(payload)),
    }
}

/// The error of a payload that failed to decode, with the path of the field at fault.
fn explain<T: DeserializeOwned>(payload: &[u8]) -> DecodeError {
    let mut de = serde_json::Deserializer::from_slice(payload);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Err(e) if e.inner().is_syntax() || e.inner().is_eof() => DecodeError::NotJson {
            reason: e.inner().to_string(),
        },
        Err(e) => DecodeError::Json {
            path: e.path().to_string(),
            reason: e.inner().to_string(),
        },
        Ok(_) => match de.end() {
            Err(e) => DecodeError::NotJson {
                reason: e.to_string(),
            },
            // Both parsers agree on valid JSON; reaching this means they disagree.
            Ok(()) => DecodeError::NotJson {
                reason: "the payload was rejected by the strict parser".into(),
            },
        },
    }
}

/// Decodes and checks a batch received on a `stream` topic of agent `topic_agent`.
pub fn decode(
    stream: Stream,
    topic_agent: &AgentId,
    payload: &[u8],
    limits: &Limits,
    now: UnixMillis,
) -> Result<Checked<Batch>, DecodeError> {
    if payload.len() > limits.max_payload_bytes {
        return Err(DecodeError::TooLarge {
            bytes: payload.len(),
            max: limits.max_payload_bytes,
        });
    }
    let batch = match stream {
        // Agents' own form first; serde_json decides everything else.
        Stream::Readings => Batch::Readings(match crate::fast::readings(payload) {
            Some(b) => b,
            None => from_json::<ReadingBatch>(payload)?,
        }),
        Stream::Events => Batch::Events(from_json::<EventBatch>(payload)?),
    };
    if batch.agent() != topic_agent {
        return Err(DecodeError::AgentMismatch {
            topic: topic_agent.to_string(),
            payload: batch.agent().to_string(),
        });
    }
    check(batch, limits, now)
}

/// Checks a batch built in memory against the same rules [`decode`] applies.
///
/// A reading of a well-known metric whose value lies outside the metric's physically possible
/// range ([`crate::MetricSpec`]) is kept, with its quality set to `bad` (counted by
/// [`Checked::flagged`]): the rest of the batch is good data, and a `bad` reading counts as
/// missing, so a broken probe can neither pass a check nor hide the readings beside it.
pub fn check(
    mut batch: Batch,
    limits: &Limits,
    now: UnixMillis,
) -> Result<Checked<Batch>, DecodeError> {
    let time = |path: &dyn Fn() -> String, ts: UnixMillis| -> Result<(), DecodeError> {
        let ahead = ts.0.saturating_sub(now.0);
        if ahead > limits.max_future_skew_ms {
            return Err(DecodeError::InFuture {
                path: path(),
                ts: ts.0,
                ahead_ms: ahead,
                max_ms: limits.max_future_skew_ms,
            });
        }
        let age = now.0.saturating_sub(ts.0);
        if age > limits.max_age_ms {
            return Err(DecodeError::TooOld {
                path: path(),
                ts: ts.0,
                age_ms: age,
                max_ms: limits.max_age_ms,
            });
        }
        Ok(())
    };
    let (field, len) = match &batch {
        Batch::Readings(b) => ("readings", b.readings.len()),
        Batch::Events(b) => ("events", b.events.len()),
    };
    if len == 0 {
        return Err(DecodeError::Empty { field });
    }
    if let Some(after) = batch.after() {
        if after > batch.seq() {
            return Err(DecodeError::AfterBeyondSeq {
                after: after.0,
                seq: batch.seq().0,
            });
        }
    }
    if len > limits.max_batch_len {
        return Err(DecodeError::TooLong {
            field,
            len,
            max: limits.max_batch_len,
        });
    }
    let mut flagged = 0;
    match &mut batch {
        Batch::Readings(b) => {
            for (i, r) in b.readings.iter_mut().enumerate() {
                if !r.value.is_finite() {
                    return Err(DecodeError::NotFinite {
                        path: format!("readings[{i}].value"),
                    });
                }
                if let Some(spec) = r.metric.spec() {
                    if spec.unit != r.unit {
                        return Err(unit_mismatch(i, &r.metric, spec.unit, r.unit));
                    }
                    if !spec.possible(r.value) {
                        r.quality = Quality::Bad;
                        flagged += 1;
                    }
                }
                time(&|| format!("readings[{i}].ts_ms"), r.ts_ms)?;
            }
        }
        Batch::Events(b) => {
            for (i, e) in b.events.iter().enumerate() {
                time(&|| format!("events[{i}]"), e.ts())?;
                if let Some(end) = e.end() {
                    if end < e.ts() {
                        return Err(DecodeError::EndBeforeStart {
                            path: format!("events[{i}].end_ms"),
                        });
                    }
                }
            }
        }
    }
    Ok(Checked {
        value: batch,
        flagged,
    })
}

/// Checks that every record kind and well-known metric in `batch` belongs to `domain`, the
/// domain of the entity its agent serves (a `game_payment` from a pool agent is refused).
pub fn check_domain(batch: &Checked<Batch>, domain: Domain) -> Result<(), DecodeError> {
    match batch.get() {
        Batch::Readings(b) => {
            for (i, r) in b.readings.iter().enumerate() {
                if let Some(spec) = r.metric.spec() {
                    if spec.domain != domain {
                        return Err(DecodeError::WrongDomain {
                            path: format!("readings[{i}].metric"),
                            what: format!("metric {}", r.metric),
                            expected: spec.domain,
                            domain,
                        });
                    }
                }
            }
        }
        Batch::Events(b) => {
            for (i, e) in b.events.iter().enumerate() {
                if e.domain() != domain {
                    return Err(DecodeError::WrongDomain {
                        path: format!("events[{i}].kind"),
                        what: format!("a {} record", e.kind()),
                        expected: e.domain(),
                        domain,
                    });
                }
            }
        }
    }
    Ok(())
}

fn unit_mismatch(i: usize, metric: &Metric, expected: Unit, found: Unit) -> DecodeError {
    DecodeError::UnitMismatch {
        path: format!("readings[{i}].unit"),
        metric: metric.to_string(),
        expected,
        found,
    }
}
