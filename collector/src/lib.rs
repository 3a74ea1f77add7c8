//! Spotcheck's collector, in the order a reading flows through it:
//!
//! - [`broker`]: the embedded MQTT broker (rumqttd) or the address of an external one.
//! - [`ingest`]: subscribe → validate → commit → confirm; nothing is acknowledged before it
//!   is committed, and every agent is told which of its batches are safe.
//! - [`registry`]: which agent may publish for which entity; who is online; the item list
//!   and the entity and inspector libraries (一单两库).
//! - [`store`]: SQLite (WAL) with migrations: readings, events, dedupe keys, dead letters.
//! - [`rules`]: rule packs as data, the streaming anomaly engine, remote-check evaluation.
//! - [`plan`]: annual plans: ratios per risk class, batches, partners, progress.
//! - [`draw`]: verifiable double-random draws: commit, reveal, record, verify.
//! - [`joint`]: joint inspections: merging tasks, the joint-task quota.
//! - [`tasks`]: the tasks' lifecycle; anomaly tasks opened by the rule engine inside ingest's
//!   commits ([`tasks::anomaly`]); [`rulebook`]: the active rule packs.
//! - [`check`]: remote checks of drawn tasks, verdicts with evidence, inspectors' decisions.
//! - [`results`]: result categories, the publication deadline, publishing, the public feed.
//! - [`notify`]: notifications: an outbox written in the transactions that cause events, a
//!   delivery worker that groups, rate-limits and retries, and the webhook, WeCom, DingTalk
//!   and e-mail channels; [`contacts`]: each department's liaison officers.
//! - [`report`]: per-department figures for the joint-meeting office (JSON, CSV, e-mail).
//! - [`audit`]: the append-only, hash-chained audit log that anyone with an export can check.
//! - [`sink`]: every committed reading (and event counts) to InfluxDB / VictoriaMetrics
//!   through the line-protocol write API, from a cursor of its own, never in ingest's way.
//! - [`api`] and [`console`]: `/healthz`, `/metrics`, `/api/v1/*` and the web console;
//!   [`views`]: the read-only queries behind the console (queue, evidence, entity, changes).
//! - [`health`]: what each running part reports to `/healthz`.
//! - [`telemetry`]: the counters behind `/metrics` and `/api/v1/stats`; logging set-up.
//! - [`config`], [`topology`], [`shutdown`]: reading the config, wiring the parts, stopping.
//! - [`cli`]: the one-shot subcommands (`draw verify`, `registry import`, `audit verify`,
//!   `audit export`).

pub mod api;
pub mod audit;
pub mod broker;
pub mod check;
pub mod cli;
pub mod config;
pub mod console;
pub mod contacts;
pub mod draw;
#[doc(hidden)]
pub mod fuzz_targets;
pub mod health;
pub mod ingest;
pub mod joint;
pub mod notify;
pub mod plan;
pub mod registry;
pub mod report;
pub mod results;
pub mod rulebook;
pub mod rules;
pub mod shutdown;
pub mod sink;
pub mod store;
pub mod tasks;
pub mod telemetry;
pub mod topology;
pub mod users;
pub mod views;

pub use config::{Config, RawConfig};
pub use topology::Collector;
