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
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
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
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let passed = runtime
        .block_on(spotcheck_agent::check::check(&cfg))
        .with_context(|| format!("check of {} failed", path.display()))?;
    for line in passed {
        println!("ok: {line}");
    }
    Ok(())
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
