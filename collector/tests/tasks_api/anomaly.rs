//! An anomaly task opened the way ingest opens one, through acknowledgement and resolution to
//! the public feed, which never carries comments, override reasons or inspectors.

use serde_json::{json, Value};
use spotcheck_collector::rulebook::Rulebook;
use spotcheck_collector::store::Writer;
use spotcheck_collector::tasks::anomaly::Tracker;
use spotcheck_protocol::{AgentId, Batch, Checked, EntityId, Metric, UnixMillis};

use crate::checks::{offline_never_passes, Overridden};
use crate::helpers::{items, pool_batches, three_hours_ago, writer_for, App, ADMIN, MINUTE};
use crate::test_store::Off;

/// Commits batches as ingest does: the tracker sees each new batch inside its transaction.
fn commit(
    w: &mut Off<Writer>,
    tracker: &mut Tracker,
    entity: &EntityId,
    batches: &[Checked<Batch>],
) {
    let now = UnixMillis::now();
    let items = items(entity, batches);
    w.run(|w| w.commit_observed(&items, now, tracker).unwrap());
}

fn load_tracker(w: &mut Off<Writer>, book: &Rulebook) -> Tracker {
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

/// Free chlorine only, `value(minute)` from `start`.
fn chlorine(
    agent: &AgentId,
    seq: u64,
    start: i64,
    minutes: i64,
    value: impl Fn(i64) -> f64,
) -> Vec<Checked<Batch>> {
    pool_batches(agent, seq, start, minutes, |m, minute| {
        (m == Metric::FREE_CHLORINE).then(|| value(minute))
    })
}

async fn open_anomalies(app: &App) -> Vec<Value> {
    let v = app
        .admin("GET", "/api/v1/tasks?kind=anomaly&status=open", "")
        .await;
    v.as_array().unwrap().clone()
}

/// Low free chlorine opens one task, which neither more breaching data nor a restart
/// duplicates, and which data back in band marks cleared. Returns the task id.
pub async fn anomaly_opens_once_and_clears(app: &App) -> i64 {
    let code = &app.registry.pools[4];
    let agent = AgentId::new("pool-agent-anomaly").unwrap();
    let book = Rulebook::load(None).unwrap();
    let start = three_hours_ago();
    let (mut w, entity) = writer_for(app, &agent, code);
    let mut tracker = load_tracker(&mut w, &book);

    commit(
        &mut w,
        &mut tracker,
        &entity,
        &chlorine(&agent, 1, start, 10, |_| 0.1),
    );
    let open = open_anomalies(app).await;
    assert_eq!(open.len(), 1, "{open:?}");
    let t = &open[0];
    assert_eq!(t["rule"], "pool/free_chlorine");
    assert_eq!(t["entity"], code.as_str());
    assert_eq!(t["department"], "health");
    assert_eq!(t["item"], "pool-water-quality");
    assert_eq!(t["severity"], "high");
    let id = t["id"].as_i64().unwrap();

    // More of the same breach: no second task.
    let later = start + 10 * MINUTE;
    commit(
        &mut w,
        &mut tracker,
        &entity,
        &chlorine(&agent, 2, later, 5, |_| 0.1),
    );
    let open = open_anomalies(app).await;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["id"], id);

    // A restart: a fresh writer and tracker from what the database holds.
    drop(tracker);
    drop(w);
    let (mut w, entity) = writer_for(app, &agent, code);
    let mut tracker = load_tracker(&mut w, &book);
    let later = start + 15 * MINUTE;
    commit(
        &mut w,
        &mut tracker,
        &entity,
        &chlorine(&agent, 3, later, 5, |_| 0.1),
    );
    let open = open_anomalies(app).await;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["id"], id);
    let view = app.admin("GET", &format!("/api/v1/tasks/{id}"), "").await;
    assert!(
        !view["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["kind"] == "returned"),
        "the restored engine knows the breach is still the same one: {view}"
    );
    assert_eq!(view["cleared_ms"], json!(null));

    // Back in band, slowly enough not to trip the rate rule, for ten minutes.
    let back = start + 20 * MINUTE;
    let ramp = |minute| match minute {
        0 => 0.3,
        1 => 0.5,
        _ => 0.6,
    };
    commit(
        &mut w,
        &mut tracker,
        &entity,
        &chlorine(&agent, 4, back, 10, ramp),
    );
    let view = app.admin("GET", &format!("/api/v1/tasks/{id}"), "").await;
    let cleared = view["cleared_ms"].as_i64().expect("cleared_ms is set");
    assert!(
        (back..back + 10 * MINUTE).contains(&cleared),
        "cleared at {cleared}, data back in band from {back}"
    );
    let notes = view["notes"].as_array().unwrap();
    assert!(notes.iter().any(|n| n["kind"] == "cleared"), "{view}");
    assert_eq!(view["status"], "open", "clearing does not resolve it");
    let all = app.admin("GET", "/api/v1/tasks?kind=anomaly", "").await;
    assert_eq!(
        all.as_array().unwrap().len(),
        1,
        "no other rule fired: {all}"
    );
    id
}

/// Acknowledge, resolve, see it pending, publish it with `other`, and read the public feed.
pub async fn anomaly_is_resolved_and_published(app: &App, id: i64, other: &Overridden) {
    let ack = format!("/api/v1/tasks/{id}/acknowledge");
    let t = app.admin("POST", &ack, "").await;
    assert_eq!(t["status"], "acknowledged");
    app.send("POST", &ack, Some(ADMIN), "")
        .await
        .error(409, "conflict");

    let resolve = format!("/api/v1/tasks/{id}/resolve");
    app.send(
        "POST",
        &resolve,
        Some(ADMIN),
        r#"{"result":"corrected","comment":"  "}"#,
    )
    .await
    .error(400, "bad_request");
    let comment = "operator Wang Fang replaced the dosing pump hose";
    let body = json!({"result": "corrected", "comment": comment}).to_string();
    let t = app.admin("POST", &resolve, &body).await;
    assert_eq!(t["status"], "resolved");
    assert_eq!(t["result"], "corrected");
    assert_eq!(t["comment"], comment, "staff see the comment");

    let pending = app.admin("GET", "/api/v1/results/pending", "").await;
    let row = pending
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["task"] == id)
        .unwrap_or_else(|| panic!("task {id} pending: {pending}"))
        .clone();
    assert_eq!(row["result"], "corrected");
    assert_eq!(row["kind"], "anomaly");
    assert_eq!(row["days_left"], 19, "20 days from just now: {row}");
    assert_eq!(row["overdue"], false);
    assert!(
        pending
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["task"] == other.task),
        "{pending}"
    );

    let body = json!({"tasks": [id, other.task]}).to_string();
    let published = app.admin("POST", "/api/v1/publications", &body).await;
    assert_eq!(published.as_array().unwrap().len(), 2, "{published}");
    app.send("POST", "/api/v1/publications", Some(ADMIN), &body)
        .await
        .error(409, "conflict");
    let pending = app.admin("GET", "/api/v1/results/pending", "").await;
    assert!(
        !pending
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["task"] == id || p["task"] == other.task),
        "{pending}"
    );

    let feed = app.get("/api/v1/public/results", None).await;
    assert_eq!(feed.status, 200, "{}", feed.body);
    let rows = feed.json();
    let row = |task: i64| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["task_id"] == task)
            .unwrap_or_else(|| panic!("task {task} in {rows}"))
            .clone()
    };
    assert_eq!(row(id)["result_code"], "corrected");
    assert_eq!(row(id)["kind"], "anomaly");
    assert_eq!(row(other.task)["result_code"], "no_problem");
    let csv = app.get("/api/v1/public/results?format=csv", None).await;
    assert_eq!(csv.status, 200, "{}", csv.body);
    assert!(
        csv.body.contains(&format!("\r\n{id},anomaly,")),
        "{}",
        csv.body
    );
    assert!(csv.body.contains("corrected"));
    for (what, text) in [("JSON", &feed.body), ("CSV", &csv.body)] {
        assert!(!text.contains(comment), "{what} feed has the comment");
        assert!(!text.contains("Wang Fang"), "{what} feed has the comment");
        assert!(!text.contains(&other.reason), "{what} feed has the reason");
        for i in &other.inspectors {
            assert!(!text.contains(i.as_str()), "{what} feed names {i}");
        }
    }
    app.get("/api/v1/public/results?format=xml", None)
        .await
        .error(400, "bad_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anomaly_opens_once_clears_and_is_published_without_personal_text() {
    let app = App::start().await;
    let overridden = offline_never_passes(&app).await;
    let id = anomaly_opens_once_and_clears(&app).await;
    anomaly_is_resolved_and_published(&app, id, &overridden).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_task_whose_rule_leaves_the_pack_gets_a_note() {
    let app = App::start().await;
    let code = &app.registry.pools[5];
    let agent = AgentId::new("pool-agent-removed").unwrap();
    let book = Rulebook::load(None).unwrap();
    let start = three_hours_ago();
    let (mut w, entity) = writer_for(&app, &agent, code);
    let mut tracker = load_tracker(&mut w, &book);
    commit(
        &mut w,
        &mut tracker,
        &entity,
        &chlorine(&agent, 1, start, 10, |_| 0.1),
    );
    let open = open_anomalies(&app).await;
    assert_eq!(open.len(), 1, "{open:?}");
    let id = open[0]["id"].as_i64().unwrap();

    // The pool pack without its free-chlorine range rule.
    let text = spotcheck_collector::rules::pack::DEFAULT_POOL;
    let blocks: Vec<&str> = text.split("[[rule]]").collect();
    let kept: Vec<&str> = blocks
        .iter()
        .copied()
        .filter(|b| !b.contains("id = \"free_chlorine\"\n"))
        .collect();
    assert_eq!(kept.len() + 1, blocks.len(), "exactly one rule removed");
    let pack = spotcheck_collector::rules::parse_pack(&kept.join("[[rule]]"), "test").unwrap();
    tracker.replace_rules((*book.rules()).clone().with_pack(pack));
    commit(
        &mut w,
        &mut tracker,
        &entity,
        &chlorine(&agent, 2, start + 10 * MINUTE, 2, |_| 0.1),
    );
    let view = app.admin("GET", &format!("/api/v1/tasks/{id}"), "").await;
    assert!(
        view["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["kind"] == "rule_removed"),
        "{view}"
    );
    assert_eq!(
        view["status"], "open",
        "the task stays for a supervisor to resolve"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tasks_rule_title_comes_in_chinese_and_english() {
    let app = App::start().await;
    let code = &app.registry.pools[5];
    let agent = AgentId::new("pool-agent-titles").unwrap();
    let book = Rulebook::load(None).unwrap();
    let (mut w, entity) = writer_for(&app, &agent, code);
    let mut tracker = load_tracker(&mut w, &book);
    commit(
        &mut w,
        &mut tracker,
        &entity,
        &chlorine(&agent, 1, three_hours_ago(), 10, |_| 0.1),
    );
    let open = open_anomalies(&app).await;
    assert_eq!(open.len(), 1, "{open:?}");
    let id = open[0]["id"].as_i64().unwrap();
    let (en, zh) = (
        "Free residual chlorine 0.3–1.0 mg/L",
        "游离性余氯 0.3–1.0 mg/L",
    );

    // The task itself, its queue row, its evidence's rule, and the pack's own title.
    let view = app.admin("GET", &format!("/api/v1/tasks/{id}"), "").await;
    assert_eq!(view["rule"], "pool/free_chlorine");
    assert_eq!(view["rule_title"], en, "{view}");
    assert_eq!(view["rule_title_zh"], zh, "{view}");
    let page = app.admin("GET", "/api/v1/queue?kind=anomaly", "").await;
    let row = &page["tasks"][0];
    assert_eq!(row["id"], id);
    assert_eq!(
        (&row["rule_title"], &row["rule_title_zh"]),
        (&json!(en), &json!(zh))
    );
    let ev = app
        .admin("GET", &format!("/api/v1/tasks/{id}/evidence"), "")
        .await;
    assert_eq!(
        (&ev["rule"]["title"], &ev["rule"]["title_zh"]),
        (&json!(en), &json!(zh))
    );
    let packs = app.admin("GET", "/api/v1/rule-packs", "").await;
    let pool = packs
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "pool")
        .unwrap();
    assert_eq!(pool["title_zh"], "公共游泳池水质（在线监测）", "{pool}");
    assert_eq!(
        pool["title"],
        "Public swimming pool water quality (online sensors)"
    );

    // A pack without Chinese titles still loads; the Chinese title is then the English one.
    let text = spotcheck_collector::rules::pack::DEFAULT_POOL;
    let plain: String = text
        .lines()
        .filter(|l| !l.starts_with("title_zh = "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(plain.len() < text.len());
    app.admin("PUT", "/api/v1/rule-packs/pool", &plain).await;
    let view = app.admin("GET", &format!("/api/v1/tasks/{id}"), "").await;
    assert_eq!(
        (&view["rule_title"], &view["rule_title_zh"]),
        (&json!(en), &json!(en))
    );
    let ev = app
        .admin("GET", &format!("/api/v1/tasks/{id}/evidence"), "")
        .await;
    assert_eq!(ev["rule"]["title_zh"], en);
    let packs = app.admin("GET", "/api/v1/rule-packs", "").await;
    let pool = packs
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "pool")
        .unwrap();
    assert_eq!(pool["title_zh"], pool["title"], "{pool}");
}
