//! The web console in a real browser (headless Chromium): with the admin token it shows the
//! task queue with an anomaly task opened over MQTT; without it, the public results page still
//! shows the published result; logins and CSRF; and, on the demo, a supervisor's day (filter,
//! evidence, acknowledge, resolve, publish), a visitor's search, entity pages, an inspector's
//! check and decision, the language switch and a 400 px wide screen.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use spotcheck_e2e::api::*;
use spotcheck_e2e::browser::Browser;
use spotcheck_e2e::*;
use spotcheck_protocol::UnixMillis;

fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// The DOM of `url` after its scripts ran (virtual time lets the fetches finish).
fn dump_dom(browser: &Path, profile: &Path, url: &str) -> String {
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            &format!("--user-data-dir={}", profile.display()),
            "--virtual-time-budget=10000",
            "--dump-dom",
            url,
        ])
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A collector whose pool reported low chlorine for ten minutes: one anomaly task is open.
/// Returns it with the admin token.
fn collector_with_an_anomaly(dir: &std::path::Path) -> (Collector, String) {
    let mut c = Collector::start(dir, None, &agent_binding(AGENT, ENTITY, "pool"));
    let token = admin_token(&c.data);
    let t0 = UnixMillis::now().0 - 3_600_000;
    c.publish(TOPIC, &chlorine(1, t0, &[0.1; 10]));
    c.wait_stat("anomaly_tasks_opened", 1, Duration::from_secs(30));
    (c, token)
}

#[test]
fn the_console_shows_the_task_queue_and_the_public_results() {
    let Some(browser) = chromium() else {
        assert!(
            !servers_required(),
            "chromium is not installed but SPOTCHECK_REQUIRE_SERVERS=1"
        );
        eprintln!("skipping: chromium is not installed (apt-get install chromium)");
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
        dom.contains("<div class=\"small muted rule\">Free residual chlorine 0.3–1.0 mg/L</div>"),
        "the row names the rule by its title: {dom}"
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

/// The first day of this year and today, as China dates (UTC+8).
fn china_year_to_date() -> (String, String) {
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let days = (UnixMillis::now().0 + 8 * 3_600_000).div_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (format!("{y}-01-01"), format!("{y}-{m:02}-{d:02}"))
}

/// Serves one HTML page from another origin (another port: the same site, so a
/// SameSite=Strict cookie still goes along); returns its URL.
fn forger_page(html: String) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{html}",
                html.len()
            );
        }
    });
    format!("http://{addr}/")
}

#[test]
fn a_user_logs_in_writes_with_the_csrf_token_and_a_forged_write_fails() {
    let Some(browser) = spotcheck_e2e::browser::chromium() else {
        assert!(
            !servers_required(),
            "chromium is not installed but SPOTCHECK_REQUIRE_SERVERS=1"
        );
        eprintln!("skipping: chromium is not installed (apt-get install chromium)");
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

/// `METHOD path` on the demo with the bearer token: (status, JSON body or the text).
fn call(http: &str, method: &str, path: &str, body: Option<&str>, token: &str) -> (u16, Value) {
    let url = format!("http://{http}{path}");
    let auth = format!("Bearer {token}");
    let cfg = |r: ureq::RequestBuilder<ureq::typestate::WithBody>| {
        r.config()
            .http_status_as_error(false)
            .build()
            .header("Authorization", &auth)
            .header("Content-Type", "application/json")
    };
    let mut resp = match method {
        "GET" => ureq::get(&url)
            .config()
            .http_status_as_error(false)
            .build()
            .header("Authorization", &auth)
            .call(),
        "POST" => cfg(ureq::post(&url)).send(body.unwrap_or("{}")),
        "PUT" => cfg(ureq::put(&url)).send(body.unwrap_or("{}")),
        _ => unreachable!(),
    }
    .expect("the demo answers");
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Texts of the page's labels (`data-t`) and code labels (`data-code`) under `root`.
fn labels(b: &mut Browser, root: &str) -> Vec<String> {
    let v = b.eval(&format!(
        "[...document.querySelectorAll('{root} [data-t], {root} [data-code]')].map(e => e.tagName === 'OPTION' ? e.text : e.textContent)"
    ));
    serde_json::from_value(v).unwrap()
}

/// Waits until `expression` holds; on a timeout, panics with the page's text.
fn settle(b: &mut Browser, what: &str, expression: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        // While a page loads an evaluation may throw (no element yet): that is "not yet".
        let v = b.call(
            "Runtime.evaluate",
            serde_json::json!({"expression": format!("!!({expression})"), "returnByValue": true}),
        );
        if v["result"]["value"] == Value::Bool(true) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let text =
        b.eval("location.hash + '\\n' + document.getElementById('main').innerText.slice(0, 1500)");
    panic!("timed out waiting for {what}: {text}");
}

/// Fills and submits the console's login form.
fn log_in(b: &mut Browser, user: &str, password: &str) {
    b.eval(&format!(
        "document.getElementById('login-user').value = '{user}';
         document.getElementById('login-password').value = '{password}';
         document.getElementById('login-submit').click(); true"
    ));
}

/// After a login with a password the admin set: the console asks for the user's own, and
/// nothing else works until it is saved.
fn choose_own_password(b: &mut Browser, password: &str) {
    settle(
        b,
        "the own-password form",
        "document.getElementById('own-password-form')",
    );
    b.eval(&format!(
        "document.getElementById('own-password-1').value = \"{password}\";
         document.getElementById('own-password-2').value = \"{password}\";
         document.getElementById('own-password-save').click(); true"
    ));
    settle(
        b,
        "the console after the own password",
        "!document.getElementById('own-password-form') && document.getElementById('whoami').dataset.role",
    );
}

fn has_chinese(s: &str) -> bool {
    s.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
}

/// Width of the page's content at the current viewport: more than the viewport is a
/// horizontal overflow.
fn page_width(b: &mut Browser) -> i64 {
    b.eval("Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)")
        .as_i64()
        .unwrap()
}

/// The demo (embedded broker, collector, simulated agents for every domain, registry, draws,
/// the showcase of checks and publication), once its showcase ran; with its HTTP address
/// and admin token.
fn demo(dir: &Path) -> (Proc, String, String) {
    let (http, mqtt) = (free_port(), free_port());
    let data = dir.join("data");
    let demo = Proc::spawn(
        "demo",
        &bin("spotcheck-demo"),
        &[
            "--http",
            &format!("127.0.0.1:{http}"),
            "--mqtt",
            &format!("127.0.0.1:{mqtt}"),
            "--data",
            data.to_str().unwrap(),
            "--per-domain",
            "2",
        ],
        dir,
    );
    // The showcase acknowledges and resolves an open anomaly task of its own; wait for it so
    // that it cannot act on the tasks this test works on.
    wait_for("the demo's showcase", Duration::from_secs(150), || {
        demo.log().contains("Demo: ").then_some(())
    });
    let token = admin_token(&data);
    (demo, format!("127.0.0.1:{http}"), token)
}

#[test]
fn a_supervisor_an_inspector_and_a_visitor_do_their_work_in_the_console() {
    let Some(browser) = spotcheck_e2e::browser::chromium() else {
        assert!(
            !servers_required(),
            "chromium is not installed but SPOTCHECK_REQUIRE_SERVERS=1"
        );
        eprintln!("skipping: chromium is not installed (apt-get install chromium)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_demo, http, admin) = demo(dir.path());

    // A supervisor of the health bureau, with a password, logs in through the form.
    let password = "supervisor-test-password";
    let (s, b) = call(
        &http,
        "POST",
        "/api/v1/users",
        Some(&format!(
            r#"{{"name": "sup", "role": "supervisor", "department": "health", "password": "{password}"}}"#
        )),
        &admin,
    );
    assert_eq!(s, 200, "{b}");
    // An open critical task of the health bureau (an internet hospital's red line).
    let critical = "/api/v1/queue?status=open&severity=critical&department=health";
    let total = wait_for(
        "an open critical health task",
        Duration::from_secs(120),
        || {
            let (_, q) = call(&http, "GET", critical, None, &admin);
            let n = q["total"].as_u64().unwrap();
            (n > 0).then_some(n)
        },
    );

    let mut b = Browser::launch(&browser, &dir.path().join("profile-sup"));
    b.navigate(&format!("http://{http}/"));
    settle(
        &mut b,
        "the login form",
        "!document.getElementById('login-form').classList.contains('hidden')",
    );
    log_in(&mut b, "sup", password);
    // The admin chose that password, so the console first asks for the supervisor's own.
    choose_own_password(&mut b, "the supervisor's own password");
    settle(
        &mut b,
        "the queue",
        "document.querySelector('#queue #filters')",
    );
    settle(
        &mut b,
        "the live stream",
        "document.getElementById('live').classList.contains('online')",
    );

    // Live updates keep rows in place: a new task only lights the banner; a change to a task
    // on the page updates its row where it is, and the queue is not read again.
    let (_, ents) = call(&http, "GET", "/api/v1/entities", None, &admin);
    let hospital = ents
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["domain"] == "hospital")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let order =
        "[...document.querySelectorAll('#tasks tbody tr.task')].map(r => r.dataset.id).join(',')";
    let reads = "performance.getEntriesByType('resource').filter(e => e.name.includes('/api/v1/queue')).length";
    let before = (b.eval(order), b.eval(reads));
    let (s, r) = call(
        &http,
        "POST",
        "/api/v1/tasks",
        Some(&format!(
            r#"{{"entity": "{hospital}", "department": "health", "item": "ihosp-prescriptions", "detail": "a live-update check"}}"#
        )),
        &admin,
    );
    assert_eq!(s, 200, "{r}");
    let live = r["id"].as_i64().unwrap();
    settle(
        &mut b,
        "the banner",
        "!document.getElementById('changes').classList.contains('hidden')",
    );
    assert_eq!(
        (b.eval(order), b.eval(reads)),
        before,
        "nothing moved, nothing re-read"
    );
    b.eval("document.getElementById('changes').click(); true");
    settle(
        &mut b,
        "the new task's row",
        &format!("document.querySelector('#tasks tr.task[data-id=\"{live}\"]')"),
    );
    let before = (b.eval(order), b.eval(reads));
    let (s, r) = call(
        &http,
        "POST",
        &format!("/api/v1/tasks/{live}/checks"),
        None,
        &admin,
    );
    assert_eq!(s, 200, "{r}");
    settle(
        &mut b,
        "the row updated in place",
        &format!("document.querySelector('#tasks tr.task.changed[data-id=\"{live}\"] .status').textContent.startsWith('已核查')"),
    );
    assert_eq!(
        (b.eval(order), b.eval(reads)),
        before,
        "the row changed where it was, without a re-read"
    );

    // Filter to open critical tasks.
    b.eval(
        "document.getElementById('f-status').value = 'open';
         document.getElementById('f-severity').value = 'critical';
         document.getElementById('f-apply').click(); true",
    );
    settle(&mut b, "the filtered queue",
        "location.hash.includes('severity=critical') && document.querySelector('#queue #tasks tbody tr.task')");
    let rows = b.eval("[...document.querySelectorAll('#tasks tbody tr.task')].map(r => [Number(r.dataset.id), !!r.querySelector('.sev-critical'), r.querySelector('.status').textContent])");
    let rows = rows.as_array().unwrap();
    assert!(!rows.is_empty() && rows.len() as u64 >= total.min(50).min(1));
    for r in rows {
        assert_eq!(r[1], true, "only critical rows: {r}");
        assert!(
            r[2].as_str().unwrap().starts_with("待处理"),
            "only open rows: {r}"
        );
    }
    let counted = b.eval("Number(document.getElementById('count-open_critical').textContent)");
    assert!(
        counted.as_u64().unwrap() >= rows.len() as u64,
        "the count of open critical tasks"
    );
    let id = rows[0][0].as_i64().unwrap();
    let (_, task) = call(&http, "GET", &format!("/api/v1/tasks/{id}"), None, &admin);
    assert_eq!(task["department"], "health");

    // Open it: the rule's title and limit, the records that breached, the chart.
    b.eval(&format!(
        "document.querySelector('#tasks tr.task[data-id=\"{id}\"] td:nth-child(3)').click(); true"
    ));
    settle(
        &mut b,
        "the task page",
        &format!("document.querySelector('#task[data-id=\"{id}\"]')"),
    );
    let (_, ev) = call(
        &http,
        "GET",
        &format!("/api/v1/tasks/{id}/evidence"),
        None,
        &admin,
    );
    assert_eq!(
        b.eval("document.getElementById('rule-title').textContent"),
        ev["rule"]["title"]
    );
    assert_eq!(
        b.eval("document.getElementById('rule-limit').textContent"),
        ev["rule"]["limit"]
    );
    assert!(!ev["records"].as_array().unwrap().is_empty(), "{ev}");
    settle(
        &mut b,
        "the breaching records",
        "document.querySelectorAll('#records tr.record').length > 0",
    );
    let first_record = ev["records"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        b.eval("document.querySelector('#records tr.record td:nth-child(3)').textContent"),
        first_record.as_str()
    );
    let chart = b.eval(
        "[document.querySelectorAll('#evidence svg.chart').length,
          document.querySelectorAll('#evidence svg.chart rect.violation').length,
          document.querySelectorAll('#evidence svg.chart line.limit').length,
          document.querySelectorAll('#evidence svg.chart text.xtick').length]",
    );
    assert_eq!(chart[0], 1, "one chart: {chart}");
    assert!(
        chart[1].as_u64().unwrap() >= 1,
        "violations shaded: {chart}"
    );
    assert!(chart[2].as_u64().unwrap() >= 1, "the limit drawn: {chart}");
    assert!(chart[3].as_u64().unwrap() >= 2, "a time axis: {chart}");

    // Every label of the task page changes with the language, and back.
    let zh = labels(&mut b, "#main");
    b.eval("document.getElementById('lang').click(); true");
    settle(&mut b, "English", "document.documentElement.lang === 'en'");
    let en = labels(&mut b, "#main");
    assert_eq!(zh.len(), en.len());
    assert!(zh.len() > 30, "{zh:?}");
    for (z, e) in zh.iter().zip(&en) {
        assert_ne!(z, e, "a label that does not change with the language");
        assert!(!has_chinese(e), "Chinese left in English: {e}");
    }
    let header = b.eval("document.getElementById('nav').textContent + document.getElementById('whoami').textContent");
    assert!(!has_chinese(header.as_str().unwrap()), "{header}");
    b.eval("document.getElementById('lang').click(); true");
    settle(
        &mut b,
        "Chinese",
        "document.documentElement.lang === 'zh-CN'",
    );
    assert_eq!(labels(&mut b, "#main"), zh);

    // Acknowledge; resolve with a category from the API's list; publish after confirming.
    b.eval("document.querySelector('#act-ack button').click(); true");
    settle(
        &mut b,
        "acknowledged",
        "document.querySelector('#task[data-status=\"acknowledged\"]')",
    );
    let (_, cats) = call(
        &http,
        "GET",
        "/api/v1/public/results/categories",
        None,
        &admin,
    );
    let codes: Vec<&str> = cats
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].as_str().unwrap())
        .collect();
    let offered = b.eval("[...document.querySelectorAll('#resolve-category option')].map(o => o.value).filter(Boolean)");
    assert_eq!(offered, serde_json::json!(codes));
    // A comment without a category stays on the page with a message.
    b.eval(
        "document.getElementById('resolve-comment').value = 'operator told to stop; prescription withdrawn';
         document.querySelector('#act-resolve button').click(); true",
    );
    settle(
        &mut b,
        "the missing category",
        "document.getElementById('act-msg').textContent.length > 0",
    );
    assert_eq!(
        b.eval("document.getElementById('resolve-comment').value"),
        "operator told to stop; prescription withdrawn"
    );
    b.eval(
        "document.getElementById('resolve-category').value = 'corrected';
         document.querySelector('#act-resolve button').click(); true",
    );
    settle(
        &mut b,
        "resolved",
        "document.querySelector('#task[data-status=\"resolved\"]')",
    );
    b.eval("document.querySelector('#act-publish button').click(); true");
    settle(
        &mut b,
        "the confirmation",
        "document.getElementById('confirm').open",
    );
    let (_, t) = call(&http, "GET", &format!("/api/v1/tasks/{id}"), None, &admin);
    assert_eq!(
        t["status"], "resolved",
        "nothing is published before confirming"
    );
    b.eval("document.getElementById('confirm-ok').click(); true");
    settle(
        &mut b,
        "published",
        "document.querySelector('#task[data-status=\"published\"]')",
    );
    let (_, t) = call(&http, "GET", &format!("/api/v1/tasks/{id}"), None, &admin);
    assert_eq!(
        (t["status"].as_str(), t["result"].as_str()),
        (Some("published"), Some("corrected"))
    );

    // A visitor without a login finds it by the company's name, and by its credit code.
    let entity = t["entity"].as_str().unwrap().to_owned();
    let name = ev["entity_name"].as_str().unwrap().to_owned();
    let mut v = Browser::launch(&browser, &dir.path().join("profile-visitor"));
    for q in [name.as_str(), &entity[..10]] {
        v.navigate(&format!("http://{http}/"));
        settle(&mut v, "the public results", "document.getElementById('q')");
        v.eval(&format!(
            "document.getElementById('q').value = {}; document.querySelector('#search button').click(); true",
            serde_json::json!(q)
        ));
        settle(
            &mut v,
            "the published result",
            &format!("document.querySelector('#results tr.result[data-task=\"{id}\"]')"),
        );
        let csv = v.eval("document.getElementById('csv').href");
        assert!(csv.as_str().unwrap().contains("format=csv"), "{csv}");
    }
    let text = v.eval(&format!(
        "document.querySelector('#results tr.result[data-task=\"{id}\"]').textContent"
    ));
    assert!(
        text.as_str().unwrap().contains("发现问题已责令改正"),
        "{text}"
    );

    // Bulk acknowledgement of the open tasks on a page.
    b.navigate(&format!("http://{http}/#/queue?status=open"));
    settle(
        &mut b,
        "the open tasks",
        "location.hash === '#/queue?status=open' && document.querySelector('#queue #tasks tr.task input.pick:not(:disabled)')",
    );
    let picked: Vec<i64> = serde_json::from_value(b.eval(
        "[...document.querySelectorAll('#tasks input.pick:not(:disabled)')].map(i => Number(i.dataset.id))",
    ))
    .unwrap();
    b.eval("document.getElementById('pick-all').click(); document.getElementById('bulk-ack').click(); true");
    settle(
        &mut b,
        "the bulk acknowledgement",
        "document.getElementById('bulk-msg').textContent.length > 0",
    );
    assert_eq!(
        b.eval("document.getElementById('bulk-msg').textContent"),
        format!("已完成: {}", picked.len()).as_str()
    );
    for t in &picked {
        let (_, task) = call(&http, "GET", &format!("/api/v1/tasks/{t}"), None, &admin);
        assert_eq!(task["status"], "acknowledged", "{task}");
    }
    settle(
        &mut b,
        "the rows acknowledged in place",
        "[...document.querySelectorAll('#tasks tr.task .status')].every(s => s.textContent.startsWith('已确认'))",
    );

    // The entity pages of a game operator and an internet hospital: event feeds and tasks.
    let mut a = Browser::launch(&browser, &dir.path().join("profile-admin"));
    for domain in ["game", "hospital"] {
        let e = ents
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["domain"] == domain)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        a.navigate(&format!("http://{http}/#token={admin}&go=/entity/{e}"));
        settle(
            &mut a,
            &format!("the {domain} entity's events and tasks"),
            &format!(
                "document.querySelector('#entity[data-id=\"{e}\"]')
             && document.querySelectorAll('#event-feeds table.events tr.event').length > 0
             && document.querySelectorAll('#entity-tasks tr.task').length > 0
             && document.querySelectorAll('#feeds tbody tr').length > 0"
            ),
        );
        let kinds = a.eval(
            "[...document.querySelectorAll('#event-feeds table.events')].map(t => t.dataset.kind)",
        );
        let expected = if domain == "game" {
            serde_json::json!(["game_payment", "game_session"])
        } else {
            serde_json::json!(["consultation", "prescription"])
        };
        assert_eq!(kinds, expected, "{domain}");
    }

    // An inspector: a referral task for the hospital with two inspectors, one of them logs in
    // with a token, sees only their own tasks, runs a remote check and records a decision.
    let (_, inspectors) = call(&http, "GET", "/api/v1/registry/inspectors", None, &admin);
    let health: Vec<String> = inspectors
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["department"] == "health" && i["active"] == true)
        .filter(|i| !i["conflicts"].to_string().contains(&entity))
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    let (s, referral) = call(
        &http,
        "POST",
        "/api/v1/tasks",
        Some(&format!(
            r#"{{"entity": "{entity}", "department": "health", "item": "ihosp-prescriptions", "detail": "a complaint about prescriptions"}}"#
        )),
        &admin,
    );
    assert_eq!(s, 200, "{referral}");
    let rid = referral["id"].as_i64().unwrap();
    let (me, other) = (&health[health.len() - 1], &health[health.len() - 2]);
    let (s, b2) = call(
        &http,
        "PUT",
        &format!("/api/v1/tasks/{rid}/inspectors"),
        Some(&format!(r#"{{"inspectors": ["{me}", "{other}"]}}"#)),
        &admin,
    );
    assert_eq!(s, 200, "{b2}");
    // The admin gives the inspector a login; the inspector chooses their own password.
    let (s, issued) = call(
        &http,
        "POST",
        &format!("/api/v1/registry/inspectors/{me}/login"),
        None,
        &admin,
    );
    assert_eq!(s, 200, "{issued}");
    let name = issued["name"].as_str().unwrap().to_owned();
    let temporary = issued["password"].as_str().unwrap().to_owned();
    let mut expected: Vec<i64> = open_db(&dir.path().join("data"))
        .prepare("SELECT task FROM task_inspectors WHERE inspector = ?1")
        .unwrap()
        .query_map([&me], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    expected.sort();
    assert!(expected.contains(&rid));
    let mut i = Browser::launch(&browser, &dir.path().join("profile-inspector"));
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
        let (_, task) = call(&http, "GET", &format!("/api/v1/tasks/{t}"), None, &admin);
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
    let (_, view) = call(&http, "GET", &format!("/api/v1/tasks/{rid}"), None, &admin);
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
    let (_, view) = call(&http, "GET", &format!("/api/v1/tasks/{rid}"), None, &admin);
    assert_eq!(view["checks"][0]["decision"], decision, "{view}");
    assert_eq!(view["checks"][0]["decided_by"], me.as_str());

    // At 400 px wide nothing overflows horizontally, on every kind of page.
    a.call(
        "Emulation.setDeviceMetricsOverride",
        serde_json::json!({"width": 400, "height": 860, "deviceScaleFactor": 1, "mobile": true}),
    );
    let game = ents
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["domain"] == "game")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let pages = [
        ("/queue".to_owned(), "#queue", "#tasks tr.task"),
        (format!("/task/{id}"), "#task", "#records tr.record"),
        (format!("/task/{rid}"), "#task", "#checks tr.check"),
        (
            format!("/entity/{game}"),
            "#entity",
            "#event-feeds tr.event",
        ),
        (
            format!("/entity/{entity}"),
            "#entity",
            "#event-feeds tr.event",
        ),
        (
            "/public/results".into(),
            "#public-results",
            "#results tr.result",
        ),
        ("/public/draws".into(), "#public-draws", "tr.draw"),
        ("/admin/rule_packs".into(), "#admin", "#packs tr"),
    ];
    for (page, section, content) in &pages {
        // A fresh document each time (the query string changes), as a phone would open a link.
        a.navigate(&format!("http://{http}/?at={page}#token={admin}&go={page}"));
        let ready = format!(
            "location.hash === '#{page}' && document.querySelector('{section}') && document.querySelector('{content}')"
        );
        settle(&mut a, page, &ready);
        let w = page_width(&mut a);
        assert!(w <= 400, "{page} is {w} px wide at 400 px");
    }

    // A disclosed draw explains how to verify it, and its commitment checks out in the page.
    let (_, records) = call(&http, "GET", "/api/v1/public/draws", None, &admin);
    if let Some(r) = records.as_array().unwrap().first() {
        let draw = r["parameters"]["draw_id"].as_str().unwrap();
        v.navigate(&format!("http://{http}/#/public/draw/{draw}"));
        settle(
            &mut v,
            "the verification steps",
            "document.querySelector('#verify-steps')",
        );
        assert_eq!(
            v.eval("document.getElementById('verify-commitment').dataset.ok"),
            "1"
        );
        let steps = v.eval("document.getElementById('verify-steps').textContent");
        assert!(steps.as_str().unwrap().contains("draw verify"), "{steps}");
    }
}
