//! Shared bits of the benchmark binaries: broker addresses, wall-clock stamps, the readings
//! topic filter and the payloads the load generator publishes.
//!
//! The binaries print `key=value` lines on stdout (`start_unix_ns=…`, `done_unix_ns=…`) so that
//! `bench/ingest.sh` can time a run end to end across processes with the same clock.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use spotcheck_protocol::{
    AgentId, Batch, Domain, EntityId, Metric, Quality, Reading, ReadingBatch, Seq, Stream, Topic,
    Unit, UnixMillis, Version,
};

/// Largest MQTT packet the benchmark clients send or accept: the collector's payload limit
/// (256 KiB) plus room for the header and topic.
pub const MAX_PACKET_BYTES: usize = 256 * 1024 + 4096;

/// Splits `host:port`.
pub fn parse_broker(s: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = s
        .rsplit_once(':')
        .with_context(|| format!("--broker {s:?}: write host:port, e.g. 127.0.0.1:1883"))?;
    let port = port
        .parse()
        .with_context(|| format!("--broker {s:?}: bad port"))?;
    Ok((host.to_owned(), port))
}

/// Nanoseconds since the Unix epoch, for timing across processes.
pub fn unix_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

/// The agent id, entity id and readings topic of load-generator agent `i`.
pub fn agent(i: usize) -> anyhow::Result<(AgentId, String)> {
    let agent = AgentId::new(format!("bench-{i}"))?;
    let entity = EntityId::new(format!("bench-e{i}"))?;
    let topic = Topic::batch(Stream::Readings, Domain::Pool, entity, agent.clone()).to_string();
    Ok((agent, topic))
}

/// Plausible pool readings, inside the default rule limits so no rule fires.
const METRICS: [(&str, f64, Unit); 5] = [
    (Metric::WATER_TEMPERATURE, 27.1, Unit::Celsius),
    (Metric::PH, 7.4, Unit::Ph),
    (Metric::FREE_CHLORINE, 0.6, Unit::MilligramPerLitre),
    (Metric::TURBIDITY, 0.3, Unit::Ntu),
    (Metric::ORP, 700.0, Unit::Millivolt),
];

/// The encoded payloads of one agent: `batches` batches of `batch_size` readings, seq 1, 2, ….
///
/// Timestamps are distinct, one millisecond apart, and end at `now_ms`, so they are all in
/// the past and (for any sensible run) well within the collector's 90-day window.
pub fn agent_payloads(
    agent: &AgentId,
    batches: usize,
    batch_size: usize,
    now_ms: i64,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let metrics = METRICS
        .iter()
        .map(|(m, v, u)| Ok((Metric::new(*m)?, *v, *u)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let first_ts = now_ms - (batches * batch_size) as i64;
    let mut k = 0usize;
    let mut out = Vec::with_capacity(batches);
    for b in 0..batches {
        let readings = (0..batch_size)
            .map(|_| {
                let (metric, value, unit) = &metrics[k % metrics.len()];
                let r = Reading {
                    metric: metric.clone(),
                    value: value + (k % 7) as f64 * 0.01,
                    unit: *unit,
                    ts_ms: UnixMillis(first_ts + k as i64),
                    quality: Quality::Good,
                };
                k += 1;
                r
            })
            .collect();
        let batch = Batch::Readings(ReadingBatch {
            v: Version,
            agent: agent.clone(),
            seq: Seq(b as u64 + 1),
            after: None,
            readings,
        });
        out.push(batch.encode());
    }
    Ok(out)
}
