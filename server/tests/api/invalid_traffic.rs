//! Invalid traffic through the real router: which requests count as
//! impressions, which as `invalid`, and that every stats answer says so.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use glimpse_server::sync;
use glimpse_wire::api::StatsResponse;
use serde_json::{json, Value};

use crate::support::{assert_error, batch, event, metric, TestEdge, TODAY};

const CHROME_DESKTOP: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
const HEADLESS_CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36";

fn counting_automation() -> TestEdge {
    TestEdge::guarded(
        std::sync::Arc::new(tempfile::tempdir().unwrap()),
        glimpse_server::Access::LoopbackOnly,
        |parts| parts.rules.count_automation = true,
    )
}

/// A viewable and a measurable impression of `ad` by one visitor.
fn one_view(batch_id: &str, ad: &str) -> Value {
    batch(
        batch_id,
        vec![
            event("e1", ad, "u1", "viewable"),
            event("e2", ad, "u1", "measurable"),
        ],
    )
}

fn with_webdriver(mut body: Value, value: Value) -> Value {
    body["webdriver"] = value;
    body
}

/// (impressions, measurable, unique visitors, invalid) of `ad` today.
async fn counts(t: &TestEdge, ad: &str) -> (u64, u64, u64, u64) {
    let s: StatsResponse = t.stats(ad, "").await;
    assert_eq!(s.days.len(), 1);
    assert_eq!(s.days[0].invalid, s.invalid, "today is the whole range");
    (
        s.impressions,
        s.measurable,
        s.unique_visitors.unwrap(),
        s.invalid,
    )
}

#[tokio::test]
async fn a_crawler_counts_as_invalid_in_every_stats_answer() {
    let t = TestEdge::new();
    let r = t.ingest_as(GOOGLEBOT, &one_view("b1", "ad-1")).await;
    // The crawler is not told it was spotted.
    assert_eq!((r.accepted, r.duplicates), (2, 0));
    assert_eq!(counts(&t, "ad-1").await, (0, 0, 0, 2));
    for stage in ["pending", "synced"] {
        let s = t.stats("ad-1", "").await;
        assert_eq!((s.impressions, s.invalid), (0, 2), "{stage}");
        assert_eq!(s.viewability_rate, None, "{stage}");
        let (_, raw) = t.get("/v1/ads/ad-1/stats").await;
        assert_eq!(raw["invalid"], 2, "{stage}");
        assert_eq!(raw["days"][0]["date"], TODAY, "{stage}");
        assert_eq!(raw["days"][0]["invalid"], 2, "{stage}");
        let ads = t.ads().await;
        assert_eq!(
            ads.ads.len(),
            1,
            "{stage}: an ad seen only by bots is listed"
        );
        assert_eq!(
            (
                ads.ads[0].ad_id.as_str(),
                ads.ads[0].impressions,
                ads.ads[0].invalid
            ),
            ("ad-1", 0, 2),
            "{stage}"
        );
        sync::flush(&t.edge).await.unwrap();
    }
    let text = t.metrics().await;
    assert_eq!(
        metric(&text, "glimpse_events_invalid_total{reason=\"crawler\"}"),
        2
    );
    assert_eq!(metric(&text, "glimpse_events_accepted_total"), 2);
}

#[tokio::test]
async fn a_desktop_browser_and_a_plain_http_client_count_as_impressions() {
    let t = TestEdge::new();
    t.ingest_as(CHROME_DESKTOP, &one_view("b1", "ad-1")).await;
    assert_eq!(counts(&t, "ad-1").await, (1, 1, 1, 0));
    t.ingest_as("curl/8.5.0", &one_view("b2", "ad-2")).await;
    assert_eq!(counts(&t, "ad-2").await, (1, 1, 1, 0));
    let text = t.metrics().await;
    assert!(!text.contains("glimpse_events_invalid_total{"), "{text}");
}

#[tokio::test]
async fn webdriver_is_invalid_unless_automation_is_counted() {
    let t = TestEdge::new();
    let driven = with_webdriver(one_view("b1", "ad-1"), json!(true));
    t.ingest_as(CHROME_DESKTOP, &driven).await;
    assert_eq!(counts(&t, "ad-1").await, (0, 0, 0, 2));
    let not_driven = with_webdriver(one_view("b2", "ad-2"), json!(false));
    t.ingest_as(CHROME_DESKTOP, &not_driven).await;
    assert_eq!(counts(&t, "ad-2").await, (1, 1, 1, 0));
    t.ingest_as(HEADLESS_CHROME, &one_view("b3", "ad-3")).await;
    assert_eq!(counts(&t, "ad-3").await, (0, 0, 0, 2));
    let text = t.metrics().await;
    assert_eq!(
        metric(&text, "glimpse_events_invalid_total{reason=\"automation\"}"),
        4
    );

    let t = counting_automation();
    t.ingest_as(CHROME_DESKTOP, &driven).await;
    assert_eq!(counts(&t, "ad-1").await, (1, 1, 1, 0));
    t.ingest_as(HEADLESS_CHROME, &one_view("b3", "ad-3")).await;
    assert_eq!(counts(&t, "ad-3").await, (1, 1, 1, 0));
    // Crawlers stay invalid whatever the switch says.
    let crawler = with_webdriver(one_view("b4", "ad-4"), json!(true));
    t.ingest_as(GOOGLEBOT, &crawler).await;
    assert_eq!(counts(&t, "ad-4").await, (0, 0, 0, 2));
}

#[tokio::test]
async fn a_duplicate_invalid_batch_counts_once() {
    let t = TestEdge::new();
    let b = one_view("b1", "ad-1");
    assert_eq!(t.ingest_as(GOOGLEBOT, &b).await.accepted, 2);
    // While pending, then once the batch is in the store.
    assert_eq!(t.ingest_as(GOOGLEBOT, &b).await.duplicates, 2);
    sync::flush(&t.edge).await.unwrap();
    assert_eq!(t.ingest_as(GOOGLEBOT, &b).await.duplicates, 2);
    // A human copy of the same batch id is the same batch.
    assert_eq!(t.ingest_as(CHROME_DESKTOP, &b).await.duplicates, 2);
    sync::flush(&t.edge).await.unwrap();
    assert_eq!(counts(&t, "ad-1").await, (0, 0, 0, 2));
}

#[tokio::test]
async fn a_webdriver_that_is_not_a_boolean_is_refused() {
    let t = TestEdge::new();
    for value in [json!("true"), json!(1), json!(null), json!({"on": true})] {
        let body = with_webdriver(one_view("b1", "ad-1"), value.clone());
        let (status, body) = t.post_as(CHROME_DESKTOP, &body).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_webdriver");
        assert_eq!(
            body["error"]["message"], "`webdriver` must be true or false when present",
            "{value}"
        );
    }
    assert_eq!(counts(&t, "ad-1").await, (0, 0, 0, 0));
    // The refused batch claimed nothing: its id still counts when sent right.
    t.ingest_as(CHROME_DESKTOP, &one_view("b1", "ad-1")).await;
    assert_eq!(counts(&t, "ad-1").await, (1, 1, 1, 0));
}

#[tokio::test]
async fn the_single_impression_form_is_judged_by_its_user_agent() {
    let t = TestEdge::new();
    for (ua, user) in [(GOOGLEBOT, "u1"), (HEADLESS_CHROME, "u2")] {
        let request = Request::get(format!("/v1/impression?ad_id=ad-9&user_id={user}"))
            .header(header::USER_AGENT, ua)
            .body(Body::empty())
            .unwrap();
        let (status, _, body) = t.send(request).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_eq!(counts(&t, "ad-9").await, (0, 0, 0, 4));
    let (status, _) = t.get("/v1/impression?ad_id=ad-9&user_id=u3").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(counts(&t, "ad-9").await, (1, 1, 1, 4));
    let text = t.metrics().await;
    assert_eq!(
        metric(&text, "glimpse_events_invalid_total{reason=\"crawler\"}"),
        2
    );
    assert_eq!(
        metric(&text, "glimpse_events_invalid_total{reason=\"automation\"}"),
        2
    );
}
