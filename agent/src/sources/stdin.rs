//! The `stdin` source: JSON lines or CSV (header first) on standard input, e.g.
//! `operator-export | spotcheck-agent run --config agent.toml`.
//!
//! Lines are batched up to `records_per_batch`; a batch also goes out once no line has come for
//! `linger_ms`. At end of input the source stops; the agent then exits once every batch is
//! confirmed (as with a finite simulate source). Bad lines are logged, counted and skipped.

use std::time::Duration;

use serde::Deserialize;
use spotcheck_protocol::{AgentId, Batch, Domain};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::file::validate_records_per_batch;
use super::lines::{Batcher, Format, LineParser};
use super::{SourceError, SpoolQueue};
use crate::telemetry;

/// A `[[sources]]` table with `type = "stdin"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdinConfig {
    /// `json_lines` (default) or `csv` (first line is the header).
    #[serde(default)]
    pub format: Format,
    /// Most records per batch.
    #[serde(default = "default_records_per_batch")]
    pub records_per_batch: usize,
    /// Send a partial batch after this long without a new line, milliseconds.
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
}

fn default_records_per_batch() -> usize {
    500
}
fn default_linger_ms() -> u64 {
    200
}

impl StdinConfig {
    pub(crate) fn validate(&self, at: &str, problems: &mut Vec<String>) {
        validate_records_per_batch(at, self.records_per_batch, problems);
        if self.linger_ms == 0 {
            problems.push(format!("{at}.linger_ms is 0; use at least 1"));
        }
    }
}

/// The stdin stage.
#[derive(Debug)]
pub struct StdinSource {
    name: String,
    config: StdinConfig,
    agent: AgentId,
    domain: Domain,
    out: SpoolQueue,
    shutdown: CancellationToken,
}

impl StdinSource {
    /// A stage named `name` reading standard input until its end or `shutdown`.
    pub fn new(
        name: String,
        config: StdinConfig,
        agent: AgentId,
        domain: Domain,
        out: SpoolQueue,
        shutdown: CancellationToken,
    ) -> StdinSource {
        StdinSource {
            name,
            config,
            agent,
            domain,
            out,
            shutdown,
        }
    }

    async fn spool(&self, batches: Vec<Batch>) -> Result<(), SourceError> {
        for batch in batches {
            let n = batch.len();
            self.out
                .append(batch)
                .await
                .map_err(|_| SourceError::SpoolGone {
                    source_name: self.name.clone(),
                })?;
            telemetry::records_accepted(n);
        }
        Ok(())
    }

    /// Reads until end of input or shutdown.
    pub async fn run(self) -> Result<(), SourceError> {
        info!(message = "Reading records from stdin.", source = %self.name);
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        let mut parser = LineParser::new(self.config.format, None);
        let mut batcher = Batcher::new(
            self.agent.clone(),
            self.domain,
            self.config.records_per_batch,
        );
        let linger = Duration::from_millis(self.config.linger_ms.max(1));
        let mut n = 0u64;
        loop {
            let next = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break,
                _ = tokio::time::sleep(linger), if !batcher.is_empty() => {
                    self.spool(batcher.flush()).await?;
                    continue;
                }
                line = lines.next_line() => line,
            };
            let line = match next {
                Ok(Some(line)) => line,
                Ok(None) => break,
                Err(e) => {
                    telemetry::record_rejected(&self.name, "unreadable", &e.to_string());
                    break;
                }
            };
            n += 1;
            let at = format!("stdin line {n}");
            let full = match parser.parse(&line, &at) {
                Ok(Some(item)) => batcher.push(item, &at),
                Ok(None) => Ok(None),
                Err(e) => Err(e),
            };
            match full {
                Ok(Some(batch)) => self.spool(vec![batch]).await?,
                Ok(None) => {}
                Err(e) => telemetry::record_rejected(&self.name, e.code(), &e.to_string()),
            }
        }
        self.spool(batcher.flush()).await?;
        info!(message = "Stdin source stopped.", source = %self.name, lines = n);
        Ok(())
    }
}
