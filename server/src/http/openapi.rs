//! `GET /v1/openapi.json`: the OpenAPI 3.1 document of the API, generated
//! from the code that serves it.
//!
//! Each route's handler carries `#[utoipa::path(...)]` (method, path,
//! parameters, success answers, security), and [`super::app`] registers it
//! with `.routes(routes!(handler))`, which routes it and documents it in one
//! go. Documenting a new route is therefore:
//!
//! 1. `#[utoipa::path(...)]` on its handler (see the stats routes);
//! 2. one `.routes(routes!(module::handler))` line in [`super::app`] in place
//!    of `.route(path, get(handler))`;
//! 3. one line of [`ERRORS`]: the error statuses and codes it answers.
//!
//! A route added with a plain `.route(..)` is served but missing from the
//! document: the router tests (`server/tests/api/openapi.rs`) compare every
//! routed path with the document's. An operation without its line in
//! [`ERRORS`] stops the router from being built at all.
//!
//! Left out on purpose: `/sdk/` (static files of the SDK build), the demo
//! site and `/dashboard` (static HTML), and `/metrics` on its own listener
//! (`--metrics-listen`, not this API; on the main listener it is documented).

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use glimpse_wire::api::ErrorBody;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, OneOfBuilder, Ref, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi as _};

/// The name of the API-key scheme in the document (the `security((..))` of
/// each stats route spells it out: the attribute takes a literal).
const API_KEY: &str = "api_key";

/// How long a client or CDN may keep the document: it changes only with
/// a new build of the edge.
const DOCUMENT_CACHE_CONTROL: &str = "public, max-age=300";

/// What every document starts from: the API's description, its tags, the
/// error body and the key scheme; the routers add the paths.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "glimpse edge",
        description = "Impression counting for the web: ingest of the SDK's beacons, \
            public post view counts, and the advertiser's stats.\n\n\
            Every error answer is `{\"error\":{\"code\",\"message\"}}`; each operation lists the \
            codes each status carries. An unknown path answers 404 `not_found` and a method a path \
            does not serve answers 405 `method_not_allowed`, both with that body.\n\n\
            The stats routes answer CSV (RFC 4180, a header row, one row per day or per ad) for \
            `format=csv` or an `Accept` header that names `text/csv` before any JSON type; \
            JSON otherwise.",
    ),
    components(schemas(ErrorBody)),
    modifiers(&KeyScheme),
    tags(
        (name = "ingest", description = "Beacons from the SDK: any origin, no credentials."),
        (name = "views", description = "Public view counts of posts, made for a CDN."),
        (name = "stats", description = "The advertiser's counts: an API key, scoped by ad-id prefix."),
        (name = "operations", description = "Probes, metrics and this document."),
    )
)]
struct ApiDoc;

/// The stats routes' key, as the edge reads it.
struct KeyScheme;

impl Modify for KeyScheme {
    fn modify(&self, openapi: &mut OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "`Authorization: Bearer <key>`: a key of `--api-keys` (every ad) or of \
                 `--api-keys-file` (the ads whose ids start with one of its prefixes). An edge \
                 with no key configured serves the stats routes to loopback clients only, \
                 without a key.",
            ))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(API_KEY, SecurityScheme::Http(scheme));
    }
}

type StatusCodes = (u16, &'static [&'static str]);

const RATE_LIMITED: StatusCodes = (429, &["rate_limited"]);
const SHED: StatusCodes = (503, &["overloaded"]);
const STATS_503: StatusCodes = (503, &["overloaded", "store_unavailable"]);
const INGEST_503: StatusCodes = (503, &["overloaded", "log_full", "log_unavailable"]);
const UNAUTHORIZED: StatusCodes = (401, &["unauthorized"]);
const FORBIDDEN: StatusCodes = (403, &["forbidden"]);
const AD_FORBIDDEN: StatusCodes = (403, &["forbidden", "out_of_scope"]);
/// An empty id segment (`/v1/ads//stats`) is no route.
const EMPTY_SEGMENT: StatusCodes = (404, &["not_found"]);

/// The error answers of each documented operation, by operation id (the
/// handler's name): every status with the `code`s its body may carry. The
/// error schemas of the document are built from this, so a checker of the
/// answers against the document checks every code too.
const ERRORS: &[(&str, &[StatusCodes])] = &[
    (
        "post_impressions",
        &[
            (
                400,
                &[
                    "invalid_json",
                    "not_an_object",
                    "invalid_batch_id",
                    "invalid_events",
                    "too_many_events",
                    "too_many_ads",
                    "invalid_webdriver",
                    "invalid_sent_at",
                    "body_read_failed",
                ],
            ),
            (408, &["body_timeout"]),
            (413, &["payload_too_large"]),
            (415, &["unsupported_media_type"]),
            RATE_LIMITED,
            INGEST_503,
        ],
    ),
    (
        "get_impression",
        &[
            (
                400,
                &[
                    "missing_parameter",
                    "invalid_parameter",
                    "invalid_query",
                    "invalid_token",
                ],
            ),
            RATE_LIMITED,
            INGEST_503,
        ],
    ),
    (
        "views_route",
        &[
            (
                400,
                &[
                    "missing_parameter",
                    "too_many_ids",
                    "invalid_id",
                    "invalid_query",
                ],
            ),
            RATE_LIMITED,
            STATS_503,
        ],
    ),
    (
        "ads_route",
        &[
            (
                400,
                &[
                    "invalid_date",
                    "invalid_range",
                    "invalid_tz",
                    "unsupported_tz",
                    "invalid_limit",
                    "invalid_cursor",
                    "invalid_query",
                    "invalid_format",
                ],
            ),
            UNAUTHORIZED,
            FORBIDDEN,
            STATS_503,
        ],
    ),
    (
        "campaigns_route",
        &[
            (
                400,
                &[
                    "invalid_date",
                    "invalid_range",
                    "invalid_tz",
                    "unsupported_tz",
                    "invalid_limit",
                    "invalid_cursor",
                    "invalid_query",
                    "invalid_format",
                ],
            ),
            UNAUTHORIZED,
            FORBIDDEN,
            STATS_503,
        ],
    ),
    (
        "campaign_stats_route",
        &[
            (
                400,
                &[
                    "invalid_campaign_id",
                    "invalid_path",
                    "invalid_date",
                    "invalid_range",
                    "invalid_tz",
                    "unsupported_tz",
                    "invalid_granularity",
                    "range_too_long",
                    "invalid_query",
                    "invalid_format",
                ],
            ),
            UNAUTHORIZED,
            AD_FORBIDDEN,
            EMPTY_SEGMENT,
            STATS_503,
        ],
    ),
    (
        "ad_stats_route",
        &[
            (
                400,
                &[
                    "invalid_ad_id",
                    "invalid_path",
                    "invalid_date",
                    "invalid_range",
                    "invalid_tz",
                    "unsupported_tz",
                    "invalid_granularity",
                    "range_too_long",
                    "invalid_query",
                    "invalid_format",
                ],
            ),
            UNAUTHORIZED,
            AD_FORBIDDEN,
            EMPTY_SEGMENT,
            STATS_503,
        ],
    ),
    (
        "post_stats_route",
        &[
            (
                400,
                &[
                    "invalid_post_id",
                    "invalid_path",
                    "invalid_date",
                    "invalid_range",
                    "invalid_tz",
                    "unsupported_tz",
                    "invalid_granularity",
                    "range_too_long",
                    "invalid_query",
                    "invalid_format",
                ],
            ),
            UNAUTHORIZED,
            FORBIDDEN,
            EMPTY_SEGMENT,
            STATS_503,
        ],
    ),
    (
        "unique_visitors_route",
        &[
            (
                400,
                &[
                    "invalid_ad_id",
                    "invalid_path",
                    "missing_parameter",
                    "invalid_date",
                    "invalid_query",
                    "invalid_format",
                ],
            ),
            UNAUTHORIZED,
            AD_FORBIDDEN,
            EMPTY_SEGMENT,
            STATS_503,
        ],
    ),
    ("metrics_guarded", &[UNAUTHORIZED, FORBIDDEN]),
    ("healthz", &[]),
    ("readyz", &[]),
    ("openapi_route", &[SHED]),
];

/// The whole document: [`ApiDoc`] with the paths the routers collected,
/// and each operation's error answers from [`ERRORS`].
pub(crate) fn document(routers: impl IntoIterator<Item = OpenApi>) -> OpenApi {
    let mut doc = ApiDoc::openapi();
    for part in routers {
        doc.merge(part);
    }
    for item in doc.paths.paths.values_mut() {
        for operation in operations(item) {
            add_errors(operation);
        }
    }
    doc
}

fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// The error answers of one operation; where the operation documents a
/// body of its own for that status (`/readyz`'s 503), either body.
fn add_errors(operation: &mut Operation) {
    let id = operation.operation_id.as_deref().unwrap_or_default();
    // Every router is built through here: a route documented without its
    // errors fails every test that builds one.
    let (_, errors) = ERRORS
        .iter()
        .find(|(op, _)| *op == id)
        .unwrap_or_else(|| panic!("operation `{id}` has no line in openapi::ERRORS"));
    for (status, codes) in errors.iter().copied() {
        let errors = error_schema(codes);
        let key = status.to_string();
        let responses = &mut operation.responses.responses;
        let own = responses.get(&key).and_then(json_schema);
        let schema = match own {
            Some(own) => OneOfBuilder::new().item(own).item(errors).into(),
            None => errors,
        };
        let description = match responses.get(&key) {
            Some(RefOr::T(response)) => response.description.clone(),
            _ => format!("`code`: {}", codes.join(", ")),
        };
        let response = ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new().schema(Some(schema)).build(),
            )
            .build();
        responses.insert(key, RefOr::T(response));
    }
}

/// The JSON schema an operation already gives a status.
fn json_schema(response: &RefOr<utoipa::openapi::Response>) -> Option<RefOr<Schema>> {
    match response {
        RefOr::T(response) => response
            .content
            .get("application/json")
            .and_then(|c| c.schema.clone()),
        RefOr::Ref(_) => None,
    }
}

/// `ErrorBody` whose `code` is one of `codes`.
fn error_schema(codes: &[&str]) -> RefOr<Schema> {
    let code = ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(codes.iter().copied()));
    let narrowed = ObjectBuilder::new().property(
        "error",
        ObjectBuilder::new().property("code", code).required("code"),
    );
    AllOfBuilder::new()
        .item(Ref::from_schema_name("ErrorBody"))
        .item(narrowed)
        .into()
}

/// The document as served: JSON, built once per router.
#[derive(Clone, Debug)]
pub(crate) struct Document(Arc<Bytes>);

impl Document {
    pub(crate) fn new(doc: &OpenApi) -> Self {
        let json = serde_json::to_vec(doc).expect("an OpenAPI document serializes");
        Document(Arc::new(Bytes::from(json)))
    }
}

/// `GET /v1/openapi.json`: this document. Public (it holds no secret) and
/// cacheable.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "operations",
    summary = "This document (OpenAPI 3.1)",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this edge's API.",
         content_type = "application/json", body = Object),
    ),
)]
pub(crate) async fn openapi_route(Extension(doc): Extension<Document>) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static(DOCUMENT_CACHE_CONTROL),
            ),
        ],
        Bytes::clone(&doc.0),
    )
        .into_response()
}
