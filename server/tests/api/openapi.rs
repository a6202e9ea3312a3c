//! `GET /v1/openapi.json`: an OpenAPI 3.1 document that lists exactly the
//! routes the router serves, with every operation's errors.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use crate::support::TestEdge;

async fn document(t: &TestEdge) -> Value {
    let request = Request::get("/v1/openapi.json")
        .body(Body::empty())
        .unwrap();
    let response = t.router().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(headers[header::CACHE_CONTROL], "public, max-age=300");
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).expect("the document is JSON")
}

/// The paths the router serves, from its `Debug` form: axum prints each
/// route there as `RouteId(n): "path"` (it has no other way to list them).
fn routed_paths(t: &TestEdge) -> BTreeSet<String> {
    let shown = format!("{:?}", t.router());
    // The routes proper; the fallback router after them holds the
    // catch-all.
    let routes = shown
        .split_once("fallback_router:")
        .map_or(shown.as_str(), |(routes, _)| routes);
    let paths: BTreeSet<String> = routes
        .split("RouteId(")
        .skip(1)
        .filter_map(|entry| {
            let (_, rest) = entry.split_once("): \"")?;
            Some(rest[..rest.find('"')?].to_owned())
        })
        .collect();
    assert!(
        !paths.is_empty(),
        "no routes found in the router's Debug form: {shown}"
    );
    paths
}

const EVERY_ROUTE: [&str; 13] = [
    "/healthz",
    "/metrics",
    "/readyz",
    "/v1/ads",
    "/v1/ads/{ad_id}/stats",
    "/v1/ads/{ad_id}/unique-visitors",
    "/v1/campaigns",
    "/v1/campaigns/{campaign_id}/stats",
    "/v1/impression",
    "/v1/impressions",
    "/v1/openapi.json",
    "/v1/posts/{post_id}/stats",
    "/v1/views",
];

#[tokio::test]
async fn the_document_is_openapi_3_1_and_lists_every_route() {
    let t = TestEdge::new();
    let doc = document(&t).await;
    let version = doc["openapi"].as_str().unwrap();
    assert!(version.starts_with("3.1."), "{version}");
    let documented: BTreeSet<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(documented, EVERY_ROUTE.map(String::from).into());
    // Walking the router finds the same paths: none is served undocumented.
    assert_eq!(routed_paths(&t), documented);
    let ops = |path: &str| {
        doc["paths"][path]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(ops("/v1/impressions"), ["post"]);
    assert_eq!(ops("/v1/ads/{ad_id}/stats"), ["get"]);
}

#[tokio::test]
async fn metrics_on_their_own_listener_leave_the_document() {
    let t = TestEdge::guarded(
        std::sync::Arc::new(tempfile::tempdir().unwrap()),
        glimpse_server::Access::LoopbackOnly,
        |parts| parts.http.guard = crate::support::guard(&["--metrics-listen", "127.0.0.1:0"]),
    );
    let doc = document(&t).await;
    assert!(doc["paths"].get("/metrics").is_none());
    assert_eq!(routed_paths(&t).len(), EVERY_ROUTE.len() - 1);
    assert!(!routed_paths(&t).contains("/metrics"));
}

#[tokio::test]
async fn every_operation_documents_its_parameters_answers_and_errors() {
    let t = TestEdge::new();
    let doc = document(&t).await;
    let stats = &doc["paths"]["/v1/ads/{ad_id}/stats"]["get"];
    let params: Vec<&str> = stats["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        params,
        ["ad_id", "from", "to", "tz", "granularity", "format"]
    );
    assert_eq!(stats["security"], serde_json::json!([{"api_key": []}]));
    let ok = &stats["responses"]["200"]["content"];
    assert_eq!(
        ok["application/json"]["schema"]["$ref"],
        "#/components/schemas/StatsResponse"
    );
    assert_eq!(ok["text/csv"]["schema"]["type"], "string");
    let codes = |op: &Value, status: &str| -> Vec<String> {
        let schema = &op["responses"][status]["content"]["application/json"]["schema"];
        let narrowed = &schema["allOf"][1]["properties"]["error"]["properties"]["code"];
        assert_eq!(schema["allOf"][0]["$ref"], "#/components/schemas/ErrorBody");
        narrowed["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("no codes for {status}: {schema}"))
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect()
    };
    assert!(codes(stats, "400").contains(&"invalid_range".to_owned()));
    assert_eq!(codes(stats, "401"), ["unauthorized"]);
    assert_eq!(codes(stats, "403"), ["forbidden", "out_of_scope"]);
    let ingest = &doc["paths"]["/v1/impressions"]["post"];
    for (status, code) in [
        ("413", "payload_too_large"),
        ("415", "unsupported_media_type"),
        ("429", "rate_limited"),
        ("503", "log_full"),
    ] {
        assert!(codes(ingest, status).contains(&code.to_owned()), "{status}");
    }
    let batch = &doc["components"]["schemas"]["Batch"];
    assert_eq!(batch["required"], serde_json::json!(["batch_id", "events"]));
    assert_eq!(
        batch["properties"]["events"]["maxItems"],
        glimpse_wire::ingest::MAX_EVENTS_PER_BATCH
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["api_key"],
        serde_json::json!({
            "type": "http",
            "scheme": "bearer",
            "description": doc["components"]["securitySchemes"]["api_key"]["description"],
        })
    );
    // Every error answer of every operation carries its codes.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for status in op["responses"].as_object().unwrap().keys() {
                if status.starts_with('4') || (status == "503" && path != "/readyz") {
                    assert!(!codes(op, status).is_empty(), "{method} {path} {status}");
                }
            }
        }
    }
}
