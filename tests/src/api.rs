//! Helpers for tests that go through the collector's HTTP API and publish crafted batches.

use std::path::Path;

use serde_json::Value;
use spotcheck_protocol::{
    Batch, Metric, Quality, Reading, ReadingBatch, Seq, Unit, UnixMillis, Version,
};

use crate::Collector;

/// The agent, entity and topic the API tests publish for.
pub const AGENT: &str = "pool-agent-1";
/// The entity of [`AGENT`].
pub const ENTITY: &str = "pool-1";
/// The readings topic of [`AGENT`].
pub const TOPIC: &str = "spotcheck/v1/pool/pool-1/pool-agent-1/readings";

/// One batch of free-chlorine readings from [`AGENT`], a minute apart, from `start_ms`.
pub fn chlorine(seq: u64, start_ms: i64, values: &[f64]) -> Vec<u8> {
    Batch::Readings(ReadingBatch {
        v: Version,
        agent: spotcheck_protocol::AgentId::new(AGENT).unwrap(),
        seq: Seq(seq),
        after: None,
        readings: values
            .iter()
            .enumerate()
            .map(|(i, v)| Reading {
                metric: Metric::new(Metric::FREE_CHLORINE).unwrap(),
                value: *v,
                unit: Unit::MilligramPerLitre,
                ts_ms: UnixMillis(start_ms + i as i64 * 60_000),
                quality: Quality::Good,
            })
            .collect(),
    })
    .encode()
}

/// `GET path`, with the bearer token if given: (status, JSON body or the text as a string).
pub fn get(c: &Collector, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = ureq::get(&format!("http://{}{path}", c.http))
        .config()
        .http_status_as_error(false)
        .build();
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut resp = req.call().expect("the collector answers");
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

/// `POST path` with a JSON body and the bearer token: (status, JSON body).
pub fn post(c: &Collector, path: &str, body: &str, token: &str) -> (u16, Value) {
    let mut resp = ureq::post(&format!("http://{}{path}", c.http))
        .config()
        .http_status_as_error(false)
        .build()
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send(body)
        .expect("the collector answers");
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_json().unwrap_or(Value::Null))
}

/// The admin token of a collector data directory.
pub fn admin_token(data: &Path) -> String {
    std::fs::read_to_string(data.join("admin.token"))
        .unwrap()
        .trim()
        .to_owned()
}
