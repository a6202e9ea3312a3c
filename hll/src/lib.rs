//! HyperLogLog sketches in Redis's own format, bit for bit.
//!
//! The edge counts unique viewers per (ad, day) locally and pushes the
//! sketch to Redis (`SET` a temporary key, then `PFMERGE`). For that to give
//! exactly the `PFCOUNT` that `PFADD` of every id would have given, this
//! crate reproduces Redis's HyperLogLog exactly:
//!
//! - [`hash`]: MurmurHash64A with Redis's seed, and how a hash becomes a
//!   register index (low 14 bits) and a rank (trailing zeros of the rest, + 1);
//! - [`sketch`]: [`Sketch`], the in-memory sketch, with an adaptive
//!   representation (a short sorted list for the common few-ids case, a
//!   16,384-byte register array past a threshold);
//! - [`estimate`]: Redis's estimator (Ertl's improved estimator, `hllCount`
//!   in Redis >= 5), with the same floating-point steps so results match
//!   `PFCOUNT` exactly, not just approximately;
//! - [`codec`]: the Redis string value: 16-byte header (`"HYLL"`, encoding,
//!   3 unused bytes, 8-byte cached cardinality), then either the dense body
//!   (16,384 registers of 6 bits, LSB first, 12,288 bytes) or the sparse
//!   run-length opcodes (ZERO, XZERO, VAL) covering exactly 16,384 registers.
//!
//! Invariants:
//!
//! - no I/O and no `unsafe`: pure functions over bytes;
//! - P = 14, so 16,384 registers, each holding 0..=51 (a register only ever
//!   takes the max of its values);
//! - every value this crate writes has its cardinality cache marked invalid,
//!   because a single-key `PFCOUNT` trusts a valid-looking cache blindly;
//! - decoding is strict (magic, encoding, lengths, opcode coverage, register
//!   range) and returns an error rather than panicking on any input.

pub mod codec;
pub mod estimate;
pub mod hash;
pub mod sketch;

pub use codec::DecodeError;
pub use hash::murmur64a;
pub use sketch::{Element, Sketch};

/// Register-index bits: Redis's `HLL_P`.
pub const P: u32 = 14;

/// Number of registers: 2^P.
pub const REGISTERS: usize = 1 << P;

/// Hash bits left after the index bits: Redis's `HLL_Q`.
pub(crate) const Q: u32 = 64 - P;

/// Largest value a register can take: Q + 1 (all remaining bits zero).
pub(crate) const MAX_RANK: u8 = Q as u8 + 1;

#[cfg(test)]
mod test_support;
