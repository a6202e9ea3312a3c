//! The advertiser-facing stats routes.

use axum::extract::State;
use axum::response::Response;
use glimpse_wire::api::{
    AdsResponse, CampaignStatsResponse, CampaignsResponse, PostStatsResponse, StatsResponse,
    UniqueVisitorsResponse,
};
use glimpse_wire::ingest::{check_id, Id, MAX_AD_OR_USER_ID_BYTES};
use glimpse_wire::{Day, DayRange};
use serde::Deserialize;
use utoipa::IntoParams;

use super::auth::check_scope;
use super::csv::{respond, Format, FormatQuery};
use super::error::ApiError;
use super::extract::{ApiPath, ApiQuery};
use super::AppState;
use crate::edge::Page;
use crate::keys::Scope;
use crate::stats::Ask;
use crate::tz::Zone;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RangeQuery {
    /// The first day of `tz`, `YYYY-MM-DD`; today when absent.
    #[param(format = Date, example = "2026-12-01")]
    from: Option<String>,
    /// The last day of `tz`, `YYYY-MM-DD`, at or after `from`; today when absent.
    #[param(format = Date, example = "2026-12-01")]
    to: Option<String>,
    /// The IANA time zone whose days these are, `UTC` when absent. A zone
    /// whose offset from UTC is not a whole number of hours on a day of the
    /// range is refused (counts are kept per UTC hour).
    #[param(example = "America/New_York")]
    tz: Option<String>,
}

/// The query of the three `…/stats` routes: a range and its granularity.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    #[serde(flatten)]
    #[param(ignore)]
    range: RangeQuery,
    /// `day` (the default) or `hour`: `hour` adds every hour of the range
    /// (`hours`), for ranges of at most 7 days.
    #[param(value_type = Option<String>, pattern = "^(day|hour)$")]
    granularity: Option<String>,
}

/// The longest range `granularity=hour` answers, in days.
pub(crate) const MAX_HOURLY_DAYS: usize = 7;

impl StatsQuery {
    fn ask(&self, now_ms: i64) -> Result<Ask, ApiError> {
        let hourly = match self.granularity.as_deref() {
            None | Some("day") => false,
            Some("hour") => true,
            Some(other) => {
                return Err(ApiError::bad_request(
                    "invalid_granularity",
                    format!("`granularity` is `{other}`; it must be `day` or `hour`"),
                ))
            }
        };
        self.range.ask(now_ms, hourly)
    }
}

fn parse_day(name: &str, value: &str) -> Result<Day, ApiError> {
    value
        .parse()
        .map_err(|e| ApiError::bad_request("invalid_date", format!("`{name}`: {e}")))
}

impl RangeQuery {
    /// What the query asks: the range in its zone (each end today there
    /// when absent), by day or by hour, the zone's offsets checked.
    fn ask(&self, now_ms: i64, hourly: bool) -> Result<Ask, ApiError> {
        let zone = match self.tz.as_deref() {
            None => Zone::utc(),
            Some(name) => {
                Zone::parse(name).map_err(|e| ApiError::bad_request("invalid_tz", e.to_string()))?
            }
        };
        let range = self.range(zone.today(now_ms))?;
        if hourly && range.len() > MAX_HOURLY_DAYS {
            return Err(ApiError::bad_request(
                "range_too_long",
                format!(
                    "`granularity=hour` answers at most {MAX_HOURLY_DAYS} days; the range spans {}",
                    range.len()
                ),
            ));
        }
        Ask::new(range, zone, hourly)
            .map_err(|e| ApiError::bad_request("unsupported_tz", e.to_string()))
    }

    /// The requested range; each end defaults to `today`.
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

/// Checks an id from the path; a bad one answers 400 `code`, naming `field`.
fn checked_id(id: &str, field: &str, code: &'static str) -> Result<(), ApiError> {
    check_id(id, MAX_AD_OR_USER_ID_BYTES)
        .map_err(|why| ApiError::bad_request(code, format!("`{field}` {why}")))
}

fn checked_ad_id(ad_id: &str) -> Result<(), ApiError> {
    checked_id(ad_id, "ad_id", "invalid_ad_id")
}

#[utoipa::path(
    get,
    path = "/v1/ads/{ad_id}/stats",
    tag = "stats",
    summary = "An ad's counts over a range of days, by day or by hour",
    description = "Unknown ads answer zeros. CSV: one row per day (per hour with `granularity=hour`).",
    params(("ad_id" = Id, Path, description = "The ad."), RangeQuery, StatsQuery, FormatQuery),
    responses((status = 200, description = "The ad's counts, in total and by day.",
        content((StatsResponse = "application/json"), (String = "text/csv")))),
    security(("api_key" = [])),
)]
pub async fn ad_stats_route(
    State(state): State<AppState>,
    scope: Scope,
    ApiPath(ad_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<StatsQuery>,
    format: Format,
) -> Result<Response, ApiError> {
    checked_ad_id(&ad_id)?;
    check_scope(&scope, &ad_id)?;
    let ask = q.ask(state.edge.now_ms())?;
    let stats: StatsResponse = state.edge.stats(&ad_id, &ask).await?;
    Ok(respond(format, stats))
}

/// `GET /v1/posts/{post_id}/stats`: a post's counts by day, for keys that
/// read everything (a key scoped to ad prefixes is an advertiser's, and
/// posts are not ads).
#[utoipa::path(
    get,
    path = "/v1/posts/{post_id}/stats",
    tag = "stats",
    summary = "A post's counts over a range of days, by day or by hour",
    description = "For keys that read every ad. CSV: one row per day (per hour with `granularity=hour`).",
    params(("post_id" = Id, Path, description = "The post."), RangeQuery, StatsQuery, FormatQuery),
    responses((status = 200, description = "The post's counts, in total and by day.",
        content((PostStatsResponse = "application/json"), (String = "text/csv")))),
    security(("api_key" = [])),
)]
pub async fn post_stats_route(
    State(state): State<AppState>,
    scope: Scope,
    ApiPath(post_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<StatsQuery>,
    format: Format,
) -> Result<Response, ApiError> {
    checked_id(&post_id, "post_id", "invalid_post_id")?;
    if scope != Scope::All {
        return Err(ApiError::Forbidden(
            "this API key is scoped to ad prefixes; post stats need a key for every ad",
        ));
    }
    let ask = q.ask(state.edge.now_ms())?;
    let stats: PostStatsResponse = state.edge.post_stats(&post_id, &ask).await?;
    Ok(respond(format, stats))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DateQuery {
    /// The UTC day, `YYYY-MM-DD`.
    #[param(required = true, format = Date, example = "2026-12-01")]
    date: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/ads/{ad_id}/unique-visitors",
    tag = "stats",
    summary = "An ad's unique visitors on one UTC day",
    params(("ad_id" = Id, Path, description = "The ad."), DateQuery, FormatQuery),
    responses((status = 200, description = "The day's unique visitors (HyperLogLog).",
        content((UniqueVisitorsResponse = "application/json"), (String = "text/csv")))),
    security(("api_key" = [])),
)]
pub async fn unique_visitors_route(
    State(state): State<AppState>,
    scope: Scope,
    ApiPath(ad_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<DateQuery>,
    format: Format,
) -> Result<Response, ApiError> {
    checked_ad_id(&ad_id)?;
    check_scope(&scope, &ad_id)?;
    let date = q.date.ok_or_else(|| {
        ApiError::bad_request(
            "missing_parameter",
            "the `date` query parameter (YYYY-MM-DD) is required",
        )
    })?;
    let day = parse_day("date", &date)?;
    let stats = state
        .edge
        .stats(&ad_id, &Ask::utc(DayRange::single(day)))
        .await?;
    let answer = UniqueVisitorsResponse {
        ad_id,
        date: day,
        // A UTC day's visitors come from its own sketch: always known.
        unique_visitors: stats.unique_visitors.unwrap_or_default(),
        source: state.edge.store().kind().to_owned(),
    };
    Ok(respond(format, answer))
}

/// Ads per page of `GET /v1/ads` when `limit` is not given.
pub(crate) const DEFAULT_ADS_PAGE: usize = 100;
/// The largest `limit` of `GET /v1/ads`.
pub(crate) const MAX_ADS_PAGE: usize = 1000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AdsQuery {
    #[serde(flatten)]
    #[param(ignore)]
    range: RangeQuery,
    /// Ads per page, 1 to 1000; 100 when absent.
    #[param(value_type = Option<usize>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// `next_cursor` of the previous page (the `Next-Cursor` header of a
    /// CSV page), unchanged.
    cursor: Option<String>,
}

impl AdsQuery {
    /// What a listing asks: its days (by day), its page size, and the id
    /// the page starts after.
    fn page(&self, now_ms: i64) -> Result<(Ask, usize, Option<String>), ApiError> {
        let ask = self.range.ask(now_ms, false)?;
        let limit = page_limit(self.limit.as_deref())?;
        let after = self.cursor.as_deref().map(decode_cursor).transpose()?;
        Ok((ask, limit, after))
    }
}

/// A cursor names the last ad id of a page; it is opaque to clients (hex,
/// so that nobody builds one from an id by hand and relies on it).
fn encode_cursor(ad_id: &str) -> String {
    ad_id.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_cursor(cursor: &str) -> Result<String, ApiError> {
    let invalid = || {
        ApiError::bad_request(
            "invalid_cursor",
            "`cursor` is not one this edge gave: pass `next_cursor` back unchanged",
        )
    };
    let bytes = cursor.as_bytes();
    if bytes.is_empty() || bytes.len() % 2 != 0 {
        return Err(invalid());
    }
    let ad_id: Vec<u8> = bytes
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        })
        .collect::<Option<_>>()
        .ok_or_else(invalid)?;
    let ad_id = String::from_utf8(ad_id).map_err(|_| invalid())?;
    check_id(&ad_id, MAX_AD_OR_USER_ID_BYTES).map_err(|_| invalid())?;
    Ok(ad_id)
}

fn page_limit(limit: Option<&str>) -> Result<usize, ApiError> {
    let Some(limit) = limit else {
        return Ok(DEFAULT_ADS_PAGE);
    };
    limit
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_ADS_PAGE).contains(n))
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_limit",
                format!("`limit` must be a whole number from 1 to {MAX_ADS_PAGE}"),
            )
        })
}

/// One page of the ads with counts in the range, only those inside the
/// caller's scope, by ad id; `next_cursor` leads to the next page.
#[utoipa::path(
    get,
    path = "/v1/ads",
    tag = "stats",
    summary = "The ads with counts in a range of days, a page at a time",
    description = "Only the ads the key's scope reads, by ad id. CSV: one row per ad, and the \
        next page's cursor in the `Next-Cursor` header.",
    params(RangeQuery, AdsQuery, FormatQuery),
    responses((status = 200, description = "One page of ads.",
        headers(("Next-Cursor" = String, description = "CSV only: the next page's `cursor`; absent on the last page.")),
        content((AdsResponse = "application/json"), (String = "text/csv")))),
    security(("api_key" = [])),
)]
pub async fn ads_route(
    State(state): State<AppState>,
    scope: Scope,
    ApiQuery(q): ApiQuery<AdsQuery>,
    format: Format,
) -> Result<Response, ApiError> {
    let (ask, limit, after) = q.page(state.edge.now_ms())?;
    let page = state
        .edge
        .ads(&ask, &scope, after.as_deref(), limit)
        .await?;
    let answer = AdsResponse {
        from: ask.range().from(),
        to: ask.range().to(),
        tz: ask.zone().name().to_owned(),
        next_cursor: next_cursor(&page),
        ads: page.rows,
    };
    Ok(respond(format, answer))
}

/// The cursor of the page after `page`, if there is one.
fn next_cursor<T>(page: &Page<T>) -> Option<String> {
    page.more
        .then(|| page.last.as_deref().map(encode_cursor))
        .flatten()
}

fn checked_campaign_id(campaign_id: &str) -> Result<(), ApiError> {
    checked_id(campaign_id, "campaign_id", "invalid_campaign_id")
}

/// `GET /v1/campaigns/{campaign_id}/stats`.
#[utoipa::path(
    get,
    path = "/v1/campaigns/{campaign_id}/stats",
    tag = "stats",
    summary = "A campaign's counts, reach and frequency over a range of days",
    description = "Reach is the unique visitors across all the campaign's ads (a union, never \
        a sum); frequency is impressions / reach. Each ad is listed with its events in the \
        campaign. Unknown campaigns answer zeros. CSV: one row per day (per hour with \
        `granularity=hour`).",
    params(("campaign_id" = Id, Path, description = "The campaign."), RangeQuery, StatsQuery, FormatQuery),
    responses((status = 200, description = "The campaign's counts, in total, by day and by ad.",
        content((CampaignStatsResponse = "application/json"), (String = "text/csv")))),
    security(("api_key" = [])),
)]
pub async fn campaign_stats_route(
    State(state): State<AppState>,
    scope: Scope,
    ApiPath(campaign_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<StatsQuery>,
    format: Format,
) -> Result<Response, ApiError> {
    checked_campaign_id(&campaign_id)?;
    check_scope(&scope, &campaign_id)?;
    let ask = q.ask(state.edge.now_ms())?;
    let stats = state.edge.campaign_stats(&campaign_id, &ask).await?;
    Ok(respond(format, stats))
}

/// One page of the campaigns with counts in the range, inside the
/// caller's scope (the prefix rule applied to campaign ids).
#[utoipa::path(
    get,
    path = "/v1/campaigns",
    tag = "stats",
    summary = "The campaigns with counts in a range of days, a page at a time",
    description = "Only the campaigns the key's scope reads, by campaign id. CSV: one row per \
        campaign, and the next page's cursor in the `Next-Cursor` header.",
    params(RangeQuery, AdsQuery, FormatQuery),
    responses((status = 200, description = "One page of campaigns.",
        headers(("Next-Cursor" = String, description = "CSV only: the next page's `cursor`; absent on the last page.")),
        content((CampaignsResponse = "application/json"), (String = "text/csv")))),
    security(("api_key" = [])),
)]
pub async fn campaigns_route(
    State(state): State<AppState>,
    scope: Scope,
    ApiQuery(q): ApiQuery<AdsQuery>,
    format: Format,
) -> Result<Response, ApiError> {
    let (ask, limit, after) = q.page(state.edge.now_ms())?;
    let page = state
        .edge
        .campaigns(&ask, &scope, after.as_deref(), limit)
        .await?;
    let answer = CampaignsResponse {
        from: ask.range().from(),
        to: ask.range().to(),
        tz: ask.zone().name().to_owned(),
        next_cursor: next_cursor(&page),
        campaigns: page.rows,
    };
    Ok(respond(format, answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_what_no_page_gave() {
        for id in ["a", "acme-1", "Z.9:_-x"] {
            assert_eq!(decode_cursor(&encode_cursor(id)).unwrap(), id);
        }
        for bad in ["", "6", "zz", "6120", "7b7d", &"61".repeat(129)] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits() {
        assert_eq!(page_limit(None).unwrap(), DEFAULT_ADS_PAGE);
        assert_eq!(page_limit(Some("1")).unwrap(), 1);
        assert_eq!(page_limit(Some("1000")).unwrap(), MAX_ADS_PAGE);
        for bad in ["0", "1001", "-1", "ten", ""] {
            assert!(page_limit(Some(bad)).is_err(), "{bad}");
        }
    }
}
