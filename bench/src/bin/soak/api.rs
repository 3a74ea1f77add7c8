//! `soak api`: API traffic beside ingest, as a few consoles and scripts would make it: the
//! queue, the task list, entity overviews and series, the dead letters and the counters, in
//! turn at a steady rate. Records every request's latency and status; the report gives the
//! totals and, per minute, the count, the errors and the p50/p99/max latency.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{json, Value};

/// What a supervisor's console and a reporting script read, in turn.
const PATHS: &[&str] = &[
    "/api/v1/queue?status=open",
    "/api/v1/tasks?limit=50",
    "/api/v1/stats",
    "/api/v1/entities/{entity}",
    "/api/v1/entities/{entity}/series?metric=ph",
    "/api/v1/entities/{entity}/events",
    "/api/v1/dead-letters?limit=50",
    "/api/v1/agents",
];

/// Nearest-rank quantile of sorted milliseconds.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn summary(mut ms: Vec<f64>, errors: u64) -> Value {
    ms.sort_by(f64::total_cmp);
    json!({
        "requests": ms.len(),
        "errors": errors,
        "p50_ms": quantile(&ms, 0.50),
        "p99_ms": quantile(&ms, 0.99),
        "max_ms": ms.last().copied().unwrap_or(0.0),
    })
}

/// Runs for `duration` at `rate` requests a second against `http` with `token`, reading the
/// entities in `entities` in turn; writes the report to `report`.
pub(crate) fn run(
    http: &str,
    token: &str,
    entities: &[String],
    duration: Duration,
    rate: u32,
    report: &Path,
) -> anyhow::Result<Value> {
    anyhow::ensure!(rate > 0, "--rate must be at least 1 request a second");
    anyhow::ensure!(!entities.is_empty(), "name at least one --entity");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let every = Duration::from_secs_f64(1.0 / f64::from(rate));
    let start = Instant::now();
    let mut next = start;
    let (mut all, mut minute): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
    let (mut errors, mut minute_errors) = (0u64, 0u64);
    let mut minutes = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    let mut i = 0usize;
    while start.elapsed() < duration {
        let path = PATHS[i % PATHS.len()]
            .replace("{entity}", &entities[(i / PATHS.len()) % entities.len()]);
        i += 1;
        let t = Instant::now();
        let status = agent
            .get(&format!("http://{http}{path}"))
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .map(|mut r| {
                // Read the body: a console waits for the whole answer.
                let _ = r.body_mut().read_to_vec();
                r.status().as_u16()
            });
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        all.push(ms);
        minute.push(ms);
        match status {
            Ok(200) => {}
            other => {
                errors += 1;
                minute_errors += 1;
                if failures.len() < 20 {
                    failures.push(format!("{path}: {other:?}"));
                }
            }
        }
        if start.elapsed().as_secs() / 60 > minutes.len() as u64 {
            minutes.push(summary(std::mem::take(&mut minute), minute_errors));
            minute_errors = 0;
        }
        next += every;
        // Pacing: the next request's due time (a rate, not synchronisation).
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        } else {
            next = Instant::now();
        }
    }
    if !minute.is_empty() {
        minutes.push(summary(minute, minute_errors));
    }
    let mut r = summary(all, errors);
    r["rate_per_s"] = json!(rate);
    r["per_minute"] = json!(minutes);
    r["failures"] = json!(failures);
    std::fs::write(report, serde_json::to_vec_pretty(&r)?)
        .with_context(|| format!("cannot write {}", report.display()))?;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&v, 0.50), 50.0);
        assert_eq!(quantile(&v[..1], 0.99), 1.0);
        assert_eq!(quantile(&[], 0.99), 0.0);
    }
}
