//! The readings decoder against a frozen copy of the decoder it replaced (serde's derived
//! visitors, an owned `String` per metric, a search of `METRICS` per check): on arbitrary and
//! mutated payloads both must answer alike, the same batch or the same error, word for word
//! (dead-letter reasons are stored, documented and tested elsewhere).

use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use spotcheck_protocol::reading::MetricError;
use spotcheck_protocol::*;

const NOW: i64 = 1_764_000_000_000;

/// The decoder as it was, readings only.
mod reference {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Deserialize)]
    #[serde(try_from = "String")]
    pub struct OldMetric(pub String);

    impl TryFrom<String> for OldMetric {
        type Error = MetricError;
        fn try_from(s: String) -> Result<Self, MetricError> {
            let ok = !s.is_empty()
                && s.len() <= reading::MAX_METRIC_LEN
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if ok {
                Ok(OldMetric(s))
            } else {
                Err(MetricError(s))
            }
        }
    }

    impl OldMetric {
        fn spec(&self) -> Option<&'static MetricSpec> {
            METRICS.iter().find(|m| m.name == self.0)
        }
    }

    #[derive(Debug, Clone, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    // Named as the types they stand for: serde's messages name the type.
    pub struct Reading {
        pub metric: OldMetric,
        pub value: f64,
        pub unit: Unit,
        pub ts_ms: UnixMillis,
        #[serde(default)]
        pub quality: Quality,
    }

    #[derive(Debug, Clone, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct ReadingBatch {
        pub v: Version,
        pub agent: AgentId,
        pub seq: Seq,
        #[serde(default)]
        pub after: Option<Seq>,
        pub readings: Vec<Reading>,
    }

    fn from_json<T: DeserializeOwned>(payload: &[u8]) -> Result<T, DecodeError> {
        match serde_json::from_slice(payload) {
            Ok(v) => Ok(v),
            Err(_) => Err(explain::<T>(payload)),
        }
    }

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
                Ok(()) => DecodeError::NotJson {
                    reason: "the payload was rejected by the strict parser".into(),
                },
            },
        }
    }

    /// `decode(Stream::Readings, …)` then `check_domain(…, domain)` as they were: the batch,
    /// with how many readings were flagged, or the error.
    pub fn decode(
        topic_agent: &AgentId,
        payload: &[u8],
        limits: &Limits,
        now: UnixMillis,
        domain: Domain,
    ) -> Result<(ReadingBatch, usize), DecodeError> {
        if payload.len() > limits.max_payload_bytes {
            return Err(DecodeError::TooLarge {
                bytes: payload.len(),
                max: limits.max_payload_bytes,
            });
        }
        let mut b: ReadingBatch = from_json(payload)?;
        if &b.agent != topic_agent {
            return Err(DecodeError::AgentMismatch {
                topic: topic_agent.to_string(),
                payload: b.agent.to_string(),
            });
        }
        let len = b.readings.len();
        if len == 0 {
            return Err(DecodeError::Empty { field: "readings" });
        }
        if let Some(after) = b.after {
            if after > b.seq {
                return Err(DecodeError::AfterBeyondSeq {
                    after: after.0,
                    seq: b.seq.0,
                });
            }
        }
        if len > limits.max_batch_len {
            return Err(DecodeError::TooLong {
                field: "readings",
                len,
                max: limits.max_batch_len,
            });
        }
        let mut flagged = 0;
        for (i, r) in b.readings.iter_mut().enumerate() {
            if !r.value.is_finite() {
                return Err(DecodeError::NotFinite {
                    path: format!("readings[{i}].value"),
                });
            }
            if let Some(spec) = r.metric.spec() {
                if spec.unit != r.unit {
                    return Err(DecodeError::UnitMismatch {
                        path: format!("readings[{i}].unit"),
                        metric: r.metric.0.clone(),
                        expected: spec.unit,
                        found: r.unit,
                    });
                }
                if !spec.possible(r.value) {
                    r.quality = Quality::Bad;
                    flagged += 1;
                }
            }
            let path = || format!("readings[{i}].ts_ms");
            let ahead = r.ts_ms.0.saturating_sub(now.0);
            if ahead > limits.max_future_skew_ms {
                return Err(DecodeError::InFuture {
                    path: path(),
                    ts: r.ts_ms.0,
                    ahead_ms: ahead,
                    max_ms: limits.max_future_skew_ms,
                });
            }
            let age = now.0.saturating_sub(r.ts_ms.0);
            if age > limits.max_age_ms {
                return Err(DecodeError::TooOld {
                    path: path(),
                    ts: r.ts_ms.0,
                    age_ms: age,
                    max_ms: limits.max_age_ms,
                });
            }
        }
        for (i, r) in b.readings.iter().enumerate() {
            if let Some(spec) = r.metric.spec() {
                if spec.domain != domain {
                    return Err(DecodeError::WrongDomain {
                        path: format!("readings[{i}].metric"),
                        what: format!("metric {}", r.metric.0),
                        expected: spec.domain,
                        domain,
                    });
                }
            }
        }
        Ok((b, flagged))
    }
}

/// Today's decoder, in the same terms as [`reference::decode`].
fn decode_now(
    topic_agent: &AgentId,
    payload: &[u8],
    limits: &Limits,
    now: UnixMillis,
    domain: Domain,
) -> Result<Checked<Batch>, DecodeError> {
    let b = decode(Stream::Readings, topic_agent, payload, limits, now)?;
    check_domain(&b, domain)?;
    Ok(b)
}

/// Both decoders answer alike on `payload`.
fn same_answer(payload: &[u8], limits: &Limits, domain: Domain) -> Result<(), TestCaseError> {
    let agent = AgentId::new("a1").unwrap();
    let now = UnixMillis(NOW);
    let old = reference::decode(&agent, payload, limits, now, domain);
    let new = decode_now(&agent, payload, limits, now, domain);
    match (old, new) {
        (Ok((o, flagged)), Ok(n)) => {
            prop_assert_eq!(flagged, n.flagged());
            let Batch::Readings(n) = n.into_inner() else {
                return Err(TestCaseError::fail(
                    "an events batch from the readings stream",
                ));
            };
            prop_assert_eq!(&o.agent, &n.agent);
            prop_assert_eq!((o.seq, o.after), (n.seq, n.after));
            prop_assert_eq!(o.readings.len(), n.readings.len());
            for (o, n) in o.readings.iter().zip(&n.readings) {
                prop_assert_eq!(o.metric.0.as_str(), n.metric.as_str());
                prop_assert_eq!(o.value.to_bits(), n.value.to_bits());
                prop_assert_eq!((o.unit, o.ts_ms, o.quality), (n.unit, n.ts_ms, n.quality));
            }
        }
        (Err(o), Err(n)) => {
            prop_assert_eq!(o.to_string(), n.to_string());
            prop_assert_eq!(o.code(), n.code());
            prop_assert_eq!(o, n);
        }
        (o, n) => {
            return Err(TestCaseError::fail(format!(
                "the decoders disagree on {}: before {o:?}, now {n:?}",
                String::from_utf8_lossy(payload)
            )))
        }
    }
    Ok(())
}

/// A reading as an agent or a third-party client might write it, well formed or not.
fn reading_json() -> impl Strategy<Value = String> {
    let metric = prop_oneof![
        Just("\"ph\"".to_owned()),
        Just("\"free_chlorine\"".to_owned()),
        Just("\"orp\"".to_owned()),
        Just("\"water_temperature\"".to_owned()),
        Just("\"makeup_water\"".to_owned()),
        Just("\"door_count\"".to_owned()),
        Just("\"p\\u0068\"".to_owned()),
        "\"[a-z_]{0,70}\"",
        "\"[ -~]{0,8}\"",
        Just("7".to_owned()),
        Just("null".to_owned()),
    ];
    let value = prop_oneof![
        (-3000.0f64..3000.0).prop_map(|v| v.to_string()),
        Just("7.2".to_owned()),
        Just("-1".to_owned()),
        Just("1e400".to_owned()),
        Just("\"7.2\"".to_owned()),
        Just("14.000000000000002".to_owned()),
        // Every finite double as serde_json writes it, and long or odd decimal forms: both
        // decoders must round them to the same bits.
        any::<f64>()
            .prop_filter("finite", |v| v.is_finite())
            .prop_map(|v| serde_json::to_string(&v).unwrap()),
        "-?[0-9]{1,30}(\\.[0-9]{1,30})?([eE][+-]?[0-9]{1,3})?",
        Just("18446744073709551615".to_owned()),
        Just("-9223372036854775809".to_owned()),
        Just("2.2250738585072011e-308".to_owned()),
        Just("1e-400".to_owned()),
    ];
    let unit = prop_oneof![
        Just("\"pH\""),
        Just("\"mg/L\""),
        Just("\"mV\""),
        Just("\"Cel\""),
        Just("\"m3\""),
        Just("\"1\""),
        Just("\"ph\""),
        Just("3"),
    ];
    let ts = prop_oneof![
        (NOW - 200_000_000_000..NOW + 1_000_000).prop_map(|t| t.to_string()),
        any::<i64>().prop_map(|t| t.to_string()),
        Just("-0".to_owned()),
        Just("9223372036854775808".to_owned()),
        Just("\"0\"".to_owned()),
        Just("1.5".to_owned()),
    ];
    let quality = prop_oneof![
        Just(""),
        Just(",\"quality\":\"good\""),
        Just(",\"quality\":\"uncertain\""),
        Just(",\"quality\":\"bad\""),
        Just(",\"quality\":\"great\""),
        Just(",\"extra\":1"),
    ];
    (metric, value, unit, ts, quality).prop_map(|(m, v, u, t, q)| {
        format!(r#"{{"metric":{m},"value":{v},"unit":{u},"ts_ms":{t}{q}}}"#)
    })
}

fn batch_json() -> impl Strategy<Value = String> {
    let head = prop_oneof![
        Just(r#""v":1,"agent":"a1","seq":5"#.to_owned()),
        Just(r#""v":1,"agent":"a1","seq":5,"after":3"#.to_owned()),
        Just(r#""v":1,"agent":"a1","seq":5,"after":9"#.to_owned()),
        Just(r#""v":2,"agent":"a1","seq":5"#.to_owned()),
        Just(r#""v":1,"agent":"a2","seq":5"#.to_owned()),
        Just(r#""v":1,"agent":"a 1","seq":5"#.to_owned()),
        Just(r#""v":1,"seq":5"#.to_owned()),
    ];
    (
        head,
        proptest::collection::vec(reading_json(), 0..6),
        any::<bool>(),
    )
        .prop_map(|(h, rs, readings_first)| {
            let readings = format!(r#""readings":[{}]"#, rs.join(","));
            if readings_first {
                format!("{{{readings},{h}}}")
            } else {
                format!("{{{h},{readings}}}")
            }
        })
}

fn domain() -> impl Strategy<Value = Domain> {
    prop_oneof![
        Just(Domain::Pool),
        Just(Domain::Game),
        Just(Domain::Hospital)
    ]
}

fn limits() -> impl Strategy<Value = Limits> {
    prop_oneof![
        Just(Limits::default()),
        Just(Limits {
            max_batch_len: 2,
            max_payload_bytes: 400,
            ..Limits::default()
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_decoder_answers_as_before_on_generated_batches(p in batch_json(), l in limits(), d in domain()) {
        same_answer(p.as_bytes(), &l, d)?;
    }

    #[test]
    fn the_decoder_answers_as_before_on_mutated_batches(p in batch_json(), at in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<bool>(), d in domain()) {
        let mut bytes = p.into_bytes();
        let i = at.index(bytes.len());
        if cut {
            bytes.truncate(i);
        } else {
            bytes[i] = byte;
        }
        same_answer(&bytes, &Limits::default(), d)?;
    }

    #[test]
    fn the_decoder_answers_as_before_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        same_answer(&bytes, &Limits::default(), Domain::Pool)?;
    }
}

#[test]
fn loadgen_style_batches_of_a_hundred_decode_alike() {
    let readings: Vec<String> = (0..100)
        .map(|i| {
            let (m, v, u) = [
                ("ph", 7.2, "pH"),
                ("free_chlorine", 0.5, "mg/L"),
                ("orp", 700.0, "mV"),
            ][i % 3];
            format!(
                r#"{{"metric":"{m}","value":{},"unit":"{u}","ts_ms":{},"quality":"good"}}"#,
                v + i as f64 * 0.01,
                NOW - 1000 + i as i64
            )
        })
        .collect();
    let p = format!(
        r#"{{"v":1,"agent":"a1","seq":1,"readings":[{}]}}"#,
        readings.join(",")
    );
    same_answer(p.as_bytes(), &Limits::default(), Domain::Pool).unwrap();
}
