//! Signed ads: the token an ad server puts in `data-ad-token` and its
//! verification. Pure: no clock, no I/O.
//!
//! A token is `<expiry>.<mac>`: `expiry` is a Unix time in seconds (ASCII
//! digits) and `mac` the lowercase hex HMAC-SHA256, keyed with the edge's
//! signing secret, of `<ad_id>.<expiry>`.
//!
//! An edge holds one or more secrets ([`SigningSecrets`]): the first signs,
//! every one verifies, so a secret is rotated without refusing the tokens
//! pages already carry: add the new one first, keep the old one after it
//! until its tokens have expired, then drop it.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::keys::Secret;

type HmacSha256 = Hmac<Sha256>;

/// Hex digits of a MAC in a token.
const MAC_HEX_LEN: usize = 64;

/// The shortest signing secret accepted, in bytes: HMAC-SHA256's own output
/// size; a shorter key is the weakest part of the token.
pub const MIN_SECRET_BYTES: usize = 32;

/// The secrets of `--ad-signing-secret`: at least one, each of at least
/// [`MIN_SECRET_BYTES`]; the first signs, all verify.
#[derive(Clone, Debug)]
pub struct SigningSecrets(Vec<Secret>);

impl SigningSecrets {
    /// Refuses an empty list and any secret shorter than
    /// [`MIN_SECRET_BYTES`], naming it by position, never by value.
    pub fn new(secrets: Vec<Secret>) -> Result<Self, String> {
        if secrets.is_empty() {
            return Err("no signing secret given".into());
        }
        let count = secrets.len();
        for (i, secret) in secrets.iter().enumerate() {
            let len = secret.expose().len();
            if len < MIN_SECRET_BYTES {
                return Err(format!(
                    "signing secret {} of {count} is {len} bytes; each must be at least \
                     {MIN_SECRET_BYTES} (e.g. `openssl rand -hex 32`)",
                    i + 1
                ));
            }
        }
        Ok(SigningSecrets(secrets))
    }

    /// The secrets of a flag that may be absent: `None` when none is given.
    pub fn from_flag(secrets: &[Secret]) -> Result<Option<Self>, String> {
        if secrets.is_empty() {
            Ok(None)
        } else {
            Self::new(secrets.to_vec()).map(Some)
        }
    }

    /// The secret new tokens are issued with: the first.
    pub fn signing(&self) -> &Secret {
        &self.0[0]
    }

    /// Checks `token` for `ad_id` at `now_secs` against every secret. The
    /// error is the reason sent back to the client.
    pub(crate) fn verify(
        &self,
        ad_id: &str,
        token: Option<&str>,
        now_secs: u64,
    ) -> Result<(), String> {
        let keys: Vec<&[u8]> = self.0.iter().map(|s| s.expose().as_bytes()).collect();
        verify(&keys, ad_id, token, now_secs)
    }
}

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

/// Checks `token` for `ad_id` at `now_secs` (Unix seconds): valid when its
/// MAC is that of any of `secrets`. The error is the reason sent back to the
/// client.
fn verify(
    secrets: &[&[u8]],
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
    // Every secret is tried, each in constant time: the timing does not say
    // which one matched.
    let matched = secrets.iter().fold(false, |matched, secret| {
        mac(secret, ad_id, expiry).verify_slice(&tag).is_ok() | matched
    });
    if !matched {
        return Err("`token` does not match this `ad_id`".to_owned());
    }
    if expiry_secs < now_secs {
        return Err(format!("`token` expired at {expiry_secs}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"s3cret";
    const KEYS: &[&[u8]] = &[KEY];
    const NOW: u64 = 1_700_000_000;

    #[test]
    fn valid_token_passes() {
        let t = issue(KEY, "ad-42", NOW + 60);
        assert!(t.starts_with("1700000060."));
        assert_eq!(t.len(), 11 + MAC_HEX_LEN);
        assert_eq!(verify(KEYS, "ad-42", Some(&t), NOW), Ok(()));
        assert_eq!(verify(KEYS, "ad-42", Some(&t), NOW + 60), Ok(()));
        // Upper-case hex is the same MAC.
        assert_eq!(verify(KEYS, "ad-42", Some(&t.to_uppercase()), NOW), Ok(()));
    }

    #[test]
    fn known_vector() {
        // HMAC-SHA256("key", "ad.1"), computed with Python's hmac module.
        let t = issue(b"key", "ad", 1);
        assert_eq!(
            t,
            "1.e49d6501efb34e53d3702cc3a8e51eb31a1de1b20a1042332c07981bc79ea1cc"
        );
        assert_eq!(verify(&[b"key".as_slice()], "ad", Some(&t), 0), Ok(()));
    }

    #[test]
    fn wrong_ad_or_secret_fails() {
        let t = issue(KEY, "ad-42", NOW + 60);
        let e = verify(KEYS, "ad-43", Some(&t), NOW).unwrap_err();
        assert!(e.contains("does not match"), "{e}");
        assert!(verify(&[b"other".as_slice()], "ad-42", Some(&t), NOW).is_err());
    }

    #[test]
    fn tampered_mac_or_expiry_fails() {
        let t = issue(KEY, "ad-42", NOW + 60);
        let mut bytes = t.into_bytes();
        let last = bytes.len() - 1;
        bytes[last] = if bytes[last] == b'0' { b'1' } else { b'0' };
        let t = String::from_utf8(bytes).unwrap();
        assert!(verify(KEYS, "ad-42", Some(&t), NOW).is_err());
        // A later expiry under the old MAC.
        let t = issue(KEY, "ad-42", NOW + 60);
        let forged = t.replacen("1700000060", "1700009999", 1);
        assert!(verify(KEYS, "ad-42", Some(&forged), NOW)
            .unwrap_err()
            .contains("does not match"));
    }

    #[test]
    fn expired_fails() {
        let t = issue(KEY, "ad-42", NOW - 1);
        let e = verify(KEYS, "ad-42", Some(&t), NOW).unwrap_err();
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
            let e = verify(KEYS, "ad-42", Some(bad), NOW).unwrap_err();
            assert!(e.contains("malformed"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn every_secret_verifies_and_the_first_signs() {
        let new = Secret::new("n".repeat(MIN_SECRET_BYTES));
        let old = Secret::new("o".repeat(MIN_SECRET_BYTES + 8));
        let secrets = SigningSecrets::new(vec![new.clone(), old.clone()]).unwrap();
        assert_eq!(secrets.signing(), &new);
        for secret in [&new, &old] {
            let t = issue(secret.expose().as_bytes(), "ad-42", NOW + 60);
            assert_eq!(secrets.verify("ad-42", Some(&t), NOW), Ok(()));
        }
        let t = issue(&[b'x'; MIN_SECRET_BYTES], "ad-42", NOW + 60);
        assert!(secrets
            .verify("ad-42", Some(&t), NOW)
            .unwrap_err()
            .contains("does not match"));
    }

    #[test]
    fn short_or_missing_secrets_are_refused_without_showing_them() {
        let short = "tooshort-secret";
        let e = SigningSecrets::new(vec![
            Secret::new("k".repeat(MIN_SECRET_BYTES)),
            Secret::new(short),
        ])
        .unwrap_err();
        assert!(e.contains("secret 2 of 2 is 15 bytes"), "{e}");
        assert!(e.contains("at least 32"), "{e}");
        assert!(!e.contains(short), "{e}");
        assert!(SigningSecrets::new(Vec::new()).is_err());
        assert!(SigningSecrets::from_flag(&[]).unwrap().is_none());
    }

    #[test]
    fn missing_fails() {
        let e = verify(KEYS, "ad-42", None, NOW).unwrap_err();
        assert!(e.contains("missing"), "{e}");
    }
}
