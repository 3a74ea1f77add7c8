//! Ingest: from the broker to the store, acknowledging only what is committed.
//!
//! ```text
//! source (MQTT, manual acks) ─queue─▶ validate ─queue─▶ commit (SQLite thread) ─queue─▶ confirm
//!                                                                       PUBACK to broker + Ack to agent
//! ```
//!
//! - [`source`]: the rumqttc connection and its event loop.
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

use crate::registry::{Bindings, Presence};
use crate::store::Writer;
use crate::telemetry::Stats;
use commit::{CommitConfig, Validated};
use source::{Received, SourceConfig};
use validate::{validate, Verdict};

/// Why ingest did not start.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The broker was not reachable.
    #[error(transparent)]
    Source(#[from] source::SourceError),
    /// The commit thread could not be started.
    #[error("cannot start the commit thread: {0}")]
    Thread(#[from] std::io::Error),
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
        source_cfg: SourceConfig,
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
        let mut links = Vec::with_capacity(source_cfg.connections);
        for conn in 0..source_cfg.connections.max(1) {
            links.push(source::connect(&source_cfg, conn, wait, queue).await?);
        }
        let (pub_tx, pub_rx) = mpsc::channel::<Received>(queue);
        let (val_tx, val_rx) = mpsc::channel::<Validated>(queue);
        let (com_tx, com_rx) = mpsc::channel(64);
        let stop = CancellationToken::new();
        let drained = CancellationToken::new();

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
            let clients = links.iter().map(|(c, _)| c.clone()).collect();
            let drained = drained.clone();
            tokio::spawn(async move {
                confirm::run(clients, com_rx).await;
                drained.cancel();
            })
        };
        let sources = links
            .into_iter()
            .enumerate()
            .map(|(conn, (client, eventloop))| {
                tokio::spawn(source::run(
                    conn,
                    client,
                    eventloop,
                    source_cfg.clone(),
                    pub_tx.clone(),
                    stop.clone(),
                    drained.clone(),
                ))
            })
            .collect();
        drop(pub_tx);
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
    while let Some(Received { conn, publish }) = rx.recv().await {
        let verdict = validate(
            &publish.topic,
            &publish.payload,
            &bindings,
            &limits,
            UnixMillis::now(),
        );
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
        if tx
            .send(Validated {
                conn,
                publish,
                verdict,
            })
            .await
            .is_err()
        {
            break;
        }
    }
}
