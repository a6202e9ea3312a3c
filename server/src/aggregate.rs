//! In-memory aggregation of accepted impressions, between syncs.
//!
//! Ingest only ever touches this module: each accepted batch adds its events
//! to per-(ad, day) deltas (three counters and a visitor sketch) in a sharded
//! map, as impressions or, for a batch from a known bot, as `invalid`,
//! and leaves a [`BatchRecord`] of what it contributed, so a store can drop
//! the counters of a batch that turns out to be a duplicate at sync time.
//!
//! A sync takes the whole current generation at once ([`Aggregator::begin_sync`])
//! and hands it to the store as one [`Delta`]. Until [`Aggregator::finish_sync`]
//! says it landed, that delta stays visible to stats and is retried unchanged,
//! so a retry never mixes in newer events (the store may key exactly-once
//! bookkeeping on it: every delta carries a sequence number, increasing for
//! the life of the aggregator). No I/O here.
//!
//! The aggregator also keeps an estimate of the heap memory its pending data
//! holds ([`Aggregator::pending_bytes`]), so ingest can refuse work instead of
//! growing without bound while the store is unreachable.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use glimpse_hll::Sketch;
use glimpse_wire::ingest::Event;
use glimpse_wire::{Day, DayRange, Kind};
use parking_lot::{Mutex, RwLock};

use crate::traffic::Traffic;

const SHARDS: usize = 32;

/// Rough heap cost of one map entry (hash-map slot, `String` header,
/// allocator rounding), beyond the bytes of its key.
const ENTRY_OVERHEAD_BYTES: usize = 64;

/// Counters and visitors of one (ad, day).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DayDelta {
    /// Viewable events.
    pub impressions: u64,
    /// Measurable events.
    pub measurable: u64,
    /// Events of either kind from invalid traffic (known bots).
    pub invalid: u64,
    /// Visitors of viewable events.
    pub visitors: Sketch,
}

/// The counter one event adds 1 to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Counter {
    Impressions,
    Measurable,
    Invalid,
}

impl Counter {
    fn of(kind: Kind, traffic: Traffic) -> Counter {
        match (traffic, kind) {
            (Traffic::Invalid, _) => Counter::Invalid,
            (Traffic::Valid, Kind::Viewable) => Counter::Impressions,
            (Traffic::Valid, Kind::Measurable) => Counter::Measurable,
        }
    }
}

impl DayDelta {
    /// Counts one event; returns how many heap bytes the sketch grew by.
    /// Only impressions add their visitor: invalid traffic is no audience.
    fn add(&mut self, counter: Counter, user_id: &str) -> usize {
        match counter {
            Counter::Invalid => {
                self.invalid += 1;
                0
            }
            Counter::Impressions => {
                self.impressions += 1;
                let before = self.visitors.heap_bytes();
                self.visitors.insert(user_id.as_bytes());
                self.visitors.heap_bytes().saturating_sub(before)
            }
            Counter::Measurable => {
                self.measurable += 1;
                0
            }
        }
    }

    /// Folds `other` into `self`.
    pub fn merge(&mut self, other: &DayDelta) {
        self.impressions += other.impressions;
        self.measurable += other.measurable;
        self.invalid += other.invalid;
        self.visitors.merge(&other.visitors);
    }
}

/// Deltas of one ad, by day.
pub type AdDays = BTreeMap<Day, DayDelta>;

/// What one batch added to the counters, kept so that a store can leave out a
/// batch that another edge already counted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchRecord {
    pub batch_id: String,
    /// Server time when the batch was accepted, epoch ms.
    pub received_ms: i64,
    /// What the batch added to each (ad, day) it touched.
    pub counts: Vec<BatchCount>,
}

/// One (ad, day) share of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchCount {
    pub ad_id: String,
    pub day: Day,
    pub impressions: u64,
    pub measurable: u64,
    pub invalid: u64,
}

impl BatchRecord {
    fn heap_bytes(&self) -> usize {
        ENTRY_OVERHEAD_BYTES
            + self.batch_id.len()
            + self
                .counts
                .iter()
                .map(|c| std::mem::size_of::<BatchCount>() + c.ad_id.len())
                .sum::<usize>()
    }
}

/// Everything accepted since the previous sync: what a store applies.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Delta {
    /// This delta's place in the aggregator's order: 1 for the first delta,
    /// then increasing by one. A retried delta keeps its number.
    pub seq: u64,
    pub ads: HashMap<String, AdDays>,
    pub batches: Vec<BatchRecord>,
}

impl Delta {
    pub fn is_empty(&self) -> bool {
        self.ads.is_empty() && self.batches.is_empty()
    }

    /// `(ad_id, day, delta)` for every key, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = (&str, Day, &DayDelta)> {
        self.ads
            .iter()
            .flat_map(|(ad, days)| days.iter().map(move |(day, d)| (ad.as_str(), *day, d)))
    }
}

#[derive(Debug, Default)]
struct Shard {
    ads: HashMap<String, AdDays>,
}

#[derive(Debug)]
struct Generation {
    shards: Box<[Mutex<Shard>]>,
    batches: Mutex<Vec<BatchRecord>>,
    /// Estimated heap bytes held by this generation.
    bytes: AtomicUsize,
}

impl Generation {
    fn new() -> Self {
        Generation {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            batches: Mutex::new(Vec::new()),
            bytes: AtomicUsize::new(0),
        }
    }

    fn into_delta(self, seq: u64) -> Delta {
        let mut ads = HashMap::new();
        for shard in self.shards.into_vec() {
            // Shards partition ads, so the union has no collisions.
            ads.extend(shard.into_inner().ads);
        }
        Delta {
            seq,
            ads,
            batches: self.batches.into_inner(),
        }
    }
}

/// The delta being synced and the bytes it holds.
#[derive(Debug)]
struct InFlight {
    delta: Arc<Delta>,
    bytes: usize,
}

/// The sharded map of pending deltas. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Aggregator {
    /// Held shared while a batch is recorded and exclusively while a sync
    /// swaps it out, so a sync never sees half a batch.
    current: RwLock<Generation>,
    in_flight: RwLock<Option<InFlight>>,
    /// The sequence number of the last delta handed out.
    last_seq: AtomicU64,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for Aggregator {
    fn default() -> Self {
        Self::new()
    }
}

impl Aggregator {
    pub fn new() -> Self {
        Aggregator {
            current: RwLock::new(Generation::new()),
            in_flight: RwLock::new(None),
            last_seq: AtomicU64::new(0),
            hasher: Default::default(),
        }
    }

    fn shard_of(&self, ad_id: &str) -> usize {
        (self.hasher.hash_one(ad_id) as usize) % SHARDS
    }

    /// Adds the valid, de-duplicated events of one batch, counted as
    /// `traffic` says (one verdict for the whole batch).
    pub fn record(&self, batch_id: &str, received_ms: i64, traffic: Traffic, events: &[Event<'_>]) {
        let mut counts: Vec<BatchCount> = Vec::new();
        for event in events {
            let at = match counts
                .iter()
                .position(|c| c.day == event.day && c.ad_id == event.ad_id)
            {
                Some(at) => at,
                None => {
                    counts.push(BatchCount {
                        ad_id: event.ad_id.to_string(),
                        day: event.day,
                        impressions: 0,
                        measurable: 0,
                        invalid: 0,
                    });
                    counts.len() - 1
                }
            };
            let count = &mut counts[at];
            match Counter::of(event.kind, traffic) {
                Counter::Impressions => count.impressions += 1,
                Counter::Measurable => count.measurable += 1,
                Counter::Invalid => count.invalid += 1,
            }
        }
        let record = BatchRecord {
            batch_id: batch_id.to_owned(),
            received_ms,
            counts,
        };
        let mut bytes = record.heap_bytes();
        let generation = self.current.read();
        for event in events {
            let mut shard = generation.shards[self.shard_of(&event.ad_id)].lock();
            let days = match shard.ads.get_mut(event.ad_id.as_ref()) {
                Some(days) => days,
                None => {
                    bytes += ENTRY_OVERHEAD_BYTES + event.ad_id.len();
                    shard.ads.entry(event.ad_id.to_string()).or_default()
                }
            };
            let day = days.entry(event.day).or_insert_with(|| {
                bytes += ENTRY_OVERHEAD_BYTES;
                DayDelta::default()
            });
            bytes += day.add(Counter::of(event.kind, traffic), &event.user_id);
        }
        generation.batches.lock().push(record);
        generation.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Estimated heap bytes of everything pending: the in-flight delta and
    /// the current generation.
    pub fn pending_bytes(&self) -> usize {
        let in_flight = self.in_flight.read().as_ref().map_or(0, |f| f.bytes);
        in_flight + self.current.read().bytes.load(Ordering::Relaxed)
    }

    /// The delta to sync now: the one still in flight from a failed attempt,
    /// else everything recorded since the last sync. `None` when idle.
    pub fn begin_sync(&self) -> Option<Arc<Delta>> {
        let mut in_flight = self.in_flight.write();
        if let Some(f) = in_flight.as_ref() {
            return Some(Arc::clone(&f.delta));
        }
        let mut current = self.current.write();
        let empty = current.batches.lock().is_empty()
            && current.shards.iter().all(|s| s.lock().ads.is_empty());
        if empty {
            // Nothing to sync: keep the generation and the sequence number.
            return None;
        }
        let taken = std::mem::replace(&mut *current, Generation::new());
        drop(current);
        let bytes = taken.bytes.load(Ordering::Relaxed);
        let seq = self.last_seq.fetch_add(1, Ordering::Relaxed) + 1;
        let delta = Arc::new(taken.into_delta(seq));
        *in_flight = Some(InFlight {
            delta: Arc::clone(&delta),
            bytes,
        });
        Some(delta)
    }

    /// The in-flight delta has landed in the store.
    pub fn finish_sync(&self) {
        self.in_flight.write().take();
    }

    /// Whether anything is waiting to be synced.
    pub fn is_idle(&self) -> bool {
        self.in_flight.read().is_none()
            && self
                .current
                .read()
                .shards
                .iter()
                .all(|s| s.lock().ads.is_empty())
            && self.current.read().batches.lock().is_empty()
    }

    /// Pending deltas of `ad_id` on the days of `range`, the in-flight delta
    /// and the current generation folded together.
    pub fn pending(&self, ad_id: &str, range: DayRange) -> AdDays {
        let mut out = AdDays::new();
        let mut fold = |days: &AdDays| {
            for (day, d) in days.range(range.from()..=range.to()) {
                out.entry(*day).or_default().merge(d);
            }
        };
        if let Some(f) = self.in_flight.read().as_ref() {
            if let Some(days) = f.delta.ads.get(ad_id) {
                fold(days);
            }
        }
        let generation = self.current.read();
        if let Some(days) = generation.shards[self.shard_of(ad_id)]
            .lock()
            .ads
            .get(ad_id)
        {
            fold(days);
        }
        out
    }

    /// Ids of the ads with pending data in `range`.
    pub fn pending_ads(&self, range: DayRange) -> Vec<String> {
        let in_range = |days: &AdDays| days.range(range.from()..=range.to()).next().is_some();
        let mut ads = Vec::new();
        if let Some(f) = self.in_flight.read().as_ref() {
            ads.extend(
                f.delta
                    .ads
                    .iter()
                    .filter(|(_, d)| in_range(d))
                    .map(|(a, _)| a.clone()),
            );
        }
        let generation = self.current.read();
        for shard in generation.shards.iter() {
            let shard = shard.lock();
            ads.extend(
                shard
                    .ads
                    .iter()
                    .filter(|(_, d)| in_range(d))
                    .map(|(a, _)| a.clone()),
            );
        }
        ads.sort_unstable();
        ads.dedup();
        ads
    }
}

impl Aggregator {
    /// Number of (ad, day) keys pending, the in-flight delta included. Walks
    /// every shard: meant for a metrics scrape, not the hot path.
    pub fn pending_keys(&self) -> usize {
        let count = |ads: &HashMap<String, AdDays>| ads.values().map(BTreeMap::len).sum::<usize>();
        let in_flight = self
            .in_flight
            .read()
            .as_ref()
            .map_or(0, |f| count(&f.delta.ads));
        let generation = self.current.read();
        in_flight
            + generation
                .shards
                .iter()
                .map(|s| count(&s.lock().ads))
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    fn day(s: &str) -> Day {
        s.parse().unwrap()
    }

    fn ev<'a>(ad: &'a str, user: &'a str, kind: Kind, d: &str) -> Event<'a> {
        Event {
            id: Cow::Borrowed("e"),
            ad_id: Cow::Borrowed(ad),
            user_id: Cow::Borrowed(user),
            kind,
            ts: day(d).start_ms(),
            day: day(d),
            token: None,
        }
    }

    #[test]
    fn records_counts_and_visitors_per_ad_day() {
        let agg = Aggregator::new();
        let d1 = "2026-11-24";
        let d2 = "2026-11-25";
        agg.record(
            "b1",
            0,
            Traffic::Valid,
            &[
                ev("ad-1", "u1", Kind::Viewable, d1),
                ev("ad-1", "u1", Kind::Measurable, d1),
                ev("ad-1", "u2", Kind::Viewable, d2),
                ev("ad-2", "u3", Kind::Measurable, d2),
            ],
        );
        let range = DayRange::new(day(d1), day(d2)).unwrap();
        let p = agg.pending("ad-1", range);
        assert_eq!(p[&day(d1)].impressions, 1);
        assert_eq!(p[&day(d1)].measurable, 1);
        assert_eq!(p[&day(d2)].impressions, 1);
        assert!(!p[&day(d2)].visitors.is_empty());
        assert_eq!(agg.pending("ad-2", range)[&day(d2)].measurable, 1);
        assert_eq!(agg.pending("ad-2", range)[&day(d2)].impressions, 0);
        assert!(agg.pending("ad-2", DayRange::single(day(d1))).is_empty());
        assert_eq!(agg.pending_ads(range), vec!["ad-1", "ad-2"]);
        assert_eq!(agg.pending_ads(DayRange::single(day(d1))), vec!["ad-1"]);
    }

    #[test]
    fn batch_records_hold_each_batch_share() {
        let agg = Aggregator::new();
        let d = "2026-11-25";
        agg.record(
            "b1",
            7,
            Traffic::Valid,
            &[
                ev("ad-1", "u1", Kind::Viewable, d),
                ev("ad-1", "u2", Kind::Viewable, d),
                ev("ad-1", "u2", Kind::Measurable, d),
                ev("ad-2", "u2", Kind::Measurable, d),
            ],
        );
        let delta = agg.begin_sync().unwrap();
        assert_eq!(delta.batches.len(), 1);
        let rec = &delta.batches[0];
        assert_eq!((rec.batch_id.as_str(), rec.received_ms), ("b1", 7));
        assert_eq!(
            rec.counts,
            vec![
                BatchCount {
                    ad_id: "ad-1".into(),
                    day: day(d),
                    impressions: 2,
                    measurable: 1,
                    invalid: 0,
                },
                BatchCount {
                    ad_id: "ad-2".into(),
                    day: day(d),
                    impressions: 0,
                    measurable: 1,
                    invalid: 0,
                },
            ]
        );
    }

    #[test]
    fn invalid_traffic_counts_apart_without_visitors() {
        let agg = Aggregator::new();
        let d = "2026-11-25";
        agg.record(
            "bot",
            0,
            Traffic::Invalid,
            &[
                ev("ad-1", "u1", Kind::Viewable, d),
                ev("ad-1", "u1", Kind::Measurable, d),
                ev("ad-9", "u2", Kind::Viewable, d),
            ],
        );
        agg.record(
            "human",
            0,
            Traffic::Valid,
            &[ev("ad-1", "u3", Kind::Viewable, d)],
        );
        let range = DayRange::single(day(d));
        let p = &agg.pending("ad-1", range)[&day(d)];
        assert_eq!((p.impressions, p.measurable, p.invalid), (1, 0, 2));
        assert_eq!(p.visitors.estimate(), 1, "only the person is a visitor");
        // An ad seen only by bots is still listed, so its invalid count shows.
        assert_eq!(agg.pending_ads(range), ["ad-1", "ad-9"]);
        let delta = agg.begin_sync().unwrap();
        assert_eq!(
            delta.batches[0].counts,
            [
                BatchCount {
                    ad_id: "ad-1".into(),
                    day: day(d),
                    impressions: 0,
                    measurable: 0,
                    invalid: 2,
                },
                BatchCount {
                    ad_id: "ad-9".into(),
                    day: day(d),
                    impressions: 0,
                    measurable: 0,
                    invalid: 1,
                },
            ]
        );
    }

    #[test]
    fn in_flight_delta_stays_visible_and_is_retried_unchanged() {
        let agg = Aggregator::new();
        let d = "2026-11-25";
        let range = DayRange::single(day(d));
        assert!(agg.begin_sync().is_none());
        assert!(agg.is_idle());
        agg.record(
            "b1",
            0,
            Traffic::Valid,
            &[ev("ad-1", "u1", Kind::Viewable, d)],
        );
        let first = agg.begin_sync().unwrap();
        // Recorded while the first sync is in flight: pending, not in the retry.
        agg.record(
            "b2",
            0,
            Traffic::Valid,
            &[ev("ad-1", "u2", Kind::Viewable, d)],
        );
        assert_eq!(agg.pending("ad-1", range)[&day(d)].impressions, 2);
        let retry = agg.begin_sync().unwrap();
        assert!(Arc::ptr_eq(&first, &retry));
        agg.finish_sync();
        assert_eq!(agg.pending("ad-1", range)[&day(d)].impressions, 1);
        let second = agg.begin_sync().unwrap();
        assert_eq!(second.batches[0].batch_id, "b2");
        agg.finish_sync();
        assert!(agg.pending("ad-1", range).is_empty());
        assert!(agg.is_idle());
    }

    #[test]
    fn deltas_are_numbered_and_a_retry_keeps_its_number() {
        let agg = Aggregator::new();
        let d = "2026-11-25";
        assert!(agg.begin_sync().is_none());
        agg.record(
            "b1",
            0,
            Traffic::Valid,
            &[ev("ad-1", "u1", Kind::Viewable, d)],
        );
        let first = agg.begin_sync().unwrap();
        assert_eq!(first.seq, 1);
        assert_eq!(agg.begin_sync().unwrap().seq, 1);
        agg.finish_sync();
        // An idle sync uses no number.
        assert!(agg.begin_sync().is_none());
        agg.record(
            "b2",
            0,
            Traffic::Valid,
            &[ev("ad-1", "u2", Kind::Viewable, d)],
        );
        assert_eq!(agg.begin_sync().unwrap().seq, 2);
    }

    #[test]
    fn pending_bytes_follow_the_data_until_it_lands() {
        let agg = Aggregator::new();
        let d = "2026-11-25";
        assert_eq!(agg.pending_bytes(), 0);
        let users: Vec<String> = (0..5000).map(|i| format!("u{i}")).collect();
        let events: Vec<_> = users
            .iter()
            .map(|u| ev("ad-1", u, Kind::Viewable, d))
            .collect();
        agg.record("b1", 0, Traffic::Valid, &events);
        let after_one = agg.pending_bytes();
        // 5,000 visitors make the sketch dense: at least its registers.
        assert!(after_one >= glimpse_hll::REGISTERS, "{after_one}");
        let _delta = agg.begin_sync().unwrap();
        assert_eq!(agg.pending_bytes(), after_one, "in flight still counts");
        agg.record(
            "b2",
            0,
            Traffic::Valid,
            &[ev("ad-2", "u1", Kind::Measurable, d)],
        );
        let both = agg.pending_bytes();
        assert!(both > after_one);
        agg.finish_sync();
        assert_eq!(agg.pending_bytes(), both - after_one);
        agg.begin_sync().unwrap();
        agg.finish_sync();
        assert_eq!(agg.pending_bytes(), 0);
    }

    #[test]
    fn concurrent_records_land_in_exactly_one_delta_whole() {
        let agg = Arc::new(Aggregator::new());
        let recorders: Vec<_> = (0..4)
            .map(|t| {
                let agg = Arc::clone(&agg);
                std::thread::spawn(move || {
                    for i in 0..500 {
                        let ad = format!("ad-{}", i % 7);
                        let user = format!("u{t}-{i}");
                        let events = [
                            ev(&ad, &user, Kind::Viewable, "2026-11-25"),
                            ev(&ad, &user, Kind::Measurable, "2026-11-25"),
                        ];
                        agg.record(&format!("b{t}-{i}"), 0, Traffic::Valid, &events);
                    }
                })
            })
            .collect();
        // One sync task, as in the server, syncing while the recorders run.
        let mut synced = Vec::new();
        while !recorders.iter().all(|r| r.is_finished()) {
            if let Some(delta) = agg.begin_sync() {
                synced.push(delta);
                agg.finish_sync();
            }
        }
        recorders.into_iter().for_each(|t| t.join().unwrap());
        synced.extend(agg.begin_sync());
        let mut impressions = 0;
        let mut batches = 0;
        for delta in &synced {
            // A delta holds whole batches: its counters equal its records.
            let from_keys: u64 = delta.keys().map(|(_, _, d)| d.impressions).sum();
            let from_records: u64 = delta
                .batches
                .iter()
                .flat_map(|b| &b.counts)
                .map(|c| c.impressions)
                .sum();
            assert_eq!(from_keys, from_records);
            impressions += from_keys;
            batches += delta.batches.len();
        }
        assert_eq!((impressions, batches), (2000, 2000));
    }
}
