//! Small text helpers that keep the formatting machinery out of the wasm.

use alloc::string::String;

/// Appends the decimal form of `n`, with no indexing that could panic.
pub fn push_u64(out: &mut String, n: u64) {
    let mut digits = 1;
    let mut scale = 1u64;
    while n / scale >= 10 {
        scale *= 10;
        digits += 1;
    }
    out.reserve(digits);
    while scale > 0 {
        out.push(char::from(b'0' + (n / scale % 10) as u8));
        scale /= 10;
    }
}

/// The pieces of `s` between the bytes `sep` (an ASCII character), as
/// `s.split(sep)` gives them, by a byte scan: a `char` pattern brings a
/// searcher of its own (and `memchr`) into the wasm. Cutting at an ASCII
/// byte always falls on a character boundary.
pub fn split_ascii(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    core::iter::from_fn(move || {
        let r = rest?;
        match r.bytes().position(|b| b == sep) {
            Some(i) => {
                rest = r.get(i + 1..);
                r.get(..i)
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// Parses a decimal number of at most 19 digits, nothing else.
pub fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    let mut n = 0u64;
    for b in s.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(b - b'0');
    }
    Some(n)
}

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A random id of `len` characters of `[0-9A-Za-z]`, a valid wire id;
/// `random` yields numbers in 0..1.
pub fn random_id(len: usize, mut random: impl FnMut() -> f64) -> String {
    let mut s = String::with_capacity(len);
    for _ in 0..len {
        let i = (random().clamp(0.0, 1.0) * 62.0) as usize;
        s.push(char::from(ALPHABET[i.min(61)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal() {
        for n in [
            0u64,
            7,
            10,
            99,
            1_764_000_000_000,
            10_000_000_000_000_000_000,
            u64::MAX,
        ] {
            let mut s = String::new();
            push_u64(&mut s, n);
            assert_eq!(s, n.to_string());
        }
    }

    #[test]
    fn split_ascii_is_split() {
        for s in ["", ":", "a", "a:b", ":a::b:", "é:ü:", "{\"ts\":1}"] {
            let ours: Vec<&str> = split_ascii(s, b':').collect();
            let std: Vec<&str> = s.split(':').collect();
            assert_eq!(ours, std, "{s:?}");
        }
    }

    #[test]
    fn parse() {
        assert_eq!(parse_u64("0"), Some(0));
        assert_eq!(parse_u64("1764000000000"), Some(1_764_000_000_000));
        assert_eq!(
            parse_u64("9999999999999999999"),
            Some(9_999_999_999_999_999_999)
        );
        for bad in ["", "-1", "1.5", " 1", "1e3", "99999999999999999999"] {
            assert_eq!(parse_u64(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn random_ids_use_the_wire_alphabet() {
        let mut x = 0.0;
        let id = random_id(70, || {
            x += 0.0151;
            x % 1.0
        });
        assert_eq!(id.len(), 70);
        assert!(crate::queue::valid_id(&id, 70));
        assert_eq!(random_id(2, || 1.0), "zz");
        assert_eq!(random_id(1, || 0.0), "0");
    }
}
