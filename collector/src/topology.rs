//! Wires the collector together: broker, store, ingest, HTTP, and the leader's work (the
//! time-series sink and the notification worker, run while this collector leads; retention
//! and the rule ticker ask the leadership themselves on the commit thread). Small on purpose:
//! each part lives in its own module, this one only connects them and stops them in order.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::api::{self, AppState};
use crate::broker::{BrokerUrl, EmbeddedBroker, EmbeddedBrokerError};
use crate::config::{BrokerChoice, Config};
use crate::health::Health;
use crate::ingest::commit::{CommitConfig, RuleStage};
use crate::ingest::source::mqtt::SourceConfig;
use crate::ingest::validate::Auth;
use crate::ingest::{BrokerLink, Ingest, IngestError, IngestParts};
use crate::registry::credentials::{CredentialError, Credentials};
use crate::registry::{Bindings, Presence};
use crate::rulebook::Rulebook;
use crate::store::db::{self, Conn, DbUrl, Mode};
use crate::store::leader::{Lead, Leadership, Role, Status};
use crate::store::{StoreError, Writer};
use crate::tasks::anomaly::Tracker;
use crate::telemetry::Stats;
use leader_work::{spawn_leader_work, LeaderWork, StartWork};
use spotcheck_protocol::UnixMillis;

mod leader_work;

/// Why the collector did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory is unusable.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The store failed to open.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The embedded broker failed to start.
    #[error(transparent)]
    Broker(#[from] EmbeddedBrokerError),
    /// Ingest failed to start (usually: broker unreachable).
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// A rule pack in rules.dir is invalid.
    #[error(transparent)]
    Rules(#[from] crate::rulebook::RulebookError),
    /// The agents' credentials could not be read.
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    /// The rule engine's state could not be loaded.
    #[error("loading the rule engine's state: {0}")]
    RuleState(#[from] crate::tasks::TaskError),
    /// The bootstrap admin or its token could not be set up.
    #[error("setting up the admin user: {0}")]
    Bootstrap(#[from] crate::users::store::BootstrapError),
    /// The notification worker could not start.
    #[error(transparent)]
    Notify(#[from] crate::notify::NotifyError),
    /// The time-series sink could not start.
    #[error(transparent)]
    Sink(#[from] crate::sink::SinkError),
    /// The HTTP address is taken.
    #[error("cannot listen for HTTP on {addr}: {source}; pick another with --http or http.listen")]
    Http {
        /// The address.
        addr: SocketAddr,
        /// The bind error.
        source: std::io::Error,
    },
}

/// A running collector.
pub struct Collector {
    ingest: Ingest,
    http: JoinHandle<()>,
    http_stop: CancellationToken,
    http_addr: SocketAddr,
    broker_url: BrokerUrl,
    admin_token: Arc<str>,
    stats: Stats,
    lead: Lead,
    leader_work: JoinHandle<()>,
    leader_stop: CancellationToken,
    leadership: Leadership,
    _embedded: Option<EmbeddedBroker>,
    _reload: ReloadTask,
}

/// Stops the credential reloader when the collector is dropped.
struct ReloadTask(JoinHandle<()>);

impl Drop for ReloadTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Re-reads the credential table every 2 s, so that `agents revoke|rotate` run from the CLI
/// (or another collector sharing the store) take effect within that time (the API's changes
/// apply at once). One read connection is kept between reloads, and opened again after one
/// fails.
fn spawn_reload(table: Credentials, url: DbUrl) -> ReloadTask {
    ReloadTask(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut kept: Option<Conn> = None;
        loop {
            tick.tick().await;
            let table = table.clone();
            let url = url.clone();
            let held = kept.take();
            let done = tokio::task::spawn_blocking(move || -> Result<Conn, String> {
                let conn = match held {
                    Some(c) if c.is_idle() => c,
                    _ => db::connect(&url, Mode::Read).map_err(|e| e.to_string())?,
                };
                table.reload(&conn).map_err(|e| e.to_string())?;
                Ok(conn)
            })
            .await;
            match done {
                Ok(Ok(conn)) => kept = Some(conn),
                Ok(Err(error)) => {
                    tracing::error!(message = "Reloading agent credentials failed; keeping the previous table.", %error);
                }
                Err(_) => {}
            }
        }
    }))
}

impl Collector {
    /// Starts every part; returns once ingest is connected and HTTP is listening.
    pub async fn start(config: Config) -> Result<Collector, StartError> {
        let dir_err = |source| StartError::DataDir {
            path: config.data_dir.clone(),
            source,
        };
        std::fs::create_dir_all(&config.data_dir).map_err(dir_err)?;
        // The store: `store.url`, or the SQLite file in the data directory (docs/storage.md).
        let url = config.store_url.clone();
        info!(message = "Store.", url = %url);
        // The synchronous PostgreSQL client may not run on a Tokio worker (store::db).
        let postgres = matches!(url, DbUrl::Postgres(_));
        // One collector leads the work done once (on SQLite: this one, always).
        let leadership = Leadership::campaign(&url, Role::Collector, config.store.leader_retry());
        let lead = leadership.lead();
        let (writer, admin_token, credentials, rulebook, rules) = db::off_the_runtime(
            postgres,
            || -> Result<_, StartError> {
                let mut writer = Writer::open_url(&url, config.store.synchronous)?;
                let admin_token: Arc<str> = {
                    let conn = db::connect(&url, Mode::Write).map_err(StoreError::from)?;
                    crate::users::bootstrap(&conn, &config.data_dir, UnixMillis::now())?.into()
                };
                writer.register_agents(&config.agents)?;
                let credentials = Credentials::load(writer.conn())?;
                if credentials.is_empty() && config.ingest.require_agent_auth {
                    tracing::warn!(message = "No agent has a credential yet: every batch will be dead-lettered. Issue them with `spotcheck-collector agents add ID --data DIR`.");
                }
                let rulebook = Rulebook::load(config.rules.dir.as_deref())?;
                let today = crate::rules::ChinaDay::of(UnixMillis::now());
                if let Some(warning) = rulebook.calendar().coverage_warning(today) {
                    tracing::warn!(message = "Holiday calendar coverage.", %warning);
                }
                {
                    let conn = db::connect(&url, Mode::Write).map_err(StoreError::from)?;
                    rulebook.record_active(&conn, UnixMillis::now())?;
                }
                let rules = if config.rules.enabled {
                    let watched: Vec<_> = config
                        .agents
                        .iter()
                        .map(|a| (a.entity.clone(), a.domain))
                        .collect();
                    let tracker = Tracker::load(
                        writer.conn(),
                        (*rulebook.rules()).clone(),
                        (*rulebook.calendar()).clone(),
                        &watched,
                        UnixMillis::now(),
                    )?;
                    Some(RuleStage {
                        tracker,
                        rulebook: rulebook.clone(),
                        tick: Duration::from_secs(config.rules.tick_s),
                    })
                } else {
                    None
                };

                Ok((writer, admin_token, credentials, rulebook, rules))
            },
        )?;
        let reload = spawn_reload(credentials.clone(), url.clone());
        // The embedded broker is read in-process; an external one over MQTT.
        let (embedded, broker_url, link) = match &config.broker {
            BrokerChoice::Embedded(addr) => {
                let (b, link) = EmbeddedBroker::start(
                    *addr,
                    config.limits.max_payload_bytes,
                    config.max_inflight as usize,
                    config.embedded_buffer_bytes as usize,
                    Some(credentials.clone()),
                )?;
                let url = BrokerUrl {
                    host: loopback_for(b.listen()),
                    port: b.listen().port(),
                    tls: false,
                };
                info!(message = "Embedded MQTT broker listening.", addr = %b.listen());
                (Some(b), url, BrokerLink::InProcess(link))
            }
            BrokerChoice::External(url) => {
                let source = SourceConfig {
                    broker: url.clone(),
                    client_id: config.client_id.clone(),
                    shared_group: config.shared_group.clone(),
                    connections: config.connections,
                    max_inflight: config.max_inflight,
                    max_packet_bytes: config.limits.max_payload_bytes + 4096,
                    login: config.mqtt_login.clone(),
                    tls: config.mqtt_tls.clone(),
                };
                (None, url.clone(), BrokerLink::Mqtt(source))
            }
        };

        let stats = Stats::default();
        let health = Health::default();
        let bindings = Bindings::new(&config.agents);
        let presence = Presence::default();
        let parts = IngestParts {
            writer,
            bindings: bindings.clone(),
            presence: presence.clone(),
            stats: stats.clone(),
            limits: config.limits,
            queue: config.ingest.queue,
            commit: CommitConfig {
                max_commit: config.ingest.max_commit,
                retention: Duration::from_secs(u64::from(config.store.retention_days) * 86_400),
                prune_every: Duration::from_secs(3600),
                hold_for: Duration::from_secs(config.ingest.hold_for_s),
                max_held: config.ingest.max_held,
                max_held_per_agent: config.ingest.max_held_per_agent,
                dead_letter_retention: Duration::from_secs(
                    u64::from(config.ingest.dead_letter_retention_days) * 86_400,
                ),
                leader: lead.clone(),
            },
            rules,
            health: health.clone(),
            auth: Auth {
                table: credentials.clone(),
                required: config.ingest.require_agent_auth,
                answers: Default::default(),
            },
            dead_letter_quota_bytes: config.ingest.dead_letter_quota_bytes,
        };
        let ingest = Ingest::start(link, config.connect_timeout, parts).await?;
        // Every collector saves the file's notification rules (once, under the write lock).
        db::off_the_runtime(postgres, || {
            crate::notify::worker::prepare(&url, &config.notify)
        })?;
        let start_work: StartWork = {
            let (config, url, stats, rulebook, lead) = (
                config.clone(),
                url.clone(),
                stats.clone(),
                rulebook.clone(),
                lead.clone(),
            );
            Arc::new(move || LeaderWork::start(&config, &url, &stats, &rulebook, &lead))
        };
        // A sole leader (SQLite) starts its work now, and a problem stops the start.
        let first = match *lead.watch().borrow() {
            Status::Leading { term: 0 } => {
                Some((0, db::off_the_runtime(postgres, || start_work())?))
            }
            _ => None,
        };
        let leader_stop = CancellationToken::new();
        let leader_work = spawn_leader_work(
            lead.clone(),
            start_work,
            first,
            (health.clone(), stats.clone()),
            config.store.leader_retry(),
            leader_stop.clone(),
        );

        let listener = tokio::net::TcpListener::bind(config.http_listen)
            .await
            .map_err(|source| StartError::Http {
                addr: config.http_listen,
                source,
            })?;
        let http_addr = listener.local_addr().unwrap_or(config.http_listen);
        let app = api::router(AppState {
            stats: stats.clone(),
            bindings,
            presence,
            store: url.clone(),
            data_dir: config.data_dir.clone(),
            people: crate::api::people::People::new(config.sessions),
            rulebook,
            publish_within_days: config.publication.within_days,
            health,
            credentials,
        });
        let http_stop = CancellationToken::new();
        let stop = http_stop.clone();
        let http = tokio::spawn(async move {
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::error!(message = "HTTP server failed.", error = %e);
            }
        });
        info!(message = "Collector started.", http = %http_addr, broker = %broker_url);
        Ok(Collector {
            ingest,
            http,
            http_stop,
            http_addr,
            broker_url,
            admin_token,
            stats,
            lead,
            leader_work,
            leader_stop,
            leadership,
            _embedded: embedded,
            _reload: reload,
        })
    }

    /// Where HTTP listens.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The broker ingest reads from.
    pub fn broker_url(&self) -> &BrokerUrl {
        &self.broker_url
    }

    /// The bootstrap admin's API token (`DATA_DIR/admin.token`).
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Whether this collector leads the work done once.
    pub fn lead(&self) -> &Lead {
        &self.lead
    }

    /// Drains ingest (everything taken is committed and acknowledged), lets the sink deliver
    /// what is committed (if this collector leads), steps down, then stops HTTP.
    pub async fn shutdown(self) {
        self.ingest.shutdown(Duration::from_secs(30)).await;
        self.leader_stop.cancel();
        let _ = self.leader_work.await;
        // Closing the lock's connection lets a standby take over at once.
        let leadership = self.leadership;
        let _ = tokio::task::spawn_blocking(move || drop(leadership)).await;
        self.http_stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.http).await;
        info!(message = "Collector stopped.");
    }
}

/// An address clients on this machine can dial for a listener bound to `addr`.
fn loopback_for(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        "127.0.0.1".into()
    } else {
        addr.ip().to_string()
    }
}
