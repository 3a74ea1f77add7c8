//! Spotcheck's field agent: it sits next to the sensors and the operators' systems of one
//! supervised entity and pushes their feeds to the collector over MQTT, surviving broker outages
//! and kill -9 without losing or duplicating a batch the collector has not confirmed.
//!
//! The modules, in the order a batch travels:
//!
//! - [`config`]: the TOML file, parsed strictly and validated all at once.
//! - [`sources`]: where batches come from: [`sources::modbus`] (register maps polled over
//!   Modbus TCP), [`sources::http`] (operators POST JSON records; 202 only once spooled),
//!   [`sources::file`] (JSON lines or CSV, tailed across rotation and restarts),
//!   [`sources::stdin`], and [`sources::simulate`] (seeded pool, game and hospital feeds). A
//!   source checks each batch against the protocol's limits and sends it into a bounded queue.
//! - [`spool`]: the disk spool. Appending gives a batch its sequence number; the record stays on
//!   disk until the collector confirms it, across restarts. Bounded, drop-oldest when full.
//! - [`publish`]: the MQTT side. A connection task polls the rumqttc event loop and reconnects
//!   with backoff; the publisher stage appends to the spool, publishes pending records QoS 1,
//!   re-sends what stays unconfirmed, and removes what the collector acks.
//! - [`run`](mod@run): the topology that wires the stages together and shuts them down.
//! - Operations: [`check`](mod@check) (`spotcheck-agent check`: config, spool, broker and device
//!   reachability), [`health`] (optional `/healthz` and `/metrics`), [`telemetry`] (the counted
//!   and logged internal events).
//!
//! The wire format (topics, payloads, acks) is the `spotcheck-protocol` crate's.

pub mod check;
pub mod config;
pub mod credential;
pub mod health;
pub mod publish;
pub mod run;
pub mod sources;
pub mod spool;
pub mod telemetry;

pub use config::{AgentConfig, ConfigError};
pub use run::{run, run_with_stats, AgentError, AgentStats};
pub use spool::{spool_next_seq, SpoolError, SpoolStats};
