//! Test helpers shared by the crate's unit tests: a tiny deterministic PRNG
//! (SplitMix64), so the crate needs no dev-dependencies and failures
//! reproduce from the seed, and sketch builders.

use crate::Sketch;

/// A sketch of `n` distinct members `"{tag}-0"`, `"{tag}-1"`, …
pub(crate) fn filled(n: u64, tag: &str) -> Sketch {
    let mut s = Sketch::new();
    for i in 0..n {
        s.insert(format!("{tag}-{i}").as_bytes());
    }
    s
}

#[derive(Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-enough value in 0..n (n > 0); bias is irrelevant for tests.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}
