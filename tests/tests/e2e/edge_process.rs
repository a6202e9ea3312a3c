//! A real edge process used as a user would: curl-like requests in, SIGTERM,
//! start again on the same data directory, and nothing lost or doubled.

use std::time::{SystemTime, UNIX_EPOCH};

use glimpse_hll::Sketch;
use glimpse_tests::edge::Edge;
use glimpse_wire::api::StatsResponse;
use serde_json::json;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn batch(batch_id: &str, ad: &str, users: std::ops::Range<u32>) -> String {
    let ts = now_ms();
    let events: Vec<_> = users
        .flat_map(|u| {
            ["viewable", "measurable"].map(|kind| {
                json!({"id": format!("{kind}-{u}"), "ad_id": ad, "user_id": format!("visitor-{u}"), "kind": kind, "ts": ts})
            })
        })
        .collect();
    json!({"batch_id": batch_id, "events": events}).to_string()
}

#[test]
fn counts_survive_sigterm_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    // A sync interval far longer than the test: only the shutdown flush can
    // put these counts in the store.
    let edge = Edge::start(dir.path(), &["--sync-interval", "1h"]);
    for (i, users) in [0..100, 50..150, 150..160].into_iter().enumerate() {
        let (status, body) = edge.post_batch(&batch(&format!("batch-{i}"), "ad-restart", users));
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["rejected"], json!([]));
    }
    let before: StatsResponse = edge.get_json("/v1/ads/ad-restart/stats");
    assert_eq!((before.impressions, before.measurable), (210, 210));
    let mut reference = Sketch::new();
    for u in 0..160 {
        reference.insert(format!("visitor-{u}").as_bytes());
    }
    assert_eq!(before.unique_visitors, Some(reference.estimate()));
    assert!(edge.terminate().success());

    let edge = Edge::start(dir.path(), &["--sync-interval", "1h"]);
    let after: StatsResponse = edge.get_json("/v1/ads/ad-restart/stats");
    assert_eq!(after, before);
    // A batch delivered again after the restart still counts once.
    let (status, body) = edge.post_batch(&batch("batch-0", "ad-restart", 0..100));
    assert_eq!(status, 202);
    assert_eq!(
        body,
        json!({"accepted": 0, "duplicates": 200, "rejected": []})
    );
    let again: StatsResponse = edge.get_json("/v1/ads/ad-restart/stats");
    assert_eq!(again, before);
}
