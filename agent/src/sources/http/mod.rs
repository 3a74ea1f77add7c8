//! The `http` source: a local endpoint operators' systems POST JSON records to.
//!
//! `POST /v1/records` with `Authorization: Bearer TOKEN` and a body of one record or an array
//! of records, all readings or all events (see [`record`](super::record)). The answers:
//!
//! | status | `error` | when |
//! |---|---|---|
//! | 202 | — | every record is appended to the spool; body `{"accepted": n, "seq": s}` |
//! | 401 | `unauthorized` | the bearer token is missing or wrong |
//! | 413 | `too_large` | the body is over `max_body_bytes` |
//! | 400 | `malformed_json` | the body is not JSON |
//! | 422 | `invalid_record` | a record is not a valid reading or event, is of another domain, or the batch breaks a protocol limit |
//! | 503 | `unavailable` | the agent is shutting down or its spool failed; retry later |
//!
//! Every error body is `{"error": CODE, "reason": TEXT}`; every refusal is counted
//! (`spotcheck_agent_records_rejected_total`) and logged. 202 comes only after the spool has
//! appended the batch, so a client that saw 202 can forget the record.

mod intake;

use std::net::SocketAddr;

use serde::Deserialize;
use spotcheck_protocol::{AgentId, Domain, Limits};
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::{SourceError, SpoolQueue};
use crate::config::Secret;

pub use intake::router;

/// A `[[sources]]` table with `type = "http"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on; keep it on loopback or a private network.
    pub listen: SocketAddr,
    /// The bearer token clients must send (at least 16 characters). Never logged.
    pub token: Secret,
    /// Largest request body accepted, bytes (at most the protocol's payload limit).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
}

fn default_max_body_bytes() -> usize {
    Limits::default().max_payload_bytes
}

/// The shortest bearer token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

impl HttpConfig {
    pub(crate) fn validate(&self, at: &str, problems: &mut Vec<String>) {
        if self.token.0.len() < MIN_TOKEN_LEN {
            problems.push(format!(
                "{at}.token is {} characters; use at least {MIN_TOKEN_LEN} random characters",
                self.token.0.len()
            ));
        }
        let max = Limits::default().max_payload_bytes;
        if self.max_body_bytes == 0 || self.max_body_bytes > max {
            problems.push(format!(
                "{at}.max_body_bytes is {}; use 1 to {max} (the protocol's payload limit)",
                self.max_body_bytes
            ));
        }
    }
}

/// The HTTP intake stage.
#[derive(Debug)]
pub struct HttpSource {
    name: String,
    config: HttpConfig,
    agent: AgentId,
    domain: Domain,
    out: SpoolQueue,
    shutdown: CancellationToken,
    marks: crate::sources::Marks,
}

impl HttpSource {
    /// A stage named `name` serving `config.listen` until `shutdown`.
    pub fn new(
        name: String,
        config: HttpConfig,
        agent: AgentId,
        domain: Domain,
        out: SpoolQueue,
        shutdown: CancellationToken,
    ) -> HttpSource {
        HttpSource {
            name,
            config,
            agent,
            domain,
            out,
            shutdown,
            marks: Default::default(),
        }
    }

    /// The spool's marks, to answer retries of requests spooled before a restart.
    pub fn with_marks(mut self, marks: crate::sources::Marks) -> HttpSource {
        self.marks = marks;
        self
    }

    /// Serves until shutdown; requests in progress are finished first.
    pub async fn run(self) -> Result<(), SourceError> {
        let listener = tokio::net::TcpListener::bind(self.config.listen)
            .await
            .map_err(|e| SourceError::Start {
                source_name: self.name.clone(),
                reason: format!(
                    "cannot listen on {}: {e}; pick a free address in listen",
                    self.config.listen
                ),
            })?;
        info!(message = "HTTP intake listening.", source = %self.name, listen = %self.config.listen);
        let app = router(intake::Intake {
            name: self.name.clone(),
            token: self.config.token.0.clone(),
            agent: self.agent,
            domain: self.domain,
            out: self.out,
            max_body_bytes: self.config.max_body_bytes,
            answered: tokio::sync::Mutex::new(intake::Answered::from_marks(
                &intake::mark_group(&self.name),
                &self.marks,
            )),
        });
        let shutdown = self.shutdown.clone();
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .map_err(|e| SourceError::Start {
                source_name: self.name,
                reason: format!("HTTP server failed: {e}"),
            })
    }
}
