//! Post views and video counters with real edge processes: two edges on one
//! real Redis answer the same `/v1/views` and the same video stats, with a
//! batch sent to both counted once; the embedded store keeps post totals and
//! video counters exact across a flushed stop and a SIGKILL (log replay).

use std::time::Duration;

use glimpse_tests::edge::{redis_cluster_flags, redis_flags, wait_for_value, Edge};
use glimpse_tests::redis::{RedisCluster, RedisServer, Reply};
use glimpse_wire::api::{AdsResponse, StatsResponse, VideoStats, ViewsResponse};
use serde_json::{json, Value};

use crate::load::now_ms;

const DEADLINE: Duration = Duration::from_secs(60);

/// `views` views of `post` by users `from..from + views`, each with its
/// measurable event, in one batch.
fn post_views(batch_id: &str, post: &str, from: usize, views: usize, ts: i64) -> String {
    let events: Vec<Value> = (from..from + views)
        .flat_map(|i| {
            ["measurable", "viewable"].map(|kind| {
                json!({"id": format!("{kind}-{i}"), "post_id": post,
                       "user_id": format!("u{i}"), "kind": kind, "ts": ts})
            })
        })
        .collect();
    json!({"batch_id": batch_id, "events": events}).to_string()
}

/// `plays` plays of video ad `ad`: each viewable (the first `audible` of
/// them unmuted), started and through its quartiles; the first `completes`
/// to the end.
fn video_plays(
    batch_id: &str,
    ad: &str,
    plays: usize,
    completes: usize,
    audible: usize,
    ts: i64,
) -> String {
    let mut events = Vec::new();
    for i in 0..plays {
        let user = format!("{batch_id}-u{i}");
        let mut viewable = json!({"id": format!("v{i}"), "ad_id": ad, "user_id": user,
                                  "kind": "viewable", "ts": ts});
        if i < audible {
            viewable["audible"] = json!(true);
        }
        events.push(viewable);
        let mut kinds = vec![
            "measurable",
            "video_start",
            "video_q25",
            "video_q50",
            "video_q75",
        ];
        if i < completes {
            kinds.push("video_complete");
        }
        for kind in kinds {
            events.push(
                json!({"id": format!("{kind}-{i}"), "ad_id": ad, "user_id": user,
                               "kind": kind, "ts": ts}),
            );
        }
    }
    json!({"batch_id": batch_id, "events": events}).to_string()
}

fn accept(edge: &Edge, body: &str) -> Value {
    let (status, answer) = edge.post_batch(body);
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["rejected"], json!([]), "{answer}");
    answer
}

fn views_of(edge: &Edge, ids: &str) -> ViewsResponse {
    edge.get_json(&format!("/v1/views?ids={ids}"))
}

fn video_of(edge: &Edge, ad: &str) -> (u64, VideoStats) {
    let s: StatsResponse = edge.get_json(&format!("/v1/ads/{ad}/stats"));
    (s.impressions, s.video)
}

fn views(pairs: &[(&str, u64)]) -> ViewsResponse {
    ViewsResponse {
        views: pairs.iter().map(|(id, n)| (id.to_string(), *n)).collect(),
    }
}

#[test]
fn two_edges_on_one_redis_answer_equal_views_and_video_stats() {
    let redis = RedisServer::start();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let edges: Vec<Edge> = dirs
        .iter()
        .map(|dir| {
            let mut args = redis_flags(&redis.url());
            args.extend(["--sync-interval", "200ms", "--stats-cache", "0s"].map(String::from));
            Edge::start(dir.path(), &args)
        })
        .collect();
    let ts = now_ms() - 1_000;
    accept(&edges[0], &post_views("p-a", "p1", 0, 30, ts));
    accept(&edges[1], &post_views("p-b", "p1", 30, 12, ts));
    accept(&edges[1], &post_views("p-c", "p2", 0, 5, ts));
    // A client retrying against the other edge: the same batch on both.
    let retried = post_views("p-d", "p1", 100, 8, ts);
    accept(&edges[0], &retried);
    accept(&edges[1], &retried);
    // An ad named like a post: its impressions are never views.
    let ad = json!({"batch_id": "ad-p1", "events": [
        {"id": "e", "ad_id": "p1", "user_id": "u", "kind": "viewable", "ts": ts}]});
    accept(&edges[0], &ad.to_string());
    accept(&edges[0], &video_plays("v-a", "vid-1", 6, 4, 2, ts));
    accept(&edges[1], &video_plays("v-b", "vid-1", 3, 1, 1, ts));
    let video_retried = video_plays("v-c", "vid-1", 2, 2, 0, ts);
    accept(&edges[0], &video_retried);
    accept(&edges[1], &video_retried);

    let want_views = views(&[("p1", 30 + 12 + 8), ("p2", 5), ("p3", 0)]);
    let want_video = (
        6 + 3 + 2,
        VideoStats {
            starts: 11,
            q25: 11,
            q50: 11,
            q75: 11,
            completes: 4 + 1 + 2,
            audible_impressions: 3,
        },
    );
    // The totals in Redis are exact once both edges have synced.
    let mut conn = redis.connect();
    wait_for_value(
        DEADLINE,
        "p1's total in Redis",
        &Some(50),
        &mut || match conn.cmd(&["GET", "glimpse:pv:{post/p1}"]) {
            Reply::Bulk(Some(n)) => String::from_utf8(n).ok()?.parse::<u64>().ok(),
            _ => None,
        },
    );
    for (i, edge) in edges.iter().enumerate() {
        wait_for_value(
            DEADLINE,
            &format!("edge {i}'s views"),
            &want_views,
            &mut || views_of(edge, "p1,p2,p3"),
        );
        wait_for_value(
            DEADLINE,
            &format!("edge {i}'s video stats"),
            &want_video,
            &mut || video_of(edge, "vid-1"),
        );
    }
    // Equal on both, answer for answer, and so are the validators a CDN
    // revalidates with.
    let etags: Vec<String> = edges
        .iter()
        .map(|edge| {
            let response = ureq::get(&edge.url("/v1/views?ids=p1,p2,p3"))
                .call()
                .unwrap();
            response.header("etag").unwrap().to_owned()
        })
        .collect();
    assert_eq!(etags[0], etags[1]);
    let (status, _) = edges[1]
        .get_with_headers("/v1/views?ids=p1,p2,p3", &[("If-None-Match", &etags[0])])
        .unwrap();
    assert_eq!(status, 304);
    let ad_stats: StatsResponse = edges[1].get_json("/v1/ads/p1/stats");
    assert_eq!(ad_stats.impressions, 1, "the ad p1 is not the post p1");
    // Posts are not listed among the ads.
    for edge in &edges {
        let ads: AdsResponse = edge.get_json("/v1/ads");
        let ids: Vec<&str> = ads.ads.iter().map(|a| a.ad_id.as_str()).collect();
        assert_eq!(ids, ["p1", "vid-1"]);
    }
}

#[test]
fn views_are_exact_on_a_three_master_cluster() {
    let cluster = RedisCluster::start(3);
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let edges: Vec<Edge> = dirs
        .iter()
        .map(|dir| {
            let mut args = redis_cluster_flags(&cluster.nodes_arg());
            args.extend(["--sync-interval", "200ms"].map(String::from));
            Edge::start(dir.path(), &args)
        })
        .collect();
    let now = now_ms() - 1_000;
    let yesterday = now - 86_400_000;
    let mut want = Vec::new();
    // Ten posts over the slots, each seen today and yesterday (two days'
    // keys and the total in the post's one slot), every third batch sent to
    // both edges.
    for p in 0..10usize {
        let post = format!("cluster-post-{p}");
        let (today_views, yesterday_views) = (p + 1, 2 * p + 1);
        for (batch, ts, n) in [("t", now, today_views), ("y", yesterday, yesterday_views)] {
            let body = post_views(&format!("{post}-{batch}"), &post, 0, n, ts);
            let to: &[usize] = if p % 3 == 0 { &[0, 1] } else { &[p % 2] };
            for &e in to {
                accept(&edges[e], &body);
            }
        }
        want.push((post, (today_views + yesterday_views) as u64));
    }
    let ids: Vec<&str> = want.iter().map(|(id, _)| id.as_str()).collect();
    let want = views(
        &want
            .iter()
            .map(|(id, n)| (id.as_str(), *n))
            .collect::<Vec<_>>(),
    );
    for (i, edge) in edges.iter().enumerate() {
        wait_for_value(DEADLINE, &format!("edge {i}'s views"), &want, &mut || {
            views_of(edge, &ids.join(","))
        });
    }
}

#[test]
fn embedded_post_totals_and_video_counters_survive_a_stop_and_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let ts = now_ms() - 1_000;
    // First run: counts land in the store at the SIGTERM flush.
    let edge = Edge::start(dir.path(), &["--sync-interval", "200ms"]);
    accept(&edge, &post_views("p-a", "p1", 0, 20, ts));
    accept(&edge, &video_plays("v-a", "vid-1", 5, 3, 2, ts));
    assert!(edge.terminate().success());
    // Second run: counts wait in memory and the log when the edge is killed.
    let edge = Edge::start(dir.path(), &["--sync-interval", "1h"]);
    accept(&edge, &post_views("p-b", "p1", 20, 7, ts));
    accept(&edge, &post_views("p-c", "p2", 0, 3, ts));
    accept(&edge, &video_plays("v-b", "vid-1", 2, 2, 0, ts));
    let want_views = views(&[("p1", 27), ("p2", 3), ("p9", 0)]);
    let want_video = (
        7,
        VideoStats {
            starts: 7,
            q25: 7,
            q50: 7,
            q75: 7,
            completes: 5,
            audible_impressions: 2,
        },
    );
    assert_eq!(
        views_of(&edge, "p1,p2,p9"),
        want_views,
        "stored and pending"
    );
    assert_eq!(video_of(&edge, "vid-1"), want_video);
    edge.kill_hard();
    // Third run: the log is replayed; nothing lost, nothing twice, and a
    // client's retry of a replayed batch is a duplicate.
    let edge = Edge::start(dir.path(), &["--sync-interval", "200ms"]);
    assert_eq!(views_of(&edge, "p1,p2,p9"), want_views, "after replay");
    assert_eq!(video_of(&edge, "vid-1"), want_video);
    let again = accept(&edge, &post_views("p-b", "p1", 20, 7, ts));
    assert_eq!(
        (again["accepted"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(14))
    );
    assert!(edge.terminate().success());
    let edge = Edge::start(dir.path(), &["--sync-interval", "1h"]);
    assert_eq!(views_of(&edge, "p1,p2,p9"), want_views, "all in the store");
    assert_eq!(video_of(&edge, "vid-1"), want_video);
}
