//! `spotcheck-collector`: serve, or run the demo.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use spotcheck_collector::demo::{self, DemoOptions};
use spotcheck_collector::{shutdown, telemetry, Collector, RawConfig};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "spotcheck-collector",
    version,
    about = "Spotcheck's collector: MQTT ingest, store, API and console"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the collector with a configuration file.
    Serve {
        /// The TOML configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Run everything on this machine: embedded broker, collector, simulated agents, console.
    Demo {
        /// HTTP address of the API and console.
        #[arg(long, default_value = "127.0.0.1:8080")]
        http: SocketAddr,
        /// Address of the embedded MQTT broker.
        #[arg(long, default_value = "127.0.0.1:1883")]
        mqtt: SocketAddr,
        /// Data directory (database, admin token, agents' spools).
        #[arg(long, default_value = "./spotcheck-data")]
        data: PathBuf,
        /// Simulated entities per domain.
        #[arg(long, default_value_t = 3)]
        per_domain: usize,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let stop = CancellationToken::new();
        let on_signal = stop.clone();
        tokio::spawn(async move {
            shutdown::signal().await;
            on_signal.cancel();
        });
        match cli.command {
            Command::Serve { config } => {
                let config = RawConfig::load(&config)?.validate()?;
                let collector = Collector::start(config).await?;
                stop.cancelled().await;
                collector.shutdown().await;
            }
            Command::Demo {
                http,
                mqtt,
                data,
                per_domain,
            } => {
                anyhow::ensure!(per_domain >= 1, "--per-domain must be at least 1");
                demo::run(
                    DemoOptions {
                        http,
                        mqtt,
                        data,
                        per_domain,
                    },
                    stop,
                )
                .await?;
            }
        }
        Ok(())
    })
}
