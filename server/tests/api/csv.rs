//! CSV answers (`format=csv`, `Accept: text/csv`) of the stats and listing
//! routes: RFC 4180 tables holding the same numbers as the JSON answers.

use std::collections::BTreeMap;

use axum::http::{header, HeaderMap, StatusCode};
use serde_json::{json, Value};

use crate::support::{assert_error, batch, event, get_text, TestEdge, TODAY};

/// A CSV answer's rows as maps from column to field, after checking its
/// type and line ends. (The ids of these tests hold nothing to quote.)
fn parse(headers: &HeaderMap, text: &str) -> Vec<BTreeMap<String, String>> {
    assert_eq!(headers[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    assert_eq!(headers[header::VARY], "accept");
    assert!(text.ends_with("\r\n"), "{text:?}");
    let mut lines = text.trim_end_matches("\r\n").split("\r\n");
    let columns: Vec<&str> = lines.next().unwrap().split(',').collect();
    lines
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            assert_eq!(fields.len(), columns.len(), "{line}");
            columns
                .iter()
                .zip(fields)
                .map(|(c, f)| (c.to_string(), f.to_owned()))
                .collect()
        })
        .collect()
}

fn number(row: &BTreeMap<String, String>, column: &str) -> Value {
    let field = &row[column];
    if field.is_empty() {
        return Value::Null;
    }
    let n: f64 = field
        .parse()
        .unwrap_or_else(|_| panic!("{column}: {field}"));
    json!(n)
}

fn as_f64(v: &Value) -> Value {
    v.as_f64().map_or(Value::Null, |n| json!(n))
}

async fn seed(t: &TestEdge) {
    let mut events = Vec::new();
    for i in 0..6 {
        let user = format!("u{i}");
        events.push(event(&format!("m{i}"), "ad-1", &user, "measurable"));
        if i % 2 == 0 {
            events.push(event(&format!("v{i}"), "ad-1", &user, "viewable"));
        }
    }
    events.push(event("s", "ad-1", "u0", "video_start"));
    events.push(event("m", "ad-2", "u9", "measurable"));
    let mut post = event("p", "x", "u1", "viewable");
    post.as_object_mut().unwrap().remove("ad_id");
    post["post_id"] = json!("post-1");
    events.push(post);
    t.ingest(&batch("b1", events)).await;
}

#[tokio::test]
async fn ad_stats_in_csv_hold_the_numbers_of_the_json_answer() {
    let t = TestEdge::new();
    seed(&t).await;
    let uri = format!("/v1/ads/ad-1/stats?from={TODAY}&to={TODAY}");
    let (_, json_answer) = t.get(&uri).await;
    for (uri, accept) in [
        (format!("{uri}&format=csv"), None),
        (uri.clone(), Some("text/csv")),
    ] {
        let (status, headers, text) = get_text(&t, &uri, accept).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let rows = parse(&headers, &text);
        let days = json_answer["days"].as_array().unwrap();
        assert_eq!(rows.len(), days.len());
        for (row, day) in rows.iter().zip(days) {
            assert_eq!(row["ad_id"], "ad-1");
            assert_eq!(row["date"], day["date"].as_str().unwrap());
            for column in [
                "impressions",
                "measurable",
                "unique_visitors",
                "invalid",
                "verified",
            ] {
                assert_eq!(number(row, column), as_f64(&day[column]), "{column}");
            }
            assert_eq!(
                number(row, "viewability_rate"),
                as_f64(&json_answer["viewability_rate"])
            );
            assert_eq!(number(row, "video_starts"), json!(1.0));
            assert_eq!(number(row, "video_completes"), json!(0.0));
        }
        assert_eq!(rows[0]["impressions"], "3");
        assert_eq!(rows[0]["viewability_rate"], "0.5");
    }
    // JSON stays the default, and says it varies by `Accept` too.
    let (status, headers, text) = get_text(&t, &uri, Some("application/json, text/csv")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::VARY], "accept");
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), json_answer);
}

#[tokio::test]
async fn the_ad_list_posts_and_unique_visitors_answer_csv() {
    let t = TestEdge::new();
    seed(&t).await;
    // A page of one ad: the next page's cursor is a header.
    let uri = format!("/v1/ads?from={TODAY}&to={TODAY}&limit=1");
    let (_, page) = t.get(&uri).await;
    let (status, headers, text) = get_text(&t, &format!("{uri}&format=csv"), None).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let rows = parse(&headers, &text);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["ad_id"], page["ads"][0]["ad_id"].as_str().unwrap());
    assert_eq!(number(&rows[0], "measurable"), json!(6.0));
    assert_eq!(
        headers["next-cursor"],
        page["next_cursor"].as_str().unwrap()
    );
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, headers, text) = get_text(&t, &format!("{uri}&format=csv&cursor={cursor}"), None).await;
    let rows = parse(&headers, &text);
    assert_eq!(rows[0]["ad_id"], "ad-2");
    assert!(!headers.contains_key("next-cursor"), "the last page");

    let (status, headers, text) = get_text(
        &t,
        &format!("/v1/posts/post-1/stats?from={TODAY}&to={TODAY}&format=csv"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let rows = parse(&headers, &text);
    assert_eq!(
        (rows[0]["post_id"].as_str(), rows[0]["impressions"].as_str()),
        ("post-1", "1")
    );
    assert!(
        !rows[0].contains_key("video_starts"),
        "posts have no video columns"
    );

    let uri = format!("/v1/ads/ad-1/unique-visitors?date={TODAY}");
    let (_, visitors) = t.get(&uri).await;
    let (status, headers, text) = get_text(&t, &uri, Some("text/csv")).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let rows = parse(&headers, &text);
    // The visitors of the viewable impressions: u0, u2, u4.
    assert_eq!(number(&rows[0], "unique_visitors"), json!(3.0));
    assert_eq!(
        number(&rows[0], "unique_visitors"),
        as_f64(&visitors["unique_visitors"])
    );
    assert_eq!(rows[0]["source"], "embedded");
}

#[tokio::test]
async fn an_unknown_format_is_refused_in_json() {
    let t = TestEdge::new();
    let (status, body) = t
        .get(&format!("/v1/ads/ad-1/stats?from={TODAY}&format=xml"))
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_format");
    assert!(body["error"]["message"].as_str().unwrap().contains("`xml`"));
}
