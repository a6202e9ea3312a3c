//! The routes around the API: health probes, static files, and JSON errors
//! for unknown routes and methods.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use glimpse_server::{Access, HttpParts, HttpState};
use http_body_util::BodyExt;
use serde_json::json;
use tower::ServiceExt;

use crate::support::{assert_error, TestEdge};

#[tokio::test]
async fn every_error_is_json() {
    let t = TestEdge::new();
    let (status, body) = t.get("/nope").await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = t.get("/v1/impressions").await;
    assert_error(
        status,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    let req = Request::delete("/v1/ads/ad-1/stats")
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = t.send(req).await;
    assert_error(
        status,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
}

#[tokio::test]
async fn health_and_readiness() {
    let t = TestEdge::new();
    let (status, body) = t.get("/healthz").await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));
    let (status, body) = t.get("/readyz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"status": "ready", "store": "embedded", "store_status": "ok"})
    );
}

#[tokio::test]
async fn serves_the_sdk_with_cors_and_the_wasm_type() {
    let mut t = TestEdge::new();
    let sdk = tempfile::tempdir().unwrap();
    std::fs::write(sdk.path().join("glimpse_sdk_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(sdk.path().join("glimpse.js"), b"/* tag */").unwrap();
    std::fs::write(
        sdk.path().join("glimpse-0123456789abcdef.wasm"),
        b"\0asm\x01\0\0\0",
    )
    .unwrap();
    let www = tempfile::tempdir().unwrap();
    std::fs::write(
        www.path().join("index.html"),
        b"<!doctype html><title>feed</title>",
    )
    .unwrap();
    std::fs::write(
        www.path().join("dashboard.html"),
        b"<!doctype html><title>dash</title>",
    )
    .unwrap();
    t.http = Arc::new(HttpState::new(
        Arc::clone(&t.edge),
        HttpParts {
            sdk_dir: Some(sdk.path().to_path_buf()),
            www_dir: Some(www.path().to_path_buf()),
            ..HttpParts::new(Access::LoopbackOnly)
        },
    ));

    let req = Request::get("/sdk/glimpse_sdk_bg.wasm")
        .header(header::ORIGIN, "https://publisher.example")
        .body(Body::empty())
        .unwrap();
    let response = t.router().oneshot(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let h = response.headers();
    assert_eq!(h[header::CONTENT_TYPE], "application/wasm");
    assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    // Not content-hashed: a short cache.
    assert_eq!(h[header::CACHE_CONTROL], "public, max-age=300");

    // The tag names the hashed files of the current build: a short cache.
    let (status, h, _) = get_sdk(&t, "/sdk/glimpse.js", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h[header::CACHE_CONTROL], "public, max-age=300");
    assert_eq!(h[header::VARY], "accept-encoding");
    // A name that is its content's hash never changes: a year, immutable;
    // a missing one is not kept that long.
    let (_, h, _) = get_sdk(&t, "/sdk/glimpse-0123456789abcdef.wasm", None).await;
    assert_eq!(
        h[header::CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );
    let (status, h, body) = get_sdk(&t, "/sdk/glimpse-fedcba9876543210.js", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(h[header::CACHE_CONTROL], "public, max-age=300");
    assert_error(
        status,
        &serde_json::from_slice(&body).unwrap(),
        StatusCode::NOT_FOUND,
        "not_found",
    );

    for (path, title) in [("/", "feed"), ("/dashboard", "dash")] {
        let response = t
            .router()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&body).contains(title), "{path}");
    }
    let (status, body) = t.get("/sdk/missing.js").await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = t.get("/missing.html").await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let req = Request::post("/index.html").body(Body::empty()).unwrap();
    let (status, _, body) = t.send(req).await;
    assert_error(
        status,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
}

#[tokio::test]
async fn serves_the_sdk_precompressed_by_accept_encoding() {
    let mut t = TestEdge::new();
    let sdk = tempfile::tempdir().unwrap();
    let module = "glimpse-0123456789abcdef.js";
    std::fs::write(sdk.path().join(module), b"plain").unwrap();
    std::fs::write(sdk.path().join(format!("{module}.br")), b"brotli").unwrap();
    std::fs::write(sdk.path().join(format!("{module}.gz")), b"gzip").unwrap();
    t.http = Arc::new(HttpState::new(
        Arc::clone(&t.edge),
        HttpParts {
            sdk_dir: Some(sdk.path().to_path_buf()),
            ..HttpParts::new(Access::LoopbackOnly)
        },
    ));
    let path = format!("/sdk/{module}");
    for (accept, encoding, body) in [
        (Some("gzip, deflate, br"), Some("br"), "brotli"),
        (Some("gzip"), Some("gzip"), "gzip"),
        (Some("identity"), None, "plain"),
        (None, None, "plain"),
    ] {
        let (status, h, got) = get_sdk(&t, &path, accept).await;
        assert_eq!(status, StatusCode::OK, "{accept:?}");
        assert_eq!(
            h.get(header::CONTENT_ENCODING).map(|v| v.to_str().unwrap()),
            encoding,
            "{accept:?}"
        );
        assert_eq!(String::from_utf8_lossy(&got), body, "{accept:?}");
        assert_eq!(h[header::CONTENT_TYPE], "text/javascript", "{accept:?}");
        assert_eq!(h[header::VARY], "accept-encoding", "{accept:?}");
        assert_eq!(
            h[header::CACHE_CONTROL],
            "public, max-age=31536000, immutable",
            "{accept:?}"
        );
    }
}

/// GETs `path` under `/sdk/` with an optional `Accept-Encoding`: the status,
/// headers and raw body bytes.
async fn get_sdk(
    t: &TestEdge,
    path: &str,
    accept_encoding: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut req = Request::get(path);
    if let Some(a) = accept_encoding {
        req = req.header(header::ACCEPT_ENCODING, a);
    }
    let response = t
        .router()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, body.to_vec())
}
