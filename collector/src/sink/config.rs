//! `[sink]`: where committed readings go (an InfluxDB v2 write API, or v1 `/write`), read in
//! two steps like the rest of the configuration.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::line::Precision;

/// Which write API the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// `POST /api/v2/write?org=&bucket=&precision=`: InfluxDB 2.x/3.x, VictoriaMetrics.
    V2,
    /// `POST /write?db=&rp=&precision=`: InfluxDB 1.x.
    V1,
}

/// `[sink]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSinkConfig {
    /// The server's base URL, e.g. `http://influx:8086`. Absent: no sink.
    pub url: Option<String>,
    /// `v2` (default) or `v1`.
    pub api: Api,
    /// v2: the organization.
    pub org: String,
    /// v2: the bucket.
    pub bucket: String,
    /// v1: the database.
    pub database: String,
    /// v1: the retention policy (absent: the database's default).
    pub retention_policy: Option<String>,
    /// The name of an environment variable that holds the API token.
    pub token_env: Option<String>,
    /// A file that holds the API token (mode 0600 advised).
    pub token_file: Option<PathBuf>,
    /// Timestamp unit of the lines sent.
    pub precision: Precision,
    /// Points per write request (at most; a request never splits a stored chunk).
    pub batch_points: usize,
    /// A smaller batch goes out after this many milliseconds.
    pub flush_interval_ms: u64,
    /// Points that may wait for the server; beyond this, the oldest are skipped (they stay in
    /// Spotcheck's store) and counted.
    pub backlog_max_points: u64,
    /// Gzip request bodies.
    pub gzip: bool,
    /// Per-request timeout, in seconds.
    pub timeout_s: u64,
    /// Longest wait between retries, in seconds.
    pub max_backoff_s: u64,
    /// The CPU niceness of the sink's threads (Linux: 0 normal to 19 lowest), so that on a
    /// shared machine the sink yields the CPU to ingest (docs/tsdb.md).
    pub nice: i32,
}

impl Default for RawSinkConfig {
    fn default() -> Self {
        RawSinkConfig {
            url: None,
            api: Api::V2,
            org: "spotcheck".into(),
            bucket: "spotcheck".into(),
            database: "spotcheck".into(),
            retention_policy: None,
            token_env: None,
            token_file: None,
            precision: Precision::Ms,
            batch_points: 5000,
            flush_interval_ms: 1000,
            backlog_max_points: 50_000_000,
            gzip: true,
            timeout_s: 10,
            max_backoff_s: 30,
            nice: super::SINK_NICE,
        }
    }
}

/// An API token. Never printed: `Debug` shows `Secret(***)`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a token.
    pub fn new(token: String) -> Secret {
        Secret(token)
    }

    /// The token, for the `Authorization` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A checked `[sink]`.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// The full write URL, query included.
    pub write_url: String,
    /// The base URL as configured (for logs and the dead-letter topic; holds no token).
    pub target: String,
    /// The API token, if any.
    pub token: Option<Secret>,
    /// Timestamp unit.
    pub precision: Precision,
    /// Points per request.
    pub batch_points: usize,
    /// Flush interval.
    pub flush_interval: Duration,
    /// Backlog bound, in points.
    pub backlog_max_points: u64,
    /// Gzip bodies.
    pub gzip: bool,
    /// Request timeout.
    pub timeout: Duration,
    /// Longest retry wait.
    pub max_backoff: Duration,
    /// The niceness of the sink's threads (0–19).
    pub nice: i32,
}

fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl RawSinkConfig {
    /// Checks `[sink]`, adding every problem to `problems`; `None` when there is no sink or a
    /// problem. Reads the token from its variable or file.
    pub fn validate(&self, problems: &mut Vec<String>) -> Option<SinkConfig> {
        let url = self.url.as_ref()?;
        let before = problems.len();
        let base = url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://"))
            || base.len() <= "https://".len()
        {
            problems.push(format!(
                "sink.url = {url:?}: write the server's base URL, e.g. http://127.0.0.1:8086"
            ));
        }
        if base.contains(['?', '#', ' ']) {
            problems.push(format!(
                "sink.url = {url:?}: give the base URL only; org, bucket and database have their own keys"
            ));
        }
        let precision = self.precision.as_param();
        let write_url = match self.api {
            Api::V2 => {
                for (key, v) in [("sink.org", &self.org), ("sink.bucket", &self.bucket)] {
                    if v.is_empty() {
                        problems.push(format!("{key} is empty; the v2 write API needs it"));
                    }
                }
                format!(
                    "{base}/api/v2/write?org={}&bucket={}&precision={precision}",
                    query_escape(&self.org),
                    query_escape(&self.bucket)
                )
            }
            Api::V1 => {
                if self.database.is_empty() {
                    problems.push("sink.database is empty; the v1 write API needs it".into());
                }
                let rp = self
                    .retention_policy
                    .as_deref()
                    .map(|rp| format!("&rp={}", query_escape(rp)))
                    .unwrap_or_default();
                format!(
                    "{base}/write?db={}{rp}&precision={precision}",
                    query_escape(&self.database)
                )
            }
        };
        let token = match (&self.token_env, &self.token_file) {
            (Some(_), Some(_)) => {
                problems.push("sink.token_env and sink.token_file are both set; keep one".into());
                None
            }
            (Some(var), None) => match std::env::var(var) {
                Ok(t) if !t.trim().is_empty() => Some(Secret::new(t.trim().to_owned())),
                _ => {
                    problems.push(format!(
                        "sink.token_env = {var:?}: the variable is not set or empty; export it before starting"
                    ));
                    None
                }
            },
            (None, Some(path)) => match std::fs::read_to_string(path) {
                Ok(t) if !t.trim().is_empty() => Some(Secret::new(t.trim().to_owned())),
                Ok(_) => {
                    problems.push(format!(
                        "sink.token_file = {}: the file is empty",
                        path.display()
                    ));
                    None
                }
                Err(e) => {
                    problems.push(format!("sink.token_file = {}: {e}", path.display()));
                    None
                }
            },
            (None, None) => None,
        };
        if !(1..=1_000_000).contains(&self.batch_points) {
            problems.push(format!(
                "sink.batch_points = {}: use 1 to 1000000 (5000 is a good start)",
                self.batch_points
            ));
        }
        if self.flush_interval_ms == 0 {
            problems.push("sink.flush_interval_ms must be at least 1".into());
        }
        if self.backlog_max_points < self.batch_points as u64 {
            problems.push(format!(
                "sink.backlog_max_points = {} is below sink.batch_points = {}; the backlog must hold at least one batch",
                self.backlog_max_points, self.batch_points
            ));
        }
        if self.timeout_s == 0 {
            problems.push("sink.timeout_s must be at least 1".into());
        }
        if self.max_backoff_s == 0 {
            problems.push("sink.max_backoff_s must be at least 1".into());
        }
        if !(0..=19).contains(&self.nice) {
            problems.push(format!(
                "sink.nice = {}: use 0 (normal priority) to 19 (lowest); 10 lets ingest go first on a shared machine",
                self.nice
            ));
        }
        (problems.len() == before).then(|| SinkConfig {
            write_url,
            target: base.to_owned(),
            token,
            precision: self.precision,
            batch_points: self.batch_points,
            flush_interval: Duration::from_millis(self.flush_interval_ms),
            backlog_max_points: self.backlog_max_points,
            gzip: self.gzip,
            timeout: Duration::from_secs(self.timeout_s),
            max_backoff: Duration::from_secs(self.max_backoff_s),
            nice: self.nice,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> RawSinkConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn no_url_means_no_sink_and_no_problem() {
        let mut problems = Vec::new();
        assert!(raw("").validate(&mut problems).is_none());
        assert!(problems.is_empty());
    }

    #[test]
    fn v2_and_v1_urls_carry_their_parameters_escaped() {
        let mut p = Vec::new();
        let c = raw("url = \"http://h:8428/\"\norg = \"my org\"\nbucket = \"b/1\"")
            .validate(&mut p)
            .unwrap();
        assert_eq!(
            c.write_url,
            "http://h:8428/api/v2/write?org=my%20org&bucket=b%2F1&precision=ms"
        );
        let c = raw("url = \"http://h:8086\"\napi = \"v1\"\ndatabase = \"sc\"\nretention_policy = \"1y\"\nprecision = \"ns\"")
            .validate(&mut p)
            .unwrap();
        assert_eq!(c.write_url, "http://h:8086/write?db=sc&rp=1y&precision=ns");
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn every_problem_is_listed_and_the_token_never_shows() {
        let mut p = Vec::new();
        let bad = raw("url = \"influx:8086?db=x\"\nbatch_points = 0\nflush_interval_ms = 0\ntoken_env = \"SPOTCHECK_TEST_UNSET_TOKEN_VAR\"\norg = \"\"");
        assert!(bad.validate(&mut p).is_none());
        let all = p.join("\n");
        for needle in [
            "sink.url",
            "base URL only",
            "sink.org",
            "token_env",
            "batch_points",
            "flush_interval_ms",
        ] {
            assert!(all.contains(needle), "{needle} missing in {all}");
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret\n").unwrap();
        let mut p = Vec::new();
        let c = raw(&format!(
            "url = \"https://h\"\ntoken_file = {:?}",
            file.display().to_string()
        ))
        .validate(&mut p)
        .unwrap();
        assert_eq!(c.token.as_ref().unwrap().expose(), "s3cret");
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn serve_lists_sink_problems_with_the_rest_of_the_file() {
        let err = crate::config::RawConfig::parse(
            "[sink]\nurl = \"influx:8086\"\n[store]\nretention_days = 0\n",
            std::path::Path::new("c.toml"),
        )
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("sink.url") && err.contains("retention_days"),
            "{err}"
        );
    }

    #[test]
    fn nice_defaults_to_ten_and_is_refused_outside_0_to_19() {
        let mut p = Vec::new();
        let c = raw("url = \"http://h:8428\"").validate(&mut p).unwrap();
        assert_eq!(c.nice, 10);
        let c = raw("url = \"http://h:8428\"\nnice = 0")
            .validate(&mut p)
            .unwrap();
        assert_eq!(c.nice, 0);
        assert!(p.is_empty(), "{p:?}");
        for bad in ["-1", "20"] {
            let mut p = Vec::new();
            assert!(raw(&format!("url = \"http://h:8428\"\nnice = {bad}"))
                .validate(&mut p)
                .is_none());
            assert!(
                p.iter()
                    .any(|m| m.contains(&format!("sink.nice = {bad}")) && m.contains("0")),
                "{p:?}"
            );
        }
    }

    #[test]
    fn an_unknown_key_is_refused() {
        assert!(toml::from_str::<RawSinkConfig>("urll = \"x\"").is_err());
    }
}
