//! The `modbus` source: polls a Modbus TCP device (pool controller, water-quality analyser)
//! and turns its registers into readings, per a register map in the config.
//!
//! Each register entry names its address, register type (`holding` or `input`), data type
//! (`u16`, `i16`, `u32`, `i32`, `f32`; the 32-bit ones span two registers), word order (`big`:
//! high word first, the Modbus convention; `little`: low word first), and the reading it makes:
//! `value = raw × scale + offset`, `metric` and `unit`. Every poll reads each entry and sends
//! one batch of what it got. A Modbus exception (e.g. illegal address) or a timeout is logged
//! with the entry and counted (`spotcheck_agent_modbus_errors_total`); the other entries are
//! still read, and the next poll tries again. A broken connection is re-established at the
//! next poll.

mod decode;

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use spotcheck_protocol::{
    check, AgentId, Batch, Limits, Metric, Quality, Reading, ReadingBatch, Seq, Unit, UnixMillis,
    Version,
};
use tokio_modbus::client::{Context, Reader};
use tokio_modbus::Slave;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use decode::{decode, DataType, WordOrder};

use super::{SourceError, SpoolQueue};
use crate::telemetry;

/// Holding or input registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegisterType {
    /// Function code 3.
    Holding,
    /// Function code 4.
    Input,
}

/// One entry of the register map.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterConfig {
    /// The reading's metric (e.g. `free_chlorine`).
    pub metric: Metric,
    /// The reading's unit (e.g. `mg/L`).
    pub unit: Unit,
    /// The first register's address (0-based, as on the wire).
    pub address: u16,
    /// `holding` or `input`.
    pub register: RegisterType,
    /// How the register(s) encode the value.
    pub data_type: DataType,
    /// For 32-bit types: which register holds the high word.
    #[serde(default)]
    pub word_order: WordOrder,
    /// Multiplies the raw value.
    #[serde(default = "default_scale")]
    pub scale: f64,
    /// Added after scaling.
    #[serde(default)]
    pub offset: f64,
}

fn default_scale() -> f64 {
    1.0
}

/// A `[[sources]]` table with `type = "modbus"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusConfig {
    /// The device, `host:port` (Modbus TCP is usually port 502).
    pub address: SocketAddr,
    /// The unit (slave) id.
    #[serde(default = "default_unit_id")]
    pub unit_id: u8,
    /// How often to poll, milliseconds.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// How long one request may take, milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// The register map.
    pub registers: Vec<RegisterConfig>,
}

fn default_unit_id() -> u8 {
    1
}
fn default_poll_interval_ms() -> u64 {
    5_000
}
fn default_timeout_ms() -> u64 {
    1_000
}

impl ModbusConfig {
    pub(crate) fn validate(&self, at: &str, problems: &mut Vec<String>) {
        if self.poll_interval_ms == 0 {
            problems.push(format!("{at}.poll_interval_ms is 0; use at least 1"));
        }
        if self.timeout_ms == 0 {
            problems.push(format!("{at}.timeout_ms is 0; use at least 1"));
        }
        let max = Limits::default().max_batch_len;
        if self.registers.is_empty() || self.registers.len() > max {
            problems.push(format!(
                "{at}.registers has {} entries; list 1 to {max} [[sources.registers]]",
                self.registers.len()
            ));
        }
        for (i, r) in self.registers.iter().enumerate() {
            if let Some(expected) = r.metric.expected_unit() {
                if expected != r.unit {
                    problems.push(format!(
                        "{at}.registers[{i}].unit is {} but {} is measured in {}",
                        r.unit.as_str(),
                        r.metric.as_str(),
                        expected.as_str()
                    ));
                }
            }
            if !r.scale.is_finite() || r.scale == 0.0 || !r.offset.is_finite() {
                problems.push(format!(
                    "{at}.registers[{i}]: scale must be finite and non-zero, offset finite"
                ));
            }
            if u32::from(r.address) + u32::from(r.data_type.registers()) > 0x1_0000 {
                problems.push(format!(
                    "{at}.registers[{i}].address {} leaves no room for a {:?}",
                    r.address, r.data_type
                ));
            }
        }
    }
}

/// The Modbus polling stage.
#[derive(Debug)]
pub struct ModbusSource {
    name: String,
    config: ModbusConfig,
    agent: AgentId,
    out: SpoolQueue,
    shutdown: CancellationToken,
}

impl ModbusSource {
    /// A stage named `name` polling `config.address` until `shutdown`.
    pub fn new(
        name: String,
        config: ModbusConfig,
        agent: AgentId,
        out: SpoolQueue,
        shutdown: CancellationToken,
    ) -> ModbusSource {
        ModbusSource {
            name,
            config,
            agent,
            out,
            shutdown,
        }
    }

    /// Polls until shutdown.
    pub async fn run(self) -> Result<(), SourceError> {
        info!(
            message = "Modbus source started.",
            source = %self.name,
            device = %self.config.address,
            registers = self.config.registers.len()
        );
        let mut tick = tokio::time::interval(Duration::from_millis(self.config.poll_interval_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ctx: Option<Context> = None;
        loop {
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return Ok(()),
                _ = tick.tick() => {}
            }
            let readings = self.poll(&mut ctx).await;
            if readings.is_empty() {
                continue;
            }
            let now = UnixMillis::now();
            let batch = Batch::Readings(ReadingBatch {
                v: Version,
                agent: self.agent.clone(),
                seq: Seq(0),
                after: None,
                readings,
            });
            let batch = match check(batch, &Limits::default(), now) {
                Ok(b) => b.into_inner(),
                Err(e) => {
                    telemetry::record_rejected(&self.name, e.code(), &e.to_string());
                    continue;
                }
            };
            self.out
                .send(batch)
                .await
                .map_err(|_| SourceError::SpoolGone {
                    source_name: self.name.clone(),
                })?;
        }
    }

    /// One poll of every entry; connects first when needed.
    async fn poll(&self, ctx: &mut Option<Context>) -> Vec<Reading> {
        let timeout = Duration::from_millis(self.config.timeout_ms);
        if ctx.is_none() {
            let slave = Slave(self.config.unit_id);
            match tokio::time::timeout(
                timeout,
                tokio_modbus::client::tcp::connect_slave(self.config.address, slave),
            )
            .await
            {
                Ok(Ok(c)) => {
                    info!(message = "Connected to the Modbus device.", source = %self.name, device = %self.config.address);
                    *ctx = Some(c);
                }
                Ok(Err(e)) => {
                    telemetry::modbus_error(
                        &self.name,
                        &format!("cannot connect to {}: {e}", self.config.address),
                    );
                    return Vec::new();
                }
                Err(_) => {
                    telemetry::modbus_error(
                        &self.name,
                        &format!("connecting to {} timed out", self.config.address),
                    );
                    return Vec::new();
                }
            }
        }
        let c = ctx.as_mut().expect("connected above");
        let mut out = Vec::with_capacity(self.config.registers.len());
        let mut all = true;
        for (i, r) in self.config.registers.iter().enumerate() {
            let n = r.data_type.registers();
            let read = match r.register {
                RegisterType::Holding => {
                    tokio::time::timeout(timeout, c.read_holding_registers(r.address, n)).await
                }
                RegisterType::Input => {
                    tokio::time::timeout(timeout, c.read_input_registers(r.address, n)).await
                }
            };
            let at = format!(
                "registers[{i}] ({} at {:?} {})",
                r.metric.as_str(),
                r.register,
                r.address
            );
            match read {
                Ok(Ok(Ok(words))) => match decode(&words, r.data_type, r.word_order) {
                    Some(raw) => out.push(Reading {
                        metric: r.metric.clone(),
                        value: raw * r.scale + r.offset,
                        unit: r.unit,
                        ts_ms: UnixMillis::now(),
                        quality: Quality::default(),
                    }),
                    None => {
                        all = false;
                        telemetry::modbus_error(
                            &self.name,
                            &format!(
                                "{at}: the device returned {} registers, not {n}",
                                words.len()
                            ),
                        );
                    }
                },
                Ok(Ok(Err(exception))) => {
                    all = false;
                    telemetry::modbus_error(
                        &self.name,
                        &format!("{at}: Modbus exception {exception}"),
                    );
                }
                Ok(Err(e)) => {
                    telemetry::modbus_error(
                        &self.name,
                        &format!("{at}: {e}; reconnecting at the next poll"),
                    );
                    *ctx = None;
                    return out;
                }
                Err(_) => {
                    warn!(message = "Modbus request timed out; reconnecting at the next poll.", source = %self.name, entry = %at);
                    telemetry::modbus_error(
                        &self.name,
                        &format!("{at}: no answer within {timeout:?}"),
                    );
                    *ctx = None;
                    return out;
                }
            }
        }
        if all {
            telemetry::modbus_polled();
        }
        out
    }
}
