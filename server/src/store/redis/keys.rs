//! Redis key names. Pure functions, so the schema is tested natively and
//! documented in one place (`docs/redis.md` describes the same schema).
//!
//! Every key of one (ad, day) carries the hash tag `{<ad_id>:<YYYY-MM-DD>}`,
//! so the sync script's keys all live in one Redis Cluster slot. Every key
//! of one post carries the tag `{post/<post_id>}` (its days' keys are
//! `…:{post/<post_id>}:<YYYY-MM-DD>`), so a step of a (post, day) adds to
//! the post's all-time total in the same slot, and no ad's key can equal a
//! post's (`/` is outside the id alphabet). Ad ids and
//! batch ids never contain `{` or `}` (the wire contract's id alphabet is
//! `[A-Za-z0-9._:-]`), and the prefix is checked when the store opens, so no
//! other part of a key can move the tag.

use glimpse_wire::Day;

use crate::counts::{post_key, post_of_key};

/// The keys of one deployment: every name starts with the prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

/// Why a prefix is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("the Redis key prefix {0:?} must not contain `{{` or `}}` (they would change the hash slot of every key)")]
pub struct BadPrefix(pub String);

/// The keys the sync script touches for one (ad, day), all in one slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DayKeys {
    /// The day's visitors: a plain Redis HyperLogLog string.
    pub visitors: String,
    /// Hash `imp`, `meas`: the day's exact counters.
    pub counters: String,
    /// Hash of exactly-once bookkeeping: `s:<edge>`, the last applied step
    /// of each edge.
    pub ledger: String,
    /// Scratch key for the sketch being merged; exists only inside the script.
    pub scratch: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Result<Self, BadPrefix> {
        if prefix.contains(['{', '}']) {
            return Err(BadPrefix(prefix.to_owned()));
        }
        Ok(Keys {
            prefix: prefix.to_owned(),
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `{<ad_id>:<YYYY-MM-DD>}`: the hash tag of an (ad, day); for a
    /// post's counts key (`post/<post_id>`), `{post/<post_id>}:<YYYY-MM-DD>`,
    /// the post's tag and the day.
    pub fn tag(key: &str, day: Day) -> String {
        match post_of_key(key) {
            Some(_) => format!("{{{key}}}:{day}"),
            None => format!("{{{key}:{day}}}"),
        }
    }

    /// `<prefix>pv:{post/<post_id>}`: a post's viewable views over all time
    /// (a string counter, never expiring), in the slot of its days' keys.
    pub fn post_views(&self, post_id: &str) -> String {
        format!("{}pv:{{{}}}", self.prefix, post_key(post_id))
    }

    /// `<prefix>uv:{<ad_id>:<YYYY-MM-DD>}`
    pub fn visitors(&self, ad_id: &str, day: Day) -> String {
        format!("{}uv:{}", self.prefix, Self::tag(ad_id, day))
    }

    /// `<prefix>uv:{<ad_id>:<YYYY-MM-DD>}:<HH>`: the visitors of UTC hour
    /// `hour` of that day, in the day's slot.
    pub fn hour_visitors(&self, ad_id: &str, day: Day, hour: u8) -> String {
        format!("{}uv:{}:{hour:02}", self.prefix, Self::tag(ad_id, day))
    }

    /// `<prefix>n:{<ad_id>:<YYYY-MM-DD>}`
    pub fn counters(&self, ad_id: &str, day: Day) -> String {
        format!("{}n:{}", self.prefix, Self::tag(ad_id, day))
    }

    /// `<prefix>x:{<ad_id>:<YYYY-MM-DD>}`
    pub fn ledger(&self, ad_id: &str, day: Day) -> String {
        format!("{}x:{}", self.prefix, Self::tag(ad_id, day))
    }

    /// `<prefix>tmp:{<ad_id>:<YYYY-MM-DD>}`
    pub fn scratch(&self, ad_id: &str, day: Day) -> String {
        format!("{}tmp:{}", self.prefix, Self::tag(ad_id, day))
    }

    pub fn day_keys(&self, ad_id: &str, day: Day) -> DayKeys {
        DayKeys {
            visitors: self.visitors(ad_id, day),
            counters: self.counters(ad_id, day),
            ledger: self.ledger(ad_id, day),
            scratch: self.scratch(ad_id, day),
        }
    }

    /// `<prefix>adz:{<YYYY-MM-DD>}`: the ad ids with data that day, a
    /// sorted set whose members all score 0, read by prefix with
    /// `ZRANGEBYLEX` (`ads.lua`).
    pub fn ads_of_day(&self, day: Day) -> String {
        format!("{}adz:{{{day}}}", self.prefix)
    }

    /// `<prefix>ads:{<YYYY-MM-DD>}`: the same ids as a plain set, the
    /// layout of earlier versions; in the slot of [`Self::ads_of_day`], so
    /// `ads.lua` folds it into the sorted set where it finds one.
    pub fn old_ads_of_day(&self, day: Day) -> String {
        format!("{}ads:{{{day}}}", self.prefix)
    }

    /// `<prefix>claims:{c<shard>}:<window>`: hash of the claims made in
    /// one window of one shard (`plan::ClaimWindows`), `batch_id ->
    /// <edge_id>:<seq>`, the edge and delta that count the batch; made at
    /// sync before its counters are applied (ingest never reads it). The
    /// windows of a shard share its slot, so `claims.lua` reads them all.
    pub fn claims(&self, shard: u16, window: i64) -> String {
        format!("{}claims:{{c{shard}}}:{window}", self.prefix)
    }

    /// `<prefix>boot:<edge_id>`: the highest boot of this edge id that
    /// opened the store, with that run's nonce (`<boot>:<nonce>`), set by
    /// `boot.lua`: a start below it is a restored data directory.
    pub fn edge_boot(&self, edge_id: &str) -> String {
        format!("{}boot:{edge_id}", self.prefix)
    }
}

/// Field of the ledger hash holding an edge's last applied step.
pub fn edge_field(edge_id: &str) -> String {
    format!("s:{edge_id}")
}

/// The `ZRANGEBYLEX` bounds of the ids that start with `prefix`, every id
/// for the empty prefix. Ids are ASCII, so each id under the prefix sorts
/// below the prefix followed by byte 0xFF.
pub fn lex_range(prefix: &str) -> (Vec<u8>, Vec<u8>) {
    if prefix.is_empty() {
        return (b"-".to_vec(), b"+".to_vec());
    }
    let mut min = b"[".to_vec();
    min.extend_from_slice(prefix.as_bytes());
    let mut max = b"(".to_vec();
    max.extend_from_slice(prefix.as_bytes());
    max.push(0xFF);
    (min, max)
}

/// Redis Cluster's slot of a key (CRC16/XMODEM of the hash tag, mod 16384):
/// used by tests to prove that a step's keys share one slot.
#[cfg(test)]
pub fn slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = bytes.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &bytes[open + 1..];
        rest.iter()
            .position(|&b| b == b'}')
            .filter(|&close| close > 0)
            .map(|close| &rest[..close])
    });
    crc16_xmodem(tagged.unwrap_or(bytes)) % 16384
}

/// CRC16/XMODEM, the checksum Redis Cluster hashes slots with.
pub fn crc16_xmodem(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> Day {
        s.parse().unwrap()
    }

    #[test]
    fn lex_ranges_cover_exactly_a_prefix() {
        assert_eq!(lex_range(""), (b"-".to_vec(), b"+".to_vec()));
        let (min, max) = lex_range("acme-");
        assert_eq!(min, b"[acme-");
        assert_eq!(max, b"(acme-\xFF");
        // Every id byte sorts below 0xFF, and nothing outside the prefix
        // falls between the bounds.
        let inside = |id: &str| id.as_bytes() >= &min[1..] && id.as_bytes() < &max[1..];
        for id in ["acme-", "acme-1", "acme-zzz~", "acme-~~~"] {
            assert!(inside(id), "{id}");
        }
        for id in ["acme", "acmf", "acme_1", "b", ""] {
            assert!(!inside(id), "{id}");
        }
    }

    #[test]
    fn names_follow_the_schema() {
        let keys = Keys::new("glimpse:").unwrap();
        let d = day("2026-11-25");
        assert_eq!(keys.visitors("ad42", d), "glimpse:uv:{ad42:2026-11-25}");
        assert_eq!(keys.counters("ad42", d), "glimpse:n:{ad42:2026-11-25}");
        assert_eq!(keys.ledger("ad42", d), "glimpse:x:{ad42:2026-11-25}");
        assert_eq!(keys.scratch("ad42", d), "glimpse:tmp:{ad42:2026-11-25}");
        assert_eq!(
            keys.hour_visitors("ad42", d, 7),
            "glimpse:uv:{ad42:2026-11-25}:07"
        );
        assert_eq!(
            slot(&keys.hour_visitors("ad42", d, 23)),
            slot(&keys.visitors("ad42", d))
        );
        assert_eq!(keys.ads_of_day(d), "glimpse:adz:{2026-11-25}");
        assert_eq!(keys.old_ads_of_day(d), "glimpse:ads:{2026-11-25}");
        assert_eq!(slot(&keys.ads_of_day(d)), slot(&keys.old_ads_of_day(d)));
        assert_eq!(keys.claims(7, 20_431), "glimpse:claims:{c7}:20431");
        assert_eq!(slot(&keys.claims(7, 1)), slot(&keys.claims(7, 2)));
        assert_eq!(keys.edge_boot("e-1"), "glimpse:boot:e-1");
        assert_eq!(edge_field("e1"), "s:e1");
        assert_eq!(
            keys.counters("post/p1", d),
            "glimpse:n:{post/p1}:2026-11-25"
        );
        assert_eq!(keys.ledger("post/p1", d), "glimpse:x:{post/p1}:2026-11-25");
        assert_eq!(keys.post_views("p1"), "glimpse:pv:{post/p1}");
        assert_eq!(
            keys.hour_visitors("post/p1", d, 0),
            "glimpse:uv:{post/p1}:2026-11-25:00"
        );
        assert_eq!(
            slot(&keys.hour_visitors("post/p1", d, 0)),
            slot(&keys.post_views("p1"))
        );
        let other = Keys::new("tenant-b:").unwrap();
        assert_eq!(other.visitors("ad42", d), "tenant-b:uv:{ad42:2026-11-25}");
    }

    #[test]
    fn prefixes_with_braces_are_refused() {
        assert!(Keys::new("a{b").is_err());
        assert!(Keys::new("a}").is_err());
        assert!(Keys::new("").is_ok());
    }

    #[test]
    fn a_day_keys_share_one_slot() {
        // Known values of Redis's CLUSTER KEYSLOT.
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("{user1000}.following"), slot("{user1000}.followers"));
        assert_eq!(slot("foo{}{bar}"), slot("foo{}{bar}"));
        assert_eq!(slot("{}x"), crc16_xmodem(b"{}x") % 16384);
        let keys = Keys::new("glimpse:").unwrap();
        for ad in ["ad42", "a:b:c", "x.y-z_1"] {
            let d = day("2026-11-25");
            let k = keys.day_keys(ad, d);
            let s = slot(&k.visitors);
            assert_eq!(s, slot(&k.counters));
            assert_eq!(s, slot(&k.ledger));
            assert_eq!(s, slot(&k.scratch));
        }
        // A post's days and its total share the post's slot; an ad of the
        // same id lives elsewhere.
        let total = slot(&keys.post_views("p1"));
        for d in [day("2026-11-25"), day("2026-11-26")] {
            let k = keys.day_keys("post/p1", d);
            for key in [&k.visitors, &k.counters, &k.ledger, &k.scratch] {
                assert_eq!(slot(key), total, "{key}");
            }
        }
        assert_ne!(
            keys.counters("p1", day("2026-11-25")),
            keys.counters("post/p1", day("2026-11-25"))
        );
    }
}
