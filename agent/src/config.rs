//! The agent's TOML configuration, read in two steps: serde turns the text into an
//! [`AgentConfig`] (every table denies unknown keys, so a typo fails with the key and its line),
//! then [`AgentConfig::validate`] reports every semantic problem at once.
//!
//! ```toml
//! [agent]
//! id = "pool-agent-1"        # AgentId, also the MQTT client id
//! entity = "pool-1"          # EntityId this agent is registered to
//! domain = "pool"            # pool | game | hospital
//! credential_file = "/etc/spotcheck/pool-agent-1.credential"  # from `spotcheck-collector agents add`
//! # mac = "blake3"           # or "hmac-sha256" for a collector that only knows HMAC-SHA256
//!
//! [mqtt]
//! broker = "mqtt://127.0.0.1:1883"  # or mqtts://host:8883 with [mqtt.tls]
//! keepalive_s = 30
//! # username = "pool-agent-1"     # with password
//! # password = "..."
//! ack_timeout_ms = 10000     # re-send a batch the collector has not confirmed after this
//! max_in_flight = 256        # batches published but not yet confirmed
//!
//! [spool]
//! dir = "./spool/pool-agent-1"
//! max_bytes = 268435456      # when full, the oldest segment is dropped (counted, logged)
//! fsync = true               # fsync after each append
//!
//! # [mqtt.tls]
//! # ca_file = "/etc/spotcheck/ca.crt"
//! # client_cert = "/etc/spotcheck/agent.crt"   # optional, with client_key
//! # client_key = "/etc/spotcheck/agent.key"
//!
//! [[sources]]
//! type = "simulate"          # simulate | modbus | http | file | stdin (see agent/examples/)
//! feed = "pool"
//! interval_ms = 1000
//!
//! # [telemetry]
//! # listen = "127.0.0.1:9108"  # optional /healthz and /metrics
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use spotcheck_protocol::{AgentId, Domain, EntityId, Limits};

use crate::health::TelemetryConfig;
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
    /// Optional local `/healthz` and `/metrics`.
    #[serde(default)]
    pub telemetry: Option<TelemetryConfig>,
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
    /// The credential file the collector issued (`spotcheck-collector agents add`): the key
    /// batches are signed with and the broker password. The environment variable
    /// `SPOTCHECK_AGENT_CREDENTIAL_FILE` overrides it. See [`crate::credential`].
    #[serde(default)]
    pub credential_file: Option<PathBuf>,
    /// The MAC batches and statuses are signed with: keyed BLAKE3 (the default, cheaper for
    /// the collector) or HMAC-SHA256, for a collector that only knows HMAC-SHA256. The
    /// collector answers in the algorithm the agent used; acks in either are believed.
    #[serde(default)]
    pub mac: spotcheck_protocol::mac::Algorithm,
}

/// The `[mqtt]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtt://host:port` (port defaults to 1883) or `mqtts://host:port` (TLS, port defaults
    /// to 8883; needs `[mqtt.tls]`).
    pub broker: String,
    /// TLS settings for an `mqtts://` broker.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
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

/// The `[mqtt.tls]` table: how to trust the broker and, optionally, prove who the agent is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the CA certificate(s) the broker's certificate must chain to.
    pub ca_file: PathBuf,
    /// PEM file of the agent's client certificate (mutual TLS); needs `client_key`.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key; needs `client_cert`.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
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

/// A parsed `mqtt://host:port` or `mqtts://host:port` address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    /// Host name or IP address (IPv6 without brackets); also the TLS server name.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Whether the connection uses TLS (`mqtts://`).
    pub tls: bool,
}

impl fmt::Display for BrokerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

impl BrokerAddr {
    /// Parses `mqtt://host[:port]` or `mqtts://host[:port]`; the error says what was wrong.
    pub fn parse(url: &str) -> Result<BrokerAddr, String> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(format!(
                "broker {url:?} has no scheme; write it as mqtt://host:port"
            ));
        };
        let tls = match scheme {
            "mqtt" => false,
            "mqtts" => true,
            _ => {
                return Err(format!(
                "broker {url:?} uses scheme {scheme}://; use mqtt:// (plain TCP) or mqtts:// (TLS)"
            ))
            }
        };
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
            None if tls => 8883,
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
            tls,
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
        match BrokerAddr::parse(&m.broker) {
            Err(p) => problems.push(format!("mqtt.broker: {p}")),
            Ok(addr) if addr.tls && m.tls.is_none() => problems.push(format!(
                "mqtt.broker is {}, which needs a [mqtt.tls] table with ca_file",
                m.broker
            )),
            Ok(addr) if !addr.tls && m.tls.is_some() => problems.push(format!(
                "[mqtt.tls] is set but mqtt.broker {} is plain; write it as mqtts://",
                m.broker
            )),
            Ok(_) => {}
        }
        if let Some(tls) = &m.tls {
            for (key, path) in [
                ("ca_file", Some(&tls.ca_file)),
                ("client_cert", tls.client_cert.as_ref()),
                ("client_key", tls.client_key.as_ref()),
            ] {
                if let Some(path) = path {
                    if let Err(e) = std::fs::metadata(path) {
                        problems.push(format!(
                            "mqtt.tls.{key}: cannot read {}: {e}",
                            path.display()
                        ));
                    }
                }
            }
            if tls.client_cert.is_some() != tls.client_key.is_some() {
                problems.push(
                    "mqtt.tls.client_cert and mqtt.tls.client_key must be set together".into(),
                );
            }
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
        if let Err(ConfigError::Invalid { problems: p }) =
            crate::credential::Credential::for_config(self)
        {
            problems.extend(p);
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
mod tests;
