//! The Redis string value of a HyperLogLog, both encodings.
//!
//! Header (16 bytes): `"HYLL"`, encoding (0 dense, 1 sparse), 3 unused zero
//! bytes, then the cached cardinality as 8 little-endian bytes, whose top
//! bit set means "cache invalid". We always write the cache invalid: a
//! single-key `PFCOUNT` returns a valid-looking cache without recomputing.
//!
//! Dense body: 16,384 registers of 6 bits, register i at bit `6 * i` counted
//! LSB first from the body start; every 3 bytes hold 4 registers, 12,288
//! bytes in all.
//!
//! Sparse body: opcodes that must cover exactly 16,384 registers:
//! - ZERO  `00xxxxxx`: x + 1 zero registers (1..=64);
//! - XZERO `01xxxxxx yyyyyyyy`: the 14-bit value x:y, + 1, zero registers
//!   (1..=16,384);
//! - VAL   `1vvvvvxx`: value v + 1 (1..=32) in x + 1 registers (1..=4).
//!
//! Sparse bytes are not canonical (the same registers have many encodings),
//! so compare decoded registers, never bytes.

use std::fmt;
use std::ops::ControlFlow;

use crate::sketch::Sketch;
use crate::{MAX_RANK, REGISTERS};

/// Bytes in the header.
pub const HEADER_BYTES: usize = 16;
/// Bytes in a dense value, header included.
pub const DENSE_BYTES: usize = HEADER_BYTES + REGISTERS * 6 / 8;
/// Redis's default `hll-sparse-max-bytes`: past this (header included) Redis
/// keeps a key dense, so we do not hand it bigger sparse values either.
pub const SPARSE_MAX_BYTES: usize = 3000;
/// Largest register value the sparse encoding can hold.
pub const SPARSE_MAX_VALUE: u8 = 32;

const MAGIC: [u8; 4] = *b"HYLL";
const ENCODING_DENSE: u8 = 0;
const ENCODING_SPARSE: u8 = 1;

const ZERO_MAX_RUN: usize = 64;
const XZERO_MAX_RUN: usize = REGISTERS;
const VAL_MAX_RUN: usize = 4;

/// Why bytes are not a valid Redis HyperLogLog value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the 16-byte header.
    TooShort { len: usize },
    /// The value does not start with `"HYLL"`.
    BadMagic { found: [u8; 4] },
    /// The encoding byte is neither 0 (dense) nor 1 (sparse).
    BadEncoding { found: u8 },
    /// A dense value whose length is not exactly 12,304 bytes.
    DenseLength { len: usize },
    /// A dense register above 51, which no hash can produce.
    RegisterTooLarge { index: usize, value: u8 },
    /// The value ends inside a two-byte XZERO opcode.
    SparseTruncated { offset: usize },
    /// An opcode at `offset` would run past register 16,383.
    SparseOverflow { offset: usize, covered: usize },
    /// Opcodes covered all 16,384 registers, but bytes remain from `offset`.
    SparseTrailingBytes { offset: usize },
    /// The opcodes end after covering fewer than 16,384 registers.
    SparseIncomplete { covered: usize },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooShort { len } => write!(
                f,
                "not a HyperLogLog: {len} bytes, shorter than the {HEADER_BYTES}-byte header"
            ),
            DecodeError::BadMagic { found } => write!(
                f,
                "not a HyperLogLog: magic is {:?}, expected \"HYLL\"",
                String::from_utf8_lossy(found)
            ),
            DecodeError::BadEncoding { found } => write!(
                f,
                "not a HyperLogLog: encoding byte is {found}, expected 0 (dense) or 1 (sparse)"
            ),
            DecodeError::DenseLength { len } => write!(
                f,
                "invalid dense HyperLogLog: {len} bytes, expected exactly {DENSE_BYTES}"
            ),
            DecodeError::RegisterTooLarge { index, value } => write!(
                f,
                "invalid dense HyperLogLog: register {index} holds {value}, above the maximum {MAX_RANK}"
            ),
            DecodeError::SparseTruncated { offset } => write!(
                f,
                "invalid sparse HyperLogLog: value ends inside the XZERO opcode at byte {offset}"
            ),
            DecodeError::SparseOverflow { offset, covered } => write!(
                f,
                "invalid sparse HyperLogLog: opcode at byte {offset} reaches register {covered}, past the {REGISTERS} registers"
            ),
            DecodeError::SparseTrailingBytes { offset } => write!(
                f,
                "invalid sparse HyperLogLog: trailing bytes from byte {offset} after all {REGISTERS} registers"
            ),
            DecodeError::SparseIncomplete { covered } => write!(
                f,
                "invalid sparse HyperLogLog: opcodes cover {covered} registers, expected {REGISTERS}"
            ),
        }
    }
}

impl std::error::Error for DecodeError {}

fn header(encoding: u8) -> [u8; HEADER_BYTES] {
    let mut h = [0u8; HEADER_BYTES];
    h[..4].copy_from_slice(&MAGIC);
    h[4] = encoding;
    // Cardinality 0 with the invalid bit (top bit of the last, most
    // significant, byte) set: readers must recompute.
    h[HEADER_BYTES - 1] = 0x80;
    h
}

/// Appends the opcodes for `n` (1..=16,384) zero registers.
fn push_zeros(out: &mut Vec<u8>, n: usize) {
    debug_assert!((1..=XZERO_MAX_RUN).contains(&n));
    if n <= ZERO_MAX_RUN {
        out.push((n - 1) as u8);
    } else {
        let x = n - 1;
        out.push(0x40 | (x >> 8) as u8);
        out.push(x as u8);
    }
}

/// Appends one VAL opcode: `value` (1..=32) repeated `run` (1..=4) times.
fn push_val(out: &mut Vec<u8>, value: u8, run: usize) {
    debug_assert!((1..=SPARSE_MAX_VALUE).contains(&value) && (1..=VAL_MAX_RUN).contains(&run));
    out.push(0x80 | ((value - 1) << 2) | (run - 1) as u8);
}

impl Sketch {
    /// The value to hand Redis: sparse when every register fits (<= 32) and
    /// the whole value stays within Redis's default `hll-sparse-max-bytes`
    /// (3,000, header included); dense (12,304 bytes) otherwise. The
    /// cardinality cache is always marked invalid.
    pub fn to_redis_bytes(&self) -> Vec<u8> {
        match self.encode_sparse(SPARSE_MAX_BYTES) {
            Some(bytes) => bytes,
            None => self.to_dense_redis_bytes(),
        }
    }

    /// The dense encoding, always exactly 12,304 bytes.
    pub fn to_dense_redis_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(DENSE_BYTES);
        out.extend_from_slice(&header(ENCODING_DENSE));
        self.with_registers(|regs| {
            // Four 6-bit registers fill three bytes exactly, LSB first.
            for quad in regs.chunks_exact(4) {
                let (a, b, c, d) = (quad[0], quad[1], quad[2], quad[3]);
                out.extend_from_slice(&[a | (b << 6), (b >> 2) | (c << 4), (c >> 4) | (d << 2)]);
            }
        });
        debug_assert_eq!(out.len(), DENSE_BYTES);
        out
    }

    /// The sparse encoding, of any length; `None` when a register exceeds
    /// 32, which sparse cannot express.
    pub fn to_sparse_redis_bytes(&self) -> Option<Vec<u8>> {
        self.encode_sparse(usize::MAX)
    }

    /// Sparse encoding, or `None` if a value exceeds 32 or the result would
    /// exceed `limit` bytes (checked as we go, so a big dense sketch gives up
    /// early instead of encoding everything).
    fn encode_sparse(&self, limit: usize) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&header(ENCODING_SPARSE));
        let mut next = 0usize; // first register not yet encoded
        let mut run: Option<(u8, usize)> = None; // pending VAL (value, length)
        let flow = self.try_for_each_nonzero(|i, v| {
            if v > SPARSE_MAX_VALUE || out.len() > limit {
                return ControlFlow::Break(());
            }
            if let Some((rv, rl)) = run {
                if i == next && rv == v && rl < VAL_MAX_RUN {
                    run = Some((rv, rl + 1));
                    next += 1;
                    return ControlFlow::Continue(());
                }
                push_val(&mut out, rv, rl);
            }
            if i > next {
                push_zeros(&mut out, i - next);
            }
            run = Some((v, 1));
            next = i + 1;
            ControlFlow::Continue(())
        });
        if flow.is_break() {
            return None;
        }
        if let Some((rv, rl)) = run {
            push_val(&mut out, rv, rl);
        }
        if next < REGISTERS {
            push_zeros(&mut out, REGISTERS - next);
        }
        (out.len() <= limit).then_some(out)
    }

    /// Decodes a Redis HyperLogLog value (either encoding).
    ///
    /// Strict: checks the magic, the encoding byte, the exact dense length,
    /// dense register values (<= 51), and that sparse opcodes cover exactly
    /// 16,384 registers with nothing left over. The 3 unused header bytes and
    /// the cached cardinality are ignored, as Redis ignores them. Never
    /// panics, whatever the input.
    pub fn from_redis_bytes(bytes: &[u8]) -> Result<Sketch, DecodeError> {
        if bytes.len() < HEADER_BYTES {
            return Err(DecodeError::TooShort { len: bytes.len() });
        }
        let magic: [u8; 4] = [bytes[0], bytes[1], bytes[2], bytes[3]];
        if magic != MAGIC {
            return Err(DecodeError::BadMagic { found: magic });
        }
        match bytes[4] {
            ENCODING_DENSE => decode_dense(bytes),
            ENCODING_SPARSE => decode_sparse(bytes),
            found => Err(DecodeError::BadEncoding { found }),
        }
    }
}

fn decode_dense(bytes: &[u8]) -> Result<Sketch, DecodeError> {
    if bytes.len() != DENSE_BYTES {
        return Err(DecodeError::DenseLength { len: bytes.len() });
    }
    let mut regs: Box<[u8; REGISTERS]> = vec![0u8; REGISTERS]
        .into_boxed_slice()
        .try_into()
        .expect("the vector has exactly REGISTERS bytes");
    for (quad, triple) in regs
        .chunks_exact_mut(4)
        .zip(bytes[HEADER_BYTES..].chunks_exact(3))
    {
        let (x, y, z) = (triple[0], triple[1], triple[2]);
        quad[0] = x & 0x3f;
        quad[1] = (x >> 6) | ((y & 0x0f) << 2);
        quad[2] = (y >> 4) | ((z & 0x03) << 4);
        quad[3] = z >> 2;
    }
    if let Some((index, &value)) = regs.iter().enumerate().find(|&(_, &v)| v > MAX_RANK) {
        return Err(DecodeError::RegisterTooLarge { index, value });
    }
    Ok(Sketch::from_registers(regs))
}

fn decode_sparse(bytes: &[u8]) -> Result<Sketch, DecodeError> {
    let mut pairs: Vec<(usize, u8)> = Vec::new();
    let mut covered = 0usize;
    let mut offset = HEADER_BYTES;
    while offset < bytes.len() {
        if covered == REGISTERS {
            return Err(DecodeError::SparseTrailingBytes { offset });
        }
        let op = bytes[offset];
        let (run, value, len) = match op >> 6 {
            0b00 => (usize::from(op & 0x3f) + 1, 0, 1),
            0b01 => {
                let Some(&low) = bytes.get(offset + 1) else {
                    return Err(DecodeError::SparseTruncated { offset });
                };
                ((usize::from(op & 0x3f) << 8 | usize::from(low)) + 1, 0, 2)
            }
            _ => (usize::from(op & 0x03) + 1, ((op >> 2) & 0x1f) + 1, 1),
        };
        if covered + run > REGISTERS {
            return Err(DecodeError::SparseOverflow {
                offset,
                covered: covered + run,
            });
        }
        if value != 0 {
            pairs.extend((covered..covered + run).map(|i| (i, value)));
        }
        covered += run;
        offset += len;
    }
    if covered != REGISTERS {
        return Err(DecodeError::SparseIncomplete { covered });
    }
    Ok(Sketch::from_sorted_nonzero(pairs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{filled, Rng};

    /// A sketch with arbitrary register values, including > 32 and runs.
    fn random_sketch(rng: &mut Rng) -> Sketch {
        let mut s = Sketch::new();
        let n = match rng.below(4) {
            0 => rng.below(10),
            1 => rng.below(500),
            2 => rng.below(5000),
            _ => rng.below(40_000),
        };
        let max_value = if rng.below(3) == 0 {
            MAX_RANK
        } else {
            1 + rng.below(32) as u8
        };
        let mut index = rng.below(REGISTERS as u64) as usize;
        for _ in 0..n {
            // Mix runs of neighbours (to exercise VAL runs) with jumps.
            index = if rng.below(3) == 0 {
                (index + 1) % REGISTERS
            } else {
                rng.below(REGISTERS as u64) as usize
            };
            let value = 1 + rng.below(u64::from(max_value)) as u8;
            s.raise(index, value);
        }
        s
    }

    #[test]
    fn empty_sparse_is_one_xzero() {
        let bytes = Sketch::new().to_redis_bytes();
        assert_eq!(bytes.len(), 18);
        assert_eq!(&bytes[..5], b"HYLL\x01");
        assert_eq!(&bytes[5..16], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80]);
        assert_eq!(&bytes[16..], &[0x7f, 0xff]);
        assert_eq!(Sketch::from_redis_bytes(&bytes).unwrap(), Sketch::new());
    }

    #[test]
    fn dense_layout_places_registers_lsb_first() {
        let mut s = Sketch::new();
        s.raise(0, 1);
        s.raise(1, 2);
        s.raise(2, 3);
        s.raise(3, 51);
        s.raise(REGISTERS - 1, 17);
        let d = s.to_dense_redis_bytes();
        assert_eq!(d.len(), DENSE_BYTES);
        assert_eq!(d[4], 0);
        assert_eq!(d[15], 0x80);
        let body = &d[HEADER_BYTES..];
        // Bits: r0=000001, r1=000010, r2=000011, r3=110011, LSB first.
        assert_eq!(body[0], 0b1000_0001);
        assert_eq!(body[1], 0b0011_0000);
        assert_eq!(body[2], 0b1100_1100);
        // Last register: bits 6*16383.. = byte 12285 bit 2.
        assert_eq!(body[12287], 17 << 2);
        assert_eq!(Sketch::from_redis_bytes(&d).unwrap(), s);
    }

    #[test]
    fn sparse_uses_val_runs_and_zero_opcodes() {
        let mut s = Sketch::new();
        for i in 10..16 {
            s.raise(i, 5);
        }
        s.raise(200, 32);
        let b = s.to_sparse_redis_bytes().unwrap();
        // ZERO:10, VAL 5 x4, VAL 5 x2, XZERO:184, VAL 32 x1, XZERO:16183
        let x184 = 184 - 1;
        let x_rest = REGISTERS - 201 - 1;
        assert_eq!(
            &b[HEADER_BYTES..],
            &[
                9,
                0x80 | (4 << 2) | 3,
                0x80 | (4 << 2) | 1,
                0x40 | (x184 >> 8) as u8,
                x184 as u8,
                0x80 | (31 << 2),
                0x40 | (x_rest >> 8) as u8,
                x_rest as u8,
            ]
        );
        assert_eq!(Sketch::from_redis_bytes(&b).unwrap(), s);
    }

    #[test]
    fn value_above_32_forces_dense() {
        let mut s = Sketch::new();
        s.raise(7, 33);
        assert!(s.to_sparse_redis_bytes().is_none());
        let b = s.to_redis_bytes();
        assert_eq!(b.len(), DENSE_BYTES);
        assert_eq!(Sketch::from_redis_bytes(&b).unwrap(), s);
    }

    #[test]
    fn size_limit_picks_dense() {
        // Thousands of ids: sparse would pass 3000 bytes.
        let s = filled(5000, "big");
        assert!(s
            .to_sparse_redis_bytes()
            .is_none_or(|b| b.len() > SPARSE_MAX_BYTES));
        assert_eq!(s.to_redis_bytes().len(), DENSE_BYTES);
        // A few hundred ids stay sparse.
        let small = filled(300, "small");
        let b = small.to_redis_bytes();
        assert_eq!(b[4], ENCODING_SPARSE);
        assert!(b.len() <= SPARSE_MAX_BYTES);
    }

    #[test]
    fn random_round_trips_are_identity() {
        let mut rng = Rng::new(0x5eed);
        for round in 0..400 {
            let s = random_sketch(&mut rng);
            let chosen = s.to_redis_bytes();
            let back = Sketch::from_redis_bytes(&chosen).unwrap();
            assert_eq!(back, s, "round {round} via to_redis_bytes");
            assert_eq!(back.estimate(), s.estimate());
            let dense = Sketch::from_redis_bytes(&s.to_dense_redis_bytes()).unwrap();
            assert_eq!(dense, s, "round {round} via dense");
            if let Some(sparse) = s.to_sparse_redis_bytes() {
                assert_eq!(
                    Sketch::from_redis_bytes(&sparse).unwrap(),
                    s,
                    "round {round} via sparse"
                );
                if sparse.len() <= SPARSE_MAX_BYTES {
                    assert_eq!(chosen, sparse);
                } else {
                    assert_eq!(chosen.len(), DENSE_BYTES);
                }
            } else {
                assert_eq!(chosen.len(), DENSE_BYTES);
            }
            // Decoded sketches keep the compact form when they are small.
            assert_eq!(
                back.is_sparse(),
                back.nonzero_registers() <= crate::sketch::SPARSE_MAX_ENTRIES
            );
        }
    }

    fn err(bytes: &[u8]) -> DecodeError {
        let e = Sketch::from_redis_bytes(bytes).unwrap_err();
        // Every error renders a message that says what is wrong.
        assert!(!e.to_string().is_empty());
        e
    }

    #[test]
    fn rejects_short_values() {
        for len in 0..HEADER_BYTES {
            assert_eq!(
                err(&b"HYLL\x01\0\0\0\0\0\0\0\0\0\0\x80"[..len]),
                DecodeError::TooShort { len }
            );
        }
    }

    #[test]
    fn rejects_bad_magic() {
        let mut b = Sketch::new().to_redis_bytes();
        b[0] = b'h';
        assert_eq!(err(&b), DecodeError::BadMagic { found: *b"hYLL" });
        assert!(err(&b).to_string().contains("HYLL"));
    }

    #[test]
    fn rejects_bad_encoding() {
        let mut b = Sketch::new().to_redis_bytes();
        b[4] = 2;
        assert_eq!(err(&b), DecodeError::BadEncoding { found: 2 });
    }

    #[test]
    fn rejects_wrong_dense_length() {
        let d = filled(10, "d").to_dense_redis_bytes();
        assert_eq!(
            err(&d[..DENSE_BYTES - 1]),
            DecodeError::DenseLength {
                len: DENSE_BYTES - 1
            }
        );
        let mut longer = d.clone();
        longer.push(0);
        assert_eq!(
            err(&longer),
            DecodeError::DenseLength {
                len: DENSE_BYTES + 1
            }
        );
        assert_eq!(
            err(&d[..HEADER_BYTES]),
            DecodeError::DenseLength { len: HEADER_BYTES }
        );
    }

    #[test]
    fn rejects_dense_register_above_51() {
        let mut d = Sketch::new().to_dense_redis_bytes();
        d[HEADER_BYTES] = 52; // register 0
        assert_eq!(
            err(&d),
            DecodeError::RegisterTooLarge {
                index: 0,
                value: 52
            }
        );
    }

    #[test]
    fn rejects_sparse_with_wrong_total() {
        let h = header(ENCODING_SPARSE);
        let with = |body: &[u8]| [&h[..], body].concat();
        // No opcodes at all.
        assert_eq!(
            err(&with(&[])),
            DecodeError::SparseIncomplete { covered: 0 }
        );
        // XZERO:16383.
        assert_eq!(
            err(&with(&[0x7f, 0xfe])),
            DecodeError::SparseIncomplete { covered: 16383 }
        );
        // XZERO:16384 then ZERO:1: trailing.
        assert_eq!(
            err(&with(&[0x7f, 0xff, 0x00])),
            DecodeError::SparseTrailingBytes { offset: 18 }
        );
        // XZERO:16383 then VAL 1 x2: overflow by one.
        assert_eq!(
            err(&with(&[0x7f, 0xfe, 0x81])),
            DecodeError::SparseOverflow {
                offset: 18,
                covered: 16385
            }
        );
        // XZERO cut in half.
        assert_eq!(
            err(&with(&[0x7f])),
            DecodeError::SparseTruncated { offset: 16 }
        );
        // Many XZERO:16384 opcodes: overflow, not an integer overflow.
        let many: Vec<u8> = [0x7f, 0xff].repeat(1000);
        assert!(matches!(
            err(&with(&many)),
            DecodeError::SparseTrailingBytes { offset: 18 }
        ));
        let mut over = vec![0x7f, 0xfe];
        over.extend([0x7f, 0xff].repeat(1000));
        assert!(matches!(
            err(&with(&over)),
            DecodeError::SparseOverflow { offset: 18, .. }
        ));
    }

    #[test]
    fn decode_never_panics_on_mutations() {
        let mut rng = Rng::new(99);
        let seeds = [
            Sketch::new().to_redis_bytes(),
            filled(50, "p").to_redis_bytes(),
            filled(50_000, "q").to_redis_bytes(),
        ];
        for _ in 0..6_000 {
            let mut b = seeds[rng.below(3) as usize].clone();
            match rng.below(4) {
                0 => {
                    let i = rng.below(b.len() as u64) as usize;
                    b[i] ^= 1 << rng.below(8);
                }
                1 => b.truncate(rng.below(b.len() as u64 + 1) as usize),
                2 => b.extend((0..rng.below(8)).map(|_| rng.next_u64() as u8)),
                _ => {
                    let keep = HEADER_BYTES.min(b.len());
                    b.truncate(keep);
                    b.extend((0..rng.below(64)).map(|_| rng.next_u64() as u8));
                }
            }
            if let Ok(s) = Sketch::from_redis_bytes(&b) {
                // Whatever decodes must re-encode to the same registers.
                assert_eq!(Sketch::from_redis_bytes(&s.to_redis_bytes()).unwrap(), s);
            }
        }
    }
}
