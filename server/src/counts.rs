//! The counts passed between the stages, in one place: what one event adds
//! ([`Counters::of_event`]), what an (ad, day) holds ([`DayCounts`], pending
//! or stored), what one batch added to each (ad, day) it touched
//! ([`BatchRecord`]), and what a sync hands to a store ([`Delta`]).
//!
//! A store applies a delta through [`Delta::updates`], the one place that
//! leaves out the counters and visitors of batches already counted, so both
//! stores keep the exactly-once rule the same way. No I/O.
//!
//! Adding a counter means adding a field to [`Counters`] (and its rule to
//! [`Counters::of_event`]), then to the stores' encodings and the API types.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::AddAssign;

use glimpse_hll::Sketch;
use glimpse_wire::ingest::Event;
use glimpse_wire::{Day, Kind, Subject};

use crate::traffic::Traffic;

/// The exact counters of an (ad, day), or of one batch's share of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Viewable events of people.
    pub impressions: u64,
    /// Measurable events of people.
    pub measurable: u64,
    /// Events of either kind from invalid traffic (known bots).
    pub invalid: u64,
    /// Viewable events of people that the browser vouched were neither
    /// covered nor visually altered (IntersectionObserver v2): a part of
    /// `impressions`.
    pub verified: u64,
    /// The video counters of an ad (zero for display ads and posts).
    pub video: VideoCounters,
}

/// The video counters of an (ad, day): progress events of people, and the
/// viewable impressions that were audible.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VideoCounters {
    pub starts: u64,
    pub q25: u64,
    pub q50: u64,
    pub q75: u64,
    pub completes: u64,
    /// Viewable events marked `audible`: a part of `impressions`.
    pub audible: u64,
}

impl VideoCounters {
    /// The counters as an array, in the order of [`VideoCounters::from_array`].
    pub fn to_array(self) -> [u64; 6] {
        [
            self.starts,
            self.q25,
            self.q50,
            self.q75,
            self.completes,
            self.audible,
        ]
    }

    pub fn from_array([starts, q25, q50, q75, completes, audible]: [u64; 6]) -> Self {
        VideoCounters {
            starts,
            q25,
            q50,
            q75,
            completes,
            audible,
        }
    }

    fn zip(self, other: VideoCounters, f: impl Fn(u64, u64) -> u64) -> VideoCounters {
        let (a, b) = (self.to_array(), other.to_array());
        VideoCounters::from_array(std::array::from_fn(|i| f(a[i], b[i])))
    }

    /// The progress counter an event of `kind` adds to.
    fn of_progress(kind: Kind) -> VideoCounters {
        let one = |k| u64::from(kind == k);
        VideoCounters {
            starts: one(Kind::VideoStart),
            q25: one(Kind::VideoQ25),
            q50: one(Kind::VideoQ50),
            q75: one(Kind::VideoQ75),
            completes: one(Kind::VideoComplete),
            audible: 0,
        }
    }
}

impl AddAssign for VideoCounters {
    fn add_assign(&mut self, other: VideoCounters) {
        *self = self.zip(other, |a, b| a + b);
    }
}

/// The keys the edge keeps counts under, in memory, in the log's replay and
/// in both stores. An event counts under several (see [`EventKeys`]):
///
/// - its subject's: an ad's id as it is, a post's id after
///   [`POST_KEY_PREFIX`];
/// - for an ad's event with a campaign: the campaign's
///   (`campaign/<campaign_id>`, its reach being the union of all its ads'
///   visitors) and the campaign's share of the ad
///   (`campaign/<campaign_id>/<ad_id>`), which lists the campaign's ads.
///
/// Under each key an event counts in its UTC day and, inside that day's
/// counts, in its UTC hour ([`DayCounts::hours`]): an hour is a part of its
/// day, counted, stored and read with it (a zone's day of any key is its
/// hours' sum).
///
/// No ad id contains `/` (it is outside the id alphabet), so no ad's key
/// is ever any of the others, and no client can name one as an ad.
pub(crate) const POST_KEY_PREFIX: &str = "post/";
pub(crate) const CAMPAIGN_KEY_PREFIX: &str = "campaign/";

/// The counts key of post `post_id`.
pub(crate) fn post_key(post_id: &str) -> String {
    format!("{POST_KEY_PREFIX}{post_id}")
}

/// The post whose counts `key` holds, when it is a post's.
pub(crate) fn post_of_key(key: &str) -> Option<&str> {
    key.strip_prefix(POST_KEY_PREFIX)
}

/// The counts key of campaign `campaign_id`.
pub(crate) fn campaign_key(campaign_id: &str) -> String {
    format!("{CAMPAIGN_KEY_PREFIX}{campaign_id}")
}

/// The campaign whose counts `key` holds, when it is a campaign's own (not
/// one of its ads' shares).
pub(crate) fn campaign_of_key(key: &str) -> Option<&str> {
    key.strip_prefix(CAMPAIGN_KEY_PREFIX)
        .filter(|id| !id.contains('/'))
}

/// The prefix of the keys of `campaign_id`'s shares of its ads: each such
/// key is the prefix and an ad's id.
pub(crate) fn campaign_ads_prefix(campaign_id: &str) -> String {
    format!("{CAMPAIGN_KEY_PREFIX}{campaign_id}/")
}

/// Whether `key` is an ad's (the ads listing reads only those).
pub(crate) fn is_ad_key(key: &str) -> bool {
    !key.contains('/')
}

/// Whether the stores list `key` in each day's index, read by prefix: ads,
/// campaigns and campaigns' shares of ads; not posts (never listed).
pub(crate) fn is_listed(key: &str) -> bool {
    post_of_key(key).is_none()
}

/// The keys one event counts under (the list above), written into buffers
/// reused across a batch, so that an event allocates nothing once the
/// buffers have grown.
#[derive(Debug, Default)]
pub(crate) struct EventKeys {
    bufs: Vec<String>,
}

impl EventKeys {
    pub fn of(&mut self, event: &Event<'_>) -> &[String] {
        let mut n = 0;
        let mut next = |bufs: &mut Vec<String>, parts: &[&str]| {
            if bufs.len() == n {
                bufs.push(String::new());
            }
            let buf = &mut bufs[n];
            buf.clear();
            parts.iter().for_each(|p| buf.push_str(p));
            n += 1;
        };
        let id = event.subject_id.as_ref();
        match event.subject {
            Subject::Ad => next(&mut self.bufs, &[id]),
            Subject::Post => next(&mut self.bufs, &[POST_KEY_PREFIX, id]),
        }
        if let (Subject::Ad, Some(campaign)) = (event.subject, event.campaign_id.as_deref()) {
            next(&mut self.bufs, &[CAMPAIGN_KEY_PREFIX, campaign]);
            next(&mut self.bufs, &[CAMPAIGN_KEY_PREFIX, campaign, "/", id]);
        }
        &self.bufs[..n]
    }
}

impl Counters {
    /// What one event adds, counted as `traffic` says (one verdict for its
    /// whole batch): a known bot's events add to `invalid` only, verified
    /// or not.
    pub fn of_event(event: &Event<'_>, traffic: Traffic) -> Counters {
        match (traffic, event.kind) {
            (Traffic::Invalid, _) => Counters {
                invalid: 1,
                ..Counters::default()
            },
            (Traffic::Valid, Kind::Viewable) => Counters {
                impressions: 1,
                verified: u64::from(event.verified),
                video: VideoCounters {
                    audible: u64::from(event.audible),
                    ..VideoCounters::default()
                },
                ..Counters::default()
            },
            (Traffic::Valid, Kind::Measurable) => Counters {
                measurable: 1,
                ..Counters::default()
            },
            (Traffic::Valid, progress) => Counters {
                video: VideoCounters::of_progress(progress),
                ..Counters::default()
            },
        }
    }

    pub fn is_zero(&self) -> bool {
        *self == Counters::default()
    }

    /// `self - other`, counter by counter, never below zero.
    pub fn saturating_sub(self, other: Counters) -> Counters {
        Counters {
            impressions: self.impressions.saturating_sub(other.impressions),
            measurable: self.measurable.saturating_sub(other.measurable),
            invalid: self.invalid.saturating_sub(other.invalid),
            verified: self.verified.saturating_sub(other.verified),
            video: self.video.zip(other.video, u64::saturating_sub),
        }
    }
}

impl AddAssign for Counters {
    fn add_assign(&mut self, other: Counters) {
        self.impressions += other.impressions;
        self.measurable += other.measurable;
        self.invalid += other.invalid;
        self.verified += other.verified;
        self.video += other.video;
    }
}

/// The counters and visitors of one UTC hour of a (key, day).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HourCounts {
    pub counters: Counters,
    pub visitors: Sketch,
}

/// The hours of a (key, day) that have counts: each once, in hour order
/// (0..=23). A day rarely has more than a few, so a sorted list beats a
/// map.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Hours(Vec<(u8, HourCounts)>);

impl Hours {
    pub fn iter(&self) -> impl Iterator<Item = (u8, &HourCounts)> {
        self.0.iter().map(|(hour, counts)| (*hour, counts))
    }

    pub fn get(&self, hour: u8) -> Option<&HourCounts> {
        let at = self.0.binary_search_by_key(&hour, |(h, _)| *h).ok()?;
        Some(&self.0[at].1)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The counts of `hour`, added empty if the day had none.
    pub fn entry(&mut self, hour: u8) -> &mut HourCounts {
        let at = match self.0.binary_search_by_key(&hour, |(h, _)| *h) {
            Ok(at) => at,
            Err(at) => {
                self.0.insert(at, (hour, HourCounts::default()));
                at
            }
        };
        &mut self.0[at].1
    }

    /// The heap the list and its sketches hold (`crate::heap`).
    pub(crate) fn heap_bytes(&self) -> usize {
        crate::heap::allocation(self.0.capacity() * std::mem::size_of::<(u8, HourCounts)>())
            + self
                .0
                .iter()
                .map(|(_, h)| crate::heap::allocation(h.visitors.heap_bytes()))
                .sum::<usize>()
    }
}

impl FromIterator<(u8, HourCounts)> for Hours {
    /// The hours of `iter`, in hour order; an hour named twice keeps its
    /// last counts.
    fn from_iter<I: IntoIterator<Item = (u8, HourCounts)>>(iter: I) -> Self {
        let mut hours = Hours::default();
        for (hour, counts) in iter {
            *hours.entry(hour) = counts;
        }
        hours
    }
}

/// The counters and visitors of one (key, day), and of each of its UTC
/// hours that has any: the day's counts are the sum of its hours', its
/// visitors their union.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DayCounts {
    pub counters: Counters,
    /// Visitors of the impressions (never of invalid traffic).
    pub visitors: Sketch,
    /// The day's hours. Pending counts always have them; a store's read
    /// brings them only when asked (`crate::store::Grain::Hours`).
    pub hours: Hours,
}

impl DayCounts {
    /// Counts one event in the day's counters and in its hour's counters
    /// and visitors. An event adds its visitor exactly when it counts as an
    /// impression: invalid traffic is no audience. The day's own sketch is
    /// left as it is: the aggregator makes it once from the hours'
    /// ([`DayCounts::union_of_hours`]) rather than insert every visitor
    /// into two sketches, the day's and the hour's.
    pub(crate) fn add(&mut self, event: &Event<'_>, traffic: Traffic) {
        let one = Counters::of_event(event, traffic);
        let hour = self.hours.entry(event.hour());
        self.counters += one;
        hour.counters += one;
        if one.impressions != 0 {
            hour.visitors.insert(event.user_id.as_bytes());
        }
    }

    /// The day's visitors made from its hours' (their union), for counts
    /// built by [`DayCounts::add`]; the heap the day's sketch took (as
    /// `crate::heap` counts it).
    pub(crate) fn union_of_hours(&mut self) -> usize {
        let mut visitors = Sketch::new();
        for (_, hour) in self.hours.iter() {
            visitors.merge(&hour.visitors);
        }
        self.visitors = visitors;
        crate::heap::allocation(self.visitors.heap_bytes())
    }

    /// Folds `other` into `self`, hour by hour.
    pub fn merge(&mut self, other: &DayCounts) {
        self.counters += other.counters;
        self.visitors.merge(&other.visitors);
        for (hour, counts) in other.hours.iter() {
            let mine = self.hours.entry(hour);
            mine.counters += counts.counters;
            mine.visitors.merge(&counts.visitors);
        }
    }

    /// The same counts without their hours (what a read by day needs).
    pub fn without_hours(&self) -> DayCounts {
        DayCounts {
            counters: self.counters,
            visitors: self.visitors.clone(),
            hours: Hours::default(),
        }
    }

    /// The heap the sketches and the hours hold (`crate::heap`).
    pub(crate) fn heap_bytes(&self) -> usize {
        crate::heap::allocation(self.visitors.heap_bytes()) + self.hours.heap_bytes()
    }
}

/// The counts of one ad, by day.
pub type AdDays = BTreeMap<Day, DayCounts>;

/// What one batch added to the counters and sketches, kept so that a store
/// can leave out a batch that was counted already (by this edge before, or
/// by another).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchRecord {
    pub batch_id: String,
    /// Server time when the batch was accepted, epoch ms.
    pub received_ms: i64,
    /// What the batch added to each (ad, day) it touched, in the order the
    /// batch first named them.
    pub counts: Vec<BatchCount>,
}

/// One (ad, day, UTC hour) share of a batch (of any counts key: see
/// `EventKeys`). A batch's share of a day is the sum of its shares of
/// that day's hours; one batch rarely spans two hours, so a share per hour
/// costs what a share per day would.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchCount {
    pub key: String,
    pub day: Day,
    pub hour: u8,
    pub counters: Counters,
    /// The visitors of the share's impressions: when the batch is left
    /// out, the (ad, day)'s sketches are rebuilt from the shares that count
    /// ([`Delta::updates`]). A batch holds at most
    /// [`glimpse_wire::MAX_EVENTS_PER_BATCH`] visitors, so this stays a
    /// sparse sketch of 4 bytes a visitor.
    pub visitors: Sketch,
}

impl BatchCount {
    /// The parts of its (ad, day) the share adds to: the day and its hour.
    fn parts(&self) -> [Part<'_>; 2] {
        [
            (self.key.as_str(), self.day, None),
            (self.key.as_str(), self.day, Some(self.hour)),
        ]
    }
}

impl BatchRecord {
    /// The record of a batch whose accepted events are `events`, counted as
    /// `traffic` says.
    pub(crate) fn new(
        batch_id: &str,
        received_ms: i64,
        traffic: Traffic,
        events: &[Event<'_>],
    ) -> BatchRecord {
        let mut counts: Vec<BatchCount> = Vec::new();
        let mut keys = EventKeys::default();
        for event in events {
            let one = Counters::of_event(event, traffic);
            let hour = event.hour();
            for key in keys.of(event) {
                // A batch names at most a few dozen (ad, hour)s: a scan beats a map.
                let at = match counts
                    .iter()
                    .position(|c| c.day == event.day && c.hour == hour && c.key == *key)
                {
                    Some(at) => at,
                    None => {
                        counts.push(BatchCount {
                            key: key.clone(),
                            day: event.day,
                            hour,
                            counters: Counters::default(),
                            visitors: Sketch::new(),
                        });
                        counts.len() - 1
                    }
                };
                let count = &mut counts[at];
                count.counters += one;
                // The same rule as `DayCounts::add`: impressions add visitors.
                if one.impressions != 0 {
                    count.visitors.insert(event.user_id.as_bytes());
                }
            }
        }
        BatchRecord {
            batch_id: batch_id.to_owned(),
            received_ms,
            counts,
        }
    }
}

/// Everything accepted in one generation of the aggregator: what a store
/// applies.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Delta {
    /// This delta's place in the aggregator's order: the number the
    /// aggregator was started at for the first delta, then increasing by
    /// one. A retried delta keeps its number, and so does a delta rebuilt
    /// from the write-ahead log after a crash.
    pub seq: u64,
    pub ads: HashMap<String, AdDays>,
    pub batches: Vec<BatchRecord>,
}

/// What a store adds to one (ad, day) for a delta: see [`Delta::updates`].
#[derive(Clone, Debug, PartialEq)]
pub struct KeyUpdate<'a> {
    /// The counts key (`EventKeys`).
    pub key: &'a str,
    pub day: Day,
    /// The delta's counters of this (ad, day), less the shares of the
    /// batches left out.
    pub counters: Counters,
    /// The visitors of the same batches as `counters`: the delta's sketch
    /// of this (ad, day) whole when no batch left out added visitors to it,
    /// else rebuilt from the shares of the batches that count, so a second
    /// copy of a batch with other content adds no visitors either.
    pub visitors: Cow<'a, Sketch>,
    /// Each hour of the day the delta has counts in, by the same rule, in
    /// hour order.
    pub hours: Vec<HourUpdate<'a>>,
}

/// What a store adds to one UTC hour of an (ad, day): see [`KeyUpdate`].
#[derive(Clone, Debug, PartialEq)]
pub struct HourUpdate<'a> {
    pub hour: u8,
    pub counters: Counters,
    pub visitors: Cow<'a, Sketch>,
}

/// A part of a (key, day) the exactly-once rule subtracts from: the day
/// (`None`) or one of its hours.
type Part<'a> = (&'a str, Day, Option<u8>);

/// The counters and visitors of batches left out, by part.
#[derive(Default)]
struct LeftOut<'a> {
    counters: HashMap<Part<'a>, Counters>,
    /// The parts whose sketch a left-out batch added to: rebuilt from the
    /// shares that count.
    rebuilt: HashMap<Part<'a>, Sketch>,
}

impl<'a> LeftOut<'a> {
    /// What `part` adds: `counters` less those left out, and `visitors`
    /// whole or rebuilt.
    fn take(
        &mut self,
        part: Part<'a>,
        counters: Counters,
        visitors: &'a Sketch,
    ) -> (Counters, Cow<'a, Sketch>) {
        let counters =
            counters.saturating_sub(self.counters.get(&part).copied().unwrap_or_default());
        let visitors = match self.rebuilt.remove(&part) {
            Some(sketch) => Cow::Owned(sketch),
            None => Cow::Borrowed(visitors),
        };
        (counters, visitors)
    }
}

impl Delta {
    pub fn is_empty(&self) -> bool {
        self.ads.is_empty() && self.batches.is_empty()
    }

    /// `(ad_id, day, counts)` for every key, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = (&str, Day, &DayCounts)> {
        self.ads
            .iter()
            .flat_map(|(ad, days)| days.iter().map(move |(day, d)| (ad.as_str(), *day, d)))
    }

    /// The exactly-once rule, for both stores: one update per (ad, day) of
    /// the delta, sorted by (ad, day), whose counters and visitors (of the
    /// day and of each hour) leave out the shares of every batch for which
    /// `counts` answers no. `counts` is asked in record order, and never
    /// again for an id it said yes to: a batch id recorded twice in one
    /// delta counts once. Deterministic for a given delta and answers, so a
    /// retried delta gives the same updates.
    pub fn updates<E>(
        &self,
        mut counts: impl FnMut(&BatchRecord) -> Result<bool, E>,
    ) -> Result<Vec<KeyUpdate<'_>>, E> {
        let mut left_out = LeftOut::default();
        let mut counted: HashSet<&str> = HashSet::new();
        let mut counting: Vec<&BatchRecord> = Vec::new();
        for record in &self.batches {
            let id = record.batch_id.as_str();
            if !counted.contains(id) && counts(record)? {
                counted.insert(id);
                counting.push(record);
                continue;
            }
            for c in &record.counts {
                for part in c.parts() {
                    *left_out.counters.entry(part).or_default() += c.counters;
                    if !c.visitors.is_empty() {
                        left_out.rebuilt.entry(part).or_default();
                    }
                }
            }
        }
        if !left_out.rebuilt.is_empty() {
            for c in counting.iter().flat_map(|r| &r.counts) {
                for part in c.parts() {
                    if let Some(sketch) = left_out.rebuilt.get_mut(&part) {
                        sketch.merge(&c.visitors);
                    }
                }
            }
        }
        let mut updates: Vec<KeyUpdate<'_>> = self
            .keys()
            .map(|(key, day, d)| {
                let (counters, visitors) = left_out.take((key, day, None), d.counters, &d.visitors);
                let hours = d
                    .hours
                    .iter()
                    .map(|(hour, h)| {
                        let (counters, visitors) =
                            left_out.take((key, day, Some(hour)), h.counters, &h.visitors);
                        HourUpdate {
                            hour,
                            counters,
                            visitors,
                        }
                    })
                    .collect();
                KeyUpdate {
                    key,
                    day,
                    counters,
                    visitors,
                    hours,
                }
            })
            .collect();
        updates.sort_by(|a, b| (a.key, a.day).cmp(&(b.key, b.day)));
        Ok(updates)
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::convert::Infallible;

    use super::*;

    fn ev<'a>(ad: &'a str, user: &'a str, kind: Kind) -> Event<'a> {
        let day: Day = "2026-11-25".parse().unwrap();
        Event {
            id: Cow::Borrowed("e"),
            subject: Subject::Ad,
            subject_id: Cow::Borrowed(ad),
            user_id: Cow::Borrowed(user),
            kind,
            ts: day.start_ms(),
            day,
            token: None,
            verified: false,
            audible: false,
            campaign_id: None,
        }
    }

    fn delta(batches: &[(&str, Traffic, Vec<Event<'_>>)]) -> Delta {
        let mut delta = Delta::default();
        for (id, traffic, events) in batches {
            let mut keys = EventKeys::default();
            for e in events {
                for key in keys.of(e) {
                    delta
                        .ads
                        .entry(key.clone())
                        .or_default()
                        .entry(e.day)
                        .or_default()
                        .add(e, *traffic);
                }
            }
            delta
                .batches
                .push(BatchRecord::new(id, 0, *traffic, events));
        }
        for d in delta.ads.values_mut().flat_map(|days| days.values_mut()) {
            d.union_of_hours();
        }
        delta
    }

    fn counters(impressions: u64, measurable: u64, invalid: u64, verified: u64) -> Counters {
        Counters {
            impressions,
            measurable,
            invalid,
            verified,
            video: VideoCounters::default(),
        }
    }

    #[test]
    fn what_an_event_adds_and_only_impressions_add_visitors() {
        let view = ev("ad-1", "u1", Kind::Viewable);
        let verified = Event {
            verified: true,
            ..view.clone()
        };
        let measured = ev("ad-1", "u1", Kind::Measurable);
        let of = Counters::of_event;
        assert_eq!(of(&view, Traffic::Valid), counters(1, 0, 0, 0));
        assert_eq!(of(&verified, Traffic::Valid), counters(1, 0, 0, 1));
        assert_eq!(of(&measured, Traffic::Valid), counters(0, 1, 0, 0));
        assert_eq!(of(&view, Traffic::Invalid), counters(0, 0, 1, 0));
        assert_eq!(of(&verified, Traffic::Invalid), counters(0, 0, 1, 0));
        assert_eq!(of(&measured, Traffic::Invalid), counters(0, 0, 1, 0));
        let mut day = DayCounts::default();
        day.add(&measured, Traffic::Valid);
        day.add(&verified, Traffic::Invalid);
        assert!(day.hours.get(0).unwrap().visitors.is_empty());
        day.add(&view, Traffic::Valid);
        day.add(&verified, Traffic::Valid);
        assert_eq!(day.counters, counters(2, 1, 1, 1));
        assert_eq!(day.hours.get(0).unwrap().visitors.estimate(), 1);
        assert!(day.visitors.is_empty(), "made from the hours' when asked");
        day.union_of_hours();
        assert_eq!(day.visitors.estimate(), 1);
    }

    #[test]
    fn video_kinds_add_their_counter_and_audible_is_a_part_of_impressions() {
        let of = Counters::of_event;
        let video = |kind| of(&ev("ad-v", "u1", kind), Traffic::Valid).video;
        let one = |i: usize| {
            let mut a = [0; 6];
            a[i] = 1;
            VideoCounters::from_array(a)
        };
        assert_eq!(video(Kind::VideoStart), one(0));
        assert_eq!(video(Kind::VideoQ25), one(1));
        assert_eq!(video(Kind::VideoQ50), one(2));
        assert_eq!(video(Kind::VideoQ75), one(3));
        assert_eq!(video(Kind::VideoComplete), one(4));
        for kind in [Kind::VideoStart, Kind::VideoComplete] {
            let c = of(&ev("ad-v", "u1", kind), Traffic::Valid);
            assert_eq!((c.impressions, c.measurable), (0, 0), "{kind:?}");
        }
        let audible = Event {
            audible: true,
            campaign_id: None,
            ..ev("ad-v", "u1", Kind::Viewable)
        };
        let c = of(&audible, Traffic::Valid);
        assert_eq!((c.impressions, c.video), (1, one(5)));
        // A bot's video events are invalid, nothing else.
        for kind in [Kind::VideoStart, Kind::VideoQ75] {
            assert_eq!(
                of(&ev("ad-v", "u1", kind), Traffic::Invalid),
                counters(0, 0, 1, 0)
            );
        }
        assert_eq!(of(&audible, Traffic::Invalid), counters(0, 0, 1, 0));
        // Progress events add no visitor.
        let mut day = DayCounts::default();
        day.add(&ev("ad-v", "u1", Kind::VideoStart), Traffic::Valid);
        assert!(day.hours.get(0).unwrap().visitors.is_empty());
        // Sums and the exactly-once subtraction carry the video counters.
        let started = Counters {
            video: one(0),
            ..Counters::default()
        };
        let mut sum = started;
        sum += started;
        assert_eq!(sum.video.starts, 2);
        assert_eq!(sum.saturating_sub(started), started);
        assert_eq!(started.saturating_sub(sum), Counters::default());
        assert!(!started.is_zero());
    }

    #[test]
    fn a_post_and_an_ad_of_one_id_are_counted_apart() {
        let post = Event {
            subject: Subject::Post,
            ..ev("x", "u1", Kind::Viewable)
        };
        let ad = ev("x", "u1", Kind::Viewable);
        let mut keys = EventKeys::default();
        assert_eq!(keys.of(&post), ["post/x"]);
        assert_eq!(keys.of(&ad), ["x"]);
        assert_eq!(post_of_key(&post_key("x")), Some("x"));
        assert_eq!(post_of_key("x"), None);
        let d = delta(&[("b1", Traffic::Valid, vec![post.clone(), ad, post])]);
        let keys: Vec<(&str, u64)> = d
            .updates(|_| Ok::<_, Infallible>(true))
            .unwrap()
            .iter()
            .map(|u| (u.key, u.counters.impressions))
            .collect();
        assert_eq!(keys, [("post/x", 2), ("x", 1)]);
        let shares: Vec<&str> = d.batches[0].counts.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(shares, ["post/x", "x"]);
    }

    #[test]
    fn an_event_counts_in_its_hour_and_its_campaign() {
        let day: Day = "2026-11-25".parse().unwrap();
        let in_campaign = |ad, user, hour: i64| Event {
            ts: day.start_ms() + hour * 3_600_000 + 59_999,
            campaign_id: Some(Cow::Borrowed("fall")),
            ..ev(ad, user, Kind::Viewable)
        };
        let mut keys = EventKeys::default();
        assert_eq!(
            keys.of(&in_campaign("ad-1", "u1", 7)),
            ["ad-1", "campaign/fall", "campaign/fall/ad-1"]
        );
        assert_eq!(campaign_of_key("campaign/fall"), Some("fall"));
        assert_eq!(campaign_of_key("campaign/fall/ad-1"), None);
        assert!(is_ad_key("ad-1") && !is_ad_key("campaign/fall"));
        assert!(!is_listed("post/p") && is_listed("campaign/fall/ad-1"));
        // One visitor on two ads of the campaign: two for the ads, one reach.
        let d = delta(&[(
            "b1",
            Traffic::Valid,
            vec![
                in_campaign("ad-1", "u1", 7),
                in_campaign("ad-2", "u1", 9),
                in_campaign("ad-2", "u2", 9),
            ],
        )]);
        let updates = d.updates(|_| Ok::<_, Infallible>(true)).unwrap();
        let of = |key: &str| updates.iter().find(|u| u.key == key).unwrap();
        let hours = |key: &str| -> Vec<(u8, u64, u64)> {
            of(key)
                .hours
                .iter()
                .map(|h| (h.hour, h.counters.impressions, h.visitors.estimate()))
                .collect()
        };
        assert_eq!(of("campaign/fall").counters.impressions, 3);
        assert_eq!(of("campaign/fall").visitors.estimate(), 2);
        assert_eq!(hours("campaign/fall"), [(7, 1, 1), (9, 2, 2)]);
        assert_eq!(hours("ad-2"), [(9, 2, 2)]);
        assert_eq!(of("campaign/fall/ad-2").counters.impressions, 2);
        // A second copy of the batch adds nothing to any of its keys or
        // hours.
        let d = delta(&[
            ("b1", Traffic::Valid, vec![in_campaign("ad-1", "u1", 7)]),
            ("b1", Traffic::Valid, vec![in_campaign("ad-1", "u9", 8)]),
        ]);
        let updates = d.updates(|_| Ok::<_, Infallible>(true)).unwrap();
        let total: u64 = updates.iter().map(|u| u.counters.impressions).sum();
        assert_eq!(total, 3, "the first copy's three keys, once each");
        for u in &updates {
            assert_eq!(u.visitors.estimate(), 1, "{}", u.key);
            let hours: Vec<(u8, u64, u64)> = u
                .hours
                .iter()
                .map(|h| (h.hour, h.counters.impressions, h.visitors.estimate()))
                .collect();
            assert_eq!(hours, [(7, 1, 1), (8, 0, 0)], "{}", u.key);
        }
    }

    #[test]
    fn visitors_come_from_the_copy_whose_counters_count() {
        let view = |ad, user| ev(ad, user, Kind::Viewable);
        // Two copies of b1 with different visitors (another edge's copy, or
        // a client that reused the id), and b2 beside them.
        let d = delta(&[
            (
                "b1",
                Traffic::Valid,
                vec![view("ad-1", "u1"), view("ad-2", "u1")],
            ),
            ("b2", Traffic::Valid, vec![view("ad-1", "u2")]),
            (
                "b1",
                Traffic::Valid,
                vec![view("ad-1", "u8"), view("ad-1", "u9")],
            ),
        ]);
        let expect = |users: &[&str]| {
            let mut s = Sketch::new();
            for u in users {
                s.insert(u.as_bytes());
            }
            s
        };
        let all = d.updates(|_| Ok::<_, Infallible>(true)).unwrap();
        assert_eq!(all[0].counters.impressions, 2, "the second b1 counts once");
        assert_eq!(*all[0].visitors, expect(&["u1", "u2"]));
        assert!(
            matches!(all[1].visitors, Cow::Borrowed(_)),
            "ad-2 lost no visitors: its sketch goes as it is"
        );
        // b1 was counted before (say by another edge): none of its copies'
        // visitors, on any (ad, day).
        let without_b1 = d
            .updates(|r| Ok::<_, Infallible>(r.batch_id != "b1"))
            .unwrap();
        assert_eq!(without_b1[0].counters.impressions, 1);
        assert_eq!(*without_b1[0].visitors, expect(&["u2"]));
        assert!(without_b1[1].visitors.is_empty());
        // Each share holds its own distinct visitors.
        let shares: Vec<u64> = d.batches[2]
            .counts
            .iter()
            .map(|c| c.visitors.estimate())
            .collect();
        assert_eq!(shares, [2]);
    }

    #[test]
    fn updates_leave_out_batches_not_counted_and_a_repeated_id_once() {
        let verified = |ad, user| Event {
            verified: true,
            ..ev(ad, user, Kind::Viewable)
        };
        let d = delta(&[
            (
                "b1",
                Traffic::Valid,
                vec![verified("ad-1", "u1"), ev("ad-2", "u1", Kind::Measurable)],
            ),
            (
                "bot",
                Traffic::Invalid,
                vec![ev("ad-1", "u9", Kind::Viewable)],
            ),
            ("b2", Traffic::Valid, vec![verified("ad-1", "u2")]),
            // b1 again in the same delta: counts once.
            ("b1", Traffic::Valid, vec![ev("ad-1", "u1", Kind::Viewable)]),
        ]);
        let mut asked = Vec::new();
        let updates = d
            .updates(|r| {
                asked.push(r.batch_id.clone());
                Ok::<_, Infallible>(r.batch_id != "b2")
            })
            .unwrap();
        assert_eq!(asked, ["b1", "bot", "b2"], "never asked twice for b1");
        let keys: Vec<(&str, Counters)> = updates.iter().map(|u| (u.key, u.counters)).collect();
        assert_eq!(
            keys,
            [
                ("ad-1", counters(1, 0, 1, 1)),
                ("ad-2", counters(0, 1, 0, 0))
            ]
        );
        // b2 is left out, and with it its visitor u2: only b1's u1 remains.
        assert_eq!(updates[0].visitors.estimate(), 1);

        let none = d.updates(|_| Ok::<_, Infallible>(false)).unwrap();
        assert!(none.iter().all(|u| u.counters.is_zero()));
        let failed: Result<_, &str> = d.updates(|_| Err("store down"));
        assert_eq!(failed.unwrap_err(), "store down");
    }
}
