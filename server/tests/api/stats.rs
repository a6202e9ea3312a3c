//! The stats routes: per-day answers, ranges, unique visitors as unions, the
//! ad list, and the same numbers before and after a sync.

use std::sync::Arc;

use axum::http::StatusCode;
use glimpse_server::sync;
use glimpse_wire::api::{AdsResponse, UniqueVisitorsResponse};
use glimpse_wire::Day;
use serde_json::json;

use crate::support::{assert_error, batch, event, reference_estimate, TestEdge, NOW, TODAY};

#[tokio::test]
async fn stats_are_the_same_before_and_after_a_sync() {
    let t = TestEdge::new();
    for i in 0..10 {
        let events = (0..20)
            .map(|j| {
                event(
                    &format!("e{j}"),
                    "ad-1",
                    &format!("u{}", (i * 20 + j) % 150),
                    "viewable",
                )
            })
            .collect();
        t.ingest(&batch(&format!("b{i}"), events)).await;
        if i == 4 {
            sync::flush(&t.edge).await.unwrap();
        }
    }
    let before = t.stats("ad-1", "").await;
    sync::flush(&t.edge).await.unwrap();
    let after = t.stats("ad-1", "").await;
    assert_eq!(before, after);
    assert_eq!(after.impressions, 200);
    assert_eq!(
        after.unique_visitors,
        Some(reference_estimate((0..150).map(|u| format!("u{u}"))))
    );
}

#[tokio::test]
async fn range_union_is_not_a_sum() {
    let t = TestEdge::new();
    let day_ms = 86_400_000;
    for (i, offset) in [0, day_ms].into_iter().enumerate() {
        let events = (0..100)
            .map(|u| {
                let mut e = event(
                    &format!("e{u}"),
                    "ad-1",
                    &format!("visitor-{u}"),
                    "viewable",
                );
                e["ts"] = json!(NOW - offset);
                e
            })
            .collect();
        t.ingest(&batch(&format!("b{i}"), events)).await;
    }
    sync::flush(&t.edge).await.unwrap();
    let s = t.stats("ad-1", "?from=2025-11-23&to=2025-11-24").await;
    assert_eq!(s.impressions, 200);
    assert_eq!(
        s.days
            .iter()
            .map(|d| d.unique_visitors.unwrap())
            .sum::<u64>(),
        200
    );
    let visitors = reference_estimate((0..100).map(|u| format!("visitor-{u}")));
    assert_eq!(s.unique_visitors, Some(visitors));
}

#[tokio::test]
async fn stats_query_validation() {
    let t = TestEdge::new();
    let cases = [
        ("/v1/ads/ad-1/stats?from=2025-13-01", "invalid_date"),
        (
            "/v1/ads/ad-1/stats?from=2025-11-24&to=2025-11-23",
            "invalid_range",
        ),
        (
            "/v1/ads/ad-1/stats?from=2024-01-01&to=2025-01-01",
            "invalid_range",
        ),
        ("/v1/ads/ad%20x/stats", "invalid_ad_id"),
        ("/v1/ads/ad-1/unique-visitors", "missing_parameter"),
        (
            "/v1/ads/ad-1/unique-visitors?date=yesterday",
            "invalid_date",
        ),
        ("/v1/ads?from=2024-01-01&to=2025-01-01", "invalid_range"),
    ];
    for (uri, code) in cases {
        let (status, body) = t.get(uri).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, code);
    }
    let s = t.stats("ad-1", "?from=2024-01-01&to=2024-12-31").await;
    assert_eq!(s.days.len(), 366);
    assert!(s.days.windows(2).all(|w| w[0].date < w[1].date));
    assert!(s
        .days
        .iter()
        .all(|d| d.impressions == 0 && d.unique_visitors == Some(0)));
    assert_eq!(s.viewability_rate, None);
}

#[tokio::test]
async fn unique_visitors_route_names_its_source() {
    let t = TestEdge::new();
    t.ingest(&batch(
        "b1",
        vec![
            event("e1", "ad-1", "u1", "viewable"),
            event("e2", "ad-1", "u2", "viewable"),
        ],
    ))
    .await;
    let (status, body) = t
        .get(&format!("/v1/ads/ad-1/unique-visitors?date={TODAY}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let r: UniqueVisitorsResponse = serde_json::from_value(body).unwrap();
    assert_eq!(
        (r.unique_visitors, r.source.as_str(), r.date.to_string()),
        (2, "embedded", TODAY.to_owned())
    );
}

#[tokio::test]
async fn ads_route_lists_ads_with_counts_in_range() {
    let t = TestEdge::new();
    t.ingest(&batch(
        "b1",
        vec![
            event("e1", "ad-b", "u1", "viewable"),
            event("e2", "ad-a", "u1", "measurable"),
        ],
    ))
    .await;
    sync::flush(&t.edge).await.unwrap();
    t.ingest(&batch("b2", vec![event("e1", "ad-c", "u1", "viewable")]))
        .await;
    let (status, body) = t.get("/v1/ads").await;
    assert_eq!(status, StatusCode::OK);
    let r: AdsResponse = serde_json::from_value(body).unwrap();
    let ids: Vec<&str> = r.ads.iter().map(|a| a.ad_id.as_str()).collect();
    assert_eq!(ids, ["ad-a", "ad-b", "ad-c"]);
    assert_eq!(r.ads[0].viewability_rate, Some(0.0));
    assert_eq!(r.ads[1].viewability_rate, None);
    let (_, body) = t.get("/v1/ads?from=2025-11-20&to=2025-11-21").await;
    assert_eq!(body["ads"], json!([]));
}

#[tokio::test]
async fn the_sync_task_folds_pending_counts_into_the_store() {
    let t = TestEdge::new();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let edge = Arc::clone(&t.edge);
    let task = tokio::spawn(async move {
        sync::run(&edge, std::time::Duration::from_millis(10), stopped).await
    });
    t.ingest(&batch("b1", vec![event("e1", "ad-1", "u1", "viewable")]))
        .await;
    let today: Day = TODAY.parse().unwrap();
    let range = glimpse_wire::DayRange::single(today);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !t.edge.is_idle() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sync task never ran"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let stored = t
        .edge
        .store()
        .read_days("ad-1", range, glimpse_server::store::Grain::Days)
        .await
        .unwrap()
        .days;
    assert_eq!(stored[&today].counters.impressions, 1);
    assert!(t.edge.store().batch_seen("b1").await.unwrap());
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
}
