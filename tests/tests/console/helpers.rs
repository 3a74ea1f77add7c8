//! What the console's browser tests share: Chromium, the demo, API calls, waiting on the
//! page, logging in.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use spotcheck_e2e::api::*;
use spotcheck_e2e::browser::Browser;
use spotcheck_e2e::*;
use spotcheck_protocol::UnixMillis;

/// Chromium, or `None` after saying why the test is skipped (a failure when servers are
/// required).
pub fn chromium_or_skip() -> Option<PathBuf> {
    let b = spotcheck_e2e::browser::chromium();
    if b.is_none() {
        assert!(
            !servers_required(),
            "chromium is not installed but SPOTCHECK_REQUIRE_SERVERS=1"
        );
        eprintln!("skipping: chromium is not installed (apt-get install chromium)");
    }
    b
}

/// The DOM of `url` after its scripts ran (virtual time lets the fetches finish).
pub fn dump_dom(browser: &Path, profile: &Path, url: &str) -> String {
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
pub fn collector_with_an_anomaly(dir: &std::path::Path) -> (Collector, String) {
    let mut c = Collector::start(dir, None, &agent_binding(AGENT, ENTITY, "pool"));
    let token = admin_token(&c.data);
    let t0 = UnixMillis::now().0 - 3_600_000;
    c.publish(TOPIC, &chlorine(1, t0, &[0.1; 10]));
    c.wait_stat("anomaly_tasks_opened", 1, Duration::from_secs(30));
    (c, token)
}

/// The first day of this year and today, as China dates (UTC+8).
pub fn china_year_to_date() -> (String, String) {
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
pub fn forger_page(html: String) -> String {
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

/// `METHOD path` on the demo with the bearer token: (status, JSON body or the text).
pub fn call(http: &str, method: &str, path: &str, body: Option<&str>, token: &str) -> (u16, Value) {
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
pub fn labels(b: &mut Browser, root: &str) -> Vec<String> {
    let v = b.eval(&format!(
        "[...document.querySelectorAll('{root} [data-t], {root} [data-code]')].map(e => e.tagName === 'OPTION' ? e.text : e.textContent)"
    ));
    serde_json::from_value(v).unwrap()
}

/// Waits until `expression` holds; on a timeout, panics with the page's text. The waiting
/// happens in the page: a promise that re-checks the expression on every change of the
/// document (a MutationObserver) or of the route, and resolves when it holds. A navigation
/// ends the evaluation; the wait then goes on in the new page.
pub fn settle(b: &mut Browser, what: &str, expression: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break;
        }
        let observe = format!(
            "new Promise((resolve) => {{
               const check = () => {{ try {{ return !!({expression}); }} catch (e) {{ return false; }} }};
               if (check()) return resolve(true);
               const done = (v) => {{ obs.disconnect(); removeEventListener('hashchange', on); clearTimeout(t); resolve(v); }};
               const on = () => {{ if (check()) done(true); }};
               const obs = new MutationObserver(on);
               obs.observe(document, {{subtree: true, childList: true, attributes: true, characterData: true}});
               addEventListener('hashchange', on);
               const t = setTimeout(() => done(check()), {ms});
             }})",
            ms = left.as_millis()
        );
        // While a page loads an evaluation may throw (no document yet), and a navigation ends
        // it with a protocol error: both are "not yet".
        let v = b.call_raw(
            "Runtime.evaluate",
            serde_json::json!({"expression": observe, "awaitPromise": true, "returnByValue": true}),
        );
        if v["result"]["result"]["value"] == Value::Bool(true) {
            return;
        }
    }
    let text =
        b.eval("location.hash + '\\n' + document.getElementById('main').innerText.slice(0, 1500)");
    panic!("timed out waiting for {what}: {text}");
}

/// Fills and submits the console's login form.
pub fn log_in(b: &mut Browser, user: &str, password: &str) {
    b.eval(&format!(
        "document.getElementById('login-user').value = '{user}';
         document.getElementById('login-password').value = '{password}';
         document.getElementById('login-submit').click(); true"
    ));
}

/// After a login with a password the admin set: the console asks for the user's own, and
/// nothing else works until it is saved.
pub fn choose_own_password(b: &mut Browser, password: &str) {
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

pub fn has_chinese(s: &str) -> bool {
    s.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
}

/// Width of the page's content at the current viewport: more than the viewport is a
/// horizontal overflow.
pub fn page_width(b: &mut Browser) -> i64 {
    b.eval("Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)")
        .as_i64()
        .unwrap()
}

/// The demo (embedded broker, collector, simulated agents for every domain, registry, draws,
/// the showcase of checks and publication), once its showcase ran; with its HTTP address
/// and admin token.
pub fn demo(dir: &Path) -> (Proc, String, String) {
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
