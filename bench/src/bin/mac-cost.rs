//! `mac-cost`: what checking an agent's MAC costs per batch, against decoding the batch (issue
//! 10: the collector verifies the MAC of a batch's body before it decodes it).
//!
//! For batches of 1 and of 100 readings, as `loadgen` builds them, in one command:
//!
//! - **hmac**: `mac::verify` of a payload signed with HMAC-SHA256 (find the MAC, HMAC the
//!   body, compare, copy the body out);
//! - **b3**: the same with keyed BLAKE3;
//! - **strip**: `mac::unsigned_body` (what a collector with authentication off does to a signed
//!   payload: find the MAC and copy the body, no MAC computed);
//! - **decode**: `spotcheck_protocol::decode` of the unsigned body (parse and check), the work
//!   every batch needs with or without authentication.
//!
//! Times are this thread's CPU time per batch (`CLOCK_THREAD_CPUTIME_ID`), median of the
//! rounds; each round runs every cell once in turn, so a change of machine load falls on all of
//! them alike. The table gives the MACs as ratios to decode and BLAKE3 as a ratio to HMAC.

use clap::Parser;
use spotcheck_bench::{agent, agent_payloads};
use spotcheck_protocol::mac::{self, AgentKey, Algorithm, KeyGeneration};
use spotcheck_protocol::{decode, Limits, Stream, UnixMillis};

#[derive(Parser)]
#[command(about = "What checking a batch's MAC costs, against decoding it")]
struct Args {
    /// Batches of 100 readings per round (batches of 1: a hundred times as many).
    #[arg(long, default_value_t = 20_000)]
    batches: usize,
    /// Rounds per cell (median reported).
    #[arg(long, default_value_t = 11)]
    rounds: usize,
    /// Run only the cells with these names (`hmac`, `b3`, `strip`, `decode`, …), for a
    /// profiler; the others print as 0.
    #[arg(long)]
    only: Vec<String>,
    /// Batch sizes to run.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 100])]
    sizes: Vec<usize>,
}

fn cpu_now() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the call to fill in.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(r, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

/// One cell of the table: a name and the work done per payload.
type Cell<'a> = (&'a str, &'a [Vec<u8>], Box<dyn Fn(&[u8]) -> usize + 'a>);

/// Median nanoseconds per payload of each cell, the cells run in turn within each round (cells
/// not in `only`, when it names any, are skipped and report 0).
fn per_batch(rounds: usize, cells: &[Cell<'_>], only: &[String]) -> Vec<f64> {
    let mut times = vec![vec![0.0]; cells.len()];
    for _ in 0..rounds {
        for (i, (name, payloads, f)) in cells.iter().enumerate() {
            if !only.is_empty() && !only.iter().any(|o| o == name) {
                continue;
            }
            let start = cpu_now();
            let mut sink = 0usize;
            for p in payloads.iter() {
                sink = sink.wrapping_add(f(p));
            }
            std::hint::black_box(sink);
            times[i].push((cpu_now() - start) * 1e9 / payloads.len() as f64);
        }
    }
    // Each list holds a 0 first, dropped here (it stays for skipped cells).
    times
        .into_iter()
        .map(|t| if t.len() > 1 { t[1..].to_vec() } else { t })
        .map(|mut t| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let key = AgentKey::new(KeyGeneration(1), [7; mac::KEY_LEN])?;
    let (agent, _) = agent(0)?;
    let limits = Limits::default();
    let now = UnixMillis::now();
    println!(
        "| batch | bytes | hmac ns | b3 ns | strip ns | decode ns | hmac / decode | b3 / decode | b3 / hmac |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &size in &args.sizes {
        let n = args.batches * 100 / size;
        let bodies = agent_payloads(&agent, n, size, now.0)?;
        let hmac: Vec<Vec<u8>> = bodies
            .iter()
            .map(|b| mac::sign_with(Algorithm::HmacSha256, &key, b))
            .collect();
        let b3: Vec<Vec<u8>> = bodies
            .iter()
            .map(|b| mac::sign_with(Algorithm::Blake3, &key, b))
            .collect();
        let bytes = hmac.iter().map(Vec::len).sum::<usize>() / hmac.len();
        let verify = |p: &[u8]| mac::verify(&key, p).expect("signed above").len();
        let cells: Vec<Cell<'_>> = vec![
            ("hmac", &hmac, Box::new(verify)),
            ("b3", &b3, Box::new(verify)),
            (
                "strip",
                &hmac,
                Box::new(|p| mac::unsigned_body(p).expect("signed above").len()),
            ),
            (
                "decode",
                &bodies,
                Box::new(|p| {
                    decode(Stream::Readings, &agent, p, &limits, now)
                        .expect("loadgen's batches are valid")
                        .flagged()
                }),
            ),
        ];
        let t = per_batch(args.rounds, &cells, &args.only);
        let (h, b, strip, d) = (t[0], t[1], t[2], t[3]);
        println!(
            "| {size} | {bytes} | {h:.0} | {b:.0} | {strip:.0} | {d:.0} | {:.2} | {:.2} | {:.2} |",
            h / d,
            b / d,
            b / h
        );
    }
    Ok(())
}
