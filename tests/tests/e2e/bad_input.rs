//! Hostile and broken requests against a real edge process: each gets a clear
//! 4xx with the JSON error body (or, for a bad event inside a valid batch,
//! that event's rejection), the server stays up, and no count changes.
//!
//! Requests go over raw TCP so the test controls every byte: bodies with and
//! without `Content-Length`, chunked bodies, bytes that are not UTF-8, and a
//! client that trickles its body slower than the body timeout.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use glimpse_tests::edge::Edge;
use glimpse_wire::api::{ErrorBody, StatsResponse};
use serde_json::{json, Value};

const AD: &str = "ad-battery";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn event(id: &str, ad: &str, user: &str) -> Value {
    json!({"id": id, "ad_id": ad, "user_id": user, "kind": "viewable", "ts": now_ms()})
}

/// An answer read off the wire.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Asserts a 4xx whose body is `{"error":{"code":<code>,"message":..}}`.
    fn assert_error(&self, status: u16, code: &str, what: &str) {
        assert_eq!(
            self.status,
            status,
            "{what}: {}",
            String::from_utf8_lossy(&self.body)
        );
        let err: ErrorBody = serde_json::from_value(self.json())
            .unwrap_or_else(|e| panic!("{what}: not the error body ({e})"));
        assert_eq!(err.error.code, code, "{what}: {}", err.error.message);
        assert!(!err.error.message.is_empty(), "{what}");
        assert!(
            self.headers
                .to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{what}: {}",
            self.headers
        );
    }
}

fn host_port(edge: &Edge) -> String {
    edge.base_url
        .strip_prefix("http://")
        .expect("http base url")
        .to_owned()
}

/// Sends `head` then `body` on one connection (the body from another thread,
/// `pace` apart per chunk, so the answer is read even when the server refuses
/// before the body is done) and reads the answer.
fn exchange(edge: &Edge, head: String, body: Vec<Vec<u8>>, pace: Duration) -> Answer {
    let mut stream = TcpStream::connect(host_port(edge)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(head.as_bytes()).expect("send the head");
    let mut writer = stream.try_clone().unwrap();
    let sender = thread::spawn(move || {
        for chunk in body {
            if !pace.is_zero() {
                thread::sleep(pace);
            }
            // The server may refuse and close before the body is done.
            if writer.write_all(&chunk).is_err() {
                return;
            }
        }
        let _ = writer.flush();
    });
    let answer = read_answer(&mut stream);
    let _ = stream.shutdown(Shutdown::Both);
    let _ = sender.join();
    answer
}

fn read_answer(stream: &mut TcpStream) -> Answer {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let (head_end, content_length) = loop {
        match stream.read(&mut buf) {
            Ok(0) => panic!(
                "connection closed before a full answer: {:?}",
                String::from_utf8_lossy(&raw)
            ),
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if !raw.is_empty() => panic!("reading the answer: {e}"),
            Err(e) => panic!("no answer: {e}"),
        }
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..at]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse::<usize>().expect("content-length"))
                .expect("error answers carry a Content-Length");
            break (at + 4, length);
        }
    };
    while raw.len() < head_end + content_length {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) => panic!("reading the body: {e}"),
        }
    }
    let headers = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let status = headers
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    Answer {
        status,
        headers,
        body: raw[head_end..head_end + content_length].to_vec(),
    }
}

fn post_head(edge: &Edge, content_type: &str, length: Option<usize>) -> String {
    let framing = match length {
        Some(n) => format!("Content-Length: {n}\r\n"),
        None => "Transfer-Encoding: chunked\r\n".to_owned(),
    };
    format!(
        "POST /v1/impressions HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\n{framing}Connection: close\r\n\r\n",
        host_port(edge)
    )
}

/// POSTs `body` in one piece with its `Content-Length`.
fn post(edge: &Edge, body: &[u8]) -> Answer {
    exchange(
        edge,
        post_head(edge, "text/plain;charset=UTF-8", Some(body.len())),
        vec![body.to_vec()],
        Duration::ZERO,
    )
}

/// POSTs `body` chunked, `chunk` bytes at a time, without a length.
fn post_chunked(edge: &Edge, body: &[u8], chunk: usize) -> Answer {
    let mut chunks: Vec<Vec<u8>> = body
        .chunks(chunk)
        .map(|c| {
            let mut framed = format!("{:x}\r\n", c.len()).into_bytes();
            framed.extend_from_slice(c);
            framed.extend_from_slice(b"\r\n");
            framed
        })
        .collect();
    chunks.push(b"0\r\n\r\n".to_vec());
    exchange(
        edge,
        post_head(edge, "text/plain", None),
        chunks,
        Duration::ZERO,
    )
}

fn get(edge: &Edge, target: &str) -> Answer {
    let head = format!(
        "GET {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        host_port(edge)
    );
    exchange(edge, head, Vec::new(), Duration::ZERO)
}

/// A valid envelope around `events`, as raw text.
fn batch_with(batch_id: &str, events: &str) -> Vec<u8> {
    format!(r#"{{"batch_id":"{batch_id}","events":[{events}]}}"#).into_bytes()
}

/// The counts the battery must leave alone.
fn snapshot(edge: &Edge) -> Vec<StatsResponse> {
    [AD, "acme-1", "ad"]
        .iter()
        .map(|ad| edge.get_json(&format!("/v1/ads/{ad}/stats")))
        .collect()
}

#[test]
fn bad_input_gets_a_clear_4xx_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start(
        dir.path(),
        &["--body-timeout", "1s", "--metrics-listen", "127.0.0.1:0"],
    );
    let (status, body) = edge.post_batch(
        &json!({"batch_id": "seed", "events": [event("e1", AD, "u1"), event("e2", AD, "u2")]})
            .to_string(),
    );
    assert_eq!((status, &body["accepted"]), (202, &json!(2)), "{body}");
    let before = snapshot(&edge);
    assert_eq!(before[0].impressions, 2);
    let ts = now_ms();

    // Whole bodies that are not a usable batch: 400 with a code.
    let whole: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("empty body", b"".to_vec(), 400, "invalid_json"),
        (
            "cut JSON",
            br#"{"batch_id":"b","events":[{"id":"#.to_vec(),
            400,
            "invalid_json",
        ),
        (
            "trailing garbage",
            [batch_with("b", "{}"), b"}}".to_vec()].concat(),
            400,
            "invalid_json",
        ),
        ("not an object", b"[1,2,3]".to_vec(), 400, "not_an_object"),
        ("a bare number", b"1e999999".to_vec(), 400, "invalid_json"),
        (
            "batch_id a number",
            br#"{"batch_id":7,"events":[{}]}"#.to_vec(),
            400,
            "invalid_batch_id",
        ),
        (
            "batch_id a huge number",
            br#"{"batch_id":123456789012345678901234567890,"events":[{}]}"#.to_vec(),
            400,
            "invalid_batch_id",
        ),
        (
            "events an object",
            br#"{"batch_id":"b","events":{"0":{}}}"#.to_vec(),
            400,
            "invalid_events",
        ),
        (
            "events a string",
            br#"{"batch_id":"b","events":"[]"}"#.to_vec(),
            400,
            "invalid_events",
        ),
        (
            "no events",
            br#"{"batch_id":"b","events":[]}"#.to_vec(),
            400,
            "invalid_events",
        ),
        (
            "hash tag in batch_id",
            batch_with("{b}", "{}"),
            400,
            "invalid_batch_id",
        ),
        (
            "space in batch_id",
            batch_with("b 1", "{}"),
            400,
            "invalid_batch_id",
        ),
        (
            "slash in batch_id",
            batch_with("single/x", "{}"),
            400,
            "invalid_batch_id",
        ),
        (
            "invalid UTF-8",
            b"{\"batch_id\":\"b\xc3\x28\",\"events\":[{}]}".to_vec(),
            400,
            "invalid_json",
        ),
        (
            "UTF-16",
            "{\"batch_id\":\"b\"}"
                .encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect(),
            400,
            "invalid_json",
        ),
        ("NUL bytes", b"\0\0\0\0".to_vec(), 400, "invalid_json"),
        (
            "deep nesting",
            "[".repeat(60_000).into_bytes(),
            400,
            "not_an_object",
        ),
        (
            "deep nesting, closed",
            format!("{}{}", "[".repeat(30_000), "]".repeat(30_000)).into_bytes(),
            400,
            "not_an_object",
        ),
        (
            "deep nesting in an unknown field, closed",
            format!(
                r#"{{"x":{}{},"batch_id":"{{b}}","events":[{{}}]}}"#,
                "[".repeat(20_000),
                "]".repeat(20_000)
            )
            .into_bytes(),
            400,
            "invalid_batch_id",
        ),
        (
            "deep nesting in an unknown field",
            [
                br#"{"batch_id":"b","x":"#.to_vec(),
                "{\"a\":".repeat(10_000).into_bytes(),
            ]
            .concat(),
            400,
            "invalid_json",
        ),
        (
            "501 events",
            batch_with("b", &vec![event("e", AD, "u").to_string(); 501].join(",")),
            400,
            "too_many_events",
        ),
        (
            "51 ad ids",
            batch_with(
                "b",
                &(0..51)
                    .map(|i| event(&format!("e{i}"), &format!("{AD}-{i}"), "u").to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            400,
            "too_many_ads",
        ),
        (
            "100k brackets",
            "[".repeat(100_000).into_bytes(),
            413,
            "payload_too_large",
        ),
        ("10 MB", vec![b' '; 10 << 20], 413, "payload_too_large"),
    ];
    for (what, body, status, code) in &whole {
        post(&edge, body).assert_error(*status, code, what);
    }
    // The same bodies chunked, without a length: the same answers.
    for (what, body, status, code) in &whole {
        post_chunked(&edge, body, 16 * 1024).assert_error(*status, code, what);
    }
    // A 10 MB chunked body whose head is a valid batch: cut at 64 KiB.
    let mut big = batch_with("big", &event("e1", AD, "u9").to_string());
    big.truncate(big.len() - 1);
    big.extend_from_slice(br#","pad":""#);
    big.resize(10 << 20, b'x');
    big.extend_from_slice(b"\"}");
    post_chunked(&edge, &big, 64 * 1024).assert_error(
        413,
        "payload_too_large",
        "10 MB chunked batch",
    );
    post(&edge, &big).assert_error(413, "payload_too_large", "10 MB batch");

    // A Content-Length that lies upward: the body never completes.
    let lying = exchange(
        &edge,
        post_head(&edge, "text/plain", Some(1000)),
        vec![batch_with("b", "{}")],
        Duration::ZERO,
    );
    lying.assert_error(408, "body_timeout", "short body");

    // A client trickling its body: cut at the 1 s body timeout.
    let body = batch_with("slow", &event("e1", AD, "u-slow").to_string());
    let started = Instant::now();
    let slow = exchange(
        &edge,
        post_head(&edge, "text/plain", Some(body.len())),
        body.iter().map(|b| vec![*b]).collect(),
        Duration::from_millis(100),
    );
    slow.assert_error(408, "body_timeout", "trickled body");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    // Wrong content type.
    exchange(
        &edge,
        post_head(&edge, "application/x-www-form-urlencoded", Some(2)),
        vec![b"{}".to_vec()],
        Duration::ZERO,
    )
    .assert_error(415, "unsupported_media_type", "form content type");

    // Bad events inside a valid batch: the batch is taken (202, as the
    // contract says), each event is refused with its reason, none counts.
    let bad_events = [
        json!({"id": "e", "ad_id": AD, "user_id": "u", "kind": "viewable", "ts": "now"}),
        json!({"id": "e", "ad_id": 42, "user_id": "u", "kind": "viewable", "ts": ts}),
        json!({"id": "e", "ad_id": [AD], "user_id": "u", "kind": "viewable", "ts": ts}),
        json!({"id": "e", "ad_id": AD, "user_id": "u", "kind": 1, "ts": ts}),
        json!({"id": "e", "ad_id": AD, "user_id": "u", "kind": "click", "ts": ts}),
        json!({"id": "e", "ad_id": AD, "user_id": "u", "kind": "viewable", "ts": ts as f64 + 0.5}),
        json!({"id": "e", "ad_id": AD, "user_id": "u", "kind": "viewable", "ts": u64::MAX}),
        json!({"id": "e", "ad_id": AD, "user_id": "u", "kind": "viewable", "ts": i64::MIN}),
        json!({"id": "e", "ad_id": AD, "user_id": "u", "kind": "viewable", "ts": 0}),
        json!({"id": "e", "ad_id": AD, "user_id": "u", "kind": "viewable", "ts": -1}),
        json!({"id": "e", "ad_id": AD, "user_id": "u", "kind": "viewable", "ts": ts - 49 * 3_600_000}),
        json!({"id": "e", "ad_id": AD, "user_id": "u", "kind": "viewable", "ts": ts + 3_600_000}),
        json!({"id": "e", "ad_id": "{ad-battery}", "user_id": "u", "kind": "viewable", "ts": ts}),
        json!({"id": "e", "ad_id": "ad battery", "user_id": "u", "kind": "viewable", "ts": ts}),
        json!({"id": "e", "ad_id": "ad-{x}-battery", "user_id": "u", "kind": "viewable", "ts": ts}),
        json!({"id": "e", "ad_id": AD, "user_id": "u {1}", "kind": "viewable", "ts": ts}),
        json!({"id": "e", "ad_id": AD, "user_id": "u\r\nx", "kind": "viewable", "ts": ts}),
        json!({"id": "e", "ad_id": "a".repeat(129), "user_id": "u", "kind": "viewable", "ts": ts}),
        json!({"id": "e", "ad_id": "", "user_id": "u", "kind": "viewable", "ts": ts}),
        json!({"id": "e", "ad_id": AD, "kind": "viewable", "ts": ts}),
        json!(null),
        json!("event"),
        json!([[[[1]]]]),
    ];
    let mut raw_events: Vec<String> = bad_events.iter().map(Value::to_string).collect();
    // A repeated field, to smuggle a second ad id past the check.
    raw_events.push(format!(
        r#"{{"id":"e","ad_id":"{AD}","user_id":"u","kind":"viewable","ts":{ts},"ad_id":"acme-1"}}"#
    ));
    // Nesting far deeper than any parser recursion limit, well formed.
    raw_events.push(format!("{}{}", "[".repeat(20_000), "]".repeat(20_000)));
    let answer = post(&edge, &batch_with("bad-events", &raw_events.join(",")));
    assert_eq!(
        answer.status,
        202,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let r = answer.json();
    assert_eq!(r["accepted"], 0, "{r}");
    let rejected = r["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), raw_events.len(), "{r}");
    for (i, rejection) in rejected.iter().enumerate() {
        assert_eq!(rejection["index"], i, "{r}");
        assert!(!rejection["error"].as_str().unwrap().is_empty());
    }

    // Advertiser routes with hostile parameters: 400, never a store lookup
    // with a strange key.
    let stats_cases = [
        ("/v1/ads/%7Bad-battery%7D/stats", "invalid_ad_id"),
        ("/v1/ads/ad%20battery/stats", "invalid_ad_id"),
        ("/v1/ads/ad%00/stats", "invalid_ad_id"),
        ("/v1/ads/%FF%FE/stats", "invalid_path"),
        ("/v1/ads/ad-battery/stats?from=1969-12-31", "invalid_date"),
        ("/v1/ads/ad-battery/stats?from=0000-01-01", "invalid_date"),
        ("/v1/ads/ad-battery/stats?to=99999-01-01", "invalid_date"),
        ("/v1/ads/ad-battery/stats?from=2025-02-30", "invalid_date"),
        ("/v1/ads/ad-battery/stats?from=2025-13-01", "invalid_date"),
        ("/v1/ads/ad-battery/stats?from=yesterday", "invalid_date"),
        (
            "/v1/ads/ad-battery/stats?from=2025-01-02&to=2025-01-01",
            "invalid_range",
        ),
        (
            "/v1/ads/ad-battery/stats?from=1970-01-01&to=2025-01-01",
            "invalid_range",
        ),
        ("/v1/ads/ad-battery/unique-visitors", "missing_parameter"),
        (
            "/v1/ads/ad-battery/unique-visitors?date=2025-1-1",
            "invalid_date",
        ),
        ("/v1/ads?from=-1", "invalid_date"),
        (
            "/v1/impression?ad_id=%7Bx%7D&user_id=u",
            "invalid_parameter",
        ),
        (
            "/v1/impression?ad_id=ad-battery&user_id=u%20u",
            "invalid_parameter",
        ),
        ("/v1/impression?ad_id=ad-battery", "missing_parameter"),
    ];
    for (target, code) in stats_cases {
        get(&edge, target).assert_error(400, code, target);
    }
    // Query strings that are not UTF-8 (decoded lossily, then refused) or
    // that repeat a parameter.
    for (target, code) in [
        ("/v1/ads/ad-battery/stats?from=%FF", "invalid_date"),
        ("/v1/ads?to=%C3%28", "invalid_date"),
        ("/v1/impression?ad_id=%FF&user_id=u", "invalid_parameter"),
        (
            "/v1/ads/ad-battery/stats?from=2025-01-01&from=2025-01-02",
            "invalid_query",
        ),
        ("/v1/impression?ad_id=a&ad_id=b&user_id=u", "invalid_query"),
    ] {
        get(&edge, target).assert_error(400, code, target);
    }

    // Still up, still the same counts, and the metrics saw no accepted event
    // but the two seeds.
    let (status, _) = edge.get_raw("/healthz").unwrap();
    assert_eq!(status, 200);
    assert_eq!(snapshot(&edge), before);
    let metrics_url = edge.metrics_url.clone().expect("metrics listener");
    let text = ureq::get(&format!("{metrics_url}/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(text.contains("glimpse_events_accepted_total 2\n"), "{text}");
    assert!(
        text.contains("glimpse_batches_rejected_total{reason=\"payload_too_large\"}"),
        "{text}"
    );

    // Unknown fields are ignored (the contract allows them), and they
    // cannot add anything: one event counts one.
    let extra = json!({
        "batch_id": "extra",
        "weight": 1000,
        "events": [{"id": "e1", "ad_id": "ad-extra", "user_id": "u", "kind": "viewable",
                    "ts": now_ms(), "count": 1_000_000, "impressions": 99, "unique": ["a", "b"]}],
    });
    let (status, body) = edge.post_batch(&extra.to_string());
    assert_eq!((status, &body["accepted"]), (202, &json!(1)), "{body}");
    let s: StatsResponse = edge.get_json("/v1/ads/ad-extra/stats");
    assert_eq!(
        (s.impressions, s.measurable, s.unique_visitors),
        (1, 0, Some(1))
    );
    assert_eq!(snapshot(&edge), before);
}
