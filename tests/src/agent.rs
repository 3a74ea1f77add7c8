//! Helpers for the agent's end-to-end tests (`tests/agent_*.rs`): what the collector stored,
//! agent configs with any sources, HTTP calls, and reading the agent's logs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::{count, wait_for, Proc};

/// Per sequence number, in seq order, when the collector stored `agent`'s batch
/// (`batches.received_ms`).
pub fn stored_batches(db: &rusqlite::Connection, agent: &str) -> Vec<(u64, i64)> {
    let mut stmt = db
        .prepare(
            "SELECT b.seq, b.received_ms FROM batches b JOIN agents a ON a.id = b.agent \
             WHERE a.name = ?1 ORDER BY b.seq",
        )
        .unwrap();
    stmt.query_map([agent], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn has_table(db: &rusqlite::Connection, name: &str) -> bool {
    db.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [name],
        |r| r.get::<_, i64>(0),
    )
    .unwrap()
        > 0
}

/// SQL for the readings stored per (agent, seq), whichever layout the store has: one row per
/// reading (`readings`) or one chunk per batch and metric (`reading_chunks.n`).
fn readings_per_batch_sql(db: &rusqlite::Connection) -> &'static str {
    if has_table(db, "reading_chunks") {
        "(SELECT coalesce(sum(r.n), 0) FROM reading_chunks r WHERE r.agent = b.agent AND r.seq = b.seq)"
    } else {
        "(SELECT count(*) FROM readings r WHERE r.agent = b.agent AND r.seq = b.seq)"
    }
}

/// Stored batches whose readings or events were stored twice or partly (should be 0).
pub fn batches_with_wrong_item_counts(db: &rusqlite::Connection) -> i64 {
    count(
        db,
        &format!(
            "SELECT count(*) FROM batches b WHERE b.items != {}
               + (SELECT count(*) FROM events e WHERE e.agent = b.agent AND e.seq = b.seq)",
            readings_per_batch_sql(db)
        ),
    )
}

/// Every stored reading as (ts_ms, value), in storage order, whichever layout the store has
/// (chunk format 1: `u8 format, n × {i64 ts_ms, f64 value, u8 quality}`, little-endian).
pub fn stored_readings(db: &rusqlite::Connection) -> Vec<(i64, f64)> {
    if has_table(db, "reading_chunks") {
        let mut stmt = db.prepare("SELECT data FROM reading_chunks").unwrap();
        let blobs: Vec<Vec<u8>> = stmt
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let mut out = Vec::new();
        for blob in blobs {
            assert_eq!(blob.first(), Some(&1), "unknown reading chunk format");
            for rec in blob[1..].chunks_exact(17) {
                let ts = i64::from_le_bytes(rec[..8].try_into().unwrap());
                let v = f64::from_le_bytes(rec[8..16].try_into().unwrap());
                out.push((ts, v));
            }
        }
        out
    } else {
        let mut stmt = db.prepare("SELECT ts_ms, value FROM readings").unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }
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
            "[agent]\nid = \"{agent}\"\nentity = \"{entity}\"\ndomain = \"{domain}\"\n\n[mqtt]\nbroker = \"mqtt://127.0.0.1:{broker_port}\"\nack_timeout_ms = 2000\n\n[spool]\ndir = {:?}\n\n{sources}\n",
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
