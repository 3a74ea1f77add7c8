//! Ingest: from the broker to the store, acknowledging only what is committed.
//!
//! ```text
//! source (broker link) + validate ─queue─▶ commit (SQLite thread) ─queue─▶ confirm
//!                                                 PUBACK to broker (MQTT) + Ack to agent
//! ```
//!
//! - [`source`]: the broker link: in-process to the embedded broker, or MQTT connections with
//!   manual acks to an external one. Each source task validates what it receives and hands
//!   the commit stage groups of messages (what the link had ready, up to [`CHUNK`]), so a
//!   message costs no task switch of its own.
//! - [`validate`]: topic, registration and payload checks; a dead letter for anything wrong.
//! - [`commit`]: one transaction per group of messages; deduplication by (agent, seq).
//! - [`confirm`]: acknowledgements, strictly after commit.
//!
//! Every queue is bounded (about `ingest.queue` messages); a full queue makes the stage before
//! it wait, so a slow disk ends up holding messages in the broker, never in unbounded memory.

pub mod bound;
pub mod commit;
pub mod confirm;
pub mod order;
pub mod source;
pub mod validate;

use std::time::Duration;

use spotcheck_protocol::Limits;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::broker::InProcessLink;
use crate::health::Part;
use crate::registry::{Bindings, Presence};
use crate::store::Writer;
use crate::telemetry::Stats;
use commit::{CommitConfig, Validated};
use confirm::Sink;
use source::mqtt::SourceConfig;
use validate::Validator;

/// Most messages a source hands the commit stage at once (rumqttd's link gives up to 200).
pub const CHUNK: usize = 256;

/// Why ingest did not start.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The broker was not reachable.
    #[error(transparent)]
    Source(#[from] source::mqtt::SourceError),
    /// The embedded broker refused the in-process link's subscriptions.
    #[error("cannot subscribe ingest to the embedded broker: {0}")]
    InProcess(String),
    /// The commit thread could not be started.
    #[error("cannot start the commit thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Where ingest reads from.
pub enum BrokerLink {
    /// The embedded broker, in-process.
    InProcess(InProcessLink),
    /// A broker over TCP (usually an external one).
    Mqtt(SourceConfig),
}

/// A broker link, connected, before its source tasks start.
enum Connected {
    InProcess(rumqttd::local::LinkRx),
    Mqtt(
        Vec<(rumqttc::AsyncClient, rumqttc::EventLoop)>,
        SourceConfig,
    ),
}

/// Everything ingest needs besides the broker connection.
pub struct IngestParts {
    /// The store's writer, moved onto the commit thread.
    pub writer: Writer,
    /// Agent bindings.
    pub bindings: Bindings,
    /// Agent presence, updated from status messages.
    pub presence: Presence,
    /// Counters.
    pub stats: Stats,
    /// Payload limits.
    pub limits: Limits,
    /// About how many messages may wait for the commit thread.
    pub queue: usize,
    /// Commit stage settings.
    pub commit: CommitConfig,
    /// The rule engine that runs inside every commit (none: readings are only stored).
    pub rules: Option<commit::RuleStage>,
    /// Where each stage reports whether it runs (`/healthz`).
    pub health: crate::health::Health,
    /// Whether batches and statuses must carry their agent's MAC (acks are signed either way
    /// when the agent has a key).
    pub auth: validate::Auth,
    /// Bytes of unconfirmed dead letters one source may add per day (`bound`).
    pub dead_letter_quota_bytes: u64,
}

/// A running ingest pipeline.
pub struct Ingest {
    stop: CancellationToken,
    sources: Vec<JoinHandle<()>>,
    confirm: JoinHandle<()>,
    commit: std::thread::JoinHandle<()>,
    stats: Stats,
}

impl Ingest {
    /// Connects to the broker (failing if it is unreachable within `wait`) and starts the stages.
    pub async fn start(
        link: BrokerLink,
        wait: Duration,
        parts: IngestParts,
    ) -> Result<Ingest, IngestError> {
        let IngestParts {
            writer,
            bindings,
            presence,
            stats,
            limits,
            queue,
            commit,
            rules,
            health,
            auth,
            dead_letter_quota_bytes,
        } = parts;
        // Counted in groups of up to CHUNK messages; under load groups fill up.
        let (val_tx, val_rx) = mpsc::channel::<Vec<Validated>>((queue / CHUNK).max(4));
        let (com_tx, com_rx) = mpsc::channel(64);
        let bounds = std::sync::Arc::new(bound::Bounds::new(dead_letter_quota_bytes));
        let validator = Validator {
            bindings,
            presence,
            stats: stats.clone(),
            limits,
            auth: auth.clone(),
            bounds: bounds.clone(),
        };
        let stop = CancellationToken::new();
        let drained = CancellationToken::new();

        // Connect (and fail) before any stage starts.
        let (sink, connected) = match link {
            BrokerLink::InProcess(InProcessLink { mut tx, rx }) => {
                source::local::subscribe(&mut tx).map_err(IngestError::InProcess)?;
                info!(message = "Ingest reads the embedded broker in-process.");
                (Sink::InProcess(tx), Connected::InProcess(rx))
            }
            BrokerLink::Mqtt(cfg) => {
                let mut links = Vec::with_capacity(cfg.connections);
                for conn in 0..cfg.connections.max(1) {
                    links.push(source::mqtt::connect(&cfg, conn, wait, queue).await?);
                }
                let clients = links.iter().map(|(c, _)| c.clone()).collect();
                (Sink::Mqtt(clients), Connected::Mqtt(links, cfg))
            }
        };
        let commit = commit::spawn(
            writer,
            rules,
            val_rx,
            com_tx,
            (stats.clone(), bounds),
            commit,
            &health,
        )?;
        let confirm = {
            let drained = drained.clone();
            tokio::spawn(async move {
                confirm::run(sink, com_rx, auth).await;
                drained.cancel();
            })
        };
        let sources = match connected {
            Connected::InProcess(rx) => {
                let alive = health.alive(Part::BrokerLink);
                let run = source::local::run(rx, validator, val_tx, stop.clone());
                vec![tokio::spawn(async move {
                    let _alive = alive;
                    run.await
                })]
            }
            Connected::Mqtt(links, cfg) => links
                .into_iter()
                .enumerate()
                .map(|(conn, (client, eventloop))| {
                    let alive = health.alive(Part::BrokerLink);
                    let run = source::mqtt::run(
                        conn,
                        client,
                        eventloop,
                        cfg.clone(),
                        validator.clone(),
                        val_tx.clone(),
                        stop.clone(),
                        drained.clone(),
                    );
                    tokio::spawn(async move {
                        let _alive = alive;
                        run.await
                    })
                })
                .collect(),
        };
        stats.ingest_up.set(1);
        Ok(Ingest {
            stop,
            sources,
            confirm,
            commit,
            stats,
        })
    }

    /// Whether every stage is still running.
    pub fn is_running(&self) -> bool {
        self.sources.iter().all(|s| !s.is_finished())
            && !self.confirm.is_finished()
            && !self.commit.is_finished()
    }

    /// Stops taking messages, commits and acknowledges everything already taken, disconnects.
    ///
    /// If the store cannot commit within `grace` (a failing disk, say), it gives up: what was
    /// not committed was not acknowledged either, so the broker and the agents deliver it again.
    pub async fn shutdown(self, grace: Duration) {
        self.stop.cancel();
        if tokio::time::timeout(grace, self.confirm).await.is_err() {
            tracing::warn!(
                message = "Ingest did not drain in time; stopping without acknowledging the rest (it will be delivered again).",
                grace_s = grace.as_secs()
            );
            for s in &self.sources {
                s.abort();
            }
        } else {
            let _ = tokio::task::spawn_blocking(move || self.commit.join()).await;
        }
        for s in self.sources {
            let _ = s.await;
        }
        self.stats.ingest_up.set(0);
        info!(message = "Ingest stopped.");
    }
}
