//! The web console in a real browser (headless Chromium): with the admin token it shows the
//! task queue with an anomaly task opened over MQTT; without it, the public results page still
//! shows the published result.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use spotcheck_e2e::api::*;
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
    let mut c = Collector::start(dir.path(), None, &agent_binding(AGENT, ENTITY, "pool"));
    let token = admin_token(&c.data);
    let t0 = UnixMillis::now().0 - 3_600_000;
    c.publish(TOPIC, &chlorine(1, t0, &[0.1; 10]));
    c.wait_stat("anomaly_tasks_opened", 1, Duration::from_secs(30));

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
    assert!(dom.contains("<td>pool/free_chlorine</td>"), "{dom}");
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
        dom.contains("<td>发现问题已责令改正</td>"),
        "no published result in:\n{dom}"
    );
    assert!(
        !dom.contains(&row),
        "without a token the task queue stays empty"
    );
}
