//! Response bodies of the v1 API, shared by the server, its tests and clients.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::day::Day;

/// `202` answer of `POST /v1/impressions`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IngestResponse {
    pub accepted: u32,
    pub duplicates: u32,
    pub rejected: Vec<Rejection>,
}

/// One event refused inside an accepted batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Rejection {
    pub index: usize,
    pub error: String,
}

/// Every error answer of the server: `{"error":{"code":..,"message":..}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

/// Counts of one ad (or post, or campaign) on one day of the answer's `tz`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DayStats {
    pub date: Day,
    pub impressions: u64,
    pub measurable: u64,
    /// `null` when not known: a day of a zone other than UTC is the union
    /// of its hours' sketches, which are kept only for the edge's hourly
    /// retention (`visitors_note` says so).
    pub unique_visitors: Option<u64>,
    /// Events from known bots (viewable or measurable), counted here
    /// instead of in `impressions` and `measurable`.
    pub invalid: u64,
    /// The `impressions` the browser vouched were neither covered nor
    /// visually altered (IntersectionObserver v2).
    pub verified: u64,
    /// The video counters of an ad's day (zeros for a display ad); absent
    /// from a post's days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<VideoStats>,
}

/// Counts of one hour (`granularity=hour`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HourStats {
    /// The hour's start, RFC 3339 in the answer's `tz`
    /// (`2026-12-01T08:00:00-05:00`; `2026-12-01T13:00:00Z` in UTC).
    #[schema(example = "2026-12-01T13:00:00Z")]
    pub hour: String,
    pub impressions: u64,
    pub measurable: u64,
    /// `null` when the hour's sketch is past the hourly retention.
    pub unique_visitors: Option<u64>,
    pub invalid: u64,
    pub verified: u64,
}

/// The zone answers are in when a request names none.
fn utc() -> String {
    "UTC".to_owned()
}

/// The video counters of an ad: the progress events and the audible
/// impressions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VideoStats {
    /// `video_start` events: the first frame played.
    pub starts: u64,
    /// `video_q25` events.
    pub q25: u64,
    /// `video_q50` events.
    pub q50: u64,
    /// `video_q75` events.
    pub q75: u64,
    /// `video_complete` events: played to the end.
    pub completes: u64,
    /// Viewable impressions marked `audible`: unmuted, volume above zero.
    pub audible_impressions: u64,
}

impl VideoStats {
    /// Whether any video event was counted.
    pub fn is_zero(&self) -> bool {
        *self == VideoStats::default()
    }
}

/// `GET /v1/ads/{ad_id}/stats`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StatsResponse {
    pub ad_id: String,
    pub from: Day,
    pub to: Day,
    /// The time zone whose days `from`, `to` and `days` are.
    #[serde(default = "utc")]
    pub tz: String,
    pub impressions: u64,
    pub measurable: u64,
    /// The HLL union over the range, never a sum of days; `null` when a
    /// day's visitors are not known (`visitors_note`).
    pub unique_visitors: Option<u64>,
    /// `impressions / measurable`, `null` when nothing was measured.
    pub viewability_rate: Option<f64>,
    /// Events from known bots over the range, not in the counts above.
    pub invalid: u64,
    /// The `impressions` the browser vouched were neither covered nor
    /// visually altered, over the range.
    pub verified: u64,
    /// The video counters over the range (zeros for a display ad).
    pub video: VideoStats,
    pub days: Vec<DayStats>,
    /// Every hour of the range, zeros included: only with `granularity=hour`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<Vec<HourStats>>,
    /// Present when some visitors are `null`: which days, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visitors_note: Option<String>,
}

/// `GET /v1/posts/{post_id}/stats`: a post's counts, shaped as an ad's
/// without `video` (`impressions` are the post's views).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PostStatsResponse {
    pub post_id: String,
    pub from: Day,
    pub to: Day,
    #[serde(default = "utc")]
    pub tz: String,
    pub impressions: u64,
    pub measurable: u64,
    pub unique_visitors: Option<u64>,
    pub viewability_rate: Option<f64>,
    pub invalid: u64,
    pub verified: u64,
    pub days: Vec<DayStats>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<Vec<HourStats>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visitors_note: Option<String>,
}

/// `GET /v1/views?ids=..`: every asked post id with its viewable views over
/// all time (0 for an id never seen).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ViewsResponse {
    pub views: std::collections::BTreeMap<String, u64>,
}

/// Most post ids one `GET /v1/views` may ask for.
pub const MAX_VIEW_IDS: usize = 100;

/// `GET /v1/ads/{ad_id}/unique-visitors`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UniqueVisitorsResponse {
    pub ad_id: String,
    pub date: Day,
    pub unique_visitors: u64,
    /// The store the count came from: `"embedded"` or `"redis"`.
    pub source: String,
}

/// One ad in `GET /v1/ads`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AdSummary {
    pub ad_id: String,
    pub impressions: u64,
    pub measurable: u64,
    pub unique_visitors: Option<u64>,
    pub viewability_rate: Option<f64>,
    /// Events from known bots over the range.
    pub invalid: u64,
    /// Verified `impressions` over the range.
    pub verified: u64,
    /// The video counters over the range.
    pub video: VideoStats,
}

/// `GET /v1/ads?from=..&to=..&limit=..&cursor=..`: one page of the ads with
/// any count in the range, by ad id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AdsResponse {
    pub from: Day,
    pub to: Day,
    #[serde(default = "utc")]
    pub tz: String,
    pub ads: Vec<AdSummary>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    #[serde(default)]
    pub next_cursor: Option<String>,
}

/// `GET /v1/campaigns/{campaign_id}/stats`: a campaign's counts over its
/// ads, with its reach (unique visitors across all of them) and frequency.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CampaignStatsResponse {
    pub campaign_id: String,
    pub from: Day,
    pub to: Day,
    pub tz: String,
    pub impressions: u64,
    pub measurable: u64,
    pub viewability_rate: Option<f64>,
    pub invalid: u64,
    pub verified: u64,
    /// Unique visitors across all the campaign's ads and the range: the
    /// union of their sketches, never a sum. `null` when not known.
    pub reach: Option<u64>,
    /// `impressions / reach`; `null` when reach is 0 or not known.
    pub frequency: Option<f64>,
    /// Every day of the range; a day's `unique_visitors` is its reach.
    pub days: Vec<DayStats>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<Vec<HourStats>>,
    /// The ads with events of the campaign in the range, by id, each with
    /// its own numbers over the range.
    pub ads: Vec<AdSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visitors_note: Option<String>,
}

/// One campaign in `GET /v1/campaigns`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CampaignSummary {
    pub campaign_id: String,
    pub impressions: u64,
    pub measurable: u64,
    pub viewability_rate: Option<f64>,
    pub invalid: u64,
    pub verified: u64,
    pub reach: Option<u64>,
    pub frequency: Option<f64>,
    /// How many ads had events of the campaign in the range.
    pub ads: u64,
}

/// `GET /v1/campaigns?from=..&to=..&limit=..&cursor=..`: one page of the
/// campaigns with any count in the range, by campaign id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CampaignsResponse {
    pub from: Day,
    pub to: Day,
    pub tz: String,
    pub campaigns: Vec<CampaignSummary>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    #[serde(default)]
    pub next_cursor: Option<String>,
}

/// `impressions / reach`, or `None` when the reach is 0 or not known.
pub fn frequency(impressions: u64, reach: Option<u64>) -> Option<f64> {
    reach
        .filter(|&r| r > 0)
        .map(|r| impressions as f64 / r as f64)
}

/// `GET /v1/impression` (the single-impression form).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImpressionLogged {
    pub message: String,
    /// The ad's id, when the impression was of an ad.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ad_id: Option<String>,
    /// The post's id, when it was a view of a post.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_id: Option<String>,
}

/// `GET /readyz`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    /// `"ready"` (ingest is accepted) or `"degraded"` (it is not; `detail`
    /// says why).
    pub status: String,
    pub store: String,
    /// `"ok"`, `"unreachable"` or `"timeout"`: whether the store answered a
    /// ping just now. An unreachable store leaves the edge ready.
    #[serde(default)]
    pub store_status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `viewable / measurable`, or `None` when nothing was measured.
pub fn viewability_rate(impressions: u64, measurable: u64) -> Option<f64> {
    (measurable > 0).then(|| impressions as f64 / measurable as f64)
}
