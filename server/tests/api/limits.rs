//! Abuse limits: the per-client rate limit, trusted proxies, load shedding and
//! the body timeout.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use glimpse_server::Access;
use tower::ServiceExt;

use crate::support::{assert_error, batch, event, guard, metric, TestEdge};

/// An edge run with `--rate-limit <rate>` and these `--trusted-proxies`.
fn limited_edge(rate: &str, trusted: &[&str]) -> TestEdge {
    let trusted = trusted.join(",");
    let mut flags = vec!["--rate-limit", rate];
    if !trusted.is_empty() {
        flags.extend(["--trusted-proxies", &trusted]);
    }
    let guard = guard(&flags);
    TestEdge::guarded(
        Arc::new(tempfile::tempdir().unwrap()),
        Access::LoopbackOnly,
        |parts| parts.http.guard = guard,
    )
}

#[tokio::test]
async fn ingest_is_rate_limited_per_client_with_retry_after() {
    let mut t = limited_edge("3/m", &[]);
    for i in 0..3 {
        let (status, _, body) = t
            .post_from(
                &batch(&format!("b{i}"), vec![event("e", "ad-1", "u", "viewable")]),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let (status, headers, body) = t
        .post_from(
            &batch("b3", vec![event("e", "ad-1", "u", "viewable")]),
            None,
        )
        .await;
    assert_error(status, &body, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert_eq!(headers[header::RETRY_AFTER], "20");
    // The single-impression route shares the bucket.
    let (status, body) = t.get("/v1/impression?ad_id=ad-1&user_id=u9").await;
    assert_error(status, &body, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    // Stats are not ingest: still served.
    assert_eq!(t.stats("ad-1", "").await.impressions, 3);
    // Another client is not affected; the first one gets a token back in 20 s.
    t.peer = "127.0.0.2:1".parse().unwrap();
    let (status, _, _) = t
        .post_from(
            &batch("c0", vec![event("e", "ad-1", "u", "viewable")]),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    t.peer = "127.0.0.1:40000".parse().unwrap();
    t.clock.0.fetch_add(20_000, Ordering::Relaxed);
    let (status, _, _) = t
        .post_from(
            &batch("b4", vec![event("e", "ad-1", "u", "viewable")]),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let text = t.metrics().await;
    assert_eq!(metric(&text, "glimpse_rate_limited_total"), 2);
    assert_eq!(
        metric(&text, "glimpse_http_errors_total{code=\"rate_limited\"}"),
        2
    );
    assert_eq!(
        metric(
            &text,
            "glimpse_batches_rejected_total{reason=\"rate_limited\"}"
        ),
        1
    );
}

#[tokio::test]
async fn forwarded_for_counts_only_from_trusted_proxies() {
    // The test peer is 127.0.0.1.
    let untrusted = limited_edge("1/m", &["10.0.0.0/8"]);
    let one = |id: &str| batch(id, vec![event("e", "ad-1", "u", "viewable")]);
    let (status, _, _) = untrusted.post_from(&one("a"), Some("198.51.100.1")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // A forged header does not buy a new bucket.
    let (status, _, _) = untrusted.post_from(&one("b"), Some("198.51.100.2")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);

    let proxied = limited_edge("1/m", &["127.0.0.0/8"]);
    let (status, _, _) = proxied.post_from(&one("a"), Some("198.51.100.1")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _, _) = proxied.post_from(&one("b"), Some("198.51.100.2")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // A client's own entries left of the real one change nothing.
    let (status, _, _) = proxied
        .post_from(&one("c"), Some("203.0.113.5, 198.51.100.1"))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn at_the_concurrency_limit_requests_are_shed_with_503() {
    let t = TestEdge::guarded(
        Arc::new(tempfile::tempdir().unwrap()),
        Access::LoopbackOnly,
        |parts| parts.http.guard = guard(&["--max-concurrent-requests", "1"]),
    );
    // A request whose body never arrives holds the only permit.
    let stream = futures_util::stream::pending::<Result<Vec<u8>, std::io::Error>>();
    let slow = t.router().oneshot(
        Request::post("/v1/impressions")
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from_stream(stream))
            .unwrap(),
    );
    let slow = tokio::spawn(slow);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while t.http.guard().in_flight() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slow request never started"
        );
        tokio::task::yield_now().await;
    }
    let (status, headers, body) = t
        .send(
            Request::get("/v1/ads/ad-1/stats")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_error(status, &body, StatusCode::SERVICE_UNAVAILABLE, "overloaded");
    assert!(headers.contains_key(header::RETRY_AFTER));
    // Probes and metrics still answer.
    let (status, _) = t.get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    let text = t.metrics().await;
    assert_eq!(metric(&text, "glimpse_load_shed_total"), 1);
    assert_eq!(metric(&text, "glimpse_requests_in_flight"), 1);
    slow.abort();
}

#[tokio::test]
async fn body_timeout_is_configurable() {
    let t = TestEdge::guarded(
        Arc::new(tempfile::tempdir().unwrap()),
        Access::LoopbackOnly,
        |parts| parts.http.guard = guard(&["--body-timeout", "200ms"]),
    );
    let started = std::time::Instant::now();
    let stream = futures_util::stream::pending::<Result<Vec<u8>, std::io::Error>>();
    let (status, body) = t.post(Body::from_stream(stream)).await;
    assert_error(status, &body, StatusCode::REQUEST_TIMEOUT, "body_timeout");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}
