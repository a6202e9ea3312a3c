//! CSV answers of the stats and listing routes (RFC 4180): a header row,
//! then one row per day or per ad, lines ended by CRLF, a field quoted when
//! it holds a comma, a quote or a line break. Asked for with `format=csv`,
//! or with `Accept: text/csv` preferred to JSON; the same numbers as the JSON
//! answer, which stays the default.

use axum::extract::{FromRequestParts, Query};
use axum::http::header::{ACCEPT, CONTENT_TYPE, VARY};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use glimpse_wire::api::{
    viewability_rate, AdSummary, AdsResponse, CampaignStatsResponse, CampaignsResponse, DayStats,
    HourStats, PostStatsResponse, StatsResponse, UniqueVisitorsResponse, VideoStats,
};
use serde::{Deserialize, Serialize};

use super::error::ApiError;

/// The header of a CSV page of `GET /v1/ads` that names the next page's
/// `cursor` (JSON answers carry it as `next_cursor`).
pub(crate) const NEXT_CURSOR: HeaderName = HeaderName::from_static("next-cursor");

/// What a stats or listing route answers in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
pub(crate) enum Format {
    Json,
    Csv,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct FormatQuery {
    /// `csv` for CSV; JSON when absent, unless `Accept` names `text/csv`
    /// before any JSON type.
    #[param(value_type = Option<Format>, inline)]
    format: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Format {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let query = Query::<FormatQuery>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
        match query.format.as_deref() {
            Some("csv") => Ok(Format::Csv),
            Some("json") => Ok(Format::Json),
            Some(other) => Err(ApiError::bad_request(
                "invalid_format",
                format!("`format` must be `json` or `csv`, not `{other}`"),
            )),
            None => Ok(format_from_accept(
                parts.headers.get(ACCEPT).and_then(|v| v.to_str().ok()),
            )),
        }
    }
}

/// CSV when the `Accept` header names `text/csv` before any JSON type
/// (quality values are not weighed: clients that want CSV ask for it alone).
fn format_from_accept(accept: Option<&str>) -> Format {
    let first = accept
        .into_iter()
        .flat_map(|a| a.split(','))
        .find_map(|range| {
            let media = range.split(';').next().unwrap_or("").trim();
            if media.eq_ignore_ascii_case("text/csv") {
                Some(Format::Csv)
            } else if media.eq_ignore_ascii_case("application/json") {
                Some(Format::Json)
            } else {
                None
            }
        });
    first.unwrap_or(Format::Json)
}

/// An answer that is also a table.
pub(crate) trait Table {
    fn header(&self) -> Vec<&'static str>;
    fn rows(&self) -> Vec<Vec<String>>;
    /// Headers the CSV answer carries besides the table.
    fn csv_headers(&self) -> Vec<(HeaderName, String)> {
        Vec::new()
    }
}

/// `value` as JSON or as CSV, with `Vary: Accept` either way, since the
/// same URL answers both.
pub(crate) fn respond<T: Serialize + Table>(format: Format, value: T) -> Response {
    let mut response = match format {
        Format::Json => Json(&value).into_response(),
        Format::Csv => {
            let mut response = to_csv(&value).into_response();
            let headers = response.headers_mut();
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            );
            for (name, text) in value.csv_headers() {
                if let Ok(text) = HeaderValue::from_str(&text) {
                    headers.insert(name, text);
                }
            }
            response
        }
    };
    response
        .headers_mut()
        .insert(VARY, HeaderValue::from_static("accept"));
    response
}

fn to_csv(table: &impl Table) -> String {
    let mut out = String::new();
    let header: Vec<String> = table.header().into_iter().map(str::to_owned).collect();
    for row in std::iter::once(header).chain(table.rows()) {
        for (i, field) in row.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_field(&mut out, field);
        }
        out.push_str("\r\n");
    }
    out
}

/// One field, quoted (and its quotes doubled) when RFC 4180 asks for it.
fn push_field(out: &mut String, field: &str) {
    if field.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}

const COUNT_COLUMNS: [&str; 6] = [
    "impressions",
    "measurable",
    "unique_visitors",
    "viewability_rate",
    "invalid",
    "verified",
];

const VIDEO_COLUMNS: [&str; 6] = [
    "video_starts",
    "video_q25",
    "video_q50",
    "video_q75",
    "video_completes",
    "video_audible_impressions",
];

fn rate(rate: Option<f64>) -> String {
    rate.map(|r| r.to_string()).unwrap_or_default()
}

/// A number, or an empty cell for `null`.
fn maybe(n: Option<u64>) -> String {
    n.map(|n| n.to_string()).unwrap_or_default()
}

fn day_counts(day: &DayStats) -> Vec<String> {
    vec![
        day.date.to_string(),
        day.impressions.to_string(),
        day.measurable.to_string(),
        maybe(day.unique_visitors),
        rate(viewability_rate(day.impressions, day.measurable)),
        day.invalid.to_string(),
        day.verified.to_string(),
    ]
}

fn hour_counts(hour: &HourStats) -> Vec<String> {
    vec![
        hour.hour.clone(),
        hour.impressions.to_string(),
        hour.measurable.to_string(),
        maybe(hour.unique_visitors),
        rate(viewability_rate(hour.impressions, hour.measurable)),
        hour.invalid.to_string(),
        hour.verified.to_string(),
    ]
}

/// The rows of an answer by day (with the video columns when `video`), or
/// by hour when it has hours, each after the subject's id.
fn day_or_hour_rows(
    id: &str,
    days: &[DayStats],
    hours: Option<&Vec<HourStats>>,
    video: bool,
) -> Vec<Vec<String>> {
    let with_id = |cells: Vec<String>| std::iter::once(id.to_owned()).chain(cells).collect();
    match hours {
        Some(hours) => hours.iter().map(|h| with_id(hour_counts(h))).collect(),
        None => days
            .iter()
            .map(|day| {
                let mut row: Vec<String> = with_id(day_counts(day));
                if video {
                    row.extend(video_counts(&day.video.unwrap_or_default()));
                }
                row
            })
            .collect(),
    }
}

/// The header of [`day_or_hour_rows`].
fn day_or_hour_columns(id: &'static str, hourly: bool, video: bool) -> Vec<&'static str> {
    if hourly {
        columns(&[id, "hour"], false)
    } else {
        columns(&[id, "date"], video)
    }
}

fn video_counts(video: &VideoStats) -> [String; 6] {
    [
        video.starts,
        video.q25,
        video.q50,
        video.q75,
        video.completes,
        video.audible_impressions,
    ]
    .map(|n| n.to_string())
}

fn columns(first: &[&'static str], video: bool) -> Vec<&'static str> {
    let mut header = first.to_vec();
    header.extend(COUNT_COLUMNS);
    if video {
        header.extend(VIDEO_COLUMNS);
    }
    header
}

/// One row per day of the range, or per hour with `granularity=hour`.
impl Table for StatsResponse {
    fn header(&self) -> Vec<&'static str> {
        day_or_hour_columns("ad_id", self.hours.is_some(), true)
    }

    fn rows(&self) -> Vec<Vec<String>> {
        day_or_hour_rows(&self.ad_id, &self.days, self.hours.as_ref(), true)
    }
}

/// One row per day of the range with views, or per hour.
impl Table for PostStatsResponse {
    fn header(&self) -> Vec<&'static str> {
        day_or_hour_columns("post_id", self.hours.is_some(), false)
    }

    fn rows(&self) -> Vec<Vec<String>> {
        day_or_hour_rows(&self.post_id, &self.days, self.hours.as_ref(), false)
    }
}

/// One row per day (its `unique_visitors` the day's reach), or per hour.
impl Table for CampaignStatsResponse {
    fn header(&self) -> Vec<&'static str> {
        day_or_hour_columns("campaign_id", self.hours.is_some(), true)
    }

    fn rows(&self) -> Vec<Vec<String>> {
        day_or_hour_rows(&self.campaign_id, &self.days, self.hours.as_ref(), true)
    }
}

/// One row per campaign of the page; the next page's cursor in
/// [`NEXT_CURSOR`].
impl Table for CampaignsResponse {
    fn header(&self) -> Vec<&'static str> {
        vec![
            "campaign_id",
            "impressions",
            "measurable",
            "viewability_rate",
            "invalid",
            "verified",
            "reach",
            "frequency",
            "ads",
        ]
    }

    fn rows(&self) -> Vec<Vec<String>> {
        self.campaigns
            .iter()
            .map(|c| {
                vec![
                    c.campaign_id.clone(),
                    c.impressions.to_string(),
                    c.measurable.to_string(),
                    rate(c.viewability_rate),
                    c.invalid.to_string(),
                    c.verified.to_string(),
                    maybe(c.reach),
                    rate(c.frequency),
                    c.ads.to_string(),
                ]
            })
            .collect()
    }

    fn csv_headers(&self) -> Vec<(HeaderName, String)> {
        self.next_cursor
            .iter()
            .map(|cursor| (NEXT_CURSOR, cursor.clone()))
            .collect()
    }
}

/// One row per ad of the page; the next page's cursor in [`NEXT_CURSOR`].
impl Table for AdsResponse {
    fn header(&self) -> Vec<&'static str> {
        columns(&["ad_id"], true)
    }

    fn rows(&self) -> Vec<Vec<String>> {
        self.ads.iter().map(ad_row).collect()
    }

    fn csv_headers(&self) -> Vec<(HeaderName, String)> {
        self.next_cursor
            .iter()
            .map(|cursor| (NEXT_CURSOR, cursor.clone()))
            .collect()
    }
}

fn ad_row(ad: &AdSummary) -> Vec<String> {
    let mut row = vec![
        ad.ad_id.clone(),
        ad.impressions.to_string(),
        ad.measurable.to_string(),
        maybe(ad.unique_visitors),
        rate(ad.viewability_rate),
        ad.invalid.to_string(),
        ad.verified.to_string(),
    ];
    row.extend(video_counts(&ad.video));
    row
}

/// One row.
impl Table for UniqueVisitorsResponse {
    fn header(&self) -> Vec<&'static str> {
        vec!["ad_id", "date", "unique_visitors", "source"]
    }

    fn rows(&self) -> Vec<Vec<String>> {
        vec![vec![
            self.ad_id.clone(),
            self.date.to_string(),
            self.unique_visitors.to_string(),
            self.source.clone(),
        ]]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Cells(Vec<Vec<String>>);

    impl Table for Cells {
        fn header(&self) -> Vec<&'static str> {
            vec!["a", "b"]
        }
        fn rows(&self) -> Vec<Vec<String>> {
            self.0.clone()
        }
    }

    #[test]
    fn fields_are_quoted_as_rfc_4180_asks() {
        let cells = Cells(vec![
            vec!["plain".into(), "1".into()],
            vec!["with,comma".into(), "say \"hi\"".into()],
            vec!["two\r\nlines".into(), String::new()],
        ]);
        assert_eq!(
            to_csv(&cells),
            "a,b\r\nplain,1\r\n\"with,comma\",\"say \"\"hi\"\"\"\r\n\"two\r\nlines\",\r\n"
        );
    }

    #[test]
    fn accept_picks_csv_only_when_it_comes_before_json() {
        assert_eq!(format_from_accept(None), Format::Json);
        assert_eq!(format_from_accept(Some("*/*")), Format::Json);
        assert_eq!(format_from_accept(Some("text/csv")), Format::Csv);
        assert_eq!(
            format_from_accept(Some("text/html, Text/CSV;q=0.9, */*")),
            Format::Csv
        );
        assert_eq!(
            format_from_accept(Some("application/json, text/csv")),
            Format::Json
        );
    }
}
