//! Advertiser API keys and the ad ids each may read. No HTTP, no I/O: the
//! caller reads the keys file and hands its text to [`parse_keys_file`].
//!
//! # The keys file (`--api-keys-file`)
//!
//! One key per line, then whitespace, then its scope: a comma-separated list
//! of ad-id prefixes, or `*` for every ad. Blank lines and lines starting with
//! `#` are ignored.
//!
//! ```text
//! # key                                scope
//! 9f2c4e0b7a1d4c53b8e6f0a2d9c17e44      acme-,acme2-
//! 5b1e0c9d2f7a4e6b9c3d8f1a0e2b7c65      *
//! ```
//!
//! - A key is 16 to 256 printable ASCII characters without spaces.
//! - A prefix uses the ad-id alphabet `[A-Za-z0-9._:-]`; a trailing `*` is
//!   allowed and means the same as without it (`acme-*` = `acme-`).
//! - A key may appear once only.
//!
//! A key for `acme-` reads `acme-1` and `acme-summer`, never `acme2-x` or
//! `globex-1`.

use std::fmt;

use glimpse_wire::ingest::{is_id_byte, MAX_AD_OR_USER_ID_BYTES};

/// Shortest key accepted from the keys file.
pub(crate) const MIN_FILE_KEY_BYTES: usize = 16;
/// Longest key accepted anywhere.
pub(crate) const MAX_KEY_BYTES: usize = 256;

/// The ad ids a key may read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every ad.
    All,
    /// Ads whose id starts with one of these prefixes (never empty).
    Prefixes(Vec<String>),
}

impl Scope {
    /// The id prefixes of this scope: the empty one for every ad. A store
    /// reads each as a range of its ids.
    pub fn prefixes(&self) -> Vec<String> {
        match self {
            Scope::All => vec![String::new()],
            Scope::Prefixes(prefixes) => prefixes.clone(),
        }
    }

    /// Whether `ad_id` is inside this scope.
    pub fn allows(&self, ad_id: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Prefixes(prefixes) => prefixes.iter().any(|p| ad_id.starts_with(p.as_str())),
        }
    }
}

/// A secret, kept out of `Debug` output and therefore out of logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// One key and what it may read.
#[derive(Clone, Debug)]
pub struct ApiKey {
    pub secret: Secret,
    pub scope: Scope,
}

/// A keys file that could not be used; names the line at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct KeysFileError {
    pub line: usize,
    pub message: String,
}

/// Parses the text of a keys file (format in the module docs).
pub fn parse_keys_file(text: &str) -> Result<Vec<ApiKey>, KeysFileError> {
    let mut keys: Vec<ApiKey> = Vec::new();
    for (index, raw_line) in text.lines().enumerate() {
        let line = index + 1;
        let err = |message: String| KeysFileError { line, message };
        let trimmed = raw_line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let mut fields = trimmed.split_whitespace();
        let key = fields.next().unwrap_or_default();
        let scope = fields.next().ok_or_else(|| {
            err(
                "a key must be followed by its scope (`*` or comma-separated ad-id prefixes)"
                    .into(),
            )
        })?;
        if fields.next().is_some() {
            return Err(err(
                "expected two fields, `<key> <scope>`; write the prefixes of a scope without spaces (`acme-,globex-`)".into(),
            ));
        }
        check_key(key, MIN_FILE_KEY_BYTES).map_err(err)?;
        let scope = parse_scope(scope).map_err(err)?;
        if keys.iter().any(|k| k.secret.expose() == key) {
            return Err(err("this key appears on an earlier line too".into()));
        }
        keys.push(ApiKey {
            secret: Secret::new(key),
            scope,
        });
    }
    Ok(keys)
}

/// Checks a key's length and alphabet (printable ASCII, no spaces). The
/// message never contains the key.
pub(crate) fn check_key(key: &str, min_len: usize) -> Result<(), String> {
    if key.len() < min_len {
        return Err(format!(
            "the key is {} bytes long; keys must be at least {min_len}",
            key.len()
        ));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(format!(
            "the key is {} bytes long; keys must be at most {MAX_KEY_BYTES}",
            key.len()
        ));
    }
    if let Some(at) = key.bytes().position(|b| !b.is_ascii_graphic()) {
        return Err(format!(
            "the key has a character that is not printable ASCII at byte {at}"
        ));
    }
    Ok(())
}

fn parse_scope(text: &str) -> Result<Scope, String> {
    let mut prefixes = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        if part == "*" {
            return if text.trim() == "*" {
                Ok(Scope::All)
            } else {
                Err("`*` already means every ad; do not list it with prefixes".into())
            };
        }
        let prefix = part.strip_suffix('*').unwrap_or(part);
        if prefix.is_empty() {
            return Err("an empty prefix in the scope (use `*` for every ad)".into());
        }
        if prefix.len() > MAX_AD_OR_USER_ID_BYTES {
            return Err(format!(
                "the prefix `{prefix}` is longer than an ad id can be ({MAX_AD_OR_USER_ID_BYTES} bytes)"
            ));
        }
        if let Some(at) = prefix.bytes().position(|b| !is_id_byte(b)) {
            return Err(format!(
                "the prefix `{}` has a character outside [A-Za-z0-9._:-] at byte {at}",
                prefix.escape_debug()
            ));
        }
        prefixes.push(prefix.to_owned());
    }
    Ok(Scope::Prefixes(prefixes))
}

/// Byte equality whose running time depends on the lengths only, never on
/// where the first difference is.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "0123456789abcdef-key-one";
    const K2: &str = "fedcba9876543210-key-two";

    #[test]
    fn parses_keys_scopes_comments_and_blank_lines() {
        let text = format!("# advertisers\n\n{K1}   acme-,globex-*\n  {K2}\t*  \n# end\n");
        let keys = parse_keys_file(&text).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].secret.expose(), K1);
        assert_eq!(
            keys[0].scope,
            Scope::Prefixes(vec!["acme-".into(), "globex-".into()])
        );
        assert_eq!(keys[1].scope, Scope::All);
        assert!(parse_keys_file("").unwrap().is_empty());
    }

    #[test]
    fn scope_is_a_prefix_match() {
        let scope = Scope::Prefixes(vec!["acme-".into(), "x".into()]);
        assert!(scope.allows("acme-1"));
        assert!(scope.allows("acme-"));
        assert!(scope.allows("xyz"));
        assert!(!scope.allows("acme2-1"));
        assert!(!scope.allows("acme"));
        assert!(!scope.allows("globex-1"));
        assert!(Scope::All.allows("anything"));
    }

    #[test]
    fn malformed_files_name_the_line_and_never_the_key() {
        let cases: Vec<(String, usize, &str)> = vec![
            (K1.to_string(), 1, "followed by its scope"),
            (format!("# c\n{K1} acme- extra"), 2, "two fields"),
            ("short-key *".into(), 1, "at least 16"),
            (format!("{K1} acme-,"), 1, "empty prefix"),
            (format!("{K1} acme-,*"), 1, "`*` already means"),
            (format!("{K1} ac{{me}}"), 1, "outside [A-Za-z0-9._:-]"),
            (format!("{K1} *\n\n{K1} acme-"), 3, "earlier line"),
            (
                format!("{K1} {}", "a".repeat(129)),
                1,
                "longer than an ad id",
            ),
            (format!("{}{K1} *", "\u{e9}"), 1, "printable ASCII"),
        ];
        for (text, line, what) in cases {
            let err = parse_keys_file(&text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
            assert!(err.to_string().contains(what), "{text:?}: {err}");
            assert!(!err.to_string().contains(K1), "{err}");
        }
    }

    #[test]
    fn debug_output_redacts_keys() {
        let keys = parse_keys_file(&format!("{K1} acme-")).unwrap();
        let shown = format!("{keys:?}");
        assert!(!shown.contains(K1), "{shown}");
        assert!(
            shown.contains("redacted") && shown.contains("acme-"),
            "{shown}"
        );
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }
}
