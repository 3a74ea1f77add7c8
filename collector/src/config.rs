//! Configuration in two steps: serde reads the TOML file strictly (an unknown key or a wrong
//! type fails with its name and line), then [`RawConfig::validate`] checks what serde cannot and
//! reports every problem at once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use spotcheck_protocol::{AgentId, Domain, EntityId, Limits};

use crate::broker::tls::{Secret, TlsConfig};
use crate::broker::BrokerUrl;

/// The file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Where the SQLite database and other state live.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// The HTTP API and console.
    #[serde(default)]
    pub http: HttpConfig,
    /// The broker.
    #[serde(default)]
    pub mqtt: MqttConfig,
    /// The ingest pipeline.
    #[serde(default)]
    pub ingest: IngestConfig,
    /// The store.
    #[serde(default)]
    pub store: StoreConfig,
    /// Payload limits, as in the protocol crate.
    #[serde(default)]
    pub limits: Limits,
    /// Rule packs and the rule engine.
    #[serde(default)]
    pub rules: RulesConfig,
    /// Publication of results.
    #[serde(default)]
    pub publication: PublicationConfig,
    /// The time-series sink (absent: none).
    #[serde(default)]
    pub sink: crate::sink::config::RawSinkConfig,
    /// Notifications: channels, routes, grouping (docs/notifications.md).
    #[serde(default)]
    pub notify: crate::notify::NotifyConfig,
    /// The agents allowed to publish, each bound to one entity.
    #[serde(default)]
    pub agents: Vec<AgentBinding>,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./spotcheck-data")
}

/// `[http]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Listen address of the API and console.
    pub listen: String,
    /// Mark the console's session cookie `Secure` (set this when the console is served over
    /// TLS, by a reverse proxy for example).
    pub secure_cookies: bool,
    /// How long a console login lasts.
    pub session_hours: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:8080".into(),
            secure_cookies: false,
            session_hours: 12,
        }
    }
}

/// The environment variable that holds the external broker's password (wins over the file).
pub const MQTT_PASSWORD_ENV: &str = "SPOTCHECK_MQTT_PASSWORD";

/// `[mqtt]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// An external broker, `mqtt://host:port`; absent means: start the embedded broker.
    pub broker: Option<String>,
    /// Where the embedded broker listens.
    pub embedded_listen: String,
    /// The collector's MQTT client id.
    pub client_id: String,
    /// MQTT shared-subscription group, so that N collectors split the readings.
    pub shared_group: Option<String>,
    /// How long start-up waits for the broker before giving up, in seconds.
    pub connect_timeout_s: u64,
    /// Unacknowledged QoS 1 messages the broker may send us at once, per connection.
    pub max_inflight: u16,
    /// Bytes of messages the embedded broker keeps in memory per subscription filter (rumqttd
    /// keeps a log of everything published, read or not, up to this; then drops the oldest).
    /// Ingest reads it in-process right away, so it only needs to cover ingest's lag; a
    /// message dropped unread is one its agent still holds unconfirmed and sends again.
    pub embedded_buffer_bytes: u64,
    /// MQTT connections to an external broker that share the readings. Brokers cap
    /// unacknowledged messages per connection (rumqttd at 100, Mosquitto at
    /// `max_inflight_messages`) and ingest acknowledges only after commit, so more connections
    /// keep more messages in flight; but each costs the broker and ingest a socket's worth of
    /// small reads and writes, so one is fastest when the broker's window is large.
    pub connections: usize,
    /// User name for an external broker; needs a password (`password_file`, `password` or the
    /// environment variable `SPOTCHECK_MQTT_PASSWORD`).
    pub username: Option<String>,
    /// The password itself (prefer `password_file`). Never logged.
    pub password: Option<Secret>,
    /// A file holding the password (surrounding whitespace ignored).
    pub password_file: Option<PathBuf>,
    /// TLS for an `mqtts://` broker: `ca_file`, optional `client_cert` + `client_key`.
    pub tls: Option<TlsConfig>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            broker: None,
            embedded_listen: "127.0.0.1:1883".into(),
            client_id: "spotcheck-collector".into(),
            shared_group: None,
            connect_timeout_s: 10,
            max_inflight: 1000,
            embedded_buffer_bytes: 16 * 1024 * 1024,
            connections: 1,
            username: None,
            password: None,
            password_file: None,
            tls: None,
        }
    }
}

/// `[ingest]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// About how many messages may wait for the commit thread (the queue holds groups of up
    /// to 256). When full, the sources wait, and in the end the broker stops sending (its
    /// in-flight window fills).
    pub queue: usize,
    /// Most messages committed in one transaction.
    pub max_commit: usize,
    /// Store a batch, believe a status, only if its MAC verifies with the agent's current key.
    /// Exists only so that the benchmark can measure what checking costs: leave it on.
    pub require_agent_auth: bool,
    /// Longest a batch is kept back behind a gap in its agent's sequence (`after`), in
    /// seconds; then it is let go on a timer as a dead letter `gap_not_filled` (not confirmed:
    /// the agent sends it again).
    pub hold_for_s: u64,
    /// Most batches kept back at once, all agents together.
    pub max_held: usize,
    /// Most batches of one agent kept back at once.
    pub max_held_per_agent: usize,
    /// Bytes of dead-letter payload one source may add per day (UTC) when the dead letter is
    /// not confirmed to an agent (unknown agents, bad MACs, bad topics, ...). A registered
    /// agent is its own source; everyone else shares the source `unknown`. Beyond it, a
    /// rejected message is only counted (`spotcheck_dead_letters_over_quota`) and logged.
    pub dead_letter_quota_bytes: u64,
    /// Dead letters older than this many days are deleted.
    pub dead_letter_retention_days: u32,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            queue: 4096,
            max_commit: 4096,
            require_agent_auth: true,
            hold_for_s: 10,
            max_held: 10_000,
            max_held_per_agent: 1_000,
            dead_letter_quota_bytes: 64 * 1024 * 1024,
            dead_letter_retention_days: 90,
        }
    }
}

/// `[rules]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// Run the rule engine on ingest (anomaly tasks). Off: readings are only stored.
    pub enabled: bool,
    /// A directory of rule pack files (`*.toml`), each replacing the built-in pack of its
    /// domain. Absent: the built-in packs (collector/rules/).
    pub dir: Option<PathBuf>,
    /// How often time-driven rules (inactivity, sliding windows) run, in seconds.
    pub tick_s: u64,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            enabled: true,
            dir: None,
            tick_s: 5,
        }
    }
}

/// `[publication]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublicationConfig {
    /// A result must be published within this many days of being recorded.
    pub within_days: u32,
}

impl Default for PublicationConfig {
    fn default() -> Self {
        PublicationConfig { within_days: 20 }
    }
}

/// How SQLite syncs commits to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Synchronous {
    /// fsync at every commit: nothing confirmed is lost even on power loss.
    Full,
    /// fsync at checkpoints: safe across process crashes (kill -9), not power loss.
    Normal,
}

/// `[store]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Where the store is: `sqlite://PATH` or `postgres://USER@HOST:PORT/DATABASE` (a
    /// password from `PGPASSWORD`, never in this file's URL if it can be avoided). Unset: the
    /// SQLite file `spotcheck.db` in the data directory.
    pub url: Option<String>,
    /// Raw readings and events older than this many days are deleted.
    pub retention_days: u32,
    /// SQLite's `synchronous` setting.
    pub synchronous: Synchronous,
    /// PostgreSQL: how often a standby tries to take over the leadership of the work done
    /// once, and a leader checks that it still holds it (store/leader.rs); a killed leader is
    /// replaced within this time.
    pub leader_retry_ms: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: None,
            retention_days: 400,
            synchronous: Synchronous::Full,
            leader_retry_ms: 1000,
        }
    }
}

impl StoreConfig {
    /// `leader_retry_ms` as a duration.
    pub fn leader_retry(&self) -> Duration {
        Duration::from_millis(self.leader_retry_ms)
    }
}

/// `[[agents]]`: an agent and the one entity it may publish for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentBinding {
    /// The agent.
    pub id: AgentId,
    /// Its entity.
    pub entity: EntityId,
    /// The entity's domain.
    pub domain: Domain,
}

/// Where the collector gets its MQTT messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerChoice {
    /// Start rumqttd in-process on this address.
    Embedded(SocketAddr),
    /// Connect to a broker that runs elsewhere.
    External(BrokerUrl),
}

/// A configuration that passed [`RawConfig::validate`].
#[derive(Debug, Clone)]
pub struct Config {
    /// State directory.
    pub data_dir: PathBuf,
    /// HTTP listen address.
    pub http_listen: SocketAddr,
    /// Console sessions: the cookie's `Secure` flag and the lifetime.
    pub sessions: crate::api::auth::SessionSettings,
    /// The broker.
    pub broker: BrokerChoice,
    /// MQTT client id.
    pub client_id: String,
    /// Shared-subscription group, if any.
    pub shared_group: Option<String>,
    /// Start-up wait for the broker.
    pub connect_timeout: Duration,
    /// Broker → collector in-flight window, per connection.
    pub max_inflight: u16,
    /// The embedded broker's memory for messages, per subscription filter.
    pub embedded_buffer_bytes: u64,
    /// Ingest connections.
    pub connections: usize,
    /// User name and password for an external broker.
    pub mqtt_login: Option<(String, Secret)>,
    /// TLS for an `mqtts://` broker.
    pub mqtt_tls: Option<TlsConfig>,
    /// Pipeline settings.
    pub ingest: IngestConfig,
    /// Store settings.
    pub store: StoreConfig,
    /// Where the store is (`store.url`, or the SQLite file in the data directory).
    pub store_url: crate::store::db::DbUrl,
    /// Payload limits.
    pub limits: Limits,
    /// Agent bindings.
    pub agents: Vec<AgentBinding>,
    /// Rule engine settings.
    pub rules: RulesConfig,
    /// Publication settings.
    pub publication: PublicationConfig,
    /// The time-series sink, if configured.
    pub sink: Option<crate::sink::config::SinkConfig>,
    /// Notifications.
    pub notify: crate::notify::NotifyConfig,
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed, has an unknown key or a value of the wrong type.
    #[error("config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's error, which names the key and line.
        source: Box<toml::de::Error>,
    },
    /// Values that parse but make no sense, every one listed.
    #[error("config is invalid:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

impl RawConfig {
    /// Reads and parses a TOML file.
    pub fn load(path: &Path) -> Result<RawConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        RawConfig::parse(&text, path)
    }

    /// Parses TOML text; `path` only labels errors.
    pub fn parse(text: &str, path: &Path) -> Result<RawConfig, ConfigError> {
        toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// The external broker's login: `mqtt.username` with the password from
    /// `SPOTCHECK_MQTT_PASSWORD`, else `mqtt.password_file`, else `mqtt.password`.
    fn mqtt_login(&self, problems: &mut Vec<String>) -> Option<(String, Secret)> {
        let env = std::env::var(MQTT_PASSWORD_ENV)
            .ok()
            .filter(|p| !p.is_empty());
        let from_file = self.mqtt.password_file.as_ref().and_then(|path| {
            std::fs::read_to_string(path)
                .map(|t| t.trim().to_owned())
                .map_err(|e| {
                    problems.push(format!(
                        "mqtt.password_file: cannot read {}: {e}",
                        path.display()
                    ))
                })
                .ok()
        });
        let password = env
            .map(Secret)
            .or(from_file.map(Secret))
            .or(self.mqtt.password.clone());
        match (&self.mqtt.username, password) {
            (Some(user), Some(p)) => Some((user.clone(), p)),
            (None, None) => None,
            (Some(_), None) => {
                problems.push(format!("mqtt.username is set but no password: set mqtt.password_file or {MQTT_PASSWORD_ENV}"));
                None
            }
            (None, Some(_)) => {
                problems.push("a broker password is set but mqtt.username is not".into());
                None
            }
        }
    }

    /// Checks everything serde cannot, reporting all problems together.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let http_listen = self
            .http
            .listen
            .parse::<SocketAddr>()
            .map_err(|e| {
                problems.push(format!(
                    "http.listen = {:?}: {e}; write host:port, e.g. 127.0.0.1:8080",
                    self.http.listen
                ))
            })
            .ok();
        let broker = match &self.mqtt.broker {
            Some(url) => url
                .parse::<BrokerUrl>()
                .map(BrokerChoice::External)
                .map_err(|e| problems.push(format!("mqtt.broker: {e}")))
                .ok(),
            None => self
                .mqtt
                .embedded_listen
                .parse::<SocketAddr>()
                .map(BrokerChoice::Embedded)
                .map_err(|e| {
                    problems.push(format!(
                        "mqtt.embedded_listen = {:?}: {e}; write host:port",
                        self.mqtt.embedded_listen
                    ))
                })
                .ok(),
        };
        if self.mqtt.client_id.is_empty() {
            problems.push("mqtt.client_id is empty; the collector needs a stable client id".into());
        }
        if let Some(g) = &self.mqtt.shared_group {
            if g.is_empty() || g.contains(['/', '+', '#']) {
                problems.push(format!(
                    "mqtt.shared_group = {g:?}: use a non-empty name without / + #"
                ));
            }
        }
        if !(1..=64).contains(&self.mqtt.connections) {
            problems.push(format!(
                "mqtt.connections = {}: use 1 to 64",
                self.mqtt.connections
            ));
        }
        if self.mqtt.max_inflight == 0 {
            problems.push("mqtt.max_inflight must be at least 1".into());
        }
        let min_buffer = 4 * (self.limits.max_payload_bytes as u64 + 4096);
        if self.mqtt.embedded_buffer_bytes < min_buffer {
            problems.push(format!(
                "mqtt.embedded_buffer_bytes = {}: use at least {min_buffer} (four of the largest messages, limits.max_payload_bytes + 4 KiB)",
                self.mqtt.embedded_buffer_bytes
            ));
        }
        if self.ingest.queue == 0 {
            problems.push("ingest.queue must be at least 1".into());
        }
        if self.ingest.max_commit == 0 {
            problems.push("ingest.max_commit must be at least 1".into());
        }
        if self.ingest.hold_for_s == 0 {
            problems.push("ingest.hold_for_s must be at least 1".into());
        }
        if self.ingest.max_held == 0 || self.ingest.max_held_per_agent == 0 {
            problems
                .push("ingest.max_held and ingest.max_held_per_agent must be at least 1".into());
        }
        if self.ingest.dead_letter_retention_days == 0 {
            problems.push("ingest.dead_letter_retention_days must be at least 1".into());
        }
        if self.rules.tick_s == 0 {
            problems.push("rules.tick_s must be at least 1".into());
        }
        if self.publication.within_days == 0 {
            problems.push("publication.within_days must be at least 1".into());
        }
        if !(100..=60_000).contains(&self.store.leader_retry_ms) {
            problems.push(format!(
                "store.leader_retry_ms = {}: use 100 to 60000 (a killed leader is replaced within this time; 1000 is the default)",
                self.store.leader_retry_ms
            ));
        }
        if self.store.retention_days == 0 {
            problems.push("store.retention_days must be at least 1".into());
        }
        if self.limits.max_payload_bytes == 0 || self.limits.max_batch_len == 0 {
            problems.push(
                "limits.max_payload_bytes and limits.max_batch_len must be at least 1".into(),
            );
        }
        let sink = self.sink.validate(&mut problems);
        let store_url = match &self.store.url {
            None => Some(crate::store::db::DbUrl::Sqlite(crate::store::db_path(
                &self.data_dir,
            ))),
            Some(u) => u
                .parse::<crate::store::db::DbUrl>()
                .map_err(|e| problems.push(format!("store.url: {e}")))
                .ok(),
        };
        self.notify.validate(&mut problems);
        let mut seen = std::collections::HashSet::new();
        for a in &self.agents {
            if !seen.insert(a.id.clone()) {
                problems.push(format!(
                    "agents: agent {} is listed twice; an agent is bound to exactly one entity",
                    a.id
                ));
            }
        }
        let mqtt_login = self.mqtt_login(&mut problems);
        if let Some(tls) = &self.mqtt.tls {
            for (key, path) in [
                ("ca_file", Some(&tls.ca_file)),
                ("client_cert", tls.client_cert.as_ref()),
                ("client_key", tls.client_key.as_ref()),
            ] {
                if let Some(Err(e)) = path.map(std::fs::metadata) {
                    problems.push(format!(
                        "mqtt.tls.{key}: cannot read {}: {e}",
                        path.map_or(String::new(), |p| p.display().to_string())
                    ));
                }
            }
            if tls.client_cert.is_some() != tls.client_key.is_some() {
                problems.push(
                    "mqtt.tls.client_cert and mqtt.tls.client_key must be set together".into(),
                );
            }
        }
        if matches!(&broker, Some(BrokerChoice::External(u)) if u.tls) && self.mqtt.tls.is_none() {
            problems.push("mqtt.broker is mqtts:// but [mqtt.tls] with ca_file is missing".into());
        }
        match (problems.is_empty(), http_listen, broker, store_url) {
            (true, Some(http_listen), Some(broker), Some(store_url)) => Ok(Config {
                data_dir: self.data_dir,
                http_listen,
                sessions: crate::api::auth::SessionSettings {
                    secure_cookies: self.http.secure_cookies,
                    ttl: Duration::from_secs(u64::from(self.http.session_hours.max(1)) * 3600),
                },
                broker,
                client_id: self.mqtt.client_id,
                shared_group: self.mqtt.shared_group,
                connect_timeout: Duration::from_secs(self.mqtt.connect_timeout_s.max(1)),
                max_inflight: self.mqtt.max_inflight,
                embedded_buffer_bytes: self.mqtt.embedded_buffer_bytes,
                connections: self.mqtt.connections,
                mqtt_login,
                mqtt_tls: self.mqtt.tls,
                ingest: self.ingest,
                store: self.store,
                store_url,
                limits: self.limits,
                agents: self.agents,
                rules: self.rules,
                publication: self.publication,
                sink,
                notify: self.notify,
            }),
            _ => Err(ConfigError::Invalid(problems)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        RawConfig::parse(text, Path::new("test.toml"))?.validate()
    }

    #[test]
    fn an_empty_file_gives_the_embedded_defaults() {
        let c = parse("").unwrap();
        assert_eq!(
            c.broker,
            BrokerChoice::Embedded("127.0.0.1:1883".parse().unwrap())
        );
        assert_eq!(c.store.synchronous, Synchronous::Full);
    }

    #[test]
    fn the_store_is_the_data_directorys_sqlite_file_unless_a_url_is_given() {
        let c = parse("data_dir = \"/var/lib/spotcheck\"\n").unwrap();
        assert!(matches!(
            &c.store_url,
            crate::store::db::DbUrl::Sqlite(p) if p.as_path() == std::path::Path::new("/var/lib/spotcheck/spotcheck.db")
        ));
        let c =
            parse("[store]\nurl = \"postgres://spotcheck@db.example:5432/spotcheck\"\n").unwrap();
        assert!(matches!(c.store_url, crate::store::db::DbUrl::Postgres(_)));
        let err = parse("[store]\nurl = \"mysql://u:secret@db/x\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("store.url") && err.contains("postgres://"),
            "{err}"
        );
        assert!(!err.contains("secret"), "the password was shown: {err}");
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let err = parse("[mqtt]\nbroker = \"mqtt://x:1\"\nbrokr = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("brokr") && err.contains("line 3"), "{err}");
    }

    #[test]
    fn a_wrong_type_is_named() {
        let err = parse("[store]\nretention_days = \"long\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 2") && err.contains("retention_days"),
            "{err}"
        );
        assert!(err.contains("expected u32"), "{err}");
    }

    #[test]
    fn every_semantic_problem_is_reported_at_once() {
        let err = parse("[http]\nlisten = \"nowhere\"\n[mqtt]\nbroker = \"http://x\"\n[store]\nretention_days = 0\n")
            .unwrap_err()
            .to_string();
        for needle in ["http.listen", "mqtt.broker", "retention_days"] {
            assert!(err.contains(needle), "{needle} missing in {err}");
        }
    }

    #[test]
    fn the_leader_retry_defaults_to_a_second_and_is_bounded() {
        let c = parse("").unwrap();
        assert_eq!(c.store.leader_retry(), std::time::Duration::from_secs(1));
        for bad in ["10", "600000"] {
            let err = parse(&format!("[store]\nleader_retry_ms = {bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("store.leader_retry_ms = {bad}")),
                "{err}"
            );
        }
        let err = parse("[sink]\nurl = \"http://h:8428\"\nnice = 25\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sink.nice = 25"),
            "serve refuses it at start: {err}"
        );
    }

    #[test]
    fn an_agent_with_a_wildcard_in_its_id_is_refused() {
        let err = parse("[[agents]]\nid = \"a+\"\nentity = \"e\"\ndomain = \"pool\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("'+'"), "{err}");
    }
}
