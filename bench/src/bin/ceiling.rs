//! `ceiling`: the fastest possible consumer. It subscribes to every readings topic at QoS 1,
//! parses nothing, acknowledges each message and stops when the expected number has arrived.
//!
//! Prints `ready` once subscribed and `done_unix_ns=…` when the last message has arrived.

use std::time::Instant;

use anyhow::bail;
use clap::Parser;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, SubscribeReasonCode};
use spotcheck_bench::{parse_broker, unix_ns, MAX_PACKET_BYTES};
use spotcheck_protocol::topic::filter;

#[derive(Parser)]
#[command(about = "Count and acknowledge readings batches; the ceiling of any consumer")]
struct Args {
    /// The broker, host:port.
    #[arg(long, default_value = "127.0.0.1:1883")]
    broker: String,
    /// Messages (batches) to wait for.
    #[arg(long)]
    batches: usize,
    /// Readings per batch (not parsed; used to report readings).
    #[arg(long, default_value_t = 1)]
    batch_size: usize,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (host, port) = parse_broker(&args.broker)?;
    let mut options = MqttOptions::new(format!("bench-ceiling-{}", std::process::id()), host, port);
    options
        .set_clean_session(true)
        .set_manual_acks(true)
        .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
    // Acks queue in the request channel while the event loop hands out the publishes it has
    // already read (it serves requests only between network reads), so the backlog can exceed
    // the broker's in-flight window. Room for every message: `try_ack` never meets a full
    // channel (flume does not allocate its capacity up front).
    let (client, mut eventloop) = AsyncClient::new(options, args.batches + 16);
    client
        .subscribe(filter::all_readings(), QoS::AtLeastOnce)
        .await?;

    let mut first: Option<Instant> = None;
    let mut messages = 0usize;
    while messages < args.batches {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                if ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, SubscribeReasonCode::Failure))
                {
                    bail!("the broker refused the subscription");
                }
                println!("ready");
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                first.get_or_insert_with(Instant::now);
                client.try_ack(&p)?;
                messages += 1;
            }
            Ok(_) => {}
            Err(e) => bail!("MQTT connection failed after {messages} messages: {e}"),
        }
    }
    println!("done_unix_ns={}", unix_ns());
    // Let the last acks go out.
    let _ = tokio::time::timeout(std::time::Duration::from_millis(50), async {
        while eventloop.poll().await.is_ok() {}
    })
    .await;
    let secs = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    let readings = messages * args.batch_size;
    eprintln!(
        "ceiling: {messages} messages, {readings} readings, first to last {secs:.3} s ({:.0} readings/s)",
        readings as f64 / secs.max(1e-9)
    );
    Ok(())
}
