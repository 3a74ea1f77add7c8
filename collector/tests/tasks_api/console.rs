//! The console's routes: the queue page scoped to the caller with its filters and counts, a
//! task's evidence (hidden like the task), the live stream naming a new task, the public
//! search, and the console's files with their ETags.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{App, ADMIN};

fn ids(page: &Value) -> Vec<i64> {
    page["tasks"]
        .as_array()
        .expect("a page of tasks")
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_page_is_scoped_filtered_counted_and_paged() {
    let app = App::start().await;
    let r = &app.registry;
    let t1 = app.referral(&r.pools[0]).await;
    let t2 = app.referral(&r.pools[1]).await;
    assert_eq!(
        app.assign(t1, &[&r.health[0], &r.health[1]]).await.status,
        200
    );
    assert_eq!(
        app.assign(t2, &[&r.health[2], &r.health[3]]).await.status,
        200
    );

    let all = app.get("/api/v1/queue?kind=referral", Some(ADMIN)).await;
    assert_eq!(all.status, 200, "{}", all.body);
    let all = all.json();
    assert_eq!(ids(&all), vec![t2, t1], "newest first");
    assert_eq!(all["total"], 2);
    assert!(all["counts"]["open_critical"].is_u64());
    assert!(all["tasks"][0]["entity_name"].is_string(), "{all}");
    assert_eq!(
        all["tasks"][0]["item_name"].as_str().map(str::is_empty),
        Some(false)
    );

    // Paging: one per page, the total stays.
    let p2 = app
        .get(
            "/api/v1/queue?kind=referral&sort=oldest&limit=1&offset=1",
            Some(ADMIN),
        )
        .await
        .json();
    assert_eq!((ids(&p2), p2["total"].as_u64()), (vec![t2], Some(2)));

    // An inspector's queue holds their tasks only, whatever the filters ask.
    let token0 = app.token_of(&r.health[0]).await;
    let mine = app
        .get("/api/v1/queue?department=health", Some(&token0))
        .await
        .json();
    assert_eq!((ids(&mine), mine["total"].as_u64()), (vec![t1], Some(1)));
    // Nor is the other's evidence there: it answers as a missing task.
    app.get(&format!("/api/v1/tasks/{t2}/evidence"), Some(&token0))
        .await
        .error(404, "not_found");
    let own = app
        .get(&format!("/api/v1/tasks/{t1}/evidence"), Some(&token0))
        .await;
    assert_eq!(own.status, 200, "{}", own.body);
    assert_eq!(own.json()["rule"], Value::Null, "a referral has no rule");

    // Filters that do not parse are refused with the spelling expected.
    let bad = app.get("/api/v1/queue?sort=sideways", Some(ADMIN)).await;
    assert!(bad.error(400, "bad_request").contains("newest"));
    app.get("/api/v1/queue?severity=dire", Some(ADMIN))
        .await
        .error(400, "bad_request");
    app.get("/api/v1/queue?since=yesterday", Some(ADMIN))
        .await
        .error(400, "bad_request");
    app.get("/api/v1/queue", None)
        .await
        .error(401, "unauthorized");
}

/// Reads from `s` until `needle` has arrived; everything read.
async fn read_until(s: &mut tokio::net::TcpStream, got: &mut String, needle: &str) {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(20), async {
        while !got.contains(needle) {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "the stream ended before {needle:?}: {got}");
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {needle:?} within 20 s: {got}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_stream_names_a_new_task_and_a_plain_get_answers_the_counts() {
    let app = App::start().await;
    let counts = app.get("/api/v1/live", Some(ADMIN)).await;
    assert_eq!(counts.status, 200, "{}", counts.body);
    assert!(counts.json()["open"].is_u64());

    let mut s = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    s.write_all(
        format!(
            "GET /api/v1/live HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {ADMIN}\r\nAccept: text/event-stream\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut got = String::new();
    read_until(&mut s, &mut got, "event: ready").await;
    assert!(got.contains("text/event-stream"), "{got}");
    // The counts follow at once, so a console that (re)connects is current.
    read_until(&mut s, &mut got, "\"open\":").await;
    let first = got
        .split("event: counts\ndata: ")
        .nth(1)
        .expect("counts after ready");
    assert!(first.contains("\"open\":"), "{got}");
    got.clear();
    let t = app.referral(&app.registry.pools[0]).await;
    read_until(&mut s, &mut got, "event: counts").await;
    assert!(got.contains("event: tasks"), "{got}");
    assert!(got.contains(&format!("\"id\":{t},")), "the new task: {got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_search_and_the_console_files() {
    let app = App::start().await;
    let found = app
        .get("/api/v1/public/results/search?q=nobody", None)
        .await;
    assert_eq!(found.status, 200, "{}", found.body);
    assert_eq!(found.json()["total"], 0);
    app.get("/api/v1/public/results/search?format=xml", None)
        .await
        .error(400, "bad_request");

    let (page, head) = app.send_with("GET", "/", &[], "").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("/assets/app.js"));
    assert!(head
        .to_ascii_lowercase()
        .contains("content-type: text/html"));
    let (js, head) = app.send_with("GET", "/assets/app.js", &[], "").await;
    assert_eq!(js.status, 200);
    let etag = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("etag:")
                .then(|| l[5..].trim().to_owned())
        })
        .expect("an ETag");
    let (again, _) = app
        .send_with("GET", "/assets/app.js", &[("If-None-Match", &etag)], "")
        .await;
    assert_eq!((again.status, again.body.as_str()), (304, ""));
    assert_eq!(app.get("/assets/nope.js", None).await.status, 404);
}
