//! A private PostgreSQL server per test: `initdb` into a scratch directory and `postgres` on a
//! free loopback port, stopped (and its files removed) when dropped. As root, both run as the
//! `postgres` user, which the server insists on.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::{free_port, servers_required, wait_for, Proc};

/// A running server.
pub struct Postgres {
    /// The server process.
    pub proc: Proc,
    /// Its port on 127.0.0.1.
    pub port: u16,
    data: PathBuf,
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

/// `program args…` as the `postgres` user when we are root (`setpriv` execs, so the process
/// started is the server itself and signals reach it).
fn as_postgres(program: &Path, args: &[&str]) -> (PathBuf, Vec<String>) {
    let mut all: Vec<String> = Vec::new();
    let start = if is_root() {
        all.extend(
            [
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--",
            ]
            .map(String::from),
        );
        all.push(program.display().to_string());
        PathBuf::from("setpriv")
    } else {
        program.to_owned()
    };
    all.extend(args.iter().map(|a| a.to_string()));
    (start, all)
}

fn command(program: &Path, args: &[&str]) -> Command {
    let (program, args) = as_postgres(program, args);
    let mut c = Command::new(program);
    c.args(args);
    c
}

/// A fresh data directory for a server (initdb'd, owned by the server's user) and the bin
/// directory, or `None` with a note when PostgreSQL is not installed and [`servers_required`]
/// is false.
fn init(tag: &str) -> Option<(PathBuf, PathBuf)> {
    let Some(bin) = bin_dir() else {
        assert!(
            !servers_required(),
            "PostgreSQL is not installed but SPOTCHECK_REQUIRE_SERVERS=1 (apt-get install postgresql)"
        );
        eprintln!("skipping: PostgreSQL is not installed (apt-get install postgresql)");
        return None;
    };
    // Not under the test's temporary directory: the server's user must reach it, and
    // tempdirs are private to root.
    static N: AtomicUsize = AtomicUsize::new(0);
    let data = std::env::temp_dir().join(format!(
        "spotcheck-pg{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).unwrap();
    if is_root() {
        let ok = Command::new("chown")
            .args(["postgres:postgres", data.to_str().unwrap()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "chown postgres {}", data.display());
    }
    let out = command(
        &bin.join("initdb"),
        &[
            "-D",
            data.to_str().unwrap(),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ],
    )
    .output()
    .expect("initdb runs");
    assert!(
        out.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some((bin, data))
}

/// The server's command line (program, args) on `port`, as the server's user.
fn server_command(bin: &Path, data: &Path, port: u16) -> (PathBuf, Vec<String>) {
    let port = port.to_string();
    as_postgres(
        &bin.join("postgres"),
        &[
            "-D",
            data.to_str().unwrap(),
            "-p",
            &port,
            "-k",
            data.to_str().unwrap(),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "max_connections=200",
        ],
    )
}

/// Waits until the server on `port` accepts connections; `running` panics if it has exited.
fn wait_ready(bin: &Path, port: u16, mut running: impl FnMut()) {
    let port = port.to_string();
    wait_for(
        "PostgreSQL to accept connections",
        Duration::from_secs(30),
        || {
            running();
            let ok = Command::new(bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &port, "-U", "postgres"])
                .status()
                .is_ok_and(|s| s.success());
            ok.then_some(())
        },
    );
}

impl Postgres {
    /// Starts a fresh server (logs in `log_dir`), or returns `None` with a note when
    /// PostgreSQL is not installed and [`servers_required`] is false.
    ///
    /// On the matrix's PostgreSQL leg (`SPOTCHECK_TEST_STORE=postgres`) it returns `None` too,
    /// saying so: a test with a server of its own runs the same in both legs, and the default
    /// leg has run it.
    pub fn start(log_dir: &Path) -> Option<Postgres> {
        if crate::store::on_postgres() {
            eprintln!(
                "skipping on SPOTCHECK_TEST_STORE=postgres: the test starts its own PostgreSQL \
                 and runs the same in the default leg"
            );
            return None;
        }
        let (bin, data) = init("")?;
        let port = free_port();
        let (program, args) = server_command(&bin, &data, port);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut proc = Proc::spawn("postgres", &program, &args, log_dir);
        wait_ready(&bin, port, || proc.assert_running());
        Some(Postgres { proc, port, data })
    }

    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates an empty database and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        createdb(self.port, name);
        self.url(name)
    }
}

/// `createdb NAME` on the server on `port`; panics if it fails.
fn createdb(port: u16, name: &str) {
    let bin = bin_dir().expect("installed");
    let out = Command::new(bin.join("createdb"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            name,
        ])
        .output()
        .expect("createdb runs");
    assert!(
        out.status.success(),
        "createdb {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGINT is PostgreSQL's fast shutdown: it disconnects clients rather than waiting
        // for them, so the exit follows at once.
        if !self.proc.has_exited() {
            self.proc.signal_and_wait("INT");
        }
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// One fresh store on each engine, for tests that check a module answers the same on both:
/// a SQLite file and a database on a private PostgreSQL server, both migrated. Fields drop in
/// order: the connections before the server.
pub struct Both {
    /// The SQLite store.
    pub sqlite: spotcheck_collector::store::db::Conn,
    /// The PostgreSQL store.
    pub postgres: spotcheck_collector::store::db::Conn,
    /// The SQLite store's URL (for more connections).
    pub sqlite_url: spotcheck_collector::store::db::DbUrl,
    /// The PostgreSQL store's URL (for more connections).
    pub pg_url: spotcheck_collector::store::db::DbUrl,
    _pg: Postgres,
    _dir: tempfile::TempDir,
}

impl Both {
    /// Both connections, SQLite first, for running one check on each.
    pub fn each(&self) -> [&spotcheck_collector::store::db::Conn; 2] {
        [&self.sqlite, &self.postgres]
    }
}

/// [`Both`], with the PostgreSQL database named `name`; `None` when PostgreSQL is not
/// installed and not required (`SPOTCHECK_REQUIRE_SERVERS`).
pub fn both(name: &str) -> Option<Both> {
    use spotcheck_collector::store::db::{self, Backend, DbUrl, Mode};
    let dir = tempfile::tempdir().unwrap();
    let pg = Postgres::start(dir.path())?;
    let pg_url: DbUrl = pg.create_database(name).parse().unwrap();
    let sqlite_url: DbUrl = format!("sqlite://{}", dir.path().join("s.db").display())
        .parse()
        .unwrap();
    let sqlite = db::connect(&sqlite_url, Mode::Write).unwrap();
    let postgres = db::connect(&pg_url, Mode::Write).unwrap();
    assert_eq!(sqlite.backend(), Backend::Sqlite);
    assert_eq!(postgres.backend(), Backend::Postgres);
    Some(Both {
        sqlite,
        postgres,
        sqlite_url,
        pg_url,
        _pg: pg,
        _dir: dir,
    })
}

/// The one server of this test process for the matrix's PostgreSQL leg
/// (`SPOTCHECK_TEST_STORE=postgres`, [`crate::store`]): started on first use, each test's store
/// a database of its own on it. A shell watches a pipe from this process and stops the server
/// (fast shutdown) and removes its files when the pipe closes, that is when this process
/// exits however it exits: Rust runs no destructors for statics, and a server outliving its
/// tests would hold its port and directory. Its output goes nowhere, so that it holds no pipe
/// of the caller's.
pub(crate) struct Shared {
    /// Its port on 127.0.0.1.
    pub port: u16,
    _watchdog: std::sync::Mutex<(std::process::Child, std::process::ChildStdin)>,
}

/// The process's [`Shared`] server, started on first use. Panics, saying what to install,
/// when PostgreSQL is missing: the matrix asked for it.
/// Settings of the shared server of the matrix's PostgreSQL leg: its databases are scratch
/// stores for functional tests, and no test crashes that server (collectors are killed, the
/// server is not), so flushing the WAL to disk at every commit buys nothing there and costs
/// the leg much of its time on a VM's disk. Tests about durability start servers of their own
/// ([`Postgres::start`]) with the defaults.
pub const SHARED_SETTINGS: [&str; 6] = [
    "-c",
    "fsync=off",
    "-c",
    "synchronous_commit=off",
    "-c",
    "full_page_writes=off",
];

pub(crate) fn shared() -> &'static Shared {
    static SHARED: std::sync::OnceLock<Shared> = std::sync::OnceLock::new();
    SHARED.get_or_init(|| {
        assert!(
            bin_dir().is_some(),
            "SPOTCHECK_TEST_STORE=postgres but PostgreSQL is not installed \
             (apt-get install postgresql; the tests run initdb and postgres from /usr/lib/postgresql/N/bin)"
        );
        let (bin, data) = init("-shared").expect("PostgreSQL is installed");
        let port = free_port();
        let (program, mut args) = server_command(&bin, &data, port);
        args.extend(SHARED_SETTINGS.iter().map(|s| s.to_string()));
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
            .arg(&program)
            .args(&args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("sh runs");
        let stdin = child.stdin.take().expect("piped");
        wait_ready(&bin, port, || {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "the tests' PostgreSQL server exited ({status}):\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        });
        Shared {
            port,
            _watchdog: std::sync::Mutex::new((child, stdin)),
        }
    })
}

impl Shared {
    /// Creates database `name` and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        createdb(self.port, name);
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}
