//! Abuse limits and observation as middleware: the per-client rate limit on
//! ingest, load shedding at the concurrency limit, counting error answers by
//! code, and `/metrics`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::MockConnectInfo;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, Extensions, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::error::{ApiError, ErrorCode};
use super::{AppState, HttpState};
use crate::keys::Scope;
use crate::proxies::{client_ip, Cidr};
use crate::ratelimit::{RateLimiter, DEFAULT_MAX_CLIENTS};
use crate::Config;

/// Default time a request body has to arrive in full.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The limits an edge enforces. [`Guard::default`] enforces none but the
/// body timeout; [`Guard::from_config`] follows the flags.
#[derive(Debug)]
pub struct Guard {
    /// Per-client token buckets on the ingest routes.
    rate_limiter: Option<RateLimiter>,
    /// Peers whose `X-Forwarded-For` is believed.
    trusted_proxies: Vec<Cidr>,
    /// Permits for requests in flight; none left means 503 at once.
    concurrency: Option<(Arc<Semaphore>, usize)>,
    /// A request body must arrive within this time.
    pub(super) body_timeout: Duration,
    /// Whether `/metrics` is served on the main listener (with a wildcard
    /// key, or from loopback without keys) rather than on its own.
    pub(super) metrics_on_main: bool,
}

impl Default for Guard {
    fn default() -> Self {
        Guard {
            rate_limiter: None,
            trusted_proxies: Vec::new(),
            concurrency: None,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            metrics_on_main: true,
        }
    }
}

impl Guard {
    pub fn from_config(config: &Config) -> Self {
        Guard {
            rate_limiter: config
                .rate_limit
                .map(|rate| RateLimiter::new(rate, DEFAULT_MAX_CLIENTS)),
            trusted_proxies: config.trusted_proxies.clone(),
            concurrency: Self::concurrency_limit(config.max_concurrent_requests),
            body_timeout: config.body_timeout,
            metrics_on_main: config.metrics_listen.is_none(),
        }
    }

    /// A limit of `max` requests in flight (0 means no limit).
    fn concurrency_limit(max: usize) -> Option<(Arc<Semaphore>, usize)> {
        (max > 0).then(|| (Arc::new(Semaphore::new(max)), max))
    }

    /// Whether ingest is rate limited per client.
    pub(super) fn rate_limited(&self) -> bool {
        self.rate_limiter.is_some()
    }

    /// Requests holding a permit now.
    pub fn in_flight(&self) -> usize {
        self.concurrency
            .as_ref()
            .map_or(0, |(s, max)| max - s.available_permits())
    }
}

/// The TCP peer of a request (the mock one in in-process tests).
fn peer_addr(extensions: &Extensions) -> Option<SocketAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
        .or_else(|| extensions.get::<MockConnectInfo<SocketAddr>>().map(|c| c.0))
}

/// The client of a request: its TCP peer, or the address behind it when the
/// peer is a trusted proxy (see [`crate::proxies`]). The one answer the rate
/// limit and the loopback-only rule both go by.
pub(super) fn client_addr(guard: &Guard, request: &Request) -> Option<IpAddr> {
    let peer = peer_addr(request.extensions())?;
    let forwarded = request
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok());
    Some(client_ip(peer.ip(), forwarded, &guard.trusted_proxies))
}

/// Takes a token from the client's bucket, or answers 429 with
/// `Retry-After`.
pub async fn rate_limit(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if let (Some(limiter), Some(client)) = (
        state.guard.rate_limiter.as_ref(),
        client_addr(&state.guard, &request),
    ) {
        if let Err(retry_after_secs) = limiter.check(client, state.edge.now_ms()) {
            state.edge.metrics().rate_limited();
            return Err(ApiError::RateLimited { retry_after_secs });
        }
    }
    Ok(next.run(request).await)
}

/// Routes that answer even at the concurrency limit: probes and metrics must
/// keep working when the edge is busiest.
fn exempt_from_shedding(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// Counts every error answer by code, and ingest refusals as rejected
/// batches, around the load shedding (whose 503s count too). One layer for
/// both: each `from_fn` layer costs a boxed service and a boxed future per
/// request.
pub async fn shed_and_count(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let ingest = request.uri().path() == "/v1/impressions";
    let response = shed_load(&state, request, next).await;
    if let Some(ErrorCode(code)) = response.extensions().get::<ErrorCode>().copied() {
        state.edge.metrics().http_error(code);
        if ingest {
            state.edge.metrics().batch_rejected(code);
        }
    }
    response
}

/// Answers 503 at once when the concurrency limit is reached, rather than
/// queueing requests until everything times out.
async fn shed_load(state: &HttpState, request: Request, next: Next) -> Response {
    let Some((semaphore, _)) = state.guard.concurrency.as_ref() else {
        return next.run(request).await;
    };
    if exempt_from_shedding(request.uri().path()) {
        return next.run(request).await;
    }
    match Arc::clone(semaphore).try_acquire_owned() {
        Ok(permit) => {
            let response = next.run(request).await;
            drop(permit);
            response
        }
        Err(_) => {
            state.edge.metrics().load_shed();
            ApiError::Overloaded.into_response()
        }
    }
}

/// `GET /metrics` on the main listener: needs a key whose scope is `*`
/// (loopback clients when no key is configured).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    summary = "Prometheus metrics",
    description = "On the main listener (for a key whose scope is `*`) unless the edge runs with \
        `--metrics-listen`, which serves them apart, without a key.",
    responses((status = 200, description = "The Prometheus text exposition.",
        content_type = "text/plain; version=0.0.4; charset=utf-8", body = String)),
    security(("api_key" = [])),
)]
pub async fn metrics_guarded(State(state): State<AppState>, scope: Scope) -> Response {
    if scope != Scope::All {
        return ApiError::Forbidden("metrics need an API key whose scope is `*`").into_response();
    }
    metrics_route(State(state)).await
}

/// `GET /metrics`: the Prometheus text exposition.
pub async fn metrics_route(State(state): State<AppState>) -> Response {
    let rate_limited_clients = state
        .guard
        .rate_limiter
        .as_ref()
        .map_or(0, RateLimiter::clients);
    let text = state
        .edge
        .render_metrics(rate_limited_clients, state.guard.in_flight())
        .await;
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
