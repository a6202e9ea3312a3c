//! What the edge's in-memory structures cost on the heap, as the allocator
//! sees them: the one place the estimate behind `--max-pending-bytes` takes
//! its sizes from. Pure arithmetic over the types' real sizes; checked
//! against the real process's resident memory by an end-to-end test.

use std::mem::size_of;

/// The bytes one allocation of `n` bytes takes: glibc's malloc adds an
/// 8-byte header, rounds up to 16 and hands out at least 32.
pub(crate) fn allocation(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        (n + 8).next_multiple_of(16).max(32)
    }
}

/// One entry of a hash table of `T` (the slot and its control byte), at the
/// table's average load: it doubles when 7/8 full, so it runs between 7/16
/// and 7/8 full, two thirds on average.
pub(crate) fn hash_entry<T>() -> usize {
    (size_of::<T>() + 1) * 3 / 2
}

/// One element of a `Vec<T>` grown by pushes: its capacity runs between
/// the length and twice it.
pub(crate) fn vec_entry<T>() -> usize {
    size_of::<T>() * 3 / 2
}

/// Entries of a `BTreeMap` leaf node (the standard library's `B` is 6).
pub(crate) const BTREE_LEAF_CAPACITY: usize = 11;

/// A `BTreeMap<K, V>` leaf node, allocated whole with its first entry:
/// parent link, index and length, then room for every key and value.
pub(crate) fn btree_leaf<K, V>() -> usize {
    allocation(16 + BTREE_LEAF_CAPACITY * (size_of::<K>() + size_of::<V>()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_round_like_malloc() {
        assert_eq!(allocation(0), 0);
        assert_eq!(allocation(1), 32);
        assert_eq!(allocation(24), 32);
        assert_eq!(allocation(25), 48);
        assert_eq!(allocation(16_384), 16_400);
        assert_eq!(hash_entry::<u64>(), 13);
        assert_eq!(vec_entry::<u64>(), 12);
        assert_eq!(btree_leaf::<u32, u32>(), allocation(16 + 88));
    }
}
