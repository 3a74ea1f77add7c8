//! The agent's TOML configuration, read in two steps: serde turns the text into an
//! [`AgentConfig`] (every table denies unknown keys, so a typo fails with the key and its line),
//! then [`AgentConfig::validate`] reports every semantic problem at once.
//!
//! ```toml
//! [agent]
//! id = "pool-agent-1"        # AgentId, also the MQTT client id
//! entity = "pool-1"          # EntityId this agent is registered to
//! domain = "pool"            # pool | game | hospital
//!
//! [mqtt]
//! broker = "mqtt://127.0.0.1:1883"
//! keepalive_s = 30
//! ack_timeout_ms = 10000     # re-send a batch the collector has not confirmed after this
//! max_in_flight = 256        # batches published but not yet confirmed
//!
//! [spool]
//! dir = "./spool/pool-agent-1"
//! max_bytes = 268435456      # when full, the oldest segment is dropped (counted, logged)
//! fsync = true               # fsync after each append
//!
//! [[sources]]
//! type = "simulate"
//! feed = "pool"
//! interval_ms = 1000
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use spotcheck_protocol::{AgentId, Domain, EntityId, Limits};

use crate::sources::SourceConfig;

/// The whole configuration of one agent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Who the agent is and what it reports on.
    pub agent: AgentSection,
    /// How to reach the broker.
    pub mqtt: MqttConfig,
    /// Where unconfirmed batches wait on disk.
    pub spool: SpoolConfig,
    /// Where readings and records come from.
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
}

/// The `[agent]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    /// The agent's id; also its MQTT client id and the agent level of its topics.
    pub id: AgentId,
    /// The entity the agent is registered to; it may publish only for this one.
    pub entity: EntityId,
    /// The entity's domain.
    pub domain: Domain,
}

/// The `[mqtt]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtt://host:port` (port defaults to 1883). Only plain `mqtt://` is supported.
    pub broker: String,
    /// MQTT keep-alive, seconds (1 to 65535).
    #[serde(default = "default_keepalive_s")]
    pub keepalive_s: u64,
    /// Optional user name; needs `password` too.
    #[serde(default)]
    pub username: Option<String>,
    /// Optional password; needs `username` too. Never printed.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Re-send a published batch the collector has not confirmed after this many milliseconds.
    #[serde(default = "default_ack_timeout_ms")]
    pub ack_timeout_ms: u64,
    /// Most batches published but not yet confirmed by the collector.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
}

/// The `[spool]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    /// Directory of the segment files; created if missing. One agent per directory.
    pub dir: PathBuf,
    /// Most bytes the segment files may take; when an append would exceed it, the oldest
    /// segment is dropped with its unconfirmed records (counted and logged).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Size at which a new segment file is started.
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: u64,
    /// fsync each append (survives power loss), or leave it to the OS (survives kill -9 only).
    #[serde(default = "default_fsync")]
    pub fsync: bool,
    /// Batches that may wait between the sources and the spool; a full queue makes sources wait.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
}

/// A string that is never printed by `Debug`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

fn default_keepalive_s() -> u64 {
    30
}
fn default_ack_timeout_ms() -> u64 {
    10_000
}
fn default_max_in_flight() -> usize {
    256
}
fn default_max_bytes() -> u64 {
    256 * 1024 * 1024
}
fn default_segment_bytes() -> u64 {
    4 * 1024 * 1024
}
fn default_fsync() -> bool {
    true
}
fn default_queue_capacity() -> usize {
    64
}

/// The smallest spool accepted: room for a few maximum-size payloads.
pub const MIN_SPOOL_BYTES: u64 = 1024 * 1024;

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {error}; check the path and its permissions")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The text is not TOML of the expected shape; toml's message names the key and line.
    #[error("config {origin} is invalid: {error}")]
    Parse {
        /// The file path, or `text` when parsed from a string.
        origin: String,
        /// toml's error, with the line and the offending key.
        error: Box<toml::de::Error>,
    },
    /// The configuration parsed but makes no sense; every problem found is listed.
    #[error("config has {} problem(s):\n  - {}", problems.len(), problems.join("\n  - "))]
    Invalid {
        /// One sentence per problem, saying what is wrong and what to do.
        problems: Vec<String>,
    },
}

/// A parsed `mqtt://host:port` address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl fmt::Display for BrokerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "mqtt://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "mqtt://{}:{}", self.host, self.port)
        }
    }
}

impl BrokerAddr {
    /// Parses `mqtt://host[:port]`; the error says what was wrong.
    pub fn parse(url: &str) -> Result<BrokerAddr, String> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(format!(
                "broker {url:?} has no scheme; write it as mqtt://host:port"
            ));
        };
        if scheme != "mqtt" {
            return Err(format!(
                "broker {url:?} uses scheme {scheme}://; only mqtt:// is supported (no TLS or websockets in this build)"
            ));
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(format!(
                "broker {url:?} has a path, query or user part; write it as mqtt://host:port and put credentials in mqtt.username/password"
            ));
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("broker {url:?} has an unclosed '[' in its host"))?;
            match after {
                "" => (host, None),
                p => (
                    host,
                    Some(p.strip_prefix(':').ok_or_else(|| {
                        format!("broker {url:?} has text after ']' that is not :port")
                    })?),
                ),
            }
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(format!(
                "broker {url:?} has no host; write it as mqtt://host:port"
            ));
        }
        let port = match port {
            None => 1883,
            Some(p) => match p.parse::<u16>() {
                Ok(0) | Err(_) => {
                    return Err(format!(
                        "broker {url:?} has port {p:?}; use a number from 1 to 65535"
                    ))
                }
                Ok(n) => n,
            },
        };
        Ok(BrokerAddr {
            host: host.to_owned(),
            port,
        })
    }
}

impl AgentConfig {
    /// Parses TOML text. Unknown keys and wrong types fail with the key and its line.
    pub fn from_toml_str(s: &str) -> Result<AgentConfig, ConfigError> {
        toml::from_str(s).map_err(|e| ConfigError::Parse {
            origin: "text".into(),
            error: Box::new(e),
        })
    }

    /// Reads and parses the TOML file at `path`; errors name the file.
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            origin: path.display().to_string(),
            error: Box::new(e),
        })
    }

    /// The broker address; fails as [`AgentConfig::validate`] does on a bad URL.
    pub fn broker_addr(&self) -> Result<BrokerAddr, ConfigError> {
        BrokerAddr::parse(&self.mqtt.broker).map_err(|p| ConfigError::Invalid { problems: vec![p] })
    }

    /// Checks everything serde cannot, and lists every problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let m = &self.mqtt;
        if let Err(p) = BrokerAddr::parse(&m.broker) {
            problems.push(format!("mqtt.broker: {p}"));
        }
        if !(1..=65_535).contains(&m.keepalive_s) {
            problems.push(format!(
                "mqtt.keepalive_s is {}; use 1 to 65535 seconds",
                m.keepalive_s
            ));
        }
        if m.ack_timeout_ms < 100 {
            problems.push(format!(
                "mqtt.ack_timeout_ms is {}; use at least 100 (the collector needs time to commit)",
                m.ack_timeout_ms
            ));
        }
        if !(1..=65_535).contains(&m.max_in_flight) {
            problems.push(format!(
                "mqtt.max_in_flight is {}; use 1 to 65535",
                m.max_in_flight
            ));
        }
        if m.username.is_some() != m.password.is_some() {
            problems.push("mqtt.username and mqtt.password must be set together".into());
        }
        let s = &self.spool;
        if s.dir.as_os_str().is_empty() {
            problems.push("spool.dir is empty; name a directory for the spool".into());
        }
        if s.max_bytes < MIN_SPOOL_BYTES {
            problems.push(format!(
                "spool.max_bytes is {}; use at least {MIN_SPOOL_BYTES} (1 MiB)",
                s.max_bytes
            ));
        }
        let min_segment = 2 * Limits::default().max_payload_bytes as u64;
        if s.segment_bytes < min_segment || s.segment_bytes > s.max_bytes {
            problems.push(format!(
                "spool.segment_bytes is {}; use {min_segment} to spool.max_bytes ({})",
                s.segment_bytes, s.max_bytes
            ));
        }
        if s.queue_capacity == 0 {
            problems.push("spool.queue_capacity is 0; use at least 1".into());
        }
        if self.sources.is_empty() {
            problems.push("no [[sources]] table; the agent would publish nothing".into());
        }
        for (i, source) in self.sources.iter().enumerate() {
            source.validate(&format!("sources[{i}]"), self.agent.domain, &mut problems);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid { problems })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[agent]
id = "pool-agent-1"
entity = "pool-1"
domain = "pool"

[mqtt]
broker = "mqtt://127.0.0.1:1883"

[spool]
dir = "./spool/pool-agent-1"

[[sources]]
type = "simulate"
feed = "pool"
interval_ms = 1000
seed = 42
"#;

    fn parse_err(text: &str) -> String {
        AgentConfig::from_toml_str(text).unwrap_err().to_string()
    }

    fn problems(c: &AgentConfig) -> Vec<String> {
        match c.validate() {
            Err(ConfigError::Invalid { problems }) => problems,
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn a_minimal_config_parses_with_defaults_and_validates() {
        let c = AgentConfig::from_toml_str(GOOD).unwrap();
        c.validate().unwrap();
        assert_eq!(c.mqtt.keepalive_s, 30);
        assert_eq!(c.mqtt.max_in_flight, 256);
        assert_eq!(c.spool.max_bytes, 256 * 1024 * 1024);
        assert!(c.spool.fsync);
    }

    #[test]
    fn shipped_examples_parse_and_validate() {
        for name in ["simulate", "pool", "game", "hospital"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("examples/{name}.toml"));
            let c = AgentConfig::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
            c.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let text = GOOD.replace("keepalive", "x").replace(
            "broker = \"mqtt://127.0.0.1:1883\"",
            "broker = \"mqtt://127.0.0.1:1883\"\nkeepalive = 3",
        );
        let e = parse_err(&text);
        assert!(e.contains("keepalive"), "{e}");
        assert!(e.contains("line 9"), "{e}");
    }

    #[test]
    fn an_unknown_key_inside_a_source_is_named() {
        let e = parse_err(&GOOD.replace("seed = 42", "sed = 42"));
        assert!(e.contains("sed"), "{e}");
    }

    #[test]
    fn a_wrong_type_is_named_with_its_line() {
        let e = parse_err(&GOOD.replace(
            "[spool]\ndir = \"./spool/pool-agent-1\"",
            "[spool]\ndir = \"./spool/pool-agent-1\"\nfsync = \"yes\"",
        ));
        assert!(e.contains("fsync") || e.contains("line 13"), "{e}");
        assert!(e.contains("bool"), "{e}");
    }

    #[test]
    fn an_invalid_agent_id_is_rejected_at_parse_time() {
        let e = parse_err(&GOOD.replace("pool-agent-1\"\nentity", "pool/agent\"\nentity"));
        assert!(e.contains("'/'"), "{e}");
    }

    #[test]
    fn a_file_error_names_the_file() {
        let e = AgentConfig::load(Path::new("/nonexistent/agent.toml")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/agent.toml"), "{e}");
    }

    #[test]
    fn broker_urls_parse_or_say_what_is_wrong() {
        let ok = BrokerAddr::parse("mqtt://broker.local:1884").unwrap();
        assert_eq!((ok.host.as_str(), ok.port), ("broker.local", 1884));
        assert_eq!(BrokerAddr::parse("mqtt://h").unwrap().port, 1883);
        assert_eq!(BrokerAddr::parse("mqtt://[::1]:1999").unwrap().host, "::1");
        assert!(BrokerAddr::parse("mqtts://h:8883")
            .unwrap_err()
            .contains("only mqtt://"));
        assert!(BrokerAddr::parse("127.0.0.1:1883")
            .unwrap_err()
            .contains("no scheme"));
        assert!(BrokerAddr::parse("mqtt://h:99999")
            .unwrap_err()
            .contains("port"));
        assert!(BrokerAddr::parse("mqtt://:1883")
            .unwrap_err()
            .contains("no host"));
    }

    #[test]
    fn validate_lists_every_problem_at_once() {
        let mut c = AgentConfig::from_toml_str(GOOD).unwrap();
        c.mqtt.broker = "tcp://x".into();
        c.mqtt.max_in_flight = 0;
        c.spool.max_bytes = 10;
        let SourceConfig::Simulate(sim) = &mut c.sources[0];
        sim.feed = Domain::Game;
        sim.interval_ms = 0;
        let p = problems(&c);
        let all = p.join("\n");
        assert!(all.contains("mqtt.broker"), "{all}");
        assert!(all.contains("max_in_flight"), "{all}");
        assert!(all.contains("spool.max_bytes"), "{all}");
        assert!(all.contains("sources[0].feed"), "{all}");
        assert!(all.contains("sources[0].interval_ms"), "{all}");
        assert!(p.len() >= 5, "{all}");
    }

    #[test]
    fn the_password_is_never_printed() {
        let text = GOOD.replace(
            "broker = \"mqtt://127.0.0.1:1883\"",
            "broker = \"mqtt://127.0.0.1:1883\"\nusername = \"u\"\npassword = \"hunter2\"",
        );
        let c = AgentConfig::from_toml_str(&text).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
