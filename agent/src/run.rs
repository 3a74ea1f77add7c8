//! The topology: source → bounded queue → spool (inside the publisher) → broker, and acks back.
//! One shutdown token fans out to every stage.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, warn, Instrument};

use crate::config::{AgentConfig, ConfigError};
use crate::health;
use crate::publish::{self, Connection, Publisher, PublisherSettings, ShutdownState};
use crate::sources::{self, SourceError, SpoolQueue};
use crate::spool::{Spool, SpoolError, SpoolOptions};

/// What the agent is doing, for tests and health checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AgentStats {
    /// The seq the next batch gets; `next_seq - 1` batches were made in this spool's life.
    pub next_seq: u64,
    /// Batches in the spool not yet confirmed by the collector.
    pub pending: usize,
    /// Batches published and not yet confirmed.
    pub in_flight: usize,
    /// Batches dropped by the spool's overflow policy in its life (kept across restarts).
    pub dropped: u64,
    /// Unconfirmed records lost to damaged spool segments, found when the spool was opened.
    pub damaged: u64,
    /// Re-sends after the ack timeout since start.
    pub resent: u64,
    /// Whether the broker connection is up.
    pub connected: bool,
    /// Whether every source has finished (or shutdown has begun).
    pub sources_done: bool,
}

/// Why the agent stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The spool could not be opened or written.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// Publishing failed.
    #[error(transparent)]
    Publish(#[from] publish::PublishError),
    /// A source failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A stage's task panicked.
    #[error("agent stage {stage} crashed: {reason}; this is a bug, please report it with the log")]
    Crashed {
        /// The stage.
        stage: &'static str,
        /// The panic or cancellation.
        reason: String,
    },
}

/// How long a clean DISCONNECT may take to go out at shutdown.
const DISCONNECT_GRACE: Duration = Duration::from_secs(3);
/// Capacity of the connection → publisher event channel.
const NET_EVENTS: usize = 64;

/// Runs the agent until `shutdown` fires: validates the config, opens the spool, starts the
/// sources and the MQTT connection, and on shutdown stops the sources, spools what they made,
/// publishes the `offline` status, disconnects and flushes the spool.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> Result<(), AgentError> {
    run_with_stats(config, shutdown, watch::Sender::new(AgentStats::default())).await
}

/// [`run`], reporting its state into `stats` after every change.
pub async fn run_with_stats(
    config: AgentConfig,
    shutdown: CancellationToken,
    stats: watch::Sender<AgentStats>,
) -> Result<(), AgentError> {
    config.validate()?;
    let span = info_span!("agent", agent = %config.agent.id);
    run_validated(config, shutdown, stats)
        .instrument(span)
        .await
}

async fn run_validated(
    config: AgentConfig,
    shutdown: CancellationToken,
    stats: watch::Sender<AgentStats>,
) -> Result<(), AgentError> {
    let broker = config.broker_addr()?;
    let spool = Spool::open(
        &config.spool.dir,
        SpoolOptions {
            max_bytes: config.spool.max_bytes,
            segment_bytes: config.spool.segment_bytes,
            fsync: config.spool.fsync,
        },
    )?;
    info!(
        message = "Agent starting.",
        entity = %config.agent.entity,
        domain = %config.agent.domain,
        broker = %broker,
        spool = %config.spool.dir.display(),
        pending = spool.pending_len(),
        next_seq = spool.next_seq().0
    );

    let credential = crate::credential::Credential::for_config(&config)?;
    if credential.is_none() {
        warn!(message = "No credential configured (agent.credential_file): batches go unsigned and unsigned acks are believed. A collector that requires agent authentication (the default) will dead-letter every batch.");
    }
    let signer =
        crate::credential::Signer::new(credential.map(|c| c.key)).with_algorithm(config.agent.mac);
    let (client, eventloop) = publish::mqtt_client(&config, &broker, &signer)?;
    let (net_tx, net_rx) = mpsc::channel(NET_EVENTS);
    let stop_connection = CancellationToken::new();
    let connection = Connection::new(
        eventloop,
        config.agent.id.clone(),
        broker.to_string(),
        net_tx,
        stop_connection.clone(),
        signer.clone(),
    );
    let connection = tokio::spawn(connection.run().in_current_span());

    if let Some(t) = config.telemetry.clone() {
        tokio::spawn(health::serve(t, stats.subscribe(), shutdown.clone()).in_current_span());
    }

    let (batch_tx, batch_rx) = SpoolQueue::bounded(config.spool.queue_capacity);
    let mut sources = sources::spawn_all(
        &config.sources,
        &config.agent.id,
        config.agent.domain,
        &batch_tx,
        &shutdown,
        &spool.marks(),
    );
    // Only the sources hold senders now, so the queue closes when the last one stops.
    drop(batch_tx);

    let publisher = Publisher::new(
        PublisherSettings {
            agent: config.agent.id.clone(),
            entity: config.agent.entity.clone(),
            domain: config.agent.domain,
            ack_timeout: Duration::from_millis(config.mqtt.ack_timeout_ms),
            max_in_flight: config.mqtt.max_in_flight,
            signer,
        },
        client,
        spool,
        batch_rx,
        net_rx,
        shutdown.clone(),
        stats,
    );
    let published = publisher.run().await;
    // On a publisher error the sources must stop too.
    shutdown.cancel();

    if matches!(published, Ok(ShutdownState::Disconnecting)) {
        let mut connection = connection;
        if tokio::time::timeout(DISCONNECT_GRACE, &mut connection)
            .await
            .is_err()
        {
            warn!(message = "Clean disconnect timed out; closing the connection.");
            stop_connection.cancel();
            let _ = connection.await;
        }
    } else {
        stop_connection.cancel();
        let _ = connection.await;
    }

    let mut source_result = Ok(());
    while let Some(joined) = sources.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => source_result = Err(AgentError::from(e)),
            Err(e) => {
                source_result = Err(AgentError::Crashed {
                    stage: "source",
                    reason: e.to_string(),
                })
            }
        }
    }
    published?;
    source_result?;
    info!(message = "Agent stopped.");
    Ok(())
}
