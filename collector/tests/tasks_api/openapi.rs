//! The OpenAPI document against the router: every documented operation is routed, and every
//! route in the source is documented.

use std::collections::BTreeSet;

use serde_json::Value;
use spotcheck_collector::api::OPENAPI_JSON;

use crate::helpers::{App, ADMIN};

fn documented() -> BTreeSet<(String, String)> {
    let doc: Value = serde_json::from_str(OPENAPI_JSON).expect("the document is JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    let mut out = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            out.insert((method.to_uppercase(), path.clone()));
        }
    }
    out
}

/// `(METHOD, path)` of every `.route(...)` in the API's source files.
fn routed() -> BTreeSet<(String, String)> {
    let sources = [
        include_str!("../../src/api/mod.rs"),
        include_str!("../../src/api/draws.rs"),
        include_str!("../../src/api/people.rs"),
        include_str!("../../src/api/registry.rs"),
        include_str!("../../src/api/tasks.rs"),
        include_str!("../../src/api/agent_credentials.rs"),
        include_str!("../../src/api/notify.rs"),
        include_str!("../../src/api/reports.rs"),
        include_str!("../../src/api/assets.rs"),
        include_str!("../../src/api/console_views.rs"),
        include_str!("../../src/api/live.rs"),
        include_str!("../../src/api/public.rs"),
    ];
    let mut out = BTreeSet::new();
    for src in sources {
        for chunk in src.split(".route(").skip(1) {
            let path = chunk.split('"').nth(1).unwrap().to_owned();
            let handlers = chunk.split(')').take(3).collect::<Vec<_>>().join(")");
            for m in ["get", "post", "put", "delete"] {
                if handlers.contains(&format!("{m}(")) {
                    out.insert((m.to_uppercase(), path.clone()));
                }
            }
        }
    }
    out
}

#[test]
fn every_route_is_documented_and_nothing_else() {
    let (doc, src) = (documented(), routed());
    let undocumented: Vec<_> = src.difference(&doc).collect();
    let unrouted: Vec<_> = doc.difference(&src).collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "undocumented routes {undocumented:?}; documented but not routed {unrouted:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_reaches_a_handler() {
    let app = App::start().await;
    assert_eq!(app.get("/api/v1/openapi.json", None).await.status, 200);
    for (method, path) in documented() {
        let concrete = path
            .replace("{id}", "999999")
            .replace("{entity}", "nobody")
            .replace("{domain}", "pool")
            .replace("{plan}", "nope")
            .replace("{batch}", "b1")
            .replace("{draw}", "nope")
            .replace("{name}", "nope.js");
        let r = app.send(&method, &concrete, Some(ADMIN), "{}").await;
        // The router's own refusals have no JSON body: 404 for an unknown path, 405 for a
        // method it does not route. Handlers answer, even when refusing, with the error shape.
        assert_ne!(r.status, 405, "{method} {path} is not routed");
        assert!(
            !(r.status == 404 && r.body.trim().is_empty()),
            "{method} {path} is not routed"
        );
    }
}
