//! Property tests of the MAC codec (`spotcheck_protocol::mac`).

use proptest::prelude::*;
use spotcheck_protocol::mac::{is_signed, sign, verify, MacError};
use spotcheck_protocol::{AgentKey, KeyGeneration};

fn key() -> impl Strategy<Value = AgentKey> {
    (1u32..=u32::MAX, any::<[u8; 32]>())
        .prop_map(|(g, b)| AgentKey::new(KeyGeneration(g), b).unwrap())
}

/// A JSON object text with at least one member, as an agent or the collector writes one.
fn body() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::btree_map("[a-z]{1,8}", any::<i64>(), 1..8).prop_map(|m| {
        let v: serde_json::Map<String, serde_json::Value> =
            m.into_iter().map(|(k, v)| (k, v.into())).collect();
        serde_json::to_vec(&v).unwrap()
    })
}

proptest! {
    #[test]
    fn signed_payloads_verify_to_their_body_and_stay_json(k in key(), b in body()) {
        let signed = sign(&k, &b);
        prop_assert_eq!(verify(&k, &signed).unwrap(), b.clone());
        let v: serde_json::Value = serde_json::from_slice(&signed).unwrap();
        let expected = format!("{}:", k.generation());
        prop_assert!(v["mac"].as_str().unwrap().starts_with(&expected));
    }

    #[test]
    fn any_changed_byte_fails_verification(k in key(), b in body(), at in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let mut signed = sign(&k, &b);
        let i = at.index(signed.len());
        signed[i] ^= flip;
        prop_assert!(verify(&k, &signed).is_err());
    }

    #[test]
    fn another_key_never_verifies(k in key(), other in any::<[u8; 32]>(), b in body()) {
        let other = AgentKey::new(k.generation(), other).unwrap();
        prop_assume!(other != k);
        prop_assert_eq!(verify(&other, &sign(&k, &b)), Err(MacError::Mismatch));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_never_verify(k in key(), junk in proptest::collection::vec(any::<u8>(), 0..200)) {
        prop_assert!(verify(&k, &junk).is_err());
        let _ = is_signed(&junk);
    }

    #[test]
    fn a_mac_moved_onto_another_body_fails(k in key(), a in body(), b in body()) {
        prop_assume!(a != b);
        let sa = sign(&k, &a);
        let sb = sign(&k, &b);
        // b's body with a's MAC member.
        let cut = |s: &[u8]| s.len() - (s.iter().rev().position(|&c| c == b',').unwrap() + 1);
        let mut forged = sb[..cut(&sb)].to_vec();
        forged.extend_from_slice(&sa[cut(&sa)..]);
        prop_assert!(verify(&k, &forged).is_err());
    }
}
