//! People: roles (supervisor of one department, auditor read-only), the acting user in the
//! audit log, tokens that are revoked, expire and die with a deactivated inspector, console
//! login with its rate limit, and CSRF on cookie writes.

use serde_json::{json, Value};
use spotcheck_collector::registry::import::Records;
use spotcheck_collector::registry::store as registry_store;
use spotcheck_collector::store::db::{args, Sql};

use crate::helpers::{App, ADMIN};

/// Every audit entry, with its body parsed.
async fn audit(app: &App) -> Vec<Value> {
    let r = app.get("/api/v1/audit", Some(ADMIN)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
        .lines()
        .map(|l| {
            let mut e: Value = serde_json::from_str(l).unwrap();
            e["body"] = serde_json::from_str(e["body"].as_str().unwrap()).unwrap();
            e
        })
        .collect()
}

/// The bootstrap admin's user id, as the audit log names it.
async fn admin_actor(app: &App) -> String {
    let me = app.get("/api/v1/session", Some(ADMIN)).await;
    assert_eq!(me.status, 200, "{}", me.body);
    format!("user:{}", me.json()["user"]["id"])
}

/// Creates a user through the API with a temporary password; they choose their own and
/// issue themselves a token; (user id, token).
async fn user_with_token(app: &App, mut body: Value) -> (i64, String) {
    body["password"] = json!("temporary password");
    let u = app.admin("POST", "/api/v1/users", &body.to_string()).await;
    let id = u["id"].as_i64().unwrap();
    let name = body["name"].as_str().unwrap();
    (id, app.own_token(name, "temporary password").await)
}

/// A referral task assigned to two health inspectors, checked; (task, check).
async fn checked_task(app: &App) -> (i64, i64, String, String) {
    let r = &app.registry;
    let task = app.referral(&r.pools[2]).await;
    let (a, b) = (&r.health[4], &r.health[5]);
    assert_eq!(app.assign(task, &[a, b]).await.status, 200);
    let c = app
        .admin("POST", &format!("/api/v1/tasks/{task}/checks"), "")
        .await;
    (task, c["id"].as_i64().unwrap(), a.clone(), b.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_cannot_accept_for_an_inspector_and_an_override_is_the_admins_own() {
    let app = App::start().await;
    let (task, check, a, _) = checked_task(&app).await;
    let path = format!("/api/v1/checks/{check}/decision");
    let m = app
        .send("POST", &path, Some(ADMIN), r#"{"decision":"accept"}"#)
        .await
        .error(403, "forbidden");
    assert!(m.contains("assigned inspectors"), "{m}");

    // Inspector A of another task cannot decide on this one: it does not exist for them.
    let other = app.token_of(&app.registry.health[0]).await;
    app.send("POST", &path, Some(&other), r#"{"decision":"accept"}"#)
        .await
        .error(404, "not_found");

    let body = json!({"decision": "override", "result": "no_problem", "reason": "on-site check"});
    let d = app.admin("POST", &path, &body.to_string()).await;
    let admin = admin_actor(&app).await;
    assert_eq!(d["decided_by"], admin.as_str(), "{d}");
    assert_ne!(d["decided_by"], a.as_str());
    let entries = audit(&app).await;
    let o = entries
        .iter()
        .find(|e| e["kind"] == "override" && e["subject"] == format!("task:{task}"))
        .expect("the override is audited");
    assert_eq!(o["body"]["by"], admin.as_str(), "{o}");
    assert_eq!(o["body"]["inspector"], Value::Null, "{o}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_sees_and_acts_on_their_department_only() {
    let app = App::start().await;
    let task = app.referral(&app.registry.pools[0]).await;
    let (_, culture) = user_with_token(
        &app,
        json!({"name": "sup-culture", "role": "supervisor", "department": "culture"}),
    )
    .await;
    let (health_id, health) = user_with_token(
        &app,
        json!({"name": "sup-health", "role": "supervisor", "department": "health"}),
    )
    .await;
    let list = app.get("/api/v1/tasks", Some(&culture)).await.json();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|t| t["department"] == "culture"),
        "{list}"
    );
    assert!(!list.as_array().unwrap().iter().any(|t| t["id"] == task));
    app.get(&format!("/api/v1/tasks/{task}"), Some(&culture))
        .await
        .error(404, "not_found");
    let resolve = r#"{"result":"corrected","comment":"x"}"#;
    app.send(
        "POST",
        &format!("/api/v1/tasks/{task}/resolve"),
        Some(&culture),
        resolve,
    )
    .await
    .error(404, "not_found");
    let referral = json!({"entity": app.registry.pools[1], "department": "health",
        "item": "pool-water-quality", "detail": "x"});
    app.send(
        "POST",
        "/api/v1/tasks",
        Some(&culture),
        &referral.to_string(),
    )
    .await
    .error(403, "forbidden");

    // The health supervisor sees it and assigns it, under their own name.
    let seen = app
        .get(&format!("/api/v1/tasks/{task}"), Some(&health))
        .await;
    assert_eq!(seen.status, 200, "{}", seen.body);
    let r = &app.registry;
    let body = json!({"inspectors": [r.health[0], r.health[1]]}).to_string();
    let assigned = app
        .send(
            "PUT",
            &format!("/api/v1/tasks/{task}/inspectors"),
            Some(&health),
            &body,
        )
        .await;
    assert_eq!(assigned.status, 200, "{}", assigned.body);
    let entries = audit(&app).await;
    let a = entries
        .iter()
        .rev()
        .find(|e| e["kind"] == "assignment")
        .unwrap();
    assert_eq!(a["body"]["by"], format!("user:{health_id}"));
    // The token it used is named, and its issuance says who issued it: the supervisor
    // themselves, after replacing the temporary password the admin gave them.
    let via = a["body"]["via_token"]
        .as_i64()
        .expect("the token used is recorded");
    let issued = entries
        .iter()
        .find(|e| e["kind"] == "token_issued" && e["body"]["token"] == via)
        .expect("the token's issuance is in the log");
    assert_eq!(issued["body"]["user"], health_id);
    assert_eq!(issued["body"]["by"], format!("user:{health_id}"));
    let changes: Vec<_> = entries
        .iter()
        .filter(|e| e["kind"] == "user_changed" && e["body"]["user"] == health_id)
        .map(|e| (e["body"]["change"].clone(), e["body"]["by"].clone()))
        .collect();
    let admin = admin_actor(&app).await;
    assert_eq!(
        changes,
        [
            (json!("temporary password"), json!(admin)),
            (json!("password"), json!(format!("user:{health_id}"))),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_issues_a_token_for_someone_else_and_a_temporary_password_only_changes_itself() {
    let app = App::start().await;
    let body = json!({"name": "sup", "role": "supervisor", "department": "health",
                      "password": "chosen by the admin"});
    let u = app.admin("POST", "/api/v1/users", &body.to_string()).await;
    let id = u["id"].as_i64().unwrap();
    assert_eq!(u["must_change_password"], true, "{u}");

    // The admin cannot mint a token that acts as the supervisor.
    let m = app
        .send(
            "POST",
            "/api/v1/tokens",
            Some(ADMIN),
            &json!({"name": "as sup", "user": id}).to_string(),
        )
        .await
        .error(403, "forbidden");
    assert!(m.contains("acts as its owner"), "{m}");

    // A session with the admin's password can read who it is and choose a password, nothing else.
    let (cookie, csrf) = app.session("sup", "chosen by the admin").await;
    let headers = [("Cookie", cookie.as_str()), ("X-CSRF-Token", csrf.as_str())];
    let task = app.referral(&app.registry.pools[0]).await;
    for (method, path, body) in [
        ("GET", "/api/v1/tasks".to_owned(), ""),
        ("POST", format!("/api/v1/tasks/{task}/acknowledge"), ""),
        ("POST", "/api/v1/tokens".to_owned(), r#"{"name":"mine"}"#),
    ] {
        let (r, _) = app.send_with(method, &path, &headers, body).await;
        let m = r.error(403, "forbidden");
        assert!(m.contains("choose your own"), "{method} {path}: {m}");
    }
    let (me, _) = app.send_with("GET", "/api/v1/session", &headers, "").await;
    assert_eq!(me.status, 200, "{}", me.body);

    // Once they chose their own, the session works and they issue their own token.
    let token = app.own_token("sup", "chosen by the admin").await;
    assert_eq!(app.get("/api/v1/tasks", Some(&token)).await.status, 200);
    let me = app.get("/api/v1/session", Some(&token)).await.json();
    assert_eq!(me["user"]["must_change_password"], false, "{me}");

    // The admin resetting it makes it temporary again: the supervisor's own token still works
    // (the admin never saw it), a session with the reset password cannot act.
    let reset = json!({"password": "reset by the admin"}).to_string();
    app.admin("PUT", &format!("/api/v1/users/{id}/password"), &reset)
        .await;
    assert_eq!(app.get("/api/v1/tasks", Some(&token)).await.status, 200);
    let (cookie, _) = app.session("sup", "reset by the admin").await;
    let (r, _) = app
        .send_with("GET", "/api/v1/tasks", &[("Cookie", cookie.as_str())], "")
        .await;
    r.error(403, "forbidden");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auditor_reads_everything_and_every_write_is_refused() {
    let app = App::start().await;
    let task = app.referral(&app.registry.pools[0]).await;
    let (_, auditor) = user_with_token(&app, json!({"name": "auditor", "role": "auditor"})).await;
    for path in [
        "/api/v1/audit",
        "/api/v1/draws",
        "/api/v1/tasks",
        "/api/v1/users",
        "/api/v1/registry/inspectors",
        "/api/v1/results/pending",
    ] {
        let r = app.get(path, Some(&auditor)).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
    }
    let before = audit(&app).await.len();
    let referral = json!({"entity": app.registry.pools[1], "department": "health",
        "item": "pool-water-quality", "detail": "x"})
    .to_string();
    for (method, path, body) in [
        ("POST", "/api/v1/tasks".to_owned(), referral.as_str()),
        ("POST", format!("/api/v1/tasks/{task}/acknowledge"), ""),
        ("POST", format!("/api/v1/tasks/{task}/checks"), ""),
        ("POST", "/api/v1/publications".to_owned(), r#"{"tasks":[]}"#),
        (
            "POST",
            "/api/v1/registry/items?dry_run=true".to_owned(),
            "[]",
        ),
        ("PUT", "/api/v1/rule-packs/pool".to_owned(), ""),
        (
            "POST",
            "/api/v1/users".to_owned(),
            r#"{"name":"x","role":"admin"}"#,
        ),
    ] {
        let r = app.send(method, &path, Some(&auditor), body).await;
        let m = r.error(403, "forbidden");
        assert!(m.contains("read-only"), "{method} {path}: {m}");
    }
    assert_eq!(
        audit(&app).await.len(),
        before,
        "refused writes change nothing"
    );
    // Their own account is theirs to manage: nobody else may issue them a token.
    let own = app
        .send(
            "POST",
            "/api/v1/tokens",
            Some(&auditor),
            r#"{"name":"mine"}"#,
        )
        .await;
    assert_eq!(own.status, 200, "{}", own.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_and_expired_tokens_are_refused() {
    let app = App::start().await;
    let t = app
        .admin("POST", "/api/v1/tokens", r#"{"name":"script","days":1}"#)
        .await;
    let (token, id) = (
        t["token"].as_str().unwrap(),
        t["info"]["id"].as_i64().unwrap(),
    );
    assert_eq!(app.get("/api/v1/tasks", Some(token)).await.status, 200);
    let revoked = app
        .admin("DELETE", &format!("/api/v1/tokens/{id}"), "")
        .await;
    assert!(revoked["revoked_ms"].is_i64(), "{revoked}");
    app.get("/api/v1/tasks", Some(token))
        .await
        .error(401, "unauthorized");

    let t = app
        .admin("POST", "/api/v1/tokens", r#"{"name":"short","days":1}"#)
        .await;
    let (token, id) = (
        t["token"].as_str().unwrap(),
        t["info"]["id"].as_i64().unwrap(),
    );
    assert_eq!(app.get("/api/v1/tasks", Some(token)).await.status, 200);
    app.sql(|conn| {
        conn.execute(
            "UPDATE api_tokens SET expires_ms = 1 WHERE id = $1",
            args![id],
        )
        .unwrap()
    });
    app.get("/api/v1/tasks", Some(token))
        .await
        .error(401, "unauthorized");

    // Issuing and revoking are audited under the admin's user.
    let admin = admin_actor(&app).await;
    let entries = audit(&app).await;
    for kind in ["token_issued", "token_revoked"] {
        assert!(
            entries
                .iter()
                .any(|e| e["kind"] == kind && e["body"]["by"] == admin.as_str()),
            "no {kind} by {admin}"
        );
    }
}

fn set_active(app: &App, inspector: &str, active: bool) {
    app.sql(|db| {
        let mut all = registry_store::inspectors(db).unwrap();
        all.retain(|i| i.id.as_str() == inspector);
        all[0].active = active;
        registry_store::write(db, &Records::Inspectors(all)).unwrap();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deactivated_inspectors_token_stays_dead_after_reactivation() {
    let app = App::start().await;
    let inspector = app.registry.health[0].clone();
    let token = app.token_of(&inspector).await;
    let again = app.token_of(&inspector).await;
    assert_ne!(token, again, "every issue is a fresh token");
    assert_eq!(app.get("/api/v1/tasks", Some(&token)).await.status, 200);
    set_active(&app, &inspector, false);
    app.get("/api/v1/tasks", Some(&token))
        .await
        .error(401, "unauthorized");
    set_active(&app, &inspector, true);
    for t in [&token, &again] {
        app.get("/api/v1/tasks", Some(t))
            .await
            .error(401, "unauthorized");
    }
    let fresh = app.token_of(&inspector).await;
    assert_eq!(app.get("/api/v1/tasks", Some(&fresh)).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_changes_and_token_issuance_are_audited_with_the_acting_user() {
    let app = App::start().await;
    let admin = admin_actor(&app).await;
    let inspector = app.registry.health[0].clone();
    let issued = app
        .admin(
            "POST",
            &format!("/api/v1/registry/inspectors/{inspector}/login"),
            "",
        )
        .await;
    app.own_token(
        issued["name"].as_str().unwrap(),
        issued["password"].as_str().unwrap(),
    )
    .await;
    let items = app.admin("GET", "/api/v1/registry/items", "").await;
    let imported = app
        .send(
            "POST",
            "/api/v1/registry/items",
            Some(ADMIN),
            &items.to_string(),
        )
        .await;
    assert_eq!(imported.status, 200, "{}", imported.body);
    let entries = audit(&app).await;
    let find = |kind: &str| {
        entries
            .iter()
            .rev()
            .find(|e| e["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} entry"))
            .clone()
    };
    let p = find("user_changed");
    assert_eq!(p["body"]["change"], "password", "{p}");
    let t = find("token_issued");
    let own = format!("user:{}", issued["user"]);
    assert_eq!(
        t["body"]["by"],
        own.as_str(),
        "the inspector issued it: {t}"
    );
    assert_eq!(t["body"]["user"], issued["user"], "{t}");
    let temp = entries
        .iter()
        .find(|e| e["kind"] == "user_changed" && e["body"]["change"] == "temporary password")
        .expect("the temporary password is in the log");
    assert_eq!(temp["body"]["by"], admin.as_str(), "{temp}");
    let u = find("user_created");
    assert_eq!(u["body"]["inspector"], inspector.as_str(), "{u}");
    assert_eq!(u["body"]["by"], admin.as_str(), "{u}");
    let r = find("registry_changed");
    assert_eq!(r["body"]["by"], admin.as_str(), "{r}");
    assert_eq!(r["body"]["library"], "items", "{r}");
    // The log holds user ids, never login names.
    assert!(!entries.iter().any(|e| e.to_string().contains("inspector-")));
}

/// Logs in; (status, headers, body).
async fn login(app: &App, user: &str, password: &str) -> (crate::helpers::Response, String) {
    app.send_with(
        "POST",
        "/api/v1/session",
        &[],
        &json!({"user": user, "password": password}).to_string(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_are_rate_limited_with_429() {
    let app = App::start().await;
    app.admin(
        "POST",
        "/api/v1/users",
        r#"{"name":"alice","role":"auditor","password":"a long enough password"}"#,
    )
    .await;
    for _ in 0..5 {
        login(&app, "alice", "wrong password!")
            .await
            .0
            .error(401, "unauthorized");
    }
    let (r, head) = login(&app, "alice", "a long enough password").await;
    let m = r.error(429, "too_many_requests");
    assert!(m.contains("try again"), "{m}");
    assert!(head.to_ascii_lowercase().contains("retry-after:"), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_write_needs_the_csrf_token_and_logout_ends_the_session() {
    let app = App::start().await;
    app.admin(
        "POST",
        "/api/v1/users",
        r#"{"name":"sup","role":"supervisor","department":"health","password":"a long enough password"}"#,
    )
    .await;
    let own = app
        .choose_own_password("sup", "a long enough password")
        .await;
    let (r, head) = login(&app, "sup", &own).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let csrf = r.json()["csrf_token"].as_str().unwrap().to_owned();
    let set_cookie = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .expect("a session cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(flag), "{set_cookie}");
    }
    let cookie = set_cookie
        .split_once(':')
        .unwrap()
        .1
        .trim()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let session: i64 = app.sql(|c| {
        c.query_row("SELECT count(*) FROM sessions", args![], |r| r.get(0))
            .unwrap()
    });
    assert_eq!(session, 1);

    let task = app.referral(&app.registry.pools[0]).await;
    let path = format!("/api/v1/tasks/{task}/inspectors");
    let r = &app.registry;
    let body = json!({"inspectors": [r.health[0], r.health[1]]}).to_string();
    let (refused, _) = app
        .send_with("PUT", &path, &[("Cookie", &cookie)], &body)
        .await;
    let m = refused.error(403, "forbidden");
    assert!(m.contains("CSRF"), "{m}");
    let (wrong, _) = app
        .send_with(
            "PUT",
            &path,
            &[("Cookie", &cookie), ("X-CSRF-Token", "00")],
            &body,
        )
        .await;
    wrong.error(403, "forbidden");
    let t = app.admin("GET", &format!("/api/v1/tasks/{task}"), "").await;
    assert_eq!(t["inspectors"], json!([]), "refused writes change nothing");
    let (ok, _) = app
        .send_with(
            "PUT",
            &path,
            &[("Cookie", &cookie), ("X-CSRF-Token", &csrf)],
            &body,
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    // Reads need no CSRF token.
    let (me, _) = app
        .send_with("GET", "/api/v1/session", &[("Cookie", &cookie)], "")
        .await;
    assert_eq!(me.json()["user"]["name"], "sup");
    assert_eq!(me.json()["csrf_token"], csrf.as_str());

    let (out, _) = app
        .send_with(
            "DELETE",
            "/api/v1/session",
            &[("Cookie", &cookie), ("X-CSRF-Token", &csrf)],
            "",
        )
        .await;
    assert_eq!(out.status, 200, "{}", out.body);
    let (gone, _) = app
        .send_with("GET", "/api/v1/session", &[("Cookie", &cookie)], "")
        .await;
    gone.error(401, "unauthorized");
    let left: i64 = app.sql(|c| {
        c.query_row("SELECT count(*) FROM sessions", args![], |r| r.get(0))
            .unwrap()
    });
    assert_eq!(left, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_is_refused() {
    let app = App::start().await;
    app.admin(
        "POST",
        "/api/v1/users",
        r#"{"name":"dave","role":"auditor","password":"a long enough password"}"#,
    )
    .await;
    let (r, head) = login(&app, "dave", "a long enough password").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let (me, _) = app
        .send_with("GET", "/api/v1/session", &[("Cookie", &cookie)], "")
        .await;
    assert_eq!(me.status, 200, "{}", me.body);
    app.sql(|c| {
        c.execute("UPDATE sessions SET expires_ms = 1", args![])
            .unwrap()
    });
    let (gone, _) = app
        .send_with("GET", "/api/v1/session", &[("Cookie", &cookie)], "")
        .await;
    gone.error(401, "unauthorized");
}

/// Agent credentials through the admin API: issued once (a second issue is a conflict),
/// rotated to the next generation with a new key, listed without secrets, refused for an
/// agent without one, and every change audited under the acting admin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_credentials_are_issued_once_rotated_listed_without_secrets_and_audited() {
    let app = App::start().await;
    let first = app
        .admin("POST", "/api/v1/agents/pool-agent-9/credential", "")
        .await;
    assert_eq!(first["generation"], 1);
    let again = app
        .send(
            "POST",
            "/api/v1/agents/pool-agent-9/credential",
            Some(ADMIN),
            "",
        )
        .await;
    assert_eq!(again.status, 409, "{}", again.body);
    let second = app
        .admin("POST", "/api/v1/agents/pool-agent-9/credential/rotate", "")
        .await;
    assert_eq!(second["generation"], 2);
    assert_ne!(second["key"], first["key"]);
    let missing = app
        .send(
            "POST",
            "/api/v1/agents/nobody/credential/rotate",
            Some(ADMIN),
            "",
        )
        .await;
    assert_eq!(missing.status, 404, "{}", missing.body);
    let list = app.get("/api/v1/agent-credentials", Some(ADMIN)).await;
    assert_eq!(list.status, 200, "{}", list.body);
    let key = second["key"].as_str().unwrap();
    assert!(
        !list.body.contains(key),
        "the list shows no secret: {}",
        list.body
    );
    let kinds: Vec<String> = audit(&app)
        .await
        .iter()
        .filter(|e| e["subject"] == "agent:pool-agent-9")
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds,
        ["agent_credential_issued", "agent_credential_rotated"],
        "audited: {kinds:?}"
    );
}
