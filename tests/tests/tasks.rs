//! Anomaly tasks end to end, with the real collector binary and a third-party MQTT client
//! (mosquitto_pub): a breach published over MQTT opens one task that the API lists; more of
//! the breach, and a restart, do not open a second one; the condition clearing is noted; the
//! result is published on the public feed; `audit verify` accepts the log and catches an edit.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use spotcheck_e2e::api::*;
use spotcheck_e2e::*;
use spotcheck_protocol::UnixMillis;

/// The entity's anomaly tasks for the free-chlorine range rule (the jump back into the band
/// also trips the rate rule, which is another task).
fn anomaly_tasks(c: &Collector, token: &str) -> Vec<Value> {
    let (status, body) = get(
        c,
        &format!("/api/v1/tasks?kind=anomaly&entity={ENTITY}"),
        Some(token),
    );
    assert_eq!(status, 200, "{body}");
    body.as_array()
        .unwrap()
        .iter()
        .filter(|t| t["rule"] == "pool/free_chlorine")
        .cloned()
        .collect()
}

fn audit_verify(data: &Path) -> (bool, String) {
    let out = std::process::Command::new(bin("spotcheck-collector"))
        .args(["audit", "verify"])
        .args(store::cli_args(data))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn a_breach_opens_one_task_across_restarts_and_its_result_is_published() {
    if !have_mosquitto_pub() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bindings = agent_binding(AGENT, ENTITY, "pool");
    let mut c = Collector::start(dir.path(), None, &bindings);
    let token = admin_token(&c.data);
    let t0 = UnixMillis::now().0 - 3 * 3_600_000;

    // In band: nothing opens.
    c.publish(TOPIC, &chlorine(1, t0, &[0.6, 0.55, 0.62]));
    c.wait_stat("batches_committed", 1, Duration::from_secs(30));
    assert!(anomaly_tasks(&c, &token).is_empty());
    let (status, _) = get(&c, "/api/v1/tasks", None);
    assert_eq!(status, 401, "the task list needs the admin token");

    // Ten minutes below 0.3 mg/L: one task.
    c.publish(TOPIC, &chlorine(2, t0 + 10 * 60_000, &[0.2; 10]));
    let task = wait_for("an anomaly task", Duration::from_secs(30), || {
        anomaly_tasks(&c, &token).into_iter().next()
    });
    assert_eq!(task["rule"], "pool/free_chlorine");
    assert_eq!(task["status"], "open");
    assert_eq!(task["severity"], "high");
    let id = task["id"].as_i64().unwrap();

    // More of the same breach: still one task.
    c.publish(TOPIC, &chlorine(3, t0 + 20 * 60_000, &[0.18; 5]));
    c.wait_stat("batches_committed", 3, Duration::from_secs(30));
    assert_eq!(anomaly_tasks(&c, &token).len(), 1);

    // Restart: the breach goes on, still one task; then it clears and the task notes it.
    let status = c.proc.signal_and_wait("TERM");
    assert!(
        status.success(),
        "collector stopped badly:\n{}",
        c.proc.log()
    );
    let mut c = Collector::start(dir.path(), None, &bindings);
    c.publish(TOPIC, &chlorine(4, t0 + 25 * 60_000, &[0.15; 5]));
    c.wait_stat("batches_committed", 1, Duration::from_secs(30));
    assert_eq!(
        anomaly_tasks(&c, &token).len(),
        1,
        "a restart must not open a second task"
    );
    // The engine's state survived: it did not see the ongoing breach as a new one.
    let (_, t) = get(&c, &format!("/api/v1/tasks/{id}"), Some(&token));
    assert!(
        !t["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["kind"] == "returned"),
        "{t}"
    );
    c.publish(TOPIC, &chlorine(5, t0 + 30 * 60_000, &[0.6; 10]));
    let cleared = wait_for(
        "the task to note the clearing",
        Duration::from_secs(30),
        || {
            let (_, t) = get(&c, &format!("/api/v1/tasks/{id}"), Some(&token));
            Some(t).filter(|t| !t["cleared_ms"].is_null())
        },
    );
    assert!(
        cleared["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["kind"] == "cleared"),
        "{cleared}"
    );
    assert_eq!(anomaly_tasks(&c, &token).len(), 1);

    // Acknowledge, resolve, publish; the public feed shows the result without the comment.
    let post = |path: &str, body: &str| post(&c, path, body, &token);
    assert_eq!(post(&format!("/api/v1/tasks/{id}/acknowledge"), "").0, 200);
    let comment = "operator fixed the dosing pump, checked by phone with Zhang San";
    let (s, body) = post(
        &format!("/api/v1/tasks/{id}/resolve"),
        &format!(r#"{{"result": "corrected", "comment": "{comment}"}}"#),
    );
    assert_eq!(s, 200, "{body}");
    let (s, body) = post("/api/v1/publications", &format!(r#"{{"tasks": [{id}]}}"#));
    assert_eq!(s, 200, "{body}");
    let (s, public) = get(&c, "/api/v1/public/results", None);
    assert_eq!(s, 200);
    let row = public
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["task_id"] == id)
        .unwrap_or_else(|| panic!("task {id} is not on the public feed: {public}"))
        .clone();
    assert_eq!(row["result_code"], "corrected");
    assert!(!public.to_string().contains("Zhang San"), "{public}");

    // The audit log verifies; an edited entry is caught.
    let status = c.proc.signal_and_wait("TERM");
    assert!(status.success());
    let (ok, out) = audit_verify(&c.data);
    assert!(ok, "{out}");
    let db = store::open_for_writing(&c.data);
    db.execute(
        "UPDATE audit_log SET body = replace(body, 'corrected', 'no_problem') WHERE kind = 'result_recorded'",
        args![],
    )
    .unwrap();
    let (ok, out) = audit_verify(&c.data);
    assert!(!ok, "an edited entry must fail verification:\n{out}");
}

#[test]
fn an_invalid_rule_pack_stops_start_up_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("pool.toml"),
        include_str!("../../collector/rules/pool.toml").replacen("max = 1.0", "max = 0.1", 1),
    )
    .unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[http]\nlisten = \"127.0.0.1:{}\"\n[mqtt]\nembedded_listen = \"127.0.0.1:{}\"\n[rules]\ndir = {:?}\n",
            dir.path().join("data").display().to_string(),
            free_port(),
            free_port(),
            rules.display().to_string()
        ),
    )
    .unwrap();
    let mut p = Proc::spawn(
        "collector",
        &bin("spotcheck-collector"),
        &["serve", "--config", config.to_str().unwrap()],
        dir.path(),
    );
    let status = p.wait(Duration::from_secs(30));
    let log = p.log();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("pool.toml:") && log.contains("above max"),
        "{log}"
    );
}
