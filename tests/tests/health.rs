//! `/healthz` reports each part, and turns 503 while the store's writer cannot commit: a fault
//! injected into the real database (a trigger that aborts every dead-letter insert) makes the
//! commit thread fail and retry; removing it brings the collector back to 200 with nothing lost.

use std::time::Duration;

use spotcheck_e2e::*;

fn healthz(c: &Collector) -> (u16, serde_json::Value) {
    let mut r = ureq::get(&format!("http://{}/healthz", c.http))
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .expect("/healthz answers");
    let status = r.status().as_u16();
    (status, r.body_mut().read_json().expect("/healthz is JSON"))
}

fn part<'a>(health: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    health["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .find(|p| p["part"] == name)
        .unwrap_or_else(|| panic!("/healthz names no part {name}: {health}"))
}

#[test]
fn healthz_turns_503_while_commits_fail_and_recovers() {
    if !have_mosquitto_pub() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut c = Collector::start(dir.path(), None, &agent_binding("a1", "pool-1", "pool"));
    let (status, body) = healthz(&c);
    assert_eq!(status, 200, "{body}");
    for name in ["broker_link", "commit_thread", "store", "rule_ticker"] {
        assert_eq!(part(&body, name)["state"], "up", "{body}");
    }
    assert!(body["warnings"].is_array(), "{body}");

    let fault = store::open_for_writing(&c.data);
    fault
        .execute_batch(if store::on_postgres() {
            "CREATE FUNCTION injected_fault() RETURNS trigger LANGUAGE plpgsql
             AS $$ BEGIN RAISE EXCEPTION 'injected fault'; END $$;
             CREATE TRIGGER injected_fault BEFORE INSERT ON dead_letters
             FOR EACH ROW EXECUTE FUNCTION injected_fault();"
        } else {
            "CREATE TRIGGER injected_fault BEFORE INSERT ON dead_letters
             BEGIN SELECT RAISE(ABORT, 'injected fault'); END;"
        })
        .unwrap();
    // Anything on a Spotcheck topic reaches a commit: this one as a dead letter.
    c.publish("spotcheck/v1/pool/pool-1/a1/readings", b"{not json");
    let body = wait_for("/healthz 503", Duration::from_secs(30), || {
        c.proc.assert_running();
        let (status, body) = healthz(&c);
        (status == 503).then_some(body)
    });
    let commit = part(&body, "commit_thread");
    assert_eq!(commit["state"], "failing", "{body}");
    assert!(
        commit["reason"]
            .as_str()
            .is_some_and(|r| r.contains("injected fault")),
        "{body}"
    );

    fault
        .execute_batch(if store::on_postgres() {
            "DROP TRIGGER injected_fault ON dead_letters"
        } else {
            "DROP TRIGGER injected_fault"
        })
        .unwrap();
    wait_for("/healthz 200 again", Duration::from_secs(60), || {
        c.proc.assert_running();
        (healthz(&c).0 == 200).then_some(())
    });
    // The message that could not be committed was retried, not dropped.
    assert_eq!(count(&c.db(), "SELECT count(*) FROM dead_letters"), 1);
    c.proc.signal_and_wait("TERM");
}
