//! Helpers for the agent's end-to-end tests (`tests/agent_*.rs`): what the collector stored,
//! agent configs with any sources, HTTP calls, and reading the agent's logs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use spotcheck_collector::store::db::{args, Sql};

use crate::{wait_for, Proc};

/// Per sequence number, in seq order, when the collector stored `agent`'s batch
/// (`batches.received_ms`).
pub fn stored_batches(db: &impl Sql, agent: &str) -> Vec<(u64, i64)> {
    db.query(
        "SELECT b.seq, b.received_ms FROM batches b JOIN agents a ON a.id = b.agent \
         WHERE a.name = $1 ORDER BY b.seq",
        args![agent],
        |r| Ok((r.get::<i64>(0)? as u64, r.get(1)?)),
    )
    .unwrap()
}

/// A chunk's (seq, readings) runs and its (ts_ms, value) readings.
type ParsedChunk = (Vec<(i64, u64)>, Vec<(i64, f64)>);

/// A stored reading chunk, read the way its documented format says (`collector/src/store/
/// chunk.rs`; little-endian): format 1 is `u8 1, readings` of the row's batch; format 2 is
/// `u8 2, u32 runs, runs × {i64 seq, u32 n}, readings`; a reading is `i64 ts_ms, f64 value,
/// u8 quality`. Returns the (seq, readings) runs and the (ts_ms, value) readings.
fn parse_chunk(blob: &[u8], row_seq: i64) -> ParsedChunk {
    let (runs, records) = match blob.first() {
        Some(1) => (vec![(row_seq, ((blob.len() - 1) / 17) as u64)], &blob[1..]),
        Some(2) => {
            let n = u32::from_le_bytes(blob[1..5].try_into().unwrap()) as usize;
            let runs = blob[5..5 + 12 * n]
                .chunks_exact(12)
                .map(|r| {
                    (
                        i64::from_le_bytes(r[..8].try_into().unwrap()),
                        u64::from(u32::from_le_bytes(r[8..].try_into().unwrap())),
                    )
                })
                .collect();
            (runs, &blob[5 + 12 * n..])
        }
        other => panic!("unknown reading chunk format {other:?}"),
    };
    assert_eq!(
        records.len() % 17,
        0,
        "a reading chunk has a partial reading"
    );
    let readings = records
        .chunks_exact(17)
        .map(|rec| {
            (
                i64::from_le_bytes(rec[..8].try_into().unwrap()),
                f64::from_le_bytes(rec[8..16].try_into().unwrap()),
            )
        })
        .collect();
    (runs, readings)
}

/// Every reading chunk as (agent id, row seq, BLOB).
fn chunks(db: &impl Sql) -> Vec<(i64, i64, Vec<u8>)> {
    db.query(
        "SELECT agent, seq, data FROM reading_chunks ORDER BY rowid",
        args![],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .unwrap()
}

/// Stored batches whose readings or events were stored twice or partly (should be 0): every
/// reading is traced to its (agent, seq) through the chunks' runs.
pub fn batches_with_wrong_item_counts(db: &impl Sql) -> i64 {
    let mut stored: std::collections::HashMap<(i64, i64), u64> = Default::default();
    for (agent, seq, blob) in chunks(db) {
        for (run_seq, n) in parse_chunk(&blob, seq).0 {
            *stored.entry((agent, run_seq)).or_default() += n;
        }
    }
    let batches: Vec<(i64, i64, u64, u64)> = db
        .query(
            "SELECT b.agent, b.seq, b.items,
                    (SELECT count(*) FROM events e WHERE e.agent = b.agent AND e.seq = b.seq)
             FROM batches b",
            args![],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    let mut wrong = 0;
    for (agent, seq, items, events) in &batches {
        if stored.remove(&(*agent, *seq)).unwrap_or(0) + events != *items {
            wrong += 1;
        }
    }
    // Readings that no stored batch accounts for.
    wrong + stored.len() as i64
}

/// Every stored reading as (ts_ms, value), in storage order.
pub fn stored_readings(db: &impl Sql) -> Vec<(i64, f64)> {
    chunks(db)
        .into_iter()
        .flat_map(|(_, seq, blob)| parse_chunk(&blob, seq).1)
        .collect()
}

/// `text` without ANSI colour escapes (tracing's log lines carry them).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The last value of `key=NUMBER` in a log, ANSI escapes ignored.
pub fn last_logged_number(log: &str, key: &str) -> Option<u64> {
    let log = strip_ansi(log);
    let needle = format!("{key}=");
    log.rmatch_indices(&needle).find_map(|(i, _)| {
        let digits: String = log[i + needle.len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    })
}

/// Writes an agent config whose `[[sources]]` tables are `sources` (TOML text) and returns its
/// path; the spool is `dir/spool/AGENT`, the ack timeout 2 s.
pub fn agent_config_with_sources(
    dir: &Path,
    agent: &str,
    entity: &str,
    domain: &str,
    broker_port: u16,
    sources: &str,
) -> PathBuf {
    let path = dir.join(format!("{agent}.toml"));
    let spool = dir.join("spool").join(agent);
    std::fs::write(
        &path,
        format!(
            "[agent]\nid = \"{agent}\"\nentity = \"{entity}\"\ndomain = \"{domain}\"\ncredential_file = {:?}\n\n[mqtt]\nbroker = \"mqtt://127.0.0.1:{broker_port}\"\nack_timeout_ms = 2000\n\n[spool]\ndir = {:?}\n\n{sources}\n",
            crate::ensure_credential(dir, agent).display().to_string(),
            spool.display().to_string()
        ),
    )
    .unwrap();
    path
}

/// POSTs `body` to `url` with an optional bearer token; returns the status and the JSON body
/// (`Null` when the body is not JSON). Non-2xx statuses are returned, not errors.
pub fn post_json(url: &str, token: Option<&str>, body: &[u8]) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut req = agent.post(url).header("Content-Type", "application/json");
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut resp = req.send(body).unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_listening(what: &str, addr: SocketAddr, proc: &mut Proc) {
    wait_for(what, Duration::from_secs(30), || {
        proc.assert_running();
        std::net::TcpStream::connect(addr).ok()
    });
}

/// Whether `python3 -c "import MODULE"` works.
pub fn python_has(module: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
