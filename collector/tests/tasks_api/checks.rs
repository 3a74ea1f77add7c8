//! Remote checks of referral tasks and assigned inspectors' decisions on their verdicts.

use serde_json::json;
use spotcheck_protocol::{AgentId, Metric};

use crate::helpers::{
    normal, pool_batches, store_batches, three_hours_ago, writer_for, App, ADMIN, MINUTE,
};

/// A task decided by an override, with what must never be published.
pub struct Overridden {
    pub task: i64,
    pub inspectors: [String; 2],
    pub reason: String,
}

fn decision(check: i64) -> String {
    format!("/api/v1/checks/{check}/decision")
}

/// A referral for a pool without data: two inspectors of its department without a conflict,
/// a `cannot_verify` verdict nobody can accept, resolved only by an override with a reason.
pub async fn offline_never_passes(app: &App) -> Overridden {
    let r = &app.registry;
    let (conflicted, entity) = &r.conflicted;
    let (a, b) = (&r.health[4], &r.health[5]);
    let task = app.referral(entity).await;

    let m = app.assign(task, &[a]).await.error(400, "bad_request");
    assert!(m.contains("at least two"), "{m}");
    let m = app.assign(task, &[a, a]).await.error(400, "bad_request");
    assert!(m.contains("at least two"), "{m}");
    let m = app
        .assign(task, &[a, &r.culture[0]])
        .await
        .error(400, "bad_request");
    assert!(m.contains("culture"), "{m}");
    let m = app
        .assign(task, &[a, conflicted])
        .await
        .error(400, "bad_request");
    assert!(m.contains("conflict of interest"), "{m}");
    let m = app
        .assign(task, &[a, "hb-999"])
        .await
        .error(400, "bad_request");
    assert!(m.contains("hb-999"), "{m}");
    let t = app.admin("GET", &format!("/api/v1/tasks/{task}"), "").await;
    assert_eq!(
        t["inspectors"],
        json!([]),
        "refused assignments change nothing"
    );

    let assigned = app.assign(task, &[b, a]).await;
    assert_eq!(assigned.status, 200, "{}", assigned.body);
    let mut both = vec![a.clone(), b.clone()];
    both.sort();
    assert_eq!(assigned.json()["inspectors"], json!(both));

    let c = app
        .admin("POST", &format!("/api/v1/tasks/{task}/checks"), "")
        .await;
    assert_eq!(c["outcome"], "cannot_verify", "{c}");
    assert_eq!(c["task"], task);
    let check = c["id"].as_i64().unwrap();
    let t = app.admin("GET", &format!("/api/v1/tasks/{task}"), "").await;
    assert_eq!(t["status"], "checked");
    assert_eq!(t["result"], json!(null));

    let accept = r#"{"decision":"accept"}"#;
    app.send("POST", &decision(check), Some(ADMIN), accept)
        .await
        .error(403, "forbidden");
    // An inspector not assigned to the task: its check does not exist for them.
    let outsider = app.token_of(&r.health[0]).await;
    app.send("POST", &decision(check), Some(&outsider), accept)
        .await
        .error(404, "not_found");

    let token = app.token_of(a).await;
    let m = app
        .send("POST", &decision(check), Some(&token), accept)
        .await
        .error(400, "bad_request");
    assert!(m.contains("cannot_verify"), "{m}");
    for reason in ["", "   "] {
        let body = json!({"decision": "override", "result": "no_problem", "reason": reason});
        app.send("POST", &decision(check), Some(&token), &body.to_string())
            .await
            .error(400, "bad_request");
    }
    let t = app.admin("GET", &format!("/api/v1/tasks/{task}"), "").await;
    assert_eq!(t["status"], "checked", "refused decisions change nothing");

    let reason = "on-site visit: DPD test 0.5 mg/L, sensor feed was down (Mr Zhou knows)";
    let body = json!({"decision": "override", "result": "no_problem", "reason": reason});
    let d = app
        .send("POST", &decision(check), Some(&token), &body.to_string())
        .await;
    assert_eq!(d.status, 200, "{}", d.body);
    let d = d.json();
    assert_eq!(d["decision"], "overridden");
    assert_eq!(d["decided_by"], a.as_str());
    assert_eq!(d["reason"], reason);

    let t = app.admin("GET", &format!("/api/v1/tasks/{task}"), "").await;
    assert_eq!(t["status"], "resolved", "{t}");
    assert_eq!(t["result"], "no_problem");

    // Decided once; the second inspector cannot decide it again.
    let token_b = app.token_of(b).await;
    app.send("POST", &decision(check), Some(&token_b), &body.to_string())
        .await
        .error(400, "bad_request");

    Overridden {
        task,
        inspectors: [a.clone(), b.clone()],
        reason: reason.to_owned(),
    }
}

/// Two hours of one-minute readings of the six pool metrics for `entity`, from `start`;
/// `dip` minutes of free chlorine at 0.1 mg/L.
fn store_two_hours(app: &App, agent: &str, entity: &str, start: i64, dip: std::ops::Range<i64>) {
    let agent = AgentId::new(agent).unwrap();
    let (mut w, entity) = writer_for(app, &agent, entity);
    let batches = pool_batches(&agent, 1, start, 120, |m, minute| {
        Some(if m == Metric::FREE_CHLORINE && dip.contains(&minute) {
            0.1
        } else {
            normal(m)
        })
    });
    assert_eq!(batches.len(), 12);
    store_batches(&mut w, &entity, &batches);
}

fn window(start: i64) -> String {
    json!({"window_start_ms": start, "window_end_ms": start + 120 * MINUTE}).to_string()
}

/// A compliant pool and one with a 30-minute free-chlorine dip, checked over the two hours of
/// their data; returns the two tasks, both resolved by accepting the verdict.
pub async fn remote_checks_with_data(app: &App) -> (i64, i64) {
    let r = &app.registry;
    let start = three_hours_ago();

    // In band throughout: compliant, and accepting it records no_problem.
    store_two_hours(app, "pool-agent-ok", &r.pools[2], start, 0..0);
    let task = app.referral(&r.pools[2]).await;
    let (a, b) = (&r.health[2], &r.health[3]);
    assert_eq!(app.assign(task, &[a, b]).await.status, 200);
    let token = app.token_of(a).await;
    // An assigned inspector may run the check.
    let c = app
        .send(
            "POST",
            &format!("/api/v1/tasks/{task}/checks"),
            Some(&token),
            &window(start),
        )
        .await;
    assert_eq!(c.status, 200, "{}", c.body);
    let c = c.json();
    assert_eq!(c["outcome"], "compliant", "{c}");
    assert_eq!(c["window_start_ms"], start);
    assert_eq!(c["window_end_ms"], start + 120 * MINUTE);
    let ev = &c["evidence"];
    assert!(ev["completeness"].as_f64().unwrap() >= 0.9, "{ev}");
    assert_eq!(ev["compliance_share"].as_f64(), Some(1.0), "{ev}");
    assert_eq!(ev["violations"], json!([]));
    assert_eq!(c["pack"].as_str().unwrap().len(), 64, "the pack's hash");
    let d = app
        .send(
            "POST",
            &decision(c["id"].as_i64().unwrap()),
            Some(&token),
            r#"{"decision":"accept"}"#,
        )
        .await;
    assert_eq!(d.status, 200, "{}", d.body);
    assert_eq!(d.json()["decision"], "accepted");
    let t = app.admin("GET", &format!("/api/v1/tasks/{task}"), "").await;
    assert_eq!(t["status"], "resolved");
    assert_eq!(t["result"], "no_problem");
    let compliant = task;

    // Free chlorine at 0.1 from minute 45 to 75: violations inside the dip.
    store_two_hours(app, "pool-agent-dip", &r.pools[3], start, 45..75);
    let task = app.referral(&r.pools[3]).await;
    assert_eq!(app.assign(task, &[a, b]).await.status, 200);
    let c = app
        .admin(
            "POST",
            &format!("/api/v1/tasks/{task}/checks"),
            &window(start),
        )
        .await;
    assert_eq!(c["outcome"], "violations", "{c}");
    let ev = &c["evidence"];
    assert!(ev["completeness"].as_f64().unwrap() >= 0.9, "{ev}");
    assert!(ev["compliance_share"].as_f64().unwrap() < 1.0, "{ev}");
    let (dip_start, dip_end) = (start + 45 * MINUTE, start + 75 * MINUTE);
    let fc: Vec<_> = ev["violations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["rule"] == "pool/free_chlorine")
        .collect();
    assert!(!fc.is_empty(), "{ev}");
    for v in fc {
        let (s, e) = (v["start"].as_i64().unwrap(), v["end"].as_i64().unwrap());
        assert!(
            dip_start <= s && s < e && e <= dip_end,
            "{v} outside the dip"
        );
    }
    let check = c["id"].as_i64().unwrap();
    let token_b = app.token_of(b).await;
    let m = app
        .send(
            "POST",
            &decision(check),
            Some(&token_b),
            r#"{"decision":"accept","result":"no_problem"}"#,
        )
        .await
        .error(400, "bad_request");
    assert!(m.contains("violations"), "{m}");
    let d = app
        .send(
            "POST",
            &decision(check),
            Some(&token_b),
            r#"{"decision":"accept"}"#,
        )
        .await;
    assert_eq!(d.status, 200, "{}", d.body);
    let t = app.admin("GET", &format!("/api/v1/tasks/{task}"), "").await;
    assert_eq!(t["status"], "resolved");
    assert_eq!(t["result"], "pending_follow_up");
    (compliant, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_without_data_cannot_pass_and_needs_an_override_with_a_reason() {
    let app = App::start().await;
    offline_never_passes(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_checks_judge_stored_readings_and_inspectors_accept_within_the_verdict() {
    let app = App::start().await;
    remote_checks_with_data(&app).await;
}
