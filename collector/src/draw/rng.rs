//! The draw's only source of randomness: ChaCha20 (rand_chacha's `ChaCha20Rng`) keyed with the
//! 32-byte seed, read as little-endian `u64`s, turned into indices by rejection sampling.
//!
//! rand's `gen_range` and `shuffle` are deliberately not used: their algorithms may change
//! between versions, and a published draw must be recomputable forever.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::input::Seed;

/// ChaCha20 with key = seed, nonce = 0, block counter from 0 (RFC 8439 keystream).
pub struct DrawRng(ChaCha20Rng);

impl DrawRng {
    /// The generator for `seed`.
    pub fn new(seed: &Seed) -> DrawRng {
        DrawRng(ChaCha20Rng::from_seed(seed.0))
    }

    /// The next 8 keystream bytes as a little-endian `u64`.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A uniform index in `0..n` (n ≥ 1): draw `x = next_u64()` until
    /// `x < n · ⌊2^64 / n⌋`, then return `x mod n`. Always consumes at least one `u64`.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0) has no valid result");
        let n128 = u128::from(n);
        let limit = ((1u128 << 64) / n128) * n128;
        loop {
            let x = self.next_u64();
            if u128::from(x) < limit {
                return x % n;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keystream_is_rfc_8439_chacha20_with_a_zero_nonce() {
        // RFC 8439 appendix A.1, test vector #1: key 0, nonce 0, counter 0.
        let mut rng = DrawRng::new(&Seed([0; 32]));
        let expected = [
            0x76, 0xb8, 0xe0, 0xad, 0xa0, 0xf1, 0x3d, 0x90, 0x40, 0x5d, 0x6a, 0xe5, 0x53, 0x86,
            0xbd, 0x28,
        ];
        assert_eq!(
            rng.next_u64(),
            u64::from_le_bytes(expected[..8].try_into().unwrap())
        );
        assert_eq!(
            rng.next_u64(),
            u64::from_le_bytes(expected[8..].try_into().unwrap())
        );
    }

    #[test]
    fn below_stays_in_range_and_one_always_gives_zero() {
        let mut rng = DrawRng::new(&Seed([7; 32]));
        for n in [1u64, 2, 3, 10, 1_000_003, u64::MAX] {
            for _ in 0..100 {
                assert!(rng.below(n) < n);
            }
        }
        assert_eq!(rng.below(1), 0);
    }

    #[test]
    fn below_rejects_values_in_the_biased_tail() {
        // For n = 2^63 + 1 the accepted zone is [0, n): about half of the values are rejected,
        // so the result must still be < n and the generator must have advanced past rejects.
        let n = (1u64 << 63) + 1;
        let mut a = DrawRng::new(&Seed([3; 32]));
        let mut b = DrawRng::new(&Seed([3; 32]));
        let v = a.below(n);
        let mut consumed = 0;
        loop {
            consumed += 1;
            let x = b.next_u64();
            if x < n {
                assert_eq!(x, v);
                break;
            }
        }
        assert!(consumed >= 1);
    }
}
