//! `spotcheck-agent run --config FILE [--broker URL]`: runs one field agent until Ctrl-C or
//! SIGTERM. `spotcheck-agent check --config FILE [--broker URL]`: validates the configuration
//! and what it points at, exits non-zero with the reasons. Everything else lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use spotcheck_agent::AgentConfig;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "spotcheck-agent", version, about = "Spotcheck field agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent until Ctrl-C or SIGTERM.
    Run {
        /// The agent's TOML configuration.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Broker URL (mqtt://host:port), overriding mqtt.broker.
        #[arg(long, value_name = "URL")]
        broker: Option<String>,
    },
    /// Validate the configuration, the spool directory and the broker's reachability; exit
    /// non-zero with every problem found.
    Check {
        /// The agent's TOML configuration.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Broker URL (mqtt:// or mqtts://host:port), overriding mqtt.broker.
        #[arg(long, value_name = "URL")]
        broker: Option<String>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spotcheck-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> anyhow::Result<()> {
    let (config, broker) = match Cli::parse().command {
        Command::Run { config, broker } => (config, broker),
        Command::Check { config, broker } => return check(&config, broker),
    };
    let mut cfg = AgentConfig::load(&config)?;
    if let Some(url) = broker {
        cfg.mqtt.broker = url;
    }
    cfg.validate()
        .with_context(|| format!("in {}", config.display()))?;
    let runtime = runtime()?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(watch_signals(shutdown.clone()));
        spotcheck_agent::run(cfg, shutdown).await
    })?;
    Ok(())
}

fn check(path: &std::path::Path, broker: Option<String>) -> anyhow::Result<()> {
    let mut cfg = AgentConfig::load(path)?;
    if let Some(url) = broker {
        cfg.mqtt.broker = url;
    }
    let runtime = runtime()?;
    let passed = runtime
        .block_on(spotcheck_agent::check::check(&cfg))
        .with_context(|| format!("check of {} failed", path.display()))?;
    for line in passed {
        println!("ok: {line}");
    }
    Ok(())
}

/// The agent's runtime: one thread. An agent moves about a thousand readings a second through
/// a handful of tasks that each wait most of the time; worker threads only added their own
/// stacks and malloc arenas (each holding freed memory of its own) and a cross-thread wake-up
/// for every hand-over between a source, the publisher and the connection (BENCHMARKS.md,
/// "Agent with every kind of source"). File reads still go to tokio's blocking threads, which
/// exist only while there is such work.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Cancels `shutdown` on Ctrl-C or SIGTERM.
async fn watch_signals(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!(message = "Shutdown requested.");
    shutdown.cancel();
}
