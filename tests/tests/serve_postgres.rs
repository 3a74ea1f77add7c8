//! `spotcheck-collector serve` with its store on PostgreSQL (`store.url`): an agent's readings
//! go through the embedded broker into PostgreSQL exactly once, across a `kill -9` of the
//! collector; the API reads them back; nothing is written to a SQLite file. Needs PostgreSQL
//! (skipped without it unless `SPOTCHECK_REQUIRE_SERVERS=1`).

use std::process::Command;
use std::time::Duration;

use spotcheck_collector::store::db::{self, args, DbUrl, Mode, Sql};
use spotcheck_e2e::api::admin_token;
use spotcheck_e2e::postgres::Postgres;
use spotcheck_e2e::*;

const BATCHES: u64 = 300;
/// The pool simulator sends six readings per batch.
const READINGS_PER_BATCH: u64 = 6;

#[test]
fn a_collector_on_postgresql_stores_every_reading_once_across_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let Some(pg) = Postgres::start(dir.path()) else {
        return;
    };
    let url = pg.create_database("serve");
    // The agent's credential is issued into the PostgreSQL store, where the collector reads it.
    let credential = credential_path(dir.path(), "pool-agent-1");
    std::fs::create_dir_all(credential.parent().unwrap()).unwrap();
    let issued = Command::new(bin("spotcheck-collector"))
        .args(["agents", "add", "pool-agent-1", "--store", &url, "--out"])
        .arg(&credential)
        .output()
        .unwrap();
    assert!(
        issued.status.success(),
        "{}",
        String::from_utf8_lossy(&issued.stderr)
    );

    let extra = format!(
        "[store]\nurl = \"{url}\"\n{}",
        agent_binding("pool-agent-1", "pool-1", "pool")
    );
    let mut collector = Collector::start(dir.path(), None, &extra);
    let config = agent_config(
        dir.path(),
        "pool-agent-1",
        "pool-1",
        "pool",
        collector.mqtt_port,
        BATCHES,
        5,
    );
    let mut agent = start_agent(dir.path(), "agent", &config);
    // Midway, the collector is killed and started again; the agent sends what was not
    // confirmed once more.
    collector.wait_stat("readings_ingested", 60, Duration::from_secs(60));
    collector.proc.signal_and_wait("KILL");
    collector.restart("collector-2");
    let status = agent.wait(Duration::from_secs(90));
    assert!(status.success(), "agent failed:\n{}", agent.log());

    let pg_url: DbUrl = url.parse().unwrap();
    let store = db::connect(&pg_url, Mode::Read).unwrap();
    let one = |sql: &str| -> i64 { store.query_row(sql, args![], |r| r.get(0)).unwrap() };
    assert_eq!(
        one("SELECT CAST(coalesce(sum(n), 0) AS BIGINT) FROM reading_chunks") as u64,
        BATCHES * READINGS_PER_BATCH
    );
    assert_eq!(one("SELECT count(*) FROM batches") as u64, BATCHES);
    assert_eq!(one("SELECT max(seq) FROM batches") as u64, BATCHES);
    assert!(
        !collector.data.join("spotcheck.db").exists(),
        "a SQLite store was created beside the PostgreSQL one"
    );

    // The API reads the same store.
    let token = admin_token(&collector.data);
    let entities: serde_json::Value =
        ureq::get(&format!("http://{}/api/v1/entities", collector.http))
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap();
    let pool = entities
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "pool-1")
        .unwrap_or_else(|| panic!("pool-1 not among {entities}"));
    assert_eq!(pool["agents"][0], "pool-agent-1");
    assert!(
        !pool["latest"].as_array().unwrap().is_empty(),
        "no newest readings in {pool}"
    );
    collector.proc.signal_and_wait("TERM");
}
