//! Hours, time zones and campaigns: the same numbers by UTC hour, by the
//! days of other zones, and per campaign (reach a union across its ads),
//! before and after a sync, in JSON and CSV.

use axum::http::StatusCode;
use glimpse_server::sync;
use glimpse_wire::api::{CampaignStatsResponse, CampaignsResponse, StatsResponse};
use serde_json::{json, Value};

use crate::support::{
    assert_error, batch, event, get_text, reference_estimate, scoped_edge, TestEdge, ACME_KEY, NOW,
    TODAY,
};

const HOUR_MS: i64 = 3_600_000;

/// A viewable event of `ad` by `user`, `hours_ago` before [`NOW`]
/// (2025-11-24T16:00Z), in `campaign` when given.
fn seen(id: &str, ad: &str, user: &str, hours_ago: i64, campaign: Option<&str>) -> Value {
    let mut e = event(id, ad, user, "viewable");
    e["ts"] = json!(NOW - hours_ago * HOUR_MS);
    if let Some(c) = campaign {
        e["campaign_id"] = json!(c);
    }
    e
}

async fn get_json<T: serde::de::DeserializeOwned>(t: &TestEdge, uri: &str) -> T {
    let (status, body) = t.get(uri).await;
    assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    serde_json::from_value(body).unwrap()
}

#[tokio::test]
async fn hours_add_up_to_their_day_before_and_after_a_sync() {
    let t = TestEdge::new();
    // 16:00Z twice (u1, u2), 13:00Z once (u1), and 03:00Z once (u3).
    t.ingest(&batch(
        "b1",
        vec![
            seen("e1", "ad-1", "u1", 0, None),
            seen("e2", "ad-1", "u2", 0, None),
            seen("e3", "ad-1", "u1", 3, None),
            seen("e4", "ad-1", "u3", 13, None),
        ],
    ))
    .await;
    let uri = format!("/v1/ads/ad-1/stats?from={TODAY}&to={TODAY}&granularity=hour");
    let before: StatsResponse = get_json(&t, &uri).await;
    sync::flush(&t.edge).await.unwrap();
    let after: StatsResponse = get_json(&t, &uri).await;
    assert_eq!(before, after);
    let hours = after.hours.as_ref().expect("granularity=hour lists hours");
    assert_eq!(hours.len(), 24);
    assert_eq!(hours[0].hour, "2025-11-24T00:00:00Z");
    let by_hour: Vec<(usize, u64, Option<u64>)> = hours
        .iter()
        .enumerate()
        .filter(|(_, h)| h.impressions > 0)
        .map(|(i, h)| (i, h.impressions, h.unique_visitors))
        .collect();
    assert_eq!(
        by_hour,
        [(3, 1, Some(1)), (13, 1, Some(1)), (16, 2, Some(2))]
    );
    let sum: u64 = hours.iter().map(|h| h.impressions).sum();
    assert_eq!((sum, after.days[0].impressions), (4, 4));
    assert_eq!(after.unique_visitors, Some(3));
    assert_eq!(after.tz, "UTC");
    assert!(after.visitors_note.is_none());
    // By day, no hours in the answer.
    let daily: Value = t.get(&format!("/v1/ads/ad-1/stats?from={TODAY}")).await.1;
    assert!(daily.get("hours").is_none(), "{daily}");
}

#[tokio::test]
async fn a_zone_s_days_are_the_sums_of_their_utc_hours() {
    let t = TestEdge::new();
    // 2025-11-24T03:00Z is the 23rd 22:00 in New York and the 24th 12:00 in
    // Tokyo; 16:00Z is the 24th 11:00 in New York and the 25th 01:00 in Tokyo.
    t.ingest(&batch(
        "b1",
        vec![
            seen("e1", "ad-1", "u1", 13, None),
            seen("e2", "ad-1", "u2", 13, None),
            seen("e3", "ad-1", "u1", 0, None),
        ],
    ))
    .await;
    for synced in [false, true] {
        if synced {
            sync::flush(&t.edge).await.unwrap();
        }
        let ny: StatsResponse = get_json(
            &t,
            "/v1/ads/ad-1/stats?from=2025-11-23&to=2025-11-24&tz=America/New_York",
        )
        .await;
        let days: Vec<(String, u64, Option<u64>)> = ny
            .days
            .iter()
            .map(|d| (d.date.to_string(), d.impressions, d.unique_visitors))
            .collect();
        assert_eq!(
            days,
            [
                ("2025-11-23".to_owned(), 2, Some(2)),
                ("2025-11-24".to_owned(), 1, Some(1))
            ]
        );
        assert_eq!(
            (ny.tz.as_str(), ny.unique_visitors),
            ("America/New_York", Some(2))
        );
        let tokyo: StatsResponse = get_json(
            &t,
            "/v1/ads/ad-1/stats?from=2025-11-24&to=2025-11-25&tz=Asia/Tokyo&granularity=hour",
        )
        .await;
        let per_day: Vec<u64> = tokyo.days.iter().map(|d| d.impressions).collect();
        assert_eq!(per_day, [2, 1]);
        let hours = tokyo.hours.unwrap();
        assert_eq!(hours.len(), 48);
        assert_eq!(hours[0].hour, "2025-11-24T00:00:00+09:00");
        assert_eq!((hours[12].impressions, hours[25].impressions), (2, 1));
        // The UTC answer is the same events.
        let utc = t.stats("ad-1", &format!("?from={TODAY}")).await;
        assert_eq!((utc.impressions, utc.unique_visitors), (3, Some(2)));
    }
}

#[tokio::test]
async fn zones_and_granularities_that_cannot_be_answered_are_refused_with_the_reason() {
    let t = TestEdge::new();
    let cases = [
        ("?tz=Asia/Kolkata", "unsupported_tz"),
        ("?tz=Asia/Kathmandu", "unsupported_tz"),
        ("?tz=Mars/Olympus", "invalid_tz"),
        ("?granularity=week", "invalid_granularity"),
        (
            "?from=2025-11-10&to=2025-11-24&granularity=hour",
            "range_too_long",
        ),
    ];
    for (query, code) in cases {
        for route in ["/v1/ads/ad-1/stats", "/v1/campaigns/c-1/stats"] {
            let (status, body) = t.get(&format!("{route}{query}")).await;
            assert_error(status, &body, StatusCode::BAD_REQUEST, code);
        }
    }
    let (_, body) = t.get("/v1/ads/ad-1/stats?tz=Asia/Kolkata").await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("+05:30") && message.contains("whole number of hours"),
        "{message}"
    );
    let (status, body) = t.get("/v1/ads?tz=Asia/Kolkata").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "unsupported_tz");
}

#[tokio::test]
async fn a_campaign_s_reach_is_the_union_of_its_ads_visitors() {
    let t = TestEdge::new();
    // u1 sees both ads of the campaign, u2 only ad-2; ad-3 is in no campaign.
    t.ingest(&batch(
        "b1",
        vec![
            seen("e1", "ad-1", "u1", 0, Some("fall")),
            seen("e2", "ad-2", "u1", 1, Some("fall")),
            seen("e3", "ad-2", "u2", 1, Some("fall")),
            seen("e4", "ad-3", "u9", 0, None),
        ],
    ))
    .await;
    let uri = format!("/v1/campaigns/fall/stats?from={TODAY}");
    let before: CampaignStatsResponse = get_json(&t, &uri).await;
    sync::flush(&t.edge).await.unwrap();
    let c: CampaignStatsResponse = get_json(&t, &uri).await;
    assert_eq!(before, c);
    assert_eq!((c.impressions, c.reach), (3, Some(2)));
    assert_eq!(
        c.reach,
        Some(reference_estimate(
            ["u1", "u2"].map(String::from).into_iter()
        ))
    );
    assert_eq!(c.frequency, Some(1.5));
    let ads: Vec<(&str, u64, Option<u64>)> = c
        .ads
        .iter()
        .map(|a| (a.ad_id.as_str(), a.impressions, a.unique_visitors))
        .collect();
    assert_eq!(ads, [("ad-1", 1, Some(1)), ("ad-2", 2, Some(2))]);
    // The ads count the campaign's events as their own; campaigns are not
    // ads in the listing.
    let listed: Vec<String> = t.ads().await.ads.into_iter().map(|a| a.ad_id).collect();
    assert_eq!(listed, ["ad-1", "ad-2", "ad-3"]);
    let campaigns: CampaignsResponse = get_json(&t, "/v1/campaigns").await;
    assert_eq!(campaigns.campaigns.len(), 1);
    let row = &campaigns.campaigns[0];
    assert_eq!(
        (
            row.campaign_id.as_str(),
            row.impressions,
            row.reach,
            row.ads
        ),
        ("fall", 3, Some(2), 2)
    );
    // In Tokyo's days (the 25th there already holds 16:00Z) the same ads.
    let tokyo: CampaignStatsResponse = get_json(
        &t,
        "/v1/campaigns/fall/stats?from=2025-11-24&to=2025-11-25&tz=Asia/Tokyo",
    )
    .await;
    let ads: Vec<(&str, u64)> = tokyo
        .ads
        .iter()
        .map(|a| (a.ad_id.as_str(), a.impressions))
        .collect();
    assert_eq!(ads, [("ad-1", 1), ("ad-2", 2)]);
    assert_eq!((tokyo.impressions, tokyo.reach), (3, Some(2)));
    let campaigns: CampaignsResponse =
        get_json(&t, "/v1/campaigns?tz=Asia/Tokyo&from=2025-11-25").await;
    assert_eq!(campaigns.campaigns[0].ads, 2);
    // An unknown campaign is zeros.
    let none: CampaignStatsResponse = get_json(&t, "/v1/campaigns/spring/stats").await;
    assert_eq!(
        (none.impressions, none.reach, none.ads.len()),
        (0, Some(0), 0)
    );
}

#[tokio::test]
async fn csv_answers_hold_the_json_numbers() {
    let t = TestEdge::new();
    t.ingest(&batch(
        "b1",
        vec![
            seen("e1", "ad-1", "u1", 0, Some("fall")),
            seen("e2", "ad-2", "u1", 2, Some("fall")),
        ],
    ))
    .await;
    let csv = |uri: String| {
        let t = &t;
        async move {
            let (status, _, text) = get_text(t, &uri, Some("text/csv")).await;
            assert_eq!(status, StatusCode::OK, "{text}");
            text
        }
    };
    let text = csv(format!("/v1/campaigns/fall/stats?from={TODAY}")).await;
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("campaign_id,date,impressions,measurable,unique_visitors,"));
    assert!(
        lines[1].starts_with(&format!("fall,{TODAY},2,0,1,")),
        "{text}"
    );
    let text = csv(format!("/v1/ads/ad-2/stats?from={TODAY}&granularity=hour")).await;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 25, "a header and 24 hours");
    assert!(lines[0].starts_with("ad_id,hour,impressions"));
    assert!(
        lines[15].starts_with("ad-2,2025-11-24T14:00:00Z,1,0,1,"),
        "{text}"
    );
    let text = csv("/v1/campaigns".to_owned()).await;
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [
            "campaign_id,impressions,measurable,viewability_rate,invalid,verified,reach,frequency,ads",
            "fall,2,0,,0,0,1,2,2"
        ]
    );
}

#[tokio::test]
async fn scoped_keys_read_only_their_campaigns_and_posts_take_none() {
    let t = scoped_edge();
    t.ingest(&batch(
        "b1",
        vec![
            seen("e1", "acme-1", "u1", 0, Some("acme-fall")),
            seen("e2", "other-1", "u2", 0, Some("other-fall")),
        ],
    ))
    .await;
    let (status, body) = t
        .get_with_key("/v1/campaigns/other-fall/stats", ACME_KEY)
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "out_of_scope");
    let (status, body) = t.get_with_key("/v1/campaigns", ACME_KEY).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let listed: CampaignsResponse = serde_json::from_value(body).unwrap();
    let ids: Vec<&str> = listed
        .campaigns
        .iter()
        .map(|c| c.campaign_id.as_str())
        .collect();
    assert_eq!(ids, ["acme-fall"]);
    // A post's event cannot name a campaign: it alone is refused.
    let mut post = seen("p1", "x", "u1", 0, Some("acme-fall"));
    post.as_object_mut().unwrap().remove("ad_id");
    post["post_id"] = json!("post-1");
    let answer = t
        .ingest(&batch(
            "b2",
            vec![post, seen("e3", "acme-2", "u3", 0, None)],
        ))
        .await;
    assert_eq!(answer.accepted, 1);
    assert_eq!(answer.rejected.len(), 1);
    assert!(answer.rejected[0]
        .error
        .contains("`campaign_id` is for ad events only"));
}
