//! `soak`: the two halves of `bench/soak.sh` that a shell script cannot do well.
//!
//! - `soak hostile`: a steady trickle of hostile input into the embedded broker for a given
//!   time, logged in as a registered agent (`soak-evil`, pool): garbage from unknown sources
//!   (empty, truncated, NUL bytes, deep nesting, an unknown agent), and from `soak-evil` a
//!   reused sequence number, an event kind of the wrong domain, an impossible pH, a batch
//!   kept back behind a gap that never fills, a forged MAC; now and then a payload over
//!   `limits.max_payload_bytes` (dead letter `too_large`) and one over the broker's packet
//!   limit (refused by the broker on its own connection). Writes what it sent, and what the
//!   collector must therefore have counted, to a JSON report.
//! - `soak api`: API traffic beside ingest at a steady rate, with per-minute latency figures.
//! - `soak console`: a supervisor's console open in headless Chromium for the whole run,
//!   probed every minute (live stream connected, counts arriving, no script error).
//! - `soak check`: after the run, asserts the accounting (every batch the real agents made is
//!   stored exactly once and whole; every hostile message is counted under its reason; the
//!   dead-letter quota held) and the bounds over the sampled CSV (memory plateau, open files,
//!   kept-back batches, `/healthz`), and prints the figures as a Markdown table.

mod api;
mod check;
mod console;
mod hostile;
mod latency;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use spotcheck_bench::parse_broker;
use spotcheck_protocol::{AgentKey, KeyGeneration};

use check::check;
use hostile::Hostile;

#[derive(Parser)]
#[command(about = "The hostile trickle and the final checks of bench/soak.sh")]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Publish hostile input for a while; write what was sent to --report.
    Hostile {
        /// The embedded broker, host:port.
        #[arg(long)]
        broker: String,
        /// The credential file of the registered agent to log in and sign as.
        #[arg(long)]
        credential: PathBuf,
        /// Its agent id (a pool agent).
        #[arg(long, default_value = "soak-evil")]
        agent: String,
        /// Its entity.
        #[arg(long, default_value = "soak-evil-pool")]
        entity: String,
        /// Seconds to run.
        #[arg(long)]
        duration_s: u64,
        /// One round of every kind of hostile message per this many milliseconds.
        #[arg(long, default_value_t = 2000)]
        period_ms: u64,
        /// A `too_large` payload every this many rounds (0: never).
        #[arg(long, default_value_t = 10)]
        too_large_every: u64,
        /// A packet over the broker's limit every this many rounds (0: never).
        #[arg(long, default_value_t = 60)]
        oversized_every: u64,
        /// Where to write the JSON report.
        #[arg(long)]
        report: PathBuf,
    },
    /// API traffic at a steady rate for a while; write the latency figures to --report.
    Api {
        /// The collector's HTTP address, host:port.
        #[arg(long)]
        http: String,
        /// An API token (the bootstrap admin's).
        #[arg(long)]
        token: String,
        /// Entities whose overview, series and events to read (repeat).
        #[arg(long = "entity")]
        entities: Vec<String>,
        /// Seconds to run.
        #[arg(long)]
        duration_s: u64,
        /// Requests a second.
        #[arg(long, default_value_t = 20)]
        rate: u32,
        /// Where to write the JSON report.
        #[arg(long)]
        report: PathBuf,
    },
    /// A supervisor's console open in headless Chromium for a while; write the probes to --report.
    Console {
        /// The collector's HTTP address, host:port.
        #[arg(long)]
        http: String,
        /// The bootstrap admin's API token (to create the supervisor).
        #[arg(long)]
        token: String,
        /// Chromium's profile directory.
        #[arg(long)]
        profile: PathBuf,
        /// Seconds to keep it open.
        #[arg(long)]
        duration_s: u64,
        /// Seconds between probes.
        #[arg(long, default_value_t = 60)]
        every_s: u64,
        /// Where to write the JSON report.
        #[arg(long)]
        report: PathBuf,
    },
    /// Check the accounting and the bounds after a run.
    Check {
        /// The collector's data directory.
        #[arg(long)]
        data: PathBuf,
        /// The collector's HTTP address, host:port.
        #[arg(long)]
        http: String,
        /// The hostile trickle's report.
        #[arg(long)]
        report: PathBuf,
        /// The sampled CSV.
        #[arg(long)]
        csv: PathBuf,
        /// A real agent's `id=spool_dir` (repeat for each).
        #[arg(long = "agent")]
        agents: Vec<String>,
        /// `ingest.dead_letter_quota_bytes` of the run.
        #[arg(long)]
        quota: u64,
        /// `ingest.max_held` of the run.
        #[arg(long)]
        max_held: u64,
        /// How long to wait for the last counts to arrive.
        #[arg(long, default_value_t = 120)]
        settle_s: u64,
        /// `soak api`'s report, if it ran.
        #[arg(long)]
        api_report: Option<PathBuf>,
        /// `soak console`'s report, if it ran.
        #[arg(long)]
        console_report: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Args::parse().cmd {
        Cmd::Hostile {
            broker,
            credential,
            agent,
            entity,
            duration_s,
            period_ms,
            too_large_every,
            oversized_every,
            report,
        } => {
            let (key, password) = read_credential(&credential)?;
            let h = Hostile {
                broker: parse_broker(&broker)?,
                key,
                password,
                agent,
                entity,
            };
            let r = h
                .run(
                    Duration::from_secs(duration_s),
                    Duration::from_millis(period_ms),
                    too_large_every,
                    oversized_every,
                )
                .await?;
            std::fs::write(&report, serde_json::to_vec_pretty(&r)?)?;
            eprintln!("soak hostile: {r}");
            Ok(())
        }
        Cmd::Api {
            http,
            token,
            entities,
            duration_s,
            rate,
            report,
        } => {
            let r = tokio::task::spawn_blocking(move || {
                api::run(
                    &http,
                    &token,
                    &entities,
                    Duration::from_secs(duration_s),
                    rate,
                    &report,
                )
            })
            .await??;
            eprintln!(
                "soak api: {} requests, {} errors, p99 {} ms",
                r["requests"], r["errors"], r["p99_ms"]
            );
            Ok(())
        }
        Cmd::Console {
            http,
            token,
            profile,
            duration_s,
            every_s,
            report,
        } => {
            let r = tokio::task::spawn_blocking(move || {
                console::run(
                    &http,
                    &token,
                    &profile,
                    Duration::from_secs(duration_s),
                    Duration::from_secs(every_s),
                    &report,
                )
            })
            .await??;
            eprintln!(
                "soak console: {} probes, {} offline, {} script errors",
                r["probes"], r["probes_offline"], r["script_errors"]
            );
            Ok(())
        }
        Cmd::Check {
            data,
            http,
            report,
            csv,
            agents,
            quota,
            max_held,
            settle_s,
            api_report,
            console_report,
        } => check(
            &data,
            &http,
            &report,
            &csv,
            &agents,
            quota,
            max_held,
            settle_s,
            &check::Beside {
                api: api_report,
                console: console_report,
            },
        ),
    }
}

/// An agent's key and broker password from its credential file.
fn read_credential(path: &Path) -> anyhow::Result<(AgentKey, String)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let t: toml::Table = text.parse().context("not a credential file")?;
    let generation = t
        .get("generation")
        .and_then(|v| v.as_integer())
        .context("no generation")? as u32;
    let key = AgentKey::from_hex(
        KeyGeneration(generation),
        t.get("key").and_then(|v| v.as_str()).context("no key")?,
    )?;
    let password = t
        .get("password")
        .and_then(|v| v.as_str())
        .context("no password")?
        .to_owned();
    Ok((key, password))
}
