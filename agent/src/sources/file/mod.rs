//! The `file` source: tails a file of JSON lines or CSV, follows rotation, and remembers where
//! it stopped across restarts.
//!
//! Every `poll_interval_ms` it reads what was appended since its offset, turns complete lines
//! into records ([`lines`](super::lines)), and appends batches to the spool. Each batch carries,
//! in the same spool record, the tail's state once its lines are read (`{"inode", "offset",
//! "header"}`, a *source mark*, see [`crate::spool::Spool::append_marked`]): the batch and the
//! read position are written in one step, so a restart resumes exactly after what was spooled
//! and never reads a spooled line again (exactly once from the file into the spool). The state
//! file is still written after each append (atomically: temporary file, fsync, rename), with
//! the seq of that batch; it covers progress over lines that made no batch (bad lines) and
//! spools from before marks. On start the newer of the two wins (by seq).
//!
//! One edge remains: lines holding both readings and events end a group with two batches, one
//! per stream, and only the second carries the mark; a crash between their two appends reads
//! the first batch's lines again (stored twice, never lost).
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
    /// (The spool keeps this source's marks under [`FileConfig::mark_key`].)
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
    /// The name the spool keeps this source's marks under: its state file, which is its own.
    pub fn mark_key(&self) -> String {
        format!("file:{}", self.state_file.display())
    }

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
    mark: Option<(spotcheck_protocol::Seq, String)>,
}

impl FileSource {
    /// Resumes from `mark`, the state spooled with its last batch (if newer than the state
    /// file).
    pub fn with_mark(mut self, mark: Option<(spotcheck_protocol::Seq, String)>) -> FileSource {
        self.mark = mark;
        self
    }

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
            mark: None,
        }
    }

    /// Tails until shutdown.
    pub async fn run(self) -> Result<(), SourceError> {
        let saved =
            TailState::load(&self.config.state_file).map_err(|reason| SourceError::Start {
                source_name: self.name.clone(),
                reason,
            })?;
        let spooled = self
            .mark
            .as_ref()
            .and_then(|(seq, text)| Some((*seq, serde_json::from_str::<TailState>(text).ok()?)));
        // The newer wins: the mark is written with its batch, the state file just after it.
        let state = match (saved, spooled) {
            (Some(saved), Some((seq, spooled))) if saved.seq.is_none_or(|s| s < seq.0) => {
                Some(spooled)
            }
            (None, Some((_, spooled))) => Some(spooled),
            (saved, _) => saved,
        };
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
