//! The agent's HTTP intake source, with the real agent and collector binaries (embedded
//! broker): what each kind of bad request gets, and that a 202 record reaches the collector.

use std::net::SocketAddr;
use std::time::Duration;

use spotcheck_e2e::*;

const AGENT: &str = "game-agent-1";
const TOKEN: &str = "s3cret-token-for-tests";

fn session(id: &str) -> String {
    let now = spotcheck_protocol::UnixMillis::now().0;
    format!(
        r#"{{"kind":"game_session","id":"{id}","player":"p-1","age_band":"adult","real_name_verified":true,"guest":false,"start_ms":{},"end_ms":{now}}}"#,
        now - 60_000
    )
}

#[test]
fn http_intake_refuses_bad_requests_with_reasons_and_spools_a_valid_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut collector = Collector::start(dir.path(), None, &agent_binding(AGENT, "game-1", "game"));
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = agent_config_with_sources(
        dir.path(),
        AGENT,
        "game-1",
        "game",
        collector.mqtt_port,
        &format!(
            "[[sources]]\ntype = \"http\"\nlisten = \"{listen}\"\ntoken = \"{TOKEN}\"\nmax_body_bytes = 4096\n"
        ),
    );
    let mut agent = start_agent(dir.path(), "agent", &config);
    wait_listening("the HTTP intake", listen, &mut agent);
    let url = format!("http://{listen}/v1/records");
    let valid = session("s-1");

    let (status, body) = post_json(&url, None, valid.as_bytes());
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, body) = post_json(&url, Some("wrong-token-wrong-token"), valid.as_bytes());
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized")),
        "{body}"
    );
    assert!(body["reason"]
        .as_str()
        .unwrap()
        .contains("wrong bearer token"));

    let big = format!("[{}]", vec![valid.as_str(); 40].join(","));
    assert!(big.len() > 4096);
    let (status, body) = post_json(&url, Some(TOKEN), big.as_bytes());
    assert_eq!(
        (status, body["error"].as_str()),
        (413, Some("too_large")),
        "{body}"
    );
    assert!(body["reason"].as_str().unwrap().contains("4096"), "{body}");

    let (status, body) = post_json(&url, Some(TOKEN), b"{\"kind\": \"game_session\",");
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("malformed_json")),
        "{body}"
    );

    let missing_field = valid.replace(r#""guest":false,"#, "");
    let (status, body) = post_json(&url, Some(TOKEN), missing_field.as_bytes());
    assert_eq!(
        (status, body["error"].as_str()),
        (422, Some("invalid_record")),
        "{body}"
    );
    assert!(body["reason"].as_str().unwrap().contains("guest"), "{body}");

    let consultation = r#"{"kind":"consultation","id":"c","doctor":"d","doctor_verified":true,"stand_in":false,"visit":"follow_up","diagnosis_on_record":true,"patient_age_years":40,"guardian_present":false,"start_ms":1}"#;
    let (status, body) = post_json(&url, Some(TOKEN), consultation.as_bytes());
    assert_eq!(status, 422, "{body}");
    assert!(
        body["reason"].as_str().unwrap().contains("hospital"),
        "{body}"
    );

    let (status, body) = post_json(&url, Some(TOKEN), valid.as_bytes());
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        (body["accepted"].as_u64(), body["seq"].as_u64()),
        (Some(1), Some(1))
    );
    let two = format!("[{},{}]", session("s-2"), session("s-3"));
    let (status, body) = post_json(&url, Some(TOKEN), two.as_bytes());
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        (body["accepted"].as_u64(), body["seq"].as_u64()),
        (Some(2), Some(2))
    );

    collector.wait_stat("events_ingested", 3, Duration::from_secs(60));
    let db = collector.db();
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM events WHERE record_id IN ('s-1', 's-2', 's-3')"
        ),
        3
    );
    assert_eq!(count(&db, "SELECT count(*) FROM dead_letters"), 0);
    agent.assert_running();
    let status = agent.signal_and_wait("TERM");
    assert!(
        status.success(),
        "agent failed on SIGTERM:\n{}",
        agent.log()
    );
    assert!(strip_ansi(&agent.log()).contains("Input rejected."));
}

/// POSTs with an `Idempotency-Key`; `None` when the agent did not answer (killed).
fn post_keyed(url: &str, key: &str, body: &str) -> Option<(u16, serde_json::Value)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let mut resp = agent
        .post(url)
        .header("Content-Type", "application/json")
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .header("Idempotency-Key", key)
        .send(body.as_bytes())
        .ok()?;
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().ok()?;
    Some((status, serde_json::from_str(&text).unwrap_or_default()))
}

#[test]
fn an_http_client_retrying_with_an_idempotency_key_across_agent_kills_stores_every_record_once() {
    const REQUESTS: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let mut collector = Collector::start(dir.path(), None, &agent_binding(AGENT, "game-1", "game"));
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = agent_config_with_sources(
        dir.path(),
        AGENT,
        "game-1",
        "game",
        collector.mqtt_port,
        &format!("[[sources]]\ntype = \"http\"\nlisten = \"{listen}\"\ntoken = \"{TOKEN}\"\n"),
    );
    let mut agent = start_agent(dir.path(), "agent-0", &config);
    wait_listening("the HTTP intake", listen, &mut agent);
    let url = format!("http://{listen}/v1/records");

    // The client: each request is retried with its key until it gets its 202.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let client = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut replayed = 0;
            for i in 0..REQUESTS {
                let body = session(&format!("s-{i}"));
                loop {
                    match post_keyed(&url, &format!("req-{i}"), &body) {
                        Some((202, v)) => {
                            if i == 0 {
                                // A retry of a request that was answered gets the same answer.
                                let again = post_keyed(&url, "req-0", &body).unwrap();
                                assert_eq!((again.0, &again.1), (202, &v));
                                replayed += 1;
                            }
                            break;
                        }
                        Some((status, v)) => assert_eq!(status, 503, "{v}"),
                        None => {}
                    }
                    // The agent is down: try again shortly, as a client would.
                    std::thread::sleep(Duration::from_millis(20));
                }
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            replayed
        })
    };
    for k in 1..=4 {
        wait_for("the client to get on", Duration::from_secs(60), || {
            (done.load(std::sync::atomic::Ordering::SeqCst) >= k * REQUESTS / 5).then_some(())
        });
        agent.signal_and_wait("KILL");
        agent = start_agent(dir.path(), &format!("agent-{k}"), &config);
        wait_listening("the HTTP intake", listen, &mut agent);
    }
    assert_eq!(client.join().unwrap(), 1);
    collector.wait_stat("events_ingested", REQUESTS as u64, Duration::from_secs(60));
    let spool = dir.path().join("spool").join(AGENT);
    wait_for("the spool to be empty", Duration::from_secs(30), || {
        spotcheck_agent::spool::inspect(&spool)
            .ok()
            .filter(|s| s.pending == 0)
    });
    let db = collector.db();
    assert_eq!(count(&db, "SELECT count(*) FROM events") as usize, REQUESTS);
    assert_eq!(
        count(&db, "SELECT count(DISTINCT record_id) FROM events") as usize,
        REQUESTS,
        "every record exactly once"
    );
}
