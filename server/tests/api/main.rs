//! The routes through the real router, driven in-process with
//! `tower::ServiceExt::oneshot`, on a real embedded store in a temp directory
//! and a clock the test holds.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use glimpse_server::clock::Clock;
use glimpse_server::store::embedded::EmbeddedStore;
use glimpse_server::{app, sync, Access, Edge};
use glimpse_wire::api::{
    AdsResponse, ErrorBody, IngestResponse, StatsResponse, UniqueVisitorsResponse,
};
use glimpse_wire::Day;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

/// 2025-11-24T16:00:00Z
const NOW: i64 = 1_764_000_000_000;
const TODAY: &str = "2025-11-24";

#[derive(Debug)]
struct HeldClock(AtomicI64);

impl Clock for HeldClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

struct TestEdge {
    edge: Arc<Edge>,
    clock: Arc<HeldClock>,
    peer: SocketAddr,
    _dir: Arc<tempfile::TempDir>,
}

impl TestEdge {
    fn new() -> Self {
        Self::with(Arc::new(tempfile::tempdir().unwrap()), Access::LoopbackOnly)
    }

    fn with(dir: Arc<tempfile::TempDir>, access: Access) -> Self {
        let clock = Arc::new(HeldClock(AtomicI64::new(NOW)));
        let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let edge = Arc::new(Edge::new(store, clock.clone(), access));
        TestEdge {
            edge,
            clock,
            peer: "127.0.0.1:40000".parse().unwrap(),
            _dir: dir,
        }
    }

    fn router(&self) -> Router {
        app(Arc::clone(&self.edge)).layer(MockConnectInfo(self.peer))
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
        let response = self.router().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
        };
        (status, headers, body)
    }

    async fn post(&self, body: impl Into<Body>) -> (StatusCode, Value) {
        let request = Request::post("/v1/impressions")
            .header(header::CONTENT_TYPE, "text/plain;charset=UTF-8")
            .body(body.into())
            .unwrap();
        let (status, _, body) = self.send(request).await;
        (status, body)
    }

    async fn ingest(&self, body: &Value) -> IngestResponse {
        let (status, body) = self.post(body.to_string()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        serde_json::from_value(body).unwrap()
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        let (status, _, body) = self
            .send(Request::get(uri).body(Body::empty()).unwrap())
            .await;
        (status, body)
    }

    async fn stats(&self, ad: &str, query: &str) -> StatsResponse {
        let (status, body) = self.get(&format!("/v1/ads/{ad}/stats{query}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        serde_json::from_value(body).unwrap()
    }
}

/// What PFCOUNT gives for these ids: the sketch is Redis's, checked against a
/// real redis-server in the end-to-end tests.
fn reference_estimate(ids: impl Iterator<Item = String>) -> u64 {
    let mut sketch = glimpse_hll::Sketch::new();
    ids.for_each(|id| {
        sketch.insert(id.as_bytes());
    });
    sketch.estimate()
}

fn event(id: &str, ad: &str, user: &str, kind: &str) -> Value {
    json!({"id": id, "ad_id": ad, "user_id": user, "kind": kind, "ts": NOW})
}

fn batch(id: &str, events: Vec<Value>) -> Value {
    json!({"batch_id": id, "events": events})
}

fn assert_error(status: StatusCode, body: &Value, want_status: StatusCode, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    let err: ErrorBody = serde_json::from_value(body.clone()).unwrap_or_else(|_| panic!("{body}"));
    assert_eq!(err.error.code, want_code, "{body}");
    assert!(!err.error.message.is_empty());
}

#[tokio::test]
async fn accepted_batches_count_at_once() {
    let t = TestEdge::new();
    let r = t
        .ingest(&batch(
            "b1",
            vec![
                event("e1", "ad-42", "u1", "viewable"),
                event("e2", "ad-42", "u1", "measurable"),
                event("e3", "ad-42", "u2", "viewable"),
                event("e4", "ad-42", "u2", "measurable"),
                event("e5", "ad-7", "u2", "measurable"),
            ],
        ))
        .await;
    assert_eq!(
        r,
        IngestResponse {
            accepted: 5,
            duplicates: 0,
            rejected: vec![]
        }
    );
    let s = t.stats("ad-42", "").await;
    assert_eq!((s.impressions, s.measurable, s.unique_visitors), (2, 2, 2));
    assert_eq!(s.viewability_rate, Some(1.0));
    assert_eq!(s.from.to_string(), TODAY);
    assert_eq!(s.days.len(), 1);
    let s = t.stats("ad-7", "").await;
    assert_eq!((s.impressions, s.measurable, s.unique_visitors), (0, 1, 0));
    assert_eq!(s.viewability_rate, Some(0.0));
}

#[tokio::test]
async fn a_bad_event_costs_only_itself() {
    let t = TestEdge::new();
    let mut unknown_field = event("e4", "ad-1", "u4", "viewable");
    unknown_field["referrer"] = json!("https://example.com/");
    let r = t
        .ingest(&batch(
            "b1",
            vec![
                event("e1", "ad-1", "u1", "viewable"),
                json!(null),
                json!({"id": "e2", "ad_id": "ad-1", "user_id": "u2", "kind": "clicked", "ts": NOW}),
                json!({"id": "e3", "ad_id": "ad 1", "user_id": "u3", "kind": "viewable", "ts": NOW}),
                unknown_field,
                json!({"id": "e5", "user_id": "u5", "kind": "viewable", "ts": NOW}),
                json!({"id": "e6", "ad_id": "ad-1", "user_id": "u6", "kind": "viewable", "ts": NOW - 49 * 3_600_000}),
            ],
        ))
        .await;
    assert_eq!(r.accepted, 2);
    let rejected: Vec<usize> = r.rejected.iter().map(|x| x.index).collect();
    assert_eq!(rejected, [1, 2, 3, 5, 6]);
    assert!(r.rejected[1].error.contains("clicked"), "{:?}", r.rejected);
    assert!(r.rejected[2].error.contains("`ad_id`"), "{:?}", r.rejected);
    assert!(
        r.rejected[3].error.contains("missing field `ad_id`"),
        "{:?}",
        r.rejected
    );
    assert!(r.rejected[4].error.contains("48 h"), "{:?}", r.rejected);
    assert_eq!(t.stats("ad-1", "").await.impressions, 2);
}

#[tokio::test]
async fn a_batch_counts_once_and_repeated_event_ids_once() {
    let t = TestEdge::new();
    let b = batch(
        "b1",
        vec![
            event("e1", "ad-1", "u1", "viewable"),
            event("e1", "ad-1", "u1", "viewable"),
            event("e2", "ad-1", "u2", "viewable"),
        ],
    );
    assert_eq!(
        t.ingest(&b).await,
        IngestResponse {
            accepted: 2,
            duplicates: 1,
            rejected: vec![]
        }
    );
    assert_eq!(
        t.ingest(&b).await,
        IngestResponse {
            accepted: 0,
            duplicates: 3,
            rejected: vec![]
        }
    );
    // Still a duplicate once the batch is in the store.
    sync::flush(&t.edge).await.unwrap();
    assert_eq!(t.ingest(&b).await.duplicates, 3);
    assert_eq!(t.stats("ad-1", "").await.impressions, 2);
}

#[tokio::test]
async fn dedup_and_counts_survive_a_restart() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let b = batch("b1", vec![event("e1", "ad-1", "u1", "viewable")]);
    {
        let t = TestEdge::with(Arc::clone(&dir), Access::LoopbackOnly);
        t.ingest(&b).await;
        sync::flush(&t.edge).await.unwrap();
    }
    let t = TestEdge::with(dir, Access::LoopbackOnly);
    assert_eq!(
        t.ingest(&b).await,
        IngestResponse {
            accepted: 0,
            duplicates: 1,
            rejected: vec![]
        }
    );
    let s = t.stats("ad-1", "").await;
    assert_eq!((s.impressions, s.unique_visitors), (1, 1));
}

#[tokio::test]
async fn stats_are_the_same_before_and_after_a_sync() {
    let t = TestEdge::new();
    for i in 0..10 {
        let events = (0..20)
            .map(|j| {
                event(
                    &format!("e{j}"),
                    "ad-1",
                    &format!("u{}", (i * 20 + j) % 150),
                    "viewable",
                )
            })
            .collect();
        t.ingest(&batch(&format!("b{i}"), events)).await;
        if i == 4 {
            sync::flush(&t.edge).await.unwrap();
        }
    }
    let before = t.stats("ad-1", "").await;
    sync::flush(&t.edge).await.unwrap();
    let after = t.stats("ad-1", "").await;
    assert_eq!(before, after);
    assert_eq!(after.impressions, 200);
    assert_eq!(
        after.unique_visitors,
        reference_estimate((0..150).map(|u| format!("u{u}")))
    );
}

#[tokio::test]
async fn whole_batch_refusals_say_why() {
    let t = TestEdge::new();
    let cases: Vec<(&str, &str)> = vec![
        ("not json", "invalid_json"),
        ("[]", "not_an_object"),
        (r#"{"events":[{}]}"#, "invalid_batch_id"),
        (r#"{"batch_id":"a/b","events":[{}]}"#, "invalid_batch_id"),
        (r#"{"batch_id":"b"}"#, "invalid_events"),
        (r#"{"batch_id":"b","events":"x"}"#, "invalid_events"),
        (r#"{"batch_id":"b","events":[]}"#, "invalid_events"),
    ];
    for (body, code) in cases {
        let (status, body) = t.post(body).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, code);
    }
    let too_many = batch(
        "b",
        (0..501)
            .map(|i| event(&format!("e{i}"), "a", "u", "viewable"))
            .collect(),
    );
    let (status, body) = t.post(too_many.to_string()).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "too_many_events");
    let (status, body) = t.post(vec![0xff, 0xfe]).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_json");
    // Nothing was counted by any of them.
    assert_eq!(t.stats("a", "").await.impressions, 0);
}

fn padded_batch(total_len: usize) -> String {
    let head = batch("big", vec![event("e1", "ad-1", "u1", "viewable")]).to_string();
    let mut body = head[..head.len() - 1].to_owned();
    body.push_str(r#","padding":""#);
    let pad = total_len - body.len() - 2;
    body.push_str(&"x".repeat(pad));
    body.push_str("\"}");
    assert_eq!(body.len(), total_len);
    body
}

#[tokio::test]
async fn body_size_limit_is_64_kib_inclusive() {
    let t = TestEdge::new();
    let (status, body) = t.post(padded_batch(65_536)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) = t.post(padded_batch(65_537)).await;
    assert_error(
        status,
        &body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    // Without a Content-Length: a streamed body is cut at the limit too.
    let chunks = vec![Ok::<_, std::io::Error>(padded_batch(65_537).into_bytes())];
    let (status, body) = t
        .post(Body::from_stream(futures_util::stream::iter(chunks)))
        .await;
    assert_error(
        status,
        &body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    assert_eq!(t.stats("ad-1", "").await.impressions, 1);
}

#[tokio::test]
async fn content_types() {
    let t = TestEdge::new();
    let b = batch("b1", vec![event("e1", "ad-1", "u1", "viewable")]).to_string();
    for (i, ct) in [
        "application/json",
        "text/plain",
        "Text/Plain; charset=utf-8",
    ]
    .iter()
    .enumerate()
    {
        let body = b.replace("b1", &format!("ct{i}"));
        let req = Request::post("/v1/impressions")
            .header(header::CONTENT_TYPE, *ct)
            .body(Body::from(body))
            .unwrap();
        let (status, _, body) = t.send(req).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{ct}: {body}");
    }
    for ct in [
        Some("application/x-www-form-urlencoded"),
        Some("text/html"),
        None,
    ] {
        let mut req = Request::post("/v1/impressions");
        if let Some(ct) = ct {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        let (status, _, body) = t.send(req.body(Body::from(b.clone())).unwrap()).await;
        assert_error(
            status,
            &body,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_body_that_never_finishes_times_out() {
    let t = TestEdge::new();
    let stream = futures_util::stream::pending::<Result<Vec<u8>, std::io::Error>>();
    let (status, body) = t.post(Body::from_stream(stream)).await;
    assert_error(status, &body, StatusCode::REQUEST_TIMEOUT, "body_timeout");
}

#[tokio::test]
async fn every_error_is_json() {
    let t = TestEdge::new();
    let (status, body) = t.get("/nope").await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = t.get("/v1/impressions").await;
    assert_error(
        status,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    let req = Request::delete("/v1/ads/ad-1/stats")
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = t.send(req).await;
    assert_error(
        status,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
}

#[tokio::test]
async fn ingest_allows_any_origin() {
    let t = TestEdge::new();
    let req = Request::builder()
        .method(Method::OPTIONS)
        .uri("/v1/impressions")
        .header(header::ORIGIN, "https://publisher.example")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type")
        .body(Body::empty())
        .unwrap();
    let (status, headers, body) = t.send(req).await;
    assert!(status.is_success(), "{status} {body}");
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    assert!(headers
        .get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS)
        .is_none());
    let req = Request::post("/v1/impressions")
        .header(header::ORIGIN, "https://publisher.example")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(
            batch("b1", vec![event("e1", "a", "u", "viewable")]).to_string(),
        ))
        .unwrap();
    let (status, headers, _) = t.send(req).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
}

#[tokio::test]
async fn single_impression_route() {
    let t = TestEdge::new();
    let req = Request::get("/v1/impression?ad_id=ad-9&user_id=u1")
        .header(header::ORIGIN, "https://publisher.example")
        .body(Body::empty())
        .unwrap();
    let (status, headers, body) = t.send(req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"message": "impression logged", "ad_id": "ad-9"})
    );
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    t.get("/v1/impression?ad_id=ad-9&user_id=u2").await;
    let s = t.stats("ad-9", "").await;
    assert_eq!((s.impressions, s.measurable, s.unique_visitors), (2, 2, 2));
    for uri in [
        "/v1/impression?ad_id=ad-9",
        "/v1/impression?user_id=u",
        "/v1/impression?ad_id=a%20b&user_id=u",
    ] {
        let (status, body) = t.get(uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert!(body["error"]["message"].is_string());
    }
}

#[tokio::test]
async fn events_count_on_their_utc_day() {
    let t = TestEdge::new();
    let yesterday_late = Day::from_epoch_ms(NOW).unwrap().start_ms() - 1;
    let mut e = event("e1", "ad-1", "u1", "viewable");
    e["ts"] = json!(yesterday_late);
    t.ingest(&batch("b1", vec![e, event("e2", "ad-1", "u2", "viewable")]))
        .await;
    let s = t.stats("ad-1", "?from=2025-11-23&to=2025-11-25").await;
    let per_day: Vec<(String, u64)> = s
        .days
        .iter()
        .map(|d| (d.date.to_string(), d.impressions))
        .collect();
    assert_eq!(
        per_day,
        [
            ("2025-11-23".into(), 1),
            ("2025-11-24".into(), 1),
            ("2025-11-25".into(), 0)
        ]
    );
    // A clock moved past midnight makes "today" the next day.
    t.clock.0.store(NOW + 8 * 3_600_000 + 1, Ordering::Relaxed);
    let s = t.stats("ad-1", "").await;
    assert_eq!(
        (s.from.to_string(), s.impressions),
        ("2025-11-25".to_owned(), 0)
    );
}

#[tokio::test]
async fn range_union_is_not_a_sum() {
    let t = TestEdge::new();
    let day_ms = 86_400_000;
    for (i, offset) in [0, day_ms].into_iter().enumerate() {
        let events = (0..100)
            .map(|u| {
                let mut e = event(
                    &format!("e{u}"),
                    "ad-1",
                    &format!("visitor-{u}"),
                    "viewable",
                );
                e["ts"] = json!(NOW - offset);
                e
            })
            .collect();
        t.ingest(&batch(&format!("b{i}"), events)).await;
    }
    sync::flush(&t.edge).await.unwrap();
    let s = t.stats("ad-1", "?from=2025-11-23&to=2025-11-24").await;
    assert_eq!(s.impressions, 200);
    assert_eq!(s.days.iter().map(|d| d.unique_visitors).sum::<u64>(), 200);
    let visitors = reference_estimate((0..100).map(|u| format!("visitor-{u}")));
    assert_eq!(s.unique_visitors, visitors);
}

#[tokio::test]
async fn stats_query_validation() {
    let t = TestEdge::new();
    let cases = [
        ("/v1/ads/ad-1/stats?from=2025-13-01", "invalid_date"),
        (
            "/v1/ads/ad-1/stats?from=2025-11-24&to=2025-11-23",
            "invalid_range",
        ),
        (
            "/v1/ads/ad-1/stats?from=2024-01-01&to=2025-01-01",
            "invalid_range",
        ),
        ("/v1/ads/ad%20x/stats", "invalid_ad_id"),
        ("/v1/ads/ad-1/unique-visitors", "missing_parameter"),
        (
            "/v1/ads/ad-1/unique-visitors?date=yesterday",
            "invalid_date",
        ),
        ("/v1/ads?from=2024-01-01&to=2025-01-01", "invalid_range"),
    ];
    for (uri, code) in cases {
        let (status, body) = t.get(uri).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, code);
    }
    let s = t.stats("ad-1", "?from=2024-01-01&to=2024-12-31").await;
    assert_eq!(s.days.len(), 366);
    assert!(s.days.windows(2).all(|w| w[0].date < w[1].date));
    assert!(s
        .days
        .iter()
        .all(|d| d.impressions == 0 && d.unique_visitors == 0));
    assert_eq!(s.viewability_rate, None);
}

#[tokio::test]
async fn unique_visitors_route_names_its_source() {
    let t = TestEdge::new();
    t.ingest(&batch(
        "b1",
        vec![
            event("e1", "ad-1", "u1", "viewable"),
            event("e2", "ad-1", "u2", "viewable"),
        ],
    ))
    .await;
    let (status, body) = t
        .get(&format!("/v1/ads/ad-1/unique-visitors?date={TODAY}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let r: UniqueVisitorsResponse = serde_json::from_value(body).unwrap();
    assert_eq!(
        (r.unique_visitors, r.source.as_str(), r.date.to_string()),
        (2, "embedded", TODAY.to_owned())
    );
}

#[tokio::test]
async fn ads_route_lists_ads_with_counts_in_range() {
    let t = TestEdge::new();
    t.ingest(&batch(
        "b1",
        vec![
            event("e1", "ad-b", "u1", "viewable"),
            event("e2", "ad-a", "u1", "measurable"),
        ],
    ))
    .await;
    sync::flush(&t.edge).await.unwrap();
    t.ingest(&batch("b2", vec![event("e1", "ad-c", "u1", "viewable")]))
        .await;
    let (status, body) = t.get("/v1/ads").await;
    assert_eq!(status, StatusCode::OK);
    let r: AdsResponse = serde_json::from_value(body).unwrap();
    let ids: Vec<&str> = r.ads.iter().map(|a| a.ad_id.as_str()).collect();
    assert_eq!(ids, ["ad-a", "ad-b", "ad-c"]);
    assert_eq!(r.ads[0].viewability_rate, Some(0.0));
    assert_eq!(r.ads[1].viewability_rate, None);
    let (_, body) = t.get("/v1/ads?from=2025-11-20&to=2025-11-21").await;
    assert_eq!(body["ads"], json!([]));
}

#[tokio::test]
async fn stats_need_a_key_when_keys_are_configured() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let t = TestEdge::with(dir, Access::from_keys(&["k-1".into(), "k-2".into()]));
    for uri in [
        "/v1/ads/ad-1/stats",
        "/v1/ads",
        &format!("/v1/ads/ad-1/unique-visitors?date={TODAY}"),
    ] {
        let (status, body) = t.get(uri).await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
        for (key, want) in [
            ("Bearer k-2", StatusCode::OK),
            ("Bearer k-3", StatusCode::UNAUTHORIZED),
            ("k-2", StatusCode::UNAUTHORIZED),
        ] {
            let req = Request::get(uri)
                .header(header::AUTHORIZATION, key)
                .body(Body::empty())
                .unwrap();
            let (status, _, body) = t.send(req).await;
            assert_eq!(status, want, "{uri} {key}: {body}");
        }
    }
    // Ingest stays open.
    t.ingest(&batch("b1", vec![event("e1", "ad-1", "u1", "viewable")]))
        .await;
}

#[tokio::test]
async fn without_keys_only_loopback_reads_stats() {
    let mut t = TestEdge::new();
    t.peer = "192.0.2.7:5000".parse().unwrap();
    let (status, body) = t.get("/v1/ads/ad-1/stats").await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    t.ingest(&batch("b1", vec![event("e1", "ad-1", "u1", "viewable")]))
        .await;
    t.peer = "[::1]:5000".parse().unwrap();
    assert_eq!(t.stats("ad-1", "").await.impressions, 1);
}

#[tokio::test]
async fn health_and_readiness() {
    let t = TestEdge::new();
    let (status, body) = t.get("/healthz").await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));
    let (status, body) = t.get("/readyz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"status": "ready", "store": "embedded"}));
}

#[tokio::test]
async fn the_sync_task_folds_pending_counts_into_the_store() {
    let t = TestEdge::new();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let edge = Arc::clone(&t.edge);
    let task = tokio::spawn(async move {
        sync::run(&edge, std::time::Duration::from_millis(10), stopped).await
    });
    t.ingest(&batch("b1", vec![event("e1", "ad-1", "u1", "viewable")]))
        .await;
    let range = glimpse_wire::DayRange::single(TODAY.parse().unwrap());
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !t.edge.aggregator.is_idle() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sync task never ran"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let stored = t.edge.store.read_days("ad-1", range).await.unwrap();
    assert_eq!(stored[0].impressions, 1);
    assert!(t.edge.store.batch_seen("b1").await.unwrap());
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn serves_the_sdk_with_cors_and_the_wasm_type() {
    let mut t = TestEdge::new();
    let sdk = tempfile::tempdir().unwrap();
    std::fs::write(sdk.path().join("glimpse_sdk_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(sdk.path().join("glimpse.js"), b"/* tag */").unwrap();
    let www = tempfile::tempdir().unwrap();
    std::fs::write(
        www.path().join("index.html"),
        b"<!doctype html><title>feed</title>",
    )
    .unwrap();
    std::fs::write(
        www.path().join("dashboard.html"),
        b"<!doctype html><title>dash</title>",
    )
    .unwrap();
    let mut edge = Edge::new(
        Arc::clone(&t.edge.store),
        t.clock.clone(),
        Access::LoopbackOnly,
    );
    edge.sdk_dir = Some(sdk.path().to_path_buf());
    edge.www_dir = Some(www.path().to_path_buf());
    t.edge = Arc::new(edge);

    let req = Request::get("/sdk/glimpse_sdk_bg.wasm")
        .header(header::ORIGIN, "https://publisher.example")
        .body(Body::empty())
        .unwrap();
    let response = t.router().oneshot(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let h = response.headers();
    assert_eq!(h[header::CONTENT_TYPE], "application/wasm");
    assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    assert!(h[header::CACHE_CONTROL]
        .to_str()
        .unwrap()
        .contains("max-age"));

    for (path, title) in [("/", "feed"), ("/dashboard", "dash")] {
        let response = t
            .router()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&body).contains(title), "{path}");
    }
    let (status, body) = t.get("/sdk/missing.js").await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = t.get("/missing.html").await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let req = Request::post("/index.html").body(Body::empty()).unwrap();
    let (status, _, body) = t.send(req).await;
    assert_error(
        status,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
}
