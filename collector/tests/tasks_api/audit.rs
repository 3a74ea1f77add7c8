//! The audit log after every flow: it verifies, holds an entry of each kind the flows
//! caused, names no one, and its public head is its last entry.

use std::collections::BTreeSet;

use spotcheck_collector::audit::{verify_store, AuditEntry};
use spotcheck_collector::store::db::{args, Sql};

use crate::anomaly::{anomaly_is_resolved_and_published, anomaly_opens_once_and_clears};
use crate::checks::{offline_never_passes, remote_checks_with_data};
use crate::helpers::App;
use crate::roles::roles;
use crate::rule_packs::rule_packs_are_replaced_only_by_valid_ones;

/// Every flow on one app; returns the exported entries.
async fn after_every_flow() -> (App, Vec<AuditEntry>, Vec<String>, String) {
    let app = App::start().await;
    roles(&app).await;
    let overridden = offline_never_passes(&app).await;
    remote_checks_with_data(&app).await;
    let anomaly = anomaly_opens_once_and_clears(&app).await;
    anomaly_is_resolved_and_published(&app, anomaly, &overridden).await;
    let pool_hash = rule_packs_are_replaced_only_by_valid_ones(&app).await;

    let export = app.get("/api/v1/audit", Some(crate::helpers::ADMIN)).await;
    assert_eq!(export.status, 200, "{}", export.body);
    let entries: Vec<AuditEntry> = export
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let secrets = vec![
        overridden.reason.clone(),
        "Wang Fang".to_owned(),
        "Mr Zhou".to_owned(),
    ];
    assert!(
        secrets.iter().all(|s| !export.body.contains(s.as_str())),
        "the audit log holds no free text"
    );
    (app, entries, secrets, pool_hash)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_verifies_and_records_every_step_of_every_flow() {
    let (app, entries, _, pool_hash) = after_every_flow().await;
    assert!(!entries.is_empty());
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.seq, i as i64 + 1, "seqs run 1, 2, 3, …");
    }
    let last = entries.last().unwrap();

    let head = app.get("/api/v1/public/audit-head", None).await;
    assert_eq!(head.status, 200, "{}", head.body);
    let head = head.json();
    assert_eq!(head["hash"], last.hash.as_str());
    assert_eq!(head["seq"], last.seq);

    let report = app.sql(|conn| verify_store(conn, Some(&last.hash)).unwrap());
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.entries, entries.len());
    assert_eq!(report.head_hash(), last.hash);

    let kinds: BTreeSet<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
    for k in [
        "assignment",
        "verdict",
        "override",
        "result_recorded",
        "publication",
        "task_opened",
        "task_acknowledged",
        "rule_pack_activated",
    ] {
        assert!(kinds.contains(k), "no {k} entry in {kinds:?}");
    }
    assert!(
        entries
            .iter()
            .any(|e| e.kind.as_str() == "rule_pack_activated" && e.body.contains(&pool_hash)),
        "the pack activated through the API is logged under its hash"
    );
}

/// docs/audit.md: the subject is `type:id`, e.g. `task:42`, so one task's history is one
/// subject.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_audit_entry_about_a_task_has_the_documented_subject() {
    let (_, entries, _, _) = after_every_flow().await;
    let mut wrong = Vec::new();
    for e in &entries {
        let body: serde_json::Value = serde_json::from_str(&e.body).unwrap();
        if let Some(task) = body.get("task").and_then(|t| t.as_i64()) {
            if e.subject != format!("task:{task}") {
                wrong.push(format!("seq {} {}: {}", e.seq, e.kind, e.subject));
            }
        }
    }
    assert!(wrong.is_empty(), "subjects not `task:ID`: {wrong:#?}");
}

/// `GET /api/v1/audit/verify`: what `audit verify` says, for the console; an edited entry
/// is named as the first that cannot be trusted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_chain_is_verified_through_the_api() {
    let app = App::start().await;
    app.referral(&app.registry.pools[0]).await;
    let v = app
        .get("/api/v1/audit/verify", Some(crate::helpers::ADMIN))
        .await;
    assert_eq!(v.status, 200, "{}", v.body);
    let v = v.json();
    let head = app.get("/api/v1/public/audit-head", None).await.json();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["head_seq"], head["seq"]);
    assert_eq!(v["head_hash"], head["hash"]);
    assert_eq!(v["entries"], head["seq"]);
    assert!(v["first_broken_seq"].is_null() && v["problems"] == serde_json::json!([]));

    let hash = head["hash"].as_str().unwrap();
    let v = app
        .get(
            &format!("/api/v1/audit/verify?head={hash}"),
            Some(crate::helpers::ADMIN),
        )
        .await
        .json();
    assert_eq!(v["published_head_seq"], head["seq"], "{v}");
    let r = app
        .get("/api/v1/audit/verify?head=xyz", Some(crate::helpers::ADMIN))
        .await;
    assert!(r.error(400, "bad_request").contains("64 hex"));
    let r = app.get("/api/v1/audit/verify", None).await;
    r.error(401, "unauthorized");

    app.sql(|conn| {
        conn.execute(
            "UPDATE audit_log SET ts_ms = ts_ms + 1 WHERE seq = 2",
            args![],
        )
        .unwrap()
    });
    let v = app
        .get("/api/v1/audit/verify", Some(crate::helpers::ADMIN))
        .await
        .json();
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["first_broken_seq"], 2, "{v}");
    assert_eq!(v["problems"][0]["problem"], "hash_mismatch", "{v}");
    assert_eq!(v["problems"][0]["at_seq"], 2, "{v}");
    assert!(v["problems"][0]["message"]
        .as_str()
        .unwrap()
        .starts_with("seq 2: hash"));
}

/// Who may verify: the admin and the auditor get the same report, which is the one
/// `audit verify` makes from the store (a deleted entry named where the chain breaks);
/// a supervisor and an inspector are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auditor_verifies_the_chain_and_other_roles_are_refused() {
    let app = App::start().await;
    app.referral(&app.registry.pools[0]).await;
    app.referral(&app.registry.pools[1]).await;
    let mut tokens = Vec::new();
    for (name, body) in [
        ("aud", serde_json::json!({"role": "auditor"})),
        (
            "sup",
            serde_json::json!({"role": "supervisor", "department": "health"}),
        ),
    ] {
        let mut body = body;
        body["name"] = name.into();
        body["password"] = "temporary password".into();
        app.admin("POST", "/api/v1/users", &body.to_string()).await;
        tokens.push(app.own_token(name, "temporary password").await);
    }
    let (auditor, supervisor) = (&tokens[0], &tokens[1]);
    let inspector = app.token_of(&app.registry.health[0]).await;

    for token in [supervisor, &inspector] {
        app.get("/api/v1/audit/verify", Some(token))
            .await
            .error(403, "forbidden");
    }

    app.sql(|conn| {
        conn.execute("DELETE FROM audit_log WHERE seq = 3", args![])
            .unwrap()
    });
    let by_admin = app
        .get("/api/v1/audit/verify", Some(crate::helpers::ADMIN))
        .await
        .json();
    let by_auditor = app.get("/api/v1/audit/verify", Some(auditor)).await;
    assert_eq!(by_auditor.status, 200, "{}", by_auditor.body);
    let by_auditor = by_auditor.json();
    let report = app.sql(|conn| verify_store(conn, None).unwrap());
    for v in [&by_admin, &by_auditor] {
        assert_eq!(v["ok"], false, "{v}");
        assert_eq!(v["entries"], report.entries, "{v}");
        assert_eq!(v["head_hash"], report.head_hash(), "{v}");
        assert_eq!(
            v["first_broken_seq"],
            report.first_broken_seq().unwrap(),
            "{v}"
        );
        let messages: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            v["problems"].as_array().unwrap().len(),
            messages.len(),
            "{v}"
        );
        for (p, m) in v["problems"].as_array().unwrap().iter().zip(&messages) {
            assert_eq!(p["message"], m.as_str(), "{v}");
        }
    }
    assert!(
        by_admin["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["problem"] == "missing" && p["at_seq"] == 3),
        "{by_admin}"
    );
}
