//! Pool water quality: six online-sensor channels, each a mean-reverting random walk with rare
//! excursions that last several samples (a dosing pump failing, a crowded afternoon).
//!
//! Means and limits follow GB 37488-2019: free chlorine about 0.55 mg/L (limit 0.3–1.0),
//! combined chlorine about 0.2 (≤ 0.4), pH about 7.4 (7.0–7.8), turbidity about 0.3 NTU (≤ 1),
//! ORP about 720 mV (≥ 650), water temperature about 27 °C (watched, no limit).

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use spotcheck_protocol::{
    AgentId, Batch, Metric, Quality, Reading, ReadingBatch, Seq, UnixMillis, Version,
};

use super::{normal, round_to};

/// Readings per sample.
pub const METRICS: usize = 6;

/// Chance, per sample and channel, that an excursion starts.
const EXCURSION_P: f64 = 0.002;

/// One sensor channel's fixed parameters.
#[derive(Debug, Clone, Copy)]
struct Spec {
    metric: &'static str,
    mean: f64,
    /// Standard deviation of one step's noise.
    step_sd: f64,
    /// Share of the distance to the mean closed per step.
    revert: f64,
    /// Physically plausible range; values are clamped into it.
    phys: (f64, f64),
    decimals: i32,
    /// Ranges an excursion heads for (one picked at random).
    excursions: &'static [(f64, f64)],
}

const SPECS: [Spec; METRICS] = [
    Spec {
        metric: Metric::FREE_CHLORINE,
        mean: 0.55,
        step_sd: 0.03,
        revert: 0.1,
        phys: (0.0, 5.0),
        decimals: 2,
        excursions: &[(0.08, 0.25), (1.15, 2.0)],
    },
    Spec {
        metric: Metric::COMBINED_CHLORINE,
        mean: 0.2,
        step_sd: 0.015,
        revert: 0.1,
        phys: (0.0, 3.0),
        decimals: 2,
        excursions: &[(0.45, 0.8)],
    },
    Spec {
        metric: Metric::PH,
        mean: 7.4,
        step_sd: 0.02,
        revert: 0.1,
        phys: (5.5, 9.5),
        decimals: 2,
        excursions: &[(6.6, 6.9), (7.9, 8.3)],
    },
    Spec {
        metric: Metric::TURBIDITY,
        mean: 0.3,
        step_sd: 0.03,
        revert: 0.1,
        phys: (0.02, 20.0),
        decimals: 2,
        excursions: &[(1.2, 3.0)],
    },
    Spec {
        metric: Metric::ORP,
        mean: 720.0,
        step_sd: 6.0,
        revert: 0.1,
        phys: (100.0, 950.0),
        decimals: 0,
        excursions: &[(560.0, 635.0)],
    },
    Spec {
        metric: Metric::WATER_TEMPERATURE,
        mean: 27.0,
        step_sd: 0.05,
        revert: 0.05,
        phys: (10.0, 40.0),
        decimals: 1,
        excursions: &[(29.5, 31.0)],
    },
];

/// One channel's state.
#[derive(Debug, Clone)]
struct Channel {
    spec: Spec,
    metric: Metric,
    x: f64,
    excursion_left: u32,
    target: f64,
}

impl Channel {
    fn step(&mut self, rng: &mut ChaCha8Rng) -> f64 {
        let s = &self.spec;
        if self.excursion_left == 0 && rng.random_bool(EXCURSION_P) {
            self.excursion_left = rng.random_range(5..=20);
            let (lo, hi) = s.excursions[rng.random_range(0..s.excursions.len())];
            self.target = rng.random_range(lo..hi);
        }
        let (goal, pull) = if self.excursion_left > 0 {
            self.excursion_left -= 1;
            (self.target, 0.5)
        } else {
            (s.mean, s.revert)
        };
        self.x += pull * (goal - self.x) + s.step_sd * normal(rng);
        self.x = self.x.clamp(s.phys.0, s.phys.1);
        round_to(self.x, s.decimals).clamp(s.phys.0, s.phys.1)
    }
}

/// The pool feed's generator.
#[derive(Debug)]
pub struct PoolSim {
    rng: ChaCha8Rng,
    samples_per_batch: usize,
    channels: Vec<Channel>,
}

impl PoolSim {
    /// A generator making `samples_per_batch` samples of all six channels per batch.
    pub fn new(rng: ChaCha8Rng, samples_per_batch: usize) -> PoolSim {
        let channels = SPECS
            .iter()
            .map(|&spec| Channel {
                spec,
                metric: Metric::new(spec.metric).expect("built-in metric names are valid"),
                x: spec.mean,
                excursion_left: 0,
                target: spec.mean,
            })
            .collect();
        PoolSim {
            rng,
            samples_per_batch: samples_per_batch.max(1),
            channels,
        }
    }

    /// One batch; its samples are spread evenly over the interval that ends at `now`.
    pub fn next_batch(&mut self, agent: &AgentId, now: UnixMillis, interval_ms: u64) -> Batch {
        let n = self.samples_per_batch as i64;
        let spacing = interval_ms as i64 / n;
        let mut readings = Vec::with_capacity(self.samples_per_batch * METRICS);
        for i in 0..n {
            let ts = UnixMillis(now.0 - (n - 1 - i) * spacing);
            for ch in &mut self.channels {
                let value = ch.step(&mut self.rng);
                // A sensor now and then flags its own value as doubtful (calibration, fouling).
                let quality = if self.rng.random_bool(0.002) {
                    Quality::Uncertain
                } else {
                    Quality::Good
                };
                readings.push(Reading {
                    unit: ch
                        .metric
                        .expected_unit()
                        .expect("built-in metrics have units"),
                    metric: ch.metric.clone(),
                    value,
                    ts_ms: ts,
                    quality,
                });
            }
        }
        Batch::Readings(ReadingBatch {
            v: Version,
            agent: agent.clone(),
            seq: Seq(0),
            after: None,
            readings,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use rand::SeedableRng;

    use super::*;

    /// (metric, breaches the limit?)
    fn breaches(metric: &str, v: f64) -> bool {
        match metric {
            Metric::FREE_CHLORINE => !(0.3..=1.0).contains(&v),
            Metric::COMBINED_CHLORINE => v > 0.4,
            Metric::PH => !(7.0..=7.8).contains(&v),
            Metric::TURBIDITY => v > 1.0,
            Metric::ORP => v < 650.0,
            Metric::WATER_TEMPERATURE => v > 29.0,
            _ => unreachable!("unknown metric {metric}"),
        }
    }

    fn series(seed: u64, samples: usize) -> HashMap<String, Vec<f64>> {
        let mut sim = PoolSim::new(ChaCha8Rng::seed_from_u64(seed), 1);
        let agent = AgentId::new("a").unwrap();
        let mut out: HashMap<String, Vec<f64>> = HashMap::new();
        for i in 0..samples {
            let Batch::Readings(b) = sim.next_batch(&agent, UnixMillis(i as i64 * 1000), 1000)
            else {
                panic!("pool makes readings");
            };
            assert_eq!(b.readings.len(), METRICS);
            for r in b.readings {
                assert_eq!(Some(r.unit), r.metric.expected_unit());
                out.entry(r.metric.to_string()).or_default().push(r.value);
            }
        }
        out
    }

    #[test]
    fn every_channel_has_excursions_that_last_several_samples() {
        for (metric, xs) in series(11, 30_000) {
            let out: Vec<bool> = xs.iter().map(|&v| breaches(&metric, v)).collect();
            let share = out.iter().filter(|&&b| b).count() as f64 / xs.len() as f64;
            let longest = out.split(|b| !b).map(|run| run.len()).max().unwrap_or(0);
            assert!(
                share > 0.002,
                "{metric}: only {share} of samples out of limits"
            );
            assert!(
                share < 0.15,
                "{metric}: {share} of samples out of limits is not 'rare'"
            );
            assert!(
                longest >= 3,
                "{metric}: longest excursion {longest} samples"
            );
        }
    }

    #[test]
    fn values_stay_physically_plausible_and_near_their_means() {
        for (metric, xs) in series(12, 30_000) {
            let spec = SPECS.iter().find(|s| s.metric == metric).unwrap();
            assert!(xs
                .iter()
                .all(|v| v.is_finite() && (spec.phys.0..=spec.phys.1).contains(v)));
            let median = {
                let mut s = xs.clone();
                s.sort_by(f64::total_cmp);
                s[s.len() / 2]
            };
            let tolerance = 0.1 * spec.mean.abs();
            assert!(
                (median - spec.mean).abs() < tolerance,
                "{metric}: median {median}"
            );
        }
    }
}
