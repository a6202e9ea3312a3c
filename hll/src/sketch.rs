//! The in-memory sketch and its adaptive representation.
//!
//! The server keeps one pending sketch per (ad, day) per sync interval, tens
//! of thousands at once, most holding a handful of ids. A full register array
//! is 16 KiB, so a sketch starts as a sorted list of its non-zero registers
//! (4 bytes each) and switches to the array once that list would pass
//! [`SPARSE_MAX_ENTRIES`]. The switch is one way: registers only grow.

use std::ops::ControlFlow;

use crate::estimate::{self, Histogram};
use crate::hash::index_and_rank;
use crate::REGISTERS;

/// Non-zero registers a sparse sketch may hold before becoming dense.
///
/// 2,048 entries are 8 KiB, half the dense array: past this, the list saves
/// little memory and its O(n) sorted inserts start to cost. Sketches of a
/// few hundred ids, the common case per sync interval, stay well below it,
/// and decoding picks the same form by the same bound.
pub const SPARSE_MAX_ENTRIES: usize = 2048;

/// A HyperLogLog sketch with Redis's parameters (P = 14, 6-bit registers).
///
/// Equality compares register values, whatever the representation.
#[derive(Clone, Debug, Default)]
pub struct Sketch {
    repr: Repr,
}

#[derive(Clone, Debug)]
enum Repr {
    /// Non-zero registers packed as `index << 8 | value`, sorted by index,
    /// one entry per index, never a zero value. Packing as u32 keeps entries
    /// 4 bytes (a (u16, u8) tuple would pad to 4 anyway) and makes the
    /// natural u32 order the index order.
    Sparse(Vec<u32>),
    /// One byte per register.
    Dense(Box<[u8; REGISTERS]>),
}

impl Default for Repr {
    fn default() -> Self {
        Repr::Sparse(Vec::new())
    }
}

#[inline]
fn pack(index: usize, value: u8) -> u32 {
    ((index as u32) << 8) | u32::from(value)
}

#[inline]
fn entry_index(entry: u32) -> usize {
    (entry >> 8) as usize
}

#[inline]
fn entry_value(entry: u32) -> u8 {
    entry as u8
}

fn zeroed_registers() -> Box<[u8; REGISTERS]> {
    vec![0u8; REGISTERS]
        .into_boxed_slice()
        .try_into()
        .expect("the vector has exactly REGISTERS bytes")
}

fn dense_from_entries(entries: &[u32]) -> Box<[u8; REGISTERS]> {
    let mut regs = zeroed_registers();
    for &e in entries {
        regs[entry_index(e)] = entry_value(e);
    }
    regs
}

/// An element as a sketch sees it: the register it raises and the rank it
/// raises it to, as `PFADD` hashes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Element {
    index: u16,
    rank: u8,
}

impl Element {
    /// Hashes exactly these bytes, as `PFADD key item` would.
    #[inline]
    pub fn of(item: &[u8]) -> Element {
        let (index, rank) = index_and_rank(item);
        Element {
            // REGISTERS is 2^14: every index fits.
            index: index as u16,
            rank,
        }
    }
}

impl Sketch {
    /// An empty sketch (every register zero). Allocates nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one element, hashing exactly these bytes as `PFADD key item`
    /// would. Returns true when a register changed (as PFADD's reply 1).
    #[inline]
    pub fn insert(&mut self, item: &[u8]) -> bool {
        self.insert_element(Element::of(item))
    }

    /// [`Sketch::insert`] of an element hashed once, for adding the same
    /// element to several sketches.
    #[inline]
    pub fn insert_element(&mut self, element: Element) -> bool {
        self.raise(usize::from(element.index), element.rank)
    }

    /// Sets register `index` to `max(current, value)`; true if it changed.
    /// `value` must be in 1..=51 and `index` below [`REGISTERS`].
    #[inline]
    pub(crate) fn raise(&mut self, index: usize, value: u8) -> bool {
        debug_assert!(index < REGISTERS && (1..=crate::MAX_RANK).contains(&value));
        match &mut self.repr {
            Repr::Dense(regs) => {
                let r = &mut regs[index & (REGISTERS - 1)];
                if value > *r {
                    *r = value;
                    true
                } else {
                    false
                }
            }
            Repr::Sparse(entries) => {
                match entries.binary_search_by_key(&index, |&e| entry_index(e)) {
                    Ok(pos) => {
                        if value > entry_value(entries[pos]) {
                            entries[pos] = pack(index, value);
                            true
                        } else {
                            false
                        }
                    }
                    Err(pos) => {
                        if entries.len() >= SPARSE_MAX_ENTRIES {
                            let mut regs = dense_from_entries(entries);
                            regs[index] = value;
                            self.repr = Repr::Dense(regs);
                        } else {
                            entries.insert(pos, pack(index, value));
                        }
                        true
                    }
                }
            }
        }
    }

    /// Register-wise max with `other`, as `PFMERGE` does. O(n) in the sizes
    /// of the two sketches.
    pub fn merge(&mut self, other: &Sketch) {
        match (&mut self.repr, &other.repr) {
            (Repr::Dense(a), Repr::Dense(b)) => {
                // A plain zip over fixed-size arrays vectorises to byte-wise
                // max instructions.
                for (x, &y) in a.iter_mut().zip(b.iter()) {
                    *x = (*x).max(y);
                }
            }
            (Repr::Dense(a), Repr::Sparse(b)) => {
                for &e in b {
                    let r = &mut a[entry_index(e)];
                    *r = (*r).max(entry_value(e));
                }
            }
            (Repr::Sparse(a), Repr::Dense(b)) => {
                let mut regs = b.clone();
                for &e in a.iter() {
                    let r = &mut regs[entry_index(e)];
                    *r = (*r).max(entry_value(e));
                }
                self.repr = Repr::Dense(regs);
            }
            (Repr::Sparse(a), Repr::Sparse(b)) => {
                if b.is_empty() {
                    return;
                }
                let merged = merge_sorted(a, b);
                self.repr = if merged.len() > SPARSE_MAX_ENTRIES {
                    Repr::Dense(dense_from_entries(&merged))
                } else {
                    Repr::Sparse(merged)
                };
            }
        }
    }

    /// The cardinality estimate, equal to Redis's `PFCOUNT` for the same
    /// registers.
    pub fn estimate(&self) -> u64 {
        estimate::from_histogram(&self.histogram())
    }

    /// Number of registers holding each value 0..=51.
    pub fn histogram(&self) -> Histogram {
        let mut hist: Histogram = [0; crate::MAX_RANK as usize + 1];
        match &self.repr {
            Repr::Dense(regs) => {
                for &r in regs.iter() {
                    hist[usize::from(r)] += 1;
                }
            }
            Repr::Sparse(entries) => {
                hist[0] = (REGISTERS - entries.len()) as u32;
                for &e in entries {
                    hist[usize::from(entry_value(e))] += 1;
                }
            }
        }
        hist
    }

    /// True when every register is zero (nothing was inserted).
    pub fn is_empty(&self) -> bool {
        match &self.repr {
            Repr::Sparse(entries) => entries.is_empty(),
            Repr::Dense(regs) => regs.iter().all(|&r| r == 0),
        }
    }

    /// The value of register `index` (0..=51).
    ///
    /// # Panics
    ///
    /// If `index >= REGISTERS`.
    pub fn register(&self, index: usize) -> u8 {
        assert!(
            index < REGISTERS,
            "register index {index} out of range 0..{REGISTERS}"
        );
        match &self.repr {
            Repr::Dense(regs) => regs[index],
            Repr::Sparse(entries) => entries
                .binary_search_by_key(&index, |&e| entry_index(e))
                .map_or(0, |pos| entry_value(entries[pos])),
        }
    }

    /// Number of non-zero registers.
    pub fn nonzero_registers(&self) -> usize {
        match &self.repr {
            Repr::Sparse(entries) => entries.len(),
            Repr::Dense(regs) => regs.iter().filter(|&&r| r != 0).count(),
        }
    }

    /// True while the compact in-memory form is in use. For tests and
    /// memory accounting; says nothing about the Redis encoding.
    pub fn is_sparse(&self) -> bool {
        matches!(self.repr, Repr::Sparse(_))
    }

    /// Approximate heap memory held by this sketch, in bytes (not counting
    /// the `Sketch` value itself).
    pub fn heap_bytes(&self) -> usize {
        match &self.repr {
            Repr::Sparse(entries) => entries.capacity() * std::mem::size_of::<u32>(),
            Repr::Dense(_) => REGISTERS,
        }
    }

    /// Calls `f(index, value)` for every non-zero register in index order,
    /// stopping early when `f` breaks.
    pub(crate) fn try_for_each_nonzero(
        &self,
        mut f: impl FnMut(usize, u8) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        match &self.repr {
            Repr::Sparse(entries) => {
                for &e in entries {
                    f(entry_index(e), entry_value(e))?;
                }
            }
            Repr::Dense(regs) => {
                for (i, &r) in regs.iter().enumerate() {
                    if r != 0 {
                        f(i, r)?;
                    }
                }
            }
        }
        ControlFlow::Continue(())
    }

    /// Runs `f` over all 16,384 registers as one array (borrowed when dense,
    /// built on the stack when sparse).
    pub(crate) fn with_registers<R>(&self, f: impl FnOnce(&[u8; REGISTERS]) -> R) -> R {
        match &self.repr {
            Repr::Dense(regs) => f(regs),
            Repr::Sparse(entries) => {
                let mut regs = [0u8; REGISTERS];
                for &e in entries {
                    regs[entry_index(e)] = entry_value(e);
                }
                f(&regs)
            }
        }
    }

    /// Builds a sketch from all 16,384 register values (each 0..=51),
    /// choosing the in-memory form by how many are non-zero.
    pub(crate) fn from_registers(regs: Box<[u8; REGISTERS]>) -> Sketch {
        let nonzero = regs.iter().filter(|&&r| r != 0).count();
        if nonzero > SPARSE_MAX_ENTRIES {
            return Sketch {
                repr: Repr::Dense(regs),
            };
        }
        let mut entries = Vec::with_capacity(nonzero);
        for (i, &r) in regs.iter().enumerate() {
            if r != 0 {
                entries.push(pack(i, r));
            }
        }
        Sketch {
            repr: Repr::Sparse(entries),
        }
    }

    /// Builds a sketch from sorted, distinct-index, non-zero (index, value)
    /// pairs, as the sparse decoder produces them.
    pub(crate) fn from_sorted_nonzero(pairs: impl IntoIterator<Item = (usize, u8)>) -> Sketch {
        let mut entries: Vec<u32> = Vec::new();
        for (i, v) in pairs {
            debug_assert!(v != 0 && entries.last().is_none_or(|&e| entry_index(e) < i));
            entries.push(pack(i, v));
        }
        if entries.len() > SPARSE_MAX_ENTRIES {
            Sketch {
                repr: Repr::Dense(dense_from_entries(&entries)),
            }
        } else {
            entries.shrink_to_fit();
            Sketch {
                repr: Repr::Sparse(entries),
            }
        }
    }
}

/// Union of two sorted entry lists, keeping the larger value per index.
fn merge_sorted(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (ia, ib) = (entry_index(a[i]), entry_index(b[j]));
        if ia < ib {
            out.push(a[i]);
            i += 1;
        } else if ib < ia {
            out.push(b[j]);
            j += 1;
        } else {
            // Same index: the packed value with the larger low byte wins,
            // and with equal high bits that is simply the larger u32.
            out.push(a[i].max(b[j]));
            i += 1;
            j += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

impl PartialEq for Sketch {
    fn eq(&self, other: &Self) -> bool {
        match (&self.repr, &other.repr) {
            // Both forms are canonical (sorted, no zeros), so they compare
            // directly.
            (Repr::Sparse(a), Repr::Sparse(b)) => a == b,
            (Repr::Dense(a), Repr::Dense(b)) => a == b,
            _ => (0..REGISTERS).all(|i| self.register(i) == other.register(i)),
        }
    }
}

impl Eq for Sketch {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{filled, Rng};

    /// Reference sketch: a plain register array, no adaptivity.
    fn reference(items: &[Vec<u8>]) -> [u8; REGISTERS] {
        let mut regs = [0u8; REGISTERS];
        for item in items {
            let (i, r) = index_and_rank(item);
            regs[i] = regs[i].max(r);
        }
        regs
    }

    #[test]
    fn new_is_empty_and_small() {
        let s = Sketch::new();
        assert!(s.is_empty());
        assert_eq!(s.estimate(), 0);
        assert_eq!(s.heap_bytes(), 0);
        assert_eq!(s, Sketch::default());
    }

    #[test]
    fn insert_reports_changes() {
        let mut s = Sketch::new();
        assert!(s.insert(b"a"));
        assert!(!s.insert(b"a"));
        assert!(!s.is_empty());
        assert_eq!(s.estimate(), 1);
    }

    #[test]
    fn promotes_past_threshold_and_matches_reference() {
        let mut rng = Rng::new(7);
        let items: Vec<Vec<u8>> = (0..20_000)
            .map(|_| rng.next_u64().to_le_bytes().to_vec())
            .collect();
        let mut s = Sketch::new();
        let mut was_sparse_at_some_point = false;
        for (n, item) in items.iter().enumerate() {
            s.insert(item);
            if n == 100 {
                was_sparse_at_some_point = s.is_sparse();
            }
        }
        assert!(was_sparse_at_some_point);
        assert!(!s.is_sparse());
        let regs = reference(&items);
        for (i, &r) in regs.iter().enumerate() {
            assert_eq!(s.register(i), r, "register {i}");
        }
    }

    #[test]
    fn sparse_and_dense_forms_are_equal_and_estimate_alike() {
        let mut rng = Rng::new(11);
        for _ in 0..100 {
            let n = rng.below(5000);
            let sparse_ish = filled(n, &format!("x{}", rng.next_u64()));
            let dense = Sketch {
                repr: Repr::Dense({
                    let mut regs = zeroed_registers();
                    for (i, r) in regs.iter_mut().enumerate() {
                        *r = sparse_ish.register(i);
                    }
                    regs
                }),
            };
            assert_eq!(sparse_ish, dense);
            assert_eq!(dense, sparse_ish);
            assert_eq!(sparse_ish.estimate(), dense.estimate());
            assert_eq!(sparse_ish.histogram(), dense.histogram());
            assert_eq!(sparse_ish.nonzero_registers(), dense.nonzero_registers());
        }
    }

    #[test]
    fn merge_is_register_max_in_every_form_combination() {
        let mut rng = Rng::new(3);
        for _ in 0..100 {
            let a = filled(rng.below(6000), &format!("a{}", rng.next_u64()));
            let b = filled(rng.below(6000), &format!("b{}", rng.next_u64()));
            let mut ab = a.clone();
            ab.merge(&b);
            let mut ba = b.clone();
            ba.merge(&a);
            assert_eq!(ab, ba);
            for i in 0..REGISTERS {
                assert_eq!(ab.register(i), a.register(i).max(b.register(i)));
            }
            // Idempotent.
            let mut again = ab.clone();
            again.merge(&a);
            again.merge(&b);
            assert_eq!(again, ab);
            assert!(ab.heap_bytes() <= REGISTERS || !ab.is_sparse());
        }
    }

    #[test]
    fn merge_equals_inserting_everything() {
        let mut a = filled(1500, "m");
        let b = filled(1500, "n");
        a.merge(&b);
        let mut both = filled(1500, "m");
        for i in 0..1500 {
            both.insert(format!("n-{i}").as_bytes());
        }
        assert_eq!(a, both);
    }

    #[test]
    fn few_ids_use_little_memory() {
        let s = filled(5, "few");
        assert!(s.is_sparse());
        assert!(s.heap_bytes() <= 64, "{}", s.heap_bytes());
        let big = filled(100_000, "many");
        assert_eq!(big.heap_bytes(), REGISTERS);
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn register_out_of_range_panics() {
        Sketch::new().register(REGISTERS);
    }
}
