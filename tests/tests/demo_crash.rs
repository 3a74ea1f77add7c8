//! The reliability contract end to end: SIGKILL the whole demo (embedded broker, collector and
//! agents in one process) while agents publish, start it again, and every batch the agents had
//! made is stored exactly once.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use spotcheck_e2e::*;

fn start_demo(dir: &Path, data: &Path, http: u16, mqtt: u16, name: &str) -> Proc {
    Proc::spawn(
        name,
        &bin("spotcheck-demo"),
        &[
            "--http",
            &format!("127.0.0.1:{http}"),
            "--mqtt",
            &format!("127.0.0.1:{mqtt}"),
            "--data",
            data.to_str().unwrap(),
            "--per-domain",
            "2",
        ],
        dir,
    )
}

fn stat(http: u16, name: &str) -> Option<u64> {
    let mut r = ureq::get(&format!("http://127.0.0.1:{http}/api/v1/stats"))
        .call()
        .ok()?;
    r.body_mut().read_json::<serde_json::Value>().ok()?[name].as_u64()
}

/// Next sequence number of every agent's spool.
fn spool_heads(data: &Path) -> BTreeMap<String, u64> {
    std::fs::read_dir(data.join("agents"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            (name, spotcheck_agent::spool_next_seq(&e.path()).unwrap())
        })
        .collect()
}

/// Per agent, the stored sequence numbers.
fn stored(data: &Path) -> BTreeMap<String, Vec<u64>> {
    let db = store::open_sqlite(data);
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let rows = db
        .query(
            "SELECT a.name, b.seq FROM batches b JOIN agents a ON a.id = b.agent ORDER BY a.name, b.seq",
            args![],
            |r| Ok((r.get::<String>(0)?, r.get::<i64>(1)?)),
        )
        .unwrap();
    for (a, s) in rows {
        out.entry(a).or_default().push(s as u64);
    }
    out
}

#[test]
fn a_demo_killed_with_sigkill_loses_and_duplicates_nothing() {
    if store::sqlite_only("the demo keeps its store in SQLite, the same on both legs") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (http, mqtt) = (free_port(), free_port());

    let mut first = start_demo(dir.path(), &data, http, mqtt, "demo-1");
    wait_for("readings to flow", Duration::from_secs(60), || {
        first.assert_running();
        stat(http, "batches_committed").filter(|n| *n >= 20)
    });
    let status = first.signal_and_wait("KILL");
    assert!(!status.success());

    // What the agents had made (and so spooled) when the process died.
    let made = spool_heads(&data);
    assert_eq!(made.len(), 6, "two agents per domain");

    let unconfirmed: usize = std::fs::read_dir(data.join("agents"))
        .unwrap()
        .map(|e| {
            spotcheck_agent::spool::inspect(&e.unwrap().path())
                .unwrap()
                .pending
        })
        .sum();
    eprintln!("at the kill: {made:?}; {unconfirmed} batches not yet confirmed in the spools");

    let mut second = start_demo(dir.path(), &data, http, mqtt, "demo-2");
    wait_for(
        "the restarted demo to ingest",
        Duration::from_secs(60),
        || {
            second.assert_running();
            stat(http, "batches_committed").filter(|n| *n >= 1)
        },
    );
    wait_for(
        "every batch made before the kill to be stored",
        Duration::from_secs(90),
        || {
            second.assert_running();
            let stored = stored(&data);
            made.iter()
                .all(|(agent, next)| {
                    let have = stored.get(agent).map(|v| v.as_slice()).unwrap_or(&[]);
                    (1..*next).all(|s| have.binary_search(&s).is_ok())
                })
                .then_some(())
        },
    );
    let status = second.signal_and_wait("TERM");
    assert!(
        status.success(),
        "the demo stops cleanly on SIGTERM:\n{}",
        second.log()
    );

    // Exactly once: each stored batch has exactly the readings or records it carried.
    let db = store::open_sqlite(&data);
    let mismatched = batches_with_wrong_item_counts(&db);
    assert_eq!(mismatched, 0, "a batch's rows were stored twice or partly");
    for (agent, seqs) in stored(&data) {
        let mut dedup = seqs.clone();
        dedup.dedup();
        assert_eq!(seqs, dedup, "{agent} has a batch twice");
    }
    assert_eq!(count(&db, "SELECT count(*) FROM dead_letters"), 0);
}
