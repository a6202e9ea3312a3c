//! POST /v1/impressions and GET /v1/impression through the real router:
//! what counts, what is refused as a whole or event by event, and why.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use glimpse_server::{sync, Access};
use glimpse_wire::api::IngestResponse;
use glimpse_wire::Day;
use serde_json::{json, Value};

use crate::support::{assert_error, batch, event, TestEdge, NOW, TODAY};

#[tokio::test]
async fn accepted_batches_count_at_once() {
    let t = TestEdge::new();
    let r = t
        .ingest(&batch(
            "b1",
            vec![
                event("e1", "ad-42", "u1", "viewable"),
                event("e2", "ad-42", "u1", "measurable"),
                event("e3", "ad-42", "u2", "viewable"),
                event("e4", "ad-42", "u2", "measurable"),
                event("e5", "ad-7", "u2", "measurable"),
            ],
        ))
        .await;
    assert_eq!(
        r,
        IngestResponse {
            accepted: 5,
            duplicates: 0,
            rejected: vec![]
        }
    );
    let s = t.stats("ad-42", "").await;
    assert_eq!(
        (s.impressions, s.measurable, s.unique_visitors),
        (2, 2, Some(2))
    );
    assert_eq!(s.viewability_rate, Some(1.0));
    assert_eq!(s.from.to_string(), TODAY);
    assert_eq!(s.days.len(), 1);
    let s = t.stats("ad-7", "").await;
    assert_eq!(
        (s.impressions, s.measurable, s.unique_visitors),
        (0, 1, Some(0))
    );
    assert_eq!(s.viewability_rate, Some(0.0));
}

#[tokio::test]
async fn a_bad_event_costs_only_itself() {
    let t = TestEdge::new();
    let mut unknown_field = event("e4", "ad-1", "u4", "viewable");
    unknown_field["referrer"] = json!("https://example.com/");
    let r = t
        .ingest(&batch(
            "b1",
            vec![
                event("e1", "ad-1", "u1", "viewable"),
                json!(null),
                json!({"id": "e2", "ad_id": "ad-1", "user_id": "u2", "kind": "clicked", "ts": NOW}),
                json!({"id": "e3", "ad_id": "ad 1", "user_id": "u3", "kind": "viewable", "ts": NOW}),
                unknown_field,
                json!({"id": "e5", "user_id": "u5", "kind": "viewable", "ts": NOW}),
                json!({"id": "e6", "ad_id": "ad-1", "user_id": "u6", "kind": "viewable", "ts": NOW - 49 * 3_600_000}),
            ],
        ))
        .await;
    assert_eq!(r.accepted, 2);
    let rejected: Vec<usize> = r.rejected.iter().map(|x| x.index).collect();
    assert_eq!(rejected, [1, 2, 3, 5, 6]);
    assert!(r.rejected[1].error.contains("clicked"), "{:?}", r.rejected);
    assert!(r.rejected[2].error.contains("`ad_id`"), "{:?}", r.rejected);
    assert!(
        r.rejected[3]
            .error
            .contains("names neither `ad_id` nor `post_id`"),
        "{:?}",
        r.rejected
    );
    assert!(r.rejected[4].error.contains("48 h"), "{:?}", r.rejected);
    assert_eq!(t.stats("ad-1", "").await.impressions, 2);
}

#[tokio::test]
async fn a_batch_counts_once_and_repeated_event_ids_once() {
    let t = TestEdge::new();
    let b = batch(
        "b1",
        vec![
            event("e1", "ad-1", "u1", "viewable"),
            event("e1", "ad-1", "u1", "viewable"),
            event("e2", "ad-1", "u2", "viewable"),
        ],
    );
    assert_eq!(
        t.ingest(&b).await,
        IngestResponse {
            accepted: 2,
            duplicates: 1,
            rejected: vec![]
        }
    );
    assert_eq!(
        t.ingest(&b).await,
        IngestResponse {
            accepted: 0,
            duplicates: 3,
            rejected: vec![]
        }
    );
    // Still a duplicate once the batch is in the store.
    sync::flush(&t.edge).await.unwrap();
    assert_eq!(t.ingest(&b).await.duplicates, 3);
    assert_eq!(t.stats("ad-1", "").await.impressions, 2);
}

#[tokio::test]
async fn dedup_and_counts_survive_a_restart() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let b = batch("b1", vec![event("e1", "ad-1", "u1", "viewable")]);
    {
        let t = TestEdge::with(Arc::clone(&dir), Access::LoopbackOnly);
        t.ingest(&b).await;
        sync::flush(&t.edge).await.unwrap();
    }
    let t = TestEdge::with(dir, Access::LoopbackOnly);
    assert_eq!(
        t.ingest(&b).await,
        IngestResponse {
            accepted: 0,
            duplicates: 1,
            rejected: vec![]
        }
    );
    let s = t.stats("ad-1", "").await;
    assert_eq!((s.impressions, s.unique_visitors), (1, Some(1)));
}

#[tokio::test]
async fn whole_batch_refusals_say_why() {
    let t = TestEdge::new();
    let cases: Vec<(&str, &str)> = vec![
        ("not json", "invalid_json"),
        ("[]", "not_an_object"),
        (r#"{"events":[{}]}"#, "invalid_batch_id"),
        (r#"{"batch_id":"a/b","events":[{}]}"#, "invalid_batch_id"),
        (r#"{"batch_id":"b"}"#, "invalid_events"),
        (r#"{"batch_id":"b","events":"x"}"#, "invalid_events"),
        (r#"{"batch_id":"b","events":[]}"#, "invalid_events"),
    ];
    for (body, code) in cases {
        let (status, body) = t.post(body).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, code);
    }
    let too_many = batch(
        "b",
        (0..501)
            .map(|i| event(&format!("e{i}"), "a", "u", "viewable"))
            .collect(),
    );
    let (status, body) = t.post(too_many.to_string()).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "too_many_events");
    let (status, body) = t.post(vec![0xff, 0xfe]).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_json");
    // Nothing was counted by any of them.
    assert_eq!(t.stats("a", "").await.impressions, 0);
}

fn padded_batch(total_len: usize) -> String {
    let head = batch("big", vec![event("e1", "ad-1", "u1", "viewable")]).to_string();
    let mut body = head[..head.len() - 1].to_owned();
    body.push_str(r#","padding":""#);
    let pad = total_len - body.len() - 2;
    body.push_str(&"x".repeat(pad));
    body.push_str("\"}");
    assert_eq!(body.len(), total_len);
    body
}

#[tokio::test]
async fn body_size_limit_is_64_kib_inclusive() {
    let t = TestEdge::new();
    let (status, body) = t.post(padded_batch(65_536)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) = t.post(padded_batch(65_537)).await;
    assert_error(
        status,
        &body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    // Without a Content-Length: a streamed body is cut at the limit too.
    let chunks = vec![Ok::<_, std::io::Error>(padded_batch(65_537).into_bytes())];
    let (status, body) = t
        .post(Body::from_stream(futures_util::stream::iter(chunks)))
        .await;
    assert_error(
        status,
        &body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    assert_eq!(t.stats("ad-1", "").await.impressions, 1);
}

#[tokio::test]
async fn content_types() {
    let t = TestEdge::new();
    let b = batch("b1", vec![event("e1", "ad-1", "u1", "viewable")]).to_string();
    for (i, ct) in [
        "application/json",
        "text/plain",
        "Text/Plain; charset=utf-8",
    ]
    .iter()
    .enumerate()
    {
        let body = b.replace("b1", &format!("ct{i}"));
        let req = Request::post("/v1/impressions")
            .header(header::CONTENT_TYPE, *ct)
            .body(Body::from(body))
            .unwrap();
        let (status, _, body) = t.send(req).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{ct}: {body}");
    }
    for ct in [
        Some("application/x-www-form-urlencoded"),
        Some("text/html"),
        None,
    ] {
        let mut req = Request::post("/v1/impressions");
        if let Some(ct) = ct {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        let (status, _, body) = t.send(req.body(Body::from(b.clone())).unwrap()).await;
        assert_error(
            status,
            &body,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_body_that_never_finishes_times_out() {
    let t = TestEdge::new();
    let stream = futures_util::stream::pending::<Result<Vec<u8>, std::io::Error>>();
    let (status, body) = t.post(Body::from_stream(stream)).await;
    assert_error(status, &body, StatusCode::REQUEST_TIMEOUT, "body_timeout");
}

#[tokio::test]
async fn ingest_allows_any_origin() {
    let t = TestEdge::new();
    let req = Request::builder()
        .method(Method::OPTIONS)
        .uri("/v1/impressions")
        .header(header::ORIGIN, "https://publisher.example")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type")
        .body(Body::empty())
        .unwrap();
    let (status, headers, body) = t.send(req).await;
    assert!(status.is_success(), "{status} {body}");
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    assert!(headers
        .get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS)
        .is_none());
    let req = Request::post("/v1/impressions")
        .header(header::ORIGIN, "https://publisher.example")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(
            batch("b1", vec![event("e1", "a", "u", "viewable")]).to_string(),
        ))
        .unwrap();
    let (status, headers, _) = t.send(req).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
}

#[tokio::test]
async fn single_impression_route() {
    let t = TestEdge::new();
    let req = Request::get("/v1/impression?ad_id=ad-9&user_id=u1")
        .header(header::ORIGIN, "https://publisher.example")
        .body(Body::empty())
        .unwrap();
    let (status, headers, body) = t.send(req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"message": "impression logged", "ad_id": "ad-9"})
    );
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    t.get("/v1/impression?ad_id=ad-9&user_id=u2").await;
    let s = t.stats("ad-9", "").await;
    assert_eq!(
        (s.impressions, s.measurable, s.unique_visitors),
        (2, 2, Some(2))
    );
    for uri in [
        "/v1/impression?ad_id=ad-9",
        "/v1/impression?user_id=u",
        "/v1/impression?ad_id=a%20b&user_id=u",
    ] {
        let (status, body) = t.get(uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert!(body["error"]["message"].is_string());
    }
}

#[tokio::test]
async fn events_count_on_their_utc_day() {
    let t = TestEdge::new();
    let yesterday_late = Day::from_epoch_ms(NOW).unwrap().start_ms() - 1;
    let mut e = event("e1", "ad-1", "u1", "viewable");
    e["ts"] = json!(yesterday_late);
    t.ingest(&batch("b1", vec![e, event("e2", "ad-1", "u2", "viewable")]))
        .await;
    let s = t.stats("ad-1", "?from=2025-11-23&to=2025-11-25").await;
    let per_day: Vec<(String, u64)> = s
        .days
        .iter()
        .map(|d| (d.date.to_string(), d.impressions))
        .collect();
    assert_eq!(
        per_day,
        [
            ("2025-11-23".into(), 1),
            ("2025-11-24".into(), 1),
            ("2025-11-25".into(), 0)
        ]
    );
    // A clock moved past midnight makes "today" the next day.
    t.clock.0.store(NOW + 8 * 3_600_000 + 1, Ordering::Relaxed);
    let s = t.stats("ad-1", "").await;
    assert_eq!(
        (s.from.to_string(), s.impressions),
        ("2025-11-25".to_owned(), 0)
    );
}

#[tokio::test]
async fn too_many_distinct_ads_in_one_batch() {
    use glimpse_wire::ingest::MAX_AD_IDS_PER_BATCH;
    let t = TestEdge::new();
    let events = |n: usize| -> Vec<Value> {
        (0..=n)
            .map(|i| event(&format!("e{i}"), &format!("ad-{}", i % n), "u", "viewable"))
            .collect()
    };
    let (status, body) = t
        .post(batch("many", events(MAX_AD_IDS_PER_BATCH + 1)).to_string())
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "too_many_ads");
    assert!(body["error"]["message"].as_str().unwrap().contains("51"));
    assert_eq!(t.stats("ad-0", "").await.impressions, 0);
    // The id was not used up: the same batch id with fewer ads counts.
    let r = t.ingest(&batch("many", events(MAX_AD_IDS_PER_BATCH))).await;
    assert_eq!(r.accepted as usize, MAX_AD_IDS_PER_BATCH + 1);
}

#[tokio::test]
async fn ingest_answers_503_with_retry_after_while_pending_memory_is_over_its_bound() {
    let t = TestEdge::guarded(
        Arc::new(tempfile::tempdir().unwrap()),
        Access::LoopbackOnly,
        |parts| parts.rules.max_pending_bytes = 500,
    );
    let events: Vec<Value> = (0..200)
        .map(|i| event(&format!("e{i}"), "ad-1", &format!("u{i}"), "viewable"))
        .collect();
    // Under the bound when it arrives: accepted, and now over it.
    assert_eq!(t.ingest(&batch("b1", events.clone())).await.accepted, 200);
    assert!(t.edge.pending_bytes() > 500);
    let request = Request::post("/v1/impressions")
        .header(header::CONTENT_TYPE, "text/plain;charset=UTF-8")
        .body(Body::from(batch("b2", events.clone()).to_string()))
        .unwrap();
    let (status, headers, body) = t.send(request).await;
    assert_error(status, &body, StatusCode::SERVICE_UNAVAILABLE, "overloaded");
    assert_eq!(headers[header::RETRY_AFTER], "5");
    let (status, body) = t.get("/v1/impression?ad_id=ad-1&user_id=u1").await;
    assert_error(status, &body, StatusCode::SERVICE_UNAVAILABLE, "overloaded");
    let (status, body) = t.get("/readyz").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("degraded"))
    );
    // Once the pending counts are in the store, ingest takes batches again.
    assert!(sync::sync_once(&t.edge).await.unwrap());
    assert_eq!(t.edge.pending_bytes(), 0);
    assert_eq!(t.ingest(&batch("b2", events)).await.accepted, 200);
    assert_eq!(t.stats("ad-1", "").await.impressions, 400);
}

#[tokio::test]
async fn a_batch_that_counted_nothing_leaves_no_batch_id_behind() {
    let t = TestEdge::new();
    let rejected = batch(
        "all-bad",
        vec![
            event("e1", "ad-1", "u1", "clicked"),
            json!({"id": "e2", "ad_id": "ad-1", "user_id": "u2", "kind": "viewable", "ts": NOW - 49 * 3_600_000}),
        ],
    );
    let r = t.ingest(&rejected).await;
    assert_eq!((r.accepted, r.rejected.len()), (0, 2));
    // Nothing pending, nothing claimed, nothing in the seen index.
    assert!(t.edge.is_idle(), "a batch that counted nothing is pending");
    sync::flush(&t.edge).await.unwrap();
    assert!(!t.edge.store().batch_seen("all-bad").await.unwrap());
    // So the same id, now with a valid event, counts that event.
    let fixed = batch("all-bad", vec![event("e1", "ad-1", "u1", "viewable")]);
    assert_eq!(t.ingest(&fixed).await.accepted, 1);
    sync::flush(&t.edge).await.unwrap();
    assert!(t.edge.store().batch_seen("all-bad").await.unwrap());
    assert_eq!(t.stats("ad-1", "").await.impressions, 1);
}

#[tokio::test]
async fn a_client_clock_that_is_off_is_corrected_by_sent_at() {
    let t = TestEdge::new();
    // A visitor whose clock is 50 h behind: its events look 50 h old.
    let behind = 50 * 3_600_000;
    let mut e = event("e1", "ad-1", "u1", "viewable");
    e["ts"] = json!(NOW - behind - 1_000);
    let mut late = batch("b1", vec![e.clone()]);
    late["sent_at"] = json!(NOW - behind);
    assert_eq!(t.ingest(&late).await.accepted, 1);
    // Without `sent_at` the same event is out of the window.
    let r = t.ingest(&batch("b2", vec![e])).await;
    assert_eq!((r.accepted, r.rejected.len()), (0, 1));
    let s = t.stats("ad-1", "").await;
    assert_eq!(
        (s.impressions, s.days[0].date.to_string()),
        (1, TODAY.to_owned())
    );
}
