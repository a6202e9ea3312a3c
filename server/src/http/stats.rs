//! The advertiser-facing stats routes.

use axum::extract::State;
use axum::Json;
use glimpse_wire::api::{AdsResponse, StatsResponse, UniqueVisitorsResponse};
use glimpse_wire::ingest::{check_id, MAX_AD_OR_USER_ID_BYTES};
use glimpse_wire::{Day, DayRange};
use serde::Deserialize;

use super::auth::check_scope;
use super::error::ApiError;
use super::extract::{ApiPath, ApiQuery};
use super::AppState;
use crate::keys::Scope;

#[derive(Debug, Deserialize)]
pub struct RangeQuery {
    from: Option<String>,
    to: Option<String>,
}

fn parse_day(name: &str, value: &str) -> Result<Day, ApiError> {
    value
        .parse()
        .map_err(|e| ApiError::bad_request("invalid_date", format!("`{name}`: {e}")))
}

impl RangeQuery {
    /// The requested range; each end defaults to today (UTC).
    fn range(&self, today: Day) -> Result<DayRange, ApiError> {
        let from = self
            .from
            .as_deref()
            .map(|s| parse_day("from", s))
            .transpose()?;
        let to = self.to.as_deref().map(|s| parse_day("to", s)).transpose()?;
        DayRange::new(from.unwrap_or(today), to.unwrap_or(today))
            .map_err(|e| ApiError::bad_request("invalid_range", e.to_string()))
    }
}

fn checked_ad_id(ad_id: &str) -> Result<(), ApiError> {
    check_id(ad_id, MAX_AD_OR_USER_ID_BYTES)
        .map_err(|why| ApiError::bad_request("invalid_ad_id", format!("`ad_id` {why}")))
}

pub async fn ad_stats_route(
    State(state): State<AppState>,
    scope: Scope,
    ApiPath(ad_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<RangeQuery>,
) -> Result<Json<StatsResponse>, ApiError> {
    checked_ad_id(&ad_id)?;
    check_scope(&scope, &ad_id)?;
    let range = q.range(state.edge.today())?;
    Ok(Json(state.edge.stats(&ad_id, range).await?))
}

#[derive(Debug, Deserialize)]
pub struct DateQuery {
    date: Option<String>,
}

pub async fn unique_visitors_route(
    State(state): State<AppState>,
    scope: Scope,
    ApiPath(ad_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<DateQuery>,
) -> Result<Json<UniqueVisitorsResponse>, ApiError> {
    checked_ad_id(&ad_id)?;
    check_scope(&scope, &ad_id)?;
    let date = q.date.ok_or_else(|| {
        ApiError::bad_request(
            "missing_parameter",
            "the `date` query parameter (YYYY-MM-DD) is required",
        )
    })?;
    let day = parse_day("date", &date)?;
    let stats = state.edge.stats(&ad_id, DayRange::single(day)).await?;
    Ok(Json(UniqueVisitorsResponse {
        ad_id,
        date: day,
        unique_visitors: stats.unique_visitors,
        source: state.edge.store().kind().to_owned(),
    }))
}

/// The ads with counts in the range, only those inside the caller's scope.
pub async fn ads_route(
    State(state): State<AppState>,
    scope: Scope,
    ApiQuery(q): ApiQuery<RangeQuery>,
) -> Result<Json<AdsResponse>, ApiError> {
    let range = q.range(state.edge.today())?;
    let ads = state.edge.ads(range, |id| scope.allows(id)).await?;
    Ok(Json(AdsResponse {
        from: range.from(),
        to: range.to(),
        ads,
    }))
}
