//! The `file` source: tails a file of JSON lines or CSV, follows rotation, and remembers where
//! it stopped across restarts.
//!
//! Every `poll_interval_ms` it reads what was appended since its offset, turns complete lines
//! into records ([`lines`](super::lines)), and appends batches to the spool; after each append it
//! writes its state file (`{"inode", "offset", "header"}`, atomically: temporary file, fsync,
//! rename) with the offset just past the last line in that batch. So a restart resumes where the
//! spool stopped; the one window is a crash between an append and the state write, after which
//! that batch's lines are read again (at-least-once at this edge; the collector deduplicates
//! batches by seq, not records, so those records may be stored twice).
//!
//! **Rotation**: when the path names a different inode than the open file (renamed away and
//! recreated, as logrotate does), the old file is read to its end first, then the new file from
//! its start. When the file shrinks below the offset (truncated in place, `copytruncate`), it is
//! read again from the start. A file rotated while the agent was stopped is read from the start
//! of the new file; lines added to the old one after the stop are not read.
//!
//! A line that is not a valid record is logged with its byte offset, counted
//! (`spotcheck_agent_records_rejected_total`) and skipped.

mod tail;

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use spotcheck_protocol::{AgentId, Domain, Limits};
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::lines::Format;
use super::{SourceError, SpoolQueue};

pub use tail::TailState;

/// A `[[sources]]` table with `type = "file"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The file to tail; it may not exist yet.
    pub path: PathBuf,
    /// `json_lines` (default) or `csv` (first line of each file is the header).
    #[serde(default)]
    pub format: Format,
    /// Where the read offset is kept across restarts; its directory must be writable.
    pub state_file: PathBuf,
    /// How often to look for new lines, milliseconds.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Most records per batch.
    #[serde(default = "default_records_per_batch")]
    pub records_per_batch: usize,
}

fn default_poll_interval_ms() -> u64 {
    500
}
fn default_records_per_batch() -> usize {
    500
}

impl FileConfig {
    pub(crate) fn validate(&self, at: &str, problems: &mut Vec<String>) {
        if self.path.as_os_str().is_empty() {
            problems.push(format!("{at}.path is empty; name the file to tail"));
        }
        if self.state_file.as_os_str().is_empty() || self.state_file == self.path {
            problems.push(format!(
                "{at}.state_file must name a file of its own (not the tailed file)"
            ));
        }
        if self.poll_interval_ms == 0 {
            problems.push(format!("{at}.poll_interval_ms is 0; use at least 1"));
        }
        validate_records_per_batch(at, self.records_per_batch, problems);
    }
}

pub(crate) fn validate_records_per_batch(at: &str, n: usize, problems: &mut Vec<String>) {
    let max = Limits::default().max_batch_len;
    if !(1..=max).contains(&n) {
        problems.push(format!("{at}.records_per_batch is {n}; use 1 to {max}"));
    }
}

/// The file tail stage.
#[derive(Debug)]
pub struct FileSource {
    name: String,
    config: FileConfig,
    agent: AgentId,
    domain: Domain,
    out: SpoolQueue,
    shutdown: CancellationToken,
}

impl FileSource {
    /// A stage named `name` tailing `config.path` until `shutdown`.
    pub fn new(
        name: String,
        config: FileConfig,
        agent: AgentId,
        domain: Domain,
        out: SpoolQueue,
        shutdown: CancellationToken,
    ) -> FileSource {
        FileSource {
            name,
            config,
            agent,
            domain,
            out,
            shutdown,
        }
    }

    /// Tails until shutdown.
    pub async fn run(self) -> Result<(), SourceError> {
        let state =
            TailState::load(&self.config.state_file).map_err(|reason| SourceError::Start {
                source_name: self.name.clone(),
                reason,
            })?;
        info!(
            message = "File tail started.",
            source = %self.name,
            path = %self.config.path.display(),
            offset = state.as_ref().map_or(0, |s| s.offset)
        );
        let poll = Duration::from_millis(self.config.poll_interval_ms.max(1));
        let mut tail = tail::Tail::new(&self, state);
        loop {
            let more = tail.step().await?;
            if !more {
                tokio::select! {
                    _ = self.shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(poll) => {}
                }
            } else if self.shutdown.is_cancelled() {
                return Ok(());
            }
        }
    }
}
