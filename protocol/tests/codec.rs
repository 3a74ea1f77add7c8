//! Property tests of the codec, and the JSON Schema checked against the types.

use proptest::prelude::*;
use spotcheck_protocol::*;

const NOW: i64 = 1_764_000_000_000;

fn id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,64}"
}

fn ts() -> impl Strategy<Value = UnixMillis> {
    (NOW - 1_000_000..NOW + 1_000).prop_map(UnixMillis)
}

fn reading() -> impl Strategy<Value = Reading> {
    let known = prop_oneof![
        Just((Metric::PH, Unit::Ph)),
        Just((Metric::FREE_CHLORINE, Unit::MilligramPerLitre)),
        Just((Metric::ORP, Unit::Millivolt)),
        Just((Metric::TURBIDITY, Unit::Ntu)),
        Just(("makeup_water", Unit::CubicMetre)),
        Just(("door_count", Unit::Count)),
    ];
    let quality = prop_oneof![
        Just(Quality::Good),
        Just(Quality::Uncertain),
        Just(Quality::Bad)
    ];
    // Inside every known metric's physically possible range (others are flagged `bad`).
    (known, 0f64..14.0, ts(), quality).prop_map(|((m, unit), value, ts_ms, quality)| Reading {
        metric: Metric::new(m).unwrap(),
        value,
        unit,
        ts_ms,
        quality,
    })
}

fn age_band() -> impl Strategy<Value = AgeBand> {
    prop_oneof![
        Just(AgeBand::Under8),
        Just(AgeBand::From8To16),
        Just(AgeBand::From16To18),
        Just(AgeBand::Adult),
        Just(AgeBand::Unknown)
    ]
}

fn event() -> impl Strategy<Value = Event> {
    let rid = || id().prop_map(|s| RecordId::new(s).unwrap());
    let person = || id().prop_map(|s| PersonRef::new(s).unwrap());
    let dur = || proptest::option::of(0i64..10_000_000);
    prop_oneof![
        (
            rid(),
            person(),
            age_band(),
            any::<bool>(),
            any::<bool>(),
            ts(),
            dur()
        )
            .prop_map(|(id, player, age_band, v, g, start, d)| {
                Event::GameSession(GameSession {
                    id,
                    player,
                    age_band,
                    real_name_verified: v,
                    guest: g,
                    start_ms: start,
                    end_ms: d.map(|d| UnixMillis(start.0 + d)),
                })
            }),
        (rid(), person(), age_band(), any::<u64>(), ts()).prop_map(
            |(id, player, age_band, amount_fen, ts_ms)| {
                Event::GamePayment(GamePayment {
                    id,
                    player,
                    age_band,
                    amount_fen,
                    ts_ms,
                })
            }
        ),
        (
            rid(),
            person(),
            any::<[bool; 5]>(),
            any::<u8>(),
            ts(),
            dur()
        )
            .prop_map(|(id, doctor, b, age, start, d)| {
                Event::Consultation(Consultation {
                    id,
                    doctor,
                    doctor_verified: b[0],
                    stand_in: b[1],
                    visit: if b[2] { Visit::First } else { Visit::FollowUp },
                    diagnosis_on_record: b[3],
                    patient_age_years: age,
                    guardian_present: b[4],
                    start_ms: start,
                    end_ms: d.map(|d| UnixMillis(start.0 + d)),
                })
            }),
        (
            rid(),
            rid(),
            person(),
            ts(),
            proptest::option::of(ts()),
            proptest::option::of(ts()),
            any::<[bool; 2]>()
        )
            .prop_map(|(id, consultation, doctor, issued_ms, r, e, b)| {
                Event::Prescription(Prescription {
                    id,
                    consultation,
                    doctor,
                    issued_ms,
                    pharmacist_reviewed_ms: r,
                    effective_ms: e,
                    ai_generated: b[0],
                    controlled_drug: b[1],
                })
            }),
    ]
}

fn batch() -> impl Strategy<Value = (Stream, Batch)> {
    let agent = || id().prop_map(|s| AgentId::new(s).unwrap());
    prop_oneof![
        (
            agent(),
            any::<u64>(),
            any::<Option<u64>>(),
            proptest::collection::vec(reading(), 1..50)
        )
            .prop_map(|(agent, seq, after, readings)| {
                (
                    Stream::Readings,
                    Batch::Readings(ReadingBatch {
                        v: Version,
                        agent,
                        seq: Seq(seq),
                        after: after.map(|a| Seq(a.min(seq))),
                        readings,
                    }),
                )
            }),
        (
            agent(),
            any::<u64>(),
            any::<Option<u64>>(),
            proptest::collection::vec(event(), 1..20)
        )
            .prop_map(|(agent, seq, after, events)| {
                (
                    Stream::Events,
                    Batch::Events(EventBatch {
                        v: Version,
                        agent,
                        seq: Seq(seq),
                        after: after.map(|a| Seq(a.min(seq))),
                        events,
                    }),
                )
            }),
    ]
}

/// `Batch::digest` as it was first written, a field at a time into SHA-256:
/// frozen here so that the digest never changes.
fn streamed_digest(b: &Batch) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let field = |h: &mut Sha256, b: &[u8]| {
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    };
    field(&mut h, b.agent().as_str().as_bytes());
    h.update(b.seq().0.to_le_bytes());
    match b {
        Batch::Readings(b) => {
            h.update(b"readings");
            for r in &b.readings {
                field(&mut h, r.metric.as_str().as_bytes());
                field(&mut h, r.unit.as_str().as_bytes());
                h.update(r.value.to_bits().to_le_bytes());
                h.update(r.ts_ms.0.to_le_bytes());
                field(&mut h, r.quality.as_str().as_bytes());
            }
        }
        Batch::Events(b) => {
            h.update(b"events");
            for e in &b.events {
                field(&mut h, &serde_json::to_vec(e).unwrap());
            }
        }
    }
    let mut out = [0; 16];
    out.copy_from_slice(&h.finalize()[..16]);
    out
}

fn schema() -> jsonschema::Validator {
    let text = include_str!("../schema/spotcheck-v1.schema.json");
    let schema: serde_json::Value = serde_json::from_str(text).unwrap();
    jsonschema::validator_for(&schema).expect("the schema compiles")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn encode_then_decode_gives_back_the_same_batch((stream, b) in batch()) {
        let bytes = b.encode();
        let limits = Limits { max_payload_bytes: usize::MAX, ..Limits::default() };
        let decoded = decode(stream, b.agent(), &bytes, &limits, UnixMillis(NOW)).unwrap();
        prop_assert_eq!(decoded.into_inner(), b);
    }

    #[test]
    fn after_spliced_into_an_encoded_batch_decodes_as_if_encoded_with_it((stream, b) in batch(), after in any::<u64>()) {
        // `after` is at most the batch's own seq.
        let after = after.checked_rem(b.seq().0.wrapping_add(1)).unwrap_or(after);
        let mut without = b.clone();
        let mut with = b;
        match (&mut without, &mut with) {
            (Batch::Readings(w), Batch::Readings(x)) => { w.after = None; x.after = Some(Seq(after)); }
            (Batch::Events(w), Batch::Events(x)) => { w.after = None; x.after = Some(Seq(after)); }
            _ => unreachable!(),
        }
        let spliced = with_after(&without.encode(), Seq(after));
        let limits = Limits { max_payload_bytes: usize::MAX, ..Limits::default() };
        let decoded = decode(stream, with.agent(), &spliced, &limits, UnixMillis(NOW)).unwrap();
        prop_assert_eq!(decoded.into_inner(), with);
    }

    #[test]
    fn the_digest_is_the_one_stored_digests_were_made_with((_, b) in batch(), after in proptest::option::of(any::<u64>())) {
        // Stored batches keep their digest: a digest computed another way would call every
        // batch an agent sends again a reused sequence number.
        let mut with = b.clone();
        match &mut with {
            Batch::Readings(r) => r.after = after.map(Seq),
            Batch::Events(e) => e.after = after.map(Seq),
        }
        prop_assert_eq!(b.digest(), streamed_digest(&b));
        prop_assert_eq!(with.digest(), b.digest());
    }

    #[test]
    fn every_encoded_batch_satisfies_the_published_schema((_, b) in batch()) {
        let value: serde_json::Value = serde_json::from_slice(&b.encode()).unwrap();
        let v = schema();
        prop_assert!(v.is_valid(&value), "{}", value);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let agent = AgentId::new("a").unwrap();
        for stream in [Stream::Readings, Stream::Events] {
            let _ = decode(stream, &agent, &bytes, &Limits::default(), UnixMillis(NOW));
        }
        let _ = Topic::parse(&String::from_utf8_lossy(&bytes));
        let _ = Ack::decode(&bytes);
        let _ = Status::decode(&bytes);
    }

    #[test]
    fn mutated_valid_payloads_never_panic_the_decoder((stream, b) in batch(), pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = b.encode();
        let i = pos.index(bytes.len());
        bytes[i] = byte;
        let _ = decode(stream, b.agent(), &bytes, &Limits::default(), UnixMillis(NOW));
    }
}

fn decode_readings(json: &str) -> Result<Batch, DecodeError> {
    decode(
        Stream::Readings,
        &AgentId::new("a1").unwrap(),
        json.as_bytes(),
        &Limits::default(),
        UnixMillis(NOW),
    )
    .map(Checked::into_inner)
}

const GOOD: &str = r#"{"v":1,"agent":"a1","seq":1,"readings":[{"metric":"ph","value":7.2,"unit":"pH","ts_ms":1764000000000}]}"#;

#[test]
fn payloads_the_schema_rejects_the_decoder_rejects_too_naming_the_field() {
    let v = schema();
    let cases: &[(&str, &str)] = &[
        (r#""agent":"a1""#, r#""agent":"a+1""#),
        (r#""v":1"#, r#""v":2"#),
        (r#""seq":1"#, r#""seq":"1""#),
        (r#""unit":"pH""#, r#""unit":"ph""#),
        (r#""metric":"ph""#, r#""metric":"P H""#),
        (
            r#""ts_ms":1764000000000}"#,
            r#""ts_ms":1764000000000,"extra":1}"#,
        ),
        (r#","value":7.2"#, ""),
    ];
    for (from, to) in cases {
        let bad = GOOD.replace(from, to);
        assert_ne!(bad, GOOD, "{from}");
        let value: serde_json::Value = serde_json::from_str(&bad).unwrap();
        assert!(!v.is_valid(&value), "schema accepted {bad}");
        let err = decode_readings(&bad).unwrap_err();
        assert!(matches!(err, DecodeError::Json { .. }), "{bad}: {err}");
        assert_eq!(err.code(), "bad_json");
    }
    assert!(v.is_valid(&serde_json::from_str::<serde_json::Value>(GOOD).unwrap()));
    decode_readings(GOOD).unwrap();
}

#[test]
fn errors_name_the_field_at_fault() {
    let err = decode_readings(&GOOD.replace(r#""seq":1"#, r#""seq":-1"#)).unwrap_err();
    assert!(err.to_string().contains("`seq`"), "{err}");
    let err = decode_readings(&GOOD.replace(r#""unit":"pH""#, r#""unit":"mV""#)).unwrap_err();
    assert_eq!(err.code(), "unit_mismatch");
    assert!(err.to_string().contains("readings[0].unit"), "{err}");
    let err = decode_readings(&GOOD.replace("1764000000000", "1764999000000")).unwrap_err();
    assert_eq!(err.code(), "in_future");
    let err = decode_readings(&GOOD.replace("1764000000000", "1")).unwrap_err();
    assert_eq!(err.code(), "too_old");
    let err = decode_readings(&GOOD.replace(r#"[{"metric"#, r#"[],"x":[{"metric"#)).unwrap_err();
    assert!(matches!(err, DecodeError::Json { .. }), "{err}");
    let err = decode_readings(r#"{"v":1,"agent":"a1","seq":1,"readings":[]}"#).unwrap_err();
    assert_eq!(err.code(), "empty_batch");
    let err = decode_readings(&GOOD.replace(r#""agent":"a1""#, r#""agent":"a2""#)).unwrap_err();
    assert_eq!(err.code(), "agent_mismatch");
    let err = decode_readings(&format!("{GOOD} trailing")).unwrap_err();
    assert!(matches!(err, DecodeError::NotJson { .. }), "{err}");
    let err = decode_readings("{not json").unwrap_err();
    assert!(
        err.to_string().starts_with("payload is not valid JSON"),
        "{err}"
    );
}

#[test]
fn limits_on_size_and_length_are_enforced() {
    let limits = Limits {
        max_payload_bytes: 64,
        ..Limits::default()
    };
    let err = decode(
        Stream::Readings,
        &AgentId::new("a1").unwrap(),
        GOOD.as_bytes(),
        &limits,
        UnixMillis(NOW),
    )
    .unwrap_err();
    assert_eq!(err.code(), "too_large");
    let limits = Limits {
        max_batch_len: 1,
        ..Limits::default()
    };
    let two = GOOD.replace(
        "}]}",
        r#"},{"metric":"ph","value":7.3,"unit":"pH","ts_ms":1764000000000}]}"#,
    );
    let err = decode(
        Stream::Readings,
        &AgentId::new("a1").unwrap(),
        two.as_bytes(),
        &limits,
        UnixMillis(NOW),
    )
    .unwrap_err();
    assert_eq!(err.code(), "batch_too_long");
}

#[test]
fn a_session_that_ends_before_it_starts_is_rejected() {
    let json = r#"{"v":1,"agent":"a1","seq":1,"events":[{"kind":"game_session","id":"s1","player":"p1","age_band":"adult","real_name_verified":true,"guest":false,"start_ms":1764000000000,"end_ms":1763000000000}]}"#;
    let err = decode(
        Stream::Events,
        &AgentId::new("a1").unwrap(),
        json.as_bytes(),
        &Limits::default(),
        UnixMillis(NOW),
    )
    .unwrap_err();
    assert_eq!(err.code(), "end_before_start");
    assert!(err.to_string().contains("events[0].end_ms"), "{err}");
}

#[test]
fn an_event_with_an_unknown_field_is_rejected() {
    let json = r#"{"v":1,"agent":"a1","seq":1,"events":[{"kind":"game_payment","id":"x","player":"p","age_band":"adult","amount_fen":5,"ts_ms":1764000000000,"name":"Zhang San"}]}"#;
    let err = decode(
        Stream::Events,
        &AgentId::new("a1").unwrap(),
        json.as_bytes(),
        &Limits::default(),
        UnixMillis(NOW),
    )
    .unwrap_err();
    assert!(err.to_string().contains("name"), "{err}");
}

#[test]
fn a_batch_whose_after_lies_beyond_its_seq_is_refused() {
    let err = decode_readings(&GOOD.replace(r#""seq":1"#, r#""seq":5,"after":6"#)).unwrap_err();
    assert_eq!(err.code(), "after_beyond_seq");
    assert!(err.to_string().contains("`after`"), "{err}");
    decode_readings(&GOOD.replace(r#""seq":1"#, r#""seq":5,"after":5"#)).unwrap();
}

#[test]
fn a_value_outside_its_metrics_physical_range_is_kept_flagged_bad() {
    let agent = AgentId::new("a1").unwrap();
    let json = GOOD.replace(
        "}]}",
        r#"},{"metric":"ph","value":-1,"unit":"pH","ts_ms":1764000000000},{"metric":"free_chlorine","value":-0.2,"unit":"mg/L","ts_ms":1764000000000},{"metric":"door_count","value":-3,"unit":"1","ts_ms":1764000000000}]}"#,
    );
    let checked = decode(
        Stream::Readings,
        &agent,
        json.as_bytes(),
        &Limits::default(),
        UnixMillis(NOW),
    )
    .unwrap();
    assert_eq!(checked.flagged(), 2);
    let Batch::Readings(b) = checked.into_inner() else {
        unreachable!()
    };
    let q: Vec<Quality> = b.readings.iter().map(|r| r.quality).collect();
    assert_eq!(
        q,
        [Quality::Good, Quality::Bad, Quality::Bad, Quality::Good],
        "pH -1 and a negative concentration cannot be measured; an unknown metric is stored as sent"
    );
}

#[test]
fn a_record_or_metric_of_another_domain_is_refused() {
    let agent = AgentId::new("a1").unwrap();
    let payment = r#"{"v":1,"agent":"a1","seq":1,"events":[{"kind":"game_payment","id":"x","player":"p","age_band":"adult","amount_fen":5,"ts_ms":1764000000000}]}"#;
    let b = decode(
        Stream::Events,
        &agent,
        payment.as_bytes(),
        &Limits::default(),
        UnixMillis(NOW),
    )
    .unwrap();
    let err = check_domain(&b, Domain::Pool).unwrap_err();
    assert_eq!(err.code(), "wrong_domain");
    assert!(
        err.to_string().contains("events[0].kind") && err.to_string().contains("game_payment"),
        "{err}"
    );
    check_domain(&b, Domain::Game).unwrap();
    let ph = decode(
        Stream::Readings,
        &agent,
        GOOD.as_bytes(),
        &Limits::default(),
        UnixMillis(NOW),
    )
    .unwrap();
    assert_eq!(
        check_domain(&ph, Domain::Hospital).unwrap_err().code(),
        "wrong_domain"
    );
    check_domain(&ph, Domain::Pool).unwrap();
}

#[test]
fn the_schema_lists_every_metric_with_its_unit_domain_and_range() {
    let text = include_str!("../schema/spotcheck-v1.schema.json");
    let schema: serde_json::Value = serde_json::from_str(text).unwrap();
    let listed = schema["$defs"]["Metrics"]["properties"]
        .as_object()
        .expect("$defs/Metrics");
    assert_eq!(listed.len(), METRICS.len());
    for m in METRICS {
        let entry = &listed[m.name];
        assert_eq!(entry["unit"]["const"], m.unit.as_str(), "{}", m.name);
        assert_eq!(entry["domain"]["const"], m.domain.as_str(), "{}", m.name);
        assert_eq!(entry["minimum"].as_f64(), m.min, "{}", m.name);
        assert_eq!(entry["maximum"].as_f64(), m.max, "{}", m.name);
    }
    let kinds = schema["$defs"]["EventKinds"]["properties"]
        .as_object()
        .expect("$defs/EventKinds");
    assert_eq!(kinds.len(), Event::KINDS.len());
    for (kind, domain) in Event::KINDS {
        assert_eq!(kinds[kind]["domain"]["const"], domain.as_str(), "{kind}");
    }
}
