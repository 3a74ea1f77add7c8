//! Every message accounted for, and nothing growing without bound (issue 16): oversized
//! payloads at either limit, batches kept back behind a gap let go on a timer, the
//! dead-letter quota of unknown sources, `after` beyond `seq`, the domain checks, and an agent
//! whose sequence restarted.

use std::time::Duration;

use spotcheck_e2e::*;

const AGENT: &str = "a1";
const TOPIC: &str = "spotcheck/v1/pool/pool-1/a1/readings";

fn now_ms() -> i64 {
    spotcheck_protocol::UnixMillis::now().0
}

fn batch(seq: u64, after: Option<u64>, ph: f64) -> String {
    let after = after.map_or(String::new(), |a| format!(r#""after":{a},"#));
    format!(
        r#"{{{after}"v":1,"agent":"{AGENT}","seq":{seq},"readings":[{{"metric":"ph","value":{ph},"unit":"pH","ts_ms":{}}}]}}"#,
        now_ms()
    )
}

fn metrics(c: &Collector) -> String {
    ureq::get(&format!("http://{}/metrics", c.http))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap()
}

/// The value of a Prometheus sample whose line starts with `name` (0 if absent).
fn metric(c: &Collector, name: &str) -> u64 {
    metrics(c)
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

fn codes(c: &Collector) -> Vec<(String, Option<i64>)> {
    c.db()
        .query(
            "SELECT code, seq FROM dead_letters ORDER BY id",
            args![],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
}

fn start(dir: &std::path::Path, ingest: &str) -> Collector {
    let extra = format!(
        "{}{}\n[ingest]\n{ingest}\n",
        agent_binding(AGENT, "pool-1", "pool"),
        agent_binding("g1", "game-1", "game")
    );
    Collector::start(dir, None, &extra)
}

#[test]
fn an_oversized_payload_is_dead_lettered_or_refused_by_the_broker_and_counted_either_way() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = start(dir.path(), "");
    // Over limits.max_payload_bytes (256 KiB) but inside the broker's packet limit: decoded
    // far enough to be a dead letter `too_large`.
    let mut big = format!(r#"{{"v":1,"agent":"{AGENT}","seq":9,"pad":""#).into_bytes();
    big.resize(258 * 1024, b'x');
    big.extend_from_slice(b"\"}");
    c.publish(TOPIC, &big);
    c.wait_stat("messages_rejected", 1, Duration::from_secs(20));
    assert_eq!(codes(&c), vec![("too_large".to_owned(), None)]);

    // Over the broker's packet limit too: the broker closes the connection, and says so.
    let mut huge = big.clone();
    huge.resize(300 * 1024, b'x');
    let cred = credential(dir.path(), AGENT);
    let _ = try_mosquitto_pub(
        c.mqtt_port,
        TOPIC,
        &huge,
        Some(("a1-big", AGENT, &cred.password.0)),
    );
    wait_for(
        "the broker's refusal counted",
        Duration::from_secs(20),
        || Some(()).filter(|_| metric(&c, "spotcheck_broker_refused_oversized_total") >= 1),
    );
    let log = c.proc.log();
    assert!(
        log.contains("refused a packet over its size limit"),
        "not logged:\n{log}"
    );
}

#[test]
fn batches_kept_back_behind_a_gap_are_bounded_and_let_go_on_a_timer_as_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = start(dir.path(), "hold_for_s = 1\nmax_held_per_agent = 3\n");
    c.publish(TOPIC, batch(1, Some(1), 7.2).as_bytes());
    c.wait_stat("batches_committed", 1, Duration::from_secs(20));
    // 2..=4 never come. 5, 6 and 7 wait; 8 finds no room.
    for seq in 5..=8 {
        c.publish(TOPIC, batch(seq, Some(2), 7.2).as_bytes());
    }
    c.wait_stat("messages_rejected", 1, Duration::from_secs(20));
    // Nothing more is sent: the timer lets the three go.
    c.wait_stat("messages_rejected", 4, Duration::from_secs(20));
    let got = codes(&c);
    assert_eq!(
        got.iter().filter(|(code, _)| code == "held_full").count(),
        1,
        "{got:?}"
    );
    assert_eq!(
        got.iter()
            .filter(|(code, _)| code == "gap_not_filled")
            .count(),
        3,
        "{got:?}"
    );
    assert!(
        got.iter().all(|(_, seq)| seq.is_none()),
        "not confirmed: the agent still holds them: {got:?}"
    );
    assert_eq!(metric(&c, "spotcheck_batches_kept_back"), 0);
    assert_eq!(c.stat("batches_committed"), 1);
    let reason: String = c
        .db()
        .query_row(
            "SELECT reason FROM dead_letters WHERE code = 'gap_not_filled' LIMIT 1",
            args![],
            |r| r.get(0),
        )
        .unwrap();
    assert!(reason.contains("batches 2..4"), "{reason}");
}

#[test]
fn an_unknown_source_gets_its_dead_letter_quota_and_is_then_only_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = start(dir.path(), "dead_letter_quota_bytes = 5000\n");
    let payload = vec![b'x'; 1000];
    for i in 0..8 {
        let topic = format!("spotcheck/v1/pool/pool-1/stranger{i}/readings");
        c.publish_unsigned_as(Some(AGENT), &topic, &payload);
    }
    c.wait_stat("messages_rejected", 8, Duration::from_secs(30));
    let rows = c
        .db()
        .query_row("SELECT count(*) FROM dead_letters", args![], |r| {
            r.get::<i64>(0)
        });
    let rows = rows.unwrap();
    assert!((1..=4).contains(&rows), "{rows} dead letters kept");
    assert_eq!(
        metric(&c, "spotcheck_dead_letters_over_quota_total"),
        8 - rows as u64
    );
}

#[test]
fn after_beyond_seq_a_wrong_domain_and_an_impossible_ph_each_get_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = start(dir.path(), "");
    c.publish(TOPIC, batch(3, Some(5), 7.2).as_bytes());
    let payment = format!(
        r#"{{"v":1,"agent":"{AGENT}","seq":4,"events":[{{"kind":"game_payment","id":"p1","player":"u1","age_band":"adult","amount_fen":600,"ts_ms":{}}}]}}"#,
        now_ms()
    );
    c.publish("spotcheck/v1/pool/pool-1/a1/events", payment.as_bytes());
    c.publish(TOPIC, batch(5, Some(5), -1.0).as_bytes());
    c.wait_stat("messages_rejected", 2, Duration::from_secs(20));
    c.wait_stat("batches_committed", 1, Duration::from_secs(20));
    assert_eq!(
        codes(&c),
        vec![
            ("after_beyond_seq".to_owned(), Some(3)),
            ("wrong_domain".to_owned(), Some(4))
        ]
    );
    // pH -1 cannot be measured: stored, flagged bad (it counts as missing data).
    assert_eq!(metric(&c, "spotcheck_readings_out_of_range_total"), 1);
}

#[test]
fn an_agent_that_lost_its_spool_has_reused_numbers_dead_lettered_and_continues_after_the_collectors_next(
) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Collector::start(
        dir.path(),
        None,
        &agent_binding("pool-agent-1", "pool-1", "pool"),
    );
    let config = agent_config(
        dir.path(),
        "pool-agent-1",
        "pool-1",
        "pool",
        c.mqtt_port,
        10,
        5,
    );
    let mut agent = start_agent(dir.path(), "agent", &config);
    assert!(
        agent.wait(Duration::from_secs(60)).success(),
        "{}",
        agent.log()
    );
    c.wait_stat("batches_committed", 10, Duration::from_secs(20));

    // The spool is lost: the agent's numbering starts again from 1.
    std::fs::remove_dir_all(dir.path().join("spool").join("pool-agent-1")).unwrap();
    let slow = std::fs::read_to_string(&config)
        .unwrap()
        .replace("interval_ms = 5", "interval_ms = 400");
    std::fs::write(&config, slow).unwrap();
    let mut agent = start_agent(dir.path(), "agent2", &config);
    assert!(
        agent.wait(Duration::from_secs(60)).success(),
        "{}",
        agent.log()
    );

    let reused = codes(&c)
        .into_iter()
        .filter(|(code, _)| code == "seq_reused")
        .count() as u64;
    assert!(
        (1..=3).contains(&reused),
        "the first batches of the new run reuse numbers: {reused}"
    );
    let db = c.db();
    assert_eq!(
        count(&db, "SELECT count(*) FROM batches") as u64,
        10 + (10 - reused),
        "every other batch of the new run is stored, under numbers after the collector's next"
    );
    assert!(count(&db, "SELECT max(seq) FROM batches") > 10);
    assert_eq!(
        count(
            &db,
            "SELECT CAST(coalesce(sum(n), 0) AS BIGINT) FROM reading_chunks"
        ) as u64,
        6 * (20 - reused)
    );
    assert_eq!(
        c.stat("messages_rejected"),
        reused,
        "accounted for, not dropped"
    );
}

#[test]
fn batches_let_go_by_the_timer_are_charged_to_their_agents_dead_letter_quota() {
    let dir = tempfile::tempdir().unwrap();
    // Room for about two let-go batches a day (payload, topic and reason are charged).
    let mut c = start(
        dir.path(),
        "hold_for_s = 1\ndead_letter_quota_bytes = 900\n",
    );
    c.publish(TOPIC, batch(1, Some(1), 7.2).as_bytes());
    c.wait_stat("batches_committed", 1, Duration::from_secs(20));
    // 2..=4 never come: 5..=10 are kept back, then let go.
    for seq in 5..=10 {
        c.publish(TOPIC, batch(seq, Some(2), 7.2).as_bytes());
    }
    c.wait_stat("messages_rejected", 6, Duration::from_secs(30));
    let kept = codes(&c)
        .iter()
        .filter(|(code, _)| code == "gap_not_filled")
        .count() as u64;
    assert!((1..6).contains(&kept), "{kept} kept of 6 let go");
    assert_eq!(
        metric(&c, "spotcheck_dead_letters_over_quota_total"),
        6 - kept,
        "the rest only counted"
    );
    assert_eq!(c.stat("messages_rejected"), 6);
}
