//! Signed ads: the token an ad server puts in `data-ad-token` and its
//! verification. Pure: no clock, no I/O.
//!
//! A token is `<expiry>.<mac>`: `expiry` is a Unix time in seconds (ASCII
//! digits) and `mac` the lowercase hex HMAC-SHA256, keyed with the edge's
//! signing secret, of `<ad_id>.<expiry>`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Hex digits of a MAC in a token.
const MAC_HEX_LEN: usize = 64;

fn mac(secret: &[u8], ad_id: &str, expiry: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(ad_id.as_bytes());
    mac.update(b".");
    mac.update(expiry.as_bytes());
    mac
}

/// The token for `ad_id`, valid until `expiry` (Unix seconds).
pub fn issue(secret: &[u8], ad_id: &str, expiry: u64) -> String {
    let expiry = expiry.to_string();
    let bytes = mac(secret, ad_id, &expiry).finalize().into_bytes();
    let mut token = expiry;
    token.push('.');
    for b in bytes {
        token.push_str(&format!("{b:02x}"));
    }
    token
}

fn unhex(hex: &[u8]) -> Option<Vec<u8>> {
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    hex.chunks(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

/// Checks `token` for `ad_id` at `now_secs` (Unix seconds). The error is the
/// reason sent back to the client.
pub(crate) fn verify(
    secret: &[u8],
    ad_id: &str,
    token: Option<&str>,
    now_secs: u64,
) -> Result<(), String> {
    let token = token.ok_or("`token` is missing: this edge requires signed ads")?;
    let malformed = || "`token` is malformed: expected `<expiry>.<hex HMAC-SHA256>`".to_owned();
    let (expiry, hex) = token.split_once('.').ok_or_else(malformed)?;
    if expiry.is_empty() || expiry.len() > 20 || !expiry.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed());
    }
    let expiry_secs: u64 = expiry.parse().map_err(|_| malformed())?;
    if hex.len() != MAC_HEX_LEN {
        return Err(malformed());
    }
    let tag = unhex(hex.as_bytes()).ok_or_else(malformed)?;
    mac(secret, ad_id, expiry)
        .verify_slice(&tag)
        .map_err(|_| "`token` does not match this `ad_id`".to_owned())?;
    if expiry_secs < now_secs {
        return Err(format!("`token` expired at {expiry_secs}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"s3cret";
    const NOW: u64 = 1_700_000_000;

    #[test]
    fn valid_token_passes() {
        let t = issue(KEY, "ad-42", NOW + 60);
        assert!(t.starts_with("1700000060."));
        assert_eq!(t.len(), 11 + MAC_HEX_LEN);
        assert_eq!(verify(KEY, "ad-42", Some(&t), NOW), Ok(()));
        assert_eq!(verify(KEY, "ad-42", Some(&t), NOW + 60), Ok(()));
        // Upper-case hex is the same MAC.
        assert_eq!(verify(KEY, "ad-42", Some(&t.to_uppercase()), NOW), Ok(()));
    }

    #[test]
    fn known_vector() {
        // HMAC-SHA256("key", "ad.1"), computed with Python's hmac module.
        let t = issue(b"key", "ad", 1);
        assert_eq!(
            t,
            "1.e49d6501efb34e53d3702cc3a8e51eb31a1de1b20a1042332c07981bc79ea1cc"
        );
        assert_eq!(verify(b"key", "ad", Some(&t), 0), Ok(()));
    }

    #[test]
    fn wrong_ad_or_secret_fails() {
        let t = issue(KEY, "ad-42", NOW + 60);
        let e = verify(KEY, "ad-43", Some(&t), NOW).unwrap_err();
        assert!(e.contains("does not match"), "{e}");
        assert!(verify(b"other", "ad-42", Some(&t), NOW).is_err());
    }

    #[test]
    fn tampered_mac_or_expiry_fails() {
        let t = issue(KEY, "ad-42", NOW + 60);
        let mut bytes = t.into_bytes();
        let last = bytes.len() - 1;
        bytes[last] = if bytes[last] == b'0' { b'1' } else { b'0' };
        let t = String::from_utf8(bytes).unwrap();
        assert!(verify(KEY, "ad-42", Some(&t), NOW).is_err());
        // A later expiry under the old MAC.
        let t = issue(KEY, "ad-42", NOW + 60);
        let forged = t.replacen("1700000060", "1700009999", 1);
        assert!(verify(KEY, "ad-42", Some(&forged), NOW)
            .unwrap_err()
            .contains("does not match"));
    }

    #[test]
    fn expired_fails() {
        let t = issue(KEY, "ad-42", NOW - 1);
        let e = verify(KEY, "ad-42", Some(&t), NOW).unwrap_err();
        assert!(e.contains("expired"), "{e}");
    }

    #[test]
    fn malformed_fails() {
        let good = issue(KEY, "ad-42", NOW + 60);
        let mac = good.split_once('.').unwrap().1;
        for bad in [
            "",
            ".",
            "abc",
            "1700000060",
            &format!("1700000060.{}", &mac[..63]),
            &format!("1700000060.{}zz", &mac[..62]),
            &format!("-1.{mac}"),
            &format!("x.{mac}"),
            &format!("99999999999999999999999.{mac}"),
        ] {
            let e = verify(KEY, "ad-42", Some(bad), NOW).unwrap_err();
            assert!(e.contains("malformed"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn missing_fails() {
        let e = verify(KEY, "ad-42", None, NOW).unwrap_err();
        assert!(e.contains("missing"), "{e}");
    }
}
