//! Who may see and do what: the admin everything, an inspector only their own tasks (others'
//! do not exist for them).

use serde_json::Value;
use spotcheck_collector::store::db::{args, Sql};

use crate::helpers::{App, ADMIN};

fn ids(list: &Value) -> Vec<i64> {
    list.as_array()
        .expect("a list of tasks")
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect()
}

/// The roles flow; leaves two referral tasks assigned to `health[0..4]`.
pub async fn roles(app: &App) {
    let r = &app.registry;
    app.get("/api/v1/tasks", None)
        .await
        .error(401, "unauthorized");

    let (h0, h1, h2, h3) = (&r.health[0], &r.health[1], &r.health[2], &r.health[3]);
    let t1 = app.referral(&r.pools[0]).await;
    let t2 = app.referral(&r.pools[1]).await;
    assert_eq!(app.assign(t1, &[h0, h1]).await.status, 200);
    assert_eq!(app.assign(t2, &[h2, h3]).await.status, 200);

    let all = app.get("/api/v1/tasks", Some(ADMIN)).await;
    assert_eq!(all.status, 200, "{}", all.body);
    let all = ids(&all.json());
    assert!(all.contains(&t1) && all.contains(&t2), "{all:?}");

    let token0 = app.token_of(h0).await;
    let token2 = app.token_of(h2).await;
    let mine = app.get("/api/v1/tasks", Some(&token0)).await;
    assert_eq!(mine.status, 200, "{}", mine.body);
    let mine = mine.json();
    assert!(ids(&mine).contains(&t1), "{mine}");
    assert!(!ids(&mine).contains(&t2), "{mine}");
    for t in mine.as_array().unwrap() {
        let assigned = t["inspectors"].as_array().unwrap();
        assert!(assigned.iter().any(|i| i == h0.as_str()), "{t}");
    }

    let own = app.get(&format!("/api/v1/tasks/{t1}"), Some(&token0)).await;
    assert_eq!(own.status, 200, "{}", own.body);
    assert_eq!(own.json()["id"], t1);
    // Another inspector's task does not exist for them: the same answer as a missing task.
    let hidden = app
        .get(&format!("/api/v1/tasks/{t1}"), Some(&token2))
        .await
        .error(404, "not_found");
    assert_eq!(hidden, format!("task {t1} does not exist"));
    let missing = app
        .get("/api/v1/tasks/999999", Some(&token2))
        .await
        .error(404, "not_found");
    assert_eq!(missing, "task 999999 does not exist");
    // Nor may they run its check.
    app.send(
        "POST",
        &format!("/api/v1/tasks/{t1}/checks"),
        Some(&token2),
        "",
    )
    .await
    .error(404, "not_found");

    // A token with one hex digit changed is nobody's.
    let mut forged = token0.clone().into_bytes();
    let last = forged.last_mut().unwrap();
    *last = if *last == b'0' { b'1' } else { b'0' };
    let forged = String::from_utf8(forged).unwrap();
    assert_ne!(forged, token0);
    app.get("/api/v1/tasks", Some(&forged))
        .await
        .error(401, "unauthorized");

    // Admin endpoints refuse an inspector's (valid) token.
    let referral = serde_json::json!({
        "entity": r.pools[0], "department": "health", "item": "pool-water-quality",
        "detail": "self-made",
    })
    .to_string();
    for (method, path, body) in [
        ("POST", "/api/v1/tasks".to_owned(), referral.as_str()),
        ("GET", "/api/v1/rule-packs".to_owned(), ""),
        ("GET", "/api/v1/audit".to_owned(), ""),
        ("GET", "/api/v1/results/pending".to_owned(), ""),
        ("POST", format!("/api/v1/tasks/{t1}/acknowledge"), ""),
        (
            "PUT",
            format!("/api/v1/tasks/{t1}/inspectors"),
            r#"{"inspectors":["x","y"]}"#,
        ),
        (
            "POST",
            format!("/api/v1/registry/inspectors/{h1}/login"),
            "",
        ),
        ("POST", "/api/v1/publications".to_owned(), r#"{"tasks":[]}"#),
    ] {
        let resp = app.send(method, &path, Some(&token0), body).await;
        assert_eq!(resp.status, 403, "{method} {path}: {}", resp.body);
        resp.error(403, "forbidden");
    }
    // The refused referral was not created.
    let after = ids(&app.admin("GET", "/api/v1/tasks", "").await);
    assert_eq!(after.len(), all.len());

    // No login for an inspector who is not in the library.
    app.send(
        "POST",
        "/api/v1/registry/inspectors/hb-999/login",
        Some(ADMIN),
        "",
    )
    .await
    .error(404, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspectors_see_only_their_tasks_and_cannot_use_admin_endpoints() {
    let app = App::start().await;
    roles(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deactivated_inspectors_token_stops_working() {
    let app = App::start().await;
    let inspector = app.registry.health[0].clone();
    let token = app.token_of(&inspector).await;
    assert_eq!(app.get("/api/v1/tasks", Some(&token)).await.status, 200);
    app.sql(|conn| {
        conn.execute(
            "UPDATE registry_inspectors SET active = 0 WHERE id = $1",
            args![inspector],
        )
        .unwrap()
    });
    let m = app
        .get("/api/v1/tasks", Some(&token))
        .await
        .error(403, "forbidden");
    assert!(m.contains("not active"), "{m}");
}
