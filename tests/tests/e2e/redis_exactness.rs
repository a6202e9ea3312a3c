//! Exactly-once on Redis where time and restores are involved, on the real
//! binary and a real Redis:
//! - a data directory restored from an older copy is refused, at start or,
//!   when Redis is down then, before its first sync lands anything;
//! - claims and ledgers live the 72 h that cover every delta an edge sends;
//! - `--retention-days` below 4 is refused, and at 4 a day that still
//!   receives late events keeps its keys.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use glimpse_tests::edge::{redis_flags, workspace_binary, Edge};
use glimpse_tests::redis::{RedisServer, Reply};
use serde_json::json;

use crate::load::{batch_claims, counters, counters_key, day_of, now_ms, wait_for};

const DEADLINE: Duration = Duration::from_secs(30);
const AD: &str = "ad-exactness";

/// The edge's flags on `redis`, syncing every 100 ms.
fn flags(redis: &RedisServer) -> Vec<String> {
    let mut flags = redis_flags(&redis.url());
    flags.extend(["--sync-interval", "100ms"].map(String::from));
    flags
}

/// Posts one batch of one viewable impression of [`AD`] at `ts`.
fn post_viewable(edge: &Edge, batch_id: &str, ts: i64) {
    let body = json!({"batch_id": batch_id, "events": [
        {"id": "e1", "ad_id": AD, "user_id": batch_id, "kind": "viewable", "ts": ts},
    ]});
    let (status, answer) = edge.post_batch(&body.to_string());
    assert_eq!((status, &answer["accepted"]), (202, &json!(1)), "{answer}");
}

/// Today's viewable impressions of [`AD`] in Redis.
fn impressions_in_redis(redis: &RedisServer) -> u64 {
    counters(&mut redis.connect(), &counters_key(AD, &day_of(now_ms()))).0
}

fn wait_for_impressions(redis: &RedisServer, want: u64) {
    wait_for(
        DEADLINE,
        "the impressions are in Redis",
        || impressions_in_redis(redis),
        |n| *n == want,
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Two lives of an edge on `data`, one impression each, with a copy of the
/// directory taken between them; then the copy is put back in its place.
fn two_lives_then_restore(redis: &RedisServer, data: &Path) {
    let copy = data.with_extension("copy");
    let edge = Edge::start(data, &flags(redis));
    post_viewable(&edge, "first-life", now_ms());
    wait_for_impressions(redis, 1);
    assert!(edge.terminate().success());
    copy_dir(data, &copy);

    let edge = Edge::start(data, &flags(redis));
    post_viewable(&edge, "second-life", now_ms());
    wait_for_impressions(redis, 2);
    assert!(edge.terminate().success());

    std::fs::remove_dir_all(data).unwrap();
    std::fs::rename(&copy, data).unwrap();
}

/// An edge process whose output the test reads: its stderr (the logs and
/// the error it exits with) is collected until the process closes it.
struct Process {
    child: Child,
    stderr: std::thread::JoinHandle<String>,
    base_url: std::sync::mpsc::Receiver<String>,
}

impl Process {
    fn spawn<S: AsRef<std::ffi::OsStr>>(data_dir: &Path, args: &[S]) -> Process {
        let mut child = Command::new(workspace_binary("glimpse-server"))
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .env("RUST_LOG", "warn")
            .env_remove("GLIMPSE_STORE")
            .env_remove("GLIMPSE_REDIS_URL")
            .env_remove("GLIMPSE_RETENTION_DAYS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn glimpse-server");
        let mut pipe = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        });
        let (tx, base_url) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("glimpse-server listening on ") {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        Process {
            child,
            stderr,
            base_url,
        }
    }

    /// Waits for the process to exit on its own; its status and stderr.
    fn exit(mut self) -> (ExitStatus, String) {
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > DEADLINE {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "glimpse-server did not exit within {DEADLINE:?}; its stderr: {}",
                    self.stderr.join().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        (status, self.stderr.join().unwrap())
    }
}

fn assert_refused_as_restored(status: ExitStatus, stderr: &str) {
    assert!(!status.success(), "exited with {status}: {stderr}");
    for says in [
        "refusing to run on a restored data directory",
        "sequence numbers would repeat",
        "Move the directory aside and start on an empty one",
    ] {
        assert!(stderr.contains(says), "no {says:?} in: {stderr}");
    }
}

#[test]
fn a_restored_data_directory_is_refused_at_start() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    two_lives_then_restore(&redis, &data);

    let (status, stderr) = Process::spawn(&data, &flags(&redis)).exit();
    assert_refused_as_restored(status, &stderr);
    assert_eq!(impressions_in_redis(&redis), 2, "nothing skipped or added");
}

#[test]
fn a_restored_data_directory_started_while_redis_is_down_syncs_nothing() {
    let mut redis = RedisServer::builder().durable().start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    two_lives_then_restore(&redis, &data);

    // Redis is down: the edge starts and accepts ingest.
    redis.kill();
    let process = Process::spawn(&data, &flags(&redis));
    let base_url = process
        .base_url
        .recv_timeout(DEADLINE)
        .expect("the edge prints its address");
    let body = json!({"batch_id": "while-down", "events": [
        {"id": "e1", "ad_id": AD, "user_id": "u", "kind": "viewable", "ts": now_ms()},
    ]});
    let (status, answer) =
        glimpse_tests::edge::post_batch_at(&base_url, &body.to_string()).unwrap();
    assert_eq!((status, &answer["accepted"]), (202, &json!(1)), "{answer}");

    // Once Redis is back, the check runs before the first sync lands
    // anything, and the edge stops.
    redis.restart();
    let (status, stderr) = process.exit();
    assert_refused_as_restored(status, &stderr);
    assert_eq!(
        impressions_in_redis(&redis),
        2,
        "the new count did not land"
    );
}

/// The remaining time to live of `key`, in ms.
fn pttl(redis: &RedisServer, key: &str) -> i64 {
    match redis.cmd(&[b"PTTL", key.as_bytes()]) {
        Reply::Int(ms) => ms,
        other => panic!("PTTL {key}: {other}"),
    }
}

#[test]
fn claims_and_ledgers_live_72_hours() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start(dir.path(), &flags(&redis));
    post_viewable(&edge, "lifetime", now_ms());
    wait_for_impressions(&redis, 1);
    let hours = |ms: i64| ms as f64 / 3_600_000.0;
    let day = day_of(now_ms());
    let ledger = format!("glimpse:x:{{{AD}:{day}}}");
    let left = hours(pttl(&redis, &ledger));
    assert!(
        (71.9..=72.0).contains(&left),
        "{ledger} lives {left} h more"
    );
    // A claim lives in its day's claim hash, kept 72 h past the day's end.
    let claims = batch_claims(&mut redis.connect());
    let (_, key) = &claims["lifetime"];
    let left = hours(pttl(&redis, key));
    assert!((71.9..=96.0).contains(&left), "{key} lives {left} h more");
}

#[test]
fn a_retention_below_4_days_is_refused_and_4_keeps_a_late_events_day() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    for short in ["1", "2", "3"] {
        let mut args = flags(&redis);
        args.extend(["--retention-days".to_owned(), short.to_owned()]);
        let (status, stderr) = Process::spawn(dir.path(), &args).exit();
        assert_eq!(status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!("--retention-days {short} cannot hold"))
                && stderr.contains("at least 4 days"),
            "{stderr}"
        );
    }

    // An event 47 h old counts on a day that began more than 47 h ago: with
    // a retention of 1 day the script expired that day's keys as it wrote
    // them. With 4 they stay, and expire 4 days after the day began.
    let mut args = flags(&redis);
    args.extend(["--retention-days", "4"].map(String::from));
    let edge = Edge::start(dir.path(), &args);
    let ts = now_ms() - 47 * 3_600_000;
    post_viewable(&edge, "late", ts);
    let key = counters_key(AD, &day_of(ts));
    wait_for(
        DEADLINE,
        "the late event is in Redis",
        || counters(&mut redis.connect(), &key).0,
        |n| *n == 1,
    );
    let day_start = ts - ts.rem_euclid(86_400_000);
    let expires_at = now_ms() + pttl(&redis, &key);
    let want = day_start + 4 * 86_400_000;
    assert!(
        (expires_at - want).abs() < 60_000,
        "expires at {expires_at}, want {want}"
    );
}
