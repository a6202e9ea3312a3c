//! Stats answers: stored days merged with pending deltas. No I/O; the
//! handlers fetch both halves and call in here.

use std::collections::BTreeMap;

use glimpse_hll::Sketch;
use glimpse_wire::api::{viewability_rate, AdSummary, DayStats, StatsResponse};
use glimpse_wire::{Day, DayRange};

use crate::aggregate::{AdDays, DayDelta};
use crate::store::StoredDay;

/// Merges the two halves into one delta per day.
fn merged(stored: Vec<StoredDay>, pending: AdDays) -> BTreeMap<Day, DayDelta> {
    let mut days: BTreeMap<Day, DayDelta> = stored
        .into_iter()
        .map(|s| {
            let delta = DayDelta {
                impressions: s.impressions,
                measurable: s.measurable,
                invalid: s.invalid,
                visitors: s.visitors,
            };
            (s.day, delta)
        })
        .collect();
    for (day, d) in pending {
        days.entry(day).or_default().merge(&d);
    }
    days
}

/// The answer of `GET /v1/ads/{ad_id}/stats`: every day of `range`, zeros
/// included, and `unique_visitors` as the union of the days' sketches.
pub fn ad_stats(
    ad_id: &str,
    range: DayRange,
    stored: Vec<StoredDay>,
    pending: AdDays,
) -> StatsResponse {
    let days = merged(stored, pending);
    let mut union = Sketch::new();
    let (mut impressions, mut measurable, mut invalid) = (0, 0, 0);
    let per_day = range
        .days()
        .map(|day| match days.get(&day) {
            Some(d) => {
                union.merge(&d.visitors);
                impressions += d.impressions;
                measurable += d.measurable;
                invalid += d.invalid;
                DayStats {
                    date: day,
                    impressions: d.impressions,
                    measurable: d.measurable,
                    unique_visitors: d.visitors.estimate(),
                    invalid: d.invalid,
                }
            }
            None => DayStats {
                date: day,
                impressions: 0,
                measurable: 0,
                unique_visitors: 0,
                invalid: 0,
            },
        })
        .collect();
    StatsResponse {
        ad_id: ad_id.to_owned(),
        from: range.from(),
        to: range.to(),
        impressions,
        measurable,
        unique_visitors: union.estimate(),
        viewability_rate: viewability_rate(impressions, measurable),
        invalid,
        days: per_day,
    }
}

/// One row of `GET /v1/ads`.
pub fn ad_summary(stats: &StatsResponse) -> AdSummary {
    AdSummary {
        ad_id: stats.ad_id.clone(),
        impressions: stats.impressions,
        measurable: stats.measurable,
        unique_visitors: stats.unique_visitors,
        viewability_rate: stats.viewability_rate,
        invalid: stats.invalid,
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
        let stored = vec![StoredDay {
            day: day("2026-11-23"),
            impressions: 2,
            measurable: 4,
            invalid: 5,
            visitors: sketch(&["a", "b"]),
        }];
        let mut pending = AdDays::new();
        pending.insert(
            day("2026-11-23"),
            DayDelta {
                impressions: 1,
                measurable: 1,
                invalid: 2,
                visitors: sketch(&["c"]),
            },
        );
        pending.insert(
            day("2026-11-25"),
            DayDelta {
                impressions: 3,
                measurable: 3,
                invalid: 0,
                visitors: sketch(&["a", "b", "c"]),
            },
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
        let summary = ad_summary(&s);
        assert_eq!((summary.impressions, summary.invalid), (6, 7));
    }

    #[test]
    fn no_data_is_zeros_and_a_null_rate() {
        let range = DayRange::single(day("2026-11-25"));
        let s = ad_stats("ad-x", range, vec![], AdDays::new());
        assert_eq!(
            (s.impressions, s.measurable, s.unique_visitors, s.invalid),
            (0, 0, 0, 0)
        );
        assert_eq!(s.viewability_rate, None);
        let json = serde_json::to_value(&s).unwrap();
        assert!(json["viewability_rate"].is_null());
        assert_eq!(json["days"][0]["date"], "2026-11-25");
        assert_eq!(json["invalid"], 0);
        assert_eq!(json["days"][0]["invalid"], 0);
    }
}
