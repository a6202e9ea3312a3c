//! The Redis store with real edge processes and a real redis-server: exact
//! counters, registers identical to PFADD, many edges, duplicate batches.

use std::time::{Duration, Instant};

use glimpse_tests::edge::{redis_flags, Edge};
use glimpse_tests::redis::{RedisServer, Reply};
use glimpse_wire::api::{AdsResponse, StatsResponse, UniqueVisitorsResponse};

use crate::load::{
    assert_same_registers, batch_claims, counter_field, counters, counters_key, day_of, now_ms,
    pfadd_reference, pfcount, post_all, sketch_at, uv_key, visitors, wait_for, Load,
};

const SYNC_DEADLINE: Duration = Duration::from_secs(60);

fn edge_on(redis_url: &str, dir: &std::path::Path, extra: &[&str]) -> Edge {
    let mut args = redis_flags(redis_url);
    args.extend(["--sync-interval", "200ms"].map(String::from));
    args.extend(extra.iter().map(|s| s.to_string()));
    Edge::start(dir, &args)
}

/// Checks every (ad, day) of `load` in Redis: counters exact, registers equal
/// to a PFADD-built key of the same ids, and the edge's stats equal to
/// PFCOUNT of that key.
fn check_against_references(redis: &RedisServer, edges: &[&Edge], load: &Load) {
    let mut conn = redis.connect();
    for ((ad, day), exp) in &load.expected {
        let what = format!("{ad} {day}");
        assert_eq!(
            counters(&mut conn, &counters_key(ad, day)),
            (exp.impressions, exp.measurable),
            "{what}: counters"
        );
        assert_eq!(
            counter_field(&mut conn, &counters_key(ad, day), "invalid"),
            exp.invalid,
            "{what}: invalid"
        );
        let reference = format!("test:ref:{ad}:{day}");
        pfadd_reference(&mut conn, &reference, &exp.visitors);
        let ours = sketch_at(&mut conn, &uv_key(ad, day));
        assert_same_registers(&ours, &sketch_at(&mut conn, &reference), &what);
        let count = pfcount(&mut conn, &[&reference]);
        for edge in edges {
            // An edge's stats may include, until its next sync, a batch that
            // another edge counted first: they converge, they never stay off.
            wait_for(
                SYNC_DEADLINE,
                &format!("{what}: the edge's stats equal PFCOUNT of the reference"),
                || {
                    edge.get_json::<StatsResponse>(&format!(
                        "/v1/ads/{ad}/stats?from={day}&to={day}"
                    ))
                },
                |s| {
                    (s.impressions, s.measurable, s.unique_visitors, s.invalid)
                        == (exp.impressions, exp.measurable, Some(count), exp.invalid)
                },
            );
            let uv: UniqueVisitorsResponse =
                edge.get_json(&format!("/v1/ads/{ad}/unique-visitors?date={day}"));
            assert_eq!((uv.unique_visitors, uv.source.as_str()), (count, "redis"));
        }
    }
}

/// Waits until Redis holds the expected counters of every (ad, day).
fn wait_synced(redis: &RedisServer, load: &Load) {
    let mut conn = redis.connect();
    for ((ad, day), exp) in &load.expected {
        wait_for(
            SYNC_DEADLINE,
            &format!("{ad} {day} is synced"),
            || {
                let key = counters_key(ad, day);
                (
                    counters(&mut conn, &key),
                    counter_field(&mut conn, &key, "invalid"),
                )
            },
            |c| *c == ((exp.impressions, exp.measurable), exp.invalid),
        );
    }
}

#[test]
fn exact_from_0_to_1_000_000_visitors_through_http() {
    let started = Instant::now();
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let edge = edge_on(&redis.url(), dir.path(), &[]);
    let ts = now_ms() - 1_000;
    let day = day_of(ts);
    let mut load = Load::default();
    let sizes = [0usize, 1, 100, 3_000, 20_000, 1_000_000];
    for n in sizes {
        let ad = format!("exact-{n}");
        load.add(&format!("b{n}"), visitors(&ad, "e", 0..n, ts));
    }
    // A size of 0: measurable events only, so the day exists with no visitor.
    load.add(
        "b0-meas",
        (0..3).map(|i| crate::load::Ev {
            id: format!("only-m{i}"),
            ad_id: "exact-0".into(),
            user_id: format!("visitor-{i}"),
            viewable: false,
            ts,
        }),
    );
    let (accepted, duplicates) = post_all(
        std::slice::from_ref(&edge.base_url),
        &load.batches,
        4,
        |_| vec![0],
    );
    let (imp, meas) = load.totals();
    assert_eq!((accepted, duplicates), (imp + meas, 0));
    let posted = started.elapsed();

    // The same batches again: duplicates all, whether the edge still holds
    // them or they are synced already.
    let again: Vec<_> = load.batches.iter().step_by(97).cloned().collect();
    let (accepted, duplicates) =
        post_all(std::slice::from_ref(&edge.base_url), &again, 2, |_| vec![0]);
    assert_eq!(accepted, 0);
    assert!(duplicates > 0);

    wait_synced(&redis, &load);
    check_against_references(&redis, &[&edge], &load);
    let ads: AdsResponse = edge.get_json(&format!("/v1/ads?from={day}&to={day}"));
    let ids: Vec<&str> = ads.ads.iter().map(|a| a.ad_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "exact-0",
            "exact-1",
            "exact-100",
            "exact-1000000",
            "exact-20000",
            "exact-3000"
        ]
    );
    // Synced counts survive the edge: a new edge on the same Redis reads them.
    assert!(edge.terminate().success());
    let other_dir = tempfile::tempdir().unwrap();
    let other = edge_on(&redis.url(), other_dir.path(), &[]);
    let s: StatsResponse =
        other.get_json(&format!("/v1/ads/exact-1000000/stats?from={day}&to={day}"));
    assert_eq!(s.impressions, 1_000_000);
    eprintln!(
        "exactness: posted {} events in {posted:?}, all checks done in {:?}",
        imp + meas,
        started.elapsed()
    );
}

/// `n` edges on `redis`, each on its own data directory, and their URLs.
fn edges_on(redis: &RedisServer, n: usize) -> (Vec<tempfile::TempDir>, Vec<Edge>, Vec<String>) {
    let dirs: Vec<_> = (0..n).map(|_| tempfile::tempdir().unwrap()).collect();
    let edges: Vec<Edge> = dirs
        .iter()
        .map(|d| edge_on(&redis.url(), d.path(), &[]))
        .collect();
    let urls = edges.iter().map(|e| e.base_url.clone()).collect();
    (dirs, edges, urls)
}

#[test]
fn three_edges_under_concurrent_load_and_batches_sent_twice_count_once() {
    let redis = RedisServer::start();
    let (_dirs, edges, urls) = edges_on(&redis, 3);
    let now = now_ms() - 1_000;
    let yesterday = now - 86_400_000;
    let mut load = Load::default();
    // Two ads on two days, visitors overlapping across ads and days.
    load.add("a-today", visitors("many-a", "at", 0..12_000, now));
    load.add("a-yday", visitors("many-a", "ay", 6_000..15_000, yesterday));
    load.add("b-today", visitors("many-b", "bt", 3_000..9_000, now));
    // Every fifth batch goes to two edges at once; the rest round-robin.
    let (accepted, duplicates) = post_all(&urls, &load.batches, 6, |i| {
        if i % 5 == 0 {
            vec![i % 3, (i + 1) % 3]
        } else {
            vec![i % 3]
        }
    });
    let (imp, meas) = load.totals();
    let twice: u64 = load
        .batches
        .iter()
        .step_by(5)
        .map(|(_, body)| body.matches("\"kind\"").count() as u64)
        .sum();
    // Each doubled batch went to two different edges, and an edge turns
    // away only the batches it has itself (ingest asks Redis nothing): both
    // took it, and only the sync-time batch claims keep it from counting
    // twice.
    assert_eq!((accepted, duplicates), (imp + meas + twice, 0));
    wait_synced(&redis, &load);
    check_against_references(&redis, &edges.iter().collect::<Vec<_>>(), &load);

    // The union over both days equals a multi-key PFCOUNT of the references.
    let mut conn = redis.connect();
    let (d0, d1) = (day_of(yesterday), day_of(now));
    let keys = [
        format!("test:ref:many-a:{d0}"),
        format!("test:ref:many-a:{d1}"),
    ];
    let union = pfcount(&mut conn, &[&keys[0], &keys[1]]);
    for e in &edges {
        let s: StatsResponse = e.get_json(&format!("/v1/ads/many-a/stats?from={d0}&to={d1}"));
        assert_eq!(s.unique_visitors, Some(union));
    }

    // Retention: a day's keys expire 400 days (the default) after the day
    // starts; the ledger lives 48 h.
    let day_start = glimpse_wire::Day::from_epoch_ms(yesterday)
        .unwrap()
        .start_ms();
    let expires = day_start + 400 * 86_400_000;
    for key in [
        uv_key("many-a", &d0),
        counters_key("many-a", &d0),
        format!("glimpse:adz:{{{d0}}}"),
    ] {
        let at = conn.cmd(&[b"PEXPIRETIME".as_slice(), key.as_bytes()]).int();
        assert_eq!(at, expires, "{key}");
    }
    let ledger = format!("glimpse:x:{{many-a:{d0}}}");
    let ttl = conn.cmd(&[b"PTTL".as_slice(), ledger.as_bytes()]).int();
    assert!(ttl > 71 * 3_600_000 && ttl <= 72 * 3_600_000, "{ttl}");

    // Batch 1 went to edge 1 only, which synced it. Sent there again, it is
    // a duplicate at once (the edge's local index of synced batches). The
    // other edges never had it and ask no one at ingest: they take it, may
    // show it until their next sync, whose claim finds it counted and
    // leaves it out. Then it is gone everywhere, and a duplicate at once.
    let (_, body) = &load.batches[1];
    let events = body.matches("\"kind\"").count() as u64;
    let (status, answer) = edges[1].post_batch(body);
    assert_eq!((status, answer["accepted"].as_u64()), (202, Some(0)));
    for e in [&edges[0], &edges[2]] {
        let (status, answer) = e.post_batch(body);
        assert_eq!((status, answer["accepted"].as_u64()), (202, Some(events)));
    }
    for e in &edges {
        wait_for(
            SYNC_DEADLINE,
            "the second copy of batch 1 is left out of every edge's stats",
            || e.get_json::<StatsResponse>(&format!("/v1/ads/many-a/stats?from={d1}&to={d1}")),
            |s| (s.impressions, s.measurable) == (12_000, 3_000),
        );
        let (status, answer) = e.post_batch(body);
        assert_eq!((status, answer["accepted"].as_u64()), (202, Some(0)));
    }
    for e in edges {
        assert!(e.terminate().success());
    }
    let after = counters(&mut conn, &counters_key("many-a", &d1));
    assert_eq!(after, (12_000, 3_000), "nothing changed at shutdown");
}

/// Another edge that took a batch 47 h ago claimed it in the claim hash of
/// that day, one or two windows before today's. An edge that takes the batch
/// now reads every window from 49 h before it accepted it, so it finds that
/// claim and leaves the batch out; a batch no one claimed, synced beside
/// it, counts.
#[test]
fn a_claim_another_edge_made_two_days_ago_keeps_the_batch_from_counting_again() {
    let OneEdge {
        redis: _redis,
        _dir,
        edge,
        mut conn,
        ..
    } = OneEdge::start();
    let ts = now_ms() - 47 * 3_600_000;
    let window = ts.div_euclid(86_400_000);
    let theirs = "other-edge:4294967297";
    // The claim goes into that window's hash of every shard, so the test
    // need not compute the batch's shard; the edge reads only its own.
    for shard in 0..16 {
        let key = format!("glimpse:claims:{{c{shard}}}:{window}");
        conn.cmd(&["HSET", &key, "claimed-elsewhere", theirs])
            .not_error();
    }
    for (batch_id, ad) in [
        ("claimed-elsewhere", "old-claim"),
        ("unclaimed", "new-claim"),
    ] {
        let body = serde_json::json!({"batch_id": batch_id, "events": [
            {"id": "e1", "ad_id": ad, "user_id": batch_id, "kind": "viewable", "ts": ts},
        ]});
        let (status, answer) = edge.post_batch(&body.to_string());
        assert_eq!(
            (status, answer["accepted"].as_u64()),
            (202, Some(1)),
            "{answer}"
        );
    }
    // Posted after it, the unclaimed batch syncs in the same delta or a later one.
    let day = day_of(ts);
    wait_for(
        SYNC_DEADLINE,
        "the unclaimed batch counts",
        || counters(&mut conn, &counters_key("new-claim", &day)),
        |c| *c == (1, 0),
    );
    assert_eq!(
        counters(&mut conn, &counters_key("old-claim", &day)),
        (0, 0)
    );
    // The edge's stats add its delta while the delta's sync is still
    // finishing (the steps land before the delta leaves memory), so they
    // are read until that sync is done.
    wait_for(
        SYNC_DEADLINE,
        "the claimed batch is left out of the edge's stats too",
        || {
            let stats: StatsResponse =
                edge.get_json(&format!("/v1/ads/old-claim/stats?from={day}&to={day}"));
            stats.impressions
        },
        |impressions| *impressions == 0,
    );
    let claims = batch_claims(&mut conn);
    assert_eq!(claims["claimed-elsewhere"].0, theirs);
    let (ours, key) = &claims["unclaimed"];
    assert_ne!(ours, theirs);
    let today = now_ms().div_euclid(86_400_000);
    assert!(
        key.ends_with(&format!(":{today}")) || key.ends_with(&format!(":{}", today - 1)),
        "a new claim goes into the window of its sync: {key}"
    );
    assert!(edge.terminate().success());
}

#[test]
fn invalid_traffic_counts_once_through_redis_and_reads_back() {
    let redis = RedisServer::start();
    let (_dirs, edges, urls) = edges_on(&redis, 2);
    let now = now_ms() - 1_000;
    let day = day_of(now);
    let mut load = Load::default();
    // People and bots on one ad (the bots' visitors overlap the people's
    // and must not reach the sketch), and an ad only bots saw.
    load.add("people", visitors("mixed", "p", 0..3_000, now));
    load.add_invalid("bots", visitors("mixed", "b", 2_000..4_000, now));
    load.add_invalid("bots-only", visitors("bots-only", "o", 0..700, now));
    // Every batch to both edges: each takes its copy (neither has synced
    // it), and one copy is left out at sync time by the batch claims, bot
    // batches included.
    let (accepted, duplicates) = post_all(&urls, &load.batches, 4, |_| vec![0, 1]);
    let events: u64 = load
        .expected
        .values()
        .map(|e| e.impressions + e.measurable + e.invalid)
        .sum();
    assert_eq!((accepted, duplicates), (2 * events, 0));
    wait_synced(&redis, &load);
    check_against_references(&redis, &edges.iter().collect::<Vec<_>>(), &load);
    let bots_only = &load.expected[&("bots-only".to_owned(), day.clone())];
    assert_eq!(
        (bots_only.impressions, bots_only.invalid),
        (0, 700 + 175),
        "the load is what the test means"
    );
    let mut conn = redis.connect();
    assert_eq!(
        conn.cmd(&[b"EXISTS".as_slice(), uv_key("bots-only", &day).as_bytes()])
            .int(),
        0,
        "bots add no visitors"
    );

    // A new edge reads the invalid counts back from Redis alone.
    for e in edges {
        assert!(e.terminate().success());
    }
    let other_dir = tempfile::tempdir().unwrap();
    let other = edge_on(&redis.url(), other_dir.path(), &[]);
    let ads: AdsResponse = other.get_json(&format!("/v1/ads?from={day}&to={day}"));
    let listed: Vec<(&str, u64, u64)> = ads
        .ads
        .iter()
        .map(|a| (a.ad_id.as_str(), a.impressions, a.invalid))
        .collect();
    let mixed = &load.expected[&("mixed".to_owned(), day.clone())];
    assert_eq!(
        listed,
        [
            ("bots-only", 0, bots_only.invalid),
            ("mixed", mixed.impressions, mixed.invalid)
        ]
    );
    let s: StatsResponse = other.get_json(&format!("/v1/ads/mixed/stats?from={day}&to={day}"));
    assert_eq!(
        (s.invalid, s.days[0].invalid),
        (mixed.invalid, mixed.invalid)
    );
}

/// Batch `i` of the verified test: 4 viewable events the browser verified,
/// 2 it did not, and a measurable one marked verified (which the wire
/// ignores); with `webdriver`, the batch is invalid traffic.
fn verified_batch(i: usize, ts: i64, webdriver: bool) -> String {
    let event = |j: usize, kind: &str, verified: bool| {
        serde_json::json!({"id": format!("e{j}"), "ad_id": "verified", "user_id": format!("v-{i}-{j}"),
            "kind": kind, "ts": ts, "verified": verified})
    };
    let events: Vec<_> = (0..7)
        .map(|j| match j {
            0..4 => event(j, "viewable", true),
            4..6 => event(j, "viewable", false),
            _ => event(j, "measurable", true),
        })
        .collect();
    serde_json::json!({"batch_id": format!("verified-{i}"), "webdriver": webdriver, "events": events})
        .to_string()
}

#[test]
fn verified_impressions_count_once_through_a_replay_and_retries() {
    let redis = RedisServer::start();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ts = now_ms() - 1_000;
    let day = day_of(ts);
    // 30 batches of people, 5 of a driven browser.
    let batches: Vec<String> = (0..35).map(|i| verified_batch(i, ts, i >= 30)).collect();
    // The first run of edge A never syncs: its batches reach Redis only by
    // the replay of its log after it is killed.
    let mut never = redis_flags(&redis.url());
    never.extend(["--sync-interval", "1h"].map(String::from));
    let a = Edge::start(dir_a.path(), &never);
    for body in &batches {
        let (status, answer) = a.post_batch(body);
        assert_eq!(
            (status, answer["accepted"].as_u64()),
            (202, Some(7)),
            "{answer}"
        );
    }
    a.kill_hard();
    let a = edge_on(&redis.url(), dir_a.path(), &[]);
    let b = edge_on(&redis.url(), dir_b.path(), &[]);
    // Every batch again: edge A knows them from its log, edge B takes its
    // copy and leaves it out at its sync, by the claims A's replay made.
    for body in &batches {
        let (status, answer) = a.post_batch(body);
        assert_eq!(
            (status, answer["duplicates"].as_u64()),
            (202, Some(7)),
            "{answer}"
        );
        let (status, answer) = b.post_batch(body);
        assert_eq!(
            (status, answer["accepted"].as_u64()),
            (202, Some(7)),
            "{answer}"
        );
    }
    let (impressions, verified, invalid) = (30 * 6, 30 * 4, 5 * 7);
    let stats = |edge: &Edge| -> StatsResponse {
        edge.get_json(&format!("/v1/ads/verified/stats?from={day}&to={day}"))
    };
    let pending_keys = |edge: &Edge| -> u64 {
        let (status, text) = edge.get_raw("/metrics").unwrap();
        assert_eq!(status, 200, "{text}");
        text.lines()
            .find_map(|l| l.strip_prefix("glimpse_pending_keys ")?.parse().ok())
            .unwrap_or_else(|| panic!("no glimpse_pending_keys in {text}"))
    };
    wait_for(
        SYNC_DEADLINE,
        "both edges synced everything",
        || (pending_keys(&a), pending_keys(&b)),
        |p| *p == (0, 0),
    );
    // Whichever edge claimed a batch first counted it; the other left it out.
    assert_eq!(
        (stats(&a).verified, stats(&b).verified),
        (verified, verified)
    );
    let mut conn = redis.connect();
    let key = counters_key("verified", &day);
    assert_eq!(
        (
            counters(&mut conn, &key),
            counter_field(&mut conn, &key, "verified"),
            counter_field(&mut conn, &key, "invalid"),
        ),
        ((impressions, 30), verified, invalid)
    );
    for e in [a, b] {
        assert!(e.terminate().success());
    }
    // A new edge reads them back from Redis alone, in every answer.
    let dir_c = tempfile::tempdir().unwrap();
    let c = edge_on(&redis.url(), dir_c.path(), &[]);
    let s = stats(&c);
    assert_eq!(
        (s.impressions, s.verified, s.days[0].verified, s.invalid),
        (impressions, verified, verified, invalid)
    );
    let ads: AdsResponse = c.get_json(&format!("/v1/ads?from={day}&to={day}"));
    assert_eq!(ads.ads[0].verified, verified);
    assert!(c.terminate().success());
}

/// `GET /v1/ads` reads a key's ads by prefix from each day's sorted-set
/// index, and folds in the plain sets earlier versions kept (written here
/// by hand, as an edge of that version would, before and after the new
/// edge starts: a rolling upgrade). A key that reads a few ads of a day of
/// 10,000 costs Redis a few ids' worth of output, not the day's.
#[test]
fn ad_listing_reads_by_prefix_and_folds_in_old_day_sets() {
    let redis = RedisServer::start();
    let now = now_ms();
    let (today, yesterday) = (day_of(now), day_of(now - 86_400_000));
    let old_set = |day: &str| format!("glimpse:ads:{{{day}}}");
    let index = |day: &str| format!("glimpse:adz:{{{day}}}");
    let mut conn = redis.connect();
    for (day, ads) in [
        (&today, ["acme-old", "globex-old"]),
        (&yesterday, ["acme-y", "globex-y"]),
    ] {
        let key = old_set(day);
        conn.cmd(&["SADD", &key, ads[0], ads[1]]).int();
        conn.cmd(&["PEXPIRE", &key, "259200000"]).int();
    }
    let bulk: Vec<String> = (0..10_000).map(|i| format!("zz-bulk-{i:05}")).collect();
    let mut sadd = vec!["SADD".to_owned(), old_set(&today)];
    sadd.extend(bulk.iter().cloned());
    assert_eq!(conn.cmd(&sadd).int(), 10_000);

    let dir = tempfile::tempdir().unwrap();
    let keys_file = dir.path().join("keys.txt");
    std::fs::write(
        &keys_file,
        "acme-reader-key-0001 acme-\nall-reader-key-00001 *\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let keys_arg = keys_file.to_str().unwrap();
    let edge = edge_on(
        &redis.url(),
        &data,
        &["--api-keys-file", keys_arg, "--stats-cache", "0s"],
    );
    let events: Vec<String> = ["acme-new", "globex-new"]
        .iter()
        .enumerate()
        .map(|(i, ad)| {
            format!(
                r#"{{"id":"e{i}","ad_id":"{ad}","user_id":"u{i}","kind":"measurable","ts":{now}}}"#
            )
        })
        .collect();
    let body = format!(
        r#"{{"batch_id":"listing-1","events":[{}]}}"#,
        events.join(",")
    );
    assert_eq!(edge.post_batch(&body).0, 202);
    wait_for(
        SYNC_DEADLINE,
        "the new ads in today's index",
        || conn.cmd(&["ZSCORE", &index(&today), "globex-new"]),
        |score| matches!(score, Reply::Bulk(Some(_))),
    );

    let list = |key: &str| -> Vec<String> {
        let path = format!("/v1/ads?from={yesterday}&to={today}");
        let auth = format!("Bearer {key}");
        let (status, text) = edge
            .get_with_headers(&path, &[("Authorization", &auth)])
            .unwrap();
        assert_eq!(status, 200, "{text}");
        let ads: AdsResponse = serde_json::from_str(&text).unwrap();
        ads.ads.into_iter().map(|a| a.ad_id).collect()
    };
    assert_eq!(
        list("acme-reader-key-0001"),
        ["acme-new", "acme-old", "acme-y"]
    );
    let all = list("all-reader-key-00001");
    assert_eq!(
        all[..7],
        [
            "acme-new",
            "acme-old",
            "acme-y",
            "globex-new",
            "globex-old",
            "globex-y",
            &bulk[0]
        ]
    );
    let output_bytes = |conn: &mut glimpse_tests::redis::Conn| -> i64 {
        let info = conn.cmd(&["INFO", "stats"]);
        let info = String::from_utf8_lossy(info.bytes()).into_owned();
        info.lines()
            .find_map(|l| {
                l.strip_prefix("total_net_output_bytes:")?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no total_net_output_bytes in {info}"))
    };
    let before = output_bytes(&mut conn);
    assert_eq!(
        list("acme-reader-key-0001"),
        ["acme-new", "acme-old", "acme-y"]
    );
    let sent = output_bytes(&mut conn) - before;
    // The day's ids alone are 170,000 bytes; the answer is three ids, plus
    // the reply to the first INFO.
    assert!(sent < 20_000, "Redis sent {sent} bytes for a 3-ad listing");
    // Both old sets are now part of their day's index, which kept the
    // day's expiry.
    for day in [&today, &yesterday] {
        assert_eq!(conn.cmd(&["EXISTS", &old_set(day)]).int(), 0, "{day}");
        assert_eq!(
            conn.cmd(&["TYPE", &index(day)]),
            Reply::Status("zset".into()),
            "{day}"
        );
        assert!(conn.cmd(&["PTTL", &index(day)]).int() > 0, "{day}");
    }

    // An edge of the old version adds to the old set again.
    conn.cmd(&["SADD", &old_set(&today), "acme-late"]).int();
    assert_eq!(
        list("acme-reader-key-0001"),
        ["acme-late", "acme-new", "acme-old", "acme-y"]
    );
    assert!(edge.terminate().success());
}

/// One edge on a fresh Redis, a connection to that Redis, and a time a
/// second ago with its day.
struct OneEdge {
    redis: RedisServer,
    _dir: tempfile::TempDir,
    edge: Edge,
    conn: glimpse_tests::redis::Conn,
    ts: i64,
    day: String,
}

impl OneEdge {
    fn start() -> Self {
        let redis = RedisServer::start();
        let dir = tempfile::tempdir().unwrap();
        let edge = edge_on(&redis.url(), dir.path(), &[]);
        let conn = redis.connect();
        let ts = now_ms() - 1_000;
        OneEdge {
            redis,
            _dir: dir,
            edge,
            conn,
            ts,
            day: day_of(ts),
        }
    }
}

#[test]
fn a_key_of_another_type_holds_the_counts_back_until_it_is_gone_then_they_count_once() {
    let OneEdge {
        redis,
        _dir,
        edge,
        mut conn,
        ts,
        day,
    } = OneEdge::start();
    // Written by hand with the wrong types: the counters hash as a string,
    // the sketch as a hash, the ledger as a string. Each step must fail
    // before it counts.
    let (counters_at, sketch_at_key) = (counters_key("typed-1", &day), uv_key("typed-2", &day));
    let ledger_at = format!("glimpse:x:{{typed-3:{day}}}");
    conn.cmd(&["SET", &counters_at, "by hand"]).ok();
    conn.cmd(&["HSET", &sketch_at_key, "f", "by hand"])
        .not_error();
    conn.cmd(&["SET", &ledger_at, "by hand"]).ok();
    let mut load = Load::default();
    load.add("t1", visitors("typed-1", "e", 0..40, ts));
    load.add("t2", visitors("typed-2", "e", 0..40, ts));
    load.add("t3", visitors("typed-3", "e", 0..40, ts));
    post_all(
        std::slice::from_ref(&edge.base_url),
        &load.batches,
        1,
        |_| vec![0],
    );
    wait_for(
        SYNC_DEADLINE,
        "a sync of the day has failed on the wrong types",
        || edge.get_raw("/metrics").unwrap().1,
        |m| {
            m.lines().any(|l| {
                l.starts_with("glimpse_store_errors_total{operation=\"apply\"} ")
                    && !l.ends_with(" 0")
            })
        },
    );
    // Nothing of the ad with the wrong ledger counted meanwhile.
    assert_eq!(counters(&mut conn, &counters_key("typed-3", &day)), (0, 0));
    conn.cmd(&["DEL", &counters_at, &sketch_at_key, &ledger_at])
        .not_error();
    wait_synced(&redis, &load);
    // Retried steps counted once: counters exact, sketches equal to PFADD.
    check_against_references(&redis, &[&edge], &load);
}

/// How many times Redis has run `command` (`INFO commandstats`).
fn command_calls(conn: &mut glimpse_tests::redis::Conn, command: &str) -> u64 {
    let info = conn.cmd(&["INFO", "commandstats"]);
    let text = String::from_utf8_lossy(info.bytes()).into_owned();
    let prefix = format!("cmdstat_{command}:calls=");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

#[test]
fn sketches_replaced_whole_stay_exact_while_others_read_and_write_the_keys() {
    let OneEdge {
        redis,
        _dir,
        edge,
        mut conn,
        ts,
        day,
    } = OneEdge::start();
    let ad = "whole";
    let key = uv_key(ad, &day);
    let mut load = Load::default();
    let round = |load: &mut Load, n: usize| {
        let sent = load.batches.len();
        load.add(
            &format!("r{n}"),
            visitors(ad, &format!("r{n}"), n * 4_000..(n + 1) * 4_000, ts),
        );
        post_all(
            std::slice::from_ref(&edge.base_url),
            &load.batches[sent..],
            2,
            |_| vec![0],
        );
        wait_synced(&redis, load);
    };

    // First the keys are new (SET), then this edge alone writes them: it
    // replaces each with the value it knows, never a PFMERGE.
    round(&mut load, 0);
    let merges = command_calls(&mut conn, "pfmerge");
    round(&mut load, 1);
    assert_eq!(
        command_calls(&mut conn, "pfmerge"),
        merges,
        "a lone writer merges nothing"
    );

    // Now another client reads the key (PFCOUNT rewrites the header's
    // cached count) and writes it (PFADD): the edge's next steps find a
    // value they did not write and merge into it.
    let mut foreign = Vec::new();
    for n in 2..5 {
        pfcount(&mut conn, &[&key]);
        let id = format!("someone-else-{n}");
        conn.cmd(&["PFADD", &key, &id]).not_error();
        foreign.push(id);
        round(&mut load, n);
    }
    assert!(
        command_calls(&mut conn, "pfmerge") > merges,
        "the changed key was merged into"
    );

    // The key holds every visitor the edge sent and every one PFADD added.
    let mut all = load.expected[&(ad.to_owned(), day.clone())]
        .visitors
        .clone();
    all.extend(foreign);
    pfadd_reference(&mut conn, "test:ref:whole", &all);
    assert_same_registers(
        &sketch_at(&mut conn, &key),
        &sketch_at(&mut conn, "test:ref:whole"),
        "the day's sketch",
    );
    assert!(edge.terminate().success());
}
