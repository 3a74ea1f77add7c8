//! The entity pages of a game operator and an internet hospital: event feeds and tasks.

use spotcheck_e2e::browser::Browser;

use crate::helpers::*;
use crate::Demo;

/// Each shows its event feeds (by kind), its feeds and its tasks.
pub fn show_event_feeds_and_tasks(a: &mut Browser, d: &Demo) {
    let (http, admin) = (d.http.as_str(), d.admin.as_str());
    for domain in ["game", "hospital"] {
        let e = d.entity_of(domain);
        a.navigate(&format!("http://{http}/#token={admin}&go=/entity/{e}"));
        settle(
            a,
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
}
