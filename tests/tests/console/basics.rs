//! Without the demo: the task queue with an anomaly task opened over MQTT and, without a
//! token, the public results page; the printable report; logins, CSRF and logout.

use std::time::Duration;

use spotcheck_e2e::api::*;
use spotcheck_e2e::browser::Browser;
use spotcheck_e2e::*;

use crate::helpers::*;

#[test]
fn the_console_shows_the_task_queue_and_the_public_results() {
    let Some(browser) = chromium_or_skip() else {
        return;
    };
    if !have_mosquitto_pub() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (c, token) = collector_with_an_anomaly(dir.path());

    // The supervisor's view: the token arrives in the URL's fragment, as the demo prints it.
    let dom = dump_dom(
        &browser,
        &dir.path().join("profile-admin"),
        &format!("http://{}/#token={token}", c.http),
    );
    // (The page's own script holds the row templates, so look for rendered values.)
    let (_, tasks) = get(&c, "/api/v1/tasks?kind=anomaly", Some(&token));
    let id = tasks[0]["id"].as_i64().unwrap();
    let row = format!("<tr class=\"task\" data-id=\"{id}\">");
    assert!(dom.contains(&row), "no row for task {id} in:\n{dom}");
    assert!(
        dom.contains("<div class=\"small muted rule\"><span data-en=\"Free residual chlorine 0.3–1.0 mg/L\" data-zh=\"游离性余氯 0.3–1.0 mg/L\">游离性余氯 0.3–1.0 mg/L</span></div>"),
        "the row names the rule by its title, in Chinese by default: {dom}"
    );
    assert!(
        dom.contains(&format!("data-act=\"ack\" data-id=\"{id}\"")),
        "an open task offers acknowledging"
    );

    // Publish a result; the public page (no token) lists it with its published wording.
    let (s, b) = post(
        &c,
        &format!("/api/v1/tasks/{id}/resolve"),
        r#"{"result": "corrected", "comment": "dosing fixed"}"#,
        &token,
    );
    assert_eq!(s, 200, "{b}");
    let (s, b) = post(
        &c,
        "/api/v1/publications",
        &format!(r#"{{"tasks": [{id}]}}"#),
        &token,
    );
    assert_eq!(s, 200, "{b}");
    let dom = dump_dom(
        &browser,
        &dir.path().join("profile-public"),
        &format!("http://{}/", c.http),
    );
    assert!(
        dom.contains("data-code=\"cat:corrected\">发现问题已责令改正</td>"),
        "no published result in:\n{dom}"
    );
    assert!(
        !dom.contains(&row),
        "without a token the task queue stays empty"
    );

    // The joint-meeting office's printable report for this year: a chart and a row per
    // department, the figures those of the report API.
    let (from, to) = china_year_to_date();
    let (s, report) = get(
        &c,
        &format!("/api/v1/reports?from={from}&to={to}"),
        Some(&token),
    );
    assert_eq!(s, 200, "{report}");
    let departments = report["departments"].as_array().unwrap();
    assert!(!departments.is_empty(), "{report}");
    let dom = dump_dom(
        &browser,
        &dir.path().join("profile-report"),
        &format!("http://{}/#token={token}&go=/admin/reports", c.http),
    );
    assert!(dom.contains("id=\"report-chart\""), "no chart in:\n{dom}");
    assert!(
        dom.contains("id=\"report-print\""),
        "no print button in:\n{dom}"
    );
    let table = dom
        .split("id=\"report\"")
        .nth(1)
        .unwrap_or_else(|| panic!("no report table in:\n{dom}"));
    let table = table.split("</table>").next().unwrap();
    assert_eq!(
        table.matches("<tr>").count(),
        departments.len() + 1,
        "a header and a row per department: {table}"
    );
    let published: u64 = departments
        .iter()
        .map(|d| d["published"].as_u64().unwrap())
        .sum();
    assert!(
        published >= 1,
        "the result published above counts: {report}"
    );
}

#[test]
fn a_user_logs_in_writes_with_the_csrf_token_and_a_forged_write_fails() {
    let Some(browser) = chromium_or_skip() else {
        return;
    };
    if !have_mosquitto_pub() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (c, token) = collector_with_an_anomaly(dir.path());
    let (_, tasks) = get(&c, "/api/v1/tasks?kind=anomaly", Some(&token));
    let id = tasks[0]["id"].as_i64().unwrap();

    // Give the bootstrap admin a password (with its token), then log in through the form.
    let (_, me) = get(&c, "/api/v1/session", Some(&token));
    let admin = me["user"]["id"].as_i64().unwrap();
    let password = "console-test-password";
    let status = ureq::put(&format!("http://{}/api/v1/users/{admin}/password", c.http))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send(format!(r#"{{"password": "{password}"}}"#))
        .expect("the password is set")
        .status();
    assert_eq!(status, 200);

    let mut b = Browser::launch(&browser, &dir.path().join("profile"));
    let wait = Duration::from_secs(30);
    b.navigate(&format!("http://{}/", c.http));
    b.wait_until(
        "the login form",
        "document.getElementById('login-form') && !document.getElementById('login-form').classList.contains('hidden')",
        wait,
    );
    b.eval(&format!(
        "document.getElementById('login-user').value = 'admin';
         document.getElementById('login-password').value = '{password}';
         document.getElementById('login-submit').click(); true"
    ));
    b.wait_until(
        "the logged-in user",
        "document.getElementById('whoami').dataset.role === 'admin'",
        wait,
    );
    assert_eq!(
        b.eval("document.cookie"),
        "",
        "the session cookie is HttpOnly"
    );

    // A write through the console: acknowledge the task.
    let button = format!("document.querySelector('button[data-act=\"ack\"][data-id=\"{id}\"]')");
    b.wait_until("the acknowledge button", &button, wait);
    b.eval(&format!("{button}.click(); true"));
    wait_for("the acknowledgement", wait, || {
        let (_, t) = get(&c, &format!("/api/v1/tasks/{id}"), Some(&token));
        (t["status"] == "acknowledged").then_some(())
    });
    let (_, audit) = get(&c, "/api/v1/audit", Some(&token));
    let by_admin = format!("\\\"by\\\":\\\"user:{admin}\\\"");
    let audit = audit.as_str().unwrap().to_owned();
    assert!(
        audit
            .lines()
            .any(|l| l.contains("task_acknowledged") && l.contains(&by_admin)),
        "the acknowledgement names the logged-in user: {audit}"
    );

    // The same session's cookie without the CSRF token: refused, from the page itself and
    // from a forger's page on another origin.
    let resolve = format!("/api/v1/tasks/{id}/resolve");
    let body = r#"{"result":"corrected","comment":"forged"}"#;
    let status = b.eval(&format!(
        "fetch('{resolve}', {{method: 'POST', credentials: 'same-origin', headers: {{'Content-Type': 'application/json'}}, body: '{body}'}}).then(r => r.status)"
    ));
    assert_eq!(status, 403, "a cookie write without X-CSRF-Token");
    let forger = forger_page(format!(
        "<!doctype html><script>fetch('http://{}{resolve}', {{method: 'POST', mode: 'no-cors', credentials: 'include', headers: {{'Content-Type': 'text/plain'}}, body: '{body}'}}).finally(() => {{ document.title = 'sent'; }});</script>",
        c.http
    ));
    b.navigate(&forger);
    b.wait_until("the forged request", "document.title === 'sent'", wait);
    let (_, t) = get(&c, &format!("/api/v1/tasks/{id}"), Some(&token));
    assert_eq!(
        t["status"], "acknowledged",
        "the forged writes changed nothing"
    );

    // Log out: the session is gone from the store and the cookie no longer works.
    b.navigate(&format!("http://{}/", c.http));
    b.wait_until(
        "the logout button",
        "document.getElementById('logout') && !document.getElementById('logout').classList.contains('hidden')",
        wait,
    );
    assert_eq!(count(&c.db(), "SELECT count(*) FROM sessions"), 1);
    b.eval("document.getElementById('logout').click(); true");
    b.wait_until(
        "the login form after logout",
        "!document.getElementById('login-form').classList.contains('hidden')",
        wait,
    );
    wait_for("the session's deletion", wait, || {
        (count(&c.db(), "SELECT count(*) FROM sessions") == 0).then_some(())
    });
    assert_eq!(b.eval("fetch('/api/v1/session').then(r => r.status)"), 401);
}
