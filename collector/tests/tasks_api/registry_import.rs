//! The registry import over HTTP, as the console uses it: CSV (`Content-Type: text/csv`) or
//! a JSON array, a dry run first; a refusal lists every bad row with its line, field and
//! reason, and how many rows were read and would pass.

use crate::helpers::{App, ADMIN};

const CSV: [(&str, &str); 2] = [
    ("Authorization", "Bearer tasks-api-admin-token"),
    ("Content-Type", "text/csv"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_import_is_checked_row_by_row_and_a_dry_run_writes_nothing() {
    let app = App::start().await;
    assert_eq!(CSV[0].1, format!("Bearer {ADMIN}"));
    let items_before = app.admin("GET", "/api/v1/registry/items", "").await;

    // Two bad rows of four: each with its line (the header is line 1), field and reason.
    let bad = "id,name,department,legal_basis,kind,method
csv-a,甲事项,health,某法,general,remote
csv-b,乙事项,health,某法,sometimes,remote
,丙事项,health,某法,key,on-site
csv-d,丁事项,health,某法,key,both
";
    let (r, _) = app
        .send_with("POST", "/api/v1/registry/items?dry_run=true", &CSV, bad)
        .await;
    let message = r.error(400, "bad_request");
    assert!(message.contains("nothing was imported"), "{message}");
    let e = &r.json()["error"];
    assert_eq!(
        (e["rows"].as_u64(), e["accepted"].as_u64()),
        (Some(4), Some(2))
    );
    let problems: Vec<(u64, &str)> = e["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["line"].as_u64().unwrap(), p["field"].as_str().unwrap()))
        .collect();
    assert_eq!(problems, [(3, "kind"), (4, "id")]);
    assert!(e["problems"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("sometimes"));
    // Without the dry run: the same refusal, and nothing written.
    let (r, _) = app
        .send_with("POST", "/api/v1/registry/items", &CSV, bad)
        .await;
    r.error(400, "bad_request");
    assert_eq!(
        app.admin("GET", "/api/v1/registry/items", "").await,
        items_before
    );

    // An unclosed quote: the problems are on the line where the row starts.
    let broken = "id,name\n\"csv-a,甲事项\n";
    let (r, _) = app
        .send_with("POST", "/api/v1/registry/items?dry_run=true", &CSV, broken)
        .await;
    r.error(400, "bad_request");
    let problems = r.json()["error"]["problems"].clone();
    assert!(
        problems.as_array().unwrap().iter().all(|p| p["line"] == 2),
        "{problems}"
    );

    // Good rows: the dry run counts them and writes nothing; the import writes them.
    let good = "id,name,department,legal_basis,kind,method
csv-a,甲事项,health,某法,general,remote
csv-d,丁事项,health,某法,key,both
";
    let (r, _) = app
        .send_with("POST", "/api/v1/registry/items?dry_run=true", &CSV, good)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), serde_json::json!({"rows": 2, "dry_run": true}));
    assert_eq!(
        app.admin("GET", "/api/v1/registry/items", "").await,
        items_before
    );
    let (r, _) = app
        .send_with("POST", "/api/v1/registry/items", &CSV, good)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let items = app.admin("GET", "/api/v1/registry/items", "").await;
    assert_eq!(
        items.as_array().unwrap().len(),
        items_before.as_array().unwrap().len() + 2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_of_inspectors_checks_their_conflicts_against_the_stored_library() {
    let app = App::start().await;
    let pool = &app.registry.pools[0];
    let csv = format!(
        "id,name,certificate,department,fields,conflicts\nhb-new,新检查员,44030099001,health,pool,{pool}\n"
    );
    let (r, _) = app
        .send_with(
            "POST",
            "/api/v1/registry/inspectors?dry_run=true",
            &CSV,
            &csv,
        )
        .await;
    assert_eq!(
        r.status, 200,
        "a known entity is a valid conflict: {}",
        r.body
    );
    let unknown = csv.replace(pool.as_str(), "9144030071526726XG");
    let (r, _) = app
        .send_with(
            "POST",
            "/api/v1/registry/inspectors?dry_run=true",
            &CSV,
            &unknown,
        )
        .await;
    let m = r.error(400, "bad_request");
    assert!(m.contains("not in the entity library"), "{m}");
    assert_eq!(r.json()["error"]["problems"][0]["field"], "conflicts");
}
