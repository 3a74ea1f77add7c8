//! The administration pages: the registry import (a dry run with every rejected row, then the
//! import after a confirmation, of items and of entities), the audit chain's verification
//! (intact, then broken by an edit in the database, and against a published head), and joint
//! inspections on the demo.

use serde_json::{json, Value};
use spotcheck_e2e::api::*;
use spotcheck_e2e::browser::Browser;
use spotcheck_e2e::*;

use crate::helpers::*;
use crate::Demo;

/// Chooses a file in the import form as a user would (the `change` event), with the kind.
fn choose_file(b: &mut Browser, kind: &str, name: &str, text: &str) {
    b.eval(&format!(
        "{{ document.getElementById('import-kind').value = {kind};
         const dt = new DataTransfer();
         dt.items.add(new File([{text}], {name}));
         const input = document.getElementById('import-file');
         input.files = dt.files;
         input.dispatchEvent(new Event('change')); }}
         true",
        kind = json!(kind),
        text = json!(text),
        name = json!(name),
    ));
}

/// Clears the import's report, so that the next one is awaited, not the last one seen.
fn clear_report(b: &mut Browser) {
    b.eval("document.getElementById('import-report').replaceChildren(); true");
}

/// `POST /api/v1/registry/{kind}?dry_run=true` with a CSV body: (status, JSON).
fn dry_run_csv(http: &str, kind: &str, csv: &str, token: &str) -> (u16, Value) {
    let mut r = ureq::post(&format!(
        "http://{http}/api/v1/registry/{kind}?dry_run=true"
    ))
    .config()
    .http_status_as_error(false)
    .build()
    .header("Authorization", &format!("Bearer {token}"))
    .header("Content-Type", "text/csv")
    .send(csv)
    .expect("the collector answers");
    let status = r.status().as_u16();
    (status, r.body_mut().read_json().unwrap())
}

const BAD_ITEMS: &str = "id,name,department,legal_basis,kind,method
pool-water,游泳场所水质,health,GB 37488-2019,key,remote
pool-fire,游泳场所消防安全,fire,中华人民共和国消防法,sometimes,on-site
,无编号的事项,health,某法,general,remote
";

const GOOD_ITEMS: &str = "id,name,department,legal_basis,kind,method
pool-water,游泳场所水质,health,GB 37488-2019,key,remote
pool-fire,游泳场所消防安全,fire,中华人民共和国消防法,general,on-site
";

// Line 3: the last character of the credit code is not its check character.
const BAD_ENTITIES: &str = "code,name,domain,district,address,contact,risk,agents
9144030071526726XG,深圳市腾讯计算机系统有限公司,game,南山区,,,B,
9144030071526726XH,校验码错误的单位,hospital,龙岗区,,,A,
";

const GOOD_ENTITIES: &str = "code,name,domain,district,address,contact,risk,agents
9144030071526726XG,深圳市腾讯计算机系统有限公司,game,南山区,,,B,
914403001922038216,华为技术有限公司,hospital,龙岗区,,,A,
";

#[test]
fn the_admin_imports_the_registry_and_sees_the_audit_chain_verified_and_broken() {
    let Some(browser) = chromium_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), None, "");
    let token = admin_token(&c.data);
    let http = c.http.to_string();
    let mut b = Browser::launch(&browser, &dir.path().join("profile"));
    b.navigate(&format!("http://{http}/#token={token}&go=/admin/registry"));
    settle(
        &mut b,
        "the import form",
        "document.getElementById('import-form')",
    );

    // A file with two bad rows: the dry run lists each with its line, field and reason, as
    // the API answers them, and the counts; nothing is written.
    choose_file(&mut b, "items", "items.csv", BAD_ITEMS);
    settle(
        &mut b,
        "the dry run's refusal",
        "document.querySelector('#import-refused #import-problems tr.problem')",
    );
    b.screenshot("registry-refused");
    let (s, api) = dry_run_csv(&http, "items", BAD_ITEMS, &token);
    assert_eq!(s, 400, "{api}");
    let expected: Vec<Value> = api["error"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| json!([p["line"], p["field"], p["reason"]]))
        .collect();
    let lines: Vec<u64> = expected.iter().map(|p| p[0].as_u64().unwrap()).collect();
    assert!(
        lines.contains(&3) && lines.contains(&4) && !lines.contains(&2),
        "{api}"
    );
    let shown = b.eval(
        "[...document.querySelectorAll('#import-problems tr.problem')].map(r => [Number(r.dataset.line), r.dataset.field, r.querySelector('.server-msg').textContent])",
    );
    assert_eq!(shown, json!(expected), "every problem as the API gives it");
    assert_eq!(
        b.eval("[document.getElementById('import-counts').dataset.rows, document.getElementById('import-counts').dataset.accepted]"),
        json!(["3", "1"]),
        "3 rows read, 1 would pass"
    );
    assert!(b
        .eval("document.getElementById('import-confirm')")
        .is_null());
    assert_eq!(get(&c, "/api/v1/registry/items", Some(&token)).1, json!([]));

    // The language switch keeps the report and changes its words.
    let zh = b.eval("document.getElementById('import-refused').textContent");
    b.eval("document.getElementById('lang').click(); true");
    settle(&mut b, "English", "document.documentElement.lang === 'en'");
    let en = b.eval("document.getElementById('import-refused').textContent");
    let en = en.as_str().unwrap();
    assert!(en.contains("Nothing was imported"), "{en}");
    assert!(en.contains("line") && en.contains("reason"), "{en}");
    assert_ne!(zh.as_str().unwrap(), en);
    b.eval("document.getElementById('lang').click(); true");
    settle(
        &mut b,
        "Chinese",
        "document.documentElement.lang === 'zh-CN'",
    );

    // Neither CSV nor JSON by its name; and a JSON file that does not parse.
    clear_report(&mut b);
    choose_file(&mut b, "items", "items.txt", GOOD_ITEMS);
    settle(
        &mut b,
        "the file type refused",
        "document.getElementById('import-error')",
    );
    let text = b.eval("document.getElementById('import-error').textContent");
    assert!(text.as_str().unwrap().contains(".csv 或 .json"), "{text}");
    clear_report(&mut b);
    choose_file(&mut b, "items", "items.json", "[\n  {\"id\": \"x\",}\n]");
    settle(
        &mut b,
        "the broken JSON",
        "document.querySelector('#import-refused tr.problem')",
    );
    let line = b.eval("document.querySelector('#import-problems tr.problem').dataset.line");
    assert_eq!(line, "2", "the line of the broken object");

    // A good file: the dry run accepts every row, writes nothing, and the import needs a
    // confirmation; then the item list shows them.
    clear_report(&mut b);
    choose_file(&mut b, "items", "items.csv", GOOD_ITEMS);
    settle(
        &mut b,
        "the dry run passed",
        "document.getElementById('import-ok')",
    );
    b.screenshot("registry-dry-run-ok");
    assert_eq!(
        b.eval("document.getElementById('import-ok').dataset.rows"),
        "2"
    );
    assert_eq!(get(&c, "/api/v1/registry/items", Some(&token)).1, json!([]));
    b.eval("document.getElementById('import-confirm').click(); true");
    settle(
        &mut b,
        "the confirmation",
        "document.getElementById('confirm').open",
    );
    assert_eq!(get(&c, "/api/v1/registry/items", Some(&token)).1, json!([]));
    b.eval("document.getElementById('confirm-ok').click(); true");
    settle(
        &mut b,
        "the import",
        "document.getElementById('import-done')",
    );
    let (_, items) = get(&c, "/api/v1/registry/items", Some(&token));
    assert_eq!(items.as_array().unwrap().len(), 2, "{items}");
    assert_eq!(
        b.eval("document.querySelectorAll('#reg-items tbody tr').length"),
        2
    );
    assert_eq!(
        b.eval("document.getElementById('reg-items-n').textContent"),
        "2"
    );

    // Entities: a file whose second row has a wrong check character (line 3) shows that
    // row's line and the server's reason, one of two rows accepted; the good file imported
    // after the confirmation, the page counts the library as the API does.
    let entities = |c: &Collector| {
        let (_, list) = get(c, "/api/v1/registry/entities", Some(&token));
        list.as_array().unwrap().len()
    };
    let before = entities(&c);
    clear_report(&mut b);
    choose_file(&mut b, "entities", "entities.csv", BAD_ENTITIES);
    settle(
        &mut b,
        "the entities' dry run refused",
        "document.querySelector('#import-refused #import-problems tr.problem')",
    );
    let (s, api) = dry_run_csv(&http, "entities", BAD_ENTITIES, &token);
    assert_eq!(s, 400, "{api}");
    let problem = &api["error"]["problems"];
    assert_eq!(problem.as_array().unwrap().len(), 1, "{api}");
    assert_eq!(
        (problem[0]["line"].as_u64(), problem[0]["field"].as_str()),
        (Some(3), Some("code")),
        "{api}"
    );
    let shown = b.eval(
        "[...document.querySelectorAll('#import-problems tr.problem')].map(r => [Number(r.dataset.line), r.dataset.field, r.querySelector('.server-msg').textContent])",
    );
    assert_eq!(
        shown,
        json!([[3, "code", problem[0]["reason"]]]),
        "the bad row's line and the server's reason"
    );
    assert_eq!(
        b.eval("[document.getElementById('import-counts').dataset.rows, document.getElementById('import-counts').dataset.accepted]"),
        json!(["2", "1"])
    );
    assert_eq!(entities(&c), before, "a dry run writes nothing");
    clear_report(&mut b);
    choose_file(&mut b, "entities", "entities.csv", GOOD_ENTITIES);
    settle(
        &mut b,
        "the entities' dry run passed",
        "document.getElementById('import-ok')",
    );
    assert_eq!(
        b.eval("document.getElementById('import-ok').dataset.rows"),
        "2"
    );
    // The items' import message is still shown; the entities' is awaited.
    b.eval("document.getElementById('admin-flash').replaceChildren(); document.getElementById('import-confirm').click(); true");
    settle(
        &mut b,
        "the confirmation",
        "document.getElementById('confirm').open",
    );
    b.eval("document.getElementById('confirm-ok').click(); true");
    settle(
        &mut b,
        "the entities imported",
        "document.getElementById('import-done')",
    );
    b.screenshot("registry-entities-imported");
    let after = entities(&c);
    assert_eq!(after, before + 2);
    assert_eq!(
        b.eval("document.getElementById('import-done').dataset.rows"),
        "2"
    );
    assert_eq!(
        b.eval("document.getElementById('reg-entities-n').textContent"),
        after.to_string().as_str(),
        "the entity count on the page is the API's"
    );

    // The audit log: the chain verifies; its length and last hash are the API's.
    b.navigate(&format!(
        "http://{http}/?audit#token={token}&go=/admin/audit"
    ));
    settle(
        &mut b,
        "the audit chain verified",
        "document.querySelector('#audit-verify[data-ok=\"1\"]')",
    );
    let (_, head) = get(&c, "/api/v1/public/audit-head", None);
    let (s, verify) = get(&c, "/api/v1/audit/verify", Some(&token));
    assert_eq!(s, 200, "{verify}");
    assert_eq!(verify["ok"], true, "{verify}");
    assert_eq!(
        b.eval("document.getElementById('audit-entries').textContent"),
        verify["entries"].to_string().as_str()
    );
    assert_eq!(
        b.eval("document.getElementById('audit-head-hash').textContent"),
        head["hash"]
    );
    let hash = head["hash"].as_str().unwrap().to_owned();
    // Checked against the head published now: found.
    b.eval(&format!(
        "document.getElementById('audit-head-input').value = '{hash}';
         document.getElementById('audit-head-check').click(); true"
    ));
    settle(
        &mut b,
        "the published head found",
        "document.querySelector('#audit-published.ok')",
    );

    // An entry edited in the database: the page says the chain is broken and where.
    let db = store::open_for_writing(&c.data);
    db.execute(
        "UPDATE audit_log SET subject = subject || 'x' WHERE seq = 1",
        args![],
    )
    .unwrap();
    b.navigate(&format!(
        "http://{http}/?broken#token={token}&go=/admin/audit"
    ));
    settle(
        &mut b,
        "the broken chain",
        "document.querySelector('#audit-verify[data-ok=\"0\"] #audit-problems tr.problem')",
    );
    b.screenshot("audit-broken");
    assert_eq!(
        b.eval("document.getElementById('audit-broken-at').dataset.seq"),
        "1"
    );
    let (_, verify) = get(&c, "/api/v1/audit/verify", Some(&token));
    assert_eq!(verify["first_broken_seq"], 1, "{verify}");
    let problems = b.eval(
        "[...document.querySelectorAll('#audit-problems tr.problem')].map(r => [r.dataset.problem, Number(r.dataset.seq), r.querySelector('.server-msg').textContent])",
    );
    let expected: Vec<Value> = verify["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| json!([p["problem"], p["at_seq"], p["message"]]))
        .collect();
    assert_eq!(problems, json!(expected));
    assert!(
        expected
            .iter()
            .any(|p| p[0] == "hash_mismatch" && p[1] == 1),
        "{verify}"
    );

    // A head that is not a hash: the server's reason; one that no entry has: not found.
    b.navigate(&format!(
        "http://{http}/?head1#token={token}&go=/admin/audit?head=xyz"
    ));
    settle(
        &mut b,
        "the refused head",
        "document.getElementById('audit-error')",
    );
    let text = b.eval("document.getElementById('audit-error').textContent");
    assert!(
        text.as_str().unwrap().contains("核验失败") && text.as_str().unwrap().contains("64 hex"),
        "{text}"
    );
    let unknown = "ab".repeat(32);
    b.navigate(&format!(
        "http://{http}/?head2#token={token}&go=/admin/audit?head={unknown}"
    ));
    settle(
        &mut b,
        "the head not found",
        "document.querySelector('#audit-published.msg')",
    );
    assert!(b
        .eval("!!document.querySelector('#audit-problems tr.problem[data-problem=\"head_not_found\"]')")
        .as_bool()
        .unwrap());
}

/// The joint inspections page on the demo (a joint plan of the health bureau with the fire
/// department): each department's quota, the plan and the joint tasks, as `/api/v1/joint`
/// has them, and the plan's batches with their tasks as the task list has them; a year that
/// is not one is refused on the page.
pub fn joint_inspections_per_department(a: &mut Browser, d: &Demo) {
    let (http, admin) = (d.http.as_str(), d.admin.as_str());
    a.navigate(&format!(
        "http://{http}/?joint#token={admin}&go=/admin/joint"
    ));
    settle(
        a,
        "the joint quotas",
        "document.querySelector('#joint-quotas tr.quota')",
    );
    a.screenshot("joint");
    let (_, j) = call(http, "GET", "/api/v1/joint", None, admin);
    let expected: Vec<Value> = j["quotas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            json!([
                q["department"],
                q["random_tasks"].to_string(),
                q["required"].to_string(),
                q["joint_tasks"].to_string(),
                q["met"]
            ])
        })
        .collect();
    let shown = a.eval(
        "[...document.querySelectorAll('#joint-quotas tr.quota')].map(r => [r.dataset.department, r.dataset.random, r.dataset.required, r.dataset.joint, r.classList.contains('met')])",
    );
    assert_eq!(shown, json!(expected));
    let departments: Vec<&str> = expected.iter().map(|q| q[0].as_str().unwrap()).collect();
    assert!(
        departments.contains(&"health") && departments.contains(&"fire"),
        "{departments:?}"
    );
    assert_eq!(
        a.eval("document.querySelectorAll('#joint-planned tr.quota').length"),
        j["planned_quotas"].as_array().unwrap().len()
    );
    assert_eq!(
        a.eval("document.querySelectorAll('#joint-tasks tr.joint-task').length"),
        j["joint_tasks"].as_array().unwrap().len()
    );
    let partners = a.eval(
        "[...document.querySelectorAll('#joint-plans tr.joint-plan .partner')].map(p => p.dataset.department)",
    );
    assert_eq!(partners, json!(["fire"]));

    // Each batch of the joint plan with the tasks its draws made, per department, as the
    // task list has them: batch b1 (revealed by the demo) with tasks of both departments,
    // b2 not drawn.
    let (_, tasks) = call(
        http,
        "GET",
        "/api/v1/tasks?kind=joint&limit=10000",
        None,
        admin,
    );
    let of_batch = |batch: &str| -> Vec<&Value> {
        tasks
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["joint"] == "2026-health-pool" && t["batch"] == batch)
            .collect()
    };
    let b1 = of_batch("b1");
    let count = |dept: &str| b1.iter().filter(|t| t["department"] == dept).count();
    assert!(count("health") > 0 && count("fire") > 0, "{tasks}");
    let mut ids: Vec<i64> = b1.iter().map(|t| t["id"].as_i64().unwrap()).collect();
    ids.sort_unstable();
    let row = "document.querySelector('#joint-plan-tasks tr.plan-batch[data-plan=\"2026-health-pool\"][data-batch=\"b1\"]')";
    assert_eq!(
        a.eval(&format!("{row}.dataset.tasks")),
        b1.len().to_string().as_str()
    );
    assert_eq!(
        a.eval(&format!(
            "[...{row}.querySelectorAll('.dept-count')].map(d => [d.dataset.department, Number(d.dataset.n)])"
        )),
        json!([["health", count("health")], ["fire", count("fire")]])
    );
    assert_eq!(
        a.eval(&format!(
            "[...{row}.querySelectorAll('.plan-task')].map(t => Number(t.dataset.task))"
        )),
        json!(ids)
    );
    assert!(of_batch("b2").is_empty(), "{tasks}");
    assert_eq!(
        a.eval("document.querySelector('#joint-plan-tasks tr.plan-batch[data-plan=\"2026-health-pool\"][data-batch=\"b2\"]').dataset.tasks"),
        "0"
    );
    // Names, not codes: the fire department in Chinese.
    let text = a.eval("document.getElementById('joint-quotas').textContent");
    assert!(text.as_str().unwrap().contains("消防救援机构"), "{text}");

    a.eval(
        "document.getElementById('joint-year').value = '20x6';
         document.getElementById('joint-apply').click(); true",
    );
    settle(
        a,
        "the refused year",
        "document.getElementById('joint-error')",
    );
    assert!(a
        .eval("location.hash")
        .as_str()
        .unwrap()
        .ends_with("year=20x6"));
}

/// The joint page for the health bureau's supervisor (`b`, logged in): their department's
/// tasks of the joint plan's first batch counted as the task list gives them to the admin,
/// the fire department's shown as not theirs to see rather than as none.
pub fn joint_plan_tasks_for_a_supervisor(b: &mut Browser, d: &Demo) {
    let (http, admin) = (d.http.as_str(), d.admin.as_str());
    b.navigate(&format!("http://{http}/?joint-sup#/admin/joint"));
    settle(
        b,
        "the supervisor's joint page",
        "document.querySelector('#joint-plan-tasks tr.plan-batch')",
    );
    let (_, tasks) = call(
        http,
        "GET",
        "/api/v1/tasks?kind=joint&limit=10000",
        None,
        admin,
    );
    let health = tasks
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| {
            t["joint"] == "2026-health-pool" && t["batch"] == "b1" && t["department"] == "health"
        })
        .count();
    assert!(health > 0, "{tasks}");
    let row = "document.querySelector('#joint-plan-tasks tr.plan-batch[data-plan=\"2026-health-pool\"][data-batch=\"b1\"]')";
    assert_eq!(
        b.eval(&format!(
            "[...{row}.querySelectorAll('.dept-count')].map(d => [d.dataset.department, d.dataset.n ?? null, d.dataset.hidden ?? null])"
        )),
        json!([["health", health.to_string(), null], ["fire", null, "1"]])
    );
}
