//! CORS for the public routes (ingest and view counts): any origin, no
//! credentials, and the methods and headers each group of routes names.
//! The answers are the ones tower-http's `CorsLayer` gives for that
//! configuration, header for header; its layer is not used because axum
//! clones a route's service on every request, and tower-http's carries its
//! whole configuration (a `Vec` among it) and builds its headers into a map
//! of its own each time. Here every header is a constant.

use std::marker::PhantomData;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, Request};
use axum::response::Response;
use futures_util::future::{self, Either, MapOk, Ready, TryFutureExt};
use tower::{Layer, Service};

/// What one group of routes allows, as header values.
pub(super) trait Rules: Send + Sync + 'static {
    /// `Access-Control-Allow-Methods` of a preflight.
    const ALLOW_METHODS: HeaderValue;
    /// `Access-Control-Allow-Headers` of a preflight.
    const ALLOW_HEADERS: HeaderValue;
    /// `Access-Control-Expose-Headers` of every other answer.
    const EXPOSE_HEADERS: HeaderValue;
}

/// Beacons: posted or fetched from any site.
pub(super) struct Ingest;

impl Rules for Ingest {
    const ALLOW_METHODS: HeaderValue = HeaderValue::from_static("POST,GET");
    const ALLOW_HEADERS: HeaderValue = HeaderValue::from_static("content-type");
    // The SDK honours Retry-After on 429 and 503 answers.
    const EXPOSE_HEADERS: HeaderValue = HeaderValue::from_static("retry-after");
}

/// View counts: read from any site; a script may revalidate by hand.
pub(super) struct Views;

impl Rules for Views {
    const ALLOW_METHODS: HeaderValue = HeaderValue::from_static("GET");
    const ALLOW_HEADERS: HeaderValue = HeaderValue::from_static("if-none-match");
    const EXPOSE_HEADERS: HeaderValue = HeaderValue::from_static("etag,cache-control");
}

const ANY_ORIGIN: HeaderValue = HeaderValue::from_static("*");
/// The request headers a CORS answer depends on.
const VARY: HeaderValue = HeaderValue::from_static(
    "origin, access-control-request-method, access-control-request-headers",
);

/// The layer of one group of routes.
pub(super) struct Cors<R>(PhantomData<R>);

impl<R> Cors<R> {
    pub(super) fn new() -> Self {
        Cors(PhantomData)
    }
}

impl<R> Clone for Cors<R> {
    fn clone(&self) -> Self {
        Cors(PhantomData)
    }
}

impl<S, R> Layer<S> for Cors<R> {
    type Service = CorsService<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        CorsService {
            inner,
            rules: PhantomData,
        }
    }
}

pub(super) struct CorsService<S, R> {
    inner: S,
    rules: PhantomData<R>,
}

impl<S: Clone, R> Clone for CorsService<S, R> {
    fn clone(&self) -> Self {
        CorsService {
            inner: self.inner.clone(),
            rules: PhantomData,
        }
    }
}

impl<S, R, B> Service<Request<B>> for CorsService<S, R>
where
    S: Service<Request<B>, Response = Response>,
    R: Rules,
{
    type Response = Response;
    type Error = S::Error;
    type Future =
        Either<Ready<Result<Response, S::Error>>, MapOk<S::Future, fn(Response) -> Response>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // Every OPTIONS request is answered as a preflight, as tower-http
        // answers it.
        if request.method() == Method::OPTIONS {
            let mut response = Response::new(Body::empty());
            let headers = response.headers_mut();
            headers.insert(header::VARY, VARY);
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, ANY_ORIGIN);
            headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, R::ALLOW_METHODS);
            headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, R::ALLOW_HEADERS);
            return Either::Left(future::ready(Ok(response)));
        }
        Either::Right(self.inner.call(request).map_ok(stamp::<R> as fn(_) -> _))
    }
}

/// The CORS headers of an answer that is not a preflight: `Vary` added to
/// any the route set, the others set.
fn stamp<R: Rules>(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.append(header::VARY, VARY);
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, ANY_ORIGIN);
    headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, R::EXPOSE_HEADERS);
    response
}
