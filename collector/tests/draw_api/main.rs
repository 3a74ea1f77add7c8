//! The draw routes over real HTTP: the disclosure policy (commitments at once, the public form
//! after the inspection window, full records for the bureau), no certificate numbers in
//! public, recusals recorded as replacement draws, a reveal refused when an input changed
//! after the commit, and `draw verify --commitments URL` against a running collector.

use spotcheck_protocol::UnixMillis;
use std::path::Path;

use spotcheck_collector::api::{router, AppState};
use spotcheck_collector::draw::{verify, verify_public, Commitment, DrawRecord, PublicRecord};
use spotcheck_collector::plan::store::{commit_batch, reveal_batch, save, PlanStoreError};
use spotcheck_collector::registry::import::Records;
use spotcheck_collector::store::db::{args, Conn, Sql};
use spotcheck_demo::generate;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "../common/test_store.rs"]
mod test_store;

const TOKEN: &str = "test-token";

/// Libraries and the plans of `year`, nothing committed.
fn libraries(dir: &Path, year: u16) -> Conn {
    let conn = test_store::connect(&test_store::for_dir(dir));
    let entities = generate::entities(40, 0, 7);
    let mut inspectors = generate::inspectors(12, &entities, 8);
    // Two health inspectors with a conflict (回避) with pool entities, so that the record has
    // conflicts to keep private.
    let pools: Vec<_> = entities
        .iter()
        .filter(|e| e.domain == spotcheck_protocol::Domain::Pool)
        .collect();
    let health = inspectors
        .iter_mut()
        .filter(|i| i.department.as_str() == "health");
    for (i, e) in health.zip(&pools).take(2) {
        i.conflicts.insert(e.code.clone());
    }
    write(&conn, &Records::Entities(entities)).unwrap();
    write(&conn, &Records::Inspectors(inspectors)).unwrap();
    write(&conn, &Records::Items(generate::items())).unwrap();
    for p in generate::plans(year) {
        save(&conn, &p).unwrap();
    }
    conn
}

/// Batch b1 of the health pool plan of `year` committed and revealed (off Tokio's context,
/// as the async tests call it: `test_store::off`).
fn prepare(dir: &Path, year: u16) {
    test_store::off(|| prepare_here(dir, year));
}

fn prepare_here(dir: &Path, year: u16) {
    drop(libraries(dir, year));
    let plan = format!("{year}-health-pool");
    let conn = store_conn(dir);
    commit_batch(&conn, &plan, "b1", 1).unwrap();
    reveal_batch(&conn, &plan, "b1", 2).unwrap();
}

/// Serves the API over the data directory on a free port.
async fn serve(dir: &Path) -> std::net::SocketAddr {
    test_store::off(|| {
        spotcheck_collector::users::store::bootstrap_with(
            &store_conn(dir),
            TOKEN,
            UnixMillis::now(),
        )
        .unwrap()
    });
    let state = AppState {
        stats: Default::default(),
        bindings: Default::default(),
        presence: Default::default(),
        store: test_store::for_dir(dir),
        data_dir: dir.to_owned(),
        people: Default::default(),
        credentials: Default::default(),
        rulebook: spotcheck_collector::rulebook::Rulebook::load(None).unwrap(),
        publish_within_days: 20,
        health: Default::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
    addr
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_draws_verify_hide_certificates_and_record_recusals() {
    let dir = tempfile::tempdir().unwrap();
    // A batch of 2020: its inspection window has ended, so its public record is out.
    prepare(dir.path(), 2020);
    let addr = serve(dir.path()).await;

    let (status, public) = request(addr, "GET", "/api/v1/public/draws", false, "").await;
    assert_eq!(status, 200, "{public}");
    let records: Vec<PublicRecord> = serde_json::from_str(&public).unwrap();
    // The health bureau's draw, and the fire department's draw of its own inspectors for
    // the same entities (a joint plan).
    assert_eq!(records.len(), 2);
    assert_eq!(
        records[0].parameters.draw_id.as_str(),
        "2020-health-pool-b1"
    );
    assert_eq!(
        records[1].parameters.draw_id.as_str(),
        "2020-health-pool-b1-fire"
    );
    assert!(verify_public(&records[1]).mismatches.is_empty());
    let check = verify_public(&records[0]);
    assert!(check.mismatches.is_empty(), "{check:?}");
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
    let full: Vec<DrawRecord> = serde_json::from_str(&admin).unwrap();
    assert!(verify(&full[0]).is_empty());
    assert_eq!(
        full[0].to_public(),
        records[0],
        "the public form is the full record's"
    );
    // The forms were made once and stored; the next request serves them as stored, the same
    // bytes as made from the records.
    let stored = stored_public(dir.path());
    assert_eq!(stored.len(), 2);
    assert_eq!(
        stored[0].1.as_deref(),
        Some(
            serde_json::to_string(&full[0].to_public())
                .unwrap()
                .as_str()
        ),
        "the stored form is the record's"
    );
    assert_eq!(
        public,
        format!(
            "[{},{}]",
            stored[0].1.as_deref().unwrap(),
            stored[1].1.as_deref().unwrap()
        )
    );
    let (status, again) = request(addr, "GET", "/api/v1/public/draws", false, "").await;
    assert_eq!(status, 200);
    assert_eq!(again, public, "served as stored");

    let a = &full[0].draws[0];
    let body = format!(
        r#"{{"entity":"{}","inspector":"{}"}}"#,
        a.entity, a.inspectors[0]
    );
    let (status, rep) = request(
        addr,
        "POST",
        "/api/v1/draws/2020-health-pool-b1/recusals",
        true,
        &body,
    )
    .await;
    assert_eq!(status, 200, "{rep}");
    // The recusal changed the health draw's record: its stored form is gone, the fire
    // department's is kept.
    let after = stored_public(dir.path());
    assert_eq!(after[0].1, None, "the recused draw's form is made again");
    assert_eq!(after[1], stored[1]);
    let (_, public) = request(addr, "GET", "/api/v1/public/draws", false, "").await;
    let records: Vec<PublicRecord> = serde_json::from_str(&public).unwrap();
    assert_eq!(records[0].replacements.len(), 1);
    assert!(verify_public(&records[0]).mismatches.is_empty());
    let (_, admin) = request(addr, "GET", "/api/v1/draws", true, "").await;
    let full: Vec<DrawRecord> = serde_json::from_str(&admin).unwrap();
    assert!(verify(&full[0]).is_empty());
    assert_eq!(full[0].to_public(), records[0]);
    assert_eq!(
        stored_public(dir.path())[0].1.as_deref(),
        Some(
            serde_json::to_string(&full[0].to_public())
                .unwrap()
                .as_str()
        ),
        "the form made after the recusal is stored"
    );
    let team = &full[0].teams()[0];
    assert!(!team.inspectors.contains(&a.inspectors[0]));

    // The published file (DATA/draws/ID.json) renders the stored record: the API rewrote it
    // with the recusal, so file and API agree without an export.
    let file = dir.path().join("draws").join("2020-health-pool-b1.json");
    let exported: DrawRecord =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(exported.replacements.len(), 1);
    assert_eq!(
        exported, full[0],
        "the file and the API render the same record"
    );
    // An export renders the same.
    let files = tempfile::tempdir().unwrap();
    let at = spotcheck_collector::cli::StoreArgs {
        data: dir.path().to_owned(),
        store: Some(test_store::for_dir(dir.path())),
    };
    let written =
        test_store::off(|| spotcheck_collector::cli::export_draws_from(&at, files.path())).unwrap();
    assert_eq!(written.len(), 2);
    let exported: DrawRecord = serde_json::from_str(
        &std::fs::read_to_string(files.path().join("2020-health-pool-b1.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        exported, full[0],
        "the file and the API render the same record"
    );

    // An inspector not on the team cannot recuse.
    let (status, err) = request(
        addr,
        "POST",
        "/api/v1/draws/2020-health-pool-b1/recusals",
        true,
        &body,
    )
    .await;
    assert_eq!(status, 400, "{err}");
    assert!(err.contains("not on the team"), "{err}");
}

/// Every string value in a JSON document.
fn texts(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| texts(x, out)),
        serde_json::Value::Object(m) => m.values().for_each(|x| texts(x, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_the_window_ends_the_public_sees_the_commitment_and_no_record() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path(), 2099);
    let addr = serve(dir.path()).await;

    let (status, public) = request(addr, "GET", "/api/v1/public/draws", false, "").await;
    assert_eq!(status, 200, "{public}");
    assert_eq!(public, "[]", "no record, no team before the window ends");
    let (status, body) = request(addr, "GET", "/api/v1/public/draw-commitments", false, "").await;
    assert_eq!(status, 200, "{body}");
    let commitments: Vec<Commitment> = serde_json::from_str(&body).unwrap();
    // The health draw's, and the fire department's inspector draw's (a joint plan).
    assert_eq!(commitments.len(), 2);
    assert_eq!(commitments[0].window_end.as_deref(), Some("2099-04-30"));
    assert!(commitments[0].revealed_ms.is_some());

    // The bureau sees the full record; nothing of it but the commitment's own fields is in
    // the public commitment: no candidate, class, inspector, conflict or team.
    let (_, admin) = request(addr, "GET", "/api/v1/draws", true, "").await;
    let full: Vec<DrawRecord> = serde_json::from_str(&admin).unwrap();
    let r = &full[0];
    assert!(!r.draws.is_empty() && !r.conflicts.is_empty());
    let mut strings = Vec::new();
    texts(&serde_json::from_str(&body).unwrap(), &mut strings);
    for c in &r.candidates {
        assert!(
            !strings.iter().any(|s| s == c.code.as_str()),
            "candidate {} in public",
            c.code
        );
    }
    for i in &r.inspectors {
        assert!(!strings.iter().any(|s| s == i.id.as_str() || s == &i.name));
    }
    assert!(!body.contains(&r.salt_key.to_string()) && !body.contains(&r.seed.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_window_the_public_record_holds_no_undrawn_class_no_conflict_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path(), 2020);
    let addr = serve(dir.path()).await;
    let (_, public) = request(addr, "GET", "/api/v1/public/draws", false, "").await;
    let (_, admin) = request(addr, "GET", "/api/v1/draws", true, "").await;
    let full: Vec<DrawRecord> = serde_json::from_str(&admin).unwrap();
    let r = &full[0];
    let drawn: Vec<&str> = r.draws.iter().map(|a| a.entity.as_str()).collect();
    let undrawn: Vec<_> = r
        .candidates
        .iter()
        .filter(|c| !drawn.contains(&c.code.as_str()))
        .collect();
    assert!(!undrawn.is_empty() && !r.conflicts.is_empty());
    for c in undrawn {
        assert!(
            !public.contains(c.code.as_str()),
            "undrawn {} ({}) is public",
            c.code,
            c.class
        );
    }
    let value: serde_json::Value = serde_json::from_str(&public).unwrap();
    let record = &value[0];
    for hidden in ["candidates", "conflicts", "salt_key"] {
        assert!(record.get(hidden).is_none(), "{hidden} is public");
    }
    assert!(!public.contains(&r.salt_key.to_string()));
    // Conflict pairs: none of the record's conflicts appears as a pair anywhere.
    for c in &r.conflicts {
        let pair = format!(
            r#"{{"entity":"{}","inspector":"{}"}}"#,
            c.entity, c.inspector
        );
        assert!(!public.contains(&pair));
    }
}

#[test]
fn a_conflict_added_after_the_commit_makes_the_reveal_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let conn = libraries(dir.path(), 2026);
    let db = store_conn(dir.path());
    commit_batch(&db, "2026-health-pool", "b1", 1).unwrap();
    // Whoever holds the seed could predict the draw and add a conflict to move an inspector.
    let mut inspectors = spotcheck_collector::registry::store::inspectors(&conn).unwrap();
    let entities = spotcheck_collector::registry::store::entities(&conn).unwrap();
    let pool = entities
        .iter()
        .find(|e| e.domain == spotcheck_protocol::Domain::Pool)
        .unwrap();
    let who = inspectors
        .iter_mut()
        .find(|i| {
            i.active && i.department.as_str() == "health" && !i.conflicts.contains(&pool.code)
        })
        .unwrap();
    who.conflicts.insert(pool.code.clone());
    let changed = who.clone();
    write(&conn, &Records::Inspectors(vec![changed.clone()])).unwrap();
    let e = reveal_batch(&db, "2026-health-pool", "b1", 2).unwrap_err();
    assert!(matches!(e, PlanStoreError::DrawStore(_)), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("conflicts (回避)") && msg.contains("changed since the commitment"),
        "{msg}"
    );
    // Nothing was revealed; undoing the change lets the committed draw be revealed.
    let mut undone = changed;
    undone.conflicts.remove(&pool.code);
    write(&conn, &Records::Inspectors(vec![undone])).unwrap();
    reveal_batch(&db, "2026-health-pool", "b1", 2).unwrap();
}

#[test]
fn a_risk_class_changed_after_the_commit_makes_the_reveal_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let conn = libraries(dir.path(), 2026);
    let db = store_conn(dir.path());
    commit_batch(&db, "2026-health-pool", "b1", 1).unwrap();
    let mut entities = spotcheck_collector::registry::store::entities(&conn).unwrap();
    let e = entities
        .iter_mut()
        .find(|e| e.domain == spotcheck_protocol::Domain::Pool)
        .unwrap();
    e.risk = spotcheck_collector::registry::model::RiskClass::new(if e.risk.as_str() == "A" {
        "D"
    } else {
        "A"
    })
    .unwrap();
    write(&conn, &Records::Entities(vec![e.clone()])).unwrap();
    let msg = reveal_batch(&db, "2026-health-pool", "b1", 2)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("candidate list (or a candidate's risk class)"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draw_verify_checks_records_against_the_commitments_a_running_collector_serves() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path(), 2020);
    let addr = serve(dir.path()).await;
    let url = format!("http://{addr}/api/v1/public/draw-commitments");
    let (_, public) = request(addr, "GET", "/api/v1/public/draws", false, "").await;
    let (_, admin) = request(addr, "GET", "/api/v1/draws", true, "").await;
    let full: Vec<DrawRecord> = serde_json::from_str(&admin).unwrap();
    // A full forgery: same inputs and key, another seed; consistent in itself.
    let forged = DrawRecord::make(
        spotcheck_collector::draw::Seed([7; 32]),
        full[0].salt_key,
        &full[0].input().unwrap(),
    )
    .unwrap();
    assert!(verify(&forged).is_empty());
    let files = tempfile::tempdir().unwrap();
    let cases = [
        ("public.json", public, 0),
        ("full.json", admin.clone(), 0),
        ("forged.json", serde_json::to_string(&forged).unwrap(), 1),
        (
            "forged-public.json",
            serde_json::to_string(&[forged.to_public()]).unwrap(),
            1,
        ),
    ];
    for (name, json, expected) in cases {
        let file = files.path().join(name);
        std::fs::write(&file, json).unwrap();
        let url = url.clone();
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_spotcheck-collector"))
                .args(["draw", "verify"])
                .arg(&file)
                .args(["--commitments", &url])
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(expected),
            "{name}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if expected == 1 {
            assert!(stdout.contains("commitment: record says"), "{stdout}");
        } else {
            assert!(stdout.contains("as committed"), "{stdout}");
        }
    }
    // An unreachable URL is a clear error, not a match.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_spotcheck-collector"))
        .args(["draw", "verify"])
        .arg(files.path().join("full.json"))
        .args(["--commitments", "http://127.0.0.1:9/none"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot fetch the commitments"));
}

#[test]
fn a_draw_committed_by_an_earlier_version_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let conn = libraries(dir.path(), 2026);
    // A row as schema v3 wrote it: no salt key, digests without conflicts or strata.
    conn.execute(
        "INSERT INTO draws (id, plan, commitment, parameters, digests, committed_ms, seed)
         VALUES ('old-b1', NULL, $1, '{}', '{}', 1, $1)",
        args!["00".repeat(32)],
    )
    .unwrap();
    let e = spotcheck_collector::draw::store::commitments(&conn, 10).unwrap_err();
    assert!(
        e.to_string().contains("committed by an earlier version"),
        "{e}"
    );
    assert!(e.to_string().contains("new data directory"), "{e}");
}

/// Errors axum answers by itself (a body that is not JSON, a malformed path parameter, an
/// unknown route, a wrong method) come back in the one documented error shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_from_extractors_and_routing_use_the_json_error_shape() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path(), 2020);
    let addr = serve(dir.path()).await;
    let cases = [
        (
            "POST",
            "/api/v1/draws/x/recusals",
            "{not json",
            400,
            "bad_request",
        ),
        ("GET", "/api/v1/no-such-route", "", 404, "not_found"),
        (
            "DELETE",
            "/api/v1/public/draws",
            "",
            405,
            "method_not_allowed",
        ),
        ("GET", "/api/v1/draws?limit=many", "", 400, "bad_request"),
    ];
    for (method, path, body, status, code) in cases {
        let (got, text) = request(addr, method, path, true, body).await;
        assert_eq!(got, status, "{method} {path}: {text}");
        let v: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path} answered no JSON ({e}): {text}"));
        assert_eq!(v["error"]["code"], code, "{method} {path}: {text}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{method} {path}: {text}"
        );
    }
}

fn write(
    conn: &Conn,
    records: &Records,
) -> Result<usize, spotcheck_collector::registry::store::RegistryStoreError> {
    spotcheck_collector::registry::store::write(conn, records)
}

/// A connection to the store of the test whose temp dir is `dir` (SQLite or PostgreSQL,
/// `common/test_store.rs`).
fn store_conn(dir: &Path) -> Conn {
    test_store::connect(&test_store::for_dir(dir))
}

/// The public forms stored for the draws, by id (None: none stored).
fn stored_public(dir: &Path) -> Vec<(String, Option<String>)> {
    test_store::off(|| {
        store_conn(dir)
            .query(
                "SELECT id, public_record FROM draws ORDER BY id",
                args![],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
    })
}

mod bulk_writes;
