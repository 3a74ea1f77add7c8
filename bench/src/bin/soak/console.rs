//! `soak console`: a supervisor's console open in a real headless Chromium for the whole soak,
//! as on a desk: logged in, on the queue, with the live stream connected. Every minute it
//! checks that the page is still live (the stream connected, or back within 15 s: the stream
//! ends every so often and the console reconnects; no script error) and reads how many
//! `counts` events arrived (only when tasks change) and how much the page has fetched.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use serde_json::{json, Value};
use spotcheck_e2e::browser::{chromium, Browser};

/// The page's own view of itself: the live stream's state, the counts events received, the
/// API reads so far and their bytes, and script errors caught.
const PROBE: &str = "JSON.stringify({
  online: document.getElementById('live').classList.contains('online'),
  counts: Number(document.getElementById('live').dataset.counts || 0),
  reads: performance.getEntriesByType('resource').filter(e => e.name.includes('/api/')).length,
  bytes: performance.getEntriesByType('resource').reduce((s, e) => s + (e.transferSize || 0), 0),
  errors: (window.__soakErrors || []).length,
  rows: document.querySelectorAll('#tasks tbody tr').length,
})";

fn post(http: &str, token: &str, path: &str, body: &str) -> anyhow::Result<(u16, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = agent
        .post(&format!("http://{http}{path}"))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send(body)?;
    Ok((r.status().as_u16(), r.body_mut().read_to_string()?))
}

/// Waits until `expression` is truthy in the page.
fn settle(b: &mut Browser, what: &str, expression: &str) {
    b.wait_until(what, expression, Duration::from_secs(60));
}

/// Creates a supervisor, logs in as them in `profile`, and keeps the queue open for
/// `duration`, probing every `every`; writes the report to `report`.
pub(crate) fn run(
    http: &str,
    admin_token: &str,
    profile: &Path,
    duration: Duration,
    every: Duration,
    report: &Path,
) -> anyhow::Result<Value> {
    let binary = chromium().context("Chromium is not installed (/usr/bin/chromium)")?;
    let (user, first, own) = ("soak-sup", "soak-supervisor-first", "soak-supervisor-own");
    let (s, b) = post(
        http,
        admin_token,
        "/api/v1/users",
        &format!(
            r#"{{"name": "{user}", "role": "supervisor", "department": "health", "password": "{first}"}}"#
        ),
    )?;
    ensure!(s == 200, "creating the supervisor: {s} {b}");
    let mut b = Browser::launch(&binary, profile);
    // Script errors are collected from the first document on, reloads included.
    b.call(
        "Page.addScriptToEvaluateOnNewDocument",
        json!({"source": "window.__soakErrors = []; window.addEventListener('error', e => window.__soakErrors.push(String(e.message)));"}),
    );
    b.navigate(&format!("http://{http}/"));
    settle(
        &mut b,
        "the login form",
        "!document.getElementById('login-form').classList.contains('hidden')",
    );
    b.eval(&format!(
        "document.getElementById('login-user').value = '{user}';
         document.getElementById('login-password').value = '{first}';
         document.getElementById('login-submit').click(); true"
    ));
    // The admin chose that password, so the console first asks for the supervisor's own.
    settle(
        &mut b,
        "the own-password form",
        "document.getElementById('own-password-form')",
    );
    b.eval(&format!(
        "document.getElementById('own-password-1').value = '{own}';
         document.getElementById('own-password-2').value = '{own}';
         document.getElementById('own-password-save').click(); true"
    ));
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
    let start = Instant::now();
    let mut samples = Vec::new();
    let mut offline = 0u64;
    loop {
        let mut probe: Value = serde_json::from_str(b.eval(PROBE).as_str().unwrap_or("{}"))
            .context("the console's probe")?;
        // Caught between a stream's end and the reconnect: look again for up to 15 s.
        let since = Instant::now();
        while probe["online"] != json!(true) && since.elapsed() < Duration::from_secs(15) {
            std::thread::sleep(Duration::from_millis(500));
            probe = serde_json::from_str(b.eval(PROBE).as_str().unwrap_or("{}"))
                .context("the console's probe")?;
        }
        if probe["online"] != json!(true) {
            offline += 1;
        }
        samples.push(json!({ "elapsed_s": start.elapsed().as_secs(), "page": probe }));
        if start.elapsed() >= duration {
            break;
        }
        // Pacing between probes (a sampling period, not synchronisation).
        std::thread::sleep(every.min(duration.saturating_sub(start.elapsed())));
    }
    let errors = samples
        .last()
        .and_then(|s| s["page"]["errors"].as_u64())
        .unwrap_or(0);
    let r = json!({
        "user": user,
        "probes": samples.len(),
        "probes_offline": offline,
        "script_errors": errors,
        "samples": samples,
    });
    std::fs::write(report, serde_json::to_vec_pretty(&r)?)
        .with_context(|| format!("cannot write {}", report.display()))?;
    Ok(r)
}
