//! The options of `start`, checked without the browser.

use alloc::string::String;

use crate::engine::Rule;
use crate::limits::MAX_AD_OR_USER_ID_BYTES;
use crate::limits::MAX_EVENTS_PER_BATCH;

/// Every option of the tracker, with its defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// Where batches are posted, e.g. `https://edge.example/v1/impressions`.
    pub endpoint: String,
    /// The visitor id; an anonymous id kept in storage when absent.
    pub user_id: Option<String>,
    /// Which elements are ad slots.
    pub selector: String,
    /// Periodic flush; 0 turns it off.
    pub flush_interval_ms: f64,
    /// Events per batch (1..=500).
    pub max_batch: f64,
    /// The viewability thresholds.
    pub rule: Rule,
    /// Without consent nothing is stored and nothing is sent.
    pub consent: bool,
    /// Log decisions to the console.
    pub debug: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            endpoint: String::new(),
            user_id: None,
            selector: "[data-ad-id]".into(),
            flush_interval_ms: 5000.0,
            max_batch: 50.0,
            rule: Rule::default(),
            consent: true,
            debug: false,
        }
    }
}

/// Whether the text of an on/off option (a `data-*` attribute of the tag,
/// or a string passed for a flag) says off: `false`, `0`, `no` or `off`, in
/// any case. Anything else, the empty value of an attribute given without
/// one included, says on.
pub fn says_off(text: &str) -> bool {
    ["false", "0", "no", "off"]
        .iter()
        .any(|word| text.eq_ignore_ascii_case(word))
}

impl Options {
    /// The first thing wrong with the options, as the message of the
    /// JavaScript error `start` throws.
    pub fn check(&self) -> Result<(), &'static str> {
        fn ratio(x: f64) -> bool {
            (0.0..=1.0).contains(&x)
        }
        fn time(x: f64) -> bool {
            x.is_finite() && x >= 0.0
        }
        // ASCII whitespace, as URLs and CSS know it (`trim` would bring
        // Unicode's whitespace table into the wasm).
        if self.endpoint.trim_ascii().is_empty() {
            return Err("glimpse: the `endpoint` option is required (the URL of /v1/impressions)");
        }
        if let Some(id) = &self.user_id {
            if !crate::queue::valid_id(id, MAX_AD_OR_USER_ID_BYTES) {
                return Err("glimpse: `userId` must be 1 to 128 characters of [A-Za-z0-9._:-]");
            }
        }
        if self.selector.trim_ascii().is_empty() {
            return Err("glimpse: `selector` must not be empty");
        }
        if !time(self.flush_interval_ms) {
            return Err("glimpse: `flushIntervalMs` must be a number >= 0");
        }
        if !(self.max_batch >= 1.0
            && self.max_batch <= MAX_EVENTS_PER_BATCH as f64
            // Whole: in this range the cast truncates exactly.
            && f64::from(self.max_batch as u32) == self.max_batch)
        {
            return Err("glimpse: `maxBatch` must be a whole number from 1 to 500");
        }
        if !ratio(self.rule.min_ratio) {
            return Err("glimpse: `minVisibleRatio` must be between 0 and 1");
        }
        if !ratio(self.rule.large_ratio) {
            return Err("glimpse: `largeAdRatio` must be between 0 and 1");
        }
        if !time(self.rule.min_visible_ms) {
            return Err("glimpse: `minVisibleMs` must be a number >= 0");
        }
        if !time(self.rule.large_pixels) {
            return Err("glimpse: `largeAdPixels` must be a number >= 0");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> Options {
        Options {
            endpoint: "http://127.0.0.1:1/v1/impressions".into(),
            ..Options::default()
        }
    }

    #[test]
    fn off_words() {
        for off in [
            "false", "FALSE", "False", "0", "no", "No", "off", "OFF", "oFf",
        ] {
            assert!(says_off(off), "{off:?}");
        }
        for on in ["", "true", "1", "yes", "on", "nope", "offline", " off"] {
            assert!(!says_off(on), "{on:?}");
        }
    }

    #[test]
    fn defaults_are_valid_once_an_endpoint_is_given() {
        assert!(Options::default().check().unwrap_err().contains("endpoint"));
        assert_eq!(ok().check(), Ok(()));
        let d = Options::default();
        assert_eq!(
            (d.flush_interval_ms, d.max_batch, d.consent),
            (5000.0, 50.0, true)
        );
    }

    #[test]
    fn bad_options_are_named() {
        let cases: Vec<(Options, &str)> = vec![
            (
                Options {
                    endpoint: "  ".into(),
                    ..ok()
                },
                "endpoint",
            ),
            (
                Options {
                    user_id: Some("a b".into()),
                    ..ok()
                },
                "userId",
            ),
            (
                Options {
                    user_id: Some(String::new()),
                    ..ok()
                },
                "userId",
            ),
            (
                Options {
                    selector: String::new(),
                    ..ok()
                },
                "selector",
            ),
            (
                Options {
                    flush_interval_ms: -1.0,
                    ..ok()
                },
                "flushIntervalMs",
            ),
            (
                Options {
                    flush_interval_ms: f64::NAN,
                    ..ok()
                },
                "flushIntervalMs",
            ),
            (
                Options {
                    max_batch: 0.0,
                    ..ok()
                },
                "maxBatch",
            ),
            (
                Options {
                    max_batch: 501.0,
                    ..ok()
                },
                "maxBatch",
            ),
            (
                Options {
                    max_batch: 2.5,
                    ..ok()
                },
                "maxBatch",
            ),
            (
                Options {
                    rule: Rule {
                        min_ratio: 1.01,
                        ..Rule::default()
                    },
                    ..ok()
                },
                "minVisibleRatio",
            ),
            (
                Options {
                    rule: Rule {
                        min_ratio: -0.1,
                        ..Rule::default()
                    },
                    ..ok()
                },
                "minVisibleRatio",
            ),
            (
                Options {
                    rule: Rule {
                        min_ratio: f64::NAN,
                        ..Rule::default()
                    },
                    ..ok()
                },
                "minVisibleRatio",
            ),
            (
                Options {
                    rule: Rule {
                        large_ratio: 2.0,
                        ..Rule::default()
                    },
                    ..ok()
                },
                "largeAdRatio",
            ),
            (
                Options {
                    rule: Rule {
                        min_visible_ms: -1.0,
                        ..Rule::default()
                    },
                    ..ok()
                },
                "minVisibleMs",
            ),
            (
                Options {
                    rule: Rule {
                        large_pixels: -5.0,
                        ..Rule::default()
                    },
                    ..ok()
                },
                "largeAdPixels",
            ),
        ];
        for (o, name) in cases {
            let err = o.check().unwrap_err();
            assert!(err.contains(name), "{err} should name {name}");
        }
        let edge = Options {
            rule: Rule {
                min_ratio: 0.0,
                large_ratio: 1.0,
                min_visible_ms: 0.0,
                large_pixels: 0.0,
            },
            flush_interval_ms: 0.0,
            max_batch: 500.0,
            user_id: Some("u".repeat(128)),
            ..ok()
        };
        assert_eq!(edge.check(), Ok(()));
    }
}
