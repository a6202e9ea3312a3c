//! The write-ahead log's disk bound and replay's memory, on the real binary
//! with its Redis stopped: the log stops growing at `--max-log-bytes` and
//! ingest answers 503 `log_full` with `Retry-After`; after `kill -9` the
//! restart replays the full log in bounded memory (its peak RSS, `VmHWM`,
//! barely above an edge that replayed nothing), and once Redis is back every
//! acknowledged event is counted, once.

use std::path::Path;
use std::time::Duration;

use glimpse_tests::edge::{redis_flags, Edge};
use glimpse_tests::redis::RedisServer;
use glimpse_wire::api::StatsResponse;
use serde_json::{json, Value};

use crate::load::{now_ms, wait_for, BATCH_EVENTS};

const DEADLINE: Duration = Duration::from_secs(60);
/// The log's bound in this test: about 1,400 batches of 500 events.
const MAX_LOG_BYTES: u64 = 16 * 1024 * 1024;
/// How far past the bound the log may go: the batches admitted before the
/// bound was reached (one client: one batch, about 12 KiB of log).
const LOG_SLACK_BYTES: u64 = 64 * 1024;
/// What replaying a log at its bound may add to an edge's peak RSS: one
/// read buffer (256 KiB plus a record of at most 1 MiB) and the rebuilt
/// delta (one ad, one visitor: its per-batch records and claims). Reading
/// the log whole took several times the log's size.
const REPLAY_PEAK_BYTES: u64 = 8 * 1024 * 1024;
const AD: &str = "ad-log-bound";
/// Refusals sent after the first, to see the log stay put.
const REFUSED_AFTER_BOUND: usize = 20;

/// Batch `i`: 500 viewable events of one ad by one visitor.
fn batch(i: usize, ts: i64) -> String {
    let events: Vec<_> = (0..BATCH_EVENTS)
        .map(|j| json!({"id": format!("e{j}"), "ad_id": AD, "user_id": "visitor-1", "kind": "viewable", "ts": ts}))
        .collect();
    json!({"batch_id": format!("log-bound-{i}"), "events": events}).to_string()
}

/// POSTs a batch: status, `Retry-After`, body.
fn post(edge: &Edge, body: &str) -> (u16, Option<String>, Value) {
    let response = match ureq::post(&edge.url("/v1/impressions"))
        .set("Content-Type", "text/plain;charset=UTF-8")
        .send_string(body)
    {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("POST batch: {e}"),
    };
    let status = response.status();
    let retry_after = response.header("Retry-After").map(str::to_owned);
    let json = response.into_json().expect("a JSON answer");
    (status, retry_after, json)
}

fn assert_log_full(answer: (u16, Option<String>, Value)) {
    let (status, retry_after, body) = answer;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "log_full", "{body}");
    let secs: u64 = retry_after
        .expect("a Retry-After header")
        .parse()
        .expect("Retry-After in seconds");
    assert!(secs > 0);
}

/// Bytes of the log's segments on disk.
fn log_bytes(data_dir: &Path) -> u64 {
    std::fs::read_dir(data_dir.join("wal"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn the_log_stops_at_its_bound_with_503s_and_replays_in_bounded_memory() {
    let mut redis = RedisServer::start();
    redis.kill();
    let mut flags = redis_flags(&redis.url());
    flags.extend(
        [
            "--max-log-bytes",
            &MAX_LOG_BYTES.to_string(),
            "--sync-interval",
            "100ms",
            "--stats-cache",
            "0s",
        ]
        .map(String::from),
    );

    // The peak of an edge that replays nothing, to compare the replay with.
    let empty = tempfile::tempdir().unwrap();
    let fresh = Edge::start(empty.path(), &flags);
    let fresh_peak = fresh.memory_bytes("VmHWM");
    fresh.kill_hard();

    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start(dir.path(), &flags);
    let ts = now_ms();
    let mut acked = 0;
    let first_refusal = loop {
        let answer = post(&edge, &batch(acked, ts));
        if answer.0 != 202 {
            break answer;
        }
        assert_eq!(answer.2["accepted"], BATCH_EVENTS, "{}", answer.2);
        acked += 1;
        assert!(
            log_bytes(dir.path()) <= MAX_LOG_BYTES + LOG_SLACK_BYTES,
            "the log grew past its bound without a refusal"
        );
    };
    assert_log_full(first_refusal);
    let at_bound = log_bytes(dir.path());
    assert!(
        (MAX_LOG_BYTES..=MAX_LOG_BYTES + LOG_SLACK_BYTES).contains(&at_bound),
        "the log holds {at_bound} bytes at the first refusal"
    );
    for i in 0..REFUSED_AFTER_BOUND {
        assert_log_full(post(&edge, &batch(acked + 1 + i, ts)));
    }
    assert_eq!(log_bytes(dir.path()), at_bound, "the log grew while full");
    assert_eq!(
        edge.counter("glimpse_http_errors_total{code=\"log_full\"}"),
        1 + REFUSED_AFTER_BOUND as u64
    );
    edge.kill_hard();

    // The restart replays the full log before it serves.
    let edge = Edge::start(dir.path(), &flags);
    let replay_peak = edge.memory_bytes("VmHWM");
    eprintln!(
        "log at the bound: {at_bound} bytes, {acked} batches; peak RSS {fresh_peak} with no log, \
         {replay_peak} after its replay"
    );
    assert!(
        replay_peak <= fresh_peak + REPLAY_PEAK_BYTES,
        "replaying a {at_bound}-byte log peaked at {replay_peak} bytes of RSS, \
         {fresh_peak} for an edge with no log"
    );
    assert_log_full(post(&edge, &batch(acked, ts)));

    // Redis is back: the replayed batches land, the log empties, and the
    // counts are exactly what was acknowledged.
    redis.restart();
    wait_for(
        DEADLINE,
        "the replayed log is synced and deleted",
        || log_bytes(dir.path()),
        |bytes| *bytes < LOG_SLACK_BYTES,
    );
    let stats: StatsResponse = edge.get_json(&format!("/v1/ads/{AD}/stats"));
    assert_eq!(stats.impressions, (acked * BATCH_EVENTS) as u64);
    assert_eq!(stats.unique_visitors, Some(1));
    let (status, _, body) = post(&edge, &batch(acked, ts));
    assert_eq!((status, &body["accepted"]), (202, &json!(BATCH_EVENTS)));
}
