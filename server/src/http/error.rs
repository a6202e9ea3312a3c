//! The one error type of the HTTP layer. Every error answer, 404 and 405
//! included, is `{"error":{"code":..,"message":..}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use glimpse_wire::api::{ErrorBody, ErrorDetail};
use glimpse_wire::ingest::{BatchError, MAX_BODY_BYTES};

use crate::edge::IngestError;
use crate::store::StoreError;

/// `Retry-After` of the 503 sent while pending counts or the write-ahead log
/// are over their bound.
pub const OVERLOAD_RETRY_AFTER_SECS: u64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Batch(#[from] BatchError),
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("the body is larger than {MAX_BODY_BYTES} bytes")]
    PayloadTooLarge,
    #[error("the content type must be text/plain or application/json")]
    UnsupportedMediaType,
    #[error("the request body did not arrive within {0} s")]
    BodyTimeout(u64),
    #[error("a valid API key is required: send `Authorization: Bearer <key>`")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("no route for {0}")]
    NotFound(String),
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    #[error("the store is unavailable; try again shortly")]
    StoreUnavailable(#[from] StoreError),
    #[error("this API key may not read ad `{0}`")]
    OutOfScope(String),
    #[error("too many requests from this client; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("the server is at its limit of concurrent requests; retry shortly")]
    Overloaded,
    #[error("the edge holds too many counts not yet written to the store; retry in {retry_after_secs} s")]
    PendingOverBound { retry_after_secs: u64 },
    #[error("the edge holds too many batches not yet written to the store; retry in {retry_after_secs} s")]
    LogOverBound { retry_after_secs: u64 },
    /// The detail (a file, an OS error) is in the edge's logs, not here:
    /// anyone may post.
    #[error("the batch could not be made durable on this edge; retry it: it will count once")]
    LogFailed,
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::PendingOverBound { .. } => ApiError::PendingOverBound {
                retry_after_secs: OVERLOAD_RETRY_AFTER_SECS,
            },
            IngestError::LogOverBound { .. } => ApiError::LogOverBound {
                retry_after_secs: OVERLOAD_RETRY_AFTER_SECS,
            },
            IngestError::LogFailed(_) => ApiError::LogFailed,
            IngestError::Batch(e) => ApiError::Batch(e),
            IngestError::Event(e) => ApiError::bad_request(e.code(), e.to_string()),
        }
    }
}

/// The `code` of an error answer, left in the response's extensions so
/// middleware can count errors by category.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorCode(pub &'static str);

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Batch(e) => (StatusCode::BAD_REQUEST, e.code()),
            ApiError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::BodyTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "body_timeout"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::StoreUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
            ApiError::OutOfScope(_) => (StatusCode::FORBIDDEN, "out_of_scope"),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            ApiError::PendingOverBound { .. } => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            ApiError::LogOverBound { .. } => (StatusCode::SERVICE_UNAVAILABLE, "log_full"),
            ApiError::LogFailed => (StatusCode::SERVICE_UNAVAILABLE, "log_unavailable"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let ApiError::StoreUnavailable(e) = &self {
            tracing::warn!(error = %e, "stats request failed on the store");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_owned(),
                message: self.to_string(),
            },
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        match &self {
            ApiError::RateLimited { retry_after_secs } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            ApiError::Overloaded => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::PendingOverBound { retry_after_secs }
            | ApiError::LogOverBound { retry_after_secs } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            _ => {}
        }
        response.extensions_mut().insert(ErrorCode(code));
        response
    }
}
