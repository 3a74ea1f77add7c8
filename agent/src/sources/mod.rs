//! Sources: where readings and records come from, first stop of the data flow.
//!
//! A source makes [`Batch`]es whose sequence number is still `0`, checks them against the
//! protocol's [`Limits`](spotcheck_protocol::Limits), and sends them into a bounded queue
//! ([`SpoolQueue`]). The spool takes them from there and assigns the sequence number. A full
//! queue makes a source wait (the spool only appends to local disk, so it is never full for
//! long); a source never waits on the broker. A source that must tell someone "stored" (the
//! HTTP intake's 202, the file tail's saved offset) uses [`SpoolQueue::append`], which returns
//! only once the spool has appended the batch.
//!
//! - [`simulate`]: seeded generators for the three feeds (pool water quality, game sessions and
//!   payments, internet-hospital consultations and prescriptions).
//! - [`modbus`]: polls a Modbus TCP device's registers per a register map.
//! - [`file`]: tails a file of JSON lines or CSV, across rotation and restarts.
//! - [`stdin`]: JSON lines or CSV piped into the agent.
//! - [`http`]: a local endpoint operators' systems POST JSON records to.
//! - [`record`] and [`lines`]: the record formats the intake sources share, and batching.

pub mod file;
pub mod http;
pub mod lines;
pub mod modbus;
pub mod record;
pub mod simulate;
pub mod stdin;

use serde::Deserialize;
use spotcheck_protocol::{AgentId, Batch, Domain, Seq};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use file::{FileConfig, FileSource};
pub use http::{HttpConfig, HttpSource};
pub use modbus::{ModbusConfig, ModbusSource};
pub use simulate::{SimulateConfig, SimulateSource};
pub use stdin::{StdinConfig, StdinSource};

/// One `[[sources]]` table; `type` picks the kind.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceConfig {
    /// Seeded synthetic data for one feed.
    Simulate(SimulateConfig),
    /// A local HTTP endpoint for JSON records.
    Http(HttpConfig),
    /// A tailed file of JSON lines or CSV.
    File(FileConfig),
    /// JSON lines or CSV on standard input.
    Stdin(StdinConfig),
    /// Registers polled from a Modbus TCP device.
    Modbus(ModbusConfig),
}

impl SourceConfig {
    /// Appends to `problems` what is wrong with this source; `at` names it (`sources[0]`).
    pub(crate) fn validate(&self, at: &str, domain: Domain, problems: &mut Vec<String>) {
        match self {
            SourceConfig::Simulate(c) => c.validate(at, domain, problems),
            SourceConfig::Http(c) => c.validate(at, problems),
            SourceConfig::File(c) => c.validate(at, problems),
            SourceConfig::Stdin(c) => c.validate(at, problems),
            SourceConfig::Modbus(c) => c.validate(at, problems),
        }
    }
}

/// One batch on its way to the spool, with an optional channel for the spool's answer.
#[derive(Debug)]
pub struct Submission {
    /// The batch, seq 0.
    pub batch: Batch,
    /// Told the seq once the batch is appended, or why it was refused.
    pub appended: Option<oneshot::Sender<Result<Seq, String>>>,
    /// Where its source stands once this batch is spooled, `(source, state)`: written in the
    /// same spool record (see [`crate::spool::Spool::append_marked`]).
    pub mark: Option<(String, String)>,
}

/// Per source, the state it last spooled with a batch and that batch's seq (from
/// [`crate::spool::Spool::marks`]).
pub type Marks = std::collections::BTreeMap<String, (Seq, String)>;

/// Why [`SpoolQueue::append`] did not store a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// The spool stage has stopped (shutdown or a spool failure).
    #[error("the agent is shutting down or its spool has failed; retry later")]
    Closed,
    /// The spool refused this batch (for example larger than the whole spool).
    #[error("the spool refused the batch: {0}")]
    Refused(String),
}

/// The sending side of the bounded queue into the spool.
#[derive(Debug, Clone)]
pub struct SpoolQueue(mpsc::Sender<Submission>);

impl SpoolQueue {
    /// A queue of `capacity` submissions and its receiving end.
    pub fn bounded(capacity: usize) -> (SpoolQueue, mpsc::Receiver<Submission>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (SpoolQueue(tx), rx)
    }

    /// Queues `batch` (waiting while the queue is full); does not wait for the append.
    pub async fn send(&self, batch: Batch) -> Result<(), AppendError> {
        self.0
            .send(Submission {
                batch,
                appended: None,
                mark: None,
            })
            .await
            .map_err(|_| AppendError::Closed)
    }

    /// Queues `batch` and waits until the spool has appended it; returns its seq.
    pub async fn append(&self, batch: Batch) -> Result<Seq, AppendError> {
        self.append_marked(batch, None).await
    }

    /// [`SpoolQueue::append`] with the source's mark written in the same spool record.
    pub async fn append_marked(
        &self,
        batch: Batch,
        mark: Option<(String, String)>,
    ) -> Result<Seq, AppendError> {
        let (tx, rx) = oneshot::channel();
        self.0
            .send(Submission {
                batch,
                appended: Some(tx),
                mark,
            })
            .await
            .map_err(|_| AppendError::Closed)?;
        match rx.await {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(reason)) => Err(AppendError::Refused(reason)),
            Err(_) => Err(AppendError::Closed),
        }
    }
}

/// Why a source stopped early.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A source could not start (for example its listen address is taken).
    #[error("source {source_name}: {reason}")]
    Start {
        /// Which source (`sources[0]`).
        source_name: String,
        /// What went wrong and what to do.
        reason: String,
    },
    /// The spool stage is gone, so produced batches have nowhere to go.
    #[error("source {source_name}: the spool stage has stopped, so batches cannot be stored; see the spool's error above")]
    SpoolGone {
        /// Which source (`sources[0]`).
        source_name: String,
    },
}

/// Starts every configured source as its own task; each stops when `shutdown` fires or when it
/// has made its configured number of batches, and drops its sender then.
pub fn spawn_all(
    configs: &[SourceConfig],
    agent: &AgentId,
    domain: Domain,
    out: &SpoolQueue,
    shutdown: &CancellationToken,
    marks: &Marks,
) -> JoinSet<Result<(), SourceError>> {
    let mut set = JoinSet::new();
    for (i, config) in configs.iter().enumerate() {
        match config {
            SourceConfig::Simulate(c) => {
                let source = SimulateSource::new(
                    format!("sources[{i}]"),
                    c.clone(),
                    agent.clone(),
                    out.clone(),
                    shutdown.clone(),
                );
                set.spawn(source.run().in_current_span());
            }
            SourceConfig::Http(c) => {
                let source = HttpSource::new(
                    format!("sources[{i}]"),
                    c.clone(),
                    agent.clone(),
                    domain,
                    out.clone(),
                    shutdown.clone(),
                )
                .with_marks(marks.clone());
                set.spawn(source.run().in_current_span());
            }
            SourceConfig::File(c) => {
                let source = FileSource::new(
                    format!("sources[{i}]"),
                    c.clone(),
                    agent.clone(),
                    domain,
                    out.clone(),
                    shutdown.clone(),
                )
                .with_mark(marks.get(&c.mark_key()).cloned());
                set.spawn(source.run().in_current_span());
            }
            SourceConfig::Modbus(c) => {
                let source = ModbusSource::new(
                    format!("sources[{i}]"),
                    c.clone(),
                    agent.clone(),
                    out.clone(),
                    shutdown.clone(),
                );
                set.spawn(source.run().in_current_span());
            }
            SourceConfig::Stdin(c) => {
                let source = StdinSource::new(
                    format!("sources[{i}]"),
                    c.clone(),
                    agent.clone(),
                    domain,
                    out.clone(),
                    shutdown.clone(),
                );
                set.spawn(source.run().in_current_span());
            }
        }
    }
    set
}
