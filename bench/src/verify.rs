//! The exactness check: what the store holds against what was accepted.
//!
//! Per ad, over the days the run spanned: impressions and measurable equal the
//! accepted counts exactly, and unique visitors equal the estimate of a
//! reference [`glimpse_hll::Sketch`] fed the visitor ids that were sent (the
//! edge's sketches are bit-compatible with Redis, so the estimates agree
//! exactly, not approximately).

use std::fmt;
use std::net::SocketAddr;

use glimpse_tests::redis::Reply;
use glimpse_wire::api::StatsResponse;
use glimpse_wire::DayRange;

use crate::gen::{ad_id, Tally};
use crate::http1::Client;
use crate::redis_target::RedisTarget;

/// The outcome of a check.
#[derive(Debug, Default)]
pub struct Verdict {
    pub ads_checked: u32,
    pub impressions: u64,
    pub measurable: u64,
    pub mismatches: Vec<String>,
}

impl Verdict {
    pub fn exact(&self) -> bool {
        self.mismatches.is_empty()
    }

    fn compare(&mut self, ad: &str, what: &str, stored: u64, expected: u64) {
        if stored != expected {
            self.mismatches
                .push(format!("{ad}: {what} stored {stored}, sent {expected}"));
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.exact() {
            write!(
                f,
                "exact: yes ({} ads, {} impressions, {} measurable, unique visitors equal to the reference sketch)",
                self.ads_checked, self.impressions, self.measurable
            )
        } else {
            write!(
                f,
                "exact: NO ({} of {} ads differ; first: {})",
                self.mismatches.len(),
                self.ads_checked,
                self.mismatches[0]
            )
        }
    }
}

/// What one ad that received events should hold.
struct Expected {
    ad: u32,
    id: String,
    impressions: u64,
    measurable: u64,
}

impl Verdict {
    /// The ads that received events, with what each should hold; adds them
    /// to the verdict's totals.
    fn expect(&mut self, tally: &Tally) -> Vec<Expected> {
        let mut expected = Vec::new();
        for ad in 0..tally.mix().ads {
            let (impressions, measurable) = tally.counts(ad);
            if impressions + measurable == 0 {
                continue;
            }
            self.ads_checked += 1;
            self.impressions += impressions;
            self.measurable += measurable;
            expected.push(Expected {
                ad,
                id: ad_id(ad),
                impressions,
                measurable,
            });
        }
        expected
    }
}

/// Checks an edge through `GET /v1/ads/{ad}/stats?from=..&to=..`.
pub async fn edge(target: SocketAddr, tally: &Tally, days: DayRange) -> Verdict {
    let mut verdict = Verdict::default();
    let mut client = match Client::connect(target).await {
        Ok(c) => c,
        Err(e) => {
            verdict.mismatches.push(format!("cannot connect: {e}"));
            return verdict;
        }
    };
    for Expected {
        ad,
        id,
        impressions,
        measurable,
    } in verdict.expect(tally)
    {
        let path = format!("/v1/ads/{id}/stats?from={}&to={}", days.from(), days.to());
        let stats: StatsResponse = match client.request("GET", &path, None, &[]).await {
            Ok(r) if r.status == 200 => match serde_json::from_slice(r.body) {
                Ok(s) => s,
                Err(e) => {
                    verdict
                        .mismatches
                        .push(format!("{id}: bad stats body: {e}"));
                    continue;
                }
            },
            Ok(r) => {
                let body = String::from_utf8_lossy(r.body).into_owned();
                verdict
                    .mismatches
                    .push(format!("{id}: status {}: {body}", r.status));
                continue;
            }
            Err(e) => {
                verdict.mismatches.push(format!("{id}: {e}"));
                continue;
            }
        };
        let uniques = tally.reference_sketch(ad).estimate();
        verdict.compare(&id, "impressions", stats.impressions, impressions);
        verdict.compare(&id, "measurable", stats.measurable, measurable);
        // UTC days keep their own sketches: their visitors are always known.
        let visitors = stats.unique_visitors.unwrap_or_default();
        verdict.compare(&id, "unique visitors", visitors, uniques);
    }
    verdict
}

/// The baseline's Redis keys of one ad and day.
pub fn baseline_keys(ad: &str, day: &str) -> [String; 3] {
    [
        format!("bl:{{{ad}:{day}}}:impressions"),
        format!("bl:{{{ad}:{day}}}:measurable"),
        format!("bl:{{{ad}:{day}}}:visitors"),
    ]
}

fn int_of(reply: &Reply) -> u64 {
    match reply {
        Reply::Bulk(Some(b)) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(u64::MAX),
        Reply::Bulk(None) => 0,
        Reply::Int(n) => *n as u64,
        _ => u64::MAX,
    }
}

/// Checks the write-through baseline's keys in Redis directly, on the node
/// of each key's slot when `redis` is a cluster.
pub fn baseline(redis: &RedisTarget, tally: &Tally, days: DayRange) -> Verdict {
    let mut verdict = Verdict::default();
    for Expected {
        ad,
        id,
        impressions,
        measurable,
    } in verdict.expect(tally)
    {
        let (mut i, mut m) = (0, 0);
        let mut sketches = Vec::new();
        for day in days.days() {
            let [ki, km, kv] = baseline_keys(&id, &day.to_string());
            i += int_of(&redis.get(&ki));
            m += int_of(&redis.get(&km));
            sketches.push(kv);
        }
        let uniques = int_of(&redis.pfcount(&sketches));
        verdict.compare(&id, "impressions", i, impressions);
        verdict.compare(&id, "measurable", m, measurable);
        verdict.compare(
            &id,
            "unique visitors",
            uniques,
            tally.reference_sketch(ad).estimate(),
        );
    }
    verdict
}

/// Impressions plus measurable events stored for ads `0..ads` over `days`,
/// through the edge's stats route: what a generator that only knows how
/// many events were accepted (wrk) is checked against.
pub async fn edge_total(target: SocketAddr, ads: u32, days: DayRange) -> Result<u64, String> {
    let mut client = Client::connect(target)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let mut total = 0;
    for ad in 0..ads {
        let id = ad_id(ad);
        let path = format!("/v1/ads/{id}/stats?from={}&to={}", days.from(), days.to());
        let r = client
            .request("GET", &path, None, &[])
            .await
            .map_err(|e| format!("{id}: {e}"))?;
        if r.status != 200 {
            return Err(format!("{id}: status {}", r.status));
        }
        let stats: StatsResponse =
            serde_json::from_slice(r.body).map_err(|e| format!("{id}: bad stats body: {e}"))?;
        total += stats.impressions + stats.measurable;
    }
    Ok(total)
}

/// The same total from the baseline's Redis keys.
pub fn baseline_total(redis: &RedisTarget, ads: u32, days: DayRange) -> u64 {
    let mut total = 0;
    for ad in 0..ads {
        for day in days.days() {
            let [ki, km, _] = baseline_keys(&ad_id(ad), &day.to_string());
            total += int_of(&redis.get(&ki));
            total += int_of(&redis.get(&km));
        }
    }
    total
}
