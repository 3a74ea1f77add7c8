//! `bench-broker`: the collector's embedded broker (rumqttd, with the collector's limits),
//! standalone, so the baselines can run against the same broker as Spotcheck.
//!
//! Prints `ready` once it accepts connections, then runs until killed. With `--count N` it is
//! also the in-process ceiling: it reads every readings topic through the same in-process link
//! the collector uses, counts messages without parsing them and prints `done_unix_ns=…` after
//! the N-th (and goes on serving: the load generator still waits for its last PUBACKs).

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use rumqttd::Notification;
use spotcheck_bench::unix_ns;
use spotcheck_collector::broker::EmbeddedBroker;
use spotcheck_protocol::limits::DEFAULT_MAX_PAYLOAD_BYTES;
use spotcheck_protocol::topic::filter;

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
    /// Bytes of messages kept per subscription filter (the collector's
    /// `mqtt.embedded_buffer_bytes`). The default, 1 GiB, keeps every message of a benchmark
    /// run: the load generator does not re-send what a lagging consumer missed.
    #[arg(long, default_value_t = 1 << 30)]
    buffer_bytes: usize,
    /// Count this many readings messages in-process, then exit.
    #[arg(long)]
    count: Option<u64>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (broker, mut link) = EmbeddedBroker::start(
        args.listen,
        args.max_payload_bytes,
        args.max_inflight,
        args.buffer_bytes,
        None,
    )
    .context("cannot start the embedded broker")?;
    let Some(count) = args.count else {
        // The in-process link is left unsubscribed: the consumers connect over TCP.
        println!("ready {}", broker.listen());
        loop {
            std::thread::park();
        }
    };
    link.tx
        .subscribe(filter::all_readings())
        .map_err(|e| anyhow::anyhow!("in-process subscribe: {e}"))?;
    println!("ready {}", broker.listen());
    let mut seen = 0;
    while seen < count {
        match link.rx.recv() {
            Ok(Some(Notification::Forward(_))) => seen += 1,
            // The router paused the link after filling its buffer: ask for more.
            Ok(Some(Notification::Unschedule)) => link
                .rx
                .ready()
                .map_err(|e| anyhow::anyhow!("in-process link: {e}"))?,
            Ok(_) => {}
            Err(e) => anyhow::bail!("in-process link closed after {seen} messages: {e}"),
        }
    }
    println!("done_unix_ns={}", unix_ns());
    loop {
        std::thread::park();
    }
}
