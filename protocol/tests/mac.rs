//! Property tests of the MAC codec (`spotcheck_protocol::mac`).

use proptest::prelude::*;
use spotcheck_protocol::mac::{
    algorithm_of, is_signed, sign_with, unsigned_body, verify, verify_any, Algorithm, MacError,
};
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

fn algorithm() -> impl Strategy<Value = Algorithm> {
    prop_oneof![Just(Algorithm::Blake3), Just(Algorithm::HmacSha256)]
}

proptest! {
    #[test]
    fn signed_payloads_verify_to_their_body_and_stay_json(k in key(), b in body(), alg in algorithm()) {
        let signed = sign_with(alg, &k, &b);
        let v = verify_any(&k, &signed).unwrap();
        prop_assert_eq!((v.body, v.algorithm), (b.clone(), alg));
        prop_assert_eq!(algorithm_of(&signed), Some(alg));
        prop_assert_eq!(unsigned_body(&signed).unwrap(), b.clone());
        let v: serde_json::Value = serde_json::from_slice(&signed).unwrap();
        let expected = match alg {
            Algorithm::Blake3 => format!("b3:{}:", k.generation()),
            Algorithm::HmacSha256 => format!("{}:", k.generation()),
        };
        let mac = v["mac"].as_str().unwrap();
        prop_assert!(mac.starts_with(&expected));
        prop_assert_eq!(mac.len(), expected.len() + 64);
    }

    #[test]
    fn the_two_algorithms_never_give_the_same_tag(k in key(), b in body()) {
        let tag = |alg| {
            let s = sign_with(alg, &k, &b);
            s[s.len() - 66..].to_vec()
        };
        prop_assert_ne!(tag(Algorithm::Blake3), tag(Algorithm::HmacSha256));
    }

    #[test]
    fn a_tag_relabelled_as_the_other_algorithm_fails(k in key(), b in body()) {
        let b3 = String::from_utf8(sign_with(Algorithm::Blake3, &k, &b)).unwrap();
        let hmac = String::from_utf8(sign_with(Algorithm::HmacSha256, &k, &b)).unwrap();
        let b3_as_hmac = b3.replacen(",\"mac\":\"b3:", ",\"mac\":\"", 1);
        let hmac_as_b3 = hmac.replacen(",\"mac\":\"", ",\"mac\":\"b3:", 1);
        prop_assert_eq!(verify(&k, b3_as_hmac.as_bytes()), Err(MacError::Mismatch));
        prop_assert_eq!(verify(&k, hmac_as_b3.as_bytes()), Err(MacError::Mismatch));
    }

    #[test]
    fn any_changed_byte_fails_verification(k in key(), b in body(), alg in algorithm(), at in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let mut signed = sign_with(alg, &k, &b);
        let i = at.index(signed.len());
        signed[i] ^= flip;
        prop_assert!(verify(&k, &signed).is_err());
    }

    #[test]
    fn another_key_never_verifies(k in key(), other in any::<[u8; 32]>(), b in body(), alg in algorithm()) {
        let other = AgentKey::new(k.generation(), other).unwrap();
        prop_assume!(other != k);
        prop_assert_eq!(verify(&other, &sign_with(alg, &k, &b)), Err(MacError::Mismatch));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_never_verify(k in key(), junk in proptest::collection::vec(any::<u8>(), 0..200)) {
        prop_assert!(verify(&k, &junk).is_err());
        let _ = is_signed(&junk);
        let _ = algorithm_of(&junk);
    }

    #[test]
    fn arbitrary_mac_values_never_panic_and_never_verify(k in key(), b in body(), value in "(b3:)?[0-9b:]{0,12}[0-9a-f:]{0,70}") {
        // Bodies with a MAC member of almost the right shape: only a real tag verifies.
        let mut wire = b[..b.len() - 1].to_vec();
        wire.extend_from_slice(format!(",\"mac\":\"{value}\"}}").as_bytes());
        prop_assert!(verify(&k, &wire).is_err());
    }

    #[test]
    fn a_mac_moved_onto_another_body_fails(k in key(), a in body(), b in body(), alg in algorithm()) {
        prop_assume!(a != b);
        let sa = sign_with(alg, &k, &a);
        let sb = sign_with(alg, &k, &b);
        // b's body with a's MAC member.
        let cut = |s: &[u8]| s.len() - (s.iter().rev().position(|&c| c == b',').unwrap() + 1);
        let mut forged = sb[..cut(&sb)].to_vec();
        forged.extend_from_slice(&sa[cut(&sa)..]);
        prop_assert!(verify(&k, &forged).is_err());
    }
}

fn schema() -> jsonschema::Validator {
    let text = include_str!("../schema/spotcheck-v1.schema.json");
    let schema: serde_json::Value = serde_json::from_str(text).unwrap();
    jsonschema::validator_for(&schema).expect("the schema compiles")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn signed_payloads_of_either_algorithm_satisfy_the_schema(k in key(), alg in algorithm(), seq in any::<u64>()) {
        use spotcheck_protocol::{Ack, AgentId, AgentState, Seq, Status};
        let agent = AgentId::new("a1").unwrap();
        let ack = Ack::new(agent.clone(), [Seq(seq)]).encode_signed_with(alg, &k);
        let status = Status::numbered(agent, AgentState::Online, 1, seq).encode_signed_with(alg, &k);
        let batch = format!(r#"{{"v":1,"agent":"a1","seq":{seq},"readings":[{{"metric":"ph","value":7.2,"unit":"pH","ts_ms":1764000000000}}]}}"#);
        let v = schema();
        for wire in [ack, status, sign_with(alg, &k, batch.as_bytes())] {
            let value: serde_json::Value = serde_json::from_slice(&wire).unwrap();
            prop_assert!(v.is_valid(&value), "{}", value);
            // A MAC value of another shape is refused by the schema as by the verifier.
            let mut bad = value.clone();
            let mac = bad["mac"].as_str().unwrap().to_owned();
            bad["mac"] = format!("B3:{}", mac.trim_start_matches("b3:")).into();
            prop_assert!(!v.is_valid(&bad), "{}", bad);
        }
    }
}
