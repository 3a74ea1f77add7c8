//! At 400 px wide nothing overflows horizontally, on every kind of page.

use spotcheck_e2e::browser::Browser;

use crate::helpers::*;
use crate::Demo;

/// Opens each kind of page as a phone would and measures it.
pub fn nothing_overflows_at_400_px(a: &mut Browser, d: &Demo, id: i64, rid: i64, entity: &str) {
    let (http, admin) = (d.http.as_str(), d.admin.as_str());
    a.call(
        "Emulation.setDeviceMetricsOverride",
        serde_json::json!({"width": 400, "height": 860, "deviceScaleFactor": 1, "mobile": true}),
    );
    let game = d.entity_of("game");
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
        ("/admin/registry".into(), "#admin", "#import-form"),
        ("/admin/joint".into(), "#admin", "#joint-quotas tr.quota"),
        (
            "/admin/audit".into(),
            "#admin",
            "#audit-verify #audit-head-hash",
        ),
    ];
    for (page, section, content) in &pages {
        // A fresh document each time (the query string changes), as a phone would open a link.
        a.navigate(&format!("http://{http}/?at={page}#token={admin}&go={page}"));
        let ready = format!(
            "location.hash === '#{page}' && document.querySelector('{section}') && document.querySelector('{content}')"
        );
        settle(a, page, &ready);
        let w = page_width(a);
        assert!(w <= 400, "{page} is {w} px wide at 400 px");
    }
}
