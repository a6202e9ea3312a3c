//! Counters and visitors come from the same copy of a batch: when two edges
//! get copies of one `batch_id` with different content, Redis counts the
//! copy that claimed the id first, its counters and its visitors, and
//! nothing of the other copy.

use std::time::Duration;

use glimpse_tests::edge::{redis_flags, Edge};
use glimpse_tests::redis::RedisServer;
use glimpse_wire::api::StatsResponse;
use serde_json::json;

use crate::load::{
    assert_same_registers, counters, counters_key, day_of, now_ms, pfadd_reference, pfcount,
    sketch_at, uv_key, wait_for,
};

const SYNC_DEADLINE: Duration = Duration::from_secs(60);

/// A batch of viewable events of `ad`, one per user.
fn batch(id: &str, ad: &str, users: &[String], ts: i64) -> String {
    let events: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(i, u)| json!({"id": format!("e{i}"), "ad_id": ad, "user_id": u, "kind": "viewable", "ts": ts}))
        .collect();
    json!({"batch_id": id, "events": events}).to_string()
}

fn post(edge: &Edge, body: &str, events: usize) {
    let (status, answer) = edge.post_batch(body);
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["accepted"], events, "{answer}");
}

#[test]
fn a_second_copy_under_the_same_batch_id_adds_no_visitors_through_redis() {
    let redis = RedisServer::start();
    let mut flags = redis_flags(&redis.url());
    flags.extend(["--sync-interval", "100ms", "--stats-cache", "0s"].map(String::from));
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Edge::start(dir_a.path(), &flags);
    let b = Edge::start(dir_b.path(), &flags);
    let ad = "same-copy";
    let ts = now_ms() - 1_000;
    let day = day_of(ts);
    let mut conn = redis.connect();
    let users = |tag: &str| -> Vec<String> { (0..10).map(|i| format!("{tag}-{i}")).collect() };
    let (first, second, own) = (users("first"), users("second"), users("own"));

    // Edge A counts its copy of `copy-1` and syncs it: the claim is A's.
    post(&a, &batch("copy-1", ad, &first, ts), 10);
    wait_for(
        SYNC_DEADLINE,
        "edge A's copy is in Redis",
        || counters(&mut conn, &counters_key(ad, &day)),
        |c| *c == (10, 0),
    );
    // Edge B gets another copy of `copy-1`, by other visitors, and a batch
    // of its own: they sync in one step of the (ad, day), so once B's own
    // batch is in Redis, so is whatever B sent for the second copy.
    post(&b, &batch("copy-1", ad, &second, ts), 10);
    post(&b, &batch("own-1", ad, &own, ts), 10);
    wait_for(
        SYNC_DEADLINE,
        "edge B's sync is in Redis",
        || counters(&mut conn, &counters_key(ad, &day)),
        |c| *c == (20, 0),
    );

    // The visitors are those of the counted batches: A's copy and B's own.
    let counted: Vec<String> = first.iter().chain(&own).cloned().collect();
    let reference = format!("test:ref:{ad}");
    pfadd_reference(&mut conn, &reference, &counted);
    assert_same_registers(
        &sketch_at(&mut conn, &uv_key(ad, &day)),
        &sketch_at(&mut conn, &reference),
        "the day's sketch",
    );
    let expected = pfcount(&mut conn, &[&reference]);
    assert_eq!(expected, 20);
    for edge in [&a, &b] {
        let stats: StatsResponse = edge.get_json(&format!("/v1/ads/{ad}/stats"));
        assert_eq!(
            (stats.impressions, stats.unique_visitors),
            (20, Some(expected))
        );
    }
    assert!(a.terminate().success());
    assert!(b.terminate().success());
}
