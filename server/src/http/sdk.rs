//! `/sdk/`: the built browser SDK (`cargo xtask sdk` writes it).
//!
//! - Each file is sent as its Brotli (`.br`) or gzip (`.gz`) copy when the
//!   request's `Accept-Encoding` takes one, else as it is; the answer says
//!   `Vary: Accept-Encoding`, so caches keep the encodings apart.
//! - A content-hashed file (`glimpse-<16 hex digits>.js` or `.wasm`, named by
//!   the SHA-256 of its bytes) never changes under its name: it is cached for
//!   a year, `immutable`. Everything else (the tag `glimpse.js`, whose
//!   contents name the current hashed files, and the npm package's own
//!   names) is cached for five minutes, so a new build reaches pages soon.

use std::path::Path;

use axum::extract::Request;
use axum::http::{header, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use tower_http::cors::{Any, CorsLayer};
use tower_http::services::ServeDir;

use super::not_found_service;

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const SHORT: &str = "public, max-age=300";

/// The service under `/sdk`, serving `dir`.
pub(super) fn router(dir: &Path) -> Router {
    Router::new()
        .fallback_service(
            ServeDir::new(dir)
                .precompressed_br()
                .precompressed_gzip()
                .call_fallback_on_method_not_allowed(true)
                .fallback(not_found_service()),
        )
        .layer(middleware::from_fn(cache_policy))
        .layer(
            CorsLayer::new()
                .allow_origin(Any)
                .allow_methods([Method::GET]),
        )
}

/// Sets `Cache-Control` by the name asked for, and `Vary`.
async fn cache_policy(req: Request, next: Next) -> Response {
    let hashed = is_content_hashed(req.uri().path().rsplit('/').next().unwrap_or(""));
    let mut response = next.run(req).await;
    // An error (a name not built yet) must not be kept for a year.
    let found = response.status().is_success() || response.status().is_redirection();
    let policy = if hashed && found { IMMUTABLE } else { SHORT };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(policy));
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    response
}

/// Whether `name` is `glimpse-<16 lowercase hex digits>.js` or `.wasm`, the
/// names `cargo xtask sdk` gives the files whose name is their hash.
fn is_content_hashed(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("glimpse-") else {
        return false;
    };
    let Some((hash, ext)) = rest.split_once('.') else {
        return false;
    };
    hash.len() == 16
        && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && matches!(ext, "js" | "wasm")
}

#[cfg(test)]
mod tests {
    use super::is_content_hashed;

    #[test]
    fn only_hash_names_are_content_hashed() {
        assert!(is_content_hashed("glimpse-0123456789abcdef.js"));
        assert!(is_content_hashed("glimpse-0123456789abcdef.wasm"));
        for name in [
            "glimpse.js",
            "index.js",
            "glimpse_sdk_bg.wasm",
            "glimpse-0123456789abcdef.js.br",
            "glimpse-0123456789ABCDEF.js",
            "glimpse-0123456789abcde.js",
            "glimpse-0123456789abcdefa.wasm",
            "glimpse-0123456789abcdef.html",
            "",
        ] {
            assert!(!is_content_hashed(name), "{name}");
        }
    }
}
