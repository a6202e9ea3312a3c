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

use glimpse_hll::Sketch;
use glimpse_wire::api::{
    viewability_rate, AdSummary, DayStats, PostStatsResponse, StatsResponse, VideoStats,
};
use glimpse_wire::{Day, DayRange};

use crate::aggregate::{PendingDays, PendingImpressions};
use crate::counts::{Counters, DayCounts, VideoCounters};
use crate::store::{StoredDays, StoredViews};

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

/// One day of an answer.
fn day_stats(date: Day, counts: &DayCounts) -> DayStats {
    let c = counts.counters;
    DayStats {
        date,
        impressions: c.impressions,
        measurable: c.measurable,
        unique_visitors: counts.visitors.estimate(),
        invalid: c.invalid,
        verified: c.verified,
        video: Some(video_stats(c.video)),
    }
}

/// The answer of `GET /v1/ads/{ad_id}/stats`: every day of `range`, zeros
/// included, and `unique_visitors` as the union of the days' sketches. The
/// pending deltas' days that `stored` already holds are left out (the cut
/// rule of the module docs).
pub(crate) fn ad_stats(
    ad_id: &str,
    range: DayRange,
    stored: StoredDays,
    pending: Vec<PendingDays>,
) -> StatsResponse {
    let StoredDays { mut days, applied } = stored;
    for delta in pending {
        for (day, d) in delta.days {
            if !applied.holds(day, delta.seq) {
                days.entry(day).or_default().merge(&d);
            }
        }
    }
    let none = DayCounts::default();
    let mut union = Sketch::new();
    let mut total = Counters::default();
    let per_day = range
        .days()
        .map(|day| {
            let counts = days.get(&day).unwrap_or(&none);
            union.merge(&counts.visitors);
            total += counts.counters;
            day_stats(day, counts)
        })
        .collect();
    StatsResponse {
        ad_id: ad_id.to_owned(),
        from: range.from(),
        to: range.to(),
        impressions: total.impressions,
        measurable: total.measurable,
        unique_visitors: union.estimate(),
        viewability_rate: viewability_rate(total.impressions, total.measurable),
        invalid: total.invalid,
        verified: total.verified,
        video: video_stats(total.video),
        days: per_day,
    }
}

/// The answer of `GET /v1/posts/{post_id}/stats`: [`ad_stats`] of the
/// post's counts, without the video counters a post cannot have.
pub(crate) fn post_stats(
    post_id: &str,
    range: DayRange,
    stored: StoredDays,
    pending: Vec<PendingDays>,
) -> PostStatsResponse {
    let s = ad_stats(post_id, range, stored, pending);
    PostStatsResponse {
        post_id: s.ad_id,
        from: s.from,
        to: s.to,
        impressions: s.impressions,
        measurable: s.measurable,
        unique_visitors: s.unique_visitors,
        viewability_rate: s.viewability_rate,
        invalid: s.invalid,
        verified: s.verified,
        days: s
            .days
            .into_iter()
            .map(|d| DayStats { video: None, ..d })
            .collect(),
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
    use crate::counts::AdDays;
    use crate::store::Applied;

    fn day(s: &str) -> Day {
        s.parse().unwrap()
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
        assert_eq!((s.days[1].impressions, s.days[1].unique_visitors), (0, 0));
        assert_eq!(s.days[0].unique_visitors, 3);
        assert_eq!(s.days[2].unique_visitors, 3);
        // a, b, c over the range: a union of 3, where a sum of days gives 6.
        assert_eq!(s.unique_visitors, 3);
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
        assert_eq!((s.impressions, s.unique_visitors), (33, 2));
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
            ("p1", 5, 1)
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
            (0, 0, 0, 0)
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
