//! The validator's unit tests.

use super::*;
use crate::config::AgentBinding;

fn bindings() -> Bindings {
    Bindings::new(&[AgentBinding {
        id: AgentId::new("a1").unwrap(),
        entity: EntityId::new("pool-1").unwrap(),
        domain: Domain::Pool,
    }])
}

fn run(topic: &str, payload: &str) -> Verdict {
    validate(
        topic,
        payload.as_bytes(),
        &bindings(),
        &Auth::off(),
        &Limits::default(),
        UnixMillis(1_700_000_000_000),
    )
}

const TOPIC: &str = "spotcheck/v1/pool/pool-1/a1/readings";

fn reading(seq: u64, unit: &str) -> String {
    format!(
        r#"{{"v":1,"agent":"a1","seq":{seq},"readings":[{{"metric":"ph","value":7.2,"unit":"{unit}","ts_ms":1700000000000}}]}}"#
    )
}

fn rejected(v: Verdict) -> DeadLetter {
    match v {
        Verdict::Reject(d) => d,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn a_valid_batch_from_a_bound_agent_is_accepted() {
    assert!(matches!(
        run(TOPIC, &reading(1, "pH")),
        Verdict::Accept { .. }
    ));
}

#[test]
fn a_semantic_error_is_dead_lettered_with_the_seq_so_the_agent_can_be_told() {
    let d = rejected(run(TOPIC, &reading(7, "mV")));
    assert_eq!((d.code, d.seq, d.items), ("unit_mismatch", Some(Seq(7)), 1));
    assert!(d.reason.contains("readings[0].unit"), "{}", d.reason);
}

#[test]
fn an_event_kind_from_another_domain_is_refused() {
    let payment = r#"{"v":1,"agent":"a1","seq":4,"events":[{"kind":"game_payment","id":"x","player":"p","age_band":"adult","amount_fen":5,"ts_ms":1700000000000}]}"#;
    let d = rejected(run("spotcheck/v1/pool/pool-1/a1/events", payment));
    assert_eq!((d.code, d.seq), ("wrong_domain", Some(Seq(4))));
    assert!(d.reason.contains("game_payment"), "{}", d.reason);
}

#[test]
fn a_ph_of_minus_one_is_accepted_flagged_bad() {
    let Verdict::Accept { batch, .. } = run(TOPIC, &reading(2, "pH").replace("7.2", "-1")) else {
        panic!("refused")
    };
    assert_eq!(batch.flagged(), 1);
    let Batch::Readings(b) = batch.get() else {
        unreachable!()
    };
    assert_eq!(b.readings[0].quality, spotcheck_protocol::Quality::Bad);
}

#[test]
fn a_topic_that_is_not_utf8_is_dead_lettered_with_its_bytes_shown() {
    let Verdict::Reject(d) = topic_not_utf8(b"spotcheck/v1/\xff", b"{}") else {
        panic!("accepted")
    };
    assert_eq!(d.code, "bad_topic");
    assert_eq!(d.topic, "spotcheck/v1/\u{fffd}");
    assert_eq!(d.payload, b"{}");
}

#[test]
fn an_agent_publishing_for_another_entity_is_refused() {
    let d = rejected(run(
        "spotcheck/v1/pool/pool-2/a1/readings",
        &reading(1, "pH"),
    ));
    assert_eq!(d.code, "entity_mismatch");
    assert!(d.reason.contains("pool-1") && d.reason.contains("pool-2"));
}

#[test]
fn unknown_agents_bad_topics_and_bad_json_are_refused_with_reasons() {
    assert_eq!(
        rejected(run(
            "spotcheck/v1/pool/pool-1/zz/readings",
            &reading(1, "pH")
        ))
        .code,
        "unknown_agent"
    );
    assert_eq!(
        rejected(run("spotcheck/v1/pool/pool-1/a1/other", "{}")).code,
        "bad_topic"
    );
    let d = rejected(run(TOPIC, "{not json"));
    assert_eq!((d.code, d.seq), ("bad_json", None));
    let d = rejected(run(
        TOPIC,
        r#"{"v":1,"agent":"a1","seq":"x","readings":[]}"#,
    ));
    assert!(d.reason.contains("seq"), "{}", d.reason);
}

#[test]
fn a_payload_naming_another_agent_gets_no_confirmation() {
    let d = rejected(run(TOPIC, &reading(3, "pH").replace("\"a1\"", "\"a2\"")));
    assert_eq!((d.code, d.seq), ("agent_mismatch", None));
}

fn key(fill: u8) -> spotcheck_protocol::AgentKey {
    spotcheck_protocol::AgentKey::new(spotcheck_protocol::KeyGeneration(1), [fill; 32]).unwrap()
}

fn run_auth(topic: &str, payload: &[u8]) -> Verdict {
    let auth = Auth {
        table: Credentials::from_keys([(AgentId::new("a1").unwrap(), key(1))]),
        required: true,
        answers: Answers::default(),
    };
    run_with(&auth, topic, payload)
}

fn run_with(auth: &Auth, topic: &str, payload: &[u8]) -> Verdict {
    validate(
        topic,
        payload,
        &bindings(),
        auth,
        &Limits::default(),
        UnixMillis(1_700_000_000_000),
    )
}

#[test]
fn acks_are_answered_in_the_algorithm_of_the_last_verified_message() {
    use spotcheck_protocol::mac::{sign_with, Algorithm};
    let a1 = AgentId::new("a1").unwrap();
    let auth = Auth {
        table: Credentials::from_keys([(a1.clone(), key(1))]),
        required: true,
        answers: Answers::default(),
    };
    // Until the agent is heard from: HMAC-SHA256, which every agent knows.
    assert_eq!(auth.answers.algorithm(&a1), Algorithm::HmacSha256);
    let body = reading(4, "pH");
    for alg in [Algorithm::Blake3, Algorithm::HmacSha256, Algorithm::Blake3] {
        let v = run_with(&auth, TOPIC, &sign_with(alg, &key(1), body.as_bytes()));
        assert!(matches!(v, Verdict::Accept { .. }), "{alg}: {v:?}");
        assert_eq!(auth.answers.algorithm(&a1), alg);
    }
    // A forgery in the other algorithm changes nothing: an agent that only knows one
    // algorithm cannot be made to receive acks in the other.
    let forged = sign_with(Algorithm::HmacSha256, &key(2), body.as_bytes());
    assert_eq!(rejected(run_with(&auth, TOPIC, &forged)).code, "bad_mac");
    assert_eq!(auth.answers.algorithm(&a1), Algorithm::Blake3);
    // Statuses count too.
    let s = r#"{"v":1,"agent":"a1","state":"online","epoch":1,"counter":2}"#;
    let status = sign_with(Algorithm::HmacSha256, &key(1), s.as_bytes());
    let v = run_with(&auth, "spotcheck/v1/agents/a1/status", &status);
    assert!(matches!(v, Verdict::Status { .. }), "{v:?}");
    assert_eq!(auth.answers.algorithm(&a1), Algorithm::HmacSha256);
}

#[test]
fn with_authentication_only_a_batch_signed_with_the_agents_key_is_accepted() {
    let body = reading(4, "pH");
    assert!(matches!(
        run_auth(TOPIC, &mac::sign(&key(1), body.as_bytes())),
        Verdict::Accept { .. }
    ));
    for forged in [
        body.as_bytes().to_vec(),
        mac::sign(&key(2), body.as_bytes()),
    ] {
        let d = rejected(run_auth(TOPIC, &forged));
        assert_eq!(d.code, "bad_mac");
        assert_eq!(d.seq, None, "a forgery is never confirmed");
        assert_eq!(d.agent, Some(AgentId::new("a1").unwrap()));
    }
}

#[test]
fn with_authentication_a_forged_entity_mismatch_is_not_confirmed_either() {
    // Signed with the wrong key and for the wrong entity: the MAC is checked first.
    let body = reading(9, "pH");
    let d = rejected(run_auth(
        "spotcheck/v1/pool/pool-2/a1/readings",
        &mac::sign(&key(2), body.as_bytes()),
    ));
    assert_eq!((d.code, d.seq), ("bad_mac", None));
}

#[test]
fn with_authentication_statuses_must_be_signed_and_name_a_registered_agent() {
    let s = r#"{"v":1,"agent":"a1","state":"offline","epoch":5,"counter":3}"#;
    let v = run_auth(
        "spotcheck/v1/agents/a1/status",
        &mac::sign(&key(1), s.as_bytes()),
    );
    assert!(matches!(v, Verdict::Status { order: (5, 3), .. }), "{v:?}");
    assert_eq!(
        rejected(run_auth("spotcheck/v1/agents/a1/status", s.as_bytes())).code,
        "bad_mac"
    );
    let other = r#"{"v":1,"agent":"zz","state":"online"}"#;
    assert_eq!(
        rejected(run_auth("spotcheck/v1/agents/zz/status", other.as_bytes())).code,
        "unknown_agent"
    );
}

#[test]
fn an_unknown_source_gets_its_dead_letter_quota_then_is_only_counted() {
    let v = Validator {
        bindings: bindings(),
        presence: Presence::default(),
        stats: Stats::default(),
        limits: Limits::default(),
        auth: Auth::off(),
        bounds: std::sync::Arc::new(Bounds::new(2_000)),
    };
    let judge = |agent: &str| {
        v.judge(Received {
            topic: format!("spotcheck/v1/pool/pool-1/{agent}/readings").into(),
            payload: vec![b'x'; 600].into(),
            ack: super::super::source::BrokerAck::Nothing,
            at: std::time::Instant::now(),
        })
        .verdict
    };
    // Inventing agent names buys no room: they share the source `unknown`.
    let verdicts: Vec<Verdict> = (0..5).map(|i| judge(&format!("stranger{i}"))).collect();
    let kept = verdicts
        .iter()
        .filter(|v| matches!(v, Verdict::Reject(_)))
        .count();
    assert_eq!(kept, 2, "{verdicts:?}");
    assert!(matches!(
        &verdicts[4],
        Verdict::OverQuota { code: "unknown_agent", source, .. } if source == "unknown"
    ));
    assert_eq!(v.stats.dead_letters_over_quota.get(), 3);
    // A registered agent's unconfirmed dead letters have their own quota.
    assert!(matches!(judge("a1"), Verdict::Reject(_)));
}

#[test]
fn status_messages_update_presence() {
    let v = run(
        "spotcheck/v1/agents/a1/status",
        r#"{"v":1,"agent":"a1","state":"offline"}"#,
    );
    assert!(matches!(
        v,
        Verdict::Status {
            state: AgentState::Offline,
            ..
        }
    ));
}
