//! The web console in a real browser (headless Chromium). Without the demo (`basics`): the
//! task queue with an anomaly task opened over MQTT, the public results without a token, the
//! report, logins and CSRF; the registry import's dry run and import, and the audit chain's
//! verification (`admin`). On the demo: a supervisor's day (`supervisor`), a visitor's search
//! and draw verification (`visitor`), entity pages (`entity`), an inspector's check and
//! decision (`inspector`), joint inspections (`admin`) and a 400 px wide screen (`layout`).

mod admin;
mod basics;
mod entity;
mod helpers;
mod inspector;
mod layout;
mod supervisor;
mod visitor;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use spotcheck_e2e::browser::Browser;
use spotcheck_e2e::*;

use helpers::*;

/// The running demo and what the steps share.
pub struct Demo {
    _demo: Proc,
    /// Its HTTP address.
    pub http: String,
    /// The bootstrap admin's token.
    pub admin: String,
    /// The test's directory (profiles, the demo's data).
    pub dir: tempfile::TempDir,
    /// Chromium.
    pub browser: PathBuf,
    /// `GET /api/v1/entities`.
    pub ents: Value,
}

impl Demo {
    /// The first reporting entity of `domain`.
    pub fn entity_of(&self, domain: &str) -> String {
        self.ents
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["domain"] == domain)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// A fresh browser with its own profile.
    pub fn browser(&self, profile: &str) -> Browser {
        Browser::launch(&self.browser, &self.dir.path().join(profile))
    }
}

#[test]
fn a_supervisor_an_inspector_and_a_visitor_do_their_work_in_the_console() {
    if store::sqlite_only("the demo keeps its store in SQLite, the same on both legs") {
        return;
    }
    let Some(browser) = chromium_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (demo, http, admin) = helpers::demo(dir.path());
    let (_, ents) = call(&http, "GET", "/api/v1/entities", None, &admin);
    let d = Demo {
        _demo: demo,
        http,
        admin,
        dir,
        browser,
        ents,
    };
    let (http, admin) = (d.http.as_str(), d.admin.as_str());

    // A supervisor of the health bureau, with a password, logs in through the form.
    let password = "supervisor-test-password";
    let (s, b) = call(
        http,
        "POST",
        "/api/v1/users",
        Some(&format!(
            r#"{{"name": "sup", "role": "supervisor", "department": "health", "password": "{password}"}}"#
        )),
        admin,
    );
    assert_eq!(s, 200, "{b}");
    // An open critical task of the health bureau (an internet hospital's red line).
    let critical = "/api/v1/queue?status=open&severity=critical&department=health";
    let total = wait_for(
        "an open critical health task",
        Duration::from_secs(120),
        || {
            let (_, q) = call(http, "GET", critical, None, admin);
            let n = q["total"].as_u64().unwrap();
            (n > 0).then_some(n)
        },
    );

    let mut b = d.browser("profile-sup");
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

    supervisor::live_updates_keep_rows_in_place(&mut b, &d);
    let (id, ev) = supervisor::handles_a_critical_task(&mut b, &d, total);
    let (_, t) = call(http, "GET", &format!("/api/v1/tasks/{id}"), None, admin);
    let entity = t["entity"].as_str().unwrap().to_owned();
    let name = ev["entity_name"].as_str().unwrap().to_owned();
    let mut v = d.browser("profile-visitor");
    visitor::finds_a_published_result(&mut v, &d, id, &entity, &name);
    supervisor::acknowledges_a_page_at_once(&mut b, &d);

    let mut a = d.browser("profile-admin");
    entity::show_event_feeds_and_tasks(&mut a, &d);
    let rid = inspector::checks_and_decides(&d, &entity, id);
    admin::joint_inspections_per_department(&mut a, &d);
    admin::joint_plan_tasks_for_a_supervisor(&mut b, &d);
    layout::nothing_overflows_at_400_px(&mut a, &d, id, rid, &entity);
    visitor::verifies_a_draw(&mut v, &d);
}
