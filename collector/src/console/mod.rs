//! The web console: a page and a few ES modules with a style sheet, served by the collector
//! itself from files embedded in the binary (`include_str!`, no build step). See
//! ARCHITECTURE.md ("console/") for the layout and why it is plain modules.
//!
//! - `index.html`: the shell (header, login, language switch, `<main>`).
//! - `app.js`: routing (`#/queue`, `#/task/7`, `#/entity/…`, `#/public/…`), login, the live
//!   stream; `api.js`: fetch with the session's CSRF token or a bearer token; `i18n.js`: every
//!   label in Chinese and English, dates in China Standard Time; `chart.js`: SVG charts.
//! - `views/*.js`: one module per page.

use sha2::{Digest, Sha256};

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// The name under `/assets/`.
    pub name: &'static str,
    /// Its content type.
    pub mime: &'static str,
    /// Its bytes.
    pub body: &'static str,
}

const JS: &str = "text/javascript; charset=utf-8";

/// The page.
pub const INDEX: Asset = Asset {
    name: "index.html",
    mime: "text/html; charset=utf-8",
    body: include_str!("index.html"),
};

/// An ES module of the console, `name` served from `path` (relative to this directory).
macro_rules! module {
    ($name:literal, $path:literal) => {
        Asset {
            name: $name,
            mime: JS,
            body: include_str!($path),
        }
    };
}

/// Every file under `/assets/`.
pub const ASSETS: &[Asset] = &[
    Asset {
        name: "style.css",
        mime: "text/css; charset=utf-8",
        body: include_str!("style.css"),
    },
    module!("app.js", "app.js"),
    module!("api.js", "api.js"),
    module!("i18n.js", "i18n.js"),
    module!("chart.js", "chart.js"),
    module!("queue.js", "views/queue.js"),
    module!("task.js", "views/task.js"),
    module!("entity.js", "views/entity.js"),
    module!("public.js", "views/public.js"),
    module!("admin.js", "views/admin.js"),
    module!("tables.js", "views/tables.js"),
    module!("registry.js", "views/registry.js"),
    module!("joint.js", "views/joint.js"),
    module!("audit.js", "views/audit.js"),
];

/// The file named `name`.
pub fn asset(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// A strong validator of the file's bytes.
pub fn etag(a: &Asset) -> String {
    let h = Sha256::digest(a.body.as_bytes());
    format!("\"{}\"", hex::encode(&h[..12]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_page_imports_is_served() {
        for a in ASSETS.iter().chain([&INDEX]) {
            for (i, _) in a.body.match_indices("from './") {
                let rest = &a.body[i + 8..];
                let name = &rest[..rest.find('\'').unwrap()];
                assert!(
                    asset(name).is_some(),
                    "{} imports {name}, which is not served",
                    a.name
                );
            }
        }
        assert!(INDEX.body.contains("/assets/app.js"));
    }
}
