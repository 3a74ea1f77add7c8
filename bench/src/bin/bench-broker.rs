//! `bench-broker`: the collector's embedded broker (rumqttd, with the collector's limits),
//! standalone, so the baselines can run against the same broker as Spotcheck.
//!
//! Prints `ready` once it accepts connections, then runs until killed.

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use spotcheck_collector::broker::EmbeddedBroker;
use spotcheck_protocol::limits::DEFAULT_MAX_PAYLOAD_BYTES;

#[derive(Parser)]
#[command(about = "Run the collector's embedded MQTT broker on its own")]
struct Args {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:1883")]
    listen: SocketAddr,
    /// Largest payload accepted, in bytes (the collector's limit).
    #[arg(long, default_value_t = DEFAULT_MAX_PAYLOAD_BYTES)]
    max_payload_bytes: usize,
    /// Unacknowledged QoS 1 messages per connection (the collector's setting).
    #[arg(long, default_value_t = 1000)]
    max_inflight: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The in-process link is left unsubscribed: the consumers here connect over TCP.
    let (broker, _link) =
        EmbeddedBroker::start(args.listen, args.max_payload_bytes, args.max_inflight)
            .context("cannot start the embedded broker")?;
    println!("ready {}", broker.listen());
    loop {
        std::thread::park();
    }
}
