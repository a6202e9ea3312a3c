//! The HTTP layer: routes, extractors, auth, the guard layers, static files
//! and the mapping of errors to answers. The only module that knows HTTP;
//! every route calls the edge's core ([`crate::edge`]) for the work.

mod auth;
mod cors;
mod csv;
mod error;
mod extract;
mod guard;
mod ingest;
mod openapi;
mod sdk;
mod serve;
mod stats;
mod views;

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{middleware, Extension, Json, Router};
use glimpse_wire::api::Readiness;
use tower_http::services::{ServeDir, ServeFile};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::Access;
pub use guard::Guard;
pub(crate) use serve::serve;

use self::cors::Cors;
use self::error::ApiError;
use crate::config::Config;
use crate::edge::Edge;

/// What only the HTTP layer needs, besides the core.
#[derive(Debug)]
pub struct HttpParts {
    /// Who may read stats.
    pub access: Access,
    /// Rate limit, concurrency limit, body timeout, where `/metrics` is.
    pub guard: Guard,
    /// The demo site, served at `/` when present.
    pub www_dir: Option<PathBuf>,
    /// The built SDK, served at `/sdk/` when present.
    pub sdk_dir: Option<PathBuf>,
}

impl HttpParts {
    /// `access`, the default guard and no static files.
    pub fn new(access: Access) -> Self {
        HttpParts {
            access,
            guard: Guard::default(),
            www_dir: None,
            sdk_dir: None,
        }
    }

    /// `access` and what the flags say.
    pub fn from_config(config: &Config, access: Access) -> Self {
        HttpParts {
            access,
            guard: Guard::from_config(config),
            www_dir: Some(config.www_dir.clone()),
            sdk_dir: Some(config.sdk_dir.clone()),
        }
    }
}

/// Everything the handlers share: the core and the HTTP parts.
#[derive(Debug)]
pub struct HttpState {
    edge: Arc<Edge>,
    access: Access,
    guard: Guard,
    www_dir: Option<PathBuf>,
    sdk_dir: Option<PathBuf>,
}

impl HttpState {
    pub fn new(edge: Arc<Edge>, parts: HttpParts) -> Self {
        HttpState {
            edge,
            access: parts.access,
            guard: parts.guard,
            www_dir: parts.www_dir,
            sdk_dir: parts.sdk_dir,
        }
    }

    pub fn guard(&self) -> &Guard {
        &self.guard
    }
}

pub type AppState = Arc<HttpState>;

/// The whole application as a router; `serve` adds the connection info.
pub fn app(state: AppState) -> Router {
    // Every route goes in by `routes!`, which documents it too (see
    // `openapi.rs`).
    let (ingest, ingest_doc) = OpenApiRouter::new()
        .routes(routes!(ingest::post_impressions))
        .routes(routes!(ingest::get_impression))
        .split_for_parts();
    // The 405 fallback goes in before the CORS layer so preflights reach it.
    let ingest = rate_limited(ingest, &state)
        .method_not_allowed_fallback(method_not_allowed)
        // Beacons come from any site: no credentials, so any origin is safe.
        .layer(Cors::<cors::Ingest>::new());
    // View counts are shown to every visitor of a feed: public, from any
    // origin, rate limited like ingest.
    let (views, views_doc) = OpenApiRouter::new()
        .routes(routes!(views::views_route))
        .split_for_parts();
    let views = rate_limited(views, &state)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(Cors::<cors::Views>::new());
    let stats = OpenApiRouter::new()
        .routes(routes!(stats::ads_route))
        .routes(routes!(stats::post_stats_route))
        .routes(routes!(stats::ad_stats_route))
        .routes(routes!(stats::unique_visitors_route))
        .routes(routes!(stats::campaigns_route))
        .routes(routes!(stats::campaign_stats_route));
    let stats = if state.guard.metrics_on_main {
        stats.routes(routes!(guard::metrics_guarded))
    } else {
        stats
    };
    let (stats, stats_doc) = stats.split_for_parts();
    let stats = stats
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            auth::require_access,
        ))
        .method_not_allowed_fallback(method_not_allowed);
    let (health, health_doc) = OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(openapi::openapi_route))
        .split_for_parts();
    let document = openapi::document([ingest_doc, views_doc, stats_doc, health_doc]);
    let health = health
        .route_layer(Extension(openapi::Document::new(&document)))
        .method_not_allowed_fallback(method_not_allowed);
    let mut router = Router::new()
        .merge(ingest)
        .merge(views)
        .merge(stats)
        .merge(health);
    if let Some(dir) = state.sdk_dir.as_ref().filter(|d| d.is_dir()) {
        router = router.nest_service("/sdk", sdk::router(dir));
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
            guard::shed_and_count,
        ))
        .with_state(state)
}

/// `router`'s routes behind the per-client rate limit, when the edge has
/// one; without, no layer at all (it would only pass each request on, at
/// the cost of a boxed service and future per request).
fn rate_limited(router: Router<AppState>, state: &AppState) -> Router<AppState> {
    if state.guard.rate_limited() {
        router.route_layer(middleware::from_fn_with_state(
            Arc::clone(state),
            guard::rate_limit,
        ))
    } else {
        router
    }
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

/// `GET /healthz`: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    summary = "Liveness",
    responses((status = 200, description = "`{\"status\":\"ok\"}`", body = Object)),
)]
async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// `GET /readyz`: 200 while the edge can accept ingest, 503 when it cannot
/// (the log failed, or pending counts are over their bound). The store's
/// health is in the body either way; a store outage alone leaves the edge
/// ready, since ingest goes on without it.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    summary = "Readiness: can this edge accept ingest",
    responses(
        (status = 200, description = "Ready; the store's health is in the body.", body = Readiness),
        (status = 503, description = "Not ready (`detail` says why), or at the concurrency limit.",
         body = Readiness),
    ),
)]
async fn readyz(State(state): State<AppState>) -> Response {
    let store = state.edge.store().kind().to_owned();
    let store_status = state.edge.store_health().await.as_str().to_owned();
    let (status, code, detail) = match state.edge.can_ingest() {
        Ok(()) => (StatusCode::OK, "ready", None),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "degraded",
            Some(why.to_owned()),
        ),
    };
    let body = Readiness {
        status: code.into(),
        store,
        store_status,
        detail,
    };
    (status, Json(body)).into_response()
}
