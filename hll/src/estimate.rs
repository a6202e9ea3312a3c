//! Redis's cardinality estimator (`hllCount`, Redis >= 5), reproduced step
//! for step.
//!
//! This is Otmar Ertl's "improved raw estimator" from *New cardinality
//! estimation algorithms for HyperLogLog sketches* (2017). It depends only
//! on the register histogram. The floating-point operations follow Redis's
//! order exactly, so the result equals `PFCOUNT`, not merely approximates it.

use crate::{MAX_RANK, Q, REGISTERS};

/// `0.5 / ln 2`, the asymptotic bias correction Redis calls `HLL_ALPHA_INF`.
/// Written with Redis's digits so the two are easy to compare; the literal
/// rounds to the same f64 either way.
#[allow(clippy::excessive_precision)]
const ALPHA_INF: f64 = 0.721_347_520_444_481_703_680;

/// `hist[v]` = number of registers holding `v`, for v in 0..=51.
pub type Histogram = [u32; MAX_RANK as usize + 1];

/// Estimate from a register histogram, equal to Redis's `PFCOUNT` for the
/// same registers.
pub fn from_histogram(hist: &Histogram) -> u64 {
    let m = REGISTERS as f64;
    let q = Q as usize;
    let mut z = m * tau((m - f64::from(hist[q + 1])) / m);
    for &count in hist[1..=q].iter().rev() {
        z += f64::from(count);
        z *= 0.5;
    }
    z += m * sigma(f64::from(hist[0]) / m);
    // Same association as Redis: ((alpha * m) * m) / z. An empty sketch has
    // z = +inf and so estimates 0. `f64::round` rounds half away from zero,
    // like C's llroundl; the value is non-negative and far below 2^64, so
    // the cast is exact.
    (ALPHA_INF * m * m / z).round() as u64
}

/// Ertl's sigma, a series in x^(2^k), summed until it stops changing, in
/// the same order as Redis. sigma(1) is +inf: an empty sketch estimates 0.
fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let mut y = 1.0;
    let mut z = x;
    loop {
        x *= x;
        let previous = z;
        z += x * y;
        y += y;
        if z == previous {
            return z;
        }
    }
}

/// Ertl's tau, iterated until it stops changing. Redis writes the square as
/// `pow(1 - x, 2)`, which its compiler turns into a plain multiply; `t * t`
/// reproduces that bit for bit, `powf` might not.
fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let mut y = 1.0;
    let mut z = 1.0 - x;
    loop {
        x = x.sqrt();
        let previous = z;
        y *= 0.5;
        let t = 1.0 - x;
        z -= t * t * y;
        if z == previous {
            return z / 3.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_zero() {
        let mut hist: Histogram = [0; 52];
        hist[0] = REGISTERS as u32;
        assert_eq!(from_histogram(&hist), 0);
    }

    #[test]
    fn one_register_set_is_one() {
        for rank in 1..=MAX_RANK as usize {
            let mut hist: Histogram = [0; 52];
            hist[0] = REGISTERS as u32 - 1;
            hist[rank] = 1;
            assert_eq!(from_histogram(&hist), 1, "rank {rank}");
        }
    }

    #[test]
    fn all_registers_at_max_is_finite() {
        let mut hist: Histogram = [0; 52];
        hist[MAX_RANK as usize] = REGISTERS as u32;
        // tau(0) = 0 and sigma(0) = 0 make z zero, so the quotient is +inf.
        // Rust's float-to-int cast saturates to u64::MAX; in C, llroundl of
        // +inf is unspecified, so Redis may differ here. PFADD cannot reach
        // this state in practice (it needs about 2^64 distinct hashes).
        assert_eq!(from_histogram(&hist), u64::MAX);
    }
}
