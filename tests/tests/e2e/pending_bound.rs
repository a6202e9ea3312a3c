//! `--max-pending-bytes` against the real process's memory: distinct ad ids
//! and visitors sprayed at an edge that does not sync, until it answers 503.
//! The edge's own figure (`glimpse_pending_bytes`) must follow the growth of
//! its resident memory, and the refusal must come before that growth passes
//! a small multiple of the bound.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use glimpse_tests::edge::{post_batch_at, Edge};
use serde_json::json;

use crate::load::{now_ms, BATCH_EVENTS};

const MAX_PENDING_BYTES: u64 = 32 * 1024 * 1024;
/// Ads per batch: the wire contract's maximum, so every batch adds 50 new
/// (ad, day) keys.
const ADS_PER_BATCH: usize = 50;
const CLIENTS: usize = 4;
/// The reported figure is within this factor of the real growth, either way.
const REPORTED_WITHIN_FACTOR: f64 = 1.5;
/// The refusal comes before resident memory grew by this many bounds.
const RSS_GROWTH_MAX_BOUNDS: u64 = 2;
const DEADLINE: Duration = Duration::from_secs(120);

/// Batch `i`: 500 events over 50 ads never seen before, each by a visitor
/// never seen before.
fn batch(i: usize, ts: i64) -> String {
    let events: Vec<_> = (0..BATCH_EVENTS)
        .map(|j| {
            json!({
                "id": format!("e{j}"),
                "ad_id": format!("spray-{i}-{}", j % ADS_PER_BATCH),
                "user_id": format!("visitor-{i}-{j}"),
                "kind": if j % 2 == 0 { "viewable" } else { "measurable" },
                "ts": ts,
            })
        })
        .collect();
    json!({"batch_id": format!("spray-{i}"), "events": events}).to_string()
}

#[test]
fn pending_bytes_follow_resident_memory_and_the_503_comes_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start(
        dir.path(),
        &[
            "--max-pending-bytes",
            &MAX_PENDING_BYTES.to_string(),
            // Nothing syncs: everything accepted stays pending.
            "--sync-interval",
            "1h",
        ],
    );
    let ts = now_ms();
    // Warm up every path once (routes, log, stats of the pending map), so
    // the baseline holds the edge's fixed costs.
    let (status, answer) = edge.post_batch(&batch(0, ts));
    assert_eq!(status, 202, "{answer}");
    let baseline_rss = edge.memory_bytes("VmRSS");
    let baseline_reported = edge.gauge("glimpse_pending_bytes");

    let next = AtomicUsize::new(1);
    let refused = AtomicBool::new(false);
    let started = std::time::Instant::now();
    std::thread::scope(|s| {
        for _ in 0..CLIENTS {
            s.spawn(|| {
                while !refused.load(Ordering::Relaxed) {
                    assert!(started.elapsed() < DEADLINE, "no 503 within {DEADLINE:?}");
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    match post_batch_at(&edge.base_url, &batch(i, ts)) {
                        Ok((202, _)) => {}
                        Ok((503, answer)) => {
                            assert_eq!(answer["error"]["code"], "overloaded", "{answer}");
                            refused.store(true, Ordering::Relaxed);
                        }
                        other => panic!("batch {i}: {other:?}"),
                    }
                }
            });
        }
    });
    let batches = next.load(Ordering::Relaxed);
    let rss_growth = edge.memory_bytes("VmRSS").saturating_sub(baseline_rss);
    let peak_growth = edge.memory_bytes("VmHWM").saturating_sub(baseline_rss);
    let reported = edge.gauge("glimpse_pending_bytes") - baseline_reported;
    eprintln!(
        "{batches} batches sent; at the 503: {reported} bytes reported pending, resident \
         memory grew by {rss_growth} (peak {peak_growth}); bound {MAX_PENDING_BYTES}"
    );
    let ratio = reported as f64 / rss_growth as f64;
    assert!(
        (1.0 / REPORTED_WITHIN_FACTOR..=REPORTED_WITHIN_FACTOR).contains(&ratio),
        "reported {reported} bytes pending for {rss_growth} bytes of resident growth"
    );
    assert!(
        peak_growth <= RSS_GROWTH_MAX_BOUNDS * MAX_PENDING_BYTES,
        "resident memory grew by {peak_growth} before the 503, bound {MAX_PENDING_BYTES}"
    );
}
