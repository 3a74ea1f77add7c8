//! Several `spotcheck-collector serve` processes on one private PostgreSQL and one Mosquitto
//! (a shared subscription, `mqtt.shared_group`), with real agents: the pieces of the cluster
//! tests (`tests/tests/cluster_ingest.rs`). Every wait polls a condition with a deadline.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use spotcheck_collector::store::db::{self, args, Conn, DbUrl, Mode, Sql};
use spotcheck_collector::store::leader::Role;

use crate::postgres::Postgres;
use crate::{bin, free_port, wait_for, Mosquitto, Proc};

/// The shared-subscription group every collector of a test cluster joins.
pub const GROUP: &str = "cluster";

/// One collector of the cluster.
pub struct Node {
    /// Its name (`collector-N`): the MQTT client id, the log file's name.
    pub name: String,
    /// The process.
    pub proc: Proc,
    /// Its HTTP address.
    pub http: SocketAddr,
    /// Its data directory (its own: the store is shared, the directory is not).
    pub data: PathBuf,
    /// Whether the test killed it.
    pub killed: bool,
}

impl Node {
    /// `GET /api/v1/stats` counter `name`, or 0 if it does not answer.
    pub fn stat(&self, name: &str) -> u64 {
        ureq::get(&format!("http://{}/api/v1/stats", self.http))
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_json::<serde_json::Value>().ok())
            .and_then(|v| v[name].as_u64())
            .unwrap_or(0)
    }

    /// The bootstrap admin token this collector wrote into its data directory (every
    /// collector's is a token of the one `admin` user in the shared store).
    pub fn token(&self) -> String {
        crate::api::admin_token(&self.data)
    }

    /// `METHOD path` with the admin token and a JSON body (empty: none); the status and the
    /// body as JSON (`null` when it is not JSON).
    pub fn call(&self, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
        let url = format!("http://{}{path}", self.http);
        let auth = format!("Bearer {}", self.token());
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build();
        let agent = ureq::Agent::new_with_config(config);
        let mut response = match method {
            "GET" => agent.get(&url).header("Authorization", &auth).call(),
            "POST" => agent
                .post(&url)
                .header("Authorization", &auth)
                .header("Content-Type", "application/json")
                .send(body),
            "PUT" => agent
                .put(&url)
                .header("Authorization", &auth)
                .header("Content-Type", "application/json")
                .send(body),
            other => panic!("no method {other}"),
        }
        .unwrap_or_else(|e| panic!("{method} {path} on {}: {e}", self.name));
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or_default())
    }

    /// Kills it with SIGKILL and waits for its exit.
    pub fn kill(&mut self) {
        self.proc.signal_and_wait("KILL");
        self.killed = true;
    }
}

/// One agent of the cluster test: a pool simulator sending `batches` batches of
/// `samples × 6` readings as fast as `interval_ms` allows.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    /// Agent id.
    pub id: String,
    /// The entity it reports for.
    pub entity: String,
    /// Batches it sends in all.
    pub batches: u64,
    /// Samples per batch (six readings each).
    pub samples: u64,
    /// One batch per this many milliseconds.
    pub interval_ms: u64,
}

impl AgentSpec {
    /// Readings it sends in all.
    pub fn readings(&self) -> u64 {
        self.batches * self.samples * 6
    }
}

/// A PostgreSQL, a Mosquitto and the collectors, with their agents' credentials issued into
/// the store. Fields drop in order: collectors, then the broker, then the database.
pub struct Cluster {
    /// The collectors, in start order.
    pub nodes: Vec<Node>,
    /// The broker they share.
    pub mosquitto: Mosquitto,
    /// The store's URL.
    pub url: String,
    /// The test's directory (logs, data directories, credentials, spools).
    pub dir: PathBuf,
    agents: Vec<AgentSpec>,
    _pg: Postgres,
}

impl Cluster {
    /// Starts PostgreSQL, Mosquitto and `n` collectors (one after the other, each healthy
    /// before the next starts) bound to `agents`; `None` when a server is missing and not
    /// required.
    pub fn start(dir: &Path, n: usize, agents: &[AgentSpec]) -> Option<Cluster> {
        let pg = Postgres::start(dir)?;
        let mosquitto = Mosquitto::start(dir)?;
        let url = pg.create_database("cluster");
        for a in agents {
            let out = credential_file(dir, &a.id);
            std::fs::create_dir_all(out.parent().unwrap()).unwrap();
            let o = Command::new(bin("spotcheck-collector"))
                .args(["agents", "add", &a.id, "--store", &url, "--out"])
                .arg(&out)
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "agents add {}: {}",
                a.id,
                String::from_utf8_lossy(&o.stderr)
            );
        }
        let mut cluster = Cluster {
            nodes: Vec::new(),
            mosquitto,
            url,
            dir: dir.to_owned(),
            agents: agents.to_vec(),
            _pg: pg,
        };
        for i in 0..n {
            cluster.start_node(i);
        }
        Some(cluster)
    }

    fn start_node(&mut self, i: usize) {
        let name = format!("collector-{i}");
        let data = self.dir.join(&name);
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut config = format!(
            "data_dir = {:?}\n[store]\nurl = \"{}\"\n[http]\nlisten = \"{http}\"\n[mqtt]\nbroker = \"mqtt://127.0.0.1:{}\"\nclient_id = \"{name}\"\nshared_group = \"{GROUP}\"\n",
            data.display().to_string(),
            self.url,
            self.mosquitto.port,
        );
        for a in &self.agents {
            config.push_str(&crate::agent_binding(&a.id, &a.entity, "pool"));
        }
        let path = self.dir.join(format!("{name}.toml"));
        std::fs::write(&path, config).unwrap();
        let mut proc = Proc::spawn(
            &name,
            &bin("spotcheck-collector"),
            &["serve", "--config", path.to_str().unwrap()],
            &self.dir,
        );
        let health = format!("http://{http}/healthz");
        wait_for(&format!("{name} /healthz"), Duration::from_secs(60), || {
            proc.assert_running();
            ureq::get(&health).call().ok().filter(|r| r.status() == 200)
        });
        self.nodes.push(Node {
            name,
            proc,
            http,
            data,
            killed: false,
        });
    }

    /// Starts every agent (`spotcheck-agent run`), each with its own spool.
    pub fn start_agents(&self) -> Vec<Proc> {
        self.agents
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let path = self.dir.join(format!("{}.toml", a.id));
                std::fs::write(&path, self.agent_config(i as u64, a)).unwrap();
                Proc::spawn(
                    &a.id,
                    &bin("spotcheck-agent"),
                    &["run", "--config", path.to_str().unwrap()],
                    &self.dir,
                )
            })
            .collect()
    }

    fn agent_config(&self, seed: u64, a: &AgentSpec) -> String {
        // fsync off: the agents are not killed here, and fsyncing every append would make
        // the disk, not the cluster, the bottleneck.
        format!(
            "[agent]\nid = \"{}\"\nentity = \"{}\"\ndomain = \"pool\"\ncredential_file = {:?}\n\n[mqtt]\nbroker = \"mqtt://127.0.0.1:{}\"\nack_timeout_ms = 5000\nmax_in_flight = 256\n\n[spool]\ndir = {:?}\nfsync = false\n\n[[sources]]\ntype = \"simulate\"\nfeed = \"pool\"\ninterval_ms = {}\nseed = {seed}\nbatches = {}\nrecords_per_batch = {}\n",
            a.id,
            a.entity,
            credential_file(&self.dir, &a.id).display().to_string(),
            self.mosquitto.port,
            self.dir.join("spool").join(&a.id).display().to_string(),
            a.interval_ms,
            a.batches,
            a.samples,
        )
    }

    /// Readings all agents send.
    pub fn readings_sent(&self) -> u64 {
        self.agents.iter().map(AgentSpec::readings).sum()
    }

    /// Batches all agents send.
    pub fn batches_sent(&self) -> u64 {
        self.agents.iter().map(|a| a.batches).sum()
    }

    /// A read connection to the shared store.
    pub fn store(&self) -> Conn {
        let url: DbUrl = self.url.parse().unwrap();
        db::connect(&url, Mode::Read).unwrap()
    }

    /// The collectors not killed.
    pub fn live(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| !n.killed)
    }

    /// Readings the live collectors have committed since they started, by their stats.
    pub fn ingested(&self) -> u64 {
        self.live().map(|n| n.stat("readings_ingested")).sum()
    }

    /// The index of the collector whose store connection holds the leader's advisory lock
    /// (`store::leader`), found through the connection's client port, or `None` while no
    /// collector holds it (a build whose `serve` does not campaign).
    pub fn leader(&self) -> Option<usize> {
        let pids: Vec<Option<u32>> = self
            .nodes
            .iter()
            .map(|n| (!n.killed).then(|| n.proc.pid()))
            .collect();
        lock_holder(&self.store(), Role::Collector.lock_key(), &pids)
    }

    /// Panics if any collector's log shows a panic.
    pub fn assert_no_panics(&self) {
        for n in &self.nodes {
            let log = n.proc.log();
            assert!(!log.contains("panicked at"), "{} panicked:\n{log}", n.name);
        }
    }

    /// `spotcheck-collector audit verify --store URL`: its output, panicking if it fails.
    pub fn audit_verify(&self) -> String {
        let o = Command::new(bin("spotcheck-collector"))
            .args(["audit", "verify", "--store", &self.url])
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success() && out.starts_with("ok"),
            "audit verify failed: {out}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        out
    }
}

/// Which of `pids` (`None`: skip) holds the session-level advisory lock `key` on the server
/// `store` is connected to, through the holding connection's client port and the process
/// that has that socket open.
pub fn lock_holder(store: &Conn, key: i64, pids: &[Option<u32>]) -> Option<usize> {
    let ports: Vec<i64> = store
        .query(
            "SELECT CAST(a.client_port AS BIGINT) FROM pg_locks l
             JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
               AND ((CAST(l.classid AS BIGINT) << 32) | CAST(l.objid AS BIGINT)) = $1",
            args![key],
            |r| r.get(0),
        )
        .unwrap();
    let port = u16::try_from(*ports.first()?).ok()?;
    let inode = socket_inode(port)?;
    pids.iter()
        .position(|p| p.is_some_and(|pid| holds_socket(pid, inode)))
}

/// Where the test keeps `agent`'s credential file.
pub fn credential_file(dir: &Path, agent: &str) -> PathBuf {
    dir.join("credentials").join(format!("{agent}.credential"))
}

/// The inode of the TCP socket bound locally to 127.0.0.1:`port` (IPv4 or IPv6 table).
fn socket_inode(port: u16) -> Option<u64> {
    let want = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|t| t.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
        .find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address rem_address st … inode (the tenth field)
            (f.len() > 9 && f[1].ends_with(&want))
                .then(|| f[9].parse().ok())
                .flatten()
        })
}

/// Whether process `pid` has the socket `inode` open.
fn holds_socket(pid: u32, inode: u64) -> bool {
    let want = format!("socket:[{inode}]");
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(Result::ok)
                .any(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy() == want))
        })
        .unwrap_or(false)
}

/// One integer from the store.
pub fn one(store: &Conn, sql: &str) -> i64 {
    store.query_row(sql, args![], |r| r.get(0)).unwrap()
}
