//! Helpers for the end-to-end tests: build and start the real binaries, a real Mosquitto, and
//! read what the collector stored. Every wait polls an observable condition with a deadline.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

mod agent;
pub mod api;
pub mod browser;
pub mod cluster;
pub mod cluster_leader;
pub mod postgres;
pub mod store;
pub mod tls;
pub mod tsdb;
pub use agent::*;
/// What the tests read the store with, on either engine ([`store`]).
pub use spotcheck_collector::store::db::{args, Sql};

/// Whether tests that need external servers must fail rather than skip when one is missing.
/// `.ci/run` sets `SPOTCHECK_REQUIRE_SERVERS=1`.
pub fn servers_required() -> bool {
    std::env::var("SPOTCHECK_REQUIRE_SERVERS").is_ok_and(|v| v == "1")
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

/// The path of a workspace binary, built (debug) once per test process.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        // Not the variables cargo set for this test: some build scripts (ring's) rerun when
        // CARGO_MANIFEST_DIR changes, and the outer and this inner build would then rebuild
        // each other's dependencies every time.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if [
                "CARGO_MANIFEST_",
                "CARGO_PKG_",
                "CARGO_CRATE_",
                "CARGO_BIN_",
                "CARGO_PRIMARY_",
            ]
            .iter()
            .any(|p| key.starts_with(p))
                || key == "CARGO_TARGET_TMPDIR"
            {
                build.env_remove(key.as_ref());
            }
        }
        let status = build
            .args([
                "build",
                "-q",
                "-p",
                "spotcheck-collector",
                "-p",
                "spotcheck-agent",
                "-p",
                "spotcheck-demo",
            ])
            .current_dir(workspace_root())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the binaries failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target"));
        target.join("debug")
    });
    dir.join(name)
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` every 20 ms until it returns `Some`, or panics after `timeout` with `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process that is killed when dropped; its output goes to files.
pub struct Proc {
    child: Child,
    name: String,
    out: PathBuf,
}

impl Proc {
    /// Starts `program args…`, output to `log_dir/name.log`.
    pub fn spawn(name: &str, program: &Path, args: &[&str], log_dir: &Path) -> Proc {
        let out = log_dir.join(format!("{name}.log"));
        let log = File::create(&out).unwrap();
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .env("RUST_LOG", "info")
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Proc {
            child,
            name: name.to_owned(),
            out,
        }
    }

    /// Its output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Panics with its log if it has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("{} exited with {status}:\n{}", self.name, self.log());
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. "KILL", "TERM") and waits for the exit.
    pub fn signal_and_wait(&mut self, signal: &str) -> std::process::ExitStatus {
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} failed");
        self.child.wait().unwrap()
    }

    /// Sends `signal` (e.g. "STOP", "CONT") without waiting for anything.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} failed");
    }

    /// Whether the process has exited (without waiting).
    pub fn has_exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    /// Waits for the process to exit by itself.
    pub fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        wait_for(&format!("{} to exit", self.name), timeout, || {
            self.child.try_wait().unwrap()
        })
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("----- {} log -----\n{}", self.name, self.log());
        }
    }
}

/// A Mosquitto started for one test on a free port, without persistence.
pub struct Mosquitto {
    /// The broker process.
    pub proc: Proc,
    /// Its port.
    pub port: u16,
}

impl Mosquitto {
    /// Starts Mosquitto, or returns `None` (with a note) when it is not installed and
    /// [`servers_required`] is false.
    pub fn start(dir: &Path) -> Option<Mosquitto> {
        Mosquitto::start_on(dir, free_port())
    }

    /// [`Mosquitto::start`] on a given port (e.g. one an agent was already told to use).
    pub fn start_on(dir: &Path, port: u16) -> Option<Mosquitto> {
        let Some(program) = mosquitto_program() else {
            assert!(
                !servers_required(),
                "mosquitto is not installed but SPOTCHECK_REQUIRE_SERVERS=1"
            );
            eprintln!("skipping: mosquitto is not installed (apt-get install mosquitto)");
            return None;
        };
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 1000\nmax_queued_messages 100000\npersistence false\n"),
        )
        .unwrap();
        let mut proc = Proc::spawn("mosquitto", &program, &["-c", conf.to_str().unwrap()], dir);
        wait_for("mosquitto to listen", Duration::from_secs(10), || {
            proc.assert_running();
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Some(Mosquitto { proc, port })
    }

    /// Starts a new Mosquitto on the same port with the same configuration (no persistence,
    /// so it remembers nothing), after the previous process has exited (for example after
    /// `proc.signal_and_wait("KILL")`). Its log is `mosquitto-restart-N.log`.
    pub fn restart(&mut self, dir: &Path) {
        assert!(
            self.proc.has_exited(),
            "stop the broker before restarting it"
        );
        let program = mosquitto_program().expect("mosquitto was installed a moment ago");
        let conf = dir.join("mosquitto.conf");
        let n = (1..)
            .find(|n| !dir.join(format!("mosquitto-restart-{n}.log")).exists())
            .unwrap();
        let mut proc = Proc::spawn(
            &format!("mosquitto-restart-{n}"),
            &program,
            &["-c", conf.to_str().unwrap()],
            dir,
        );
        let port = self.port;
        wait_for("mosquitto to listen again", Duration::from_secs(10), || {
            proc.assert_running();
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        self.proc = proc;
    }
}

fn mosquitto_program() -> Option<PathBuf> {
    ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// `mosquitto_pub`, for tests that need a third-party client: publishes `payload` as is,
/// anonymously (an external broker that allows it).
pub fn mosquitto_pub(port: u16, topic: &str, payload: &[u8]) {
    mosquitto_pub_as(port, topic, payload, None);
}

/// `mosquitto_pub` with an optional login `(client id, username, password)`; panics if it fails.
pub fn mosquitto_pub_as(port: u16, topic: &str, payload: &[u8], login: Option<(&str, &str, &str)>) {
    assert!(
        try_mosquitto_pub(port, topic, payload, login),
        "mosquitto_pub failed on {topic}"
    );
}

/// `mosquitto_pub` with an optional login `(client id, username, password)`; whether the
/// broker took the message (false if it refused the connection).
pub fn try_mosquitto_pub(
    port: u16,
    topic: &str,
    payload: &[u8],
    login: Option<(&str, &str, &str)>,
) -> bool {
    let program = Path::new("/usr/bin/mosquitto_pub");
    if !program.exists() {
        panic!("mosquitto_pub is not installed (apt-get install mosquitto-clients)");
    }
    let port = port.to_string();
    let mut args = vec!["-h", "127.0.0.1", "-p", &port, "-q", "1", "-t", topic, "-s"];
    if let Some((id, user, password)) = login {
        args.extend(["-i", id, "-u", user, "-P", password]);
    }
    let mut child = Command::new(program)
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(payload).unwrap();
    child.wait().unwrap().success()
}

/// Where the tests keep agent `agent`'s credential file for the collector in `dir`.
pub fn credential_path(dir: &Path, agent: &str) -> PathBuf {
    dir.join("credentials").join(format!("{agent}.credential"))
}

/// The credential in `dir` of `agent` (issued when the collector started).
pub fn credential(dir: &Path, agent: &str) -> spotcheck_agent::credential::Credential {
    let id = spotcheck_protocol::AgentId::new(agent).unwrap();
    spotcheck_agent::credential::Credential::load(&credential_path(dir, agent), &id)
        .unwrap_or_else(|e| panic!("credential of {agent}: {e}"))
}

/// `spotcheck-collector agents ACTION AGENT --data DATA [--out FILE]`; panics if it fails.
pub fn agents_cli(data: &Path, action: &str, agent: &str, out: Option<&Path>) {
    let mut args = vec!["agents".to_owned(), action.to_owned(), agent.to_owned()];
    args.extend(store::cli_args(data));
    if let Some(out) = out {
        args.extend(["--out".to_owned(), out.display().to_string()]);
    }
    let o = Command::new(bin("spotcheck-collector"))
        .args(&args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "agents {action} {agent}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Issues `agent` a credential in the data directory the collector in `dir` uses (`DIR/collector`)
/// unless [`credential_path`] already holds one; returns that path.
pub fn ensure_credential(dir: &Path, agent: &str) -> PathBuf {
    let path = credential_path(dir, agent);
    if !path.exists() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        agents_cli(&dir.join("collector"), "add", agent, Some(&path));
    }
    path
}

/// Issues a credential (into [`credential_path`]) for every `id = "…"` of an `[[agents]]` table
/// in `extra` that has none there yet.
fn provision(dir: &Path, data: &Path, extra: &str) {
    let mut in_agents = false;
    for line in extra.lines().map(str::trim) {
        if line.starts_with('[') {
            in_agents = line == "[[agents]]";
            continue;
        }
        let Some(id) = line
            .strip_prefix("id = \"")
            .and_then(|r| r.strip_suffix('"'))
            .filter(|_| in_agents)
        else {
            continue;
        };
        let path = credential_path(dir, id);
        if !path.exists() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            agents_cli(data, "add", id, Some(&path));
        }
    }
}

/// The agent level of a batch or status topic (`spotcheck/v1/{d}/{e}/{agent}/…` or
/// `spotcheck/v1/agents/{agent}/status`).
fn topic_agent(topic: &str) -> Option<&str> {
    let levels: Vec<&str> = topic.split('/').collect();
    match levels.as_slice() {
        ["spotcheck", "v1", "agents", agent, _] => Some(agent),
        ["spotcheck", "v1", _, _, agent, _] => Some(agent),
        _ => None,
    }
}

/// Whether `mosquitto_pub` is installed; without it a test skips, unless servers are
/// required (`SPOTCHECK_REQUIRE_SERVERS=1`), when it fails.
pub fn have_mosquitto_pub() -> bool {
    if std::path::Path::new("/usr/bin/mosquitto_pub").exists() {
        return true;
    }
    assert!(
        !servers_required(),
        "mosquitto_pub is not installed but SPOTCHECK_REQUIRE_SERVERS=1"
    );
    eprintln!("skipping: mosquitto_pub is not installed (apt-get install mosquitto-clients)");
    false
}

/// A collector run by the real binary, with its own data directory.
pub struct Collector {
    /// The process.
    pub proc: Proc,
    /// HTTP address.
    pub http: SocketAddr,
    /// MQTT port (embedded or external).
    pub mqtt_port: u16,
    /// Its data directory.
    pub data: PathBuf,
    /// The test's directory (agent credentials are in `DIR/credentials/`).
    pub dir: PathBuf,
    /// Whether ingest reads its embedded broker (which needs a login).
    pub embedded: bool,
}

/// One `[[agents]]` entry.
pub fn agent_binding(agent: &str, entity: &str, domain: &str) -> String {
    format!("[[agents]]\nid = \"{agent}\"\nentity = \"{entity}\"\ndomain = \"{domain}\"\n")
}

impl Collector {
    /// Starts `spotcheck-collector serve` with an embedded broker (when `broker_port` is
    /// `None`) or against `127.0.0.1:broker_port`; `extra` is appended to the config.
    pub fn start(dir: &Path, broker_port: Option<u16>, extra: &str) -> Collector {
        Collector::start_with_mqtt(dir, broker_port, "", extra)
    }

    /// [`Collector::start`] with `mqtt_keys` (TOML lines) added to its `[mqtt]` table.
    pub fn start_with_mqtt(
        dir: &Path,
        broker_port: Option<u16>,
        mqtt_keys: &str,
        extra: &str,
    ) -> Collector {
        let url = broker_port.map(|p| (format!("mqtt://127.0.0.1:{p}"), p));
        Collector::start_at(dir, url, mqtt_keys, extra)
    }

    /// [`Collector::start_with_mqtt`] against the broker at `url` (listening on `port`).
    pub fn start_external(
        dir: &Path,
        url: &str,
        port: u16,
        mqtt_keys: &str,
        extra: &str,
    ) -> Collector {
        Collector::start_at(dir, Some((url.to_owned(), port)), mqtt_keys, extra)
    }

    fn start_at(
        dir: &Path,
        broker: Option<(String, u16)>,
        mqtt_keys: &str,
        extra: &str,
    ) -> Collector {
        let broker_port = broker.as_ref().map(|(_, p)| *p);
        let data = dir.join("collector");
        // On the matrix's PostgreSQL leg, the store is a database of this data directory's own.
        let extra = &store::configure(&data, extra);
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let (mqtt, mqtt_port) = match broker {
            Some((url, p)) => (format!("broker = \"{url}\""), p),
            None => {
                let p = free_port();
                (format!("embedded_listen = \"127.0.0.1:{p}\""), p)
            }
        };
        let config = dir.join("collector.toml");
        provision(dir, &data, extra);
        let (head, tail) = split_tables(extra);
        std::fs::write(
            &config,
            format!(
                "data_dir = {:?}\n{head}\n[http]\nlisten = \"{http}\"\n[mqtt]\n{mqtt}\n{mqtt_keys}\n{tail}",
                data.display().to_string()
            ),
        )
        .unwrap();
        let proc = Proc::spawn(
            "collector",
            &bin("spotcheck-collector"),
            &["serve", "--config", config.to_str().unwrap()],
            dir,
        );
        let mut c = Collector {
            proc,
            http,
            mqtt_port,
            data,
            dir: dir.to_owned(),
            embedded: broker_port.is_none(),
        };
        c.wait_healthy();
        c
    }

    /// Starts it again with the same configuration and data (after a kill), as process
    /// `name`, and waits until it is healthy.
    pub fn restart(&mut self, name: &str) {
        let config = self.dir.join("collector.toml");
        self.proc = Proc::spawn(
            name,
            &bin("spotcheck-collector"),
            &["serve", "--config", config.to_str().unwrap()],
            &self.dir,
        );
        self.wait_healthy();
    }

    /// Waits until `/healthz` answers 200.
    pub fn wait_healthy(&mut self) {
        let url = format!("http://{}/healthz", self.http);
        wait_for("collector /healthz", Duration::from_secs(30), || {
            self.proc.assert_running();
            ureq::get(&url).call().ok().filter(|r| r.status() == 200)
        });
    }

    /// `GET /api/v1/stats`.
    pub fn stats(&self) -> Value {
        ureq::get(&format!("http://{}/api/v1/stats", self.http))
            .call()
            .expect("stats answers")
            .body_mut()
            .read_json()
            .expect("stats is JSON")
    }

    /// One counter of `/api/v1/stats`.
    pub fn stat(&self, name: &str) -> u64 {
        self.stats()[name]
            .as_u64()
            .unwrap_or_else(|| panic!("stats has no integer {name}"))
    }

    /// Waits until counter `name` reaches `at_least`.
    pub fn wait_stat(&mut self, name: &str, at_least: u64, timeout: Duration) -> u64 {
        wait_for(&format!("{name} ≥ {at_least}"), timeout, || {
            self.proc.assert_running();
            Some(self.stat(name)).filter(|v| *v >= at_least)
        })
    }

    /// A read-only connection to its store (SQLite or PostgreSQL, [`store`]).
    pub fn db(&self) -> spotcheck_collector::store::db::Conn {
        open_db(&self.data)
    }

    /// Publishes `payload` on `topic` with `mosquitto_pub`, as the agent named in the topic
    /// would: signed with its key (a batch or status payload, when the agent has a
    /// credential) and, on the embedded broker, logged in as that agent (or, for a topic of
    /// an agent without a credential, as any agent that has one).
    pub fn publish(&self, topic: &str, payload: &[u8]) {
        let agent = topic_agent(topic).filter(|a| credential_path(&self.dir, a).exists());
        // Only JSON objects can be signed; malformed test payloads go as they are.
        let payload = match agent {
            Some(a) if payload.ends_with(b"}") => {
                spotcheck_protocol::mac::sign(&credential(&self.dir, a).key, payload)
            }
            _ => payload.to_vec(),
        };
        self.publish_unsigned_as(agent, topic, &payload);
    }

    /// Publishes `payload` as given (no MAC added), logged in on the embedded broker as
    /// `login_as` (or as any agent with a credential).
    pub fn publish_unsigned_as(&self, login_as: Option<&str>, topic: &str, payload: &[u8]) {
        if !self.embedded {
            return mosquitto_pub(self.mqtt_port, topic, payload);
        }
        let login = match login_as {
            Some(a) => a.to_owned(),
            None => std::fs::read_dir(self.dir.join("credentials"))
                .ok()
                .and_then(|mut d| d.next())
                .and_then(|e| e.ok())
                .and_then(|e| {
                    e.path()
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                })
                .expect("the embedded broker needs a login: register an agent"),
        };
        let password = credential(&self.dir, &login).password.0;
        let client_id = format!("{login}-test-{}", free_port());
        mosquitto_pub_as(
            self.mqtt_port,
            topic,
            payload,
            Some((&client_id, &login, &password)),
        );
    }
}

/// A read-only connection to the store of a collector data directory (SQLite or PostgreSQL,
/// [`store`]).
pub fn open_db(data: &Path) -> spotcheck_collector::store::db::Conn {
    store::open(data)
}

/// One integer from a query (`CAST(… AS BIGINT)` a `sum` of integers: PostgreSQL widens it).
pub fn count(db: &impl spotcheck_collector::store::db::Sql, sql: &str) -> i64 {
    store::count(db, sql)
}

/// Splits TOML snippets into top-level keys (which must come before any table) and tables.
fn split_tables(extra: &str) -> (String, String) {
    match extra.find('[') {
        Some(i) if extra[..i].trim().is_empty() || extra[..i].ends_with('\n') => {
            (extra[..i].to_owned(), extra[i..].to_owned())
        }
        _ => (extra.to_owned(), String::new()),
    }
}

/// Writes an agent config for a simulated feed and returns its path.
pub fn agent_config(
    dir: &Path,
    agent: &str,
    entity: &str,
    domain: &str,
    broker_port: u16,
    batches: u64,
    interval_ms: u64,
) -> PathBuf {
    let path = dir.join(format!("{agent}.toml"));
    let spool = dir.join("spool").join(agent);
    std::fs::write(
        &path,
        format!(
            "[agent]\nid = \"{agent}\"\nentity = \"{entity}\"\ndomain = \"{domain}\"\ncredential_file = {:?}\n\n[mqtt]\nbroker = \"mqtt://127.0.0.1:{broker_port}\"\nack_timeout_ms = 2000\n\n[spool]\ndir = {:?}\n\n[[sources]]\ntype = \"simulate\"\nfeed = \"{domain}\"\ninterval_ms = {interval_ms}\nseed = 7\nbatches = {batches}\n",
            ensure_credential(dir, agent).display().to_string(),
            spool.display().to_string()
        ),
    )
    .unwrap();
    path
}

/// Starts `spotcheck-agent run --config FILE`.
pub fn start_agent(dir: &Path, name: &str, config: &Path) -> Proc {
    Proc::spawn(
        name,
        &bin("spotcheck-agent"),
        &["run", "--config", config.to_str().unwrap()],
        dir,
    )
}

/// A small tmpfs mounted at a directory for the test's life (needs root: `None` without, and
/// the test then skips, saying so); unmounted when dropped.
pub struct SmallDisk(PathBuf);

impl SmallDisk {
    /// Mounts a tmpfs of `size` (e.g. `"1536k"`, `"24m"`) at `at`, creating the directory.
    pub fn mount(at: &Path, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallDisk(at.to_owned()))
    }

    /// Bytes free on it now.
    pub fn free_bytes(&self) -> u64 {
        let out = Command::new("df")
            .args(["-B1", "--output=avail"])
            .arg(&self.0)
            .output()
            .expect("df runs");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .expect("df prints the free bytes")
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").args(["-l"]).arg(&self.0).status();
    }
}
