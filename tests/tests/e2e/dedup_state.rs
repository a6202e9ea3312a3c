//! De-duplication state only for batches that counted something, on the real
//! binary and a real Redis: batches whose every event was rejected and
//! `GET /v1/impression`s (ids the edge mints) leave no `batch:<id>` claim in
//! Redis; only the batch that counted does.

use std::time::Duration;

use glimpse_tests::edge::{redis_flags, Edge};
use glimpse_tests::redis::RedisServer;
use serde_json::json;

use crate::load::{batch_claims, counters, counters_key, day_of, now_ms, wait_for};

const DEADLINE: Duration = Duration::from_secs(30);
const AD: &str = "ad-dedup-state";
const REJECTED_BATCHES: usize = 20;
const SINGLE_IMPRESSIONS: usize = 5;

/// The batch ids claimed in Redis.
fn claims(redis: &RedisServer) -> Vec<String> {
    batch_claims(&mut redis.connect()).into_keys().collect()
}

#[test]
fn only_batches_that_counted_leave_a_claim_in_redis() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut flags = redis_flags(&redis.url());
    flags.extend(["--sync-interval", "100ms"].map(String::from));
    let edge = Edge::start(dir.path(), &flags);
    let ts = now_ms();
    assert!(claims(&redis).is_empty());

    for i in 0..REJECTED_BATCHES {
        // An unknown kind and an event from three days ago: both refused.
        let body = json!({"batch_id": format!("rejected-{i}"), "events": [
            {"id": "e1", "ad_id": AD, "user_id": "u1", "kind": "clicked", "ts": ts},
            {"id": "e2", "ad_id": AD, "user_id": "u1", "kind": "viewable", "ts": ts - 72 * 3_600_000},
        ]});
        let (status, answer) = edge.post_batch(&body.to_string());
        assert_eq!((status, &answer["accepted"]), (202, &json!(0)), "{answer}");
    }
    for i in 0..SINGLE_IMPRESSIONS {
        let (status, body) = edge
            .get_raw(&format!("/v1/impression?ad_id={AD}&user_id=single-{i}"))
            .unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let counted = json!({"batch_id": "counted", "events": [
        {"id": "e1", "ad_id": AD, "user_id": "u2", "kind": "viewable", "ts": ts},
    ]});
    let (status, answer) = edge.post_batch(&counted.to_string());
    assert_eq!((status, &answer["accepted"]), (202, &json!(1)), "{answer}");

    // Everything counted is in Redis: one viewable per single impression
    // and the one of the counted batch.
    let mut conn = redis.connect();
    let key = counters_key(AD, &day_of(ts));
    wait_for(
        DEADLINE,
        "every counted event is synced",
        || counters(&mut conn, &key),
        |c| *c == ((SINGLE_IMPRESSIONS + 1) as u64, SINGLE_IMPRESSIONS as u64),
    );
    assert_eq!(claims(&redis), ["counted"]);
}
