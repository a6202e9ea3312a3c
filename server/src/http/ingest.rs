//! `POST /v1/impressions` and the single-impression `GET /v1/impression`.

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use glimpse_wire::api::{ImpressionLogged, IngestResponse};
use glimpse_wire::ingest::{
    check_id, decode_batch, BatchBody, Id, MAX_AD_OR_USER_ID_BYTES, MAX_BODY_BYTES,
};
use glimpse_wire::Subject;
use serde::Deserialize;

use super::error::ApiError;
use super::extract::ApiQuery;
use super::AppState;
use crate::traffic::{self, Verdict};

fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let value = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or(ApiError::UnsupportedMediaType)?;
    let essence = value.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("text/plain")
        || essence.eq_ignore_ascii_case("application/json")
    {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType)
    }
}

async fn read_body(
    headers: &HeaderMap,
    body: Body,
    timeout: Duration,
) -> Result<axum::body::Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(ApiError::PayloadTooLarge);
    }
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, MAX_BODY_BYTES)).await {
        Err(_) => Err(ApiError::BodyTimeout(timeout.as_secs().max(1))),
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                Err(ApiError::PayloadTooLarge)
            } else {
                Err(ApiError::bad_request(
                    "body_read_failed",
                    format!("the body could not be read: {e}"),
                ))
            }
        }
    }
}

/// The verdict on one request: judged once from its `User-Agent` and the
/// SDK's `webdriver` report.
fn judge(headers: &HeaderMap, webdriver: bool) -> Verdict {
    let user_agent = headers
        .get(header::USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()));
    traffic::classify(user_agent.as_deref(), webdriver)
}

#[utoipa::path(
    post,
    path = "/v1/impressions",
    tag = "ingest",
    summary = "A batch of events from the SDK",
    description = "The body may also be sent as `text/plain` (what `sendBeacon` sends), with the \
        same JSON. Each event is validated on its own: a bad one is rejected in the answer, by \
        index, and its siblings count. A batch id already counted answers 202 with the events \
        as duplicates.",
    request_body(content = BatchBody, content_type = "application/json"),
    responses((status = 202, description = "Accepted: what counted, what was a duplicate, what was rejected.",
        body = IngestResponse)),
)]
pub async fn post_impressions(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<IngestResponse>), ApiError> {
    check_content_type(&headers)?;
    let bytes = read_body(&headers, body, state.guard.body_timeout).await?;
    // Refused after the body (at most 64 KiB) is read: answering before it
    // closes the connection under a client still sending, which then sees
    // a reset instead of the 503 and its Retry-After.
    state.edge.admit()?;
    let batch = decode_batch(&bytes)?;
    let verdict = judge(&headers, batch.webdriver);
    let response = state.edge.ingest(&batch, verdict).await?;
    Ok((StatusCode::ACCEPTED, Json(response)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SingleImpression {
    /// Exactly one of `ad_id` and `post_id`, as in a batch's event.
    #[param(value_type = Option<Id>)]
    ad_id: Option<String>,
    /// A post, instead of an ad.
    #[param(value_type = Option<Id>)]
    post_id: Option<String>,
    /// The visitor.
    #[param(value_type = Id, required = true)]
    user_id: Option<String>,
    /// The ad's signature, as in a batch's event; required only by an edge
    /// run with `--ad-signing-secret`.
    token: Option<String>,
}

/// The original single-impression form: one measurable and one viewable
/// impression, now. An edge that requires signed ads refuses it without a
/// valid `token` for its ad (400 `invalid_token`), as it refuses such an
/// event in a batch.
#[utoipa::path(
    get,
    path = "/v1/impression",
    tag = "ingest",
    summary = "One viewable impression of an ad (or view of a post), now",
    params(SingleImpression),
    responses((status = 200, description = "Counted.", body = ImpressionLogged)),
)]
pub async fn get_impression(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<SingleImpression>,
) -> Result<Json<ImpressionLogged>, ApiError> {
    let param = |name: &'static str, value: Option<String>| {
        let value = value.ok_or_else(|| {
            ApiError::bad_request(
                "missing_parameter",
                format!("the `{name}` query parameter is required"),
            )
        })?;
        check_id(&value, MAX_AD_OR_USER_ID_BYTES)
            .map_err(|why| ApiError::bad_request("invalid_parameter", format!("`{name}` {why}")))?;
        Ok::<_, ApiError>(value)
    };
    let (subject, subject_id) = match (q.ad_id, q.post_id) {
        (Some(ad_id), None) => (Subject::Ad, param("ad_id", Some(ad_id))?),
        (None, Some(post_id)) => (Subject::Post, param("post_id", Some(post_id))?),
        (None, None) => {
            return Err(ApiError::bad_request(
                "missing_parameter",
                "the `ad_id` (an ad) or `post_id` (a post) query parameter is required",
            ))
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                "the query names both `ad_id` and `post_id`; it must name exactly one",
            ))
        }
    };
    let user_id = param("user_id", q.user_id)?;
    state
        .edge
        .ingest_single(
            subject,
            &subject_id,
            &user_id,
            q.token.as_deref(),
            judge(&headers, false),
        )
        .await?;
    let (ad_id, post_id) = match subject {
        Subject::Ad => (Some(subject_id), None),
        Subject::Post => (None, Some(subject_id)),
    };
    Ok(Json(ImpressionLogged {
        message: if subject == Subject::Ad {
            "impression logged".into()
        } else {
            "view logged".into()
        },
        ad_id,
        post_id,
    }))
}
