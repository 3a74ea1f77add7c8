//! Real time-series servers for the sink's tests: VictoriaMetrics (`/api/v2/write`, PromQL,
//! scraping) and InfluxDB 1.x (`/write`, InfluxQL), each on free ports in a test directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::{free_port, servers_required, wait_for, Proc};

fn have(program: &str) -> Option<PathBuf> {
    for dir in ["/usr/bin", "/usr/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(program);
        if p.exists() {
            return Some(p);
        }
    }
    None
}

/// Returns the program's path, or `None` (test skipped) unless servers are required.
pub fn server_binary(program: &str) -> Option<PathBuf> {
    let found = have(program);
    if found.is_none() {
        assert!(
            !servers_required(),
            "{program} is not installed and SPOTCHECK_REQUIRE_SERVERS=1 (apt-get install it; see .ci/run)"
        );
        eprintln!("skipping: {program} is not installed");
    }
    found
}

/// A VictoriaMetrics single-node server.
pub struct VictoriaMetrics {
    proc: Option<Proc>,
    program: PathBuf,
    args: Vec<String>,
    log_dir: PathBuf,
    /// Its HTTP port.
    pub port: u16,
    starts: usize,
}

impl VictoriaMetrics {
    /// Starts one with data in `dir/vm` (retention 100 years, so old timestamps are kept;
    /// samples of one series with one timestamp deduplicated), plus `extra` flags.
    pub fn start(dir: &Path, extra: &[String]) -> Option<VictoriaMetrics> {
        let program = server_binary("victoria-metrics")?;
        let port = free_port();
        let mut args = vec![
            format!("-storageDataPath={}", dir.join("vm").display()),
            format!("-httpListenAddr=127.0.0.1:{port}"),
            "-retentionPeriod=100y".into(),
            "-dedup.minScrapeInterval=1ms".into(),
            "-search.latencyOffset=0s".into(),
            "-loggerLevel=WARN".into(),
        ];
        args.extend(extra.iter().cloned());
        let mut vm = VictoriaMetrics {
            proc: None,
            program,
            args,
            log_dir: dir.to_owned(),
            port,
            starts: 0,
        };
        vm.restart();
        Some(vm)
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops it gracefully (SIGTERM: it flushes what it holds).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.signal_and_wait("TERM");
        }
    }

    /// (Re)starts it on the same port and data, and waits until it answers `/health`.
    pub fn restart(&mut self) {
        self.starts += 1;
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let mut proc = Proc::spawn(
            &format!("victoria-metrics-{}", self.starts),
            &self.program,
            &args,
            &self.log_dir,
        );
        let url = format!("{}/health", self.url());
        wait_for("VictoriaMetrics /health", Duration::from_secs(30), || {
            proc.assert_running();
            ureq::get(&url).call().ok().filter(|r| r.status() == 200)
        });
        self.proc = Some(proc);
    }

    /// Every sample of the series that `selector` matches: (labels, timestamp) → the largest
    /// value stored for it (a recomputed event bucket only grows). Duplicates of a point
    /// collapse here, so the map's size is the number of distinct points.
    pub fn export(&self, selector: &str) -> BTreeMap<(String, i64), f64> {
        let url = format!("{}/api/v1/export", self.url());
        let mut resp = ureq::post(&url)
            .send_form([("match[]", selector)])
            .expect("VictoriaMetrics export answers");
        let text = resp.body_mut().read_to_string().expect("export body");
        let mut out = BTreeMap::new();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let v: Value = serde_json::from_str(line).expect("export lines are JSON");
            let labels = v["metric"].to_string();
            let ts = v["timestamps"].as_array().expect("timestamps");
            let values = v["values"].as_array().expect("values");
            for (t, x) in ts.iter().zip(values) {
                let key = (labels.clone(), t.as_i64().expect("integer timestamps"));
                let x = x.as_f64().expect("numeric values");
                let slot = out.entry(key).or_insert(x);
                *slot = slot.max(x);
            }
        }
        out
    }

    /// A PromQL instant query's result vector.
    pub fn query(&self, promql: &str) -> Vec<Value> {
        let url = format!("{}/api/v1/query", self.url());
        let mut resp = ureq::post(&url)
            .send_form([("query", promql)])
            .expect("VictoriaMetrics query answers");
        let v: Value = resp.body_mut().read_json().expect("query JSON");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }
}

/// An InfluxDB 1.x server with its own config, data and ports.
pub struct Influx1 {
    _proc: Proc,
    /// Its HTTP port.
    pub port: u16,
}

impl Influx1 {
    /// Starts one in `dir/influx` and creates database `db`.
    pub fn start(dir: &Path, db: &str) -> Option<Influx1> {
        let program = server_binary("influxd")?;
        let (port, rpc) = (free_port(), free_port());
        let base = dir.join("influx");
        let conf = dir.join("influxdb.conf");
        std::fs::write(
            &conf,
            format!(
                "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n\
                 [meta]\n  dir = \"{b}/meta\"\n\
                 [data]\n  dir = \"{b}/data\"\n  wal-dir = \"{b}/wal\"\n  query-log-enabled = false\n\
                 [http]\n  bind-address = \"127.0.0.1:{port}\"\n  log-enabled = false\n\
                 [monitor]\n  store-enabled = false\n",
                b = base.display()
            ),
        )
        .unwrap();
        let conf = conf.display().to_string();
        let mut proc = Proc::spawn("influxd", &program, &["-config", &conf], dir);
        let ping = format!("http://127.0.0.1:{port}/ping");
        wait_for("influxd /ping", Duration::from_secs(30), || {
            proc.assert_running();
            ureq::get(&ping).call().ok().filter(|r| r.status() == 204)
        });
        let i = Influx1 { _proc: proc, port };
        i.query_raw(db, &format!("CREATE DATABASE \"{db}\""));
        Some(i)
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Runs InfluxQL; returns the JSON answer.
    pub fn query_raw(&self, db: &str, q: &str) -> Value {
        let url = format!("{}/query", self.url());
        let mut resp = ureq::post(&url)
            .send_form([("db", db), ("q", q), ("epoch", "ms")])
            .expect("influxd /query answers");
        resp.body_mut().read_json().expect("InfluxQL answers JSON")
    }

    /// The first value of the first series of `q`, as an integer (0 if no series).
    pub fn scalar(&self, db: &str, q: &str) -> i64 {
        let v = self.query_raw(db, q);
        v["results"][0]["series"][0]["values"][0][1]
            .as_i64()
            .unwrap_or(0)
    }
}

/// `GET /metrics` of a collector and the value of one sample line (exact name with labels).
pub fn metric(http: u16, name: &str) -> Option<f64> {
    let text = ureq::get(&format!("http://127.0.0.1:{http}/metrics"))
        .call()
        .ok()?
        .body_mut()
        .read_to_string()
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}
