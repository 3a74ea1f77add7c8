//! Rule packs over the API: an invalid pack is refused with its line and changes nothing; a
//! valid one becomes active under its new hash.

use serde_json::Value;
use spotcheck_collector::rules::pack::DEFAULT_POOL;
use spotcheck_collector::rules::PackHash;

use crate::helpers::{App, ADMIN};

async fn hashes(app: &App) -> Vec<(String, String, String)> {
    let v = app.admin("GET", "/api/v1/rule-packs", "").await;
    let mut out: Vec<_> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|p: &Value| {
            let s = |k: &str| p[k].as_str().unwrap().to_owned();
            (s("domain"), s("hash"), s("origin"))
        })
        .collect();
    out.sort();
    out
}

fn hash_of<'a>(list: &'a [(String, String, String)], domain: &str) -> &'a str {
    &list.iter().find(|p| p.0 == domain).unwrap().1
}

/// Refuses a broken pool pack, activates an edited one; returns the new pool hash.
pub async fn rule_packs_are_replaced_only_by_valid_ones(app: &App) -> String {
    let before = hashes(app).await;
    let domains: Vec<&str> = before.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(domains, ["game", "hospital", "pool"]);
    for (_, hash, _) in &before {
        assert!(
            hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
            "{hash}"
        );
    }
    let default_hash = PackHash::of(DEFAULT_POOL.as_bytes());
    assert_eq!(hash_of(&before, "pool"), default_hash.as_str());

    let band = "min = 0.3\nmax = 1.0";
    assert!(DEFAULT_POOL.contains(band));
    let broken = DEFAULT_POOL.replacen(band, "min = 1.2\nmax = 1.0", 1);
    let line = broken
        .lines()
        .position(|l| l == "min = 1.2")
        .expect("the edited line")
        + 1;
    let m = app
        .send("PUT", "/api/v1/rule-packs/pool", Some(ADMIN), &broken)
        .await
        .error(400, "bad_request");
    assert!(m.contains(&format!(":{line}:")), "names line {line}: {m}");
    assert!(m.contains("min 1.2 is above max 1.0"), "{m}");
    assert!(m.contains("previous pack stays active"), "{m}");
    assert_eq!(hashes(app).await, before, "nothing changed");

    let edited = DEFAULT_POOL.replacen(band, "min = 0.3\nmax = 1.5", 1);
    let r = app
        .send("PUT", "/api/v1/rule-packs/pool", Some(ADMIN), &edited)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let pack = r.json();
    let new_hash = PackHash::of(edited.as_bytes());
    assert_ne!(new_hash, default_hash);
    assert_eq!(pack["hash"], new_hash.as_str());
    assert_eq!(pack["domain"], "pool");
    assert_eq!(pack["origin"], "api:pool");

    let after = hashes(app).await;
    assert_eq!(hash_of(&after, "pool"), new_hash.as_str());
    for d in ["game", "hospital"] {
        assert_eq!(hash_of(&after, d), hash_of(&before, d));
    }
    new_hash.as_str().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_rule_pack_is_refused_with_its_line_and_a_valid_one_activates() {
    let app = App::start().await;
    rule_packs_are_replaced_only_by_valid_ones(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pack_put_under_another_domains_url_is_refused_and_changes_nothing() {
    let app = App::start().await;
    let before = hashes(&app).await;
    let m = app
        .send("PUT", "/api/v1/rule-packs/game", Some(ADMIN), DEFAULT_POOL)
        .await
        .error(400, "bad_request");
    assert!(
        m.contains("domain pool") && m.contains("/api/v1/rule-packs/pool"),
        "{m}"
    );
    assert_eq!(hashes(&app).await, before);
}
