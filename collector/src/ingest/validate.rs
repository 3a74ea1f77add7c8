//! Where a message becomes a validated batch or a dead letter: topic, registration, payload.
//! [`validate`] is pure, so every rule here is unit-tested directly; [`Validator`] applies it
//! in the source tasks, with its side effects (agent presence, a log line per rejection).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde::Deserialize;
use spotcheck_protocol::{
    check_domain, decode, mac, AgentId, AgentState, Batch, Checked, DecodeError, Domain, EntityId,
    Limits, Seq, Status, Stream, Topic, UnixMillis,
};

use super::bound::{Bounds, LogLine, UNKNOWN_SOURCE};
use super::commit::Validated;
use super::source::Received;
use crate::registry::credentials::{Credentials, KeyLookupRef};
use crate::registry::{Bindings, Presence};
use crate::store::writer::DeadLetter;
use crate::telemetry::Stats;

/// Judges messages as they come off the broker link. Cheap to clone: one per source task.
#[derive(Clone)]
pub struct Validator {
    /// Agent bindings.
    pub bindings: Bindings,
    /// Agent presence, updated from status messages.
    pub presence: Presence,
    /// Counters.
    pub stats: Stats,
    /// Payload limits.
    pub limits: Limits,
    /// Whether batches and statuses must prove their agent.
    pub auth: Auth,
    /// The dead-letter quota and the rejection log limit.
    pub bounds: std::sync::Arc<Bounds>,
}

/// The agents' keys, and whether ingest requires their MACs (`ingest.require_agent_auth`).
#[derive(Debug, Clone)]
pub struct Auth {
    /// The live credential table.
    pub table: Credentials,
    /// True: batches and statuses are stored or believed only if their MAC verifies with the
    /// agent's current key. False: MACs are stripped unchecked; only for measuring what
    /// checking costs.
    pub required: bool,
    /// The MAC algorithm each agent signs with, to sign its acks the same way.
    pub answers: Answers,
}

impl Auth {
    /// No MAC is checked, no key known (tests of other rules).
    pub fn off() -> Auth {
        Auth {
            table: Credentials::default(),
            required: false,
            answers: Answers::default(),
        }
    }
}

/// The MAC algorithm of the last message whose MAC verified, per agent: the confirm stage signs
/// the agent's acks with it, so an agent that only knows HMAC-SHA256 (older than keyed BLAKE3,
/// or configured `agent.mac = "hmac-sha256"`) can check them. Only a verified MAC is noted, so
/// a stranger cannot switch an agent's acks to an algorithm it does not know. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Answers(Arc<RwLock<HashMap<AgentId, mac::Algorithm>>>);

impl Answers {
    /// Notes that `agent` signed a verified message with `algorithm`.
    pub fn note(&self, agent: &AgentId, algorithm: mac::Algorithm) {
        // A read first: an agent keeps its algorithm, so the write lock is rarely taken.
        let known = self
            .0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(agent)
            .copied();
        if known != Some(algorithm) {
            self.0
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(agent.clone(), algorithm);
        }
    }

    /// The algorithm to sign `agent`'s acks with: the one it last signed with, else HMAC-SHA256,
    /// which every agent knows (agents that sign with keyed BLAKE3 believe acks in either).
    pub fn algorithm(&self, agent: &AgentId) -> mac::Algorithm {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(agent)
            .copied()
            .unwrap_or(mac::Algorithm::HmacSha256)
    }
}

impl Validator {
    /// The verdict on `r`, with presence updated and rejections logged:
    /// [`Validator::check`] then [`Validator::settle`].
    pub fn judge(&self, r: Received) -> Validated {
        let verdict = self.check(&r);
        self.settle(r, verdict)
    }

    /// The verdict on `r` from its topic and payload alone (decoding, the agent's MAC): no
    /// state is read or changed beyond the credential table, so messages may be checked on
    /// several threads at once, in any order.
    pub fn check(&self, r: &Received) -> Verdict {
        match std::str::from_utf8(&r.topic) {
            Ok(topic) => validate(
                topic,
                &r.payload,
                &self.bindings,
                &self.auth,
                &self.limits,
                UnixMillis::now(),
            ),
            Err(_) => topic_not_utf8(&r.topic, &r.payload),
        }
    }

    /// What [`Validator::check`]'s verdict on `r` does to ingest's state: an agent's presence,
    /// the dead-letter quota, the rejection log. Must run in the order messages arrived (a
    /// status is believed only if newer than the last one).
    pub fn settle(&self, r: Received, verdict: Verdict) -> Validated {
        let verdict = match verdict {
            Verdict::Status {
                agent,
                state,
                order,
            } => match self.presence.set(agent.clone(), state, order) {
                Some(online) => {
                    self.stats.agents_online.set(online as i64);
                    Verdict::Status {
                        agent,
                        state,
                        order,
                    }
                }
                None => Verdict::Reject(DeadLetter {
                    topic: String::from_utf8_lossy(&r.topic).into_owned(),
                    agent: Some(agent),
                    seq: None,
                    code: "stale_status",
                    reason: format!(
                        "status (epoch {}, counter {}) is older than the last one believed from this agent: a replay",
                        order.0, order.1
                    ),
                    payload: r.payload.to_vec(),
                    items: 0,
                }),
            },
            other => other,
        };
        let verdict = match verdict {
            Verdict::Reject(d) if d.seq.is_none() => {
                // Not confirmed to anyone: charged to its source's daily quota.
                let source = match &d.agent {
                    Some(a) if self.bindings.get(a).is_some() => a.as_str(),
                    _ => UNKNOWN_SOURCE,
                };
                let bytes = (d.payload.len() + d.topic.len() + d.reason.len()) as u64;
                let fits = self
                    .bounds
                    .quota
                    .lock()
                    .map(|mut q| q.charge(source, bytes, UnixMillis::now()))
                    .unwrap_or(true);
                if fits {
                    Verdict::Reject(d)
                } else {
                    self.stats.dead_letters_over_quota.inc();
                    Verdict::OverQuota {
                        code: d.code,
                        items: d.items,
                        topic: d.topic,
                        source: source.to_owned(),
                    }
                }
            }
            other => other,
        };
        match &verdict {
            Verdict::Reject(d) => {
                if let LogLine::Log { suppressed } = self.bounds.log(d.code) {
                    tracing::warn!(message = "Message rejected; kept as a dead letter.", topic = %d.topic, agent = ?d.agent.as_ref().map(|a| a.as_str()), code = d.code, reason = %d.reason, suppressed);
                }
            }
            Verdict::OverQuota {
                code,
                topic,
                source,
                ..
            } => {
                if let LogLine::Log { suppressed } = self.bounds.log("over_quota") {
                    tracing::warn!(message = "Message rejected; its source is over its dead-letter quota for today, so it is only counted.", %topic, %source, code, suppressed);
                }
            }
            Verdict::Status { .. } | Verdict::Accept { .. } | Verdict::KeptBack => {}
        }
        Validated {
            ack: r.ack,
            verdict,
            received: r.at,
        }
    }
}

/// What ingest does with one message.
#[derive(Debug)]
pub enum Verdict {
    /// A valid batch from a registered agent for its own entity.
    Accept {
        /// The entity.
        entity: EntityId,
        /// Its domain.
        domain: Domain,
        /// The batch.
        batch: Checked<Batch>,
    },
    /// Rejected; kept in the dead-letter table.
    Reject(DeadLetter),
    /// Rejected, but its source has used up its dead-letter quota for the day: counted and
    /// logged, not kept.
    OverQuota {
        /// The rejection code.
        code: &'static str,
        /// Readings or records it held, where they could be counted.
        items: u64,
        /// The topic it came on.
        topic: String,
        /// The source it was charged to.
        source: String,
    },
    /// A valid batch kept back behind a gap in its agent's sequence (see `ingest::order`):
    /// acknowledged to the broker, neither stored nor confirmed yet.
    KeptBack,
    /// An agent's status changed.
    Status {
        /// The agent.
        agent: AgentId,
        /// Its new state.
        state: AgentState,
        /// Its place in the agent's sequence of statuses ([`Status::order`]).
        order: (u64, u64),
    },
}

/// The verdict on a message whose topic is not UTF-8 (which MQTT forbids; a broker may still
/// pass one on).
pub fn topic_not_utf8(topic: &[u8], payload: &[u8]) -> Verdict {
    Verdict::Reject(DeadLetter {
        topic: String::from_utf8_lossy(topic).into_owned(),
        agent: None,
        seq: None,
        code: "bad_topic",
        reason: "topic is not valid UTF-8; MQTT topics must be".to_owned(),
        payload: payload.to_vec(),
        items: 0,
    })
}

/// Judges one message received on `topic`.
pub fn validate(
    topic: &str,
    payload: &[u8],
    bindings: &Bindings,
    auth: &Auth,
    limits: &Limits,
    now: UnixMillis,
) -> Verdict {
    let reject = |agent: Option<&AgentId>, code: &'static str, reason: String| {
        // The sequence number is read leniently so that the agent can be told its batch was
        // kept (in the dead-letter table) and stop re-sending it.
        let (agent, seq, items) = match agent {
            Some(a) => probe(payload, a),
            None => (None, None, 0),
        };
        Verdict::Reject(DeadLetter {
            topic: topic.to_owned(),
            agent,
            seq,
            code,
            reason,
            payload: payload.to_vec(),
            items,
        })
    };
    let parsed = match Topic::parse(topic) {
        Ok(t) => t,
        Err(e) => return reject(None, "bad_topic", format!("topic {topic:?}: {e}")),
    };
    let (stream, domain, entity, agent) = match parsed {
        Topic::Readings {
            domain,
            entity,
            agent,
        } => (Stream::Readings, domain, entity, agent),
        Topic::Events {
            domain,
            entity,
            agent,
        } => (Stream::Events, domain, entity, agent),
        Topic::Status { agent } => {
            // Neither the agent nor a sequence number: a status is never confirmed.
            let reject_status = |code, reason| {
                let mut v = reject(None, code, reason);
                if let Verdict::Reject(d) = &mut v {
                    d.agent = Some(agent.clone());
                }
                v
            };
            if bindings.get(&agent).is_none() {
                return reject_status(
                    "unknown_agent",
                    format!(
                        "status of agent {agent}, which is not registered; add it under [[agents]]"
                    ),
                );
            }
            let body = match authenticate(auth, &agent, payload) {
                Ok(body) => body,
                Err((code, reason)) => return reject_status(code, format!("status: {reason}")),
            };
            return match Status::decode(&body) {
                Ok(s) if s.agent == agent => Verdict::Status {
                    order: s.order(),
                    agent,
                    state: s.state,
                },
                Ok(s) => reject_status(
                    "bad_status",
                    format!(
                        "status payload names agent {} but the topic names {agent}",
                        s.agent
                    ),
                ),
                Err(e) => reject_status("bad_status", format!("status payload: {e}")),
            };
        }
        Topic::Ack { .. } => {
            return reject(
                None,
                "bad_topic",
                format!("topic {topic:?}: collectors publish acks, they do not receive them"),
            )
        }
    };
    // Authenticity first: only a batch the agent provably sent may be confirmed to it, so
    // every rejection before this point names no sequence number. (Size first: checking the
    // MAC of an oversized payload would be work for nothing.)
    if auth.required && payload.len() > limits.max_payload_bytes {
        let e = DecodeError::TooLarge {
            bytes: payload.len(),
            max: limits.max_payload_bytes,
        };
        let mut v = reject(None, e.code(), e.to_string());
        if let Verdict::Reject(d) = &mut v {
            d.agent = Some(agent.clone());
        }
        return v;
    }
    let body = match authenticate(auth, &agent, payload) {
        Ok(body) => body,
        Err((_, _)) if bindings.get(&agent).is_none() => {
            let mut v = reject(
                None,
                "unknown_agent",
                format!("agent {agent} is not registered; add it under [[agents]] with the entity it serves"),
            );
            if let Verdict::Reject(d) = &mut v {
                d.agent = Some(agent.clone());
            }
            return v;
        }
        Err((code, reason)) => {
            let mut v = reject(None, code, reason);
            if let Verdict::Reject(d) = &mut v {
                d.agent = Some(agent.clone());
            }
            return v;
        }
    };
    let Some(binding) = bindings.get(&agent) else {
        return reject(
            Some(&agent),
            "unknown_agent",
            format!("agent {agent} is not registered; add it under [[agents]] with the entity it serves"),
        );
    };
    if binding.entity != entity || binding.domain != domain {
        return reject(
            Some(&agent),
            "entity_mismatch",
            format!(
                "agent {agent} is registered to {}/{} but published for {domain}/{entity}",
                binding.domain, binding.entity
            ),
        );
    }
    match decode(stream, &agent, &body, limits, now)
        .and_then(|batch| check_domain(&batch, domain).map(|()| batch))
    {
        Ok(batch) => Verdict::Accept {
            entity,
            domain,
            batch,
        },
        Err(e @ DecodeError::AgentMismatch { .. }) => reject(None, e.code(), e.to_string()),
        Err(e) => reject(Some(&agent), e.code(), e.to_string()),
    }
}

/// The unsigned body of a message from `agent` whose MAC verifies with the agent's current key,
/// or the rejection code and reason. Unless [`Auth::required`], a MAC is stripped unchecked.
fn authenticate<'p>(
    auth: &Auth,
    agent: &AgentId,
    payload: &'p [u8],
) -> Result<Cow<'p, [u8]>, (&'static str, String)> {
    if !auth.required {
        return if mac::is_signed(payload) {
            mac::unsigned_body(payload)
                .map(Cow::Owned)
                .map_err(|e| ("bad_mac", e.to_string()))
        } else {
            Ok(Cow::Borrowed(payload))
        };
    }
    auth.table.with_key(agent, |lookup| match lookup {
        KeyLookupRef::Current(key) => match mac::verify_any(key, payload) {
            Ok(v) => {
                auth.answers.note(agent, v.algorithm);
                Ok(Cow::Owned(v.body))
            }
            Err(e) => Err(("bad_mac", format!("agent {agent}: {e}"))),
        },
        KeyLookupRef::Revoked => Err((
            "revoked_credential",
            format!("agent {agent}'s credential is revoked; issue a new one with `spotcheck-collector agents rotate {agent}`"),
        )),
        KeyLookupRef::None => Err((
            "no_credential",
            format!("agent {agent} has no credential; issue one with `spotcheck-collector agents add {agent}` and install it on the agent"),
        )),
    })
}

/// Reads `agent`, `seq` and the item count from a payload that failed strict decoding.
fn probe(payload: &[u8], topic_agent: &AgentId) -> (Option<AgentId>, Option<Seq>, u64) {
    #[derive(Deserialize)]
    struct Loose {
        agent: Option<String>,
        seq: Option<u64>,
        readings: Option<Vec<serde::de::IgnoredAny>>,
        events: Option<Vec<serde::de::IgnoredAny>>,
    }
    let Ok(loose) = serde_json::from_slice::<Loose>(payload) else {
        return (Some(topic_agent.clone()), None, 0);
    };
    let items = loose
        .readings
        .or(loose.events)
        .map_or(0, |v| v.len() as u64);
    let seq = match loose.agent.as_deref() {
        Some(a) if a == topic_agent.as_str() => loose.seq.map(Seq),
        _ => None,
    };
    (Some(topic_agent.clone()), seq, items)
}

#[cfg(test)]
mod tests;
