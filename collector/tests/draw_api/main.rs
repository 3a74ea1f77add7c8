//! The draw routes over real HTTP: public and admin listings in the form `draw verify` reads,
//! no certificate numbers in public, recusals recorded as replacement draws.

use std::path::Path;
use std::sync::Arc;

use spotcheck_collector::api::{router, AppState};
use spotcheck_collector::config::Synchronous;
use spotcheck_collector::draw::{verify, DrawRecord};
use spotcheck_collector::plan::store::{commit_batch, reveal_batch, save};
use spotcheck_collector::registry::generate;
use spotcheck_collector::registry::import::Records;
use spotcheck_collector::registry::store::write;
use spotcheck_collector::store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "test-token";

fn prepare(dir: &Path) {
    let mut conn = store::open_for_writing(&store::db_path(dir), Synchronous::Normal).unwrap();
    let entities = generate::entities(40, 0, 7);
    let inspectors = generate::inspectors(12, &entities, 8);
    write(&mut conn, &Records::Entities(entities)).unwrap();
    write(&mut conn, &Records::Inspectors(inspectors)).unwrap();
    write(&mut conn, &Records::Items(generate::items())).unwrap();
    for p in generate::plans(2026) {
        save(&conn, &p).unwrap();
    }
    commit_batch(&conn, "2026-health-pool", "b1", 1).unwrap();
    reveal_batch(&mut conn, "2026-health-pool", "b1", 2).unwrap();
}

/// One HTTP/1.1 request; returns (status, body).
async fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    auth: bool,
    body: &str,
) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = if auth {
        format!("Authorization: Bearer {TOKEN}\r\n")
    } else {
        String::new()
    };
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn public_draws_verify_hide_certificates_and_record_recusals() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    let state = AppState {
        credentials: Default::default(),
        stats: Default::default(),
        bindings: Default::default(),
        presence: Default::default(),
        db: store::db_path(dir.path()),
        admin_token: Arc::from(TOKEN),
        rulebook: spotcheck_collector::rulebook::Rulebook::load(None).unwrap(),
        publish_within_days: 20,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });

    let (status, public) = request(addr, "GET", "/api/v1/public/draws", false, "").await;
    assert_eq!(status, 200, "{public}");
    let records: Vec<DrawRecord> = serde_json::from_str(&public).unwrap();
    assert_eq!(records.len(), 1);
    assert!(verify(&records[0]).is_empty());
    assert!(
        !public.contains("certificate") && !public.contains("440310"),
        "no certificate numbers"
    );

    assert_eq!(
        request(addr, "GET", "/api/v1/draws", false, "").await.0,
        401
    );
    let (status, admin) = request(addr, "GET", "/api/v1/draws", true, "").await;
    assert_eq!(status, 200);
    assert_eq!(
        admin, public,
        "admin and public lists use the same verifiable form"
    );

    let a = &records[0].draws[0];
    let body = format!(
        r#"{{"entity":"{}","inspector":"{}"}}"#,
        a.entity, a.inspectors[0]
    );
    let (status, rep) = request(
        addr,
        "POST",
        "/api/v1/draws/2026-health-pool-b1/recusals",
        true,
        &body,
    )
    .await;
    assert_eq!(status, 200, "{rep}");
    let (_, public) = request(addr, "GET", "/api/v1/public/draws", false, "").await;
    let records: Vec<DrawRecord> = serde_json::from_str(&public).unwrap();
    assert_eq!(records[0].replacements.len(), 1);
    assert!(verify(&records[0]).is_empty());
    let team = &records[0].teams()[0];
    assert!(!team.inspectors.contains(&a.inspectors[0]));

    // An inspector not on the team cannot recuse.
    let (status, err) = request(
        addr,
        "POST",
        "/api/v1/draws/2026-health-pool-b1/recusals",
        true,
        &body,
    )
    .await;
    assert_eq!(status, 400, "{err}");
    assert!(err.contains("not on the team"), "{err}");
}
