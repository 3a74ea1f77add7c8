//! Counters and gauges, kept in one place so that `/metrics` and `/api/v1/stats` read the same
//! numbers; and the tracing subscriber set-up.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use serde::Serialize;

/// Label of the rejection counter: the stable reason code.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// A `DecodeError::code()` or an ingest reason such as `unknown_agent`.
    pub reason: String,
}

/// Label of the per-agent counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AgentLabel {
    /// The agent id.
    pub agent: String,
}

/// The collector's counters. Cheap to clone: every field is an `Arc` inside.
#[derive(Clone, Default)]
pub struct Stats {
    /// Readings committed to the store.
    pub readings_ingested: Counter,
    /// Event records committed to the store.
    pub events_ingested: Counter,
    /// Batches committed (readings or events).
    pub batches_committed: Counter,
    /// Messages rejected and dead-lettered, by reason.
    pub rejected: Family<ReasonLabel, Counter>,
    /// Messages rejected, all reasons together.
    pub messages_rejected: Counter,
    /// Readings and records inside rejected batches.
    pub readings_rejected: Counter,
    /// Readings stored with quality `bad` because their value lies outside their metric's
    /// physically possible range.
    pub readings_out_of_range: Counter,
    /// Sequence numbers each agent gave up without their being stored (its spool overflowed).
    pub batches_given_up: Family<AgentLabel, Counter>,
    /// Rejected messages not kept because their source used up its dead-letter quota.
    pub dead_letters_over_quota: Counter,
    /// Batches dropped because (agent, seq) was already committed.
    pub duplicates_dropped: Counter,
    /// Store transactions.
    pub commits: Counter,
    /// Agents whose last status is online.
    pub agents_online: Gauge,
    /// 1 while the ingest pipeline runs.
    pub ingest_up: Gauge,
    /// Anomaly tasks opened by the rule engine.
    pub anomaly_tasks_opened: Counter,
    /// Console logins refused (wrong name or password, or over the rate limit).
    pub login_failures: Counter,
    /// Batches kept back now behind a gap in their agent's sequence.
    pub batches_kept_back: Gauge,
    /// Days from today (China time) to the holiday calendar's last day; negative once it has
    /// ended (updated when `/metrics` is read).
    pub calendar_days_left: Gauge,
    /// The time-series sink's numbers (all zero when no sink is configured).
    pub sink: SinkStats,
    /// 1 while this collector leads the work done once (always on SQLite), 0 on a standby.
    pub leader: Gauge,
    /// Retention runs this collector made (as the leader).
    pub retention_runs: Counter,
    /// Rule ticks (time-driven rules) this collector evaluated (as the leader).
    pub rule_ticks: Counter,
    /// Seconds from ingest taking a message from the broker to its commit.
    pub commit_latency: CommitLatency,
}

/// Seconds from ingest taking a message from the broker to the commit that stored it (or its
/// dead letter): checking, queueing for the commit thread and the transaction itself, not
/// the confirmation that follows. A histogram, so that a scraper can read any quantile over
/// any window (`histogram_quantile(0.99, rate(…_bucket[1m]))`).
#[derive(Clone)]
pub struct CommitLatency(pub Histogram);

impl Default for CommitLatency {
    fn default() -> Self {
        // 0.25 ms to about 8 s, doubling: a commit takes milliseconds; seconds mean a backlog.
        CommitLatency(Histogram::new(exponential_buckets(0.000_25, 2.0, 16)))
    }
}

/// The time-series sink's counters and gauges (`spotcheck_sink_*`).
#[derive(Clone, Default)]
pub struct SinkStats {
    /// Points the server accepted.
    pub points_written: Counter,
    /// Write requests that failed and will be retried (connection errors, 429, 5xx, …).
    pub write_errors: Counter,
    /// Points refused by the server (400/413/422) and dead-lettered.
    pub points_dead_lettered: Counter,
    /// Readings and event rows passed over because the backlog exceeded its bound, or that
    /// line protocol cannot carry.
    pub points_skipped: Counter,
    /// Readings and event rows committed but not yet delivered.
    pub backlog: Gauge,
    /// Seconds since the oldest batch not yet delivered was received (0 when caught up).
    pub lag_seconds: Gauge,
}

/// `/api/v1/stats`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Readings committed since start.
    pub readings_ingested: u64,
    /// Event records committed since start.
    pub events_ingested: u64,
    /// Batches committed since start.
    pub batches_committed: u64,
    /// Messages dead-lettered since start.
    pub messages_rejected: u64,
    /// Readings and records inside those messages, where they could be counted.
    pub readings_rejected: u64,
    /// Redelivered batches dropped since start.
    pub duplicates_dropped: u64,
    /// Agents online now.
    pub agents_online: i64,
    /// Anomaly tasks opened since start.
    pub anomaly_tasks_opened: u64,
}

impl Stats {
    /// Counts a rejected message under `reason`.
    pub fn reject(&self, reason: &str, items: u64) {
        self.rejected
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
        self.messages_rejected.inc();
        self.readings_rejected.inc_by(items);
    }

    /// The numbers behind `/api/v1/stats`.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            readings_ingested: self.readings_ingested.get(),
            events_ingested: self.events_ingested.get(),
            batches_committed: self.batches_committed.get(),
            messages_rejected: self.messages_rejected.get(),
            readings_rejected: self.readings_rejected.get(),
            duplicates_dropped: self.duplicates_dropped.get(),
            agents_online: self.agents_online.get(),
            anomaly_tasks_opened: self.anomaly_tasks_opened.get(),
        }
    }

    /// Prometheus text exposition, every name prefixed `spotcheck_`.
    pub fn render(&self) -> String {
        let mut reg = Registry::with_prefix("spotcheck");
        reg.register(
            "readings_ingested",
            "Readings committed to the store",
            self.readings_ingested.clone(),
        );
        reg.register(
            "events_ingested",
            "Event records committed to the store",
            self.events_ingested.clone(),
        );
        reg.register(
            "batches_committed",
            "Batches committed to the store",
            self.batches_committed.clone(),
        );
        reg.register(
            "messages_rejected",
            "Messages dead-lettered, by reason",
            self.rejected.clone(),
        );
        reg.register(
            "readings_rejected",
            "Readings and records inside dead-lettered batches",
            self.readings_rejected.clone(),
        );
        reg.register(
            "duplicates_dropped",
            "Redelivered batches dropped by (agent, seq)",
            self.duplicates_dropped.clone(),
        );
        reg.register(
            "readings_out_of_range",
            "Readings stored flagged bad: outside their metric's physically possible range",
            self.readings_out_of_range.clone(),
        );
        reg.register(
            "agent_batches_given_up",
            "Batches an agent gave up without their being stored (its spool overflowed), per agent",
            self.batches_given_up.clone(),
        );
        reg.register(
            "dead_letters_over_quota",
            "Rejected messages only counted, not kept: their source used up its daily dead-letter quota",
            self.dead_letters_over_quota.clone(),
        );
        reg.register(
            "broker_refused_oversized",
            "Packets the embedded broker refused (connection closed) for exceeding limits.max_payload_bytes plus 4 KiB",
            BROKER_REFUSED_OVERSIZED.clone(),
        );
        reg.register("store_commits", "Store transactions", self.commits.clone());
        reg.register(
            "agents_online",
            "Agents whose last status is online",
            self.agents_online.clone(),
        );
        reg.register(
            "anomaly_tasks_opened",
            "Anomaly tasks opened by the rule engine",
            self.anomaly_tasks_opened.clone(),
        );
        reg.register(
            "login_failures",
            "Console logins refused (wrong name or password, or over the rate limit)",
            self.login_failures.clone(),
        );
        reg.register(
            "batches_kept_back",
            "Batches kept back behind a gap in their agent's sequence",
            self.batches_kept_back.clone(),
        );
        reg.register(
            "calendar_days_left",
            "Days until the holiday calendar's last listed day (China time); negative once it has ended",
            self.calendar_days_left.clone(),
        );
        reg.register(
            "ingest_commit_latency_seconds",
            "Seconds from ingest taking a message from the broker to its commit",
            self.commit_latency.0.clone(),
        );
        reg.register(
            "ingest_up",
            "1 while the ingest pipeline runs",
            self.ingest_up.clone(),
        );
        reg.register(
            "leader",
            "1 while this collector leads the work done once (sink, retention, rule ticker, notifications), 0 on a standby",
            self.leader.clone(),
        );
        reg.register(
            "retention_runs",
            "Retention runs (old readings, events and dead letters deleted) made by this collector as the leader",
            self.retention_runs.clone(),
        );
        reg.register(
            "rule_ticks",
            "Evaluations of the time-driven rules (inactivity, sliding windows) made by this collector as the leader",
            self.rule_ticks.clone(),
        );
        let sink = &self.sink;
        reg.register(
            "sink_points_written",
            "Points the time-series store accepted",
            sink.points_written.clone(),
        );
        reg.register(
            "sink_write_errors",
            "Write requests to the time-series store that failed and are retried",
            sink.write_errors.clone(),
        );
        reg.register(
            "sink_points_dead_lettered",
            "Points the time-series store refused (400/413/422), kept as dead letters",
            sink.points_dead_lettered.clone(),
        );
        reg.register(
            "sink_points_skipped",
            "Readings and events not delivered: over the backlog bound or not encodable",
            sink.points_skipped.clone(),
        );
        reg.register(
            "sink_backlog",
            "Readings and event records committed but not yet delivered to the time-series store",
            sink.backlog.clone(),
        );
        reg.register(
            "sink_lag_seconds",
            "Seconds since the oldest batch not yet delivered was received",
            sink.lag_seconds.clone(),
        );
        let mut text = String::new();
        encode(&mut text, &reg).expect("writing to a String cannot fail");
        text
    }
}

/// Packets the embedded broker refused for exceeding its size limit (`limits.max_payload_bytes`
/// plus 4 KiB for the topic and header). rumqttd closes such a connection (MQTT 3.1.1 has no
/// reason code for it) and says so only in its own log; [`BrokerRefusals`] reads that log.
/// Process-wide, as the broker is.
pub static BROKER_REFUSED_OVERSIZED: std::sync::LazyLock<Counter> =
    std::sync::LazyLock::new(Counter::default);

/// A tracing layer that watches rumqttd's events for the packets it refuses as too large,
/// counts them in [`BROKER_REFUSED_OVERSIZED`] and logs them (at most 10 lines a minute, with
/// the count of those suppressed), so that an oversized message is never lost without a word.
pub struct BrokerRefusals {
    log: std::sync::Mutex<crate::ingest::bound::LogLimit>,
}

impl Default for BrokerRefusals {
    fn default() -> Self {
        BrokerRefusals {
            log: std::sync::Mutex::new(crate::ingest::bound::LogLimit::new(
                std::time::Duration::from_secs(60),
                10,
            )),
        }
    }
}

/// Finds rumqttd's "payload size limit exceeded" error in an event's fields.
#[derive(Default)]
struct Oversized(Option<String>);

impl tracing::field::Visit for Oversized {
    fn record_debug(&mut self, _: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        if text.contains("PayloadSizeLimitExceeded")
            || text.contains("Payload size has been exceeded")
        {
            self.0 = Some(text);
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for BrokerRefusals {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if !event.metadata().target().starts_with("rumqttd") {
            return;
        }
        let mut found = Oversized::default();
        event.record(&mut found);
        let Some(error) = found.0 else { return };
        BROKER_REFUSED_OVERSIZED.inc();
        let line = self
            .log
            .lock()
            .map(|mut l| l.allow("broker_oversized", std::time::Instant::now()));
        if let Ok(crate::ingest::bound::LogLine::Log { suppressed }) = line {
            tracing::warn!(
                message = "The embedded broker refused a packet over its size limit and closed the client's connection; the client must split its batches.",
                %error,
                suppressed
            );
        }
    }
}

/// Installs the `tracing` subscriber: human-readable lines on stderr, filtered by `RUST_LOG`
/// (default `info`), with rumqttd's per-connection noise turned down; and [`BrokerRefusals`],
/// which sees rumqttd's events whatever the filter.
pub fn init_tracing() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let mut directives = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    if !directives.contains("rumqttd") {
        // rumqttd logs every client disconnect as an error; keep its real warnings only.
        directives.push_str(",rumqttd=warn,rumqttd::server::broker=off,rumqttd::router=off");
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(filter),
        )
        .with(
            BrokerRefusals::default().with_filter(tracing_subscriber::filter::filter_fn(|m| {
                m.target().starts_with("rumqttd")
            })),
        )
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_are_summed_across_reasons_and_exposed_with_the_prefix() {
        let s = Stats::default();
        s.reject("bad_json", 0);
        s.reject("bad_json", 0);
        s.reject("unknown_agent", 3);
        assert_eq!(s.snapshot().messages_rejected, 3);
        assert_eq!(s.snapshot().readings_rejected, 3);
        let text = s.render();
        assert!(
            text.contains("spotcheck_messages_rejected_total{reason=\"bad_json\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("spotcheck_readings_ingested_total 0"),
            "{text}"
        );
    }
}
