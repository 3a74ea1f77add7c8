//! Notifications with the real collector binary: while the webhook's receiver is down, the
//! message is persisted, retried and logged and ingest keeps committing; the collector is
//! killed (SIGKILL) with the message persisted and unsent; after the restart, with the receiver
//! up, it is delivered exactly once.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use spotcheck_e2e::api::*;
use spotcheck_e2e::*;
use spotcheck_protocol::UnixMillis;

/// A receiver on `port` that records each request's `X-Spotcheck-Message` header and body.
fn receiver(port: u16) -> Arc<Mutex<Vec<(String, String)>>> {
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let log = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut r = BufReader::new(stream.try_clone().unwrap());
            let (mut id, mut len) = (String::new(), 0usize);
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            loop {
                let mut h = String::new();
                r.read_line(&mut h).unwrap();
                let h = h.trim_end().to_owned();
                if h.is_empty() {
                    break;
                }
                let (k, v) = h.split_once(':').unwrap();
                match k.to_lowercase().as_str() {
                    "x-spotcheck-message" => id = v.trim().to_owned(),
                    "content-length" => len = v.trim().parse().unwrap(),
                    _ => {}
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            log.lock()
                .unwrap()
                .push((id, String::from_utf8(body).unwrap()));
            let _ = stream.write_all(
                b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    got
}

fn config(port: u16) -> String {
    format!(
        "{}
[notify]
console_url = \"https://spotcheck.example.gov.cn\"
tick_ms = 100
retry_base_ms = 200
retry_max_s = 1
max_attempts = 100000

[[notify.channels]]
name = \"hook\"
type = \"webhook\"
url = \"http://127.0.0.1:{port}/hook\"
secret = \"e2e-secret\"
timeout_s = 2

[[notify.routes]]
name = \"all\"
channels = [\"hook\"]
group_wait_s = 0
",
        agent_binding(AGENT, ENTITY, "pool")
    )
}

#[test]
fn a_message_persisted_while_its_channel_is_dead_is_delivered_once_after_a_kill() {
    if !have_mosquitto_pub() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let extra = config(port);
    let mut c = Collector::start(dir.path(), None, &extra);
    let token = admin_token(&c.data);
    let t0 = UnixMillis::now().0 - 3 * 3_600_000;
    c.publish(TOPIC, &chlorine(1, t0, &[0.1; 10]));
    c.wait_stat("batches_committed", 1, Duration::from_secs(30));

    // Nobody listens: attempts fail and are logged, again and again.
    wait_for("three failed attempts", Duration::from_secs(30), || {
        let (status, log) = get(&c, "/api/v1/notify/deliveries", Some(&token));
        assert_eq!(status, 200, "{log}");
        let log = log.as_array().unwrap().clone();
        assert!(log.iter().all(|d| d["ok"] == false), "{log:?}");
        (log.len() >= 3).then_some(())
    });
    // Ingest goes on regardless.
    for seq in 2..=6 {
        c.publish(TOPIC, &chlorine(seq, t0 + seq as i64 * 600_000, &[0.1; 10]));
    }
    c.wait_stat("batches_committed", 6, Duration::from_secs(30));
    let (_, pending) = get(&c, "/api/v1/notify/messages?status=pending", Some(&token));
    let pending = pending.as_array().unwrap().clone();
    assert_eq!(pending.len(), 1, "{pending:?}");
    let id = pending[0]["id"].as_i64().unwrap();

    // Killed with the message persisted and unsent.
    c.proc.signal_and_wait("KILL");
    let got = receiver(port);
    let mut c = Collector::start(dir.path(), None, &extra);
    let sent: Value = wait_for("the message sent", Duration::from_secs(30), || {
        let (_, sent) = get(&c, "/api/v1/notify/messages?status=sent", Some(&token));
        (sent.as_array().unwrap().len() == 1).then_some(sent)
    });
    assert_eq!(sent[0]["id"], id);
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "delivered once: {got:?}");
    assert_eq!(got[0].0, id.to_string());
    let body: Value = serde_json::from_str(&got[0].1).unwrap();
    assert!(
        body["text"].as_str().unwrap().contains("异常任务已创建"),
        "{body}"
    );
    let (_, all) = get(&c, "/api/v1/notify/messages", Some(&token));
    assert_eq!(all.as_array().unwrap().len(), 1, "nothing repeated: {all}");
    c.proc.signal_and_wait("TERM");
}
