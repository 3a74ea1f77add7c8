//! `spotcheck-demo`: everything on this machine — embedded broker, collector, simulated
//! agents, console — until Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use spotcheck_collector::{shutdown, telemetry};
use spotcheck_demo::{DemoOptions, InfluxTarget};
use tokio_util::sync::CancellationToken;

/// Run everything on this machine: embedded broker, collector, simulated agents, console.
#[derive(Parser)]
#[command(name = "spotcheck-demo", version)]
struct Cli {
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
    /// Also write readings to this InfluxDB / VictoriaMetrics (base URL, v2 write API).
    #[arg(long)]
    influx: Option<String>,
    /// With --influx: use the v1 API (InfluxDB 1.x) and write into this database.
    #[arg(long, requires = "influx")]
    influx_v1_db: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init_tracing();
    anyhow::ensure!(cli.per_domain >= 1, "--per-domain must be at least 1");
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
        spotcheck_demo::run(
            DemoOptions {
                http: cli.http,
                mqtt: cli.mqtt,
                data: cli.data,
                per_domain: cli.per_domain,
                influx: cli.influx.map(|url| InfluxTarget {
                    url,
                    v1_database: cli.influx_v1_db,
                }),
            },
            stop,
        )
        .await?;
        Ok(())
    })
}
