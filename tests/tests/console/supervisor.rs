//! The supervisor's day on the demo: live updates that keep rows in place; the queue
//! filtered to open critical tasks; a task's rule, evidence and chart; the language switch;
//! acknowledge, resolve with a category from the list, publish after a confirmation; bulk
//! acknowledgement.

use serde_json::Value;
use spotcheck_e2e::browser::Browser;

use crate::helpers::*;
use crate::Demo;

/// A new task only lights the banner; a change to a task on the page updates its row where
/// it is, and the queue is not read again.
pub fn live_updates_keep_rows_in_place(b: &mut Browser, d: &Demo) {
    let (http, admin) = (d.http.as_str(), d.admin.as_str());
    let hospital = d.entity_of("hospital");
    let order =
        "[...document.querySelectorAll('#tasks tbody tr.task')].map(r => r.dataset.id).join(',')";
    let reads = "performance.getEntriesByType('resource').filter(e => e.name.includes('/api/v1/queue')).length";
    let before = (b.eval(order), b.eval(reads));
    let (s, r) = call(
        http,
        "POST",
        "/api/v1/tasks",
        Some(&format!(
            r#"{{"entity": "{hospital}", "department": "health", "item": "ihosp-prescriptions", "detail": "a live-update check"}}"#
        )),
        admin,
    );
    assert_eq!(s, 200, "{r}");
    let live = r["id"].as_i64().unwrap();
    settle(
        b,
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
        b,
        "the new task's row",
        &format!("document.querySelector('#tasks tr.task[data-id=\"{live}\"]')"),
    );
    let before = (b.eval(order), b.eval(reads));
    let (s, r) = call(
        http,
        "POST",
        &format!("/api/v1/tasks/{live}/checks"),
        None,
        admin,
    );
    assert_eq!(s, 200, "{r}");
    settle(
        b,
        "the row updated in place",
        &format!("document.querySelector('#tasks tr.task.changed[data-id=\"{live}\"] .status').textContent.startsWith('已核查')"),
    );
    assert_eq!(
        (b.eval(order), b.eval(reads)),
        before,
        "the row changed where it was, without a re-read"
    );
}

/// Filters to open critical tasks, opens the first, reads its evidence, switches the
/// language there and back, acknowledges, resolves and publishes it. Returns its id and its
/// evidence.
pub fn handles_a_critical_task(b: &mut Browser, d: &Demo, total: u64) -> (i64, Value) {
    let (http, admin) = (d.http.as_str(), d.admin.as_str());
    // Filter to open critical tasks.
    b.eval(
        "document.getElementById('f-status').value = 'open';
         document.getElementById('f-severity').value = 'critical';
         document.getElementById('f-apply').click(); true",
    );
    settle(b, "the filtered queue",
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
    let (_, task) = call(http, "GET", &format!("/api/v1/tasks/{id}"), None, admin);
    assert_eq!(task["department"], "health");

    // Open it: the rule's title and limit, the records that breached, the chart.
    b.eval(&format!(
        "document.querySelector('#tasks tr.task[data-id=\"{id}\"] td:nth-child(3)').click(); true"
    ));
    settle(
        b,
        "the task page",
        &format!("document.querySelector('#task[data-id=\"{id}\"]')"),
    );
    let (_, ev) = call(
        http,
        "GET",
        &format!("/api/v1/tasks/{id}/evidence"),
        None,
        admin,
    );
    // The rule's title in Chinese (the console's default language); English after the switch.
    let (title_zh, title_en) = (ev["rule"]["title_zh"].clone(), ev["rule"]["title"].clone());
    assert!(has_chinese(title_zh.as_str().unwrap()), "{ev}");
    assert_ne!(title_zh, title_en, "{ev}");
    let rule_title = "document.getElementById('rule-title').textContent";
    assert_eq!(b.eval(rule_title), title_zh);
    assert_eq!(task["rule_title_zh"], title_zh, "{task}");
    assert_eq!(
        b.eval("document.getElementById('rule-limit').textContent"),
        ev["rule"]["limit"]
    );
    assert!(!ev["records"].as_array().unwrap().is_empty(), "{ev}");
    settle(
        b,
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
    let zh = labels(b, "#main");
    b.eval("document.getElementById('lang').click(); true");
    settle(b, "English", "document.documentElement.lang === 'en'");
    let en = labels(b, "#main");
    assert_eq!(b.eval(rule_title), title_en, "the rule's title in English");
    assert_eq!(zh.len(), en.len());
    assert!(zh.len() > 30, "{zh:?}");
    for (z, e) in zh.iter().zip(&en) {
        assert_ne!(z, e, "a label that does not change with the language");
        assert!(!has_chinese(e), "Chinese left in English: {e}");
    }
    let header = b.eval("document.getElementById('nav').textContent + document.getElementById('whoami').textContent");
    assert!(!has_chinese(header.as_str().unwrap()), "{header}");
    b.eval("document.getElementById('lang').click(); true");
    settle(b, "Chinese", "document.documentElement.lang === 'zh-CN'");
    assert_eq!(labels(b, "#main"), zh);
    assert_eq!(
        b.eval(rule_title),
        title_zh,
        "the rule's title in Chinese again"
    );

    // Acknowledge; resolve with a category from the API's list; publish after confirming.
    b.eval("document.querySelector('#act-ack button').click(); true");
    settle(
        b,
        "acknowledged",
        "document.querySelector('#task[data-status=\"acknowledged\"]')",
    );
    let (_, cats) = call(
        http,
        "GET",
        "/api/v1/public/results/categories",
        None,
        admin,
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
        b,
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
        b,
        "resolved",
        "document.querySelector('#task[data-status=\"resolved\"]')",
    );
    b.eval("document.querySelector('#act-publish button').click(); true");
    settle(
        b,
        "the confirmation",
        "document.getElementById('confirm').open",
    );
    let (_, t) = call(http, "GET", &format!("/api/v1/tasks/{id}"), None, admin);
    assert_eq!(
        t["status"], "resolved",
        "nothing is published before confirming"
    );
    b.eval("document.getElementById('confirm-ok').click(); true");
    settle(
        b,
        "published",
        "document.querySelector('#task[data-status=\"published\"]')",
    );
    let (_, t) = call(http, "GET", &format!("/api/v1/tasks/{id}"), None, admin);
    assert_eq!(
        (t["status"].as_str(), t["result"].as_str()),
        (Some("published"), Some("corrected"))
    );
    (id, ev)
}

/// Bulk acknowledgement of the open tasks on a page.
pub fn acknowledges_a_page_at_once(b: &mut Browser, d: &Demo) {
    let (http, admin) = (d.http.as_str(), d.admin.as_str());
    b.navigate(&format!("http://{http}/#/queue?status=open"));
    settle(
        b,
        "the open tasks",
        "location.hash === '#/queue?status=open' && document.querySelector('#queue #tasks tr.task input.pick:not(:disabled)')",
    );
    let picked: Vec<i64> = serde_json::from_value(b.eval(
        "[...document.querySelectorAll('#tasks input.pick:not(:disabled)')].map(i => Number(i.dataset.id))",
    ))
    .unwrap();
    b.eval("document.getElementById('pick-all').click(); document.getElementById('bulk-ack').click(); true");
    settle(
        b,
        "the bulk acknowledgement",
        "document.getElementById('bulk-msg').textContent.length > 0",
    );
    assert_eq!(
        b.eval("document.getElementById('bulk-msg').textContent"),
        format!("已完成: {}", picked.len()).as_str()
    );
    for t in &picked {
        let (_, task) = call(http, "GET", &format!("/api/v1/tasks/{t}"), None, admin);
        assert_eq!(task["status"], "acknowledged", "{task}");
    }
    settle(
        b,
        "the rows acknowledged in place",
        "[...document.querySelectorAll('#tasks tr.task .status')].every(s => s.textContent.startsWith('已确认'))",
    );
}
