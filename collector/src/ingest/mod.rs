//! Ingest: from the broker to the store, acknowledging only what is committed.
//!
//! ```text
//! source (broker link) ─queue─▶ validate ─queue─▶ commit (SQLite thread) ─queue─▶ confirm
//!                                                          PUBACK to broker (MQTT) + Ack to agent
//! ```
//!
//! - [`source`]: the broker link: in-process to the embedded broker, or MQTT connections with
//!   manual acks to an external one.
//! - [`validate`]: topic, registration and payload checks; a dead letter for anything wrong.
//! - [`commit`]: one transaction per group of messages; deduplication by (agent, seq).
//! - [`confirm`]: acknowledgements, strictly after commit.
//!
//! Every queue is bounded (`ingest.queue`); a full queue makes the stage before it wait, so a
//! slow disk ends up holding messages in the broker, never in unbounded memory.

pub mod commit;
pub mod confirm;
pub mod order;
pub mod source;
pub mod validate;

use std::time::Duration;

use spotcheck_protocol::{Limits, UnixMillis};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::broker::InProcessLink;
use crate::registry::{Bindings, Presence};
use crate::store::Writer;
use crate::telemetry::Stats;
use commit::{CommitConfig, Validated};
use confirm::Sink;
use source::mqtt::SourceConfig;
use source::Received;
use validate::{topic_not_utf8, validate, Verdict};

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
    /// Queue capacity between stages.
    pub queue: usize,
    /// Commit stage settings.
    pub commit: CommitConfig,
    /// The rule engine that runs inside every commit (none: readings are only stored).
    pub rules: Option<commit::RuleStage>,
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
        } = parts;
        let (pub_tx, pub_rx) = mpsc::channel::<Received>(queue);
        let (val_tx, val_rx) = mpsc::channel::<Validated>(queue);
        let (com_tx, com_rx) = mpsc::channel(64);
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
        let commit = commit::spawn(writer, rules, val_rx, com_tx, stats.clone(), commit)?;
        tokio::spawn(validate_stage(
            pub_rx,
            val_tx,
            bindings,
            presence,
            stats.clone(),
            limits,
        ));
        let confirm = {
            let drained = drained.clone();
            tokio::spawn(async move {
                confirm::run(sink, com_rx).await;
                drained.cancel();
            })
        };
        let sources = match connected {
            Connected::InProcess(rx) => {
                vec![tokio::spawn(source::local::run(rx, pub_tx, stop.clone()))]
            }
            Connected::Mqtt(links, cfg) => links
                .into_iter()
                .enumerate()
                .map(|(conn, (client, eventloop))| {
                    tokio::spawn(source::mqtt::run(
                        conn,
                        client,
                        eventloop,
                        cfg.clone(),
                        pub_tx.clone(),
                        stop.clone(),
                        drained.clone(),
                    ))
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

async fn validate_stage(
    mut rx: mpsc::Receiver<Received>,
    tx: mpsc::Sender<Validated>,
    bindings: Bindings,
    presence: Presence,
    stats: Stats,
    limits: Limits,
) {
    while let Some(Received {
        topic,
        payload,
        ack,
    }) = rx.recv().await
    {
        let verdict = match std::str::from_utf8(&topic) {
            Ok(topic) => validate(topic, &payload, &bindings, &limits, UnixMillis::now()),
            Err(_) => topic_not_utf8(&topic, &payload),
        };
        match &verdict {
            Verdict::Status { agent, state } => {
                let online = presence.set(agent.clone(), *state);
                stats.agents_online.set(online as i64);
            }
            Verdict::Reject(d) => {
                tracing::warn!(message = "Message rejected; kept as a dead letter.", topic = %d.topic, agent = ?d.agent.as_ref().map(|a| a.as_str()), code = d.code, reason = %d.reason);
            }
            Verdict::Accept { .. } | Verdict::KeptBack => {}
        }
        if tx.send(Validated { ack, verdict }).await.is_err() {
            break;
        }
    }
}
