//! The web console: one static page, served by the collector itself (no build step), that
//! reads the JSON API with the admin token the user pastes in (or passes as `#token=` in the
//! URL the demo prints).

/// The console page.
pub const INDEX_HTML: &str = include_str!("index.html");
