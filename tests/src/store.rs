//! Which engine the end-to-end tests store on: SQLite (the default) or, with
//! `SPOTCHECK_TEST_STORE=postgres`, PostgreSQL, the CI matrix's second leg. On PostgreSQL each
//! collector data directory a test uses gets a database of its own (created on first use) on
//! one private server per test process ([`crate::postgres::shared`]), and the tests read what
//! was stored through `store::db`'s interface, so the same assertions run on both engines.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use spotcheck_collector::store::db::{self, Conn, DbUrl, Mode, Sql};

/// The engine of the tests' stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// The SQLite file `spotcheck.db` in the collector's data directory.
    Sqlite,
    /// A database per data directory on the test process's PostgreSQL server.
    Postgres,
}

/// The engine `SPOTCHECK_TEST_STORE` names (`sqlite`, the default, or `postgres`).
pub fn engine() -> Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    *ENGINE.get_or_init(|| match std::env::var("SPOTCHECK_TEST_STORE").as_deref() {
        Err(_) | Ok("") | Ok("sqlite") => Engine::Sqlite,
        Ok("postgres") | Ok("postgresql") => Engine::Postgres,
        Ok(other) => panic!("SPOTCHECK_TEST_STORE={other}: expected sqlite or postgres"),
    })
}

/// Whether the tests store on PostgreSQL.
pub fn on_postgres() -> bool {
    engine() == Engine::Postgres
}

/// For a test about SQLite itself: on the PostgreSQL leg, prints why it does not run there
/// and returns true (the test then returns); false on SQLite.
pub fn sqlite_only(reason: &str) -> bool {
    if on_postgres() {
        eprintln!("skipping on SPOTCHECK_TEST_STORE=postgres: {reason}");
    }
    on_postgres()
}

/// The URL (as text) of the store of the collector whose data directory is `data`.
pub fn url_text(data: &Path) -> String {
    match engine() {
        Engine::Sqlite => format!("sqlite://{}", data.join("spotcheck.db").display()),
        Engine::Postgres => {
            static DATABASES: OnceLock<Mutex<HashMap<PathBuf, String>>> = OnceLock::new();
            let mut databases = DATABASES.get_or_init(Default::default).lock().unwrap();
            let n = databases.len();
            databases
                .entry(data.to_owned())
                .or_insert_with(|| crate::postgres::shared().create_database(&format!("e2e_{n}")))
                .clone()
        }
    }
}

/// [`url_text`] parsed.
pub fn url(data: &Path) -> DbUrl {
    url_text(data).parse().expect("a store URL")
}

/// The collector's command-line arguments that name the store of `data`: `--data DIR` on
/// SQLite, `--store URL` on PostgreSQL.
pub fn cli_args(data: &Path) -> Vec<String> {
    match engine() {
        Engine::Sqlite => vec!["--data".into(), data.display().to_string()],
        Engine::Postgres => vec!["--store".into(), url_text(data)],
    }
}

/// The `[store]` key that points a collector at the store of `data` on PostgreSQL, added to
/// the configuration `extra` (into its `[store]` table if it has one, unless that already
/// names a URL); `extra` unchanged on SQLite.
pub fn configure(data: &Path, extra: &str) -> String {
    if !on_postgres() {
        return extra.to_owned();
    }
    let key = format!("url = \"{}\"\n", url_text(data));
    let Some(i) = extra.find("[store]\n") else {
        return format!("{extra}\n[store]\n{key}");
    };
    let at = i + "[store]\n".len();
    let table = extra[at..].split("\n[").next().unwrap_or("");
    if table.lines().any(|l| l.trim_start().starts_with("url")) {
        // The test chose its store itself (tests/tests/serve_postgres.rs).
        return extra.to_owned();
    }
    format!("{}{key}{}", &extra[..at], &extra[at..])
}

/// A read-only connection to the store of `data`.
pub fn open(data: &Path) -> Conn {
    assert!(
        !(on_postgres() && data.join("spotcheck.db").exists()),
        "SPOTCHECK_TEST_STORE=postgres, but a SQLite store was created in {}",
        data.display()
    );
    let url = url(data);
    db::connect(&url, Mode::Read).unwrap_or_else(|e| panic!("cannot open the store {url}: {e}"))
}

/// A connection for writing to the store of `data` (a test's fault injection or fixtures).
pub fn open_for_writing(data: &Path) -> Conn {
    let url = url(data);
    db::connect(&url, Mode::Write).unwrap_or_else(|e| panic!("cannot open the store {url}: {e}"))
}

/// One integer from a query (`CAST(… AS BIGINT)` a `sum` of integers: PostgreSQL widens it).
pub fn count(db: &impl Sql, sql: &str) -> i64 {
    db.query_row(sql, db::args![], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// A read-only connection to the SQLite file in `data` whatever the matrix: for the demo's
/// store, which is always SQLite (the demo embeds its layout in one data directory).
pub fn open_sqlite(data: &Path) -> Conn {
    let url = DbUrl::Sqlite(data.join("spotcheck.db"));
    db::connect(&url, Mode::Read).unwrap_or_else(|e| panic!("cannot open the store {url}: {e}"))
}
