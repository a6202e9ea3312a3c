//! Who may read stats: API keys, their scopes, and loopback without keys.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use glimpse_server::{load_access, sync, Access, Config};
use glimpse_wire::api::AdsResponse;
use serde_json::Value;

use crate::support::{assert_error, batch, event, scoped_edge, TestEdge, ACME_KEY, ALL_KEY, TODAY};

#[tokio::test]
async fn stats_need_a_key_when_keys_are_configured() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let t = TestEdge::with(dir, Access::from_keys(&["k-1".into(), "k-2".into()]));
    for uri in [
        "/v1/ads/ad-1/stats",
        "/v1/ads",
        &format!("/v1/ads/ad-1/unique-visitors?date={TODAY}"),
    ] {
        let (status, body) = t.get(uri).await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
        for (key, want) in [
            ("Bearer k-2", StatusCode::OK),
            ("Bearer k-3", StatusCode::UNAUTHORIZED),
            ("k-2", StatusCode::UNAUTHORIZED),
        ] {
            let req = Request::get(uri)
                .header(header::AUTHORIZATION, key)
                .body(Body::empty())
                .unwrap();
            let (status, _, body) = t.send(req).await;
            assert_eq!(status, want, "{uri} {key}: {body}");
        }
    }
    // Ingest stays open.
    t.ingest(&batch("b1", vec![event("e1", "ad-1", "u1", "viewable")]))
        .await;
}

#[tokio::test]
async fn without_keys_only_loopback_reads_stats() {
    let mut t = TestEdge::new();
    t.peer = "192.0.2.7:5000".parse().unwrap();
    let (status, body) = t.get("/v1/ads/ad-1/stats").await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    t.ingest(&batch("b1", vec![event("e1", "ad-1", "u1", "viewable")]))
        .await;
    t.peer = "[::1]:5000".parse().unwrap();
    assert_eq!(t.stats("ad-1", "").await.impressions, 1);
}

#[tokio::test]
async fn scoped_keys_read_their_own_ads_only() {
    let t = scoped_edge();
    t.ingest(&batch(
        "b1",
        vec![
            event("e1", "acme-1", "u1", "viewable"),
            event("e2", "acme2-x7", "u1", "viewable"),
            event("e3", "acme2-y", "u1", "viewable"),
            event("e4", "globex-1", "u1", "viewable"),
            event("e5", "acme", "u1", "viewable"),
        ],
    ))
    .await;
    for ad in ["acme-1", "acme2-x7", "acme-never-seen"] {
        for uri in [
            format!("/v1/ads/{ad}/stats"),
            format!("/v1/ads/{ad}/unique-visitors?date={TODAY}"),
        ] {
            let (status, body) = t.get_with_key(&uri, ACME_KEY).await;
            assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        }
    }
    for ad in ["globex-1", "acme2-y", "acme", "never-seen"] {
        for uri in [
            format!("/v1/ads/{ad}/stats"),
            format!("/v1/ads/{ad}/unique-visitors?date={TODAY}"),
        ] {
            let (status, body) = t.get_with_key(&uri, ACME_KEY).await;
            assert_error(status, &body, StatusCode::FORBIDDEN, "out_of_scope");
            // The wildcard keys, from the file and from --api-keys, read it.
            for key in [ALL_KEY, "plain-key"] {
                let (status, body) = t.get_with_key(&uri, key).await;
                assert_eq!(status, StatusCode::OK, "{uri}: {body}");
            }
        }
    }
    let ids = |body: Value| -> Vec<String> {
        let r: AdsResponse = serde_json::from_value(body).unwrap();
        r.ads.into_iter().map(|a| a.ad_id).collect()
    };
    let (status, body) = t.get_with_key("/v1/ads", ACME_KEY).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(body), ["acme-1", "acme2-x7"]);
    // Also once the counts are in the store.
    sync::flush(&t.edge).await.unwrap();
    let (_, body) = t.get_with_key("/v1/ads", ACME_KEY).await;
    assert_eq!(ids(body), ["acme-1", "acme2-x7"]);
    let (_, body) = t.get_with_key("/v1/ads", ALL_KEY).await;
    assert_eq!(
        ids(body),
        ["acme", "acme-1", "acme2-x7", "acme2-y", "globex-1"]
    );
    // No key or an unknown one: 401, whatever the ad.
    let (status, body) = t.get("/v1/ads/acme-1/stats").await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, body) = t.get_with_key("/v1/ads/acme-1/stats", "acme-secret").await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[test]
fn a_malformed_keys_file_stops_the_start_naming_the_line() {
    use clap::Parser;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    std::fs::write(&path, format!("{ACME_KEY} acme-\n\n{ALL_KEY} acme-{{x}}\n")).unwrap();
    let config =
        Config::try_parse_from(["glimpse-server", "--api-keys-file", path.to_str().unwrap()])
            .unwrap();
    let err = format!("{:#}", load_access(&config).unwrap_err());
    assert!(err.contains("line 3"), "{err}");
    assert!(err.contains(path.to_str().unwrap()), "{err}");
    assert!(!err.contains(ALL_KEY), "{err}");
    std::fs::write(&path, format!("{ACME_KEY} acme-\n")).unwrap();
    let access = load_access(&config).unwrap();
    assert!(matches!(access, Access::Keys(ref k) if k.len() == 1));
    let missing = Config::try_parse_from([
        "glimpse-server",
        "--api-keys-file",
        dir.path().join("nope").to_str().unwrap(),
    ])
    .unwrap();
    assert!(load_access(&missing).is_err());
}
