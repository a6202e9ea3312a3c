//! Stats are one cut of the counts while syncs land: with a sync every
//! 100 ms, three writers posting batches of one ad and three readers polling
//! that ad's stats, every answer lies between what was acknowledged (202)
//! before it was asked and what was sent before it came back. A delta that
//! is landing, or on Redis has landed for some (ad, day)s only, must show
//! neither twice nor not at all. The same holds for a post's views in
//! `GET /v1/views`, with its batches spread over two days (on Redis, a
//! delta lands one (post, day) at a time).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use glimpse_tests::edge::{post_batch_at, redis_flags, Edge};
use glimpse_tests::redis::RedisServer;
use glimpse_wire::api::{StatsResponse, ViewsResponse};
use serde_json::json;

use crate::load::now_ms;

const EVENTS_PER_BATCH: u64 = 20;
const WRITERS: usize = 3;
const READERS: usize = 3;
/// How long the readers poll: long enough for a couple of hundred syncs.
const LOAD: Duration = Duration::from_secs(20);

/// What the readers saw.
#[derive(Debug, Default)]
struct Seen {
    answers: usize,
    /// Answers above what had been sent, as (impressions, sent).
    over: Vec<(u64, u64)>,
    /// Answers below what had been acknowledged, as (impressions, acked).
    under: Vec<(u64, u64)>,
}

/// Sets its flag when dropped, also while a panic unwinds.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// What the writers count and the readers read.
#[derive(Clone, Copy)]
enum Counted<'a> {
    /// An ad's impressions in its stats of today.
    AdStats(&'a str),
    /// A post's views in `GET /v1/views`, counted on today and yesterday.
    PostViews(&'a str),
}

impl Counted<'_> {
    fn id(self) -> String {
        match self {
            Counted::AdStats(id) | Counted::PostViews(id) => id.to_owned(),
        }
    }

    /// The event field naming the subject, and the `ts` of batch `i`.
    fn event(self, ts: i64, i: usize) -> (&'static str, i64) {
        match self {
            Counted::AdStats(_) => ("ad_id", ts),
            Counted::PostViews(_) => ("post_id", ts - (i % 2) as i64 * 86_400_000),
        }
    }

    fn read(self, edge: &Edge) -> u64 {
        match self {
            Counted::AdStats(ad) => {
                edge.get_json::<StatsResponse>(&format!("/v1/ads/{ad}/stats"))
                    .impressions
            }
            Counted::PostViews(post) => {
                edge.get_json::<ViewsResponse>(&format!("/v1/views?ids={post}"))
                    .views[post]
            }
        }
    }
}

/// Runs the writers and readers against an edge started with `flags` (and
/// `--sync-interval 100ms`), then checks every answer and the final count.
fn every_answer_is_between_acknowledged_and_sent(flags: &[String], counted: Counted<'_>) {
    let ad = counted.id();
    let ad = ad.as_str();
    let dir = tempfile::tempdir().unwrap();
    let mut all = flags.to_vec();
    all.extend(["--sync-interval", "100ms"].map(String::from));
    let edge = Edge::start(dir.path(), &all);
    let url = edge.base_url.clone();
    let ts = now_ms() - 1_000;
    // Impressions in batches posted (counted before each POST goes out) and
    // acknowledged (counted after its 202).
    let sent = AtomicU64::new(0);
    let acked = AtomicU64::new(0);
    let next_batch = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let seen = Mutex::new(Seen::default());
    std::thread::scope(|s| {
        for _ in 0..WRITERS {
            s.spawn(|| {
                while !stop.load(Ordering::SeqCst) {
                    let i = next_batch.fetch_add(1, Ordering::SeqCst);
                    let (field, ts) = counted.event(ts, i);
                    let events: Vec<_> = (0..EVENTS_PER_BATCH)
                        .map(|j| {
                            json!({"id": format!("e{j}"), field: ad,
                                "user_id": format!("visitor-{i}-{j}"), "kind": "viewable", "ts": ts})
                        })
                        .collect();
                    let body = json!({"batch_id": format!("{ad}-{i}"), "events": events});
                    sent.fetch_add(EVENTS_PER_BATCH, Ordering::SeqCst);
                    let (status, answer) = post_batch_at(&url, &body.to_string())
                        .unwrap_or_else(|e| panic!("batch {i}: {e}"));
                    assert_eq!(status, 202, "batch {i}: {answer}");
                    assert_eq!(answer["accepted"], EVENTS_PER_BATCH, "batch {i}: {answer}");
                    acked.fetch_add(EVENTS_PER_BATCH, Ordering::SeqCst);
                }
            });
        }
        for _ in 0..READERS {
            s.spawn(|| {
                // The writers stop when a reader ends, by its deadline or by
                // a failed read's panic (which then fails the test instead
                // of leaving the writers running).
                let _stop_writers = StopOnDrop(&stop);
                let started = Instant::now();
                while started.elapsed() < LOAD {
                    let low = acked.load(Ordering::SeqCst);
                    let shown = counted.read(&edge);
                    let high = sent.load(Ordering::SeqCst);
                    let mut seen = seen.lock().unwrap();
                    seen.answers += 1;
                    if shown > high {
                        seen.over.push((shown, high));
                    }
                    if shown < low {
                        seen.under.push((shown, low));
                    }
                }
            });
        }
    });
    let seen = seen.into_inner().unwrap();
    let total = sent.load(Ordering::SeqCst);
    eprintln!(
        "{ad}: {} answers while {} impressions were sent; {} above what was sent, {} below what was acknowledged",
        seen.answers,
        total,
        seen.over.len(),
        seen.under.len()
    );
    assert!(
        seen.answers >= 100 && total >= 100 * EVENTS_PER_BATCH,
        "too little load to say anything: {} answers, {total} impressions",
        seen.answers
    );
    assert!(
        seen.over.is_empty() && seen.under.is_empty(),
        "of {} answers, {} showed more than was sent (first (shown, sent): {:?}) and {} less \
         than was acknowledged (first (shown, acknowledged): {:?})",
        seen.answers,
        seen.over.len(),
        seen.over.first(),
        seen.under.len(),
        seen.under.first()
    );
    // Every writer has its answer: the count is exact now.
    assert_eq!(counted.read(&edge), total);
    assert!(edge.terminate().success());
}

#[test]
fn stats_are_one_cut_while_syncs_land_embedded_store() {
    every_answer_is_between_acknowledged_and_sent(&[], Counted::AdStats("cut-embedded"));
}

#[test]
fn views_are_one_cut_while_syncs_land_embedded_store() {
    every_answer_is_between_acknowledged_and_sent(&[], Counted::PostViews("cut-post-embedded"));
}

#[test]
fn views_are_one_cut_while_syncs_land_redis_store() {
    let redis = RedisServer::start();
    every_answer_is_between_acknowledged_and_sent(
        &redis_flags(&redis.url()),
        Counted::PostViews("cut-post-redis"),
    );
}

#[test]
fn stats_are_one_cut_while_syncs_land_redis_store() {
    let redis = RedisServer::start();
    let mut flags = redis_flags(&redis.url());
    flags.extend(["--stats-cache", "0s"].map(String::from));
    every_answer_is_between_acknowledged_and_sent(&flags, Counted::AdStats("cut-redis"));
}
