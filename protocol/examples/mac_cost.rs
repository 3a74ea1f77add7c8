//! What checking a batch's MAC costs next to decoding it: `cargo run --release -p
//! spotcheck-protocol --example mac_cost` (numbers in BENCHMARKS.md, *Agent authentication*).

use std::hint::black_box;
use std::time::Instant;

use spotcheck_protocol::mac::{sign, verify};
use spotcheck_protocol::{decode, AgentId, AgentKey, KeyGeneration, Limits, Stream, UnixMillis};

fn batch(n: usize, now: i64) -> Vec<u8> {
    let readings: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"metric":"ph","value":7.{i},"unit":"pH","ts_ms":{}}}"#,
                now - i as i64
            )
        })
        .collect();
    format!(
        r#"{{"after":1,"v":1,"agent":"bench-0","seq":1,"readings":[{}]}}"#,
        readings.join(",")
    )
    .into_bytes()
}

fn main() {
    let key = AgentKey::new(KeyGeneration(1), [42; 32]).unwrap();
    let agent = AgentId::new("bench-0").unwrap();
    let now = UnixMillis::now();
    for n in [1usize, 100] {
        let body = batch(n, now.0);
        let signed = sign(&key, &body);
        let rounds = if n == 1 { 1_000_000 } else { 50_000 };
        let t = Instant::now();
        for _ in 0..rounds {
            black_box(verify(&key, black_box(&signed)).unwrap());
        }
        let mac_ns = t.elapsed().as_nanos() as f64 / rounds as f64;
        let t = Instant::now();
        for _ in 0..rounds {
            black_box(
                decode(
                    Stream::Readings,
                    &agent,
                    black_box(&body),
                    &Limits::default(),
                    now,
                )
                .unwrap(),
            );
        }
        let decode_ns = t.elapsed().as_nanos() as f64 / rounds as f64;
        println!(
            "batch of {n}: {} bytes signed; verify (HMAC + copy) {mac_ns:.0} ns, decode {decode_ns:.0} ns, verify/decode {:.2}",
            signed.len(),
            mac_ns / decode_ns
        );
    }
}
