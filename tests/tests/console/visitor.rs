//! A visitor without a login: the published results by company name and credit code, and a
//! disclosed draw with the steps to verify it.

use spotcheck_e2e::browser::Browser;

use crate::helpers::*;
use crate::Demo;

/// Finds the published result of `task` by the entity's name and by its credit code.
pub fn finds_a_published_result(v: &mut Browser, d: &Demo, id: i64, entity: &str, name: &str) {
    let http = d.http.as_str();
    for q in [name, &entity[..10]] {
        v.navigate(&format!("http://{http}/"));
        settle(v, "the public results", "document.getElementById('q')");
        v.eval(&format!(
            "document.getElementById('q').value = {}; document.querySelector('#search button').click(); true",
            serde_json::json!(q)
        ));
        settle(
            v,
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
}

/// A disclosed draw explains how to verify it, and its commitment checks out in the page.
pub fn verifies_a_draw(v: &mut Browser, d: &Demo) {
    let (http, admin) = (d.http.as_str(), d.admin.as_str());
    let (_, records) = call(http, "GET", "/api/v1/public/draws", None, admin);
    if let Some(r) = records.as_array().unwrap().first() {
        let draw = r["parameters"]["draw_id"].as_str().unwrap();
        v.navigate(&format!("http://{http}/#/public/draw/{draw}"));
        settle(
            v,
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
