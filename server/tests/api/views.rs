//! `GET /v1/views` through the real router: public and CORS-open, the
//! caching headers, `ETag` and `304`, the id limit, unknown ids as 0, posts
//! apart from ads, and pending counts in the same cut as stats.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use glimpse_server::{sync, Access};
use serde_json::{json, Value};

use crate::support::{assert_error, batch, event, guard, scoped_edge, TestEdge, NOW};

const CACHE_CONTROL: &str = "public, max-age=5, stale-while-revalidate=60";

fn post_event(id: &str, post: &str, user: &str, kind: &str) -> Value {
    json!({"id": id, "post_id": post, "user_id": user, "kind": kind, "ts": NOW})
}

/// `n` views of `post` by distinct users, each with its measurable event.
fn views_batch(batch_id: &str, post: &str, n: usize) -> Value {
    let events = (0..n)
        .flat_map(|i| {
            [
                post_event(&format!("m{i}"), post, &format!("u{i}"), "measurable"),
                post_event(&format!("v{i}"), post, &format!("u{i}"), "viewable"),
            ]
        })
        .collect();
    batch(batch_id, events)
}

async fn views(
    t: &TestEdge,
    query: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Value) {
    let mut req = Request::get(format!("/v1/views{query}"));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    t.send(req.body(Body::empty()).unwrap()).await
}

#[tokio::test]
async fn views_are_public_cors_open_cached_and_never_an_ads() {
    // An edge whose stats need a key: views need none.
    let t = scoped_edge();
    t.ingest(&views_batch("b1", "p1", 3)).await;
    // An ad with the same id as the post: its impressions are not views.
    let ad = (0..5)
        .map(|i| event(&format!("a{i}"), "p1", &format!("u{i}"), "viewable"))
        .collect();
    t.ingest(&batch("b2", ad)).await;
    let (status, headers, body) =
        views(&t, "?ids=p1,p2,ad-9", &[("origin", "https://feed.example")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"views": {"p1": 3, "p2": 0, "ad-9": 0}}));
    assert_eq!(headers[header::CACHE_CONTROL], CACHE_CONTROL);
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    assert!(headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let etag = headers[header::ETAG].to_str().unwrap();
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && !etag.starts_with("W/"),
        "{etag}"
    );
    // The ad's stats hold the ad's impressions only.
    let (status, body) = t
        .get_with_key(
            &format!("/v1/ads/p1/stats?from={0}&to={0}", crate::support::TODAY),
            crate::support::ALL_KEY,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["impressions"], 5);
    // And the stats route refuses a post's counts key as an ad id.
    let (status, body) = t
        .get_with_key("/v1/ads/post%2Fp1/stats", crate::support::ALL_KEY)
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_ad_id");
}

#[tokio::test]
async fn a_matching_if_none_match_is_a_304_until_the_counts_move() {
    let t = TestEdge::new();
    t.ingest(&views_batch("b1", "p1", 2)).await;
    let (status, headers, _) = views(&t, "?ids=p1", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let etag = headers[header::ETAG].to_str().unwrap().to_owned();
    let (status, headers, body) = views(&t, "?ids=p1", &[("if-none-match", &etag)]).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert_eq!(body, Value::Null, "a 304 has no body");
    assert_eq!(headers[header::ETAG], etag.as_str());
    assert_eq!(headers[header::CACHE_CONTROL], CACHE_CONTROL);
    let weak = format!("W/{etag}, \"other\"");
    let (status, _, _) = views(&t, "?ids=p1", &[("if-none-match", &weak)]).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    // The same counts give the same tag after a sync moves them to the store.
    sync::flush(&t.edge).await.unwrap();
    let (status, _, _) = views(&t, "?ids=p1", &[("if-none-match", &etag)]).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    // A new view changes the body and so the tag.
    t.ingest(&views_batch("b2", "p1", 1)).await;
    let (status, headers, body) = views(&t, "?ids=p1", &[("if-none-match", &etag)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"views": {"p1": 3}}));
    assert_ne!(headers[header::ETAG], etag.as_str());
}

#[tokio::test]
async fn pending_and_stored_views_count_once_each() {
    let t = TestEdge::new();
    t.ingest(&views_batch("b1", "p1", 4)).await;
    let count = |body: &Value, id: &str| body["views"][id].as_u64().unwrap();
    let (_, _, body) = views(&t, "?ids=p1", &[]).await;
    assert_eq!(count(&body, "p1"), 4, "pending views count");
    sync::flush(&t.edge).await.unwrap();
    let (_, _, body) = views(&t, "?ids=p1", &[]).await;
    assert_eq!(count(&body, "p1"), 4, "stored views, not twice");
    t.ingest(&views_batch("b2", "p1", 2)).await;
    // A copy of a counted batch is a duplicate and adds nothing.
    t.ingest(&views_batch("b1", "p1", 4)).await;
    let (_, _, body) = views(&t, "?ids=p1", &[]).await;
    assert_eq!(count(&body, "p1"), 6);
    sync::flush(&t.edge).await.unwrap();
    let (_, _, body) = views(&t, "?ids=p1,p1", &[]).await;
    assert_eq!(body, json!({"views": {"p1": 6}}));
}

#[tokio::test]
async fn bad_view_requests_are_json_400s() {
    let t = TestEdge::new();
    let hundred: Vec<String> = (0..100).map(|i| format!("p{i}")).collect();
    let (status, _, body) = views(&t, &format!("?ids={}", hundred.join(",")), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["views"].as_object().unwrap().len(), 100);
    let too_many = format!("?ids={},p100", hundred.join(","));
    for (query, code) in [
        ("", "missing_parameter"),
        ("?ids=", "missing_parameter"),
        (too_many.as_str(), "too_many_ids"),
        ("?ids=p1,,p2", "invalid_id"),
        ("?ids=p%201", "invalid_id"),
        ("?ids=post%2Fp1", "invalid_id"),
        ("?ids=%FF", "invalid_id"),
    ] {
        let (status, headers, body) = views(&t, query, &[("origin", "https://feed.example")]).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, code);
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*", "{query}");
    }
    let (status, _, body) = t
        .send(
            Request::post("/v1/views?ids=p1")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_error(
        status,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
}

#[tokio::test]
async fn a_cors_preflight_is_answered_for_any_origin() {
    let t = TestEdge::new();
    let req = Request::options("/v1/views?ids=p1")
        .header("origin", "https://feed.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "if-none-match")
        .body(Body::empty())
        .unwrap();
    let (status, headers, _) = t.send(req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    let methods = headers[header::ACCESS_CONTROL_ALLOW_METHODS]
        .to_str()
        .unwrap();
    assert!(methods.contains("GET"), "{methods}");
    let allowed = headers[header::ACCESS_CONTROL_ALLOW_HEADERS]
        .to_str()
        .unwrap();
    assert!(allowed.contains("if-none-match"), "{allowed}");
    // The validator is readable by the page's script.
    let (_, headers, _) = views(&t, "?ids=p1", &[("origin", "https://feed.example")]).await;
    let exposed = headers[header::ACCESS_CONTROL_EXPOSE_HEADERS]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(exposed.contains("etag"), "{exposed}");
}

#[tokio::test]
async fn views_are_rate_limited_per_client() {
    let guard = guard(&["--rate-limit", "2/m"]);
    let t = TestEdge::guarded(
        Arc::new(tempfile::tempdir().unwrap()),
        Access::LoopbackOnly,
        |parts| parts.http.guard = guard,
    );
    for _ in 0..2 {
        let (status, _, body) = views(&t, "?ids=p1", &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, headers, body) = views(&t, "?ids=p1", &[]).await;
    assert_error(status, &body, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(headers.contains_key(header::RETRY_AFTER));
}

#[tokio::test]
async fn post_stats_have_the_ad_shape_without_video_on_the_keyed_api() {
    let t = scoped_edge();
    t.ingest(&views_batch("b1", "p1", 3)).await;
    let (status, body) = t
        .get_with_key("/v1/posts/p1/stats", crate::support::ALL_KEY)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["post_id"], "p1");
    assert_eq!(
        (body["impressions"].as_u64(), body["measurable"].as_u64()),
        (Some(3), Some(3))
    );
    assert_eq!(body["unique_visitors"], 3);
    assert_eq!(body["viewability_rate"], 1.0);
    assert!(body.get("video").is_none(), "{body}");
    assert!(body["days"][0].get("video").is_none(), "{body}");
    assert_eq!(body["days"][0]["impressions"], 3);
    // Without a key, and with a key scoped to ad prefixes: refused.
    let (status, body) = t.get("/v1/posts/p1/stats").await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, body) = t
        .get_with_key("/v1/posts/p1/stats", crate::support::ACME_KEY)
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    // Posts are not listed among the ads.
    let (status, body) = t.get_with_key("/v1/ads", crate::support::ALL_KEY).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["ads"], json!([]));
}

#[tokio::test]
async fn video_kinds_are_refused_on_post_events_alone() {
    let t = TestEdge::new();
    let response = t
        .ingest(&batch(
            "b1",
            vec![
                post_event("s", "p1", "u1", "video_start"),
                post_event("v", "p1", "u1", "viewable"),
                json!({"id": "x", "ad_id": "a", "post_id": "p1", "user_id": "u", "kind": "viewable", "ts": NOW}),
            ],
        ))
        .await;
    assert_eq!(response.accepted, 1);
    let reasons: Vec<(usize, &str)> = response
        .rejected
        .iter()
        .map(|r| (r.index, r.error.as_str()))
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert_eq!(reasons[0].0, 0);
    assert!(reasons[0].1.contains("video_start"), "{reasons:?}");
    assert_eq!(reasons[1].0, 2);
    assert!(
        reasons[1].1.contains("both `ad_id` and `post_id`"),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn the_single_get_counts_a_post_view() {
    let t = TestEdge::new();
    let (status, body) = t.get("/v1/impression?post_id=p1&user_id=u1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"message": "view logged", "post_id": "p1"}));
    let (_, _, body) = views(&t, "?ids=p1", &[]).await;
    assert_eq!(body, json!({"views": {"p1": 1}}));
    let (status, body) = t.get("/v1/impression?ad_id=a&post_id=p1&user_id=u1").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_parameter");
    let (status, body) = t.get("/v1/impression?user_id=u1").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "missing_parameter");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("`post_id`"));
    let (status, body) = t.get("/v1/impression?post_id=p%201&user_id=u1").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_parameter");
}
