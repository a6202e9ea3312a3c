//! The routes through the real router, driven in-process with
//! `tower::ServiceExt::oneshot`, on a real embedded store in a temp directory
//! and a clock the test holds.

mod replay;

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

mod invalid_traffic;

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
        Self::guarded(dir, access, |_| {})
    }

    /// An edge whose limits `setup` sets before it starts serving.
    fn guarded(dir: Arc<tempfile::TempDir>, access: Access, setup: impl FnOnce(&mut Edge)) -> Self {
        let clock = Arc::new(HeldClock(AtomicI64::new(NOW)));
        let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let mut edge = Edge::new(store, clock.clone(), access);
        setup(&mut edge);
        let edge = Arc::new(edge);
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
    let today: Day = TODAY.parse().unwrap();
    let range = glimpse_wire::DayRange::single(today);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !t.edge.aggregator.is_idle() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sync task never ran"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let stored = t.edge.store.read_days("ad-1", range).await.unwrap();
    assert_eq!(stored[&today].counters.impressions, 1);
    assert!(t.edge.store.batch_seen("b1").await.unwrap());
    stop.send(true).unwrap();
    task.await.unwrap();
}

const ACME_KEY: &str = "acme-secret-0123456789";
const ALL_KEY: &str = "wildcard-secret-0123456789";

fn scoped_edge() -> TestEdge {
    let file = format!("# test keys\n{ACME_KEY} acme-,acme2-x\n{ALL_KEY} *\n");
    let keys = glimpse_server::keys::parse_keys_file(&file).unwrap();
    let access = Access::from_parts(&[glimpse_server::keys::Secret::new("plain-key")], keys);
    TestEdge::with(Arc::new(tempfile::tempdir().unwrap()), access)
}

impl TestEdge {
    async fn get_with_key(&self, uri: &str, key: &str) -> (StatusCode, Value) {
        let req = Request::get(uri)
            .header(header::AUTHORIZATION, format!("Bearer {key}"))
            .body(Body::empty())
            .unwrap();
        let (status, _, body) = self.send(req).await;
        (status, body)
    }
}

#[tokio::test]
async fn scoped_keys_read_their_own_ads_only() {
    let t = scoped_edge();
    t.ingest(&batch(
        "b1",
        vec![
            event("e1", "acme-1", "u1", "viewable"),
            event("e2", "acme2-x7", "u1", "viewable"),
            event("e3", "acme2-y", "u1", "viewable"),
            event("e4", "globex-1", "u1", "viewable"),
            event("e5", "acme", "u1", "viewable"),
        ],
    ))
    .await;
    for ad in ["acme-1", "acme2-x7", "acme-never-seen"] {
        for uri in [
            format!("/v1/ads/{ad}/stats"),
            format!("/v1/ads/{ad}/unique-visitors?date={TODAY}"),
        ] {
            let (status, body) = t.get_with_key(&uri, ACME_KEY).await;
            assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        }
    }
    for ad in ["globex-1", "acme2-y", "acme", "never-seen"] {
        for uri in [
            format!("/v1/ads/{ad}/stats"),
            format!("/v1/ads/{ad}/unique-visitors?date={TODAY}"),
        ] {
            let (status, body) = t.get_with_key(&uri, ACME_KEY).await;
            assert_error(status, &body, StatusCode::FORBIDDEN, "out_of_scope");
            // The wildcard keys, from the file and from --api-keys, read it.
            for key in [ALL_KEY, "plain-key"] {
                let (status, body) = t.get_with_key(&uri, key).await;
                assert_eq!(status, StatusCode::OK, "{uri}: {body}");
            }
        }
    }
    let ids = |body: Value| -> Vec<String> {
        let r: AdsResponse = serde_json::from_value(body).unwrap();
        r.ads.into_iter().map(|a| a.ad_id).collect()
    };
    let (status, body) = t.get_with_key("/v1/ads", ACME_KEY).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(body), ["acme-1", "acme2-x7"]);
    // Also once the counts are in the store.
    sync::flush(&t.edge).await.unwrap();
    let (_, body) = t.get_with_key("/v1/ads", ACME_KEY).await;
    assert_eq!(ids(body), ["acme-1", "acme2-x7"]);
    let (_, body) = t.get_with_key("/v1/ads", ALL_KEY).await;
    assert_eq!(
        ids(body),
        ["acme", "acme-1", "acme2-x7", "acme2-y", "globex-1"]
    );
    // No key or an unknown one: 401, whatever the ad.
    let (status, body) = t.get("/v1/ads/acme-1/stats").await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, body) = t.get_with_key("/v1/ads/acme-1/stats", "acme-secret").await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[test]
fn a_malformed_keys_file_stops_the_start_naming_the_line() {
    use clap::Parser;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    std::fs::write(&path, format!("{ACME_KEY} acme-\n\n{ALL_KEY} acme-{{x}}\n")).unwrap();
    let config = glimpse_server::Config::try_parse_from([
        "glimpse-server",
        "--api-keys-file",
        path.to_str().unwrap(),
    ])
    .unwrap();
    let err = format!("{:#}", glimpse_server::load_access(&config).unwrap_err());
    assert!(err.contains("line 3"), "{err}");
    assert!(err.contains(path.to_str().unwrap()), "{err}");
    assert!(!err.contains(ALL_KEY), "{err}");
    std::fs::write(&path, format!("{ACME_KEY} acme-\n")).unwrap();
    let access = glimpse_server::load_access(&config).unwrap();
    assert!(matches!(access, Access::Keys(ref k) if k.len() == 1));
    let missing = glimpse_server::Config::try_parse_from([
        "glimpse-server",
        "--api-keys-file",
        dir.path().join("nope").to_str().unwrap(),
    ])
    .unwrap();
    assert!(glimpse_server::load_access(&missing).is_err());
}

fn limited_edge(rate: &str, trusted: &[&str]) -> TestEdge {
    let rate = rate.parse().unwrap();
    let trusted = trusted.iter().map(|c| c.parse().unwrap()).collect();
    TestEdge::guarded(
        Arc::new(tempfile::tempdir().unwrap()),
        Access::LoopbackOnly,
        |edge| {
            edge.guard.rate_limiter = Some(glimpse_server::ratelimit::RateLimiter::new(rate, 1000));
            edge.guard.trusted_proxies = trusted;
        },
    )
}

impl TestEdge {
    async fn post_from(
        &self,
        body: &Value,
        forwarded_for: Option<&str>,
    ) -> (StatusCode, axum::http::HeaderMap, Value) {
        let mut req = Request::post("/v1/impressions").header(header::CONTENT_TYPE, "text/plain");
        if let Some(xff) = forwarded_for {
            req = req.header("x-forwarded-for", xff);
        }
        self.send(req.body(Body::from(body.to_string())).unwrap())
            .await
    }

    async fn metrics(&self) -> String {
        let response = self
            .router()
            .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"));
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }
}

fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
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
async fn too_many_distinct_ads_in_one_batch() {
    use glimpse_wire::ingest::MAX_AD_IDS_PER_BATCH;
    let t = TestEdge::new();
    let events = |n: usize| -> Vec<Value> {
        (0..=n)
            .map(|i| event(&format!("e{i}"), &format!("ad-{}", i % n), "u", "viewable"))
            .collect()
    };
    let (status, body) = t
        .post(batch("many", events(MAX_AD_IDS_PER_BATCH + 1)).to_string())
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "too_many_ads");
    assert!(body["error"]["message"].as_str().unwrap().contains("51"));
    assert_eq!(t.stats("ad-0", "").await.impressions, 0);
    // The id was not used up: the same batch id with fewer ads counts.
    let r = t.ingest(&batch("many", events(MAX_AD_IDS_PER_BATCH))).await;
    assert_eq!(r.accepted as usize, MAX_AD_IDS_PER_BATCH + 1);
}

#[tokio::test]
async fn at_the_concurrency_limit_requests_are_shed_with_503() {
    let t = TestEdge::guarded(
        Arc::new(tempfile::tempdir().unwrap()),
        Access::LoopbackOnly,
        |edge| edge.guard.concurrency = glimpse_server::Guard::concurrency_limit(1),
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
    while t.edge.guard.in_flight() == 0 {
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
        |edge| edge.guard.body_timeout = std::time::Duration::from_millis(200),
    );
    let started = std::time::Instant::now();
    let stream = futures_util::stream::pending::<Result<Vec<u8>, std::io::Error>>();
    let (status, body) = t.post(Body::from_stream(stream)).await;
    assert_error(status, &body, StatusCode::REQUEST_TIMEOUT, "body_timeout");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

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
        |edge| edge.guard.metrics_on_main = false,
    );
    let (status, body) = t.get("/metrics").await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let response = glimpse_server::metrics_app(Arc::clone(&t.edge))
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
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

#[tokio::test]
async fn ingest_answers_503_with_retry_after_while_pending_memory_is_over_its_bound() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let clock = Arc::new(HeldClock(AtomicI64::new(NOW)));
    let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let mut edge = Edge::new(store, clock.clone(), Access::LoopbackOnly);
    edge.max_pending_bytes = 500;
    let t = TestEdge {
        edge: Arc::new(edge),
        clock,
        peer: "127.0.0.1:40000".parse().unwrap(),
        _dir: dir,
    };
    let events: Vec<Value> = (0..200)
        .map(|i| event(&format!("e{i}"), "ad-1", &format!("u{i}"), "viewable"))
        .collect();
    // Under the bound when it arrives: accepted, and now over it.
    assert_eq!(t.ingest(&batch("b1", events.clone())).await.accepted, 200);
    assert!(t.edge.aggregator.pending_bytes() > 500);
    let request = Request::post("/v1/impressions")
        .header(header::CONTENT_TYPE, "text/plain;charset=UTF-8")
        .body(Body::from(batch("b2", events.clone()).to_string()))
        .unwrap();
    let (status, headers, body) = t.send(request).await;
    assert_error(status, &body, StatusCode::SERVICE_UNAVAILABLE, "overloaded");
    assert_eq!(headers[header::RETRY_AFTER], "5");
    let (status, body) = t.get("/v1/impression?ad_id=ad-1&user_id=u1").await;
    assert_error(status, &body, StatusCode::SERVICE_UNAVAILABLE, "overloaded");
    let (status, body) = t.get("/readyz").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("degraded"))
    );
    // Once the pending counts are in the store, ingest takes batches again.
    assert!(sync::sync_once(&t.edge).await.unwrap());
    assert_eq!(t.edge.aggregator.pending_bytes(), 0);
    assert_eq!(t.ingest(&batch("b2", events)).await.accepted, 200);
    assert_eq!(t.stats("ad-1", "").await.impressions, 400);
}

fn signed(id: &str, ad: &str, token: &str) -> Value {
    let mut e = event(id, ad, "u1", "viewable");
    e["token"] = json!(token);
    e
}

fn signing_edge(secret: Option<&str>) -> TestEdge {
    let secret = secret.map(glimpse_server::keys::Secret::new);
    TestEdge::guarded(
        Arc::new(tempfile::tempdir().unwrap()),
        Access::LoopbackOnly,
        |edge| edge.ad_signing_secret = secret,
    )
}

#[tokio::test]
async fn signed_ads_required_per_event() {
    use glimpse_server::signing::issue;
    let t = signing_edge(Some("s3cret"));
    let now_secs = (NOW / 1000) as u64;
    let good = issue(b"s3cret", "ad-1", now_secs + 3600);
    let expired = issue(b"s3cret", "ad-1", now_secs - 1);
    let r = t
        .ingest(&batch(
            "b1",
            vec![
                signed("e1", "ad-1", &good),
                event("e2", "ad-1", "u2", "viewable"),
                signed("e3", "ad-1", &expired),
                signed("e4", "ad-2", &good),
                signed("e5", "ad-1", "12.zz"),
                signed("e6", "ad-1", &issue(b"other", "ad-1", now_secs + 3600)),
            ],
        ))
        .await;
    assert_eq!(r.accepted, 1, "{r:?}");
    let reasons: Vec<(usize, &str)> = r
        .rejected
        .iter()
        .map(|x| (x.index, x.error.as_str()))
        .collect();
    assert_eq!(reasons.len(), 5, "{reasons:?}");
    let reason = |i: usize| reasons.iter().find(|r| r.0 == i).unwrap().1;
    assert!(reason(1).contains("`token` is missing"), "{reasons:?}");
    assert!(reason(2).contains("expired"), "{reasons:?}");
    assert!(reason(3).contains("does not match"), "{reasons:?}");
    assert!(reason(4).contains("malformed"), "{reasons:?}");
    assert!(reason(5).contains("does not match"), "{reasons:?}");
    let s = t.stats("ad-1", "").await;
    assert_eq!(s.impressions, 1);
    assert_eq!(t.stats("ad-2", "").await.impressions, 0);

    // The token expires by the edge's clock.
    t.clock.0.store(NOW + 3_601_000, Ordering::Relaxed);
    let r = t
        .ingest(&batch("b2", vec![signed("e1", "ad-1", &good)]))
        .await;
    assert_eq!(r.accepted, 0);
    assert!(r.rejected[0].error.contains("expired"), "{r:?}");
}

#[tokio::test]
async fn tokens_ignored_without_a_secret() {
    let t = signing_edge(None);
    let r = t
        .ingest(&batch(
            "b1",
            vec![
                signed("e1", "ad-1", "garbage"),
                event("e2", "ad-1", "u2", "viewable"),
            ],
        ))
        .await;
    assert_eq!((r.accepted, r.rejected.len()), (2, 0), "{r:?}");
    assert_eq!(t.stats("ad-1", "").await.impressions, 2);
}
