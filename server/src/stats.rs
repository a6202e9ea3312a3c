//! Stats answers: stored days merged with pending ones. No I/O; the core
//! fetches both halves and calls in here. The one conversion from
//! [`DayCounts`] to the answers' fields.
//!
//! # One cut
//!
//! An answer counts every batch of this edge once, even while a sync lands
//! (on Redis, one (ad, day) at a time). The rule, kept by the core and the
//! stores together:
//!
//! 1. The core takes the pending deltas first ([`PendingDays`], each with its
//!    sequence number), then reads the store. A delta that is no longer
//!    pending had landed whole before the read began, so the read holds it.
//! 2. The store reads each (ad, day)'s counts together with the mark of
//!    which of this edge's deltas they hold ([`crate::store::Applied`]): atomically, in
//!    one redb read transaction (the mark is written in the transaction that
//!    applies the delta) or one Redis script call (the (ad, day)'s ledger
//!    entry of this edge, written by the step that adds the counts).
//! 3. [`ad_stats`] adds a pending delta's counts of a day only when the mark
//!    says the store does not hold them yet.
//!
//! So a delta is in the answer exactly once, from the store or from memory,
//! whichever it is in at the cut. Batches that another edge counted show as
//! that edge's syncs land: the cut is exact for this edge's own batches.

use std::collections::BTreeMap;

use glimpse_hll::Sketch;
use glimpse_wire::api::{
    frequency, viewability_rate, AdSummary, CampaignStatsResponse, CampaignSummary, DayStats,
    HourStats, PostStatsResponse, StatsResponse, VideoStats,
};
use glimpse_wire::{Day, DayRange};

use crate::aggregate::{PendingDays, PendingImpressions};
use crate::counts::{AdDays, Counters, DayCounts, VideoCounters};
use crate::store::{StoredDays, StoredViews};
use crate::tz::{UtcHour, Zone, ZoneError};

/// What a stats request asks for: the days of a zone, by day or by hour
/// too. Built, and the zone's offsets over the range checked, before
/// anything is read.
#[derive(Clone, Debug)]
pub(crate) struct Ask {
    range: DayRange,
    zone: Zone,
    hourly: bool,
    /// Each day of the range with the UTC hours it is made of.
    days: Vec<(Day, Vec<UtcHour>)>,
}

impl Ask {
    /// The days of `range` in `zone`, with their hours when `hourly`;
    /// refused when the zone's offset is not a whole number of hours on
    /// one of them.
    pub fn new(range: DayRange, zone: Zone, hourly: bool) -> Result<Ask, ZoneError> {
        let days = range
            .days()
            .map(|day| Ok((day, zone.day_hours(day)?)))
            .collect::<Result<_, ZoneError>>()?;
        Ok(Ask {
            range,
            zone,
            hourly,
            days,
        })
    }

    /// UTC days, by day.
    pub fn utc(range: DayRange) -> Ask {
        let days = range
            .days()
            .map(|day| (day, (0..24).map(|hour| UtcHour { day, hour }).collect()))
            .collect();
        Ask {
            range,
            zone: Zone::utc(),
            hourly: false,
            days,
        }
    }

    pub fn range(&self) -> DayRange {
        self.range
    }

    pub fn zone(&self) -> &Zone {
        &self.zone
    }

    /// The UTC days to read: the range itself in UTC, else a day more at
    /// each end, which holds every hour of its days.
    pub fn read_range(&self) -> DayRange {
        if self.zone.is_utc() {
            self.range
        } else {
            self.range.around()
        }
    }

    /// Whether the answer needs the hours' counts: hourly answers, and the
    /// days of any zone but UTC, which are sums of UTC hours.
    pub fn needs_hours(&self) -> bool {
        self.hourly || !self.zone.is_utc()
    }

    /// The same days and zone, by day only.
    pub fn daily(&self) -> Ask {
        Ask {
            hourly: false,
            ..self.clone()
        }
    }
}

/// One UTC hour's counts as an answer reads them.
#[derive(Clone, Debug, Default)]
pub(crate) struct HourTally {
    pub counters: Counters,
    /// `None` when the hour's sketch is past the hourly retention.
    pub visitors: Option<Sketch>,
}

/// The counts of one key an answer is made from: its days, and its hours
/// when the ask needs them ([`Ask::needs_hours`]).
#[derive(Clone, Debug, Default)]
pub(crate) struct KeyCounts {
    pub days: AdDays,
    pub hours: BTreeMap<UtcHour, HourTally>,
}

impl KeyCounts {
    /// The counts of a key's merged days, and of the hours they hold. The
    /// hours' sketches of days before `sketches_from` are past the hourly
    /// retention: a store may still hold them for a while, but an answer
    /// never depends on how soon it deletes them.
    pub fn new(days: AdDays, sketches_from: Day) -> KeyCounts {
        let mut hours = BTreeMap::new();
        for (day, d) in &days {
            for (hour, h) in d.hours.iter() {
                hours.insert(
                    UtcHour { day: *day, hour },
                    HourTally {
                        counters: h.counters,
                        visitors: (*day >= sketches_from).then(|| h.visitors.clone()),
                    },
                );
            }
        }
        KeyCounts { days, hours }
    }
}

/// A key's counts as one cut: the stored days, and the pending deltas'
/// days the stored ones do not hold yet (the rule of the module docs).
pub(crate) fn merged(stored: StoredDays, pending: Vec<PendingDays>) -> AdDays {
    let StoredDays { mut days, applied } = stored;
    for delta in pending {
        for (day, d) in delta.days {
            if !applied.holds(day, delta.seq) {
                days.entry(day).or_default().merge(&d);
            }
        }
    }
    days
}

/// The video object of an answer.
fn video_stats(v: VideoCounters) -> VideoStats {
    VideoStats {
        starts: v.starts,
        q25: v.q25,
        q50: v.q50,
        q75: v.q75,
        completes: v.completes,
        audible_impressions: v.audible,
    }
}

/// A union of visitor sketches that is unknown once any part is.
struct Union(Option<Sketch>);

impl Union {
    fn new() -> Union {
        Union(Some(Sketch::new()))
    }

    fn add(&mut self, part: &Sketch) {
        if let Some(union) = &mut self.0 {
            union.merge(part);
        }
    }

    /// Adds an hour's visitors: its sketch; nothing when it had no
    /// impressions; unknown when the store no longer keeps the sketch of an
    /// hour that had some.
    fn add_hour(&mut self, hour: &HourTally) {
        match &hour.visitors {
            Some(sketch) => self.add(sketch),
            None if hour.counters.impressions == 0 => {}
            None => self.0 = None,
        }
    }

    fn estimate(&self) -> Option<u64> {
        self.0.as_ref().map(Sketch::estimate)
    }
}

/// A key's counts shaped into an answer's rows.
struct Table {
    total: Counters,
    visitors: Option<u64>,
    days: Vec<DayStats>,
    hours: Option<Vec<HourStats>>,
    /// The days whose visitors are not known.
    unknown_days: Vec<Day>,
    /// Whether some hour's visitors are not known.
    unknown_hours: bool,
}

fn hour_stats(zone: &Zone, hour: UtcHour, counts: Option<&HourTally>) -> HourStats {
    let none = HourTally::default();
    let counts = counts.unwrap_or(&none);
    let mut visitors = Union::new();
    visitors.add_hour(counts);
    let c = counts.counters;
    HourStats {
        hour: zone.hour_label(hour),
        impressions: c.impressions,
        measurable: c.measurable,
        unique_visitors: visitors.estimate(),
        invalid: c.invalid,
        verified: c.verified,
    }
}

/// Every asked day (and hour) of `days`, zeros included. A UTC day is
/// its day bucket, visitors from the day's sketch; a day of another zone
/// is the sum of its UTC hours, visitors the union of their sketches. The
/// range's visitors are the union over it, never a sum.
fn table(counts: &KeyCounts, ask: &Ask, video: bool) -> Table {
    let none = DayCounts::default();
    let mut total = Counters::default();
    let mut range_visitors = Union::new();
    let mut hours = ask.hourly.then(Vec::new);
    let mut per_day = Vec::with_capacity(ask.days.len());
    let mut unknown_days = Vec::new();
    for (date, utc_hours) in &ask.days {
        let mut counters = Counters::default();
        let mut visitors = Union::new();
        if ask.zone.is_utc() {
            let d = counts.days.get(date).unwrap_or(&none);
            counters = d.counters;
            visitors.add(&d.visitors);
            range_visitors.add(&d.visitors);
        } else {
            for hour in utc_hours.iter().filter_map(|h| counts.hours.get(h)) {
                counters += hour.counters;
                visitors.add_hour(hour);
                range_visitors.add_hour(hour);
            }
        }
        if let Some(hours) = &mut hours {
            hours.extend(
                utc_hours
                    .iter()
                    .map(|h| hour_stats(&ask.zone, *h, counts.hours.get(h))),
            );
        }
        total += counters;
        let unique_visitors = visitors.estimate();
        if unique_visitors.is_none() {
            unknown_days.push(*date);
        }
        per_day.push(DayStats {
            date: *date,
            impressions: counters.impressions,
            measurable: counters.measurable,
            unique_visitors,
            invalid: counters.invalid,
            verified: counters.verified,
            video: video.then(|| video_stats(counters.video)),
        });
    }
    let unknown_hours = hours
        .as_ref()
        .is_some_and(|hours| hours.iter().any(|h| h.unique_visitors.is_none()));
    Table {
        total,
        visitors: range_visitors.estimate(),
        days: per_day,
        hours,
        unknown_days,
        unknown_hours,
    }
}

impl Table {
    /// What an answer says when some visitors are `null`, in words an
    /// advertiser can act on.
    fn visitors_note(&self, zone: &Zone, hourly_retention_days: u32) -> Option<String> {
        let kept = format!(
            "this edge keeps the visitor sketches of hours for {hourly_retention_days} days \
             (--hourly-retention-days), those of UTC days for its whole retention"
        );
        match (self.unknown_days.first(), self.unknown_days.last()) {
            (Some(first), Some(last)) => {
                let days = if first == last {
                    first.to_string()
                } else {
                    format!("{first} to {last}")
                };
                Some(format!(
                    "unique visitors are not known for {days}: a day of {} is the union of its \
                     UTC hours' visitors, and {kept}; ask with tz=UTC for those days' visitors",
                    zone.name()
                ))
            }
            _ => self
                .unknown_hours
                .then(|| format!("unique visitors are not known for some hours: {kept}")),
        }
    }
}

/// The answer of `GET /v1/ads/{ad_id}/stats` from the ad's merged days
/// ([`merged`]).
pub(crate) fn ad_stats(
    ad_id: &str,
    ask: &Ask,
    counts: &KeyCounts,
    hourly_retention_days: u32,
) -> StatsResponse {
    let t = table(counts, ask, true);
    StatsResponse {
        ad_id: ad_id.to_owned(),
        from: ask.range.from(),
        to: ask.range.to(),
        tz: ask.zone.name().to_owned(),
        impressions: t.total.impressions,
        measurable: t.total.measurable,
        unique_visitors: t.visitors,
        viewability_rate: viewability_rate(t.total.impressions, t.total.measurable),
        invalid: t.total.invalid,
        verified: t.total.verified,
        video: video_stats(t.total.video),
        visitors_note: t.visitors_note(&ask.zone, hourly_retention_days),
        days: t.days,
        hours: t.hours,
    }
}

/// The answer of `GET /v1/posts/{post_id}/stats`: an ad's, without the
/// video counters a post cannot have.
pub(crate) fn post_stats(
    post_id: &str,
    ask: &Ask,
    counts: &KeyCounts,
    hourly_retention_days: u32,
) -> PostStatsResponse {
    let t = table(counts, ask, false);
    PostStatsResponse {
        post_id: post_id.to_owned(),
        from: ask.range.from(),
        to: ask.range.to(),
        tz: ask.zone.name().to_owned(),
        impressions: t.total.impressions,
        measurable: t.total.measurable,
        unique_visitors: t.visitors,
        viewability_rate: viewability_rate(t.total.impressions, t.total.measurable),
        invalid: t.total.invalid,
        verified: t.total.verified,
        visitors_note: t.visitors_note(&ask.zone, hourly_retention_days),
        days: t.days,
        hours: t.hours,
    }
}

/// The answer of `GET /v1/campaigns/{campaign_id}/stats` from the
/// campaign's counts (its counts key `campaign/<id>`, whose sketches hold
/// the visitors of all its ads: the reach is their union) and its ads'
/// numbers.
pub(crate) fn campaign_stats(
    campaign_id: &str,
    ask: &Ask,
    counts: &KeyCounts,
    ads: Vec<AdSummary>,
    hourly_retention_days: u32,
) -> CampaignStatsResponse {
    let t = table(counts, ask, true);
    CampaignStatsResponse {
        campaign_id: campaign_id.to_owned(),
        from: ask.range.from(),
        to: ask.range.to(),
        tz: ask.zone.name().to_owned(),
        impressions: t.total.impressions,
        measurable: t.total.measurable,
        viewability_rate: viewability_rate(t.total.impressions, t.total.measurable),
        invalid: t.total.invalid,
        verified: t.total.verified,
        reach: t.visitors,
        frequency: frequency(t.total.impressions, t.visitors),
        visitors_note: t.visitors_note(&ask.zone, hourly_retention_days),
        days: t.days,
        hours: t.hours,
        ads,
    }
}

/// One row of `GET /v1/campaigns`.
pub(crate) fn campaign_summary(stats: &CampaignStatsResponse) -> CampaignSummary {
    CampaignSummary {
        campaign_id: stats.campaign_id.clone(),
        impressions: stats.impressions,
        measurable: stats.measurable,
        viewability_rate: stats.viewability_rate,
        invalid: stats.invalid,
        verified: stats.verified,
        reach: stats.reach,
        frequency: stats.frequency,
        ads: stats.ads.len() as u64,
    }
}

/// A post's views over all time: the stored total plus each pending
/// delta's impressions of the days whose stored counts do not hold that
/// delta yet (the same cut as [`ad_stats`]).
pub(crate) fn post_views(stored: &StoredViews, pending: &[PendingImpressions]) -> u64 {
    let pending: u64 = pending
        .iter()
        .flat_map(|delta| {
            delta
                .days
                .iter()
                .filter(|(day, _)| !stored.applied.holds(*day, delta.seq))
                .map(|(_, n)| n)
        })
        .sum();
    stored.views + pending
}

/// One row of `GET /v1/ads`.
pub(crate) fn ad_summary(stats: &StatsResponse) -> AdSummary {
    AdSummary {
        ad_id: stats.ad_id.clone(),
        impressions: stats.impressions,
        measurable: stats.measurable,
        unique_visitors: stats.unique_visitors,
        viewability_rate: stats.viewability_rate,
        invalid: stats.invalid,
        verified: stats.verified,
        video: stats.video,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counts::{AdDays, Hours};
    use crate::store::Applied;

    fn day(s: &str) -> Day {
        s.parse().unwrap()
    }

    /// The answer of UTC days, by day, from stored and pending counts.
    fn ad_stats(
        id: &str,
        range: DayRange,
        stored: StoredDays,
        pending: Vec<PendingDays>,
    ) -> StatsResponse {
        let counts = KeyCounts {
            days: merged(stored, pending),
            ..KeyCounts::default()
        };
        super::ad_stats(id, &Ask::utc(range), &counts, 35)
    }

    fn post_stats(
        id: &str,
        range: DayRange,
        stored: StoredDays,
        pending: Vec<PendingDays>,
    ) -> PostStatsResponse {
        let counts = KeyCounts {
            days: merged(stored, pending),
            ..KeyCounts::default()
        };
        super::post_stats(id, &Ask::utc(range), &counts, 35)
    }

    fn sketch(ids: &[&str]) -> Sketch {
        let mut s = Sketch::new();
        for id in ids {
            s.insert(id.as_bytes());
        }
        s
    }

    #[test]
    fn every_day_listed_and_uniques_are_a_union() {
        let range = DayRange::new(day("2026-11-23"), day("2026-11-25")).unwrap();
        let counts = |impressions, measurable, invalid, verified, visitors| DayCounts {
            counters: Counters {
                impressions,
                measurable,
                invalid,
                verified,
                video: VideoCounters::default(),
            },
            visitors,
            hours: Hours::default(),
        };
        let mut stored = AdDays::new();
        stored.insert(day("2026-11-23"), counts(2, 4, 5, 1, sketch(&["a", "b"])));
        let mut pending = AdDays::new();
        pending.insert(day("2026-11-23"), counts(1, 1, 2, 1, sketch(&["c"])));
        pending.insert(
            day("2026-11-25"),
            counts(3, 3, 0, 2, sketch(&["a", "b", "c"])),
        );
        let stored = StoredDays {
            days: stored,
            applied: Applied::default(),
        };
        let s = ad_stats(
            "ad-1",
            range,
            stored,
            vec![PendingDays {
                seq: 1,
                days: pending,
            }],
        );
        assert_eq!(s.days.len(), 3);
        assert_eq!(
            s.days
                .iter()
                .map(|d| d.date.to_string())
                .collect::<Vec<_>>(),
            ["2026-11-23", "2026-11-24", "2026-11-25"]
        );
        assert_eq!((s.days[0].impressions, s.days[0].measurable), (3, 5));
        assert_eq!(
            s.days.iter().map(|d| d.invalid).collect::<Vec<_>>(),
            [7, 0, 0],
            "invalid per day: stored plus pending"
        );
        assert_eq!(s.invalid, 7);
        assert_eq!(
            (s.days[1].impressions, s.days[1].unique_visitors),
            (0, Some(0))
        );
        assert_eq!(s.days[0].unique_visitors, Some(3));
        assert_eq!(s.days[2].unique_visitors, Some(3));
        // a, b, c over the range: a union of 3, where a sum of days gives 6.
        assert_eq!(s.unique_visitors, Some(3));
        assert_eq!((s.impressions, s.measurable), (6, 8));
        assert_eq!(
            s.viewability_rate,
            Some(0.75),
            "invalid events change no rate"
        );
        assert_eq!(
            s.days.iter().map(|d| d.verified).collect::<Vec<_>>(),
            [2, 0, 2],
            "verified per day: stored plus pending"
        );
        assert_eq!(s.verified, 4);
        let summary = ad_summary(&s);
        assert_eq!((summary.impressions, summary.invalid), (6, 7));
        assert_eq!(summary.verified, 4);
    }

    #[test]
    fn pending_deltas_the_store_holds_are_left_out_day_by_day() {
        let (d1, d2) = (day("2026-11-24"), day("2026-11-25"));
        let range = DayRange::new(d1, d2).unwrap();
        let one = |impressions, visitor: &str| DayCounts {
            counters: Counters {
                impressions,
                ..Counters::default()
            },
            visitors: sketch(&[visitor]),
            hours: Hours::default(),
        };
        let pending = |seq, a, b| PendingDays {
            seq,
            days: AdDays::from([(d1, one(a, "a")), (d2, one(b, "b"))]),
        };
        // Deltas 7 and 8 pending; the store holds delta 7 whole, and of
        // delta 8 only the first day (a sync landing one (ad, day) at a
        // time), with 100 impressions from earlier deltas on each day.
        let stored_days = AdDays::from([(d1, one(100 + 1 + 10, "a")), (d2, one(100 + 2, "b"))]);
        let landing = StoredDays {
            days: stored_days.clone(),
            applied: Applied {
                everywhere: 0,
                by_day: [(d1, 8), (d2, 7)].into(),
            },
        };
        let s = ad_stats(
            "ad-1",
            range,
            landing,
            vec![pending(7, 1, 2), pending(8, 10, 20)],
        );
        let per_day: Vec<u64> = s.days.iter().map(|d| d.impressions).collect();
        assert_eq!(per_day, [111, 122], "each delta once on each day");
        // The embedded store's mark covers every day.
        let whole = StoredDays {
            days: stored_days,
            applied: Applied {
                everywhere: 7,
                ..Applied::default()
            },
        };
        let s = ad_stats(
            "ad-1",
            range,
            whole,
            vec![pending(7, 1, 2), pending(8, 10, 20)],
        );
        let per_day: Vec<u64> = s.days.iter().map(|d| d.impressions).collect();
        assert_eq!(per_day, [121, 122]);
        // Nothing held: every pending delta adds.
        let s = ad_stats(
            "ad-1",
            range,
            StoredDays::default(),
            vec![pending(7, 1, 2), pending(8, 10, 20)],
        );
        assert_eq!((s.impressions, s.unique_visitors), (33, Some(2)));
    }

    #[test]
    fn post_views_add_the_pending_deltas_the_store_does_not_hold() {
        let (d1, d2) = (day("2026-11-24"), day("2026-11-25"));
        let pending = vec![
            PendingImpressions {
                seq: 7,
                days: vec![(d1, 1), (d2, 2)],
            },
            PendingImpressions {
                seq: 8,
                days: vec![(d1, 10), (d2, 20)],
            },
        ];
        // Redis, a sync landing: delta 8 on d1 and delta 7 on d2 are in the
        // total already.
        let landing = StoredViews {
            views: 100 + 1 + 10 + 2,
            applied: Applied {
                everywhere: 0,
                by_day: [(d1, 8), (d2, 7)].into(),
            },
        };
        assert_eq!(post_views(&landing, &pending), 100 + 33);
        // The embedded store's mark covers every day.
        let whole = StoredViews {
            views: 100 + 3,
            applied: Applied {
                everywhere: 7,
                ..Applied::default()
            },
        };
        assert_eq!(post_views(&whole, &pending), 133);
        assert_eq!(post_views(&StoredViews::default(), &pending), 33);
        assert_eq!(post_views(&StoredViews::default(), &[]), 0);
    }

    #[test]
    fn video_totals_and_post_answers() {
        let d = day("2026-11-25");
        let range = DayRange::single(d);
        let video = VideoCounters::from_array([4, 3, 2, 1, 1, 2]);
        let stored = StoredDays {
            days: AdDays::from([(
                d,
                DayCounts {
                    counters: Counters {
                        impressions: 5,
                        video,
                        ..Counters::default()
                    },
                    visitors: sketch(&["a"]),
                    hours: Hours::default(),
                },
            )]),
            applied: Applied::default(),
        };
        let s = ad_stats("vid", range, stored.clone(), Vec::new());
        let want = VideoStats {
            starts: 4,
            q25: 3,
            q50: 2,
            q75: 1,
            completes: 1,
            audible_impressions: 2,
        };
        assert_eq!((s.video, s.days[0].video), (want, Some(want)));
        assert_eq!(ad_summary(&s).video, want);
        let p = post_stats("p1", range, stored, Vec::new());
        assert_eq!(
            (p.post_id.as_str(), p.impressions, p.unique_visitors),
            ("p1", 5, Some(1))
        );
        assert_eq!(p.days[0].video, None);
        let json = serde_json::to_value(&p).unwrap();
        assert!(json.get("video").is_none() && json["days"][0].get("video").is_none());
    }

    #[test]
    fn no_data_is_zeros_and_a_null_rate() {
        let range = DayRange::single(day("2026-11-25"));
        let s = ad_stats("ad-x", range, StoredDays::default(), Vec::new());
        assert_eq!(
            (s.impressions, s.measurable, s.unique_visitors, s.invalid),
            (0, 0, Some(0), 0)
        );
        assert_eq!(s.viewability_rate, None);
        let json = serde_json::to_value(&s).unwrap();
        assert!(json["viewability_rate"].is_null());
        assert_eq!(json["days"][0]["date"], "2026-11-25");
        assert_eq!(json["invalid"], 0);
        assert_eq!(
            (
                json["verified"].as_u64(),
                json["days"][0]["verified"].as_u64()
            ),
            (Some(0), Some(0))
        );
        assert_eq!(json["days"][0]["invalid"], 0);
    }
}
