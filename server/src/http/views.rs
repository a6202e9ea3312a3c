//! `GET /v1/views?ids=p1,p2,...`: the public view counts of posts, made for
//! a CDN in front of the edges. No key (every visitor sees the counts),
//! CORS open to any origin, a short shared cache with a long
//! stale-while-revalidate, and a strong `ETag` of the body so a
//! revalidation that finds nothing new is a `304` without a body.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use glimpse_wire::api::{ViewsResponse, MAX_VIEW_IDS};
use glimpse_wire::ingest::{check_id, MAX_AD_OR_USER_ID_BYTES};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::extract::ApiQuery;
use super::AppState;

/// How long a CDN or browser may serve an answer without asking, and how
/// long after that it may serve it stale while it asks: counts a few
/// seconds old are fine under a post, and most reads never reach an edge.
pub(crate) const VIEWS_CACHE_CONTROL: &str = "public, max-age=5, stale-while-revalidate=60";

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ViewsQuery {
    /// 1 to 100 post ids, comma-separated.
    #[param(
        required = true,
        example = "p1,p2",
        pattern = r"^[A-Za-z0-9._:-]+(,[A-Za-z0-9._:-]+)*$"
    )]
    ids: Option<String>,
}

/// The post ids of `ids`, in the order given and without repeats: 1 to
/// [`MAX_VIEW_IDS`] of them, comma-separated, each a valid id.
fn parse_ids(ids: Option<&str>) -> Result<Vec<String>, ApiError> {
    let ids = ids.filter(|s| !s.is_empty()).ok_or_else(|| {
        ApiError::bad_request(
            "missing_parameter",
            format!("the `ids` query parameter is required: 1 to {MAX_VIEW_IDS} comma-separated post ids"),
        )
    })?;
    let given: Vec<&str> = ids.split(',').collect();
    if given.len() > MAX_VIEW_IDS {
        return Err(ApiError::bad_request(
            "too_many_ids",
            format!(
                "`ids` holds {} post ids; at most {MAX_VIEW_IDS} are allowed",
                given.len()
            ),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(given.len());
    for (index, id) in given.into_iter().enumerate() {
        check_id(id, MAX_AD_OR_USER_ID_BYTES).map_err(|why| {
            ApiError::bad_request("invalid_id", format!("post id {index} of `ids` {why}"))
        })?;
        if !out.iter().any(|seen| seen == id) {
            out.push(id.to_owned());
        }
    }
    Ok(out)
}

/// A strong validator of the body: the same counts give the same tag on
/// every edge, so a CDN revalidating against any of them gets its `304`.
fn etag_of(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// Whether `If-None-Match` names `etag` (or is `*`). The comparison is the
/// weak one RFC 9110 asks of `If-None-Match`: a `W/` prefix is ignored.
fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

#[utoipa::path(
    get,
    path = "/v1/views",
    tag = "views",
    summary = "The all-time view counts of posts",
    description = "Public and CORS-open; `Cache-Control` and a strong `ETag`, so a revalidation \
        (`If-None-Match`) that finds nothing new is a 304.",
    params(ViewsQuery),
    responses(
        (status = 200, description = "Every asked id with its views (0 for an id never seen).",
         body = ViewsResponse,
         headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 304, description = "`If-None-Match` names the current `ETag`."),
    ),
)]
pub async fn views_route(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ViewsQuery>,
) -> Result<Response, ApiError> {
    let ids = parse_ids(q.ids.as_deref())?;
    let views: ViewsResponse = state.edge.views(&ids).await?;
    let body = serde_json::to_vec(&views).expect("a map of counts serializes");
    let etag = etag_of(&body);
    let status = if none_match(&headers, &etag) {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::OK
    };
    let mut response = if status == StatusCode::NOT_MODIFIED {
        status.into_response()
    } else {
        (status, Json(views)).into_response()
    };
    let h = response.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(VIEWS_CACHE_CONTROL),
    );
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).expect("hex in quotes is a header value"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_one_to_a_hundred_valid_ids() {
        assert_eq!(parse_ids(Some("p1,p2,p1")).unwrap(), ["p1", "p2"]);
        let hundred: Vec<String> = (0..MAX_VIEW_IDS).map(|i| format!("p{i}")).collect();
        assert_eq!(parse_ids(Some(&hundred.join(","))).unwrap(), hundred);
        let more = format!("{},p100", hundred.join(","));
        for (bad, code) in [
            (None, "missing_parameter"),
            (Some(""), "missing_parameter"),
            (Some(more.as_str()), "too_many_ids"),
            (Some("p1,,p2"), "invalid_id"),
            (Some("p1,"), "invalid_id"),
            (Some("p 1"), "invalid_id"),
            (Some("post/p1"), "invalid_id"),
        ] {
            match parse_ids(bad) {
                Err(ApiError::BadRequest { code: got, message }) => {
                    assert_eq!(got, code, "{bad:?}: {message}");
                    assert!(!message.is_empty());
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn if_none_match_compares_weakly_and_takes_lists() {
        let etag = etag_of(b"{}");
        assert_eq!(etag.len(), 34);
        assert_ne!(etag, etag_of(b"{ }"));
        let with = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(value).unwrap());
            none_match(&h, &etag)
        };
        assert!(with(&etag));
        assert!(with(&format!("W/{etag}")));
        assert!(with(&format!("\"x\", {etag}")));
        assert!(with("*"));
        assert!(!with("\"x\""));
        assert!(!none_match(&HeaderMap::new(), &etag));
    }
}
