//! Joint inspections (部门联合抽查) through the API: the partner department draws its own
//! inspectors, its supervisor's assignment of its own inspectors is accepted, and the joint
//! quota counts drawn tasks only.

use serde_json::Value;

use crate::helpers::*;

async fn joint_plan_drawn(app: &App) -> Vec<Value> {
    let plans: Vec<Value> = serde_json::to_value(spotcheck_demo::generate::plans(2026))
        .unwrap()
        .as_array()
        .unwrap()
        .clone();
    let pool_plan = plans
        .iter()
        .find(|p| p["id"] == "2026-health-pool")
        .unwrap()
        .clone();
    assert_eq!(pool_plan["partners"][0]["department"], "fire");
    app.admin("PUT", "/api/v1/plans", &pool_plan.to_string())
        .await;
    app.admin(
        "POST",
        "/api/v1/plans/2026-health-pool/batches/b1/commit",
        "",
    )
    .await;
    let record = app
        .admin(
            "POST",
            "/api/v1/plans/2026-health-pool/batches/b1/reveal",
            "",
        )
        .await;
    assert!(!record["draws"].as_array().unwrap().is_empty());
    let tasks = app
        .admin("GET", "/api/v1/tasks?kind=joint&limit=1000", "")
        .await;
    tasks.as_array().unwrap().clone()
}

fn department_of(inspector: &str) -> &'static str {
    match &inspector[..3] {
        "hb-" => "health",
        "cb-" => "culture",
        "fb-" => "fire",
        other => panic!("unknown inspector prefix {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joint_plans_second_department_gets_its_own_inspectors_and_may_reassign_them() {
    let app = App::start().await;
    let tasks = joint_plan_drawn(&app).await;
    let fire: Vec<&Value> = tasks.iter().filter(|t| t["department"] == "fire").collect();
    let health: Vec<&Value> = tasks
        .iter()
        .filter(|t| t["department"] == "health")
        .collect();
    assert!(!fire.is_empty() && fire.len() == health.len(), "{tasks:?}");
    for t in &tasks {
        let inspectors: Vec<&str> = t["inspectors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_str().unwrap())
            .collect();
        assert!(inspectors.len() >= 2, "{t}");
        for i in &inspectors {
            assert_eq!(
                department_of(i),
                t["department"].as_str().unwrap(),
                "task {} is staffed from its own department: {t}",
                t["id"]
            );
        }
        assert_eq!(t["joint"], "2026-health-pool");
        assert_eq!(t["departments"], serde_json::json!(["health", "fire"]));
    }
    // The fire department's task keeps its own draw (a record that verifies) and accepts a
    // new team of fire inspectors.
    let t = fire[0];
    assert_eq!(t["draw"], "2026-health-pool-b1-fire");
    let team: Vec<&str> = t["inspectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap())
        .collect();
    let r = app.assign(t["id"].as_i64().unwrap(), &team).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // … and refuses health inspectors on it.
    let health_team: Vec<&str> = health[0]["inspectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap())
        .collect();
    let r = app.assign(t["id"].as_i64().unwrap(), &health_team).await;
    let msg = r.error(400, "bad_request");
    assert!(msg.contains("belongs to health, the task to fire"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_referral_does_not_change_the_joint_quota() {
    let app = App::start().await;
    joint_plan_drawn(&app).await;
    let quota = |v: &Value, d: &str| -> (u64, u64) {
        let q = v["quotas"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["department"] == d)
            .unwrap_or_else(|| panic!("no quota of {d}: {v}"));
        (
            q["random_tasks"].as_u64().unwrap(),
            q["required"].as_u64().unwrap(),
        )
    };
    let before = app.admin("GET", "/api/v1/joint?year=2026", "").await;
    let health_before = quota(&before, "health");
    assert!(health_before.0 > 0);
    app.referral(&app.registry.pools[0]).await;
    let after = app.admin("GET", "/api/v1/joint?year=2026", "").await;
    assert_eq!(quota(&after, "health"), health_before);
    assert_eq!(quota(&after, "fire"), quota(&before, "fire"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_referral_names_an_entity_and_item_of_the_registry() {
    let app = App::start().await;
    let refused = |entity: &str, department: &str, item: &str| {
        serde_json::json!({
            "entity": entity, "department": department, "item": item, "detail": "complaint",
        })
        .to_string()
    };
    let pool = app.registry.pools[0].clone();
    for (body, says) in [
        (
            refused("91440300MA5FXXXX0X", "health", "pool-water-quality"),
            "not a unified social credit code",
        ),
        (
            refused("91440300MA5ABCDE1H", "health", "pool-water-quality"),
            "not in the entity library",
        ),
        (
            refused(&pool, "health", "no-such-item"),
            "is not in the item list",
        ),
        (
            refused(&pool, "culture", "pool-water-quality"),
            "belongs to department health, not culture",
        ),
    ] {
        let r = app.send("POST", "/api/v1/tasks", Some(ADMIN), &body).await;
        let msg = r.error(400, "bad_request");
        assert!(msg.contains(says), "{body}: {msg}");
    }
    let t = app.referral(&pool).await;
    let v = app.admin("GET", &format!("/api/v1/tasks/{t}"), "").await;
    assert_eq!(v["entered_by"], "user:1", "{v}");
    assert_eq!(v["detail"], "complaint: cloudy water");
}
