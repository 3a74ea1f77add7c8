//! The store the in-process API suites run on: SQLite (the default) or, with
//! `SPOTCHECK_TEST_STORE=postgres` (the CI matrix's second leg), a fresh database per test on
//! one private PostgreSQL server per test process, as `tests/src/store.rs` does for the
//! end-to-end suite (this crate cannot use that one: it depends on the collector).
//!
//! The PostgreSQL client is synchronous and drives a runtime of its own, which panics inside
//! Tokio's context; these suites are `#[tokio::test]`s, so their direct store work runs on a
//! thread of its own ([`off`], [`Off`]).

#![allow(dead_code)] // each suite uses part of it

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use spotcheck_collector::store::db::{self, Conn, DbUrl, Mode};

/// Whether the suites store on PostgreSQL (`SPOTCHECK_TEST_STORE=postgres`; default sqlite).
pub fn on_postgres() -> bool {
    static PG: OnceLock<bool> = OnceLock::new();
    *PG.get_or_init(|| match std::env::var("SPOTCHECK_TEST_STORE").as_deref() {
        Err(_) | Ok("") | Ok("sqlite") => false,
        Ok("postgres") | Ok("postgresql") => true,
        Ok(other) => panic!("SPOTCHECK_TEST_STORE={other}: expected sqlite or postgres"),
    })
}

/// For a test about SQLite itself: on the PostgreSQL leg, prints why it does not run there
/// and returns true (the test then returns).
pub fn sqlite_only(reason: &str) -> bool {
    if on_postgres() {
        eprintln!("skipping on SPOTCHECK_TEST_STORE=postgres: {reason}");
    }
    on_postgres()
}

/// A fresh store for one test: the SQLite file `spotcheck.db` in `dir`, or a new database on
/// the process's PostgreSQL server. Not migrated yet (`db::connect` in `Mode::Write` does).
pub fn fresh(dir: &Path) -> DbUrl {
    if !on_postgres() {
        return DbUrl::Sqlite(spotcheck_collector::store::db_path(dir));
    }
    static N: AtomicUsize = AtomicUsize::new(0);
    let server = shared();
    let name = format!("api_{}", N.fetch_add(1, Ordering::Relaxed));
    let out = Command::new(server.bin.join("createdb"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &server.port.to_string(),
            "-U",
            "postgres",
            &name,
        ])
        .output()
        .expect("createdb runs");
    assert!(
        out.status.success(),
        "createdb {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!("postgres://postgres@127.0.0.1:{}/{name}", server.port)
        .parse()
        .unwrap()
}

/// A connection for writing to `url` (the schema brought up to date).
pub fn connect(url: &DbUrl) -> Conn {
    db::connect(url, Mode::Write).unwrap_or_else(|e| panic!("cannot open the store {url}: {e}"))
}

/// Runs `f` on a thread of its own, outside Tokio's context; a panic in it is the caller's.
pub fn off<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// [`off`] with a fresh connection to `url`.
pub fn with_conn<T: Send>(url: &DbUrl, f: impl FnOnce(&Conn) -> T + Send) -> T {
    off(|| f(&connect(url)))
}

/// A value that holds a store connection (a writer, a notification worker), made, used and
/// dropped outside Tokio's context ([`off`]).
pub struct Off<T: Send>(Option<T>);

impl<T: Send> Off<T> {
    /// Makes the value on a thread of its own.
    pub fn new(f: impl FnOnce() -> T + Send) -> Off<T> {
        Off(Some(off(f)))
    }

    /// Runs `f` on it, on a thread of its own.
    pub fn run<R: Send>(&mut self, f: impl FnOnce(&mut T) -> R + Send) -> R {
        let v = self.0.as_mut().expect("present until dropped");
        off(move || f(v))
    }
}

impl<T: Send> Drop for Off<T> {
    fn drop(&mut self) {
        let v = self.0.take();
        // While a test panics, a second panic here would abort and hide the first.
        std::thread::scope(|s| {
            let _ = s.spawn(move || drop(v)).join();
        });
    }
}

/// The process's server: a shell watches a pipe from this process and stops the server and
/// removes its files when the pipe closes, that is when this process exits (Rust runs no
/// destructors for statics). Its output goes nowhere, so that it holds no pipe of the caller's.
struct Shared {
    port: u16,
    bin: PathBuf,
    _watchdog: Mutex<(Child, ChildStdin)>,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(start)
}

/// The newest installed server's `bin` directory (Debian: /usr/lib/postgresql/N/bin).
fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `program args…`, as the `postgres` user when we are root (the server refuses root).
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn start() -> Shared {
    let bin = bin_dir().expect(
        "SPOTCHECK_TEST_STORE=postgres but PostgreSQL is not installed \
         (apt-get install postgresql; the tests run initdb and postgres from /usr/lib/postgresql/N/bin)",
    );
    // Not under a tempdir: the server's user must reach it, and tempdirs are private to root.
    let data = std::env::temp_dir().join(format!("spotcheck-pg-api-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).unwrap();
    if is_root() {
        let ok = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&data)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "chown postgres {}", data.display());
    }
    let out = as_postgres(&bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ])
        .output()
        .expect("initdb runs");
    assert!(
        out.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = as_postgres(&bin.join("postgres"));
    let log = data.with_extension("log");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(
            "data=$1; log=$2; shift 2; \"$@\" >\"$log\" 2>&1 & pid=$!; \
             read _line; kill -INT $pid; wait $pid; rm -rf \"$data\" \"$log\"",
        )
        .arg("pg-watchdog")
        .arg(&data)
        .arg(&log)
        .arg(server.get_program())
        .args(server.get_args())
        .arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string(), "-k"])
        .arg(&data)
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "max_connections=200",
            // Scratch databases for functional tests on a server no test crashes: flushing
            // the WAL at every commit buys nothing here (as tests/src/postgres.rs's
            // SHARED_SETTINGS, which this crate cannot use).
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sh runs");
    let stdin = child.stdin.take().expect("piped");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = Command::new(bin.join("pg_isready"))
            .args([
                "-q",
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
            ])
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the tests' PostgreSQL server did not start:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Shared {
        port,
        bin,
        _watchdog: Mutex::new((child, stdin)),
    }
}

/// The store of the test whose temp dir is `dir`: [`fresh`] on first use, the same after.
pub fn for_dir(dir: &Path) -> DbUrl {
    static STORES: OnceLock<Mutex<std::collections::HashMap<PathBuf, DbUrl>>> = OnceLock::new();
    let mut stores = STORES.get_or_init(Default::default).lock().unwrap();
    stores
        .entry(dir.to_owned())
        .or_insert_with(|| fresh(dir))
        .clone()
}
