//! Signed ads: tokens required per event with `--ad-signing-secret`,
//! ignored without it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use glimpse_server::keys::Secret;
use glimpse_server::signing::{issue, SigningSecrets};
use glimpse_server::Access;
use serde_json::{json, Value};

use crate::support::{batch, event, TestEdge, NOW};

fn signed(id: &str, ad: &str, token: &str) -> Value {
    let mut e = event(id, ad, "u1", "viewable");
    e["token"] = json!(token);
    e
}

/// A signing secret of the shortest length the edge takes.
const SECRET: &str = "s3cret-s3cret-s3cret-s3cret-s3cr";

fn signing_edge(secret: Option<&str>) -> TestEdge {
    let secret = secret.map(|s| SigningSecrets::new(vec![Secret::new(s)]).unwrap());
    TestEdge::guarded(
        Arc::new(tempfile::tempdir().unwrap()),
        Access::LoopbackOnly,
        |parts| parts.rules.ad_signing = secret,
    )
}

#[tokio::test]
async fn signed_ads_required_per_event() {
    let t = signing_edge(Some(SECRET));
    let now_secs = (NOW / 1000) as u64;
    let good = issue(SECRET.as_bytes(), "ad-1", now_secs + 3600);
    let expired = issue(SECRET.as_bytes(), "ad-1", now_secs - 1);
    let r = t
        .ingest(&batch(
            "b1",
            vec![
                signed("e1", "ad-1", &good),
                event("e2", "ad-1", "u2", "viewable"),
                signed("e3", "ad-1", &expired),
                signed("e4", "ad-2", &good),
                signed("e5", "ad-1", "12.zz"),
                signed("e6", "ad-1", &issue(b"other", "ad-1", now_secs + 3600)),
            ],
        ))
        .await;
    assert_eq!(r.accepted, 1, "{r:?}");
    let reasons: Vec<(usize, &str)> = r
        .rejected
        .iter()
        .map(|x| (x.index, x.error.as_str()))
        .collect();
    assert_eq!(reasons.len(), 5, "{reasons:?}");
    let reason = |i: usize| reasons.iter().find(|r| r.0 == i).unwrap().1;
    assert!(reason(1).contains("`token` is missing"), "{reasons:?}");
    assert!(reason(2).contains("expired"), "{reasons:?}");
    assert!(reason(3).contains("does not match"), "{reasons:?}");
    assert!(reason(4).contains("malformed"), "{reasons:?}");
    assert!(reason(5).contains("does not match"), "{reasons:?}");
    let s = t.stats("ad-1", "").await;
    assert_eq!(s.impressions, 1);
    assert_eq!(t.stats("ad-2", "").await.impressions, 0);

    // The token expires by the edge's clock.
    t.clock.0.store(NOW + 3_601_000, Ordering::Relaxed);
    let r = t
        .ingest(&batch("b2", vec![signed("e1", "ad-1", &good)]))
        .await;
    assert_eq!(r.accepted, 0);
    assert!(r.rejected[0].error.contains("expired"), "{r:?}");
}

#[tokio::test]
async fn tokens_ignored_without_a_secret() {
    let t = signing_edge(None);
    let r = t
        .ingest(&batch(
            "b1",
            vec![
                signed("e1", "ad-1", "garbage"),
                event("e2", "ad-1", "u2", "viewable"),
            ],
        ))
        .await;
    assert_eq!((r.accepted, r.rejected.len()), (2, 0), "{r:?}");
    assert_eq!(t.stats("ad-1", "").await.impressions, 2);
}
