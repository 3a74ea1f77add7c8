//! Events found in the store: report figures, time-driven events, draws.

use serde_json::{json, Value};
use spotcheck_collector::notify::Worker;
use spotcheck_collector::rules::ChinaDay;
use spotcheck_protocol::UnixMillis;

use crate::helpers::{three_hours_ago, App, MINUTE};

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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

    let one = |sql: &str| -> i64 { app.sql(|c| c.query_row(sql, args![], |r| r.get(0)).unwrap()) };
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
    let (opened, acked, resolved): (i64, i64, i64) = app.sql(|conn| {
        conn.query_row(
            "SELECT t.opened_ms, (SELECT MIN(ts_ms) FROM task_notes n WHERE n.task = t.id AND n.kind = 'acknowledged'), t.resolved_ms
             FROM tasks t WHERE t.id = $1",
            args![id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap()
    });
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
        app.sql(|c| {
            c.query("SELECT kind, task FROM notify_outbox WHERE kind NOT LIKE 'anomaly_opened' AND subject <> 'report:marker' ORDER BY id", args![], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
        })
    };
    let mut s = settings();
    s.scan_s = 1;
    s.report_every_days = 1;
    let mut w = worker(&app, s);
    let now = UnixMillis::now().0;
    let day = 86_400_000;
    let scanned = |w: &mut Off<Worker>, at: i64| w.run(|w| w.step(UnixMillis(at))).unwrap().scanned;
    // The scheduled report: one event per department, once a China day. A run in the last
    // half hour before midnight, China time, sees a day begin between two of the scans
    // below, and that day's reports with it: each scan expects the reports of a day it is
    // the first to see.
    let first = scanned(&mut w, now);
    assert!(first >= 2, "reports for health and culture: {:?}", kinds());
    let mut report_days = std::collections::BTreeSet::from([ChinaDay::of(UnixMillis(now)).0]);
    let mut reports_due = |at: i64| {
        if report_days.insert(ChinaDay::of(UnixMillis(at)).0) {
            first
        } else {
            0
        }
    };
    assert_eq!(
        scanned(&mut w, now + 1000),
        reports_due(now + 1000),
        "a second scan the same day adds nothing"
    );
    // 31 minutes on: the unacknowledged task is escalated, both agents are silent.
    scanned(&mut w, now + 31 * MINUTE);
    reports_due(now + 31 * MINUTE);
    let k = kinds();
    let count = |kind: &str| k.iter().filter(|(x, _)| x == kind).count();
    assert_eq!(count("anomaly_escalated"), 1, "{k:?}");
    assert_eq!(count("agent_silent"), 2, "{k:?}");
    assert_eq!(
        scanned(&mut w, now + 32 * MINUTE),
        reports_due(now + 32 * MINUTE),
        "nothing twice: {:?}",
        kinds()
    );
    // 18 days on: the resolved result is due within 3 days; 21 days on, overdue; the other
    // task, unresolved for more than 72 h, is overdue too (one each, however often scanned).
    for at in [18 * day, 18 * day + 1000, 21 * day, 21 * day + 1000] {
        scanned(&mut w, now + at);
        reports_due(now + at);
    }
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
    let days = report_days.len();
    assert_eq!(
        got.len(),
        days * first,
        "{first} reports a day, on {days} days"
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draws_commit_and_reveal_are_events_of_its_department_in_the_same_transaction() {
    use spotcheck_collector::plan::store::{commit_batch, reveal_batch, save};
    let app = App::start().await;
    let (record, rows) = app.sql(|db| {
        for p in spotcheck_demo::generate::plans(2026) {
            save(db, &p).unwrap();
        }
        commit_batch(db, "2026-health-pool", "b1", 1).unwrap();
        let record = reveal_batch(db, "2026-health-pool", "b1", 2).unwrap();
        let rows: Vec<(String, Option<String>, String)> = db
            .query(
                "SELECT kind, department, facts FROM notify_outbox ORDER BY id",
                args![],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        (record, rows)
    });
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
    let (again, n): (bool, i64) = app.sql(|db| {
        (
            reveal_batch(db, "2026-health-pool", "b1", 3).is_err(),
            db.query_row("SELECT COUNT(*) FROM notify_outbox", args![], |r| r.get(0))
                .unwrap(),
        )
    });
    assert!(again);
    assert_eq!(n, 3);
}
