//! The HTTP layer: routes, limits and static files. This module and
//! [`crate::serve`] are the only places that know about HTTP.

mod auth;
mod error;
mod extract;
mod guard;
mod ingest;
mod stats;

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use glimpse_wire::api::Readiness;
use glimpse_wire::Day;
use tower_http::cors::{Any, CorsLayer};
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;

pub use auth::Access;
pub use error::ApiError;
pub use guard::Guard;

use crate::aggregate::Aggregator;
use crate::claims::BatchClaims;
use crate::clock::Clock;
use crate::config::Durability;
use crate::keys::Secret;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::traffic::Traffic;
use crate::wal::{codec, Lsn, Wal};

/// Everything the handlers share.
#[derive(Debug)]
pub struct Edge {
    pub aggregator: Aggregator,
    pub claims: BatchClaims,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub access: Access,
    /// The demo site, served at `/` when present.
    pub www_dir: Option<PathBuf>,
    /// The built SDK, served at `/sdk/` when present.
    pub sdk_dir: Option<PathBuf>,
    /// Rate limit, concurrency limit, body timeout.
    pub guard: Guard,
    pub metrics: Metrics,
    /// Ingest refuses batches (503) while pending counts hold more memory
    /// than this.
    pub max_pending_bytes: usize,
    /// When set, every event must carry a valid token for its ad
    /// (see [`crate::signing`]).
    pub ad_signing_secret: Option<Secret>,
    /// `--count-automation`: automated browsers count as people
    /// (see [`crate::traffic`]).
    pub count_automation: bool,
    /// The write-ahead log; `None` in tests that run without one.
    pub wal: Option<Wal>,
    /// Whether ingest waits for the log's fsync before answering.
    pub durability: Durability,
}

impl Edge {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, access: Access) -> Self {
        Edge {
            aggregator: Aggregator::new(),
            claims: BatchClaims::default(),
            store,
            clock,
            access,
            www_dir: None,
            sdk_dir: None,
            guard: Guard::default(),
            metrics: Metrics::default(),
            max_pending_bytes: usize::MAX,
            ad_signing_secret: None,
            count_automation: false,
            wal: None,
            durability: Durability::Strict,
        }
    }

    /// Counts one batch and logs it (in the segment of the generation that
    /// counts it). Answers the log position to wait on before acknowledging
    /// it; `None` when there is nothing to wait for (no log, or relaxed).
    pub fn record_batch(
        &self,
        batch_id: &str,
        received_ms: i64,
        traffic: Traffic,
        events: &[glimpse_wire::ingest::Event<'_>],
    ) -> Option<Lsn> {
        let Some(wal) = &self.wal else {
            self.aggregator
                .record(batch_id, received_ms, traffic, events);
            return None;
        };
        // Encoded before the guard is taken: under it, only a copy.
        let mut record = Vec::with_capacity(32 + events.len() * 64);
        codec::encode_record(&mut record, traffic, batch_id, received_ms, events);
        let lsn = self
            .aggregator
            .record_then(batch_id, received_ms, traffic, events, |seq| {
                wal.append(seq, &record)
            });
        self.wait_for_log().then_some(lsn)
    }

    /// Whether answers wait for the log.
    pub fn wait_for_log(&self) -> bool {
        self.wal.is_some() && self.durability == Durability::Strict
    }

    /// Waits until the log holds everything up to `lsn`.
    pub async fn logged(&self, lsn: Lsn) -> Result<(), ApiError> {
        match &self.wal {
            None => Ok(()),
            Some(wal) => wal.durable(lsn).await.map_err(|e| {
                tracing::error!(error = %e, "a batch could not be made durable; answering 503");
                ApiError::LogFailed(e.to_string())
            }),
        }
    }

    /// Refuses work once the log has failed: nothing new could be made
    /// durable.
    pub fn check_log(&self) -> Result<(), ApiError> {
        match self.wal.as_ref().and_then(Wal::failure) {
            Some(e) => Err(ApiError::LogFailed(e.to_string())),
            None => Ok(()),
        }
    }

    /// Today, UTC, by the edge's clock.
    pub fn today(&self) -> Day {
        Day::from_epoch_ms(self.clock.now_ms()).expect("the server clock is after 1970")
    }
}

pub type AppState = Arc<Edge>;

/// The whole application as a router; `serve` adds the connection info.
pub fn app(state: AppState) -> Router {
    // Beacons come from any site: no credentials, so any origin is safe.
    let ingest_cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::POST, Method::GET])
        .allow_headers([header::CONTENT_TYPE])
        // The SDK honours Retry-After on 429 and 503 answers.
        .expose_headers([header::RETRY_AFTER]);
    // The 405 fallback goes in before the CORS layer so preflights reach it.
    let ingest = Router::new()
        .route("/v1/impressions", post(ingest::post_impressions))
        .route("/v1/impression", get(ingest::get_impression))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            guard::rate_limit,
        ))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(ingest_cors);
    let stats = Router::new()
        .route("/v1/ads", get(stats::ads_route))
        .route("/v1/ads/{ad_id}/stats", get(stats::ad_stats_route))
        .route(
            "/v1/ads/{ad_id}/unique-visitors",
            get(stats::unique_visitors_route),
        );
    let stats = if state.guard.metrics_on_main {
        stats.route("/metrics", get(guard::metrics_guarded))
    } else {
        stats
    };
    let stats = stats
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            auth::require_access,
        ))
        .method_not_allowed_fallback(method_not_allowed);
    let health = Router::new()
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/readyz", get(readyz))
        .method_not_allowed_fallback(method_not_allowed);
    let mut router = Router::new().merge(ingest).merge(stats).merge(health);
    if let Some(dir) = state.sdk_dir.as_ref().filter(|d| d.is_dir()) {
        let sdk = Router::new()
            .fallback_service(
                ServeDir::new(dir)
                    .call_fallback_on_method_not_allowed(true)
                    .fallback(not_found_service()),
            )
            .layer(SetResponseHeaderLayer::overriding(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            ))
            .layer(
                CorsLayer::new()
                    .allow_origin(Any)
                    .allow_methods([Method::GET]),
            );
        router = router.nest_service("/sdk", sdk);
    }
    if let Some(dir) = state.www_dir.as_ref().filter(|d| d.is_dir()) {
        router = router
            .route_service("/dashboard", ServeFile::new(dir.join("dashboard.html")))
            .fallback_service(
                ServeDir::new(dir)
                    .call_fallback_on_method_not_allowed(true)
                    .fallback(not_found_service()),
            );
    } else {
        router = router.fallback(not_found);
    }
    router
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            guard::shed_load,
        ))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            guard::count_errors,
        ))
        .with_state(state)
}

/// `/metrics` alone, for `--metrics-listen`: no key needed, so bind it to an
/// address only the monitoring network reaches.
pub fn metrics_app(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(guard::metrics_route))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .with_state(state)
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    // Static files answer GET and HEAD only; anything else on them is a 405.
    if method == Method::GET || method == Method::HEAD {
        ApiError::NotFound(uri.path().to_owned())
    } else {
        ApiError::MethodNotAllowed
    }
}

fn not_found_service() -> axum::routing::MethodRouter {
    axum::routing::any(not_found)
}

async fn readyz(State(state): State<AppState>) -> Response {
    let store = state.store.kind().to_owned();
    let ping = tokio::time::timeout(std::time::Duration::from_secs(2), state.store.ping()).await;
    let pending = state.aggregator.pending_bytes();
    let log_failed = state.wal.as_ref().and_then(Wal::failure);
    let (status, detail) = match ping {
        _ if log_failed.is_some() => (
            StatusCode::SERVICE_UNAVAILABLE,
            log_failed.map(|e| e.to_string()).unwrap_or_default(),
        ),
        Ok(Ok(())) if pending > state.max_pending_bytes => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{pending} bytes of counts wait for the store, over the bound of {}",
                state.max_pending_bytes
            ),
        ),
        Ok(Ok(())) => {
            return Json(Readiness {
                status: "ready".into(),
                store,
                detail: None,
            })
            .into_response()
        }
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the store did not answer within 2 s".to_owned(),
        ),
    };
    let body = Readiness {
        status: "degraded".into(),
        store,
        detail: Some(detail),
    };
    (status, Json(body)).into_response()
}
