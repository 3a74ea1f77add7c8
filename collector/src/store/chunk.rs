//! Reading chunks: the readings of one series (entity, metric, agent) from the batches of one
//! transaction (see [`super::gather`]), packed into one BLOB. The row's `seq` is the first
//! batch's; the BLOB says how many readings each batch gave, so every reading can still be
//! traced to its (agent, seq).
//!
//! Storing a row per reading caps SQLite at a few hundred thousand readings a second (every row
//! is a table insert plus an index insert); a chunk costs the same two inserts for up to a
//! thousand readings. Little-endian:
//!
//! ```text
//! format 2 (written): u8 2, u32 runs, runs × { i64 seq, u32 readings },
//!                     then the readings, batch by batch in the runs' order
//! format 1 (read):    u8 1, then the readings of the row's one batch
//! a reading:          i64 ts_ms, f64 value, u8 quality (0 good, 1 uncertain, 2 bad)
//! ```

use spotcheck_protocol::{Quality, UnixMillis};

/// The format written.
pub const FORMAT: u8 = 2;
/// The format of one batch per chunk, still read.
const FORMAT_ONE_BATCH: u8 = 1;
const RECORD: usize = 17;
const RUN: usize = 12;

/// One decoded sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// When it was measured.
    pub ts: UnixMillis,
    /// The value.
    pub value: f64,
    /// Its quality.
    pub quality: Quality,
}

/// Consecutive readings in a chunk from one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// The batch's sequence number.
    pub seq: i64,
    /// How many readings.
    pub n: u32,
}

/// A chunk that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// An unknown format byte: written by a newer build.
    #[error("reading chunk has format {0}; this build reads formats 1 and {FORMAT}: upgrade spotcheck-collector")]
    Format(u8),
    /// The length does not match the header.
    #[error("reading chunk is {0} bytes, which its header does not account for: the database is damaged")]
    Length(usize),
    /// The runs do not add up to the readings.
    #[error("reading chunk's batches account for {runs} readings but it holds {records}: the database is damaged")]
    Runs {
        /// Readings according to the runs.
        runs: u64,
        /// Readings present.
        records: usize,
    },
    /// An unknown quality code.
    #[error("reading chunk holds quality code {0}: the database is damaged")]
    Quality(u8),
}

/// Packs samples into a chunk; `runs` say which batch gave which of them, in order.
pub fn encode(runs: &[Run], samples: impl ExactSizeIterator<Item = Sample>) -> Vec<u8> {
    debug_assert_eq!(
        runs.iter().map(|r| r.n as usize).sum::<usize>(),
        samples.len()
    );
    let mut out = Vec::with_capacity(5 + runs.len() * RUN + samples.len() * RECORD);
    out.push(FORMAT);
    out.extend_from_slice(&(runs.len() as u32).to_le_bytes());
    for r in runs {
        out.extend_from_slice(&r.seq.to_le_bytes());
        out.extend_from_slice(&r.n.to_le_bytes());
    }
    for s in samples {
        out.extend_from_slice(&s.ts.0.to_le_bytes());
        out.extend_from_slice(&s.value.to_le_bytes());
        out.push(match s.quality {
            Quality::Good => 0,
            Quality::Uncertain => 1,
            Quality::Bad => 2,
        });
    }
    out
}

/// Unpacks a chunk's readings.
pub fn decode(blob: &[u8]) -> Result<Vec<Sample>, ChunkError> {
    let (_, records) = split(blob, 0)?;
    records
        .chunks_exact(RECORD)
        .map(|r| {
            let ts = i64::from_le_bytes(r[0..8].try_into().expect("8 bytes"));
            let value = f64::from_le_bytes(r[8..16].try_into().expect("8 bytes"));
            let quality = match r[16] {
                0 => Quality::Good,
                1 => Quality::Uncertain,
                2 => Quality::Bad,
                q => return Err(ChunkError::Quality(q)),
            };
            Ok(Sample {
                ts: UnixMillis(ts),
                value,
                quality,
            })
        })
        .collect()
}

/// Which batch gave which readings: the runs of a chunk stored in a row whose `seq` is
/// `row_seq` (a format-1 chunk is one run of that batch).
pub fn runs(blob: &[u8], row_seq: i64) -> Result<Vec<Run>, ChunkError> {
    split(blob, row_seq).map(|(runs, _)| runs)
}

/// The runs and the readings' bytes, checked against each other.
fn split(blob: &[u8], row_seq: i64) -> Result<(Vec<Run>, &[u8]), ChunkError> {
    let damaged = || ChunkError::Length(blob.len());
    let (&format, body) = blob.split_first().ok_or(ChunkError::Length(0))?;
    let (runs, records) = match format {
        FORMAT_ONE_BATCH => {
            let n = u32::try_from(body.len() / RECORD).map_err(|_| damaged())?;
            (vec![Run { seq: row_seq, n }], body)
        }
        FORMAT => {
            let count = body.get(..4).ok_or_else(damaged)?;
            let count = u32::from_le_bytes(count.try_into().expect("4 bytes")) as usize;
            let header = count.checked_mul(RUN).ok_or_else(damaged)?;
            let table = body.get(4..4 + header).ok_or_else(damaged)?;
            let runs = table
                .chunks_exact(RUN)
                .map(|r| Run {
                    seq: i64::from_le_bytes(r[..8].try_into().expect("8 bytes")),
                    n: u32::from_le_bytes(r[8..].try_into().expect("4 bytes")),
                })
                .collect();
            (runs, &body[4 + header..])
        }
        f => return Err(ChunkError::Format(f)),
    };
    if records.len() % RECORD != 0 {
        return Err(damaged());
    }
    let total: u64 = runs.iter().map(|r| u64::from(r.n)).sum();
    if total != (records.len() / RECORD) as u64 {
        return Err(ChunkError::Runs {
            runs: total,
            records: records.len() / RECORD,
        });
    }
    Ok((runs, records))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn quality() -> impl Strategy<Value = Quality> {
        prop_oneof![
            Just(Quality::Good),
            Just(Quality::Uncertain),
            Just(Quality::Bad)
        ]
    }

    proptest! {
        #[test]
        fn chunks_round_trip(samples in proptest::collection::vec((any::<i64>(), any::<f64>(), quality()), 0..200)) {
            let samples: Vec<Sample> = samples.into_iter().map(|(t, v, q)| Sample { ts: UnixMillis(t), value: v, quality: q }).collect();
            let header = [Run { seq: 7, n: samples.len() as u32 }];
            let blob = encode(&header, samples.iter().copied());
            prop_assert_eq!(runs(&blob, 0).unwrap(), header.to_vec());
            let back = decode(&blob).unwrap();
            prop_assert_eq!(back.len(), samples.len());
            for (a, b) in back.iter().zip(&samples) {
                prop_assert_eq!(a.ts, b.ts);
                prop_assert_eq!(a.value.to_bits(), b.value.to_bits());
                prop_assert_eq!(a.quality, b.quality);
            }
        }

        #[test]
        fn arbitrary_blobs_never_panic(blob in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = decode(&blob);
            let _ = runs(&blob, 0);
        }
    }

    #[test]
    fn damaged_chunks_are_reported() {
        assert_eq!(decode(&[3]), Err(ChunkError::Format(3)));
        assert_eq!(decode(&[1, 0]), Err(ChunkError::Length(2)));
        assert_eq!(decode(&[]), Err(ChunkError::Length(0)));
        assert_eq!(decode(&[2, 1, 0]), Err(ChunkError::Length(3)));
        let one = Sample {
            ts: UnixMillis(1),
            value: 1.0,
            quality: Quality::Good,
        };
        let mut blob = encode(&[Run { seq: 1, n: 1 }], [one].into_iter());
        blob[13] = 2; // after format, run count and seq: the run now claims two readings
        assert_eq!(
            decode(&blob),
            Err(ChunkError::Runs {
                runs: 2,
                records: 1
            })
        );
    }

    #[test]
    fn a_format_one_chunk_is_one_run_of_its_rows_batch() {
        let mut blob = vec![1];
        for ts in [5_i64, 6] {
            blob.extend_from_slice(&ts.to_le_bytes());
            blob.extend_from_slice(&7.5_f64.to_le_bytes());
            blob.push(0);
        }
        assert_eq!(runs(&blob, 42).unwrap(), vec![Run { seq: 42, n: 2 }]);
        assert_eq!(decode(&blob).unwrap().len(), 2);
    }
}
