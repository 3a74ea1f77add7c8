//! The `simulate` source: realistic, seeded synthetic data for one feed, one batch per interval.
//!
//! Each feed has its own generator ([`pool`], [`game`], [`hospital`]); all draw from one
//! `ChaCha8Rng` seeded from `seed`, so a seed and a sequence of clock readings always give the
//! same batches. Without a seed, a random one is drawn and logged so that a run can be replayed.
//! Generators mostly produce compliant data with rare, realistic violations, so that the
//! collector's rules have something to find.

pub mod game;
pub mod hospital;
pub mod pool;

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;
use spotcheck_protocol::{check, AgentId, Batch, Domain, Limits, UnixMillis};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info};

use super::{SourceError, SpoolQueue};

/// A `[[sources]]` table with `type = "simulate"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulateConfig {
    /// Which feed to simulate; must equal `agent.domain`.
    pub feed: Domain,
    /// One batch per this many milliseconds; the first batch comes at once.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// Seed of the generator; random (and logged) when absent.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Stop after this many batches; run until shutdown when absent. When every source has
    /// stopped and every batch is confirmed, the agent exits.
    #[serde(default)]
    pub batches: Option<u64>,
    /// Samples (pool: six readings each), sessions and payments (game) or consultations
    /// (hospital, each maybe followed by a prescription) per batch; a per-feed default if absent.
    #[serde(default)]
    pub records_per_batch: Option<usize>,
}

fn default_interval_ms() -> u64 {
    1000
}

impl SimulateConfig {
    /// Records per batch, with the feed's default.
    pub fn records_per_batch(&self) -> usize {
        self.records_per_batch.unwrap_or(match self.feed {
            Domain::Pool => 1,
            Domain::Game => 4,
            Domain::Hospital => 2,
        })
    }

    /// The most items one batch can hold with these settings.
    fn max_items(&self) -> usize {
        let n = self.records_per_batch();
        match self.feed {
            Domain::Pool => n.saturating_mul(pool::METRICS),
            Domain::Game => n,
            Domain::Hospital => n.saturating_mul(2),
        }
    }

    pub(crate) fn validate(&self, at: &str, domain: Domain, problems: &mut Vec<String>) {
        if self.feed != domain {
            problems.push(format!(
                "{at}.feed is {} but agent.domain is {domain}; an agent publishes for one entity of one domain",
                self.feed
            ));
        }
        if self.interval_ms == 0 {
            problems.push(format!("{at}.interval_ms is 0; use at least 1"));
        }
        if self.batches == Some(0) {
            problems.push(format!("{at}.batches is 0; omit it to run until shutdown"));
        }
        let max = Limits::default().max_batch_len;
        if self.records_per_batch() == 0 || self.max_items() > max {
            problems.push(format!(
                "{at}.records_per_batch is {}; a batch must hold 1 to {max} items",
                self.records_per_batch()
            ));
        }
    }
}

/// A feed's generator.
#[derive(Debug)]
pub enum Generator {
    /// Pool water quality.
    Pool(pool::PoolSim),
    /// Game sessions and payments.
    Game(game::GameSim),
    /// Consultations and prescriptions.
    Hospital(hospital::HospitalSim),
}

impl Generator {
    /// A generator for `feed` seeded with `seed`.
    pub fn new(feed: Domain, seed: u64, records_per_batch: usize) -> Generator {
        let rng = ChaCha8Rng::seed_from_u64(seed);
        match feed {
            Domain::Pool => Generator::Pool(pool::PoolSim::new(rng, records_per_batch)),
            Domain::Game => Generator::Game(game::GameSim::new(rng, records_per_batch)),
            Domain::Hospital => {
                Generator::Hospital(hospital::HospitalSim::new(rng, records_per_batch))
            }
        }
    }

    /// The next batch (sequence number 0, set by the spool) for a clock reading of `now`.
    pub fn next_batch(&mut self, agent: &AgentId, now: UnixMillis, interval_ms: u64) -> Batch {
        match self {
            Generator::Pool(g) => g.next_batch(agent, now, interval_ms),
            Generator::Game(g) => g.next_batch(agent, now, interval_ms),
            Generator::Hospital(g) => g.next_batch(agent, now, interval_ms),
        }
    }
}

/// The simulate source stage: owns its generator, its output sender and its shutdown handle.
#[derive(Debug)]
pub struct SimulateSource {
    name: String,
    config: SimulateConfig,
    agent: AgentId,
    out: SpoolQueue,
    shutdown: CancellationToken,
}

impl SimulateSource {
    /// A stage named `name` (for logs) that sends into `out` until `shutdown`.
    pub fn new(
        name: String,
        config: SimulateConfig,
        agent: AgentId,
        out: SpoolQueue,
        shutdown: CancellationToken,
    ) -> SimulateSource {
        SimulateSource {
            name,
            config,
            agent,
            out,
            shutdown,
        }
    }

    /// Produces one batch per interval until shutdown or the configured number of batches.
    pub async fn run(self) -> Result<(), SourceError> {
        let seed = self.config.seed.unwrap_or_else(rand::random);
        info!(
            message = "Simulated source started.",
            source = %self.name,
            feed = %self.config.feed,
            seed,
            interval_ms = self.config.interval_ms
        );
        let mut generator = Generator::new(self.config.feed, seed, self.config.records_per_batch());
        let limits = Limits::default();
        let mut tick = tokio::time::interval(Duration::from_millis(self.config.interval_ms.max(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut made = 0u64;
        while self.config.batches.is_none_or(|n| made < n) {
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            let now = UnixMillis::now();
            let batch = generator.next_batch(&self.agent, now, self.config.interval_ms);
            made += 1;
            // The generators never make an invalid batch; if one did, dropping it with an
            // error is better than having the collector dead-letter it.
            let batch = match check(batch, &limits, now) {
                Ok(b) => b.into_inner(),
                Err(error) => {
                    error!(message = "Simulated batch failed the protocol check; dropped.", source = %self.name, %error);
                    continue;
                }
            };
            if self.out.send(batch).await.is_err() {
                return Err(SourceError::SpoolGone {
                    source_name: self.name,
                });
            }
        }
        debug!(message = "Simulated source stopped.", source = %self.name, batches = made);
        Ok(())
    }
}

/// A standard normal sample (Box–Muller).
pub(crate) fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// A short random tag that keeps record ids of different runs apart.
pub(crate) fn run_tag(rng: &mut ChaCha8Rng) -> String {
    format!("{:06x}", rng.random_range(0..0x100_0000u32))
}

/// `x` rounded to `decimals` places.
pub(crate) fn round_to(x: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (x * f).round() / f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent() -> AgentId {
        AgentId::new("a-1").unwrap()
    }

    #[test]
    fn the_same_seed_gives_the_same_batches_for_every_feed() {
        for feed in Domain::ALL {
            let run = |seed| {
                let mut g = Generator::new(feed, seed, 3);
                (0..50)
                    .map(|i| g.next_batch(&agent(), UnixMillis(1_764_000_000_000 + i * 1000), 1000))
                    .collect::<Vec<_>>()
            };
            assert_eq!(run(7), run(7), "{feed}");
            assert_ne!(run(7), run(8), "{feed}");
        }
    }

    #[test]
    fn every_feed_passes_the_protocol_check() {
        let limits = Limits::default();
        for feed in Domain::ALL {
            let mut g = Generator::new(feed, 1, 5);
            for i in 0..500 {
                let now = UnixMillis(1_764_000_000_000 + i * 60_000);
                let b = g.next_batch(&agent(), now, 60_000);
                check(b, &limits, now).unwrap_or_else(|e| panic!("{feed}: {e}"));
            }
        }
    }

    #[test]
    fn normal_samples_have_mean_zero_and_unit_spread() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let xs: Vec<f64> = (0..20_000).map(|_| normal(&mut rng)).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(
            mean.abs() < 0.05 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
    }
}
