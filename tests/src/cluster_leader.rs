//! Several `spotcheck-collector serve` processes on one PostgreSQL store, for the tests of the
//! leader's work (tests/tests/cluster_leader.rs): each member in a directory of its own, with
//! its embedded broker, and what `/metrics` and `/healthz` say about its leadership.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::{bin, credential_path, tsdb, Collector};

/// Issues `agent`'s credential into the store at `store_url`, written where a member started
/// in `member_dir` finds it (so the member does not issue one into a SQLite file).
pub fn issue_credential(store_url: &str, member_dir: &Path, agent: &str) -> PathBuf {
    let path = credential_path(member_dir, agent);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let out = Command::new(bin("spotcheck-collector"))
        .args(["agents", "add", agent, "--store", store_url, "--out"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "issuing {agent}'s credential: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// Starts member `name` (directory `dir/name`) on the store at `store_url`, with `extra`
/// appended to its configuration (after its `[store]` table: start `extra` with a table).
pub fn start_member(
    dir: &Path,
    name: &str,
    store_url: &str,
    store_keys: &str,
    extra: &str,
) -> Collector {
    let own = dir.join(name);
    std::fs::create_dir_all(&own).unwrap();
    Collector::start(
        &own,
        None,
        &format!("[store]\nurl = \"{store_url}\"\n{store_keys}\n{extra}"),
    )
}

/// A counter or gauge of a member's `/metrics` (0 when absent).
pub fn gauge(c: &Collector, name: &str) -> f64 {
    tsdb::metric(c.http.port(), name).unwrap_or(0.0)
}

/// Whether the member says it leads (`spotcheck_leader`).
pub fn leads(c: &Collector) -> bool {
    gauge(c, "spotcheck_leader") == 1.0
}

/// The `leader` part of the member's `/healthz`.
pub fn leader_part(c: &Collector) -> Value {
    let body: Value = ureq::get(&format!("http://{}/healthz", c.http))
        .call()
        .expect("healthz answers")
        .body_mut()
        .read_json()
        .expect("healthz is JSON");
    body["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .find(|p| p["part"] == "leader")
        .cloned()
        .unwrap_or_else(|| panic!("no leader part in {body}"))
}
