//! The collector's end-to-end confirmations and the agents' status messages.
//!
//! A broker's PUBACK only says the broker has a message. An agent drops a batch from its spool
//! only when an [`Ack`] names the batch's sequence number, which the collector publishes after
//! the batch is committed to its store (or kept in its dead-letter table).

use serde::{Deserialize, Serialize};

use crate::batch::Version;
use crate::ids::{AgentId, Seq};
use crate::mac::{self, AgentKey, Algorithm, MacError};

/// Why a signed ack or status was not believed.
#[derive(Debug, thiserror::Error)]
pub enum SignedError {
    /// The MAC is missing, malformed, stale or wrong.
    #[error(transparent)]
    Mac(#[from] MacError),
    /// The MAC is right but the payload is not of the expected shape.
    #[error("payload: {0}")]
    Json(#[from] serde_json::Error),
}

/// An inclusive range of sequence numbers, `[first, last]` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "[u64; 2]", into = "[u64; 2]")]
pub struct SeqRange {
    first: Seq,
    last: Seq,
}

/// A range whose end lies before its start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sequence range [{0}, {1}] ends before it starts")]
pub struct InvertedRange(pub u64, pub u64);

impl SeqRange {
    /// The range `[first, last]`.
    pub fn new(first: Seq, last: Seq) -> Result<SeqRange, InvertedRange> {
        if last < first {
            return Err(InvertedRange(first.0, last.0));
        }
        Ok(SeqRange { first, last })
    }

    /// The first sequence number.
    pub fn first(&self) -> Seq {
        self.first
    }

    /// The last sequence number, inclusive.
    pub fn last(&self) -> Seq {
        self.last
    }

    /// Whether `seq` lies in the range.
    pub fn contains(&self, seq: Seq) -> bool {
        self.first <= seq && seq <= self.last
    }
}

impl TryFrom<[u64; 2]> for SeqRange {
    type Error = InvertedRange;
    fn try_from([a, b]: [u64; 2]) -> Result<Self, InvertedRange> {
        SeqRange::new(Seq(a), Seq(b))
    }
}

impl From<SeqRange> for [u64; 2] {
    fn from(r: SeqRange) -> [u64; 2] {
        [r.first.0, r.last.0]
    }
}

/// The sequence numbers of one agent that the collector has committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    /// Payload version.
    pub v: Version,
    /// The agent the confirmation is for.
    pub agent: AgentId,
    /// The committed sequence numbers, as sorted, disjoint ranges.
    pub seqs: Vec<SeqRange>,
    /// One above the highest sequence number the collector has ever stored from this agent:
    /// a new batch must not take a lower number. An agent whose counter is behind (its spool
    /// was lost or reset) jumps to it, so its new data is not refused as `seq_reused`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<Seq>,
}

impl Ack {
    /// An ack for `agent` naming every sequence number in `seqs` (any order, repeats allowed).
    pub fn new(agent: AgentId, seqs: impl IntoIterator<Item = Seq>) -> Ack {
        let mut all: Vec<u64> = seqs.into_iter().map(|s| s.0).collect();
        all.sort_unstable();
        all.dedup();
        let mut ranges: Vec<SeqRange> = Vec::new();
        for s in all {
            match ranges.last_mut() {
                Some(r) if r.last.0 + 1 == s => r.last = Seq(s),
                _ => ranges.push(SeqRange {
                    first: Seq(s),
                    last: Seq(s),
                }),
            }
        }
        Ack {
            v: Version,
            agent,
            seqs: ranges,
            next: None,
        }
    }

    /// Whether the ack confirms `seq`.
    pub fn confirms(&self, seq: Seq) -> bool {
        self.seqs.iter().any(|r| r.contains(seq))
    }

    /// Every confirmed sequence number, in order.
    pub fn iter(&self) -> impl Iterator<Item = Seq> + '_ {
        self.seqs
            .iter()
            .flat_map(|r| (r.first.0..=r.last.0).map(Seq))
    }

    /// The JSON payload.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("ack always serializes")
    }

    /// Parses an ack payload.
    pub fn decode(payload: &[u8]) -> Result<Ack, serde_json::Error> {
        serde_json::from_slice(payload)
    }

    /// The JSON payload signed with the agent's key by the default algorithm (see
    /// [`crate::mac`]).
    pub fn encode_signed(&self, key: &AgentKey) -> Vec<u8> {
        mac::sign(key, &self.encode())
    }

    /// The JSON payload signed with the agent's key by `algorithm`: the collector answers in
    /// the algorithm the agent signs with.
    pub fn encode_signed_with(&self, algorithm: Algorithm, key: &AgentKey) -> Vec<u8> {
        mac::sign_with(algorithm, key, &self.encode())
    }

    /// Parses an ack payload whose MAC (by either algorithm) must verify with `key`.
    pub fn decode_signed(key: &AgentKey, payload: &[u8]) -> Result<Ack, SignedError> {
        Ok(serde_json::from_slice(&mac::verify(key, payload)?)?)
    }
}

/// Whether an agent is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// Connected; published by the agent after each connect.
    Online,
    /// Gone; published by the agent on a clean exit, or by the broker as its last will.
    Offline,
}

/// The retained payload of `spotcheck/v1/agents/{agent}/status`.
///
/// Signed, it is believed only if `(epoch, counter)` is higher than that of the last status
/// believed from the agent, so an old signed `offline` cannot be replayed over a live session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Status {
    /// Payload version.
    pub v: Version,
    /// The agent.
    pub agent: AgentId,
    /// Online or offline.
    pub state: AgentState,
    /// When the agent process started, Unix milliseconds (0 if unsaid).
    #[serde(default)]
    pub epoch: u64,
    /// Increases with every status the process sends: `2k` for the online status of its
    /// `k`-th connection, `2k + 1` for that connection's offline status (and last will).
    #[serde(default)]
    pub counter: u64,
}

impl Status {
    /// A status message without an epoch or counter.
    pub fn new(agent: AgentId, state: AgentState) -> Status {
        Status::numbered(agent, state, 0, 0)
    }

    /// A status message with its place in the agent's sequence of statuses.
    pub fn numbered(agent: AgentId, state: AgentState, epoch: u64, counter: u64) -> Status {
        Status {
            v: Version,
            agent,
            state,
            epoch,
            counter,
        }
    }

    /// Where it stands in the agent's sequence of statuses: later ones compare higher.
    pub fn order(&self) -> (u64, u64) {
        (self.epoch, self.counter)
    }

    /// The JSON payload signed with the agent's key by the default algorithm (see
    /// [`crate::mac`]).
    pub fn encode_signed(&self, key: &AgentKey) -> Vec<u8> {
        mac::sign(key, &self.encode())
    }

    /// The JSON payload signed with the agent's key by `algorithm`.
    pub fn encode_signed_with(&self, algorithm: Algorithm, key: &AgentKey) -> Vec<u8> {
        mac::sign_with(algorithm, key, &self.encode())
    }

    /// Parses a status payload whose MAC (by either algorithm) must verify with `key`.
    pub fn decode_signed(key: &AgentKey, payload: &[u8]) -> Result<Status, SignedError> {
        Ok(serde_json::from_slice(&mac::verify(key, payload)?)?)
    }

    /// The JSON payload.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("status always serializes")
    }

    /// Parses a status payload.
    pub fn decode(payload: &[u8]) -> Result<Status, serde_json::Error> {
        serde_json::from_slice(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_compress_sequence_numbers_into_sorted_ranges() {
        let agent = AgentId::new("a").unwrap();
        let ack = Ack::new(agent, [7, 3, 4, 5, 5, 9, 8].map(Seq));
        let wire = String::from_utf8(ack.encode()).unwrap();
        assert_eq!(wire, r#"{"v":1,"agent":"a","seqs":[[3,5],[7,9]]}"#);
        assert_eq!(Ack::decode(wire.as_bytes()).unwrap(), ack);
        assert!(ack.confirms(Seq(8)) && !ack.confirms(Seq(6)));
        assert_eq!(ack.iter().count(), 6);
    }

    #[test]
    fn a_signed_ack_decodes_only_with_the_agents_key() {
        use crate::mac::KeyGeneration;
        let key = AgentKey::new(KeyGeneration(1), [9; 32]).unwrap();
        let other = AgentKey::new(KeyGeneration(1), [8; 32]).unwrap();
        let ack = Ack::new(AgentId::new("a").unwrap(), [Seq(1)]);
        let wire = ack.encode_signed(&key);
        assert_eq!(Ack::decode_signed(&key, &wire).unwrap(), ack);
        assert!(Ack::decode_signed(&other, &wire).is_err());
        assert!(Ack::decode_signed(&key, &ack.encode()).is_err());
        let hmac = ack.encode_signed_with(Algorithm::HmacSha256, &key);
        assert_eq!(mac::algorithm_of(&hmac), Some(Algorithm::HmacSha256));
        assert_eq!(mac::algorithm_of(&wire), Some(Algorithm::Blake3));
        assert_eq!(Ack::decode_signed(&key, &hmac).unwrap(), ack);
        assert!(Ack::decode_signed(&other, &hmac).is_err());
    }

    #[test]
    fn an_ack_may_say_where_the_agent_continues() {
        let mut ack = Ack::new(AgentId::new("a").unwrap(), [Seq(3)]);
        ack.next = Some(Seq(41));
        let wire = String::from_utf8(ack.encode()).unwrap();
        assert_eq!(wire, r#"{"v":1,"agent":"a","seqs":[[3,3]],"next":41}"#);
        assert_eq!(Ack::decode(wire.as_bytes()).unwrap(), ack);
    }

    #[test]
    fn an_inverted_range_does_not_decode() {
        assert!(Ack::decode(br#"{"v":1,"agent":"a","seqs":[[5,3]]}"#).is_err());
    }
}
