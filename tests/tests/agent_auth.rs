//! Agent identity end to end (issue 10): what someone who can reach the broker but does not
//! hold an agent's key can no longer do. Each test is an attack that worked before.

use std::process::Command;
use std::time::Duration;

use spotcheck_e2e::*;
use spotcheck_protocol::mac::sign;
use spotcheck_protocol::{AgentKey, KeyGeneration};

const TOPIC: &str = "spotcheck/v1/pool/pool-1/a1/readings";

fn bindings() -> String {
    agent_binding("a1", "pool-1", "pool") + &agent_binding("a2", "pool-2", "pool")
}

fn batch(agent: &str, seq: u64, ph: f64) -> String {
    let now = spotcheck_protocol::UnixMillis::now().0;
    format!(
        r#"{{"v":1,"agent":"{agent}","seq":{seq},"readings":[{{"metric":"ph","value":{ph},"unit":"pH","ts_ms":{now}}}]}}"#
    )
}

fn dead_letter_codes(c: &Collector) -> Vec<String> {
    c.db()
        .query("SELECT code FROM dead_letters ORDER BY id", args![], |r| {
            r.get(0)
        })
        .unwrap()
}

/// The attack: read an agent's seq, publish a batch as that agent with seq N+3; it was stored,
/// and the real N+3 was then dropped as a duplicate. Now the forgery is a dead letter, takes no
/// sequence number, and the real batch is stored.
#[test]
fn a_forged_batch_with_a_future_sequence_number_does_not_displace_the_real_one() {
    if !have_mosquitto_pub() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut c = Collector::start(dir.path(), None, &bindings());
    // The forger is another registered agent (the embedded broker has no topic ACL): unsigned,
    // signed with its own key, and signed with a made-up key.
    let stranger = AgentKey::new(KeyGeneration(1), [7; 32]).unwrap();
    let a2 = credential(dir.path(), "a2");
    c.publish_unsigned_as(Some("a2"), TOPIC, batch("a1", 3, 1.0).as_bytes());
    c.publish_unsigned_as(
        Some("a2"),
        TOPIC,
        &sign(&a2.key, batch("a1", 3, 2.0).as_bytes()),
    );
    c.publish_unsigned_as(
        Some("a2"),
        TOPIC,
        &sign(&stranger, batch("a1", 3, 3.0).as_bytes()),
    );
    c.wait_stat("messages_rejected", 3, Duration::from_secs(30));
    for seq in 1..=5 {
        c.publish(TOPIC, batch("a1", seq, 7.0 + seq as f64 / 10.0).as_bytes());
    }
    c.wait_stat("batches_committed", 5, Duration::from_secs(30));

    let db = c.db();
    assert_eq!(count(&db, "SELECT count(*) FROM batches"), 5);
    assert_eq!(
        c.stat("duplicates_dropped"),
        0,
        "the real seq 3 was no duplicate"
    );
    let stored: Vec<(i64, f64)> = stored_readings(&db);
    let mut values: Vec<f64> = stored.iter().map(|(_, v)| *v).collect();
    values.sort_by(f64::total_cmp);
    assert_eq!(values, [7.1, 7.2, 7.3, 7.4, 7.5]);
    assert_eq!(dead_letter_codes(&c), ["bad_mac", "bad_mac", "bad_mac"]);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM dead_letters WHERE seq IS NOT NULL"
        ),
        0,
        "a forgery is never confirmed to the agent"
    );
    let metrics = ureq::get(&format!("http://{}/metrics", c.http))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(
        metrics.contains("spotcheck_messages_rejected_total{reason=\"bad_mac\"} 3"),
        "{metrics}"
    );
}

/// The attack: publish a retained ack for `[0, 2^64-1]` on an agent's ack topic; the agent
/// deleted its whole spool. Now it keeps everything until the collector's signed ack, so
/// every batch is stored once the collector runs.
#[test]
fn a_forged_ack_releases_nothing_from_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let Some(broker) = Mosquitto::start(dir.path()) else {
        return;
    };
    if !have_mosquitto_pub() {
        return;
    }
    ensure_credential(dir.path(), "a1");
    let ack_topic = "spotcheck/v1/agents/a1/ack";
    let everything = br#"{"v":1,"agent":"a1","seqs":[[0,18446744073709551615]]}"#;
    let stranger = AgentKey::new(KeyGeneration(1), [7; 32]).unwrap();
    let forge = |payload: Vec<u8>, retain: bool| {
        let mut cmd = Command::new("/usr/bin/mosquitto_pub");
        cmd.args(["-h", "127.0.0.1", "-p", &broker.port.to_string(), "-q", "1"]);
        if retain {
            cmd.arg("-r");
        }
        let ok = cmd
            .args(["-t", ack_topic, "-m"])
            .arg(String::from_utf8(payload).unwrap())
            .status()
            .unwrap();
        assert!(ok.success());
    };
    let refused = |agent: &Proc| {
        strip_ansi(&agent.log())
            .matches("Ack not signed by the collector")
            .count()
    };
    // Retained, signed with a key that is not a1's: the agent gets it at every connect.
    forge(sign(&stranger, everything), true);
    const BATCHES: u64 = 10;
    let config = agent_config(dir.path(), "a1", "pool-1", "pool", broker.port, BATCHES, 5);
    let mut agent = start_agent(dir.path(), "agent", &config);
    wait_for(
        "the agent to refuse the retained forged ack",
        Duration::from_secs(30),
        || {
            agent.assert_running();
            Some(()).filter(|_| refused(&agent) >= 1)
        },
    );
    // And one without any MAC.
    forge(everything.to_vec(), false);
    wait_for(
        "the agent to refuse the unsigned ack",
        Duration::from_secs(30),
        || {
            agent.assert_running();
            Some(()).filter(|_| refused(&agent) >= 2)
        },
    );
    // Both acks were seen and ignored before any collector ran: everything must still
    // be in the spool and reach the collector now.
    let mut c = Collector::start(
        dir.path(),
        Some(broker.port),
        &agent_binding("a1", "pool-1", "pool"),
    );
    c.wait_stat("batches_committed", BATCHES, Duration::from_secs(60));
    let status = agent.wait(Duration::from_secs(30));
    assert!(status.success(), "agent failed:\n{}", agent.log());
    assert_eq!(
        count(&c.db(), "SELECT count(*) FROM batches"),
        BATCHES as i64
    );
}

/// The attack: publish `{"state":"offline"}` for a live agent, or statuses for agents that do
/// not exist; presence followed. Now only a status its agent signed, and newer than the last
/// one believed, changes anything.
#[test]
fn a_forged_or_replayed_status_changes_no_presence() {
    if !have_mosquitto_pub() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut c = Collector::start(dir.path(), None, &bindings());
    let config = agent_config(
        dir.path(),
        "a1",
        "pool-1",
        "pool",
        c.mqtt_port,
        100_000,
        200,
    );
    let mut agent = start_agent(dir.path(), "agent", &config);
    c.wait_stat("agents_online", 1, Duration::from_secs(30));

    let status_topic = "spotcheck/v1/agents/a1/status";
    let offline = br#"{"v":1,"agent":"a1","state":"offline"}"#;
    let a2 = credential(dir.path(), "a2");
    let a1 = credential(dir.path(), "a1");
    // Unsigned; signed with another agent's key; a genuine but old offline (epoch 1, as a
    // replay of an earlier session's message would be).
    c.publish_unsigned_as(Some("a2"), status_topic, offline);
    c.publish_unsigned_as(Some("a2"), status_topic, &sign(&a2.key, offline));
    let old = br#"{"v":1,"agent":"a1","state":"offline","epoch":1,"counter":1}"#;
    c.publish_unsigned_as(Some("a2"), status_topic, &sign(&a1.key, old));
    // Statuses of agents that do not exist.
    for i in 0..20 {
        let t = format!("spotcheck/v1/agents/fake{i}/status");
        let p = format!(r#"{{"v":1,"agent":"fake{i}","state":"online"}}"#);
        c.publish_unsigned_as(Some("a2"), &t, p.as_bytes());
    }
    c.wait_stat("messages_rejected", 23, Duration::from_secs(30));
    assert_eq!(c.stat("agents_online"), 1);
    let codes = dead_letter_codes(&c);
    assert_eq!(
        codes.iter().filter(|c| *c == "stale_status").count(),
        1,
        "{codes:?}"
    );
    assert_eq!(
        codes.iter().filter(|c| *c == "bad_mac").count(),
        2,
        "{codes:?}"
    );
    assert_eq!(
        codes.iter().filter(|c| *c == "unknown_agent").count(),
        20,
        "{codes:?}"
    );
    agent.signal_and_wait("TERM");
    // The agent's own signed offline status is believed.
    wait_for("the agent to go offline", Duration::from_secs(30), || {
        Some(()).filter(|_| c.stat("agents_online") == 0)
    });
}

fn mosquitto_sub_reads(port: u16, login: Option<(&str, &str, &str)>) -> bool {
    let mut cmd = Command::new("/usr/bin/mosquitto_sub");
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-t",
        "#",
        "-C",
        "1",
        "-W",
        "5",
    ]);
    if let Some((id, user, password)) = login {
        cmd.args(["-i", id, "-u", user, "-P", password]);
    }
    cmd.output().unwrap().status.success()
}

/// The attack: anyone could connect to the embedded broker and read `#` (player ids, doctor
/// ids, patients' ages). Now only agents with a live credential log in, each under its own id.
#[test]
fn anonymous_or_wrong_password_clients_cannot_connect_to_the_embedded_broker_or_read_everything() {
    if !have_mosquitto_pub() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), None, &bindings());
    let a1 = credential(dir.path(), "a1");
    let payload = batch("a1", 1, 7.0);
    assert!(!try_mosquitto_pub(
        c.mqtt_port,
        TOPIC,
        payload.as_bytes(),
        None
    ));
    assert!(!try_mosquitto_pub(
        c.mqtt_port,
        TOPIC,
        payload.as_bytes(),
        Some(("a1", "a1", "wrong"))
    ));
    // The right password under another agent's client id (a session takeover) is refused too.
    assert!(!try_mosquitto_pub(
        c.mqtt_port,
        TOPIC,
        payload.as_bytes(),
        Some(("a2", "a1", &a1.password.0))
    ));
    assert!(!mosquitto_sub_reads(c.mqtt_port, None));
    assert!(!mosquitto_sub_reads(
        c.mqtt_port,
        Some(("x", "a1", "wrong"))
    ));
    // The agent itself gets in.
    assert!(try_mosquitto_pub(
        c.mqtt_port,
        TOPIC,
        &sign(&a1.key, payload.as_bytes()),
        Some(("a1", "a1", &a1.password.0))
    ));
    let mut c = c;
    c.wait_stat("batches_committed", 1, Duration::from_secs(30));
}

/// Revoking an agent (admin API, audited) refuses its next login and dead-letters its batches.
#[test]
fn a_revoked_agent_is_refused_at_its_next_connection_and_its_batches_are_dead_lettered() {
    if !have_mosquitto_pub() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut c = Collector::start(dir.path(), None, &bindings());
    let a1 = credential(dir.path(), "a1");
    c.publish(TOPIC, batch("a1", 1, 7.0).as_bytes());
    c.wait_stat("batches_committed", 1, Duration::from_secs(30));

    let token = std::fs::read_to_string(c.data.join("admin.token")).unwrap();
    let status = ureq::delete(&format!("http://{}/api/v1/agents/a1/credential", c.http))
        .header("Authorization", &format!("Bearer {}", token.trim()))
        .call()
        .unwrap()
        .status();
    assert_eq!(status, 204);

    let signed = sign(&a1.key, batch("a1", 2, 7.0).as_bytes());
    assert!(
        !try_mosquitto_pub(
            c.mqtt_port,
            TOPIC,
            &signed,
            Some(("a1", "a1", &a1.password.0))
        ),
        "a revoked agent logs in no more"
    );
    // A batch signed with the revoked key (sent through another agent's connection).
    c.publish_unsigned_as(Some("a2"), TOPIC, &signed);
    c.wait_stat("messages_rejected", 1, Duration::from_secs(30));
    assert_eq!(dead_letter_codes(&c), ["revoked_credential"]);
    assert_eq!(count(&c.db(), "SELECT count(*) FROM batches"), 1);
    assert_eq!(
        count(&c.db(), "SELECT count(*) FROM audit_log WHERE kind = 'agent_credential_revoked' AND subject = 'agent:a1'"),
        1
    );
}
