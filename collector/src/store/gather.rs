//! Gathering readings into chunks over one transaction.
//!
//! An agent that sends a reading at a time would otherwise cost a chunk row (a table insert
//! and an index insert) per reading. Within a transaction, readings of one series (entity,
//! metric, agent) from consecutive batches go into one chunk, written when the transaction is
//! about to commit or when the chunk reaches [`MAX_SAMPLES`]. Queries select chunks by their
//! time span and sort what they read, so how many batches fed a chunk does not matter to them.

use foldhash::HashMap;

use super::chunk::{self, Run, Sample};

/// Most readings in one chunk (17 bytes each: about 17 KiB).
pub const MAX_SAMPLES: usize = 1024;

/// A series: store ids of entity, metric and agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Series {
    /// `entities.id`.
    pub entity: i64,
    /// `metrics.id`.
    pub metric: i64,
    /// `agents.id`.
    pub agent: i64,
}

/// A chunk ready to be written.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// Its series.
    pub series: Series,
    /// The sequence number of the first batch whose readings it holds.
    pub seq: i64,
    /// Which batch gave which of the readings.
    pub runs: Vec<Run>,
    /// Its readings, in arrival order.
    pub samples: Vec<Sample>,
}

impl Chunk {
    /// Earliest and latest reading time (0, 0 when empty).
    pub fn span(&self) -> (i64, i64) {
        let t0 = self.samples.iter().map(|s| s.ts.0).min().unwrap_or(0);
        let t1 = self.samples.iter().map(|s| s.ts.0).max().unwrap_or(0);
        (t0, t1)
    }

    /// The BLOB (see [`chunk`]).
    pub fn encode(&self) -> Vec<u8> {
        chunk::encode(&self.runs, self.samples.iter().copied())
    }
}

/// Open chunks of one transaction.
#[derive(Debug, Default)]
pub struct Gatherer {
    open: HashMap<Series, Chunk>,
}

impl Gatherer {
    /// Adds a reading from batch `seq`; returns the chunk it filled, to be written now.
    pub fn add(&mut self, series: Series, seq: i64, sample: Sample) -> Option<Chunk> {
        let chunk = self.open.entry(series).or_insert_with(|| Chunk {
            series,
            seq,
            runs: Vec::new(),
            samples: Vec::new(),
        });
        match chunk.runs.last_mut() {
            Some(run) if run.seq == seq => run.n += 1,
            _ => chunk.runs.push(Run { seq, n: 1 }),
        }
        chunk.samples.push(sample);
        if chunk.samples.len() >= MAX_SAMPLES {
            self.open.remove(&series)
        } else {
            None
        }
    }

    /// Every open chunk, to be written before the transaction commits.
    pub fn drain(&mut self) -> impl Iterator<Item = Chunk> + '_ {
        self.open.drain().map(|(_, c)| c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spotcheck_protocol::{Quality, UnixMillis};

    fn sample(ts: i64) -> Sample {
        Sample {
            ts: UnixMillis(ts),
            value: ts as f64,
            quality: Quality::Good,
        }
    }

    const A: Series = Series {
        entity: 1,
        metric: 1,
        agent: 1,
    };
    const B: Series = Series {
        entity: 1,
        metric: 2,
        agent: 1,
    };

    #[test]
    fn consecutive_batches_of_a_series_share_a_chunk_named_by_the_first() {
        let mut g = Gatherer::default();
        for seq in 1..=3 {
            assert!(g.add(A, seq, sample(seq * 10)).is_none());
        }
        assert!(g.add(B, 3, sample(5)).is_none());
        let mut chunks: Vec<Chunk> = g.drain().collect();
        chunks.sort_by_key(|c| c.series.metric);
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].seq, 1);
        assert_eq!(chunks[0].samples.len(), 3);
        assert_eq!(chunks[0].span(), (10, 30));
        assert_eq!(
            chunk::runs(&chunks[0].encode(), 1).unwrap(),
            vec![
                Run { seq: 1, n: 1 },
                Run { seq: 2, n: 1 },
                Run { seq: 3, n: 1 }
            ]
        );
        assert_eq!((chunks[1].seq, chunks[1].samples.len()), (3, 1));
        assert_eq!(g.drain().count(), 0, "drained");
    }

    #[test]
    fn a_full_chunk_is_handed_back_and_the_next_reading_starts_another() {
        let mut g = Gatherer::default();
        for i in 0..MAX_SAMPLES as i64 - 1 {
            assert!(g.add(A, i, sample(i)).is_none());
        }
        let full = g.add(A, 9999, sample(9999)).expect("full");
        assert_eq!(full.samples.len(), MAX_SAMPLES);
        assert_eq!(full.seq, 0);
        assert!(g.add(A, 10_000, sample(1)).is_none());
        let rest: Vec<Chunk> = g.drain().collect();
        assert_eq!((rest.len(), rest[0].seq), (1, 10_000));
    }

    #[test]
    fn chunks_decode_to_the_readings_in_arrival_order() {
        let mut g = Gatherer::default();
        for ts in [30, 10, 20] {
            g.add(A, ts, sample(ts));
        }
        let c = g.drain().next().unwrap();
        let back = chunk::decode(&c.encode()).unwrap();
        assert_eq!(
            back.iter().map(|s| s.ts.0).collect::<Vec<_>>(),
            vec![30, 10, 20]
        );
    }
}
