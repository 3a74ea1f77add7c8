//! `mac-cost`: what checking an agent's MAC costs per batch, against decoding the batch (issue
//! 10: the collector verifies `HMAC-SHA256(key, body)` before it decodes a batch).
//!
//! For batches of 1 and of 100 readings, as `loadgen` builds and signs them, in one command:
//!
//! - **verify**: `mac::verify` (find the MAC, HMAC the body, compare, copy the body out);
//! - **strip**: `mac::unsigned_body` (what a collector with authentication off does to a signed
//!   payload: find the MAC and copy the body, no HMAC);
//! - **decode**: `spotcheck_protocol::decode` of the unsigned body (parse and check), the work
//!   every batch needs with or without authentication.
//!
//! Times are this thread's CPU time per batch (`CLOCK_THREAD_CPUTIME_ID`), median of the
//! rounds; the table gives verify and strip as ratios to decode.

use clap::Parser;
use spotcheck_bench::{agent, agent_payloads};
use spotcheck_protocol::mac::{self, AgentKey, KeyGeneration};
use spotcheck_protocol::{decode, Limits, Stream, UnixMillis};

#[derive(Parser)]
#[command(about = "What checking a batch's MAC costs, against decoding it")]
struct Args {
    /// Batches of 100 readings per round (batches of 1: a hundred times as many).
    #[arg(long, default_value_t = 20_000)]
    batches: usize,
    /// Rounds per cell (median reported).
    #[arg(long, default_value_t = 7)]
    rounds: usize,
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

/// Median nanoseconds per payload of `f` over `payloads`.
fn per_batch(rounds: usize, payloads: &[Vec<u8>], mut f: impl FnMut(&[u8]) -> usize) -> f64 {
    let mut times: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = cpu_now();
            let mut sink = 0usize;
            for p in payloads {
                sink = sink.wrapping_add(f(p));
            }
            std::hint::black_box(sink);
            (cpu_now() - start) * 1e9 / payloads.len() as f64
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let key = AgentKey::new(KeyGeneration(1), [7; mac::KEY_LEN])?;
    let (agent, _) = agent(0)?;
    let limits = Limits::default();
    let now = UnixMillis::now();
    println!(
        "| batch | bytes | verify ns | strip ns | decode ns | verify / decode | strip / decode |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for size in [1usize, 100] {
        let n = args.batches * 100 / size;
        let bodies = agent_payloads(&agent, n, size, now.0)?;
        let signed: Vec<Vec<u8>> = bodies.iter().map(|b| mac::sign(&key, b)).collect();
        let bytes = signed.iter().map(Vec::len).sum::<usize>() / signed.len();
        let verify = per_batch(args.rounds, &signed, |p| {
            mac::verify(&key, p).expect("signed above").len()
        });
        let strip = per_batch(args.rounds, &signed, |p| {
            mac::unsigned_body(p).expect("signed above").len()
        });
        let decoded = per_batch(args.rounds, &bodies, |p| {
            decode(Stream::Readings, &agent, p, &limits, now)
                .expect("loadgen's batches are valid")
                .flagged()
        });
        println!(
            "| {size} | {bytes} | {verify:.0} | {strip:.0} | {decoded:.0} | {:.2} | {:.2} |",
            verify / decoded,
            strip / decoded
        );
    }
    Ok(())
}
