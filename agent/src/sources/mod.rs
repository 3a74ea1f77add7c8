//! Sources: where readings and records come from, first stop of the data flow.
//!
//! A source makes [`Batch`]es whose sequence number is still `0`, checks them against the
//! protocol's [`Limits`](spotcheck_protocol::Limits), and sends them into a bounded queue. The
//! spool takes them from there and assigns the sequence number. A full queue makes a source wait
//! (the spool only appends to local disk, so it is never full for long); a source never waits on
//! the broker.
//!
//! - [`simulate`]: seeded generators for the three feeds (pool water quality, game sessions and
//!   payments, internet-hospital consultations and prescriptions).

pub mod simulate;

use serde::Deserialize;
use spotcheck_protocol::{AgentId, Batch, Domain};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use simulate::{SimulateConfig, SimulateSource};

/// One `[[sources]]` table; `type` picks the kind.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceConfig {
    /// Seeded synthetic data for one feed.
    Simulate(SimulateConfig),
}

impl SourceConfig {
    /// Appends to `problems` what is wrong with this source; `at` names it (`sources[0]`).
    pub(crate) fn validate(&self, at: &str, domain: Domain, problems: &mut Vec<String>) {
        match self {
            SourceConfig::Simulate(c) => c.validate(at, domain, problems),
        }
    }
}

/// Why a source stopped early.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
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
    out: &mpsc::Sender<Batch>,
    shutdown: &CancellationToken,
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
        }
    }
    set
}
