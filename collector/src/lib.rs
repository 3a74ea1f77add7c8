//! Spotcheck's collector, in the order a reading flows through it:
//!
//! - [`broker`]: the embedded MQTT broker (rumqttd) or the address of an external one.
//! - [`ingest`]: subscribe → validate → commit → confirm; nothing is acknowledged before it
//!   is committed, and every agent is told which of its batches are safe.
//! - [`registry`]: which agent may publish for which entity; who is online.
//! - [`store`]: SQLite (WAL) with migrations: readings, events, dedupe keys, dead letters.
//! - [`api`] and [`console`]: `/healthz`, `/metrics`, `/api/v1/*` and the web console.
//! - [`telemetry`]: the counters behind `/metrics` and `/api/v1/stats`; logging set-up.
//! - [`config`], [`topology`], [`shutdown`]: reading the config, wiring the parts, stopping.
//! - [`demo`]: everything above plus simulated agents, in one command.

pub mod api;
pub mod broker;
pub mod config;
pub mod console;
pub mod demo;
pub mod ingest;
pub mod registry;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod topology;

pub use config::{Config, RawConfig};
pub use topology::Collector;
