//! `kill -9` of an edge under load: no batch it answered 202 is lost, none
//! counts twice. The edge logs each accepted batch (group commit) before it
//! answers and replays the log when it starts again on the same directory.
//!
//! Each test counts what the load threads got a 202 for. Batches sent when
//! the edge died may or may not have been counted; they are sent again to
//! the restarted edge with the same batch ids (as a client retries), after
//! which every count must be exact.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use glimpse_hll::Sketch;
use glimpse_tests::edge::{post_batch_at, redis_flags, Edge};
use glimpse_tests::proxy::CuttingProxy;
use glimpse_tests::redis::RedisServer;
use glimpse_wire::api::StatsResponse;
use serde_json::json;

use crate::load::{
    assert_same_registers, batch_claims, counters, counters_key, day_of, now_ms, pfadd_reference,
    sketch_at, uv_key, wait_for,
};

const DEADLINE: Duration = Duration::from_secs(60);
const VIEWABLE_PER_BATCH: usize = 40;
const MEASURABLE_PER_BATCH: usize = 10;

/// Batch `i` of ad `ad`: 40 viewable events by new visitors, 10 measurable.
fn batch(ad: &str, i: usize, ts: i64) -> (String, String) {
    let id = format!("{ad}-{i}");
    let events: Vec<_> = (0..VIEWABLE_PER_BATCH + MEASURABLE_PER_BATCH)
        .map(|j| {
            let kind = if j < VIEWABLE_PER_BATCH { "viewable" } else { "measurable" };
            json!({"id": format!("e{j}"), "ad_id": ad, "user_id": format!("visitor-{i}-{j}"), "kind": kind, "ts": ts})
        })
        .collect();
    let body = json!({"batch_id": id, "events": events}).to_string();
    (id, body)
}

/// What the load threads saw.
#[derive(Debug, Default)]
struct Outcome {
    /// Batches answered 202.
    acked: Vec<usize>,
    /// Batches sent without an answer (the edge died under them) or never
    /// sent.
    unknown: Vec<usize>,
}

/// Posts `batches` from `threads` threads until the edge stops answering;
/// `kill` runs once `kill_after` batches were acknowledged.
fn load_then_kill(
    url: &str,
    batches: &[(String, String)],
    threads: usize,
    kill_after: usize,
    kill: impl FnOnce(),
) -> Outcome {
    let next = AtomicUsize::new(0);
    let acked = AtomicUsize::new(0);
    let outcome = Mutex::new(Outcome::default());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= batches.len() {
                    return;
                }
                match post_batch_at(url, &batches[i].1) {
                    Ok((202, answer)) => {
                        assert_eq!(answer["accepted"], 50, "batch {i}: {answer}");
                        outcome.lock().unwrap().acked.push(i);
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok((status, answer)) => panic!("batch {i}: {status} {answer}"),
                    Err(_) => {
                        outcome.lock().unwrap().unknown.push(i);
                        return;
                    }
                }
            });
        }
        wait_for(
            DEADLINE,
            "enough batches are acknowledged",
            || acked.load(Ordering::Relaxed),
            |n| *n >= kill_after,
        );
        kill();
    });
    let mut outcome = outcome.into_inner().unwrap();
    let sent = next.load(Ordering::Relaxed).min(batches.len());
    outcome.unknown.extend(sent..batches.len());
    assert!(
        outcome.acked.len() < batches.len(),
        "the load ended before the kill: make it longer"
    );
    outcome
}

fn stats(edge: &Edge, ad: &str) -> StatsResponse {
    edge.get_json(&format!("/v1/ads/{ad}/stats"))
}

/// Before the retries: at least every acknowledged event, at most those
/// plus the unknown ones. After them: exactly everything.
fn check_bounds(edge: &Edge, ad: &str, outcome: &Outcome) {
    let s = stats(edge, ad);
    let per = |n: usize| (n * VIEWABLE_PER_BATCH) as u64;
    let (low, high) = (
        per(outcome.acked.len()),
        per(outcome.acked.len() + outcome.unknown.len()),
    );
    assert!(
        (low..=high).contains(&s.impressions),
        "after the crash: {} impressions, {low} were acknowledged, at most {high} sent",
        s.impressions
    );
}

fn resend_unknown(edge: &Edge, batches: &[(String, String)], outcome: &Outcome) {
    for &i in &outcome.unknown {
        let (status, answer) = edge.post_batch(&batches[i].1);
        assert_eq!(status, 202, "batch {i} again: {answer}");
    }
}

fn reference(batches: usize) -> Sketch {
    let mut sketch = Sketch::new();
    for i in 0..batches {
        for j in 0..VIEWABLE_PER_BATCH {
            sketch.insert(format!("visitor-{i}-{j}").as_bytes());
        }
    }
    sketch
}

fn check_exact(edge: &Edge, ad: &str, batches: usize) {
    let s = stats(edge, ad);
    assert_eq!(
        (s.impressions, s.measurable, s.unique_visitors),
        (
            (batches * VIEWABLE_PER_BATCH) as u64,
            (batches * MEASURABLE_PER_BATCH) as u64,
            Some(reference(batches).estimate())
        )
    );
}

/// Starts an edge on `dir`, loads it with 4,000 batches of `ad` from 4
/// threads, kills it with SIGKILL after 300 are acknowledged, starts it
/// again on the same directory, checks that every acknowledged batch
/// counts, resends the unanswered ones (as clients would) and checks that
/// everything counts exactly once. Answers the restarted edge.
fn kill_restart_and_retry<S: AsRef<std::ffi::OsStr>>(
    dir: &std::path::Path,
    flags: &[S],
    ad: &str,
    ts: i64,
) -> (Edge, Vec<(String, String)>, Outcome) {
    let edge = Edge::start(dir, flags);
    let batches: Vec<_> = (0..4_000).map(|i| batch(ad, i, ts)).collect();
    let (pid, url) = (edge.pid(), edge.base_url.clone());
    let outcome = load_then_kill(&url, &batches, 4, 300, || edge.kill_hard());
    eprintln!(
        "{ad}: {} acknowledged, {} unknown when edge {pid} was killed",
        outcome.acked.len(),
        outcome.unknown.len()
    );
    let edge = Edge::start(dir, flags);
    check_bounds(&edge, ad, &outcome);
    resend_unknown(&edge, &batches, &outcome);
    check_exact(&edge, ad, batches.len());
    (edge, batches, outcome)
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_batch_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--sync-interval", "150ms"];
    let ad = "crash-embedded";
    let (edge, batches, outcome) = kill_restart_and_retry(dir.path(), &flags, ad, now_ms() - 1_000);
    // Every acknowledged batch is a duplicate now: none counts twice.
    for &i in outcome.acked.iter().take(50) {
        let (status, answer) = edge.post_batch(&batches[i].1);
        assert_eq!(
            (status, answer["accepted"].as_u64()),
            (202, Some(0)),
            "{answer}"
        );
    }
    check_exact(&edge, ad, batches.len());
    // And it all reaches the store: after a clean stop and start, the same.
    assert!(edge.terminate().success());
    let edge = Edge::start(dir.path(), &flags);
    check_exact(&edge, ad, batches.len());
    assert!(edge.terminate().success());
}

/// Waits until Redis holds exactly `batches` batches of `ad` (counters and
/// registers equal to a PFADD reference).
fn check_redis(redis: &RedisServer, ad: &str, ts: i64, batches: usize) {
    let mut conn = redis.connect();
    let day = day_of(ts);
    let want = (
        (batches * VIEWABLE_PER_BATCH) as u64,
        (batches * MEASURABLE_PER_BATCH) as u64,
    );
    wait_for(
        DEADLINE,
        "Redis holds every batch once",
        || counters(&mut conn, &counters_key(ad, &day)),
        |c| *c == want,
    );
    let ids: Vec<String> = (0..batches)
        .flat_map(|i| (0..VIEWABLE_PER_BATCH).map(move |j| format!("visitor-{i}-{j}")))
        .collect();
    let reference_key = format!("test:ref:{ad}");
    pfadd_reference(&mut conn, &reference_key, &ids);
    assert_same_registers(
        &sketch_at(&mut conn, &uv_key(ad, &day)),
        &sketch_at(&mut conn, &reference_key),
        ad,
    );
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_batch_redis_store() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut flags = redis_flags(&redis.url());
    flags.extend(["--sync-interval", "100ms"].map(String::from));
    let ts = now_ms() - 1_000;
    let ad = "crash-redis";
    let (edge, batches, _) = kill_restart_and_retry(dir.path(), &flags, ad, ts);
    check_redis(&redis, ad, ts, batches.len());
    check_exact(&edge, ad, batches.len());
    assert!(edge.terminate().success());
}

/// The case the stable sequence numbers exist for: the edge dies after its
/// sync claimed the batches in Redis and before any step added their counts.
/// The replayed delta carries the same number, so its claims are its own
/// and its counts land; under a new number they would be lost (another
/// delta "owns" them).
#[test]
fn kill_9_between_claims_and_steps_loses_nothing() {
    let redis = RedisServer::start();
    // The claims go through; no step (a script call naming an (ad, day)'s
    // ledger) ever reaches Redis through the proxy.
    let proxy = CuttingProxy::start(redis.port(), b"glimpse:x:{");
    proxy.hold();
    let dir = tempfile::tempdir().unwrap();
    let mut flags = redis_flags(&proxy.url());
    flags.extend(["--sync-interval", "100ms"].map(String::from));
    let edge = Edge::start(dir.path(), &flags);
    let ts = now_ms() - 1_000;
    let ad = "crash-claimed";
    let batches: Vec<_> = (0..40).map(|i| batch(ad, i, ts)).collect();
    for (i, (_, body)) in batches.iter().enumerate() {
        let (status, answer) = edge.post_batch(body);
        assert_eq!(status, 202, "batch {i}: {answer}");
    }
    let mut conn = redis.connect();
    let claimed = |conn: &mut glimpse_tests::redis::Conn| -> Vec<String> {
        let claims = batch_claims(conn);
        batches
            .iter()
            .map(|(id, _)| id.clone())
            .filter(|id| claims.contains_key(id))
            .collect()
    };
    // A sync may have started while the batches were still arriving: its
    // delta is claimed and stuck; the later batches wait in the next one.
    wait_for(
        DEADLINE,
        "a step is held back",
        || proxy.held(),
        |n| *n >= 1,
    );
    let claimed = wait_for(
        DEADLINE,
        "batches are claimed",
        || claimed(&mut conn),
        |c| !c.is_empty(),
    );
    assert_eq!(counters(&mut conn, &counters_key(ad, &day_of(ts))), (0, 0));
    edge.kill_hard();

    // Started again, straight on Redis: the log replays the claimed delta.
    let edge_id = std::fs::read_to_string(dir.path().join("edge-id")).unwrap();
    let edge = Edge::start(dir.path(), &redis_flags(&redis.url()));
    check_redis(&redis, ad, ts, batches.len());
    check_exact(&edge, ad, batches.len());
    // The claims are still those of the first run's delta (boot 1).
    let claims = batch_claims(&mut conn);
    let Some((value, _)) = claims.get(&claimed[0]) else {
        panic!("no claim of {} in {claims:?}", claimed[0])
    };
    let (owner, seq) = value.rsplit_once(':').unwrap();
    assert_eq!(owner, edge_id.trim());
    assert_eq!(seq.parse::<u64>().unwrap() >> 32, 1, "{value}");
    assert!(edge.terminate().success());
}
