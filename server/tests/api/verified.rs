//! Verified impressions: viewable events of people that the browser vouched
//! were neither covered nor visually altered, in every stats answer,
//! counted once.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use glimpse_server::sync;
use serde_json::{json, Value};

use crate::support::{batch, event, TestEdge, TODAY};

fn verified(id: &str, ad: &str, user: &str) -> Value {
    let mut e = event(id, ad, user, "viewable");
    e["verified"] = json!(true);
    e
}

/// (impressions, verified) of `ad` today: the range, its one day, and its
/// row of `GET /v1/ads`.
async fn verified_everywhere(t: &TestEdge, ad: &str) -> [(u64, u64); 3] {
    let s = t.stats(ad, "").await;
    let row = t.ad_row(ad).await;
    [
        (s.impressions, s.verified),
        (s.days[0].impressions, s.days[0].verified),
        (row.impressions, row.verified),
    ]
}

#[tokio::test]
async fn verified_viewable_impressions_of_people_count_in_every_answer() {
    let t = TestEdge::new();
    let mut measured = event("e4", "ad-1", "u4", "measurable");
    measured["verified"] = json!(true);
    let r = t
        .ingest(&batch(
            "b1",
            vec![
                verified("e1", "ad-1", "u1"),
                verified("e2", "ad-1", "u2"),
                event("e3", "ad-1", "u3", "viewable"),
                // Only a viewable event can be verified.
                measured,
            ],
        ))
        .await;
    assert_eq!(r.accepted, 4);
    for stage in ["pending", "synced"] {
        assert_eq!(
            verified_everywhere(&t, "ad-1").await,
            [(3, 2); 3],
            "{stage}"
        );
        let (_, raw) = t.get(&format!("/v1/ads/ad-1/stats?from={TODAY}")).await;
        assert_eq!(
            (&raw["verified"], &raw["days"][0]["verified"]),
            (&json!(2), &json!(2)),
            "{stage}"
        );
        sync::flush(&t.edge).await.unwrap();
    }
}

#[tokio::test]
async fn a_bots_verified_events_are_invalid_and_the_single_form_is_never_verified() {
    let t = TestEdge::new();
    let request = Request::post("/v1/impressions")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(
            json!({"batch_id": "bot", "webdriver": true, "events": [verified("e1", "ad-1", "u1")]})
                .to_string(),
        ))
        .unwrap();
    let (status, _, body) = t.send(request).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let s = t.stats("ad-1", "").await;
    assert_eq!((s.impressions, s.verified, s.invalid), (0, 0, 1));
    let (status, _) = t.get("/v1/impression?ad_id=ad-2&user_id=u1").await;
    assert_eq!(status, StatusCode::OK);
    let s = t.stats("ad-2", "").await;
    assert_eq!((s.impressions, s.verified), (1, 0));
}

#[tokio::test]
async fn a_batch_sent_again_adds_no_verified_impressions() {
    let t = TestEdge::new();
    let b = batch(
        "b1",
        vec![verified("e1", "ad-1", "u1"), verified("e2", "ad-1", "u2")],
    );
    assert_eq!(t.ingest(&b).await.accepted, 2);
    // While pending, then once the batch is in the store.
    assert_eq!(t.ingest(&b).await.duplicates, 2);
    sync::flush(&t.edge).await.unwrap();
    assert_eq!(t.ingest(&b).await.duplicates, 2);
    sync::flush(&t.edge).await.unwrap();
    assert_eq!(verified_everywhere(&t, "ad-1").await, [(2, 2); 3]);
}
