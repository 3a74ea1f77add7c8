//! The canonical body text and the hash of an entry (docs/audit.md, "Hash").
//!
//! The body is stored as the exact text that was hashed, so a verifier hashes bytes and never
//! has to reproduce our JSON formatting; canonical form only makes equal bodies equal text.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first entry: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The first line of every hash preimage; a new encoding would get a new tag.
pub const DOMAIN_TAG: &str = "spotcheck-audit-v1";

/// The canonical text of a JSON value: no whitespace, object keys sorted by their UTF-8
/// bytes at every depth, strings and numbers as serde_json writes them (non-ASCII as UTF-8,
/// only `"`, `\` and control characters escaped).
pub fn canonical_json(value: &Value) -> String {
    // Rebuilt explicitly rather than trusting the map's order: serde_json keeps insertion
    // order if any crate in the build enables its `preserve_order` feature.
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
                let mut out = Map::new();
                for k in keys {
                    out.insert(k.clone(), sorted(&m[k]));
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    serde_json::to_string(&sorted(value)).expect("a JSON value serialises")
}

/// The bytes that are hashed: the tag line, then each field as `<byte length>:<text>\n` in
/// the order seq, ts_ms, kind, subject, body, prev_hash (numbers in decimal ASCII). The
/// length prefixes make the encoding unambiguous whatever the fields contain.
pub fn preimage(
    seq: i64,
    ts_ms: i64,
    kind: &str,
    subject: &str,
    body: &str,
    prev_hash: &str,
) -> Vec<u8> {
    let seq = seq.to_string();
    let ts = ts_ms.to_string();
    let mut out = Vec::with_capacity(64 + subject.len() + body.len() + prev_hash.len());
    out.extend_from_slice(DOMAIN_TAG.as_bytes());
    out.push(b'\n');
    for field in [seq.as_str(), ts.as_str(), kind, subject, body, prev_hash] {
        out.extend_from_slice(field.len().to_string().as_bytes());
        out.push(b':');
        out.extend_from_slice(field.as_bytes());
        out.push(b'\n');
    }
    out
}

/// SHA-256 of [`preimage`], lowercase hex.
pub fn entry_hash(
    seq: i64,
    ts_ms: i64,
    kind: &str,
    subject: &str,
    body: &str,
    prev_hash: &str,
) -> String {
    hex::encode(Sha256::digest(preimage(
        seq, ts_ms, kind, subject, body, prev_hash,
    )))
}

/// Whether `s` is 64 lowercase hex digits.
pub fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_at_every_depth_and_drops_whitespace() {
        let v: Value =
            serde_json::from_str(r#"{ "b": 1, "a": { "z": [ {"y": 2, "x": 1} ], "é": "水" } }"#)
                .unwrap();
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"z":[{"x":1,"y":2}],"é":"水"},"b":1}"#
        );
    }

    #[test]
    fn the_preimage_is_length_prefixed_fields_after_a_tag_line() {
        let p = preimage(7, -5, "verdict", "task:1", "{}", GENESIS);
        let expected =
            format!("spotcheck-audit-v1\n1:7\n2:-5\n7:verdict\n6:task:1\n2:{{}}\n64:{GENESIS}\n");
        assert_eq!(String::from_utf8(p).unwrap(), expected);
    }

    #[test]
    fn the_hash_matches_the_test_vectors_in_the_docs() {
        // Also in docs/audit.md, so other implementations can check themselves.
        let first = entry_hash(
            1,
            1_700_000_000_000,
            "publication",
            "task:42",
            r#"{"entity":"91440300MA0000001X","result":"no_problem","task":42}"#,
            GENESIS,
        );
        assert_eq!(
            first,
            "68035d93ba94574ec32e9ccf69885b4279bf108565d025d22a771a1a0924d0c0"
        );
        let second = entry_hash(
            2,
            1_700_000_000_001,
            "verdict",
            "task:43",
            r#"{"outcome":"compliant","task":43}"#,
            &first,
        );
        assert_eq!(
            second,
            "9342147e4b2a531fa02f2b7a4f1ec6afb2520a3842c0488a0bbcd1df3e9b0a2b"
        );
        assert!(is_hash(&second));
    }
}
