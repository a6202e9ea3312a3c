//! `POST /v1/impressions` and the single-impression `GET /v1/impression`.

use std::collections::HashSet;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use glimpse_wire::api::{ImpressionLogged, IngestResponse, Rejection};
use glimpse_wire::ingest::{
    check_distinct_ads, check_id, decode_batch, Event, EventError, MAX_AD_OR_USER_ID_BYTES,
    MAX_BODY_BYTES,
};
use glimpse_wire::{Day, Kind};
use serde::Deserialize;

use super::error::ApiError;
use super::extract::ApiQuery;
use super::AppState;
use crate::signing;
use crate::traffic::{self, Traffic};

/// `Retry-After` of the 503 sent while pending counts are over their bound.
pub const OVERLOAD_RETRY_AFTER_SECS: u64 = 5;

/// Refuses new work while the counts not yet in the store hold more memory
/// than allowed: a clear 503 beats losing data when memory runs out.
fn check_pending_memory(state: &AppState) -> Result<(), ApiError> {
    let pending = state.aggregator.pending_bytes();
    if pending > state.max_pending_bytes {
        tracing::warn!(
            pending_bytes = pending,
            max = state.max_pending_bytes,
            "pending counts over their bound; refusing ingest until a sync lands"
        );
        return Err(ApiError::PendingOverBound {
            retry_after_secs: OVERLOAD_RETRY_AFTER_SECS,
        });
    }
    Ok(())
}

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

/// With `--ad-signing-secret`, refuses an event without a valid token for
/// its ad; without it, lets every event through.
fn check_token<'a>(
    state: &AppState,
    event: Event<'a>,
    now_ms: i64,
) -> Result<Event<'a>, EventError> {
    let Some(secret) = &state.ad_signing_secret else {
        return Ok(event);
    };
    let now_secs = u64::try_from(now_ms.div_euclid(1000)).unwrap_or(0);
    signing::verify(
        secret.expose().as_bytes(),
        &event.ad_id,
        event.token.as_deref(),
        now_secs,
    )
    .map_err(|why| EventError::new("invalid_token", why))?;
    Ok(event)
}

/// How the events of one request count: judged once from its `User-Agent`
/// and the SDK's `webdriver` report, with the metric reason when invalid.
fn judge(
    state: &AppState,
    headers: &HeaderMap,
    webdriver: bool,
) -> (Traffic, Option<&'static str>) {
    let user_agent = headers
        .get(header::USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()));
    let verdict = traffic::classify(user_agent.as_deref(), webdriver);
    match verdict.traffic(state.count_automation) {
        Traffic::Valid => (Traffic::Valid, None),
        Traffic::Invalid => (Traffic::Invalid, verdict.reason()),
    }
}

pub async fn post_impressions(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<IngestResponse>), ApiError> {
    check_content_type(&headers)?;
    check_pending_memory(&state)?;
    state.check_log()?;
    let bytes = read_body(&headers, body, state.guard.body_timeout).await?;
    let batch = decode_batch(&bytes)?;
    let duplicate_batch = || {
        state.metrics.batch_duplicate(batch.events.len() as u64);
        let response = IngestResponse {
            accepted: 0,
            duplicates: batch.events.len() as u32,
            rejected: Vec::new(),
        };
        Ok((StatusCode::ACCEPTED, Json(response)))
    };
    let claim = loop {
        if let Some(claim) = state.claims.claim(&batch.batch_id) {
            break claim;
        }
        // Another copy of this batch is being counted here (or waits for a
        // sync). This answer must not overtake that copy's fsync: a crash
        // in between would lose a batch this answer acknowledged.
        match state.claims.settled(&batch.batch_id).await {
            Some(position) => {
                if let Some(position) = position {
                    state.logged(position).await?;
                }
                return duplicate_batch();
            }
            // That copy was not counted after all: count this one.
            None => continue,
        }
    };
    match state.store.batch_seen(&batch.batch_id).await {
        // Dropping the claim releases it.
        Ok(true) => return duplicate_batch(),
        Ok(false) => {}
        // Not knowing is no reason to refuse: the store checks the id again
        // when the batch is synced, before it counts anything.
        Err(e) => {
            state.metrics.store_error("batch_seen");
            tracing::warn!(error = %e, "batch id lookup failed; deferring the check to sync")
        }
    }
    let now = state.clock.now_ms();
    let mut response = IngestResponse::default();
    let mut seen_ids = HashSet::with_capacity(batch.events.len());
    let mut events: Vec<Event<'_>> = Vec::with_capacity(batch.events.len());
    for (index, raw) in batch.events.iter().enumerate() {
        match batch
            .validate_event(raw, now)
            .and_then(|e| check_token(&state, e, now))
        {
            Ok(event) if seen_ids.insert(event.id.clone()) => events.push(event),
            Ok(_) => response.duplicates += 1,
            Err(e) => {
                // Counted by category; the message goes to the client only.
                state.metrics.event_rejected(e.code());
                response.rejected.push(Rejection {
                    index,
                    error: e.to_string(),
                })
            }
        }
    }
    // On this error the claim is dropped, and so released.
    check_distinct_ads(&events)?;
    response.accepted = events.len() as u32;
    // The client is not told: a bot learns nothing from the answer.
    let (traffic, invalid_reason) = judge(&state, &headers, batch.webdriver);
    let lsn = state.record_batch(&batch.batch_id, now, traffic, &events);
    claim.counted(lsn);
    state
        .metrics
        .batch_accepted(response.accepted.into(), response.duplicates.into());
    if let Some(reason) = invalid_reason {
        state
            .metrics
            .events_invalid(reason, response.accepted.into());
    }
    if let Some(lsn) = lsn {
        // If the log fails here the answer is 503, yet the batch stays
        // counted in memory with its id claimed: the client's retry is then
        // answered as a duplicate, so the batch counts once (it reaches the
        // store with the next sync) and is never doubled. Releasing the
        // claim instead would count it twice.
        state.logged(lsn).await?;
    }
    Ok((StatusCode::ACCEPTED, Json(response)))
}

#[derive(Debug, Deserialize)]
pub struct SingleImpression {
    ad_id: Option<String>,
    user_id: Option<String>,
}

/// The original single-impression form: one measurable and one viewable
/// impression, now.
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
    let ad_id = param("ad_id", q.ad_id)?;
    let user_id = param("user_id", q.user_id)?;
    check_pending_memory(&state)?;
    state.check_log()?;
    let now = state.clock.now_ms();
    let day = Day::from_epoch_ms(now).expect("the server clock is after 1970");
    let event = |kind| Event {
        id: "single".into(),
        ad_id: ad_id.as_str().into(),
        user_id: user_id.as_str().into(),
        kind,
        ts: now,
        token: None,
        verified: false,
        day,
    };
    // Each call is its own batch, under an id no client can send (ids never
    // contain `/`), so it is never taken for a duplicate.
    let batch_id = format!("single/{:032x}", rand::random::<u128>());
    let (traffic, invalid_reason) = judge(&state, &headers, false);
    let lsn = state.record_batch(
        &batch_id,
        now,
        traffic,
        &[event(Kind::Measurable), event(Kind::Viewable)],
    );
    state.metrics.batch_accepted(2, 0);
    if let Some(reason) = invalid_reason {
        state.metrics.events_invalid(reason, 2);
    }
    if let Some(lsn) = lsn {
        state.logged(lsn).await?;
    }
    Ok(Json(ImpressionLogged {
        message: "impression logged".into(),
        ad_id,
    }))
}
