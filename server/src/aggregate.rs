//! In-memory aggregation of accepted impressions, between syncs.
//!
//! Ingest only ever touches this module: each accepted batch adds its events
//! to per-(ad, day) [`DayCounts`] (counters and a visitor sketch) in a
//! sharded map, as impressions or, for a batch from a known bot, as
//! `invalid`, and leaves a [`BatchRecord`] of what it contributed, so a
//! store can drop the counters of a batch that turns out to be a duplicate
//! at sync time. The types are in [`crate::counts`].
//!
//! A sync takes the whole current generation at once ([`Aggregator::begin_sync`])
//! and hands it to the store as one [`Delta`]. Until [`Aggregator::finish_sync`]
//! says it landed, that delta stays visible to stats and is retried unchanged,
//! so a retry never mixes in newer events (the store may key exactly-once
//! bookkeeping on it: every delta carries a sequence number, increasing by
//! one per generation from the first one the aggregator is given). No I/O
//! here.
//!
//! Crash safety: each generation is numbered before it starts (the number
//! its delta will carry), and [`Aggregator::record_then`] runs a caller's
//! closure with that number under the same guard as the counting, so the
//! write-ahead log (`crate::wal`) files each batch under the generation
//! that counts it. After a crash the log rebuilds each unsynced generation
//! with a [`Rebuild`], under its old number, and [`Aggregator::with_recovered`]
//! hands those deltas out first, in order, before any new one.
//!
//! The aggregator also keeps an estimate of the heap memory its pending data
//! holds ([`Aggregator::pending_bytes`]), so ingest can refuse work instead of
//! growing without bound while the store is unreachable: every allocation
//! it makes (map slots, ids, B-tree leaves, sketches, batch records) and the
//! claim each pending batch holds, sized by [`crate::heap`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::BuildHasher;
use std::mem::size_of;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use glimpse_wire::ingest::Event;
use glimpse_wire::{Day, DayRange};
use parking_lot::{Mutex, RwLock};

use crate::counted::BatchClaims;
use crate::counts::{AdDays, BatchCount, BatchRecord, DayCounts, Delta, EventKeys};
use crate::heap;
use crate::store::Grain;
use crate::traffic::Traffic;

const SHARDS: usize = 32;

/// The heap one batch's record holds while pending: its place in the
/// generation's list, its id, its shares with their visitors, and the claim
/// on its id
/// ([`BatchClaims::heap_bytes`]), which lives as long as the record.
fn record_heap_bytes(record: &BatchRecord) -> usize {
    heap::vec_entry::<BatchRecord>()
        + heap::allocation(record.batch_id.len())
        + heap::allocation(record.counts.capacity() * size_of::<BatchCount>())
        + record
            .counts
            .iter()
            .map(|c| heap::allocation(c.key.len()) + heap::allocation(c.visitors.heap_bytes()))
            .sum::<usize>()
        + BatchClaims::heap_bytes(&record.batch_id)
}

/// The heap of an ad's first entry in a shard: its slot and its id.
fn ad_heap_bytes(ad_id: &str) -> usize {
    heap::hash_entry::<(String, AdDays)>() + heap::allocation(ad_id.len())
}

/// The current generation's counts of the keys of one shard. Each day's
/// own sketch stays empty until the counts leave the generation (a delta, a
/// read), when it is made from the day's hours' (`DayCounts::add`).
#[derive(Debug, Default)]
struct Shard {
    ads: HashMap<String, AdDays>,
}

#[derive(Debug)]
struct Generation {
    /// The sequence number its delta will carry.
    seq: u64,
    shards: Box<[Mutex<Shard>]>,
    batches: Mutex<Vec<BatchRecord>>,
    /// Estimated heap bytes held by this generation.
    bytes: AtomicUsize,
}

impl Generation {
    /// A generation with room for `batches` records without growing.
    fn new(seq: u64, batches: usize) -> Self {
        Generation {
            seq,
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            batches: Mutex::new(Vec::with_capacity(batches)),
            bytes: AtomicUsize::new(0),
        }
    }

    fn is_empty(&self) -> bool {
        self.batches.lock().is_empty() && self.shards.iter().all(|s| s.lock().ads.is_empty())
    }

    /// Counts one batch, as `traffic` says (one verdict for the whole
    /// batch); `under_lock` runs while the batch list is locked, so whatever
    /// it logs is in the same order as the delta's records.
    fn record<R>(
        &self,
        shard_of: impl Fn(&str) -> usize,
        batch_id: &str,
        received_ms: i64,
        traffic: Traffic,
        events: &[Event<'_>],
        under_lock: impl FnOnce(u64) -> R,
    ) -> R {
        let record = BatchRecord::new(batch_id, received_ms, traffic, events);
        let mut bytes = record_heap_bytes(&record);
        let mut keys = EventKeys::default();
        for event in events {
            for key in keys.of(event) {
                let mut shard = self.shards[shard_of(key)].lock();
                let days = match shard.ads.get_mut(key.as_str()) {
                    Some(days) => days,
                    None => {
                        bytes += ad_heap_bytes(key);
                        shard.ads.entry(key.clone()).or_default()
                    }
                };
                let n_days = days.len();
                let day = days.entry(event.day).or_insert_with(|| {
                    // A leaf node holds 11 days; a key rarely has more than 3
                    // (events are at most 48 h old).
                    if n_days % heap::BTREE_LEAF_CAPACITY == 0 {
                        bytes += heap::btree_leaf::<Day, DayCounts>();
                    }
                    DayCounts::default()
                });
                let before = day.heap_bytes();
                day.add(event, traffic);
                bytes += day.heap_bytes().saturating_sub(before);
            }
        }
        let mut batches = self.batches.lock();
        batches.push(record);
        let logged = under_lock(self.seq);
        drop(batches);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        logged
    }

    /// The generation's delta, each day's visitors made from its hours',
    /// with the heap bytes the whole holds.
    fn into_delta(self) -> (Delta, usize) {
        let seq = self.seq;
        let mut bytes = self.bytes.load(Ordering::Relaxed);
        let mut ads = HashMap::new();
        for shard in self.shards.into_vec() {
            let mut shard = shard.into_inner();
            for d in shard.ads.values_mut().flat_map(BTreeMap::values_mut) {
                bytes += d.union_of_hours();
            }
            // Shards partition ads, so the union has no collisions.
            ads.extend(shard.ads);
        }
        let delta = Delta {
            seq,
            ads,
            batches: self.batches.into_inner(),
        };
        (delta, bytes)
    }
}

/// One pending delta's counts of one ad: see [`Aggregator::pending`].
#[derive(Clone, Debug, PartialEq)]
pub struct PendingDays {
    /// The delta's sequence number.
    pub seq: u64,
    pub days: AdDays,
}

/// One pending delta's impressions of one post, by day: see
/// [`Aggregator::pending_impressions`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingImpressions {
    /// The delta's sequence number.
    pub seq: u64,
    pub days: Vec<(Day, u64)>,
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
    /// Deltas rebuilt after a crash, oldest first, not yet handed out. Their
    /// numbers are all below the current generation's.
    recovered: RwLock<VecDeque<InFlight>>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for Aggregator {
    fn default() -> Self {
        Self::new()
    }
}

/// A delta rebuilt from logged batches (see [`Rebuild`]), with its size.
#[derive(Debug)]
pub struct Recovered {
    pub delta: Delta,
    bytes: usize,
}

/// Rebuilds the delta of a past generation from its batches, in the order
/// they were recorded, with the same code that counted them the first time:
/// the same counters, sketches and batch records.
#[derive(Debug)]
pub struct Rebuild {
    generation: Generation,
    hasher: std::collections::hash_map::RandomState,
}

impl Rebuild {
    pub fn new(seq: u64) -> Self {
        Rebuild {
            generation: Generation::new(seq, 0),
            hasher: Default::default(),
        }
    }

    pub fn record(&self, batch_id: &str, received_ms: i64, traffic: Traffic, events: &[Event<'_>]) {
        let hasher = &self.hasher;
        self.generation.record(
            |ad| (hasher.hash_one(ad) as usize) % SHARDS,
            batch_id,
            received_ms,
            traffic,
            events,
            |_| (),
        );
    }

    /// The delta; `None` when no batch was recorded.
    pub fn finish(self) -> Option<Recovered> {
        if self.generation.is_empty() {
            return None;
        }
        let (delta, bytes) = self.generation.into_delta();
        Some(Recovered { delta, bytes })
    }
}

impl Aggregator {
    /// An aggregator whose first delta is numbered 1.
    pub fn new() -> Self {
        Self::starting_at(1)
    }

    /// An aggregator whose first delta is numbered `first_seq`.
    pub fn starting_at(first_seq: u64) -> Self {
        Self::with_recovered(first_seq, Vec::new())
    }

    /// An aggregator that first hands out `recovered` (in sequence order),
    /// then numbers its own deltas from `first_seq`, which must be above
    /// every recovered number so that the store sees numbers increase.
    pub fn with_recovered(first_seq: u64, mut recovered: Vec<Recovered>) -> Self {
        recovered.sort_by_key(|r| r.delta.seq);
        assert!(
            recovered.iter().all(|r| r.delta.seq < first_seq),
            "recovered deltas must be numbered below {first_seq}"
        );
        Aggregator {
            current: RwLock::new(Generation::new(first_seq, 0)),
            in_flight: RwLock::new(None),
            recovered: RwLock::new(
                recovered
                    .into_iter()
                    .map(|r| InFlight {
                        delta: Arc::new(r.delta),
                        bytes: r.bytes,
                    })
                    .collect(),
            ),
            hasher: Default::default(),
        }
    }

    fn shard_of(&self, ad_id: &str) -> usize {
        (self.hasher.hash_one(ad_id) as usize) % SHARDS
    }

    /// Adds the valid, de-duplicated events of one batch, counted as
    /// `traffic` says (one verdict for the whole batch).
    pub fn record(&self, batch_id: &str, received_ms: i64, traffic: Traffic, events: &[Event<'_>]) {
        self.record_then(batch_id, received_ms, traffic, events, |_| ())
    }

    /// [`Aggregator::record`], then `under_guard(seq)` with the number of
    /// the generation that counted the batch, before a sync can swap that
    /// generation out: what it logs under `seq` is exactly what delta `seq`
    /// holds, in the same order. Keep it short (it holds up syncs).
    pub fn record_then<R>(
        &self,
        batch_id: &str,
        received_ms: i64,
        traffic: Traffic,
        events: &[Event<'_>],
        under_guard: impl FnOnce(u64) -> R,
    ) -> R {
        let generation = self.current.read();
        generation.record(
            |ad| self.shard_of(ad),
            batch_id,
            received_ms,
            traffic,
            events,
            under_guard,
        )
    }

    /// The number the delta of the current generation will carry.
    #[cfg(test)]
    pub fn current_seq(&self) -> u64 {
        self.current.read().seq
    }

    /// Estimated heap bytes of everything pending: the in-flight delta,
    /// recovered deltas and the current generation.
    pub fn pending_bytes(&self) -> usize {
        let in_flight = self.in_flight.read().as_ref().map_or(0, |f| f.bytes);
        let recovered: usize = self.recovered.read().iter().map(|f| f.bytes).sum();
        in_flight + recovered + self.current.read().bytes.load(Ordering::Relaxed)
    }

    /// The delta to sync now: the one still in flight from a failed attempt,
    /// else the oldest recovered delta, else everything recorded since the
    /// last sync. `None` when idle.
    pub fn begin_sync(&self) -> Option<Arc<Delta>> {
        let mut in_flight = self.in_flight.write();
        if let Some(f) = in_flight.as_ref() {
            return Some(Arc::clone(&f.delta));
        }
        if let Some(f) = self.recovered.write().pop_front() {
            let delta = Arc::clone(&f.delta);
            *in_flight = Some(f);
            return Some(delta);
        }
        let mut current = self.current.write();
        if current.is_empty() {
            // Nothing to sync: keep the generation and the sequence number.
            return None;
        }
        // Room for as many batches as the last generation took: grown
        // from empty, the list was reallocated into fresh pages a dozen
        // times per sync, on the request path (page faults, copies).
        let batches = current.batches.get_mut().len();
        let next = Generation::new(current.seq + 1, batches);
        let taken = std::mem::replace(&mut *current, next);
        drop(current);
        let (delta, bytes) = taken.into_delta();
        let delta = Arc::new(delta);
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
            && self.recovered.read().is_empty()
            && self.current.read().is_empty()
    }

    /// Pending counts of `key` (an ad's or a post's counts key) on the days
    /// of `range`, with their hours when `grain` asks, one entry per pending delta (in flight, recovered,
    /// current) that has any, each with its sequence number, so stats can
    /// leave out the ones the store already holds (`crate::stats`).
    pub fn pending(&self, key: &str, range: DayRange, grain: Grain) -> Vec<PendingDays> {
        self.pending_with(key, |seq, days, day_visitors_made| {
            let days: AdDays = days
                .range(range.from()..=range.to())
                .map(|(day, d)| {
                    let mut d = d.clone();
                    if !day_visitors_made {
                        d.union_of_hours();
                    }
                    if grain == Grain::Days {
                        d = d.without_hours();
                    }
                    (*day, d)
                })
                .collect();
            (!days.is_empty()).then_some(PendingDays { seq, days })
        })
    }

    /// The pending impressions of `key` on each day it has any, per pending
    /// delta: what `/v1/views` adds to a post's stored total, without a copy
    /// of the sketches.
    pub fn pending_impressions(&self, key: &str) -> Vec<PendingImpressions> {
        self.pending_with(key, |seq, days, _| {
            let days: Vec<(Day, u64)> = days
                .iter()
                .map(|(day, d)| (*day, d.counters.impressions))
                .filter(|(_, n)| *n > 0)
                .collect();
            (!days.is_empty()).then_some(PendingImpressions { seq, days })
        })
    }

    /// `take(seq, days, day_visitors_made)` of every pending delta that has
    /// counts of `key`, oldest first. The current generation's days have
    /// their hours' visitors only (`day_visitors_made` false: see
    /// [`DayCounts::add`]); a delta's have the day's too.
    fn pending_with<T>(&self, key: &str, take: impl Fn(u64, &AdDays, bool) -> Option<T>) -> Vec<T> {
        // Held to the end so a sync moving a delta along (recovered or
        // current -> in flight) cannot make it appear twice or not at all.
        let in_flight = self.in_flight.read();
        let recovered = self.recovered.read();
        let mut out: Vec<T> = in_flight
            .iter()
            .chain(recovered.iter())
            .filter_map(|f| take(f.delta.seq, f.delta.ads.get(key)?, true))
            .collect();
        let generation = self.current.read();
        let shard = generation.shards[self.shard_of(key)].lock();
        out.extend(
            shard
                .ads
                .get(key)
                .and_then(|days| take(generation.seq, days, false)),
        );
        out
    }

    /// The keys for which `wanted` holds with pending data in `range`,
    /// ascending: the ads ([`crate::counts::is_ad_key`]), the campaigns, or
    /// one campaign's shares of its ads.
    pub fn pending_listed(&self, range: DayRange, wanted: impl Fn(&str) -> bool) -> Vec<String> {
        let in_range = |(key, days): &(&String, &AdDays)| {
            wanted(key) && days.range(range.from()..=range.to()).next().is_some()
        };
        let mut ads = Vec::new();
        let in_flight = self.in_flight.read();
        let recovered = self.recovered.read();
        for f in in_flight.iter().chain(recovered.iter()) {
            ads.extend(f.delta.ads.iter().filter(in_range).map(|(a, _)| a.clone()));
        }
        let generation = self.current.read();
        for shard in generation.shards.iter() {
            let shard = shard.lock();
            ads.extend(shard.ads.iter().filter(in_range).map(|(a, _)| a.clone()));
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
        let recovered: usize = self
            .recovered
            .read()
            .iter()
            .map(|f| count(&f.delta.ads))
            .sum();
        let generation = self.current.read();
        in_flight
            + recovered
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

    use glimpse_wire::{Day, Kind, Subject};

    use super::*;
    use crate::counts::{is_ad_key, Counters, VideoCounters};

    /// A batch's share of hour 00 of its day (the tests' events are at
    /// midnight).
    fn share(key: &str, d: &str, counters: Counters, users: &[&str]) -> BatchCount {
        BatchCount {
            key: key.into(),
            day: day(d),
            hour: 0,
            counters,
            visitors: visitors(users),
        }
    }

    fn day(s: &str) -> Day {
        s.parse().unwrap()
    }

    fn visitors(users: &[&str]) -> glimpse_hll::Sketch {
        let mut sketch = glimpse_hll::Sketch::new();
        for u in users {
            sketch.insert(u.as_bytes());
        }
        sketch
    }

    /// Every pending delta of `ad_id` folded together.
    fn folded(agg: &Aggregator, ad_id: &str, range: DayRange) -> AdDays {
        let mut out = AdDays::new();
        for p in agg.pending(ad_id, range, Grain::Hours) {
            for (day, d) in &p.days {
                out.entry(*day).or_default().merge(d);
            }
        }
        out
    }

    fn ev<'a>(ad: &'a str, user: &'a str, kind: Kind, d: &str) -> Event<'a> {
        Event {
            id: Cow::Borrowed("e"),
            subject: Subject::Ad,
            subject_id: Cow::Borrowed(ad),
            user_id: Cow::Borrowed(user),
            kind,
            ts: day(d).start_ms(),
            day: day(d),
            token: None,
            verified: false,
            audible: false,
            campaign_id: None,
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
        let p = folded(&agg, "ad-1", range);
        assert_eq!(p[&day(d1)].counters.impressions, 1);
        assert_eq!(p[&day(d1)].counters.measurable, 1);
        assert_eq!(p[&day(d2)].counters.impressions, 1);
        assert!(!p[&day(d2)].visitors.is_empty());
        assert_eq!(folded(&agg, "ad-2", range)[&day(d2)].counters.measurable, 1);
        assert_eq!(
            folded(&agg, "ad-2", range)[&day(d2)].counters.impressions,
            0
        );
        assert!(folded(&agg, "ad-2", DayRange::single(day(d1))).is_empty());
        assert_eq!(agg.pending_listed(range, is_ad_key), vec!["ad-1", "ad-2"]);
        assert_eq!(
            agg.pending_listed(DayRange::single(day(d1)), is_ad_key),
            vec!["ad-1"]
        );
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
                share(
                    "ad-1",
                    d,
                    Counters {
                        impressions: 2,
                        measurable: 1,
                        invalid: 0,
                        verified: 0,
                        video: VideoCounters::default(),
                    },
                    &["u1", "u2"],
                ),
                share(
                    "ad-2",
                    d,
                    Counters {
                        impressions: 0,
                        measurable: 1,
                        invalid: 0,
                        verified: 0,
                        video: VideoCounters::default(),
                    },
                    &[],
                ),
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
        let p = &folded(&agg, "ad-1", range)[&day(d)];
        assert_eq!(
            (
                p.counters.impressions,
                p.counters.measurable,
                p.counters.invalid
            ),
            (1, 0, 2)
        );
        assert_eq!(p.visitors.estimate(), 1, "only the person is a visitor");
        // An ad seen only by bots is still listed, so its invalid count shows.
        assert_eq!(agg.pending_listed(range, is_ad_key), ["ad-1", "ad-9"]);
        let delta = agg.begin_sync().unwrap();
        assert_eq!(
            delta.batches[0].counts,
            [
                share(
                    "ad-1",
                    d,
                    Counters {
                        impressions: 0,
                        measurable: 0,
                        invalid: 2,
                        verified: 0,
                        video: VideoCounters::default(),
                    },
                    &[],
                ),
                share(
                    "ad-9",
                    d,
                    Counters {
                        impressions: 0,
                        measurable: 0,
                        invalid: 1,
                        verified: 0,
                        video: VideoCounters::default(),
                    },
                    &[],
                ),
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
        assert_eq!(folded(&agg, "ad-1", range)[&day(d)].counters.impressions, 2);
        // Each pending delta apart, under its number.
        let seqs: Vec<(u64, u64)> = agg
            .pending("ad-1", range, Grain::Days)
            .iter()
            .map(|p| (p.seq, p.days[&day(d)].counters.impressions))
            .collect();
        assert_eq!(seqs, [(first.seq, 1), (first.seq + 1, 1)]);
        let retry = agg.begin_sync().unwrap();
        assert!(Arc::ptr_eq(&first, &retry));
        agg.finish_sync();
        assert_eq!(folded(&agg, "ad-1", range)[&day(d)].counters.impressions, 1);
        let second = agg.begin_sync().unwrap();
        assert_eq!(second.batches[0].batch_id, "b2");
        agg.finish_sync();
        assert!(folded(&agg, "ad-1", range).is_empty());
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
        // In flight it still counts, and the day's sketch, made from its
        // hour's as the delta left the generation, counts too.
        let in_flight = agg.pending_bytes();
        assert!(
            in_flight >= after_one + glimpse_hll::REGISTERS,
            "{in_flight}"
        );
        agg.record(
            "b2",
            0,
            Traffic::Valid,
            &[ev("ad-2", "u1", Kind::Measurable, d)],
        );
        let both = agg.pending_bytes();
        assert!(both > in_flight);
        agg.finish_sync();
        assert_eq!(agg.pending_bytes(), both - in_flight);
        agg.begin_sync().unwrap();
        agg.finish_sync();
        assert_eq!(agg.pending_bytes(), 0);
        // A batch's record keeps its share's visitors (4 bytes each in a
        // sparse sketch) besides the day's sketch (as many again).
        let distinct: Vec<_> = users[..400]
            .iter()
            .map(|u| ev("ad-3", u, Kind::Viewable, d))
            .collect();
        agg.record("b3", 0, Traffic::Valid, &distinct);
        assert!(
            agg.pending_bytes() >= 2 * 400 * 4,
            "{}",
            agg.pending_bytes()
        );
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
            let from_keys: u64 = delta.keys().map(|(_, _, d)| d.counters.impressions).sum();
            let from_records: u64 = delta
                .batches
                .iter()
                .flat_map(|b| &b.counts)
                .map(|c| c.counters.impressions)
                .sum();
            assert_eq!(from_keys, from_records);
            impressions += from_keys;
            batches += delta.batches.len();
        }
        assert_eq!((impressions, batches), (2000, 2000));
    }

    #[test]
    fn the_logging_closure_sees_the_generation_that_counts_the_batch() {
        let agg = Aggregator::starting_at(100);
        let d = "2026-11-25";
        let seq = agg.record_then(
            "b1",
            0,
            Traffic::Valid,
            &[ev("ad-1", "u1", Kind::Viewable, d)],
            |s| s,
        );
        assert_eq!(seq, 100);
        assert_eq!(agg.begin_sync().unwrap().seq, 100);
        assert_eq!(agg.current_seq(), 101);
        let seq = agg.record_then(
            "b2",
            0,
            Traffic::Valid,
            &[ev("ad-1", "u2", Kind::Viewable, d)],
            |s| s,
        );
        assert_eq!(seq, 101);
        agg.finish_sync();
        assert_eq!(agg.begin_sync().unwrap().seq, 101);
    }

    #[test]
    fn a_rebuilt_delta_equals_the_original() {
        let agg = Aggregator::starting_at(7);
        let users: Vec<String> = (0..3000).map(|i| format!("u{i}")).collect();
        let batches: Vec<(String, Vec<Event<'_>>)> = (0..6)
            .map(|b| {
                let events = users[b * 500..(b + 1) * 500]
                    .iter()
                    .enumerate()
                    .map(|(i, u)| {
                        let kind = if i % 3 == 0 {
                            Kind::Measurable
                        } else {
                            Kind::Viewable
                        };
                        let d = if i % 2 == 0 {
                            "2026-11-25"
                        } else {
                            "2026-11-24"
                        };
                        ev(["ad-1", "ad-2", "ad-3"][i % 3], u, kind, d)
                    })
                    .collect();
                (format!("b{b}"), events)
            })
            .collect();
        let rebuild = Rebuild::new(7);
        for (id, events) in &batches {
            // Some batches are bots': the rebuild must count them the same.
            let traffic = if id.ends_with('3') {
                Traffic::Invalid
            } else {
                Traffic::Valid
            };
            agg.record(id, 5, traffic, events);
            rebuild.record(id, 5, traffic, events);
        }
        let original = agg.begin_sync().unwrap();
        let rebuilt = rebuild.finish().unwrap();
        assert_eq!(&rebuilt.delta, original.as_ref());
        assert_eq!(rebuilt.bytes, agg.pending_bytes());
        assert!(Rebuild::new(8).finish().is_none());
    }

    #[test]
    fn recovered_deltas_go_first_in_order_and_count_as_pending() {
        let d = "2026-11-25";
        let range = DayRange::single(day(d));
        let rebuilt = |seq, id: &str, user: &str| {
            let r = Rebuild::new(seq);
            r.record(
                id,
                0,
                Traffic::Valid,
                &[ev("ad-1", user, Kind::Viewable, d)],
            );
            r.finish().unwrap()
        };
        // Given out of order: handed out by number.
        let agg = Aggregator::with_recovered(
            (2 << 32) | 1,
            vec![
                rebuilt((1 << 32) | 6, "b6", "u6"),
                rebuilt((1 << 32) | 5, "b5", "u5"),
            ],
        );
        assert!(!agg.is_idle());
        agg.record(
            "new",
            0,
            Traffic::Valid,
            &[ev("ad-1", "u7", Kind::Viewable, d)],
        );
        assert_eq!(folded(&agg, "ad-1", range)[&day(d)].counters.impressions, 3);
        assert_eq!(agg.pending_listed(range, is_ad_key), vec!["ad-1"]);
        assert_eq!(agg.pending_keys(), 3, "one (ad, day) in each of 3 deltas");
        let bytes = agg.pending_bytes();
        let first = agg.begin_sync().unwrap();
        assert_eq!(
            (first.seq, first.batches[0].batch_id.as_str()),
            ((1 << 32) | 5, "b5")
        );
        // A failed sync retries the same recovered delta.
        assert!(Arc::ptr_eq(&first, &agg.begin_sync().unwrap()));
        assert_eq!(folded(&agg, "ad-1", range)[&day(d)].counters.impressions, 3);
        assert_eq!(agg.pending_bytes(), bytes);
        agg.finish_sync();
        assert_eq!(agg.begin_sync().unwrap().seq, (1 << 32) | 6);
        agg.finish_sync();
        let new = agg.begin_sync().unwrap();
        assert_eq!(
            (new.seq, new.batches[0].batch_id.as_str()),
            ((2 << 32) | 1, "new")
        );
        agg.finish_sync();
        assert!(agg.is_idle());
        assert_eq!(agg.pending_bytes(), 0);
        assert_eq!(agg.current_seq(), (2 << 32) | 2);
    }

    #[test]
    #[should_panic(expected = "numbered below")]
    fn recovered_deltas_must_be_older_than_the_new_ones() {
        let r = Rebuild::new(9);
        r.record(
            "b",
            0,
            Traffic::Valid,
            &[ev("ad-1", "u", Kind::Viewable, "2026-11-25")],
        );
        Aggregator::with_recovered(9, vec![r.finish().unwrap()]);
    }
}
