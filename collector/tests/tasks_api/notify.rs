//! Notifications end to end in process: anomaly tasks opened by the rule engine inside
//! ingest's commits reach a local HTTP receiver in the documented WeCom, DingTalk and
//! webhook formats with valid signatures, and a real SMTP server (aiosmtpd) over STARTTLS with
//! AUTH; a flapping sensor is told once; a dead channel is retried and logged while commits go
//! on; a message persisted before a crash is sent once after it; report figures equal
//! counts taken straight from the store.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use spotcheck_collector::notify::scan::ScanSettings;
use spotcheck_collector::notify::{NotifyConfig, Worker};
use spotcheck_collector::rulebook::Rulebook;
use spotcheck_collector::store::Writer;
use spotcheck_collector::tasks::anomaly::Tracker;
use spotcheck_protocol::{AgentId, Batch, Checked, EntityId, Metric, UnixMillis};

use crate::helpers::{items, pool_batches, three_hours_ago, writer_for, App, MINUTE};

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Req {
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
struct Receiver {
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

fn settings() -> NotifyConfig {
    NotifyConfig {
        console_url: "https://spotcheck.example.gov.cn".into(),
        scan_s: 3600,
        retry_base_ms: 1000,
        ..NotifyConfig::default()
    }
}

fn worker(app: &App, s: NotifyConfig) -> Worker {
    Worker::open(
        &app.db,
        s,
        ScanSettings {
            publish_within_days: 20,
        },
    )
    .unwrap()
}

fn commit(w: &mut Writer, tracker: &mut Tracker, entity: &EntityId, batches: &[Checked<Batch>]) {
    w.commit_observed(&items(entity, batches), UnixMillis::now(), tracker)
        .unwrap();
}

fn tracker(w: &Writer) -> Tracker {
    let book = Rulebook::load(None).unwrap();
    Tracker::load(
        w.connection(),
        (*book.rules()).clone(),
        (*book.calendar()).clone(),
        &[],
        UnixMillis::now(),
    )
    .unwrap()
}

fn chlorine(
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
fn breach(app: &App, pool: usize, agent: &str) -> (Writer, Tracker, EntityId, AgentId) {
    let agent = AgentId::new(agent).unwrap();
    let (mut w, entity) = writer_for(app, &agent, &app.registry.pools[pool]);
    let mut t = tracker(&w);
    commit(
        &mut w,
        &mut t,
        &entity,
        &chlorine(&agent, 1, three_hours_ago(), 10, |_| 0.1),
    );
    (w, t, entity, agent)
}

async fn save_rules(app: &App, rules: Value) {
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

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

#[tokio::test]
async fn robots_and_webhooks_get_their_documented_formats_with_valid_signatures() {
    let app = App::start().await;
    let rx = Receiver::start();
    let r = app
        .send(
            "PUT",
            "/api/v1/contacts/health",
            Some(crate::helpers::ADMIN),
            &json!([{"name": "王芳", "phone": "13800000001", "email": "wang@example.cn"}])
                .to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    save_rules(
        &app,
        json!({
            "channels": [
                {"name": "wecom", "type": "wecom", "url": rx.url("/cgi-bin/webhook/send?key=KEY1")},
                {"name": "ding", "type": "dingtalk", "url": rx.url("/robot/send?access_token=TOK"), "secret": "SECtest"},
                {"name": "hook", "type": "webhook", "url": rx.url("/hook"), "secret": "hook-secret"}
            ],
            "routes": [{"name": "health", "departments": ["health"], "channels": ["wecom", "ding", "hook"],
                        "liaisons": true, "group_wait_s": 0}]
        }),
    )
    .await;
    let _open = breach(&app, 0, "pool-agent-notify-1");
    let task: i64 = rusqlite::Connection::open(&app.db)
        .unwrap()
        .query_row("SELECT id FROM tasks WHERE kind = 'anomaly'", [], |r| {
            r.get(0)
        })
        .unwrap();
    let before = UnixMillis::now().0;
    let report = worker(&app, settings()).step(UnixMillis::now()).unwrap();
    assert_eq!((report.flushed, report.sent), (3, 3), "{report:?}");
    let got = rx.requests();
    assert_eq!(got.len(), 3);
    let link = format!("https://spotcheck.example.gov.cn/#/task/{task}");

    let wecom = got
        .iter()
        .find(|r| r.target.starts_with("/cgi-bin"))
        .unwrap();
    assert_eq!(wecom.query()["key"], "KEY1");
    let body = wecom.json();
    assert_eq!(body["msgtype"], "markdown");
    assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
    let content = body["markdown"]["content"].as_str().unwrap();
    assert!(
        content.contains("异常任务已创建") && content.contains(&link),
        "{content}"
    );
    assert!(content.contains("联络员：王芳"), "{content}");

    let ding = got.iter().find(|r| r.target.starts_with("/robot")).unwrap();
    let q = ding.query();
    assert_eq!(q["access_token"], "TOK");
    let ts: i64 = q["timestamp"].parse().unwrap();
    assert!(
        (before - 1000..=UnixMillis::now().0).contains(&ts),
        "timestamp {ts} is now, in ms"
    );
    let expected = base64::engine::general_purpose::STANDARD
        .encode(hmac(b"SECtest", format!("{ts}\nSECtest").as_bytes()));
    assert_eq!(
        q["sign"], expected,
        "sign = base64(HMAC-SHA256(secret, ts\\nsecret))"
    );
    let body = ding.json();
    assert_eq!(body["msgtype"], "markdown");
    assert!(body["markdown"]["title"]
        .as_str()
        .unwrap()
        .contains("异常任务已创建"));
    assert!(body["markdown"]["text"].as_str().unwrap().contains(&link));
    assert_eq!(body["at"]["atMobiles"], json!(["13800000001"]));
    assert!(body["markdown"]["text"]
        .as_str()
        .unwrap()
        .contains("@13800000001"));

    let hook = got.iter().find(|r| r.target == "/hook").unwrap();
    let ts = &hook.headers["x-spotcheck-timestamp"];
    let sig = hex::encode(hmac(
        b"hook-secret",
        format!("{ts}.{}", hook.body).as_bytes(),
    ));
    assert_eq!(
        hook.headers["x-spotcheck-signature"],
        format!("sha256={sig}")
    );
    let body = hook.json();
    assert_eq!(body["id"].to_string(), hook.headers["x-spotcheck-message"]);
    assert!(body["text"].as_str().unwrap().contains(&link));

    // The delivery log has each attempt, and the API shows the messages as sent.
    let sent = app
        .admin("GET", "/api/v1/notify/messages?status=sent", "")
        .await;
    assert_eq!(sent.as_array().unwrap().len(), 3);
    let log = app.admin("GET", "/api/v1/notify/deliveries", "").await;
    assert!(
        log.as_array().unwrap().iter().all(|d| d["ok"] == true),
        "{log}"
    );
    // The secrets and robot tokens never leave through the API.
    let shown = app
        .admin("GET", "/api/v1/notify/config", "")
        .await
        .to_string();
    assert!(
        !shown.contains("SECtest") && !shown.contains("KEY1") && !shown.contains("hook-secret"),
        "{shown}"
    );
}

#[tokio::test]
async fn rules_that_cannot_work_are_refused_when_saved_with_every_reason() {
    let app = App::start().await;
    let r = app
        .send(
            "PUT",
            "/api/v1/notify/config",
            Some(crate::helpers::ADMIN),
            &json!({
                "channels": [
                    {"name": "ding", "type": "dingtalk", "url": "http://oapi.dingtalk.com/robot/send?access_token=x"},
                    {"name": "mail", "type": "email", "smtp_host": "smtp.example.cn", "from": "sc@example.cn"}
                ],
                "routes": [{"name": "r", "departments": ["helth"], "channels": ["ding", "mail"]}]
            })
            .to_string(),
        )
        .await;
    assert_eq!(r.status, 400);
    for needle in [
        "must be https",
        "unknown department \\\"helth\\\"",
        "no recipients",
    ] {
        assert!(r.body.contains(needle), "{needle} not in {}", r.body);
    }
    let cfg = app.admin("GET", "/api/v1/notify/config", "").await;
    assert_eq!(cfg["version"], Value::Null, "nothing was saved");
    // A test send answers at once whether a channel works: here, nobody listens.
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    save_rules(
        &app,
        json!({"channels": [{"name": "hook", "type": "webhook", "url": format!("http://127.0.0.1:{dead}/x"), "secret": "s"}]}),
    )
    .await;
    let t = app
        .admin("POST", "/api/v1/notify/channels/hook/test", "")
        .await;
    assert_eq!(t["ok"], false, "{t}");
    assert!(!t["detail"].as_str().unwrap().is_empty());
    let rx = Receiver::start();
    save_rules(
        &app,
        json!({"channels": [{"name": "hook", "type": "webhook", "url": rx.url("/x"), "secret": "s"}]}),
    )
    .await;
    let t = app
        .admin("POST", "/api/v1/notify/channels/hook/test", "")
        .await;
    assert_eq!(t["ok"], true, "{t}");
    assert!(rx.requests()[0].json()["text"]
        .as_str()
        .unwrap()
        .contains("测试消息"));
}

#[tokio::test]
async fn a_flapping_sensor_sends_one_grouped_message() {
    let app = App::start().await;
    let rx = Receiver::start();
    save_rules(
        &app,
        json!({
            "channels": [{"name": "wecom", "type": "wecom", "url": rx.url("/cgi-bin/webhook/send?key=K")}],
            "routes": [{"name": "all", "channels": ["wecom"], "group_wait_s": 30,
                        "group_interval_s": 300, "repeat_interval_s": 14400}]
        }),
    )
    .await;
    let (mut w, mut t, entity, agent) = breach(&app, 1, "pool-agent-flap");
    let mut worker = worker(&app, settings());
    let t0 = UnixMillis::now().0;
    worker.step(UnixMillis(t0)).unwrap();
    // The chlorine dosing pump hunts around its set-point: out, back in band, out again …
    let mut seq = 2;
    let mut start = three_hours_ago() + 10 * MINUTE;
    for cycle in 0..6 {
        let ramp = |m| match m {
            0 => 0.3,
            1 => 0.5,
            _ => 0.6,
        };
        commit(
            &mut w,
            &mut t,
            &entity,
            &chlorine(&agent, seq, start, 10, ramp),
        );
        seq += 1;
        start += 10 * MINUTE;
        let down = |m| match m {
            0 => 0.5,
            1 => 0.3,
            _ => 0.1,
        };
        commit(
            &mut w,
            &mut t,
            &entity,
            &chlorine(&agent, seq, start, 10, down),
        );
        seq += 1;
        start += 10 * MINUTE;
        // Half the flapping comes before the group's first message, half after.
        if cycle == 2 {
            let r = worker.step(UnixMillis(t0 + 31_000)).unwrap();
            assert_eq!(r.sent, 1, "{r:?}");
        }
    }
    // Until the next scan (which would escalate the unacknowledged task: another story).
    for later in [10, 20, 59] {
        worker.step(UnixMillis(t0 + later * MINUTE)).unwrap();
    }
    let conn = rusqlite::Connection::open(&app.db).unwrap();
    let events: i64 = conn
        .query_row("SELECT COUNT(*) FROM notify_outbox", [], |r| r.get(0))
        .unwrap();
    assert!(events >= 12, "the stream flapped: {events} events");
    let got = rx.requests();
    assert_eq!(got.len(), 1, "one message for the flapping sensor: {got:?}");
    let content = got[0].json()["markdown"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        content.contains("异常任务已创建") && content.contains("异常已恢复"),
        "{content}"
    );
    let tasks: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM tasks WHERE kind = 'anomaly'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tasks, 1);
}

#[tokio::test]
async fn a_dead_channel_is_retried_with_backoff_and_logged_while_commits_go_on() {
    let app = App::start().await;
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    save_rules(
        &app,
        json!({
            "channels": [{"name": "hook", "type": "webhook", "url": format!("http://127.0.0.1:{dead}/x"), "secret": "s", "timeout_s": 2}],
            "routes": [{"name": "all", "channels": ["hook"], "group_wait_s": 0}]
        }),
    )
    .await;
    let (mut w, mut t, entity, agent) = breach(&app, 2, "pool-agent-dead");
    let mut s = settings();
    s.max_attempts = 4;
    let mut worker = worker(&app, s);
    let t0 = UnixMillis::now().0;
    let mut start = three_hours_ago() + 10 * MINUTE;
    let mut times = Vec::new();
    for (i, at) in [0, 1_000, 3_000, 7_000, 60_000].into_iter().enumerate() {
        let r = worker.step(UnixMillis(t0 + at)).unwrap();
        if i < 4 {
            assert_eq!(r.failed_attempts, 1, "attempt {} at +{at} ms: {r:?}", i + 1);
            times.push(at);
        } else {
            assert_eq!(r.failed_attempts, 0, "given up after max_attempts");
        }
        // Ingest keeps committing in between.
        commit(
            &mut w,
            &mut t,
            &entity,
            &chlorine(&agent, 2 + i as u64, start, 10, |_| 0.1),
        );
        start += 10 * MINUTE;
    }
    let conn = rusqlite::Connection::open(&app.db).unwrap();
    let batches: i64 = conn
        .query_row("SELECT COUNT(*) FROM batches", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        batches, 6,
        "every batch committed while the channel was dead"
    );
    let log = app.admin("GET", "/api/v1/notify/deliveries", "").await;
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 4, "{log:?}");
    assert!(log
        .iter()
        .all(|d| d["ok"] == false && d["channel"] == "hook"));
    let attempts: Vec<i64> = log
        .iter()
        .rev()
        .map(|d| d["attempt"].as_i64().unwrap())
        .collect();
    assert_eq!(attempts, [1, 2, 3, 4]);
    let failed = app
        .admin("GET", "/api/v1/notify/messages?status=failed", "")
        .await;
    assert_eq!(failed.as_array().unwrap().len(), 1, "{failed}");
    assert_eq!(failed[0]["attempts"], 4);
}

#[tokio::test]
async fn a_message_persisted_before_a_crash_is_sent_once_after_the_restart() {
    let app = App::start().await;
    let rx = Receiver::start();
    save_rules(
        &app,
        json!({
            "channels": [{"name": "hook", "type": "webhook", "url": rx.url("/x"), "secret": "s"}],
            "routes": [{"name": "all", "channels": ["hook"], "group_wait_s": 0}]
        }),
    )
    .await;
    let _open = breach(&app, 3, "pool-agent-crash");
    let now = UnixMillis::now();

    {
        let mut before = worker(&app, settings());
        assert_eq!(before.route(now).unwrap(), 1);
        assert_eq!(before.flush(now).unwrap(), 1);
        // The process dies here: persisted, not sent.
    }
    assert!(rx.requests().is_empty());
    let mut after = worker(&app, settings());
    for i in 0..3 {
        after.step(UnixMillis(now.0 + i * 1000)).unwrap();
    }
    let got = rx.requests();
    assert_eq!(got.len(), 1, "{got:?}");
    let messages: i64 = rusqlite::Connection::open(&app.db)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM notify_messages", [], |r| r.get(0))
        .unwrap();
    assert_eq!(messages, 1, "the restart neither lost nor repeated it");
}

/// aiosmtpd with STARTTLS (a throw-away certificate) and AUTH, on a free port; None when
/// python3 or aiosmtpd is missing (a failure with SPOTCHECK_REQUIRE_SERVERS=1).
struct Smtp {
    child: std::process::Child,
    port: u16,
    out: std::path::PathBuf,
    ca: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Smtp {
    fn start() -> Option<Smtp> {
        let required = std::env::var("SPOTCHECK_REQUIRE_SERVERS").is_ok_and(|v| v == "1");
        let have = std::process::Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .status()
            .is_ok_and(|s| s.success());
        if !have {
            assert!(
                !required,
                "python3 with aiosmtpd is required (pip install aiosmtpd)"
            );
            eprintln!("skipping: python3 with aiosmtpd not found (pip install aiosmtpd)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        // A CA and a server certificate for localhost signed by it (rustls refuses a
        // self-signed CA certificate as the server's own).
        let (cert, key, ca) = (
            dir.path().join("server.crt"),
            dir.path().join("server.key"),
            dir.path().join("ca.crt"),
        );
        std::fs::write(
            dir.path().join("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        for args in [
            "req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 1 -subj /CN=notify-test-ca",
            "req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost",
            "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 1 -extfile server.ext",
        ] {
            let out = std::process::Command::new("openssl")
                .args(args.split(' '))
                .current_dir(dir.path())
                .output()
                .unwrap();
            assert!(out.status.success(), "openssl {args}: {}", String::from_utf8_lossy(&out.stderr));
        }
        let out = dir.path().join("mail");
        std::fs::create_dir(&out).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/tasks_api/smtp_server.py"
        );
        let mut child = std::process::Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(&cert)
            .arg(&key)
            .args(["spotcheck", "smtp-password"])
            .arg(&out)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "aiosmtpd started");
        Some(Smtp {
            child,
            port,
            out,
            ca,
            _dir: dir,
        })
    }

    fn mails(&self) -> Vec<Value> {
        let mut files: Vec<_> = std::fs::read_dir(&self.out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
            .collect()
    }

    fn channel(&self, password: &str) -> Value {
        json!({"name": "mail", "type": "email", "smtp_host": "localhost", "smtp_port": self.port,
               "tls": "starttls", "ca_file": self.ca, "username": "spotcheck", "password": password,
               "from": "Spotcheck <spotcheck@example.cn>", "to": ["office@example.cn"]})
    }
}

#[tokio::test]
async fn e_mail_reaches_a_real_smtp_server_over_starttls_with_auth() {
    let Some(smtp) = Smtp::start() else { return };
    let app = App::start().await;
    let r = app
        .send(
            "PUT",
            "/api/v1/contacts/health",
            Some(crate::helpers::ADMIN),
            &json!([{"name": "李强", "email": "li.qiang@example.cn"}]).to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // A wrong password: the test send says so at once.
    save_rules(&app, json!({"channels": [smtp.channel("wrong")]})).await;
    let t = app
        .admin("POST", "/api/v1/notify/channels/mail/test", "")
        .await;
    assert_eq!(t["ok"], false, "{t}");
    assert!(smtp.mails().is_empty());
    save_rules(
        &app,
        json!({"channels": [smtp.channel("smtp-password")],
               "routes": [{"name": "health", "departments": ["health"], "channels": ["mail"],
                           "liaisons": true, "group_wait_s": 0}]}),
    )
    .await;
    let t = app
        .admin("POST", "/api/v1/notify/channels/mail/test", "")
        .await;
    assert_eq!(t["ok"], true, "{t}");
    let _open = breach(&app, 4, "pool-agent-mail");
    let r = worker(&app, settings())
        .with_rulebook(Rulebook::load(None).unwrap())
        .step(UnixMillis::now())
        .unwrap();
    assert_eq!(r.sent, 1, "{r:?}");
    let mails = smtp.mails();
    assert_eq!(mails.len(), 2, "{mails:?}");
    let test = &mails[0];
    assert!(
        test["subject"].as_str().unwrap().contains("测试消息"),
        "{test}"
    );
    let m = &mails[1];
    assert_eq!(m["tls"], true, "STARTTLS before anything else");
    assert_eq!(m["authenticated"], true);
    assert_eq!(
        m["rcpt"],
        json!(["office@example.cn", "li.qiang@example.cn"])
    );
    assert_eq!(m["subject"], "【health】［高］异常任务已创建");
    let text = m["text"].as_str().unwrap();
    assert!(
        text.contains("规则 游离性余氯 0.3–1.0 mg/L（pool/free_chlorine）")
            && text.contains("#/task/"),
        "{text}"
    );
}

#[tokio::test]
async fn report_figures_equal_counts_taken_straight_from_the_store() {
    let app = App::start().await;
    let (mut w, mut t, entity, agent) = breach(&app, 5, "pool-agent-report");
    // A second anomaly on another pool, acknowledged and resolved through the API.
    let _second = breach(&app, 0, "pool-agent-report-2");
    let open = app
        .admin("GET", "/api/v1/tasks?kind=anomaly&status=open", "")
        .await;
    let id = open[0]["id"].as_i64().unwrap();
    let r = app
        .send(
            "POST",
            &format!("/api/v1/tasks/{id}/acknowledge"),
            Some(crate::helpers::ADMIN),
            "",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = app
        .send(
            "POST",
            &format!("/api/v1/tasks/{id}/resolve"),
            Some(crate::helpers::ADMIN),
            &json!({"result": "corrected", "comment": "加氯后复测合格"}).to_string(),
        )
        .await;
    assert!(r.status == 200, "{}", r.body);
    commit(
        &mut w,
        &mut t,
        &entity,
        &chlorine(&agent, 2, three_hours_ago() + 10 * MINUTE, 10, |_| 0.1),
    );
    let today = spotcheck_collector::rules::ChinaDay::of(UnixMillis::now());
    let from = spotcheck_collector::rules::ChinaDay(today.0 - 1);
    let report = app
        .admin(
            "GET",
            &format!("/api/v1/reports?from={from}&to={today}&department=health"),
            "",
        )
        .await;
    let d = &report["departments"][0];
    assert_eq!(d["department"], "health", "{report}");

    let conn = rusqlite::Connection::open(&app.db).unwrap();
    let one = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(
        d["anomalies_opened"],
        one("SELECT COUNT(*) FROM tasks WHERE kind = 'anomaly' AND department = 'health'")
    );
    assert_eq!(d["anomalies_opened"], 2);
    assert_eq!(
        d["drawn"],
        one("SELECT COUNT(*) FROM tasks WHERE draw IS NOT NULL AND department = 'health'")
    );
    assert_eq!(
        d["published"],
        one("SELECT COUNT(*) FROM tasks WHERE published_ms IS NOT NULL AND department = 'health'")
    );
    let (opened, acked, resolved): (i64, i64, i64) = conn
        .query_row(
            "SELECT t.opened_ms, (SELECT MIN(ts_ms) FROM task_notes n WHERE n.task = t.id AND n.kind = 'acknowledged'), t.resolved_ms
             FROM tasks t WHERE t.id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(d["time_to_acknowledge"]["n"], 1);
    assert_eq!(
        d["time_to_acknowledge"]["median_min"],
        json!((acked - opened) as f64 / 60_000.0)
    );
    assert_eq!(
        d["time_to_resolve"]["p90_min"],
        json!((resolved - opened) as f64 / 60_000.0)
    );
    // Coverage: the entities with readings in the period, of the library's entities in the
    // health department's domains (its items check pools and internet hospitals).
    let pools = one("SELECT COUNT(*) FROM registry_entities WHERE domain IN ('pool', 'hospital')");
    let live = one(&format!(
        "SELECT COUNT(DISTINCT e.name) FROM reading_chunks c JOIN entities e ON e.id = c.entity
         WHERE c.t0 >= {} AND c.t0 < {}",
        from.at(0).0,
        spotcheck_collector::rules::ChinaDay(today.0 + 1).at(0).0
    ));
    assert_eq!(d["entities"], pools);
    assert_eq!(d["live_feed"], live);
    assert_eq!(live, 2);
    // The CSV says the same.
    let csv = app
        .send(
            "GET",
            &format!("/api/v1/reports/csv?from={from}&to={today}"),
            Some(crate::helpers::ADMIN),
            "",
        )
        .await;
    assert_eq!(csv.status, 200);
    let mut rows = csv::Reader::from_reader(csv.body.as_bytes());
    let header = rows.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let health = rows
        .records()
        .map(Result::unwrap)
        .find(|r| &r[0] == "health")
        .unwrap();
    assert_eq!(&health[col("anomalies_opened")], "2");
    assert_eq!(health[col("live_feed")].parse::<i64>().unwrap(), live);
}

#[tokio::test]
async fn time_driven_events_are_found_once_and_the_scheduled_report_is_sent() {
    let app = App::start().await;
    let rx = Receiver::start();
    save_rules(
        &app,
        json!({
            "channels": [{"name": "hook", "type": "webhook", "url": rx.url("/x"), "secret": "s"}],
            "routes": [{"name": "reports", "kinds": ["report"], "channels": ["hook"], "group_wait_s": 0,
                        "group_by": ["department", "kind"]}]
        }),
    )
    .await;
    let _a = breach(&app, 0, "pool-agent-time-1");
    let _b = breach(&app, 1, "pool-agent-time-2");
    let open = app
        .admin("GET", "/api/v1/tasks?kind=anomaly&status=open", "")
        .await;
    let resolved = open[0]["id"].as_i64().unwrap();
    let body = json!({"result": "corrected", "comment": "复测合格"}).to_string();
    app.admin("POST", &format!("/api/v1/tasks/{resolved}/resolve"), &body)
        .await;
    let kinds = || -> Vec<(String, Option<i64>)> {
        let conn = rusqlite::Connection::open(&app.db).unwrap();
        let mut stmt = conn
            .prepare("SELECT kind, task FROM notify_outbox WHERE kind NOT LIKE 'anomaly_opened' AND subject <> 'report:marker' ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let mut s = settings();
    s.scan_s = 1;
    s.report_every_days = 1;
    let mut w = worker(&app, s);
    let now = UnixMillis::now().0;
    let day = 86_400_000;
    let scanned = |w: &mut Worker, at: i64| w.step(UnixMillis(at)).unwrap().scanned;
    // The scheduled report: one event per department, once a day.
    let first = scanned(&mut w, now);
    assert!(first >= 2, "reports for health and culture: {:?}", kinds());
    assert_eq!(
        scanned(&mut w, now + 1000),
        0,
        "a second scan the same day adds nothing"
    );
    // 31 minutes on: the unacknowledged task is escalated, both agents are silent.
    scanned(&mut w, now + 31 * MINUTE);
    let k = kinds();
    let count = |kind: &str| k.iter().filter(|(x, _)| x == kind).count();
    assert_eq!(count("anomaly_escalated"), 1, "{k:?}");
    assert_eq!(count("agent_silent"), 2, "{k:?}");
    assert_eq!(
        scanned(&mut w, now + 32 * MINUTE),
        0,
        "nothing twice: {:?}",
        kinds()
    );
    // 18 days on: the resolved result is due within 3 days; 21 days on, overdue; the other
    // task, unresolved for more than 72 h, is overdue too (one each, however often scanned).
    scanned(&mut w, now + 18 * day);
    scanned(&mut w, now + 18 * day + 1000);
    scanned(&mut w, now + 21 * day);
    scanned(&mut w, now + 21 * day + 1000);
    let k = kinds();
    let count = |kind: &str| k.iter().filter(|(x, _)| x == kind).count();
    assert_eq!(count("publication_due_soon"), 1, "{k:?}");
    assert_eq!(count("publication_overdue"), 1, "{k:?}");
    assert_eq!(count("anomaly_overdue"), 1, "{k:?}");
    assert!(k
        .iter()
        .any(|(x, t)| x == "publication_overdue" && *t == Some(resolved)));
    // The reports went out, in Chinese, one per department and day scanned, each over the
    // day before: on day 21 the health department has one result overdue.
    let got = rx.requests();
    assert_eq!(got.len(), 3 * first, "{first} reports a day, on three days");
    let texts: Vec<String> = got
        .iter()
        .map(|r| r.json()["text"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("【health】定期报表") && t.contains("逾期未公示 1")),
        "{texts:?}"
    );
}

#[tokio::test]
async fn a_draws_commit_and_reveal_are_events_of_its_department_in_the_same_transaction() {
    use spotcheck_collector::plan::store::{commit_batch, reveal_batch, save};
    let app = App::start().await;
    let mut conn = spotcheck_collector::store::open_for_writing(
        &app.db,
        spotcheck_collector::config::Synchronous::Normal,
    )
    .unwrap();
    for p in spotcheck_demo::generate::plans(2026) {
        save(&conn, &p).unwrap();
    }
    commit_batch(&conn, "2026-health-pool", "b1", 1).unwrap();
    let record = reveal_batch(&mut conn, "2026-health-pool", "b1", 2).unwrap();
    let rows: Vec<(String, Option<String>, String)> = conn
        .prepare("SELECT kind, department, facts FROM notify_outbox ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    // The plan is joint with fire: the partner draws its own inspectors at the reveal, and
    // that draw is an event of the fire department.
    let kinds: Vec<(&str, Option<&str>)> = rows
        .iter()
        .map(|r| (r.0.as_str(), r.1.as_deref()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("draw_committed", Some("health")),
            ("draw_revealed", Some("health")),
            ("draw_revealed", Some("fire")),
        ],
        "{rows:?}"
    );
    let facts: Value = serde_json::from_str(&rows[1].2).unwrap();
    assert_eq!(facts["drawn"], record.draws.len());
    assert_eq!(facts["draw"], "2026-health-pool-b1");
    let partner: Value = serde_json::from_str(&rows[2].2).unwrap();
    assert_eq!(partner["draw"], "2026-health-pool-b1-fire");
    // A reveal that fails (already revealed) leaves no event behind.
    assert!(reveal_batch(&mut conn, "2026-health-pool", "b1", 3).is_err());
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM notify_outbox", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 3);
}
