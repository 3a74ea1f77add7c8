//! The optional local `/healthz` and `/metrics` endpoints (`[telemetry] listen = "host:port"`).
//!
//! `GET /healthz` answers 200 with `{"status":"ok","connected":…,"pending":…}` while the agent
//! runs (the broker may be away: the agent is still doing its job, spooling). `GET /metrics` is
//! the Prometheus text format; every name starts with `spotcheck_agent_`.

use std::fmt::Write;
use std::net::SocketAddr;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::telemetry::{Counters, COUNTERS};
use crate::AgentStats;

/// The `[telemetry]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Where `/healthz` and `/metrics` are served; keep it on loopback or a private network.
    pub listen: SocketAddr,
}

/// The routes, reading `stats`.
pub fn router(stats: watch::Receiver<AgentStats>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(stats)
}

async fn healthz(State(stats): State<watch::Receiver<AgentStats>>) -> impl IntoResponse {
    let s = *stats.borrow();
    Json(serde_json::json!({ "status": "ok", "connected": s.connected, "pending": s.pending }))
}

/// The Prometheus text for `s` and the process counters.
pub fn render(s: &AgentStats) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = write!(
            out,
            "# HELP spotcheck_agent_{name} {help}\n# TYPE spotcheck_agent_{name} {kind}\nspotcheck_agent_{name} {value}\n"
        );
    };
    metric(
        "connected",
        "gauge",
        "1 while connected to the broker.",
        u64::from(s.connected),
    );
    metric(
        "spool_pending",
        "gauge",
        "Batches in the spool not yet confirmed by the collector.",
        s.pending as u64,
    );
    metric(
        "in_flight",
        "gauge",
        "Batches published and not yet confirmed.",
        s.in_flight as u64,
    );
    metric(
        "spool_next_seq",
        "gauge",
        "The sequence number the next batch gets.",
        s.next_seq,
    );
    metric(
        "spool_dropped_total",
        "counter",
        "Batches dropped by the spool's overflow policy (drop oldest), in the spool's life.",
        s.dropped,
    );
    metric(
        "spool_damaged_lost",
        "gauge",
        "Unconfirmed batches lost to damaged spool segments, found when the spool was opened (the log names them).",
        s.damaged,
    );
    metric(
        "resent_total",
        "counter",
        "Batches re-sent after the ack timeout.",
        s.resent,
    );
    let c = &COUNTERS;
    metric(
        "records_accepted_total",
        "counter",
        "Records the intake sources (http, file, stdin) accepted.",
        Counters::get(&c.records_accepted),
    );
    metric(
        "records_rejected_total",
        "counter",
        "Requests or records the intake sources refused.",
        Counters::get(&c.records_rejected),
    );
    metric(
        "modbus_polls_total",
        "counter",
        "Modbus polls that read every register.",
        Counters::get(&c.modbus_polls),
    );
    metric(
        "modbus_errors_total",
        "counter",
        "Modbus requests that failed (exception, timeout, connection).",
        Counters::get(&c.modbus_errors),
    );
    metric(
        "spool_disk_full_total",
        "counter",
        "Times the spool's disk filled up and the sources paused until acks freed space.",
        Counters::get(&c.spool_full),
    );
    out
}

async fn metrics(State(stats): State<watch::Receiver<AgentStats>>) -> impl IntoResponse {
    let s = *stats.borrow();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render(&s),
    )
}

/// Serves until `shutdown`; a failure to bind is logged, not fatal (`check` reports it).
pub async fn serve(
    config: TelemetryConfig,
    stats: watch::Receiver<AgentStats>,
    shutdown: CancellationToken,
) {
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(error) => {
            warn!(message = "Cannot serve /healthz and /metrics; continuing without them.", listen = %config.listen, %error);
            return;
        }
    };
    info!(message = "Serving /healthz and /metrics.", listen = %config.listen);
    let served = axum::serve(listener, router(stats))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(error) = served {
        warn!(message = "The /healthz and /metrics server stopped.", %error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_prefixed_and_typed() {
        let text = render(&AgentStats {
            pending: 3,
            dropped: 2,
            damaged: 0,
            ..AgentStats::default()
        });
        assert!(text.contains("spotcheck_agent_spool_pending 3\n"), "{text}");
        assert!(
            text.contains("spotcheck_agent_spool_dropped_total 2\n"),
            "{text}"
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("spotcheck_agent_"), "{line}");
        }
    }
}
