//! Reading chunks: the readings of one metric from one batch, packed into one BLOB.
//!
//! Storing a row per reading caps SQLite at a few hundred thousand readings a second (every row
//! is a table insert plus an index insert); a chunk per (batch, metric) costs the same two
//! inserts for up to a thousand readings. Format 1, little-endian:
//!
//! ```text
//! u8 format = 1, then n × { i64 ts_ms, f64 value, u8 quality (0 good, 1 uncertain, 2 bad) }
//! ```

use spotcheck_protocol::{Quality, UnixMillis};

/// The only format written so far.
pub const FORMAT: u8 = 1;
const RECORD: usize = 17;

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

/// A chunk that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// An unknown format byte: written by a newer build.
    #[error("reading chunk has format {0}; this build reads format {FORMAT}: upgrade spotcheck-collector")]
    Format(u8),
    /// The length is not a whole number of records.
    #[error("reading chunk is {0} bytes, not 1 + a multiple of {RECORD}: the database is damaged")]
    Length(usize),
    /// An unknown quality code.
    #[error("reading chunk holds quality code {0}: the database is damaged")]
    Quality(u8),
}

/// Packs samples into a chunk.
pub fn encode(samples: impl ExactSizeIterator<Item = Sample>) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + samples.len() * RECORD);
    out.push(FORMAT);
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

/// Unpacks a chunk.
pub fn decode(blob: &[u8]) -> Result<Vec<Sample>, ChunkError> {
    let (&format, body) = blob.split_first().ok_or(ChunkError::Length(0))?;
    if format != FORMAT {
        return Err(ChunkError::Format(format));
    }
    if body.len() % RECORD != 0 {
        return Err(ChunkError::Length(blob.len()));
    }
    body.chunks_exact(RECORD)
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
            let back = decode(&encode(samples.iter().copied())).unwrap();
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
        }
    }

    #[test]
    fn damaged_chunks_are_reported() {
        assert_eq!(decode(&[2]), Err(ChunkError::Format(2)));
        assert_eq!(decode(&[1, 0]), Err(ChunkError::Length(2)));
        assert_eq!(decode(&[]), Err(ChunkError::Length(0)));
    }
}
