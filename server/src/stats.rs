//! Stats answers: stored days merged with pending ones. No I/O; the core
//! fetches both halves and calls in here. The one conversion from
//! [`DayCounts`] to the answers' fields.

use glimpse_hll::Sketch;
use glimpse_wire::api::{viewability_rate, AdSummary, DayStats, StatsResponse};
use glimpse_wire::{Day, DayRange};

use crate::counts::{AdDays, Counters, DayCounts};

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
    }
}

/// The answer of `GET /v1/ads/{ad_id}/stats`: every day of `range`, zeros
/// included, and `unique_visitors` as the union of the days' sketches.
pub(crate) fn ad_stats(
    ad_id: &str,
    range: DayRange,
    stored: AdDays,
    pending: AdDays,
) -> StatsResponse {
    let mut days = stored;
    for (day, d) in pending {
        days.entry(day).or_default().merge(&d);
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
        days: per_day,
    }
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let s = ad_stats("ad-1", range, stored, pending);
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
    fn no_data_is_zeros_and_a_null_rate() {
        let range = DayRange::single(day("2026-11-25"));
        let s = ad_stats("ad-x", range, AdDays::new(), AdDays::new());
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
