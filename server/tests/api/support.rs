//! What every routes test shares: an edge on a real embedded store in a
//! temp directory, a clock the test holds, requests through the real router,
//! and the helpers that build batches and read answers.

use std::net::SocketAddr;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use clap::Parser;
use glimpse_server::clock::Clock;
use glimpse_server::keys::{parse_keys_file, Secret};
use glimpse_server::store::embedded::EmbeddedStore;
use glimpse_server::{
    app, Access, Config, Edge, EdgeParts, Guard, HttpParts, HttpState, IngestRules,
};
use glimpse_wire::api::{AdSummary, AdsResponse, ErrorBody, IngestResponse, StatsResponse};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

/// 2025-11-24T16:00:00Z
pub const NOW: i64 = 1_764_000_000_000;
pub const TODAY: &str = "2025-11-24";

/// A key scoped to `acme-` and `acme2-x` ([`scoped_edge`]).
pub const ACME_KEY: &str = "acme-secret-0123456789";
/// A key whose scope is `*` ([`scoped_edge`]).
pub const ALL_KEY: &str = "wildcard-secret-0123456789";

#[derive(Debug)]
pub struct HeldClock(pub AtomicI64);

impl Clock for HeldClock {
    fn now_ms(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The parts a test may change before its edge is built.
pub struct Parts {
    pub rules: IngestRules,
    pub http: HttpParts,
}

pub struct TestEdge {
    pub edge: Arc<Edge>,
    pub http: Arc<HttpState>,
    pub clock: Arc<HeldClock>,
    pub peer: SocketAddr,
    _dir: Arc<tempfile::TempDir>,
}

impl TestEdge {
    pub fn new() -> Self {
        Self::with(Arc::new(tempfile::tempdir().unwrap()), Access::LoopbackOnly)
    }

    pub fn with(dir: Arc<tempfile::TempDir>, access: Access) -> Self {
        Self::guarded(dir, access, |_| {})
    }

    /// An edge whose parts `setup` changes before it is built.
    pub fn guarded(
        dir: Arc<tempfile::TempDir>,
        access: Access,
        setup: impl FnOnce(&mut Parts),
    ) -> Self {
        let clock = Arc::new(HeldClock(AtomicI64::new(NOW)));
        let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let mut parts = Parts {
            rules: IngestRules::default(),
            http: HttpParts::new(access),
        };
        setup(&mut parts);
        let edge = Arc::new(Edge::new(EdgeParts {
            rules: parts.rules,
            ..EdgeParts::new(store, clock.clone())
        }));
        let http = Arc::new(HttpState::new(Arc::clone(&edge), parts.http));
        TestEdge {
            edge,
            http,
            clock,
            peer: "127.0.0.1:40000".parse().unwrap(),
            _dir: dir,
        }
    }

    pub fn router(&self) -> Router {
        app(Arc::clone(&self.http)).layer(MockConnectInfo(self.peer))
    }

    pub async fn send(&self, request: Request<Body>) -> (StatusCode, HeaderMap, Value) {
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

    pub async fn post(&self, body: impl Into<Body>) -> (StatusCode, Value) {
        let request = Request::post("/v1/impressions")
            .header(header::CONTENT_TYPE, "text/plain;charset=UTF-8")
            .body(body.into())
            .unwrap();
        let (status, _, body) = self.send(request).await;
        (status, body)
    }

    pub async fn ingest(&self, body: &Value) -> IngestResponse {
        let (status, body) = self.post(body.to_string()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        serde_json::from_value(body).unwrap()
    }

    /// POSTs `body` with this `User-Agent`; answers status and JSON.
    pub async fn post_as(&self, user_agent: &str, body: &Value) -> (StatusCode, Value) {
        let request = Request::post("/v1/impressions")
            .header(header::CONTENT_TYPE, "text/plain;charset=UTF-8")
            .header(header::USER_AGENT, user_agent)
            .body(Body::from(body.to_string()))
            .unwrap();
        let (status, _, body) = self.send(request).await;
        (status, body)
    }

    pub async fn ingest_as(&self, user_agent: &str, body: &Value) -> IngestResponse {
        let (status, body) = self.post_as(user_agent, body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        serde_json::from_value(body).unwrap()
    }

    /// POSTs `body` with this `X-Forwarded-For`, if any.
    pub async fn post_from(
        &self,
        body: &Value,
        forwarded_for: Option<&str>,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut req = Request::post("/v1/impressions").header(header::CONTENT_TYPE, "text/plain");
        if let Some(xff) = forwarded_for {
            req = req.header("x-forwarded-for", xff);
        }
        self.send(req.body(Body::from(body.to_string())).unwrap())
            .await
    }

    pub async fn get(&self, uri: &str) -> (StatusCode, Value) {
        let (status, _, body) = self
            .send(Request::get(uri).body(Body::empty()).unwrap())
            .await;
        (status, body)
    }

    pub async fn get_with_key(&self, uri: &str, key: &str) -> (StatusCode, Value) {
        let req = Request::get(uri)
            .header(header::AUTHORIZATION, format!("Bearer {key}"))
            .body(Body::empty())
            .unwrap();
        let (status, _, body) = self.send(req).await;
        (status, body)
    }

    pub async fn stats(&self, ad: &str, query: &str) -> StatsResponse {
        let (status, body) = self.get(&format!("/v1/ads/{ad}/stats{query}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        serde_json::from_value(body).unwrap()
    }

    pub async fn ads(&self) -> AdsResponse {
        let (status, body) = self.get("/v1/ads").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        serde_json::from_value(body).unwrap()
    }

    /// The row of `ad` in today's `GET /v1/ads`.
    pub async fn ad_row(&self, ad: &str) -> AdSummary {
        self.ads()
            .await
            .ads
            .into_iter()
            .find(|a| a.ad_id == ad)
            .unwrap_or_else(|| panic!("{ad} is not listed"))
    }

    pub async fn metrics(&self) -> String {
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

/// The guard `glimpse-server` builds from these flags.
pub fn guard(flags: &[&str]) -> Guard {
    let config =
        Config::try_parse_from(std::iter::once("glimpse-server").chain(flags.iter().copied()))
            .unwrap();
    Guard::from_config(&config)
}

/// An edge with a key file: [`ACME_KEY`] reads `acme-` and `acme2-x`,
/// [`ALL_KEY`] and `plain-key` read everything.
pub fn scoped_edge() -> TestEdge {
    let file = format!("# test keys\n{ACME_KEY} acme-,acme2-x\n{ALL_KEY} *\n");
    let keys = parse_keys_file(&file).unwrap();
    let access = Access::from_parts(&[Secret::new("plain-key")], keys);
    TestEdge::with(Arc::new(tempfile::tempdir().unwrap()), access)
}

/// What PFCOUNT gives for these ids: the sketch is Redis's, checked against a
/// real redis-server in the end-to-end tests.
pub fn reference_estimate(ids: impl Iterator<Item = String>) -> u64 {
    let mut sketch = glimpse_hll::Sketch::new();
    ids.for_each(|id| {
        sketch.insert(id.as_bytes());
    });
    sketch.estimate()
}

pub fn event(id: &str, ad: &str, user: &str, kind: &str) -> Value {
    json!({"id": id, "ad_id": ad, "user_id": user, "kind": kind, "ts": NOW})
}

pub fn batch(id: &str, events: Vec<Value>) -> Value {
    json!({"batch_id": id, "events": events})
}

pub fn assert_error(status: StatusCode, body: &Value, want_status: StatusCode, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    let err: ErrorBody = serde_json::from_value(body.clone()).unwrap_or_else(|_| panic!("{body}"));
    assert_eq!(err.error.code, want_code, "{body}");
    assert!(!err.error.message.is_empty());
}

/// The value of one series in a `/metrics` text.
pub fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

/// The status, headers and text body of a GET with `accept`.
pub async fn get_text(
    t: &TestEdge,
    uri: &str,
    accept: Option<&str>,
) -> (StatusCode, HeaderMap, String) {
    let mut request = Request::get(uri);
    if let Some(accept) = accept {
        request = request.header(header::ACCEPT, accept);
    }
    let response = t
        .router()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
}
