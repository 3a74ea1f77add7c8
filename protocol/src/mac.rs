//! Message authentication: every batch and status an agent sends, and every ack the collector
//! sends back, carries an HMAC-SHA256 made with the agent's own 32-byte key.
//!
//! The wire form is the unsigned JSON object with one more member at its end:
//!
//! ```text
//! body   = {"v":1,"agent":"a1","seq":7,"readings":[…]}
//! signed = {"v":1,"agent":"a1","seq":7,"readings":[…],"mac":"<gen>:<hex>"}
//! ```
//!
//! - `<hex>` is the 64 lowercase hex digits of `HMAC-SHA256(key, body)`, where `body` is the
//!   exact byte string of the unsigned object: `signed` with the member
//!   `,"mac":"<gen>:<hex>"` (which must be the last member, written exactly so, no spaces)
//!   cut out, so `body` ends with the `}` of `signed`.
//! - `<gen>` is the key's generation (1, 2, … as the collector issued it), in decimal without
//!   leading zeros. It is not covered by the MAC: it only tells the verifier which key the
//!   sender used, so that a stale key is reported as such.
//!
//! To sign in any language: serialize the object, compute the HMAC over those bytes, then
//! replace the final `}` with `,"mac":"<gen>:<hex>"}`. To verify: find the last `,"mac":"`,
//! check that what follows is `<gen>:<64 hex>"}` and nothing else, and compute the HMAC over
//! the bytes before it followed by `}`.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Bytes in an agent key.
pub const KEY_LEN: usize = 32;

/// The member that opens a MAC, as it appears on the wire.
const MAC_OPEN: &[u8] = b",\"mac\":\"";
/// The MAC's hex digits.
const MAC_HEX: usize = 64;
/// Most decimal digits of a generation (`u32::MAX`).
const GEN_DIGITS: usize = 10;

/// A key generation: which of an agent's successive keys signed a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyGeneration(pub u32);

impl fmt::Display for KeyGeneration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An agent's 32-byte HMAC key with its generation. Its `Debug` never shows the key.
///
/// It keeps the HMAC state already keyed (the inner and outer pads compressed once), so each
/// MAC clones that state instead of redoing the key schedule: two of the seven SHA-256 blocks
/// of a batch of one reading.
#[derive(Clone)]
pub struct AgentKey {
    generation: KeyGeneration,
    bytes: [u8; KEY_LEN],
    keyed: Hmac<Sha256>,
}

impl PartialEq for AgentKey {
    fn eq(&self, other: &AgentKey) -> bool {
        self.generation == other.generation && self.bytes == other.bytes
    }
}

impl Eq for AgentKey {}

impl fmt::Debug for AgentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentKey")
            .field("generation", &self.generation)
            .field("bytes", &"<redacted>")
            .finish()
    }
}

/// Why a key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not 64 hex digits.
    #[error("an agent key is 64 hex digits (32 bytes); this one is {found} characters or not hex: copy it again from `spotcheck-collector agents add|rotate`")]
    Shape {
        /// How many characters it has.
        found: usize,
    },
    /// Generation 0.
    #[error("key generation 0 does not exist; generations start at 1")]
    ZeroGeneration,
}

impl AgentKey {
    /// A key from its bytes.
    pub fn new(generation: KeyGeneration, bytes: [u8; KEY_LEN]) -> Result<AgentKey, KeyError> {
        if generation.0 == 0 {
            return Err(KeyError::ZeroGeneration);
        }
        let keyed =
            <Hmac<Sha256> as Mac>::new_from_slice(&bytes).expect("HMAC takes keys of any length");
        Ok(AgentKey {
            generation,
            bytes,
            keyed,
        })
    }

    /// A key from 64 hex digits (either case, surrounding whitespace ignored).
    pub fn from_hex(generation: KeyGeneration, hex_key: &str) -> Result<AgentKey, KeyError> {
        let s = hex_key.trim();
        let mut bytes = [0u8; KEY_LEN];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| KeyError::Shape { found: s.len() })?;
        AgentKey::new(generation, bytes)
    }

    /// The key as 64 lowercase hex digits. Handle with care: this is the secret.
    pub fn to_hex(&self) -> String {
        hex::encode(self.bytes)
    }

    /// Its generation.
    pub fn generation(&self) -> KeyGeneration {
        self.generation
    }

    fn mac(&self) -> Hmac<Sha256> {
        self.keyed.clone()
    }
}

/// Why a signed payload was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MacError {
    /// No `"mac"` member at the end of the object.
    #[error("the payload carries no MAC: its last member must be \"mac\":\"<generation>:<64 hex>\" (see protocol/src/mac.rs)")]
    Missing,
    /// A `"mac"` member that is not `<gen>:<64 lowercase hex>` followed by `}`.
    #[error("the payload's \"mac\" member is malformed: write it last, exactly as \"mac\":\"<generation>:<64 lowercase hex>\"")]
    Malformed,
    /// Signed with another generation of the key than the current one.
    #[error("signed with key generation {found}, but the agent's current key is generation {current}: install the current credential on the agent")]
    StaleKey {
        /// The generation in the message.
        found: KeyGeneration,
        /// The current generation.
        current: KeyGeneration,
    },
    /// The MAC does not match the payload.
    #[error("the MAC does not match the payload: not signed with this agent's key, or altered on the way")]
    Mismatch,
}

/// Where the MAC member of a signed payload starts, with the parsed generation and MAC.
struct Parts {
    at: usize,
    generation: KeyGeneration,
    mac: [u8; 32],
}

fn parts(signed: &[u8]) -> Result<Parts, MacError> {
    // The member is `,"mac":"` + gen (1–10 digits) + `:` + 64 hex + `"}`; search only its tail.
    let longest = MAC_OPEN.len() + GEN_DIGITS + 1 + MAC_HEX + 2;
    let tail_from = signed.len().saturating_sub(longest);
    let at = signed[tail_from..]
        .windows(MAC_OPEN.len())
        .rposition(|w| w == MAC_OPEN)
        .map(|i| tail_from + i)
        .ok_or(MacError::Missing)?;
    let value = &signed[at + MAC_OPEN.len()..];
    let rest = value.strip_suffix(b"\"}").ok_or(MacError::Malformed)?;
    let colon = rest
        .iter()
        .position(|&b| b == b':')
        .ok_or(MacError::Malformed)?;
    let (gen, hex_mac) = (&rest[..colon], &rest[colon + 1..]);
    let gen_ok = !gen.is_empty()
        && gen.len() <= GEN_DIGITS
        && gen.iter().all(u8::is_ascii_digit)
        && gen[0] != b'0';
    if !gen_ok || hex_mac.len() != MAC_HEX {
        return Err(MacError::Malformed);
    }
    let generation = std::str::from_utf8(gen)
        .ok()
        .and_then(|g| g.parse::<u32>().ok())
        .ok_or(MacError::Malformed)?;
    if !hex_mac
        .iter()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(MacError::Malformed);
    }
    let mut mac = [0u8; 32];
    hex::decode_to_slice(hex_mac, &mut mac).map_err(|_| MacError::Malformed)?;
    Ok(Parts {
        at,
        generation: KeyGeneration(generation),
        mac,
    })
}

/// Signs `body`, a JSON object text with at least one member (as `serde_json` writes one):
/// returns it with the `"mac"` member added last.
///
/// # Panics
///
/// If `body` does not end with `}`: every payload of this protocol is an object.
pub fn sign(key: &AgentKey, body: &[u8]) -> Vec<u8> {
    let (close, open) = body
        .split_last()
        .filter(|(c, _)| **c == b'}')
        .expect("only JSON objects are signed");
    let mut m = key.mac();
    m.update(body);
    let tag = m.finalize().into_bytes();
    let mut out = Vec::with_capacity(body.len() + MAC_OPEN.len() + GEN_DIGITS + MAC_HEX + 3);
    out.extend_from_slice(open);
    out.extend_from_slice(MAC_OPEN);
    out.extend_from_slice(key.generation.0.to_string().as_bytes());
    out.push(b':');
    let mut hex_tag = [0u8; MAC_HEX];
    hex::encode_to_slice(tag, &mut hex_tag).expect("64 digits for 32 bytes");
    out.extend_from_slice(&hex_tag);
    out.push(b'"');
    out.push(*close);
    out
}

/// Checks `signed` against `key` and returns the unsigned body (the bytes that were MACed),
/// ready to decode.
pub fn verify(key: &AgentKey, signed: &[u8]) -> Result<Vec<u8>, MacError> {
    let p = parts(signed)?;
    if p.generation != key.generation {
        return Err(MacError::StaleKey {
            found: p.generation,
            current: key.generation,
        });
    }
    let mut m = key.mac();
    m.update(&signed[..p.at]);
    m.update(b"}");
    m.verify_slice(&p.mac).map_err(|_| MacError::Mismatch)?;
    let mut body = Vec::with_capacity(p.at + 1);
    body.extend_from_slice(&signed[..p.at]);
    body.push(b'}');
    Ok(body)
}

/// The unsigned body of a signed payload, without checking the MAC (for a collector that runs
/// with authentication off, as in a benchmark's baseline).
pub fn unsigned_body(signed: &[u8]) -> Result<Vec<u8>, MacError> {
    let p = parts(signed)?;
    let mut body = Vec::with_capacity(p.at + 1);
    body.extend_from_slice(&signed[..p.at]);
    body.push(b'}');
    Ok(body)
}

/// Whether `payload` carries a `"mac"` member at its end (well-formed or not).
pub fn is_signed(payload: &[u8]) -> bool {
    !matches!(parts(payload), Err(MacError::Missing))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(gen: u32, fill: u8) -> AgentKey {
        AgentKey::new(KeyGeneration(gen), [fill; KEY_LEN]).unwrap()
    }

    #[test]
    fn a_signed_payload_is_the_body_with_the_mac_last() {
        let body = br#"{"v":1,"agent":"a"}"#;
        let signed = sign(&key(3, 7), body);
        let text = String::from_utf8(signed.clone()).unwrap();
        assert!(
            text.starts_with(r#"{"v":1,"agent":"a","mac":"3:"#),
            "{text}"
        );
        assert!(text.ends_with("\"}"));
        assert_eq!(verify(&key(3, 7), &signed).unwrap(), body);
        let v: serde_json::Value = serde_json::from_slice(&signed).unwrap();
        assert_eq!(v["agent"], "a");
    }

    #[test]
    fn the_mac_matches_an_independent_hmac_of_the_body() {
        // RFC 4231-style check: HMAC-SHA256 with a key of 32 bytes 0x0b over the body.
        let body = br#"{"x":1}"#;
        let signed = sign(&key(1, 0x0b), body);
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&[0x0b; 32]).unwrap();
        m.update(body);
        let expected = hex::encode(m.finalize().into_bytes());
        assert!(String::from_utf8(signed)
            .unwrap()
            .ends_with(&format!(",\"mac\":\"1:{expected}\"}}")));
    }

    #[test]
    fn wrong_keys_stale_generations_and_missing_macs_are_told_apart() {
        let signed = sign(&key(1, 1), br#"{"a":1}"#);
        assert_eq!(verify(&key(1, 2), &signed), Err(MacError::Mismatch));
        assert!(matches!(
            verify(&key(2, 1), &signed),
            Err(MacError::StaleKey { .. })
        ));
        assert_eq!(verify(&key(1, 1), br#"{"a":1}"#), Err(MacError::Missing));
        assert!(!is_signed(br#"{"a":1}"#) && is_signed(&signed));
        let spaced = String::from_utf8(signed).unwrap().replace("\"}", "\" }");
        assert_eq!(
            verify(&key(1, 1), spaced.as_bytes()),
            Err(MacError::Malformed)
        );
    }

    #[test]
    fn keys_never_show_in_debug_output() {
        let k = AgentKey::from_hex(KeyGeneration(1), &"ab".repeat(32)).unwrap();
        assert!(!format!("{k:?}").contains("abab"));
        assert_eq!(k.to_hex(), "ab".repeat(32));
        assert!(AgentKey::from_hex(KeyGeneration(1), "abc").is_err());
    }
}
