//! Impression batches as the SDK forms them, and the tally of what was sent.
//!
//! A batch holds a number of events drawn from the mix's [`BatchSize`]
//! (browsers flush a few events at a time; a server-side client may send 50):
//! for each page view of an ad by a visitor (both drawn uniformly from the
//! configured mix) a `measurable` event, and with probability
//! `viewable_share` the matching `viewable` event. Event and batch ids are
//! unique within a run; runs get a random run id so repeated runs against
//! one store never collide as duplicates.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use glimpse_hll::Sketch;
use glimpse_wire::Kind;

/// SplitMix64: fast, deterministic, good enough to draw ads and visitors.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        splitmix(self.0)
    }

    /// Uniform in `0..n` (n > 0), by multiply-shift.
    pub fn below(&mut self, n: u32) -> u32 {
        (((self.next_u64() >> 32) * u64::from(n)) >> 32) as u32
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// How many events a batch holds: drawn uniformly from `min..=max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchSize {
    pub min: usize,
    pub max: usize,
}

impl BatchSize {
    /// Every batch holds `n` events.
    pub const fn fixed(n: usize) -> Self {
        BatchSize { min: n, max: n }
    }

    /// What a feed page sends: the few measurable and viewable events of
    /// the ads seen since its last flush (every 5 s and on `pagehide`).
    pub const BROWSER: BatchSize = BatchSize { min: 1, max: 6 };

    /// The events of the next batch.
    pub fn draw(self, rng: &mut Rng) -> usize {
        self.min + rng.below((self.max - self.min + 1) as u32) as usize
    }

    pub fn mean(self) -> f64 {
        (self.min + self.max) as f64 / 2.0
    }
}

impl std::fmt::Display for BatchSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}..{}", self.min, self.max)
        }
    }
}

impl std::str::FromStr for BatchSize {
    type Err = String;

    /// `50` or `1..6` (both ends included), within the wire's limit.
    fn from_str(s: &str) -> Result<Self, String> {
        let parse = |n: &str| {
            n.trim()
                .parse::<usize>()
                .map_err(|e| format!("`{n}` is not a number of events: {e}"))
        };
        let size = match s.split_once("..") {
            Some((min, max)) => BatchSize {
                min: parse(min)?,
                max: parse(max)?,
            },
            None => BatchSize::fixed(parse(s)?),
        };
        let limit = glimpse_wire::MAX_EVENTS_PER_BATCH;
        if size.min == 0 || size.min > size.max || size.max > limit {
            return Err(format!(
                "a batch size is N or MIN..MAX with 1 <= MIN <= MAX <= {limit}, not `{s}`"
            ));
        }
        Ok(size)
    }
}

/// The mix of ads and visitors a run draws from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mix {
    /// Distinct ads (`ad-0000` ...).
    pub ads: u32,
    /// Distinct visitors (32 hex characters each, like a random browser id).
    pub visitors: u32,
    /// Events per batch.
    pub batch: BatchSize,
    /// Share of measurable impressions that also became viewable.
    pub viewable_share: f64,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            ads: 100,
            visitors: 100_000,
            batch: BatchSize::BROWSER,
            viewable_share: 0.8,
        }
    }
}

/// The id of ad number `n`.
pub fn ad_id(n: u32) -> String {
    format!("ad-{n:04}")
}

/// Appends the id of visitor number `n`: 32 lowercase hex characters.
pub fn push_visitor_id(n: u32, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let a = splitmix(u64::from(n) ^ 0x5eed_0f71_5170_u64);
    let b = splitmix(a ^ u64::from(n));
    for word in [a, b] {
        for i in (0..16).rev() {
            out.push(HEX[((word >> (i * 4)) & 0xf) as usize]);
        }
    }
}

/// The id of visitor number `n`.
pub fn visitor_id(n: u32) -> String {
    let mut v = Vec::with_capacity(32);
    push_visitor_id(n, &mut v);
    String::from_utf8(v).expect("hex is ASCII")
}

/// One event of a batch, as the tally needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sent {
    pub ad: u32,
    pub visitor: u32,
    pub kind: Kind,
}

/// Writes batch bodies into a reused buffer.
#[derive(Debug)]
pub struct BatchWriter {
    mix: Mix,
    rng: Rng,
    /// `{run}-{connection}`: prefix of batch and event ids.
    prefix: String,
    seq: u64,
    pub body: Vec<u8>,
    pub events: Vec<Sent>,
}

impl BatchWriter {
    pub fn new(mix: Mix, run_id: &str, connection: usize, seed: u64) -> Self {
        BatchWriter {
            mix,
            rng: Rng::new(seed ^ splitmix(connection as u64 + 1)),
            prefix: format!("{run_id}-{connection}"),
            seq: 0,
            body: Vec::with_capacity(mix.batch.max * 128 + 64),
            events: Vec::with_capacity(mix.batch.max),
        }
    }

    /// Forms the next batch, stamped `ts_ms`, into `self.body` and
    /// `self.events`.
    pub fn next_batch(&mut self, ts_ms: i64) {
        self.seq += 1;
        self.body.clear();
        self.events.clear();
        let body = &mut self.body;
        let mut s = String::with_capacity(64);
        let _ = write!(
            s,
            "{{\"batch_id\":\"b{}-{}\",\"events\":[",
            self.prefix, self.seq
        );
        body.extend_from_slice(s.as_bytes());
        let events = self.mix.batch.draw(&mut self.rng);
        while self.events.len() < events {
            let ad = self.rng.below(self.mix.ads);
            let visitor = self.rng.below(self.mix.visitors);
            let viewable = self.rng.unit() < self.mix.viewable_share;
            self.events.push(Sent {
                ad,
                visitor,
                kind: Kind::Measurable,
            });
            if viewable && self.events.len() < events {
                self.events.push(Sent {
                    ad,
                    visitor,
                    kind: Kind::Viewable,
                });
            }
        }
        for (i, e) in self.events.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            s.clear();
            let _ = write!(
                s,
                "{{\"id\":\"e{}-{}-{i}\",\"ad_id\":\"ad-{:04}\",\"user_id\":\"",
                self.prefix, self.seq, e.ad
            );
            body.extend_from_slice(s.as_bytes());
            push_visitor_id(e.visitor, body);
            s.clear();
            let kind = e.kind.as_str();
            let _ = write!(s, "\",\"kind\":\"{kind}\",\"ts\":{ts_ms}}}");
            body.extend_from_slice(s.as_bytes());
        }
        body.extend_from_slice(b"]}");
    }
}

/// What was accepted, per ad: exact counters and which visitors were seen
/// in viewable events. Shared by all connections (atomics only).
#[derive(Debug)]
pub struct Tally {
    mix: Mix,
    impressions: Vec<AtomicU64>,
    measurable: Vec<AtomicU64>,
    /// `ads x visitors` bits, ad-major.
    seen: Vec<AtomicU64>,
}

impl Tally {
    pub fn new(mix: Mix) -> Self {
        let ads = mix.ads as usize;
        let words_per_ad = (mix.visitors as usize).div_ceil(64);
        Tally {
            mix,
            impressions: (0..ads).map(|_| AtomicU64::new(0)).collect(),
            measurable: (0..ads).map(|_| AtomicU64::new(0)).collect(),
            seen: (0..ads * words_per_ad).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn words_per_ad(&self) -> usize {
        (self.mix.visitors as usize).div_ceil(64)
    }

    /// Counts the events of one accepted batch.
    pub fn add(&self, events: &[Sent]) {
        let wpa = self.words_per_ad();
        for e in events {
            let ad = e.ad as usize;
            match e.kind {
                Kind::Measurable => {
                    self.measurable[ad].fetch_add(1, Ordering::Relaxed);
                }
                Kind::Viewable => {
                    self.impressions[ad].fetch_add(1, Ordering::Relaxed);
                    let bit = e.visitor as usize;
                    self.seen[ad * wpa + bit / 64].fetch_or(1 << (bit % 64), Ordering::Relaxed);
                }
                // The generator sends display impressions only.
                _ => {}
            }
        }
    }

    pub fn mix(&self) -> Mix {
        self.mix
    }

    /// `(impressions, measurable)` accepted for ad number `ad`.
    pub fn counts(&self, ad: u32) -> (u64, u64) {
        (
            self.impressions[ad as usize].load(Ordering::Relaxed),
            self.measurable[ad as usize].load(Ordering::Relaxed),
        )
    }

    /// Events accepted in all.
    pub fn total_events(&self) -> u64 {
        (0..self.mix.ads)
            .map(|a| {
                let (i, m) = self.counts(a);
                i + m
            })
            .sum()
    }

    /// A sketch of the visitors of ad `ad`'s viewable events: what the
    /// store's unique count must equal.
    pub fn reference_sketch(&self, ad: u32) -> Sketch {
        let wpa = self.words_per_ad();
        let mut sketch = Sketch::new();
        let mut id = Vec::with_capacity(32);
        for w in 0..wpa {
            let mut word = self.seen[ad as usize * wpa + w].load(Ordering::Relaxed);
            while word != 0 {
                let bit = word.trailing_zeros() as usize;
                word &= word - 1;
                id.clear();
                push_visitor_id((w * 64 + bit) as u32, &mut id);
                sketch.insert(&id);
            }
        }
        sketch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_valid_wire_batches_with_unique_ids() {
        let mix = Mix {
            ads: 3,
            visitors: 10,
            batch: BatchSize::fixed(50),
            viewable_share: 0.8,
        };
        let mut w = BatchWriter::new(mix, "run", 0, 7);
        let now = 1_764_000_000_000;
        w.next_batch(now);
        let first = String::from_utf8(w.body.clone()).unwrap();
        let batch = glimpse_wire::ingest::decode_batch(first.as_bytes()).unwrap();
        assert_eq!(batch.events.len(), 50);
        let mut ids = std::collections::HashSet::new();
        for (raw, sent) in batch.events.iter().zip(&w.events) {
            let e = glimpse_wire::ingest::validate_event(raw, now).unwrap();
            assert!(ids.insert(e.id.to_string()));
            assert_eq!(e.ad_id(), Some(ad_id(sent.ad).as_str()));
            assert_eq!(e.user_id, visitor_id(sent.visitor));
            assert_eq!(e.kind, sent.kind);
        }
        w.next_batch(now);
        let second = glimpse_wire::ingest::decode_batch(&w.body).unwrap();
        assert_ne!(second.batch_id, batch.batch_id);
    }

    #[test]
    fn browser_batches_hold_one_to_six_events_each_size_about_as_often() {
        let mix = Mix {
            batch: BatchSize::BROWSER,
            ..Mix::default()
        };
        let mut w = BatchWriter::new(mix, "run", 0, 11);
        let mut seen = [0u32; 7];
        for _ in 0..6_000 {
            w.next_batch(1_764_000_000_000);
            let batch = glimpse_wire::ingest::decode_batch(&w.body).unwrap();
            assert_eq!(batch.events.len(), w.events.len());
            seen[w.events.len()] += 1;
        }
        assert_eq!(seen[0], 0);
        for (size, &n) in seen.iter().enumerate().skip(1) {
            assert!((800..1_200).contains(&n), "{n} batches of {size}: {seen:?}");
        }
    }

    #[test]
    fn batch_sizes_parse_as_a_number_or_a_range() {
        assert_eq!("50".parse(), Ok(BatchSize::fixed(50)));
        assert_eq!("1..6".parse(), Ok(BatchSize::BROWSER));
        assert_eq!(BatchSize::BROWSER.to_string(), "1..6");
        assert_eq!(BatchSize::BROWSER.mean(), 3.5);
        for bad in ["0", "6..1", "1..", "x", "1..1000"] {
            assert!(bad.parse::<BatchSize>().is_err(), "{bad}");
        }
    }

    #[test]
    fn tally_counts_and_sketches_what_was_sent() {
        let mix = Mix {
            ads: 2,
            visitors: 100,
            batch: BatchSize::fixed(4),
            viewable_share: 1.0,
        };
        let tally = Tally::new(mix);
        let v = |ad, visitor| Sent {
            ad,
            visitor,
            kind: Kind::Viewable,
        };
        tally.add(&[v(1, 5), v(1, 5), v(1, 70)]);
        tally.add(&[Sent {
            ad: 0,
            visitor: 1,
            kind: Kind::Measurable,
        }]);
        assert_eq!(tally.counts(1), (3, 0));
        assert_eq!(tally.counts(0), (0, 1));
        assert_eq!(tally.total_events(), 4);
        let mut reference = Sketch::new();
        reference.insert(visitor_id(5).as_bytes());
        reference.insert(visitor_id(70).as_bytes());
        assert_eq!(tally.reference_sketch(1), reference);
        assert!(tally.reference_sketch(0).is_empty());
    }
}
