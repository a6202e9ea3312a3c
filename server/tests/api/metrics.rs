//! `/metrics`: what it counts, and who may read it where.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use glimpse_server::{metrics_app, sync, Access};
use serde_json::json;
use tower::ServiceExt;

use crate::support::{
    assert_error, batch, event, guard, metric, scoped_edge, TestEdge, ACME_KEY, ALL_KEY, NOW,
};

#[tokio::test]
async fn metrics_count_what_ingest_did() {
    let t = TestEdge::new();
    let b = batch(
        "b1",
        vec![
            event("e1", "ad-1", "u1", "viewable"),
            event("e1", "ad-1", "u1", "viewable"),
            event("e2", "ad 1", "u1", "viewable"),
            json!({"id": "e3", "ad_id": "ad-1", "user_id": "u", "kind": "viewable", "ts": NOW - 49 * 3_600_000}),
            json!(7),
        ],
    );
    t.ingest(&b).await;
    t.ingest(&b).await;
    t.post("{").await;
    t.post("[]").await;
    let text = t.metrics().await;
    assert_eq!(metric(&text, "glimpse_events_accepted_total"), 1);
    // One repeated event id, then all five of the repeated batch.
    assert_eq!(metric(&text, "glimpse_events_duplicate_total"), 6);
    assert_eq!(metric(&text, "glimpse_batches_accepted_total"), 1);
    assert_eq!(metric(&text, "glimpse_batches_duplicate_total"), 1);
    for (reason, n) in [
        ("invalid_id", 1),
        ("ts_out_of_window", 1),
        ("invalid_event", 1),
    ] {
        let series = format!("glimpse_events_rejected_total{{reason=\"{reason}\"}}");
        assert_eq!(metric(&text, &series), n, "{reason}");
    }
    for reason in ["invalid_json", "not_an_object"] {
        let series = format!("glimpse_batches_rejected_total{{reason=\"{reason}\"}}");
        assert_eq!(metric(&text, &series), 1, "{reason}");
    }
    // The one (ad, day), its hour held inside it.
    assert_eq!(metric(&text, "glimpse_pending_keys"), 1);
    assert!(metric(&text, "glimpse_pending_bytes") > 0);
    sync::flush(&t.edge).await.unwrap();
    let text = t.metrics().await;
    assert_eq!(metric(&text, "glimpse_pending_keys"), 0);
    assert_eq!(metric(&text, "glimpse_sync_duration_seconds_count"), 1);
    assert_eq!(metric(&text, "glimpse_sync_failures_total"), 0);
    // No message text ever becomes a label.
    assert!(!text.contains("48 h") && !text.contains("ad 1"), "{text}");
}

#[tokio::test]
async fn metrics_on_the_main_listener_need_a_wildcard_key() {
    let t = scoped_edge();
    let (status, body) = t.get("/metrics").await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, body) = t.get_with_key("/metrics", ACME_KEY).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let req = Request::get("/metrics")
        .header(header::AUTHORIZATION, format!("Bearer {ALL_KEY}"))
        .body(Body::empty())
        .unwrap();
    let response = t.router().oneshot(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // With a separate metrics listener, the main one has no /metrics.
    let t = TestEdge::guarded(
        Arc::new(tempfile::tempdir().unwrap()),
        Access::LoopbackOnly,
        |parts| parts.http.guard = guard(&["--metrics-listen", "127.0.0.1:0"]),
    );
    let (status, body) = t.get("/metrics").await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let response = metrics_app(Arc::clone(&t.http))
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}
