//! Hours, time zones and campaigns with real processes: an edge on a real
//! redis-server and one on the embedded store, checked against what was sent
//! and against PFCOUNT of PFADD-built reference keys of the same ids.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use glimpse_tests::edge::{redis_flags, Edge};
use glimpse_tests::redis::{Conn, RedisServer};
use glimpse_wire::api::{CampaignStatsResponse, StatsResponse};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde_json::json;

use crate::load::{counters, counters_key, day_of, now_ms, pfadd_reference, pfcount, wait_for};

const HOUR_MS: i64 = 3_600_000;
const SYNC_DEADLINE: Duration = Duration::from_secs(60);
const CAMPAIGN: &str = "an-fall";
const AD_1: &str = "an-ad-1";
const AD_2: &str = "an-ad-2";

/// One viewable impression that was sent.
#[derive(Clone, Debug)]
struct Sent {
    ad: &'static str,
    user: String,
    ts: i64,
}

/// Impressions spread over the last 40 hours: several per hour, visitors
/// repeating within an hour and across hours, and `shared` on both ads.
fn traffic(now: i64) -> Vec<Sent> {
    let mut sent = Vec::new();
    for (k, hours_ago) in [1i64, 5, 11, 20, 29, 40].into_iter().enumerate() {
        let ts = now - hours_ago * HOUR_MS;
        for i in 0..(k + 1) * 7 {
            sent.push(Sent {
                ad: AD_1,
                user: format!("v{}", i % (k + 4)),
                ts,
            });
        }
    }
    for hours_ago in [2i64, 20] {
        for i in 0..9 {
            sent.push(Sent {
                ad: AD_2,
                user: format!("w{i}"),
                ts: now - hours_ago * HOUR_MS,
            });
        }
        sent.push(Sent {
            ad: AD_2,
            user: "v1".to_owned(),
            ts: now - hours_ago * HOUR_MS,
        });
    }
    sent
}

fn post(edge: &Edge, sent: &[Sent]) {
    for (b, chunk) in sent.chunks(40).enumerate() {
        let events: Vec<_> = chunk
            .iter()
            .enumerate()
            .map(|(i, s)| {
                json!({"id": format!("e{i}"), "ad_id": s.ad, "user_id": s.user,
                       "kind": "viewable", "ts": s.ts, "campaign_id": CAMPAIGN})
            })
            .collect();
        let body = json!({"batch_id": format!("an-b{b}"), "events": events}).to_string();
        let (status, answer) = edge.post_batch(&body);
        assert_eq!(
            (status, answer["accepted"].as_u64()),
            (202, Some(chunk.len() as u64))
        );
    }
}

/// The local date of `ts` in `zone`, `YYYY-MM-DD`: the reference, computed
/// with the zone database directly.
fn local_day(ts: i64, zone: &TimeZone) -> String {
    Timestamp::from_millisecond(ts)
        .unwrap()
        .to_zoned(zone.clone())
        .date()
        .to_string()
}

/// PFCOUNT of a reference key PFADDed with `users`.
fn reference_count(conn: &mut Conn, name: &str, users: &BTreeSet<&str>) -> u64 {
    let key = format!("test:ref:{name}");
    let ids: Vec<String> = users.iter().map(|u| u.to_string()).collect();
    pfadd_reference(conn, &key, &ids);
    pfcount(conn, &[&key])
}

/// Everything the issue asks of an edge's answers, on whichever store.
fn check(edge: &Edge, conn: &mut Conn, sent: &[Sent], on_redis: bool) {
    let first = sent.iter().map(|s| s.ts).min().unwrap();
    let last = sent.iter().map(|s| s.ts).max().unwrap();
    // Hourly counts and visitors, UTC, equal what was sent in each hour.
    let mut by_hour: BTreeMap<(String, i64), Vec<&Sent>> = BTreeMap::new();
    for s in sent.iter().filter(|s| s.ad == AD_1) {
        by_hour
            .entry((day_of(s.ts), s.ts.rem_euclid(86_400_000) / HOUR_MS))
            .or_default()
            .push(s);
    }
    let days: BTreeSet<String> = by_hour.keys().map(|(d, _)| d.clone()).collect();
    for day in &days {
        let answer: StatsResponse = edge.get_json(&format!(
            "/v1/ads/{AD_1}/stats?from={day}&to={day}&granularity=hour"
        ));
        let hours = answer.hours.unwrap();
        assert_eq!(hours.len(), 24);
        for (hour, stats) in hours.iter().enumerate() {
            let events = by_hour.get(&(day.clone(), hour as i64));
            let users: BTreeSet<&str> = events
                .into_iter()
                .flatten()
                .map(|s| s.user.as_str())
                .collect();
            let what = format!("{day} hour {hour}");
            assert_eq!(
                stats.impressions,
                events.map_or(0, Vec::len) as u64,
                "{what}"
            );
            let want = reference_count(conn, &what, &users);
            assert_eq!(stats.unique_visitors, Some(want), "{what}");
            if on_redis && !users.is_empty() {
                // An operator can PFCOUNT the hour's key.
                let key = format!("glimpse:uv:{{{AD_1}:{day}}}:{hour:02}");
                assert_eq!(pfcount(conn, &[&key]), want, "PFCOUNT {key}");
            }
        }
    }
    // Days of New York and Tokyo: the sums of their UTC hours, visitors as
    // PFCOUNT of the day's ids.
    for name in ["America/New_York", "Asia/Tokyo"] {
        let zone = TimeZone::get(name).unwrap();
        let (from, to) = (local_day(first, &zone), local_day(last, &zone));
        let answer: StatsResponse = edge.get_json(&format!(
            "/v1/ads/{AD_1}/stats?from={from}&to={to}&tz={name}"
        ));
        assert_eq!(answer.tz, name);
        let mut total = 0;
        for d in &answer.days {
            let of_day: Vec<&Sent> = sent
                .iter()
                .filter(|s| s.ad == AD_1 && local_day(s.ts, &zone) == d.date.to_string())
                .collect();
            let users: BTreeSet<&str> = of_day.iter().map(|s| s.user.as_str()).collect();
            let what = format!("{name} {}", d.date);
            assert_eq!(d.impressions, of_day.len() as u64, "{what}");
            assert_eq!(
                d.unique_visitors,
                Some(reference_count(conn, &what, &users)),
                "{what}"
            );
            total += d.impressions;
        }
        assert_eq!(total, sent.iter().filter(|s| s.ad == AD_1).count() as u64);
    }
    // The campaign's reach is the union of its ads' visitors: `v1`, on both
    // ads, counts once.
    let (from, to) = (day_of(first), day_of(last));
    let uri = format!("/v1/campaigns/{CAMPAIGN}/stats?from={from}&to={to}");
    let campaign: CampaignStatsResponse = edge.get_json(&uri);
    let everyone: BTreeSet<&str> = sent.iter().map(|s| s.user.as_str()).collect();
    let reach = reference_count(conn, "reach", &everyone);
    assert_eq!(campaign.impressions, sent.len() as u64);
    assert_eq!(campaign.reach, Some(reach));
    // JSON carries the ratio to the last digit or so.
    let frequency = campaign.frequency.unwrap();
    assert!(
        (frequency - sent.len() as f64 / reach as f64).abs() < 1e-9,
        "{frequency}"
    );
    let ads: Vec<(&str, u64)> = campaign
        .ads
        .iter()
        .map(|a| (a.ad_id.as_str(), a.impressions))
        .collect();
    let of = |ad| sent.iter().filter(|s| s.ad == ad).count() as u64;
    assert_eq!(ads, [(AD_1, of(AD_1)), (AD_2, of(AD_2))]);
    if on_redis {
        for d in &campaign.days {
            let key = format!("glimpse:uv:{{campaign/{CAMPAIGN}:{}}}", d.date);
            assert_eq!(
                Some(pfcount(conn, &[&key])),
                d.unique_visitors,
                "PFCOUNT {key}"
            );
        }
    }
    // The CSV holds the JSON's numbers, a row per day.
    let (status, csv) = edge.get_raw(&format!("{uri}&format=csv")).unwrap();
    assert_eq!(status, 200);
    let rows: Vec<Vec<String>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect();
    assert_eq!(rows.len(), campaign.days.len());
    for (row, d) in rows.iter().zip(&campaign.days) {
        assert_eq!(row[0], CAMPAIGN);
        assert_eq!(row[1], d.date.to_string());
        assert_eq!(row[2].parse::<u64>().unwrap(), d.impressions);
        assert_eq!(row[4].parse::<u64>().ok(), d.unique_visitors);
    }
}

#[test]
fn hours_zones_and_campaign_reach_match_what_was_sent_on_both_stores() {
    let redis = RedisServer::start();
    let mut conn = redis.connect();
    let now = now_ms() - 60_000;
    let sent = traffic(now);
    for on_redis in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let mut args = if on_redis {
            redis_flags(&redis.url())
        } else {
            Vec::new()
        };
        args.extend(["--sync-interval", "200ms"].map(String::from));
        let edge = Edge::start(dir.path(), &args);
        post(&edge, &sent);
        if on_redis {
            // Checked once the store holds every day, so the answers come
            // from Redis, not from the edge's memory.
            for day in sent.iter().map(|s| day_of(s.ts)).collect::<BTreeSet<_>>() {
                let want = sent
                    .iter()
                    .filter(|s| s.ad == AD_1 && day_of(s.ts) == day)
                    .count() as u64;
                wait_for(
                    SYNC_DEADLINE,
                    &format!("{AD_1} {day} is in Redis"),
                    || counters(&mut conn, &counters_key(AD_1, &day)).0,
                    |n| *n == want,
                );
            }
        }
        check(&edge, &mut conn, &sent, on_redis);
    }
}
