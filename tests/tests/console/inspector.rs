//! An inspector: a referral task for an entity with two inspectors; one of them logs in
//! with the password the admin gave, chooses their own, sees only their own tasks, runs a
//! remote check and records a decision.

use spotcheck_e2e::browser::Browser;
use spotcheck_e2e::*;

use crate::helpers::*;
use crate::Demo;

/// Returns the referral task's id. `entity` is the referral's entity, `other_task` a task
/// the inspector is not assigned to.
pub fn checks_and_decides(d: &Demo, entity: &str, other_task: i64) -> i64 {
    let (http, admin) = (d.http.as_str(), d.admin.as_str());
    let (browser, dir, id) = (&d.browser, &d.dir, other_task);
    let (_, inspectors) = call(http, "GET", "/api/v1/registry/inspectors", None, admin);
    let health: Vec<String> = inspectors
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["department"] == "health" && i["active"] == true)
        .filter(|i| !i["conflicts"].to_string().contains(entity))
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    let (s, referral) = call(
        http,
        "POST",
        "/api/v1/tasks",
        Some(&format!(
            r#"{{"entity": "{entity}", "department": "health", "item": "ihosp-prescriptions", "detail": "a complaint about prescriptions"}}"#
        )),
        admin,
    );
    assert_eq!(s, 200, "{referral}");
    let rid = referral["id"].as_i64().unwrap();
    let (me, other) = (&health[health.len() - 1], &health[health.len() - 2]);
    let (s, b2) = call(
        http,
        "PUT",
        &format!("/api/v1/tasks/{rid}/inspectors"),
        Some(&format!(r#"{{"inspectors": ["{me}", "{other}"]}}"#)),
        admin,
    );
    assert_eq!(s, 200, "{b2}");
    // The admin gives the inspector a login; the inspector chooses their own password.
    let (s, issued) = call(
        http,
        "POST",
        &format!("/api/v1/registry/inspectors/{me}/login"),
        None,
        admin,
    );
    assert_eq!(s, 200, "{issued}");
    let name = issued["name"].as_str().unwrap().to_owned();
    let temporary = issued["password"].as_str().unwrap().to_owned();
    let mut expected: Vec<i64> = store::open_sqlite(&dir.path().join("data"))
        .query(
            "SELECT task FROM task_inspectors WHERE inspector = $1",
            args![me.as_str()],
            |r| r.get(0),
        )
        .unwrap();
    expected.sort();
    assert!(expected.contains(&rid));
    let mut i = Browser::launch(browser, &dir.path().join("profile-inspector"));
    i.navigate(&format!("http://{http}/"));
    settle(
        &mut i,
        "the login form",
        "!document.getElementById('login-form').classList.contains('hidden')",
    );
    log_in(&mut i, &name, &temporary);
    choose_own_password(&mut i, "the inspector's own password");
    i.navigate(&format!("http://{http}/#/mine"));
    settle(
        &mut i,
        "my tasks",
        &format!("document.querySelector('#tasks tr.task[data-id=\"{rid}\"]')"),
    );
    let mut shown: Vec<i64> = serde_json::from_value(
        i.eval("[...document.querySelectorAll('#tasks tr.task')].map(r => Number(r.dataset.id))"),
    )
    .unwrap();
    shown.sort();
    assert_eq!(shown, expected, "exactly the inspector's tasks");
    for t in &shown {
        let (_, task) = call(http, "GET", &format!("/api/v1/tasks/{t}"), None, admin);
        assert!(
            task["inspectors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x == me.as_str()),
            "{task}"
        );
    }
    assert!(
        !shown.contains(&id),
        "a task of someone else's is not shown"
    );
    i.eval(&format!(
        "document.querySelector('#tasks tr.task[data-id=\"{rid}\"] td:nth-child(2)').click(); true"
    ));
    settle(
        &mut i,
        "the referral's page",
        "document.querySelector('#act-check button')",
    );
    i.eval("document.querySelector('#act-check button').click(); true");
    settle(&mut i, "the remote check", "document.querySelectorAll('#checks tr.check').length === 1 && document.querySelector('#act-decide')");
    let (_, view) = call(http, "GET", &format!("/api/v1/tasks/{rid}"), None, admin);
    let outcome = view["checks"][0]["outcome"].as_str().unwrap().to_owned();
    let decision = if outcome == "cannot_verify" {
        i.eval(
            "document.getElementById('decide-kind').value = 'override';
             document.getElementById('decide-category').value = 'no_problem';
             document.getElementById('decide-text').value = 'checked on site: records in order';
             document.querySelector('#act-decide button').click(); true",
        );
        "overridden"
    } else {
        i.eval(
            "document.getElementById('decide-kind').value = 'accept';
             document.getElementById('decide-text').value = 'remote verdict stands';
             document.querySelector('#act-decide button').click(); true",
        );
        "accepted"
    };
    settle(
        &mut i,
        "the decision",
        "document.querySelector('#task[data-status=\"resolved\"]')",
    );
    let (_, view) = call(http, "GET", &format!("/api/v1/tasks/{rid}"), None, admin);
    assert_eq!(view["checks"][0]["decision"], decision, "{view}");
    assert_eq!(view["checks"][0]["decided_by"], me.as_str());
    rid
}
