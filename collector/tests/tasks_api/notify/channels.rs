//! Channels: message formats and signatures, refused rules, grouping, retries, restarts.

use std::net::TcpListener;

use base64::Engine;
use serde_json::{json, Value};
use spotcheck_protocol::UnixMillis;

use crate::helpers::{three_hours_ago, App, MINUTE};

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
    let task: i64 = app.sql(|c| {
        c.query_row(
            "SELECT id FROM tasks WHERE kind = 'anomaly'",
            args![],
            |r| r.get(0),
        )
        .unwrap()
    });
    let before = UnixMillis::now().0;
    let report = worker(&app, settings())
        .run(|w| w.step(UnixMillis::now()))
        .unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
    worker.run(|w| w.step(UnixMillis(t0))).unwrap();
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
            let r = worker.run(|w| w.step(UnixMillis(t0 + 31_000))).unwrap();
            assert_eq!(r.sent, 1, "{r:?}");
        }
    }
    // Until the next scan (which would escalate the unacknowledged task: another story).
    for later in [10, 20, 59] {
        worker
            .run(|w| w.step(UnixMillis(t0 + later * MINUTE)))
            .unwrap();
    }
    let count =
        |sql: &str| -> i64 { app.sql(|c| c.query_row(sql, args![], |r| r.get(0)).unwrap()) };
    let events = count("SELECT COUNT(*) FROM notify_outbox");
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
    let tasks = count("SELECT COUNT(*) FROM tasks WHERE kind = 'anomaly'");
    assert_eq!(tasks, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
        let r = worker.run(|w| w.step(UnixMillis(t0 + at))).unwrap();
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
    let batches: i64 = app.sql(|c| {
        c.query_row("SELECT COUNT(*) FROM batches", args![], |r| r.get(0))
            .unwrap()
    });
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
        assert_eq!(before.run(|w| w.route(now)).unwrap(), 1);
        assert_eq!(before.run(|w| w.flush(now)).unwrap(), 1);
        // The process dies here: persisted, not sent.
    }
    assert!(rx.requests().is_empty());
    let mut after = worker(&app, settings());
    for i in 0..3 {
        after.run(|w| w.step(UnixMillis(now.0 + i * 1000))).unwrap();
    }
    let got = rx.requests();
    assert_eq!(got.len(), 1, "{got:?}");
    let messages: i64 = app.sql(|c| {
        c.query_row("SELECT COUNT(*) FROM notify_messages", args![], |r| {
            r.get(0)
        })
        .unwrap()
    });
    assert_eq!(messages, 1, "the restart neither lost nor repeated it");
}
