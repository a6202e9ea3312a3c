//! The edge's HTTP promises against a real `glimpse-server` process, each
//! tried the way an attacker would: signed ads on every ingest route, the
//! loopback-only rule behind a proxy, slow request heads, what an
//! unauthenticated answer may show, and paging through the ads of a range.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use glimpse_tests::edge::{redis_flags, workspace_binary, Edge};
use glimpse_tests::redis::RedisServer;
use glimpse_wire::api::{ErrorBody, StatsResponse};
use serde_json::json;

/// A signing secret of the length the edge requires (32 bytes at least).
const SECRET: &str = "0123456789abcdef0123456789abcdef-current";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A token for `ad_id`, issued by the real binary's `sign-ad`.
fn sign_ad(secret: &str, ad_id: &str) -> String {
    let out = Command::new(workspace_binary("glimpse-server"))
        .args([
            "sign-ad", "--secret", secret, "--ad-id", ad_id, "--ttl", "1h",
        ])
        .env_remove("GLIMPSE_AD_SIGNING_SECRET")
        .output()
        .expect("run glimpse-server sign-ad");
    assert!(
        out.status.success(),
        "sign-ad failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The `code` of a JSON error answer, asserting its shape and status.
fn error_code(status: u16, body: &str, want_status: u16, what: &str) -> String {
    assert_eq!(status, want_status, "{what}: {body}");
    let err: ErrorBody = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{what}: not an error body ({e}): {body}"));
    assert!(!err.error.message.is_empty(), "{what}: {body}");
    err.error.code
}

fn stats(edge: &Edge, ad: &str) -> StatsResponse {
    edge.get_json(&format!("/v1/ads/{ad}/stats"))
}

#[test]
fn single_impression_requires_a_signed_ad_like_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start(dir.path(), &["--ad-signing-secret", SECRET]);
    let good = sign_ad(SECRET, "ad-signed");
    let other_ad = sign_ad(SECRET, "ad-other");
    let other_secret = sign_ad("another-secret-of-32-bytes-or-more!!", "ad-signed");

    // The same refusal by POST: the event is rejected for its token.
    let (status, body) = edge.post_batch(
        &json!({"batch_id": "b-unsigned", "events": [
            {"id": "e1", "ad_id": "ad-made-up", "user_id": "u1", "kind": "viewable", "ts": now_ms()}
        ]})
        .to_string(),
    );
    assert_eq!(
        (status, body["accepted"].clone()),
        (202, json!(0)),
        "{body}"
    );

    for (what, query) in [
        ("no token", "ad_id=ad-made-up&user_id=u1".to_owned()),
        (
            "another ad's token",
            format!("ad_id=ad-signed&user_id=u1&token={other_ad}"),
        ),
        (
            "another secret's token",
            format!("ad_id=ad-signed&user_id=u1&token={other_secret}"),
        ),
        (
            "a forged token",
            format!(
                "ad_id=ad-signed&user_id=u1&token=9999999999.{}",
                "ab".repeat(32)
            ),
        ),
        (
            "a malformed token",
            "ad_id=ad-signed&user_id=u1&token=junk".to_owned(),
        ),
    ] {
        let (status, body) = edge.get_raw(&format!("/v1/impression?{query}")).unwrap();
        assert_eq!(
            error_code(status, &body, 400, what),
            "invalid_token",
            "{what}"
        );
    }
    for ad in ["ad-made-up", "ad-signed"] {
        let s = stats(&edge, ad);
        assert_eq!((s.impressions, s.measurable, s.invalid), (0, 0, 0), "{ad}");
    }

    let (status, body) = edge
        .get_raw(&format!(
            "/v1/impression?ad_id=ad-signed&user_id=u1&token={good}"
        ))
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let s = stats(&edge, "ad-signed");
    assert_eq!((s.impressions, s.measurable), (1, 1));
    let metrics = edge.get_raw("/metrics").unwrap().1;
    assert!(
        metrics.contains("glimpse_events_rejected_total{reason=\"invalid_token\"} 6"),
        "one invalid_token rejection per refused event: {metrics}"
    );
}

#[test]
fn loopback_only_judges_the_client_behind_a_trusted_proxy() {
    let dir = tempfile::tempdir().unwrap();
    // No keys: stats for loopback clients only. The test stands in for a
    // same-host proxy: its peer address is 127.0.0.1, a trusted proxy.
    let edge = Edge::start(dir.path(), &["--trusted-proxies", "127.0.0.1/32"]);
    let (status, body) = edge
        .get_raw("/v1/impression?ad_id=ad-private&user_id=u1")
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let routes = [
        "/v1/ads",
        "/v1/ads/ad-private/stats",
        "/v1/ads/ad-private/unique-visitors?date=2026-01-01",
        "/metrics",
    ];
    for route in routes {
        let (status, body) = edge
            .get_with_headers(route, &[("X-Forwarded-For", "203.0.113.9")])
            .unwrap();
        let code = error_code(status, &body, 403, route);
        assert_eq!(code, "forbidden", "{route}");
        assert!(!body.contains("ad-private"), "{route}: {body}");
        // A client behind the proxy that claims loopback is still the
        // address the proxy saw: the rightmost untrusted hop.
        let (status, body) = edge
            .get_with_headers(route, &[("X-Forwarded-For", "127.0.0.1, 203.0.113.9")])
            .unwrap();
        error_code(status, &body, 403, route);
        // The proxy's own requests, and a client it forwards from loopback,
        // are loopback clients.
        for headers in [&[][..], &[("X-Forwarded-For", "127.0.0.1")][..]] {
            let (status, body) = edge.get_with_headers(route, headers).unwrap();
            assert_eq!(status, 200, "{route} {headers:?}: {body}");
        }
    }
}

/// Connections that send a request line, then one header byte a second,
/// never finishing the head; answers when each was closed by the edge,
/// counted from its first byte, or `None` if it was still open at `give_up`.
fn trickle_headers(edge: &Edge, connections: usize, give_up: Duration) -> Vec<Option<Duration>> {
    let addr = edge.base_url.trim_start_matches("http://").to_owned();
    let threads: Vec<_> = (0..connections)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(&addr).expect("connect to the edge");
                // Reading is the pacing: each read waits up to a second for
                // the edge to close the connection, then the next byte goes.
                stream
                    .set_read_timeout(Some(Duration::from_secs(1)))
                    .unwrap();
                let started = Instant::now();
                stream
                    .write_all(b"GET /healthz HTTP/1.1\r\nHost: edge\r\nX-Slow: ")
                    .unwrap();
                let mut buf = [0u8; 1024];
                while started.elapsed() < give_up {
                    match stream.read(&mut buf) {
                        // The edge closed it (perhaps after a last answer).
                        Ok(0) => return Some(started.elapsed()),
                        Ok(_) => continue,
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                        {
                            if stream.write_all(b"a").is_err() {
                                return Some(started.elapsed());
                            }
                        }
                        Err(_) => return Some(started.elapsed()),
                    }
                }
                None
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn slow_request_heads_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start(dir.path(), &["--header-read-timeout", "2s"]);
    // Well past the bound; the connections of the edge before this rule
    // stayed open for as long as the client liked.
    let give_up = Duration::from_secs(15);
    let closed = trickle_headers(&edge, 5, give_up);
    for (i, at) in closed.iter().enumerate() {
        let at = at.unwrap_or_else(|| panic!("connection {i} still open after {give_up:?}"));
        // Not refused at once: it was cut off while trickling.
        assert!(
            at >= Duration::from_secs(1),
            "connection {i} closed after {at:?}, before it had trickled anything"
        );
    }
    // The edge still serves, and a request that arrives in time is answered.
    let (status, _) = edge.get_raw("/healthz").unwrap();
    assert_eq!(status, 200);
}

/// Cleartext HTTP/2 (prior knowledge) is not spoken: its streams' headers
/// would have no time bound. An h2c client that sends the preface and then
/// nothing is answered in HTTP/1.1 and closed, not held open.
#[test]
fn cleartext_http2_is_refused_not_held_open() {
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start(dir.path(), &["--header-read-timeout", "2s"]);
    let addr = edge.base_url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).expect("connect to the edge");
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    // The connection preface, then an empty SETTINGS frame.
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .unwrap();
    let mut answer = Vec::new();
    let read = stream.read_to_end(&mut answer);
    assert!(
        read.is_ok(),
        "the connection was still open after 15 s ({read:?}); it had answered {:?}",
        String::from_utf8_lossy(&answer)
    );
    // An HTTP/2 server's first bytes are its own SETTINGS frame.
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 "),
        "answered {:?}",
        String::from_utf8_lossy(&answer)
    );
    let (status, _) = edge.get_raw("/healthz").unwrap();
    assert_eq!(status, 200);
}

/// Asserts that an answer anyone may get shows nothing of the edge's
/// insides: no path of its data directory, no OS or store error text.
fn assert_no_internals(body: &str, data_dir: &std::path::Path, what: &str) {
    let dir = data_dir.display().to_string();
    for leak in [
        dir.as_str(),
        "/wal",
        ".wal",
        "os error",
        "No such file",
        "refused",
        "redis://",
    ] {
        assert!(!body.contains(leak), "{what} shows `{leak}`: {body}");
    }
}

#[test]
fn unauthenticated_answers_show_no_internals() {
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start(dir.path(), &[] as &[&str]);
    // The log's directory vanishes: the next segment cannot be created, and
    // the error the edge logs names its path.
    std::fs::remove_dir_all(dir.path().join("wal")).unwrap();
    let batch = |id: &str| {
        json!({"batch_id": id, "events": [
            {"id": "e1", "ad_id": "ad-1", "user_id": "u1", "kind": "viewable", "ts": now_ms()}
        ]})
        .to_string()
    };
    for id in ["b-1", "b-2"] {
        let (status, body) = edge.post_batch(&batch(id));
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["code"], "log_unavailable", "{body}");
        assert_no_internals(&body.to_string(), dir.path(), "the 503 log_unavailable");
    }
    let (status, body) = edge
        .get_raw("/v1/impression?ad_id=ad-1&user_id=u1")
        .unwrap();
    assert_eq!(
        error_code(status, &body, 503, "single impression"),
        "log_unavailable"
    );
    assert_no_internals(&body, dir.path(), "the single impression's 503");
    let (status, body) = edge.get_raw("/readyz").unwrap();
    assert_eq!(status, 503, "{body}");
    assert_no_internals(&body, dir.path(), "/readyz");
}

#[test]
fn a_store_outage_leaves_the_edge_ready_and_shows_in_its_health() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut flags = redis_flags(&redis.url());
    flags.extend(["--sync-interval", "200ms"].map(String::from));
    let edge = Edge::start(dir.path(), &flags);
    let (status, body) = edge.get_raw("/readyz").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"store_status\":\"ok\""), "{body}");
    assert_eq!(edge.gauge("glimpse_store_up"), 1);

    redis.kill();
    let mut body = String::new();
    edge.wait_until(
        Duration::from_secs(30),
        "/readyz reports the store down",
        || {
            let (status, text) = edge.get_raw("/readyz").unwrap();
            // Ready all along: the edge still takes batches.
            assert_eq!(status, 200, "{text}");
            body = text;
            body.contains("\"store_status\":\"unreachable\"")
        },
    );
    assert!(body.contains("\"status\":\"ready\""), "{body}");
    assert_no_internals(&body, dir.path(), "/readyz");
    assert!(
        !body.contains(&redis.port().to_string()),
        "/readyz shows Redis's port: {body}"
    );
    assert_eq!(edge.gauge("glimpse_store_up"), 0);
    let (status, answer) = edge.post_batch(
        &json!({"batch_id": "b-outage", "events": [
            {"id": "e1", "ad_id": "ad-outage", "user_id": "u1", "kind": "viewable", "ts": now_ms()}
        ]})
        .to_string(),
    );
    assert_eq!(
        (status, answer["accepted"].clone()),
        (202, json!(1)),
        "{answer}"
    );

    redis.restart();
    edge.wait_until(
        Duration::from_secs(30),
        "/readyz reports the store back",
        || {
            edge.get_raw("/readyz")
                .unwrap()
                .1
                .contains("\"store_status\":\"ok\"")
        },
    );
    assert_eq!(edge.gauge("glimpse_store_up"), 1);
}

/// The secret a rotation replaces; it still verifies while listed.
const OLD_SECRET: &str = "fedcba9876543210fedcba9876543210-previous";

/// A single impression of `ad` with `token`: its status.
fn single_signed(edge: &Edge, ad: &str, token: &str) -> u16 {
    let path = format!("/v1/impression?ad_id={ad}&user_id=u1&token={token}");
    edge.get_raw(&path).unwrap().0
}

#[test]
fn signing_secrets_rotate_the_first_signs_all_verify() {
    for flags in [
        vec![
            "--ad-signing-secret".to_owned(),
            format!("{SECRET},{OLD_SECRET}"),
        ],
        vec![
            "--ad-signing-secret".to_owned(),
            SECRET.to_owned(),
            "--ad-signing-secret".to_owned(),
            OLD_SECRET.to_owned(),
        ],
    ] {
        let dir = tempfile::tempdir().unwrap();
        let edge = Edge::start(dir.path(), &flags);
        // sign-ad given the same list signs with the first secret. A
        // token's expiry is in whole seconds and two runs of sign-ad can
        // straddle a second, so the tokens compare once their expiries match.
        let expiry = |token: &str| token.split_once('.').map(|(e, _)| e.to_owned());
        let (listed, first) = (0..5)
            .map(|_| {
                (
                    sign_ad(&format!("{SECRET},{OLD_SECRET}"), "ad-rot"),
                    sign_ad(SECRET, "ad-rot"),
                )
            })
            .find(|(listed, first)| expiry(listed) == expiry(first))
            .expect("in five tries, no pair of sign-ad runs signed in the same second");
        assert_eq!(listed, first, "{flags:?}");
        assert_eq!(single_signed(&edge, "ad-rot", &listed), 200, "{flags:?}");
        assert_eq!(
            single_signed(&edge, "ad-rot", &sign_ad(OLD_SECRET, "ad-rot")),
            200
        );
        let unknown = sign_ad("a-third-secret-that-this-edge-never-had", "ad-rot");
        assert_eq!(single_signed(&edge, "ad-rot", &unknown), 400, "{flags:?}");
        let s = stats(&edge, "ad-rot");
        assert_eq!((s.impressions, s.measurable), (2, 2), "{flags:?}");
    }
}

#[test]
fn short_signing_secrets_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let short = "only-31-bytes-long-secret-12345";
    assert_eq!(short.len(), 31);
    for (args, flag) in [
        (
            vec![
                "--listen".to_owned(),
                "127.0.0.1:0".to_owned(),
                "--data-dir".to_owned(),
                dir.path().display().to_string(),
                "--ad-signing-secret".to_owned(),
                format!("{SECRET},{short}"),
            ],
            "--ad-signing-secret",
        ),
        (
            ["sign-ad", "--secret", short, "--ad-id", "ad-1"]
                .map(String::from)
                .to_vec(),
            "--secret",
        ),
    ] {
        let out = Command::new(workspace_binary("glimpse-server"))
            .args(&args)
            .env_remove("GLIMPSE_AD_SIGNING_SECRET")
            .output()
            .expect("run glimpse-server");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag}: started with a short secret");
        assert!(
            out.stdout.is_empty(),
            "{flag}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            stderr.contains(flag) && stderr.contains("at least 32"),
            "{flag}: {stderr}"
        );
        assert!(
            !stderr.contains(short),
            "{flag}: the error shows the secret: {stderr}"
        );
    }
}
