//! A whole edge (`glimpse_server::run`) on a real data directory, stopped
//! without its shutdown flush (its runtime dropped mid-run), then run again:
//! the batches it acknowledged come back from the write-ahead log.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use glimpse_server::store::embedded::EmbeddedStore;
use glimpse_server::store::{Grain, Store};
use glimpse_server::Config;
use glimpse_wire::api::StatsResponse;
use glimpse_wire::{Day, DayRange};
use serde_json::{json, Value};

/// One request on a fresh connection; status and JSON body.
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let (_, json) = answer.split_once("\r\n\r\n").unwrap();
    (status, serde_json::from_str(json).unwrap_or(Value::Null))
}

fn config(dir: &std::path::Path) -> Config {
    Config::try_parse_from([
        "glimpse-server".as_ref(),
        "--data-dir".as_ref(),
        dir.as_os_str(),
        // Only a flush could sync: none happens in the first run.
        "--sync-interval".as_ref(),
        "1h".as_ref(),
        "--www-dir".as_ref(),
        dir.join("no-www").as_os_str(),
        "--sdk-dir".as_ref(),
        dir.join("no-sdk").as_os_str(),
    ])
    .unwrap()
}

/// Starts `run` on its own runtime; answers the runtime, the address and
/// the sender that stops it gracefully.
fn start(
    dir: &std::path::Path,
) -> (
    tokio::runtime::Runtime,
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = rt.spawn(glimpse_server::run(config(dir), listener, async {
        let _ = stopped.await;
    }));
    // `run` replays before it serves: poll until it answers.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(&addr).is_err() || http(&addr, "GET", "/healthz", "").0 != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the edge did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (rt, addr, stop, run)
}

fn batch(id: &str, users: std::ops::Range<u32>, ts: i64) -> String {
    let events: Vec<Value> = users
        .map(|u| json!({"id": format!("e{u}"), "ad_id": "ad-replay", "user_id": format!("u{u}"), "kind": "viewable", "ts": ts}))
        .collect();
    json!({"batch_id": id, "events": events}).to_string()
}

#[test]
fn a_restarted_run_replays_what_it_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let (rt, addr, _stop, _run) = start(dir.path());
    for (i, users) in [0..10, 10..30, 5..15].into_iter().enumerate() {
        let (status, body) = http(
            &addr,
            "POST",
            "/v1/impressions",
            &batch(&format!("b{i}"), users, ts),
        );
        assert_eq!(status, 202, "{body}");
    }
    let (status, body) = http(
        &addr,
        "GET",
        "/v1/impression?ad_id=ad-replay&user_id=single",
        "",
    );
    assert_eq!(status, 200, "{body}");
    // The end of the process without its flush: every task is dropped.
    rt.shutdown_timeout(Duration::from_secs(10));
    let segments = std::fs::read_dir(dir.path().join("wal")).unwrap().count();
    assert_eq!(segments, 1, "one generation's segment");

    let (rt, addr, stop, run) = start(dir.path());
    let (status, body) = http(&addr, "GET", "/v1/ads/ad-replay/stats", "");
    assert_eq!(status, 200, "{body}");
    let stats: StatsResponse = serde_json::from_value(body).unwrap();
    assert_eq!((stats.impressions, stats.measurable), (41, 1));
    // A client retrying a replayed batch is told it was counted.
    let (status, body) = http(&addr, "POST", "/v1/impressions", &batch("b1", 10..30, ts));
    assert_eq!(
        (status, body["duplicates"].as_u64()),
        (202, Some(20)),
        "{body}"
    );
    stop.send(()).unwrap();
    rt.block_on(run).unwrap().unwrap();
    drop(rt);
    // The graceful stop synced everything, then emptied the log.
    assert_eq!(
        std::fs::read_dir(dir.path().join("wal")).unwrap().count(),
        0
    );
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let day = Day::from_epoch_ms(ts).unwrap();
    let days = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(store.read_days("ad-replay", DayRange::single(day), Grain::Days))
        .unwrap()
        .days;
    let counts = &days[&day];
    assert_eq!(
        (counts.counters.impressions, counts.counters.measurable),
        (41, 1)
    );
    let mut reference = glimpse_hll::Sketch::new();
    for u in (0..30)
        .map(|u| format!("u{u}"))
        .chain(["single".to_owned()])
    {
        reference.insert(u.as_bytes());
    }
    assert_eq!(counts.visitors, reference);
}

#[test]
fn verified_impressions_come_back_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let events: Vec<Value> = (0..10)
        .map(|u| json!({"id": format!("e{u}"), "ad_id": "ad-verified", "user_id": format!("u{u}"), "kind": "viewable", "ts": ts, "verified": u < 6}))
        .collect();
    let body = json!({"batch_id": "v1", "events": events}).to_string();
    let (rt, addr, _stop, _run) = start(dir.path());
    let (status, answer) = http(&addr, "POST", "/v1/impressions", &body);
    assert_eq!(status, 202, "{answer}");
    // The end of the process without its flush.
    rt.shutdown_timeout(Duration::from_secs(10));

    let (rt, addr, stop, run) = start(dir.path());
    let (status, answer) = http(&addr, "GET", "/v1/ads/ad-verified/stats", "");
    assert_eq!(status, 200, "{answer}");
    let stats: StatsResponse = serde_json::from_value(answer).unwrap();
    assert_eq!((stats.impressions, stats.verified), (10, 6));
    stop.send(()).unwrap();
    rt.block_on(run).unwrap().unwrap();
    drop(rt);
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let day = Day::from_epoch_ms(ts).unwrap();
    let days = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(store.read_days("ad-verified", DayRange::single(day), Grain::Days))
        .unwrap()
        .days;
    assert_eq!(days[&day].counters.verified, 6);
}
