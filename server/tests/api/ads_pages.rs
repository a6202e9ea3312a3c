//! `GET /v1/ads` in pages: the key's scope applied first, then `limit` ads
//! per page by ad id, `next_cursor` to the next one.

use axum::http::StatusCode;
use glimpse_wire::api::AdsResponse;

use crate::support::{assert_error, batch, event, scoped_edge, TestEdge, ACME_KEY, ALL_KEY};

/// Ads around the `acme-` scope: some sort before it, some after.
const ADS: [&str; 8] = [
    "a-0", "a-1", "acme-0", "acme-1", "acme-2", "acme2-x", "globex-0", "globex-1",
];

async fn edge_with_ads() -> TestEdge {
    let t = scoped_edge();
    for (i, ad) in ADS.iter().enumerate() {
        let events = vec![event("e1", ad, "u1", "viewable")];
        t.ingest(&batch(&format!("b{i}"), events)).await;
    }
    t
}

/// Every page `key` gets with this `limit`, following `next_cursor`.
async fn pages(t: &TestEdge, key: &str, limit: usize) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let uri = match &cursor {
            None => format!("/v1/ads?limit={limit}"),
            Some(c) => format!("/v1/ads?limit={limit}&cursor={c}"),
        };
        let (status, body) = t.get_with_key(&uri, key).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        assert!(body.get("next_cursor").is_some(), "always present: {body}");
        let page: AdsResponse = serde_json::from_value(body).unwrap();
        assert!(page.ads.len() <= limit);
        pages.push(page.ads.iter().map(|a| a.ad_id.clone()).collect());
        match page.next_cursor {
            None => return pages,
            Some(next) => cursor = Some(next),
        }
        assert!(pages.len() <= ADS.len(), "the pages never end");
    }
}

#[tokio::test]
async fn a_scoped_key_pages_through_its_own_ads_in_id_order() {
    let t = edge_with_ads().await;
    assert_eq!(
        pages(&t, ACME_KEY, 2).await,
        [vec!["acme-0", "acme-1"], vec!["acme-2", "acme2-x"]]
    );
    assert_eq!(
        pages(&t, ALL_KEY, 3).await,
        [
            vec!["a-0", "a-1", "acme-0"],
            vec!["acme-1", "acme-2", "acme2-x"],
            vec!["globex-0", "globex-1"]
        ]
    );
    // The default page holds them all, with today's fields.
    let (_, body) = t.get_with_key("/v1/ads", ALL_KEY).await;
    assert_eq!(body["ads"].as_array().unwrap().len(), ADS.len());
    assert_eq!(body["ads"][0]["impressions"], 1);
    assert_eq!(body["next_cursor"], serde_json::Value::Null);
}

#[tokio::test]
async fn bad_limits_and_cursors_are_refused() {
    let t = edge_with_ads().await;
    for (uri, code) in [
        ("/v1/ads?limit=0", "invalid_limit"),
        ("/v1/ads?limit=1001", "invalid_limit"),
        ("/v1/ads?limit=many", "invalid_limit"),
        ("/v1/ads?cursor=zz", "invalid_cursor"),
        ("/v1/ads?cursor=", "invalid_cursor"),
    ] {
        let (status, body) = t.get_with_key(uri, ALL_KEY).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, code);
    }
    let (status, _) = t.get_with_key("/v1/ads?limit=1000", ALL_KEY).await;
    assert_eq!(status, StatusCode::OK);
}
