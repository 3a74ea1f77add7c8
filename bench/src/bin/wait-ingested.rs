//! `wait-ingested`: waits until a collector's `/api/v1/stats` counts at least `--total`
//! readings ingested, then prints `done_unix_ns=…` (the wall clock when it saw them). With
//! `--port` given several times (collectors sharing one store), their counts are summed.
//!
//! `bench/ingest.sh` used to poll with `curl | jq` twenty times a second: two processes
//! started per poll cost about a sixth of a core, taken from the collector under test. This
//! is one process on one kept-alive connection.

use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Parser)]
#[command(about = "Wait until a collector has ingested a number of readings")]
struct Args {
    /// The collector's HTTP port on 127.0.0.1; repeat it for several collectors.
    #[arg(long, required = true)]
    port: Vec<u16>,
    /// Readings to wait for.
    #[arg(long)]
    total: u64,
    /// Seconds before giving up (exit status 1).
    #[arg(long, default_value_t = 300)]
    timeout_s: u64,
    /// Milliseconds between polls.
    #[arg(long, default_value_t = 20)]
    interval_ms: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let urls: Vec<String> = args
        .port
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}/api/v1/stats"))
        .collect();
    let agent = ureq::Agent::new_with_defaults();
    let deadline = Instant::now() + Duration::from_secs(args.timeout_s);
    // Each collector's last count: a failed poll (one still starting) keeps what it said.
    let mut counts = vec![0u64; urls.len()];
    let mut last = 0u64;
    while Instant::now() < deadline {
        for (url, count) in urls.iter().zip(counts.iter_mut()) {
            if let Ok(mut res) = agent.get(url).call() {
                if let Ok(v) = res.body_mut().read_json::<serde_json::Value>() {
                    *count = v["readings_ingested"].as_u64().unwrap_or(*count);
                }
            }
        }
        last = counts.iter().sum();
        if last >= args.total {
            println!("done_unix_ns={}", spotcheck_bench::unix_ns());
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(args.interval_ms));
    }
    anyhow::bail!(
        "{last} of {} readings ingested after {} s",
        args.total,
        args.timeout_s
    )
}
