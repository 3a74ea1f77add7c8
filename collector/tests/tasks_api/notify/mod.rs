//! Notifications end to end in process: anomaly tasks opened by the rule engine inside
//! ingest's commits reach a local HTTP receiver in the documented WeCom, DingTalk and
//! webhook formats with valid signatures, and a real SMTP server (aiosmtpd) over STARTTLS with
//! AUTH; a flapping sensor is told once; a dead channel is retried and logged while commits go
//! on; a message persisted before a crash is sent once after it; report figures equal
//! counts taken straight from the store.

mod channels;
mod events;
mod smtp;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use hmac::{Hmac, Mac};
use serde_json::Value;
use spotcheck_collector::notify::scan::ScanSettings;
use spotcheck_collector::notify::{NotifyConfig, Worker};
use spotcheck_collector::rulebook::Rulebook;
use spotcheck_collector::store::Writer;
use spotcheck_collector::tasks::anomaly::Tracker;
use spotcheck_protocol::{AgentId, Batch, Checked, EntityId, Metric, UnixMillis};

use crate::helpers::{items, pool_batches, three_hours_ago, writer_for, App};
pub(crate) use crate::test_store::Off;
pub(crate) use spotcheck_collector::store::db::{args, Sql};

/// One request the receiver got.
#[derive(Debug, Clone)]
pub(crate) struct Req {
    target: String,
    headers: HashMap<String, String>,
    body: String,
}

impl Req {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
    fn query(&self) -> HashMap<String, String> {
        let u = url::Url::parse(&format!("http://x{}", self.target)).unwrap();
        u.query_pairs().into_owned().collect()
    }
}

/// A local HTTP receiver: records every request and answers with the current answer.
pub(crate) struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<Req>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let log = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut r = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                let target = line.split(' ').nth(1).unwrap_or("").to_owned();
                let mut headers = HashMap::new();
                loop {
                    let mut h = String::new();
                    r.read_line(&mut h).unwrap();
                    let h = h.trim_end();
                    if h.is_empty() {
                        break;
                    }
                    let (k, v) = h.split_once(':').unwrap();
                    headers.insert(k.trim().to_lowercase(), v.trim().to_owned());
                }
                let n: usize = headers
                    .get("content-length")
                    .map_or(0, |v| v.parse().unwrap());
                let mut body = vec![0; n];
                r.read_exact(&mut body).unwrap();
                log.lock().unwrap().push(Req {
                    target,
                    headers,
                    body: String::from_utf8(body).unwrap(),
                });
                let answer = r#"{"errcode":0,"errmsg":"ok"}"#;
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            }
        });
        Receiver { port, got }
    }

    fn requests(&self) -> Vec<Req> {
        self.got.lock().unwrap().clone()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

pub(crate) fn settings() -> NotifyConfig {
    NotifyConfig {
        console_url: "https://spotcheck.example.gov.cn".into(),
        scan_s: 3600,
        retry_base_ms: 1000,
        ..NotifyConfig::default()
    }
}

/// A notification worker over the app's store, off Tokio's context (`test_store::Off`).
pub(crate) fn worker(app: &App, s: NotifyConfig) -> Off<Worker> {
    Off::new(|| {
        Worker::connect(
            &app.store,
            s,
            ScanSettings {
                publish_within_days: 20,
            },
        )
        .unwrap()
    })
}

pub(crate) fn commit(
    w: &mut Off<Writer>,
    tracker: &mut Tracker,
    entity: &EntityId,
    batches: &[Checked<Batch>],
) {
    let items = items(entity, batches);
    w.run(|w| {
        w.commit_observed(&items, UnixMillis::now(), tracker)
            .unwrap()
    });
}

pub(crate) fn tracker(w: &mut Off<Writer>) -> Tracker {
    let book = Rulebook::load(None).unwrap();
    w.run(|w| {
        Tracker::load(
            w.conn(),
            (*book.rules()).clone(),
            (*book.calendar()).clone(),
            &[],
            UnixMillis::now(),
        )
        .unwrap()
    })
}

pub(crate) fn chlorine(
    agent: &AgentId,
    seq: u64,
    start: i64,
    minutes: i64,
    v: impl Fn(i64) -> f64,
) -> Vec<Checked<Batch>> {
    pool_batches(agent, seq, start, minutes, |m, minute| {
        (m == Metric::FREE_CHLORINE).then(|| v(minute))
    })
}

/// Opens an anomaly task on a pool (low free chlorine) through the rule engine.
pub(crate) fn breach(
    app: &App,
    pool: usize,
    agent: &str,
) -> (Off<Writer>, Tracker, EntityId, AgentId) {
    let agent = AgentId::new(agent).unwrap();
    let (mut w, entity) = writer_for(app, &agent, &app.registry.pools[pool]);
    let mut t = tracker(&mut w);
    commit(
        &mut w,
        &mut t,
        &entity,
        &chlorine(&agent, 1, three_hours_ago(), 10, |_| 0.1),
    );
    (w, t, entity, agent)
}

pub(crate) async fn save_rules(app: &App, rules: Value) {
    let r = app
        .send(
            "PUT",
            "/api/v1/notify/config",
            Some(crate::helpers::ADMIN),
            &rules.to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

pub(crate) fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}
