//! MurmurHash64A and the hash-to-register mapping Redis uses for `PFADD`.

use crate::{P, Q, REGISTERS};

/// The seed Redis passes to MurmurHash64A for HyperLogLog elements.
pub const REDIS_SEED: u64 = 0xadc8_3b19;

const M: u64 = 0xc6a4_a793_5bd1_e995;
const R: u32 = 47;

/// MurmurHash64A (Austin Appleby's 64-bit MurmurHash2), the variant Redis
/// uses. Blocks are read little-endian whatever the host, as Redis does, so
/// results are the same on every platform.
pub fn murmur64a(data: &[u8], seed: u64) -> u64 {
    let mut h = seed ^ (data.len() as u64).wrapping_mul(M);

    let mut blocks = data.chunks_exact(8);
    for block in &mut blocks {
        let mut k = u64::from_le_bytes(block.try_into().expect("chunks_exact(8) gives 8 bytes"));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }

    let tail = blocks.remainder();
    if !tail.is_empty() {
        // The reference code falls through a switch from the highest tail
        // byte down; xor-ing each byte into its little-endian position is
        // the same thing. Bytes are unsigned.
        for (i, &b) in tail.iter().enumerate() {
            h ^= u64::from(b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }

    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

/// The register index and rank (1..=51) that `PFADD item` would touch.
#[inline]
pub fn index_and_rank(item: &[u8]) -> (usize, u8) {
    let hash = murmur64a(item, REDIS_SEED);
    let index = (hash as usize) & (REGISTERS - 1);
    // The sentinel bit bounds the count at Q + 1 when the remaining Q bits
    // are all zero.
    let rest = (hash >> P) | (1u64 << Q);
    let rank = rest.trailing_zeros() as u8 + 1;
    (index, rank)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Inputs and expected MurmurHash64A outputs published with Apache
    // commons-codec's MurmurHash2 tests (seed 0x344d1f5c), chosen to cover
    // every tail length 0..=7 and the empty input.
    const SEED: u64 = 0x344d_1f5c;
    const VECTORS: &[(&[u8], u64)] = &[
        (
            &[
                0xed, 0x53, 0xc4, 0xa5, 0x3b, 0x1b, 0xbd, 0xc2, 0x52, 0x7d, 0xc3, 0xef, 0x53, 0x5f,
                0xae, 0x3b,
            ],
            0x0822_b148_1a92_e97b,
        ),
        (
            &[
                0x21, 0x65, 0x59, 0x4e, 0xd8, 0x12, 0xf9, 0x05, 0x80, 0xe9, 0x1e, 0xed, 0xe4, 0x56,
                0xbb,
            ],
            0xf8a9_223f_ef08_22dd,
        ),
        (
            &[
                0x2b, 0x02, 0xb1, 0xd0, 0x3d, 0xce, 0x31, 0x3d, 0x97, 0xc4, 0x91, 0x0d, 0xf7, 0x17,
            ],
            0x4b49_e56a_ffae_3a89,
        ),
        (
            &[
                0x8e, 0xa7, 0x9a, 0x02, 0xe8, 0xb9, 0x6a, 0xda, 0x92, 0xad, 0xe9, 0x2d, 0x21,
            ],
            0xc970_296e_32e1_d1c1,
        ),
        (
            &[
                0xa9, 0x6d, 0xea, 0x77, 0x06, 0xce, 0x1b, 0x85, 0x48, 0x27, 0x4c, 0xfe,
            ],
            0xe2f9_f887_89f1_b08f,
        ),
        (
            &[
                0xec, 0x93, 0xa0, 0x12, 0x60, 0xee, 0xc8, 0x0a, 0xc5, 0x90, 0x62,
            ],
            0x2b04_59d9_b4c1_0c61,
        ),
        (
            &[0x55, 0x6d, 0x93, 0x66, 0x14, 0x6d, 0xdf, 0x00, 0x58, 0x99],
            0x377e_97ea_9197_ee89,
        ),
        (
            &[0x3c, 0x72, 0x20, 0x1f, 0xd2, 0x59, 0x19, 0xdb, 0xa1],
            0xd2cc_ad46_0751_e0e7,
        ),
        (
            &[0x23, 0xa8, 0xb1, 0x87, 0x55, 0xf7, 0x8a, 0x4b],
            0xff16_2ca8_d6da_8c47,
        ),
        (
            &[0xe2, 0x42, 0x1c, 0x2d, 0xc1, 0xe4, 0x3e],
            0xf12e_0514_0576_9857,
        ),
        (&[0x66, 0xa6, 0xb5, 0x5a, 0x74, 0xd9], 0xdabb_a412_93d5_b035),
        (&[0xe8, 0x76, 0xa8, 0x90, 0x76], 0xacf3_26b0_bb69_0d0e),
        (&[0xeb, 0x25, 0x3f, 0x87], 0x0617_f431_bc1a_8e04),
        (&[0x37, 0xa0, 0xa9], 0x15b8_1f28_d576_e1b2),
        (&[0x5b, 0x5d], 0x28c1_fe59_e4f8_e5ba),
        (&[0x7e], 0x694d_d315_c935_4ca9),
        (&[], 0xa970_52a8_f088_ae6c),
    ];

    #[test]
    fn murmur64a_known_vectors() {
        for (i, (input, expected)) in VECTORS.iter().enumerate() {
            assert_eq!(murmur64a(input, SEED), *expected, "vector {i}");
        }
    }

    #[test]
    fn murmur64a_empty_zero_seed_is_zero() {
        assert_eq!(murmur64a(b"", 0), 0);
    }

    #[test]
    fn rank_is_bounded() {
        for i in 0..100_000u32 {
            let (index, rank) = index_and_rank(&i.to_le_bytes());
            assert!(index < REGISTERS);
            assert!((1..=crate::MAX_RANK).contains(&rank));
        }
    }
}
