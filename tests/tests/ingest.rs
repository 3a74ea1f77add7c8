//! Agent → broker → collector → SQLite, with the real binaries, through the embedded broker and
//! through Mosquitto; and what a third-party client's bad payloads do.

use std::time::Duration;

use spotcheck_e2e::*;

const BATCHES: u64 = 40;
/// The pool simulator sends six readings per batch.
const READINGS_PER_BATCH: u64 = 6;

fn agent_stores_exactly_what_it_published(broker: Option<&Mosquitto>) {
    let dir = tempfile::tempdir().unwrap();
    let bindings = agent_binding("pool-agent-1", "pool-1", "pool");
    let mut collector = Collector::start(dir.path(), broker.map(|b| b.port), &bindings);
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

    let want = BATCHES * READINGS_PER_BATCH;
    collector.wait_stat("readings_ingested", want, Duration::from_secs(60));
    // The agent exits by itself once every batch it made is confirmed.
    let status = agent.wait(Duration::from_secs(30));
    assert!(status.success(), "agent failed:\n{}", agent.log());

    let db = collector.db();
    assert_eq!(
        count(
            &db,
            "SELECT CAST(coalesce(sum(n), 0) AS BIGINT) FROM reading_chunks"
        ) as u64,
        want
    );
    assert_eq!(count(&db, "SELECT count(*) FROM batches") as u64, BATCHES);
    assert_eq!(
        count(&db, "SELECT max(seq) FROM batches") as u64,
        BATCHES,
        "sequence numbers start at 1"
    );
    assert_eq!(
        collector.stat("readings_ingested"),
        want,
        "nothing more arrived"
    );
    assert_eq!(collector.stat("messages_rejected"), 0);
    let spool = dir.path().join("spool").join("pool-agent-1");
    assert_eq!(
        spotcheck_agent::spool_next_seq(&spool).unwrap(),
        BATCHES + 1
    );
}

#[test]
fn readings_through_the_embedded_broker_are_stored_exactly_once() {
    agent_stores_exactly_what_it_published(None);
}

#[test]
fn readings_through_mosquitto_are_stored_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let Some(broker) = Mosquitto::start(dir.path()) else {
        return;
    };
    agent_stores_exactly_what_it_published(Some(&broker));
}

fn batch(agent: &str, seq: u64, ph: f64) -> String {
    let now = spotcheck_protocol::UnixMillis::now().0;
    format!(
        r#"{{"v":1,"agent":"{agent}","seq":{seq},"readings":[{{"metric":"ph","value":{ph},"unit":"pH","ts_ms":{now}}}]}}"#
    )
}

/// A third-party client: mosquitto_pub, against the collector's embedded broker.
#[test]
fn malformed_payloads_are_dead_lettered_with_reasons_and_the_valid_one_is_stored_once() {
    if !have_mosquitto_pub() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "{}{}[limits]\nmax_payload_bytes = 4096\n",
        agent_binding("a1", "pool-1", "pool"),
        agent_binding("a2", "pool-2", "pool")
    );
    let mut c = Collector::start(dir.path(), None, &extra);
    let topic = "spotcheck/v1/pool/pool-1/a1/readings";

    let valid = batch("a1", 1, 7.2);
    c.publish(topic, valid.as_bytes());
    c.publish(topic, valid.as_bytes()); // the same batch again
    let bad: Vec<(&str, String, &str)> = vec![
        (topic, "{not json}".into(), "bad_json"),
        (
            topic,
            batch("a1", 2, 7.2).replace(r#""seq":2"#, r#""seq":"two""#),
            "bad_json",
        ),
        (
            topic,
            batch("a1", 3, 7.2).replace(r#""value":7.2"#, r#""value":"7.2""#),
            "bad_json",
        ),
        (
            topic,
            format!("{}{}", batch("a1", 4, 7.2), " ".repeat(5000)),
            "too_large",
        ),
        (
            "spotcheck/v1/pool/pool-2/a1/readings",
            batch("a1", 5, 7.2),
            "entity_mismatch",
        ),
        (
            "spotcheck/v1/pool/pool-1/a1/readings",
            batch("a+1", 6, 7.2),
            "bad_json",
        ),
        (
            "spotcheck/v1/pool/pool-1/a1/readings",
            batch("a1", 7, 7.2).replace(r#""unit":"pH""#, r#""unit":"mV""#),
            "unit_mismatch",
        ),
        (
            "spotcheck/v1/zoo/pool-1/a1/readings",
            batch("a1", 8, 7.2),
            "bad_topic",
        ),
        (
            "spotcheck/v1/pool/pool-1/a1/readings",
            batch("a2", 9, 7.2),
            "agent_mismatch",
        ),
    ];
    for (t, payload, _) in &bad {
        c.publish(t, payload.as_bytes());
    }
    // Ids with '+', '#' or '/' cannot even be published as topic levels by a client
    // (the broker refuses wildcards in a PUBLISH topic), so they are covered above in the
    // payload (a+1) and in the protocol crate's topic tests.

    let want_rejected = bad.len() as u64;
    c.wait_stat("messages_rejected", want_rejected, Duration::from_secs(30));
    c.wait_stat("duplicates_dropped", 1, Duration::from_secs(30));
    let db = c.db();
    assert_eq!(
        count(
            &db,
            "SELECT CAST(coalesce(sum(n), 0) AS BIGINT) FROM reading_chunks"
        ),
        1,
        "only the valid batch is stored, once"
    );
    let mut codes: Vec<String> = db
        .query("SELECT code FROM dead_letters ORDER BY id", args![], |r| {
            r.get(0)
        })
        .unwrap();
    let mut want: Vec<String> = bad.iter().map(|(_, _, code)| code.to_string()).collect();
    codes.sort();
    want.sort();
    assert_eq!(codes, want);
    let reason: String = db
        .query_row(
            "SELECT reason FROM dead_letters WHERE code = 'unit_mismatch'",
            args![],
            |r| r.get(0),
        )
        .unwrap();
    assert!(reason.contains("readings[0].unit"), "{reason}");
    let payload: Vec<u8> = db
        .query_row(
            "SELECT payload FROM dead_letters WHERE reason LIKE 'payload is not valid JSON%'",
            args![],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        payload.starts_with(b"{not json,\"mac\":"),
        "the payload is kept as received, MAC included"
    );
    let metrics = ureq::get(&format!("http://{}/metrics", c.http))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(
        metrics.contains("spotcheck_messages_rejected_total{reason=\"entity_mismatch\"} 1"),
        "{metrics}"
    );
    // The valid batch and its duplicate are committed (the duplicate was counted at commit),
    // so the ingest-to-commit histogram holds at least those two.
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {metrics}"))
    };
    let observed = value("spotcheck_ingest_commit_latency_seconds_count");
    assert!(observed >= 2.0, "{metrics}");
    assert!(value("spotcheck_ingest_commit_latency_seconds_sum") > 0.0);
    assert_eq!(
        value("spotcheck_ingest_commit_latency_seconds_bucket{le=\"+Inf\"}"),
        observed
    );

    // Still running and still ingesting.
    c.publish(topic, batch("a1", 10, 7.4).as_bytes());
    c.wait_stat("readings_ingested", 2, Duration::from_secs(30));
    c.wait_healthy();
}

/// Readings and events interleaved, each message sent once (mosquitto_pub does not re-send as
/// an agent would), into one collector's embedded broker: that collector (reading in-process)
/// and a second one reading the same rumqttd over MQTT with shared connections both store
/// every one. (rumqttd keeps one read cursor per shared-subscription group, so one group for
/// both filters lost events; each filter now has its own group.)
#[test]
fn interleaved_readings_and_events_in_process_and_over_shared_connections_are_all_stored() {
    if !have_mosquitto_pub() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&dir_a).unwrap();
    std::fs::create_dir_all(&dir_b).unwrap();
    let bindings = agent_binding("a1", "pool-1", "pool") + &agent_binding("g1", "game-1", "game");
    let mut c = Collector::start(&dir_a, None, &bindings);
    // The second collector logs in to the first one's embedded broker as agent a1 (client ids
    // `a1-shared-N`) and, holding none of the first one's keys, checks no MACs.
    let a1 = spotcheck_e2e::credential(&dir_a, "a1");
    let mut shared = Collector::start_with_mqtt(
        &dir_b,
        Some(c.mqtt_port),
        &format!(
            "connections = 4\nclient_id = \"a1-shared\"\nusername = \"a1\"\npassword = \"{}\"",
            a1.password.0
        ),
        &format!("[ingest]\nrequire_agent_auth = false\n{bindings}"),
    );
    let now = spotcheck_protocol::UnixMillis::now().0;
    const EACH: u64 = 15;
    for seq in 1..=EACH {
        c.publish(
            "spotcheck/v1/pool/pool-1/a1/readings",
            batch("a1", seq, 7.2).as_bytes(),
        );
        let event = format!(
            r#"{{"v":1,"agent":"g1","seq":{seq},"events":[{{"kind":"game_payment","id":"p{seq}","player":"u1","age_band":"adult","amount_fen":600,"ts_ms":{now}}}]}}"#
        );
        c.publish("spotcheck/v1/game/game-1/g1/events", event.as_bytes());
    }
    for c in [&mut c, &mut shared] {
        c.wait_stat("batches_committed", 2 * EACH, Duration::from_secs(30));
        assert_eq!(c.stat("events_ingested"), EACH);
        assert_eq!(c.stat("messages_rejected"), 0);
    }
}
