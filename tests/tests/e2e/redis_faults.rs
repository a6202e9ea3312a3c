//! Faults on the way to Redis: Redis killed and restarted mid-load, a reply
//! lost after the write, an edge stopped with SIGTERM mid-run. In every case
//! the counters are exact and the registers equal the PFADD reference.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use glimpse_tests::edge::{post_batch_at, redis_flags, Edge};
use glimpse_tests::proxy::CuttingProxy;
use glimpse_tests::redis::RedisServer;
use glimpse_wire::api::StatsResponse;

use crate::load::{
    assert_same_registers, counters, counters_key, now_ms, pfadd_reference, pfcount, post_all,
    sketch_at, uv_key, visitors, wait_for, Load,
};

const DEADLINE: Duration = Duration::from_secs(60);

fn edge_on(url: &str, dir: &std::path::Path) -> Edge {
    let mut args = redis_flags(url);
    args.extend(["--sync-interval", "200ms"].map(String::from));
    Edge::start(dir, &args)
}

/// Waits until Redis holds `load`'s counters, then checks registers and the
/// stats of `edges` against PFADD references.
fn check(redis: &RedisServer, edges: &[&Edge], load: &Load) {
    let mut conn = redis.connect();
    for ((ad, day), exp) in &load.expected {
        let what = format!("{ad} {day}");
        wait_for(
            DEADLINE,
            &format!("{what} is synced"),
            || counters(&mut conn, &counters_key(ad, day)),
            |c| *c == (exp.impressions, exp.measurable),
        );
        let reference = format!("test:ref:{ad}:{day}");
        pfadd_reference(&mut conn, &reference, &exp.visitors);
        assert_same_registers(
            &sketch_at(&mut conn, &uv_key(ad, day)),
            &sketch_at(&mut conn, &reference),
            &what,
        );
        let count = pfcount(&mut conn, &[&reference]);
        for e in edges {
            wait_for(
                DEADLINE,
                &format!("{what}: the edge's stats equal the reference"),
                || e.get_json::<StatsResponse>(&format!("/v1/ads/{ad}/stats?from={day}&to={day}")),
                |s| {
                    (s.impressions, s.measurable, s.unique_visitors)
                        == (exp.impressions, exp.measurable, Some(count))
                },
            );
        }
    }
}

#[test]
fn redis_killed_mid_load_and_restarted_loses_and_doubles_nothing() {
    let mut redis = RedisServer::builder().durable().start();
    let dir = tempfile::tempdir().unwrap();
    let edge = edge_on(&redis.url(), dir.path());
    let ts = now_ms() - 1_000;
    let mut before = Load::default();
    before.add("before", visitors("outage", "a", 0..20_000, ts));
    let mut during = Load::default();
    during.add("during", visitors("outage", "b", 10_000..40_000, ts));
    let url = [edge.base_url.clone()];

    post_all(&url, &before.batches, 2, |_| vec![0]);
    // Some of it is in Redis before the outage.
    let mut conn = redis.connect();
    wait_for(
        DEADLINE,
        "a first sync lands",
        || counters(&mut conn, &counters_key("outage", &crate::load::day_of(ts))),
        |c| c.0 > 0,
    );
    drop(conn);
    redis.kill();
    // While Redis is down: ingest still answers 202, and the edge stays
    // ready (it takes batches) while /readyz reports the store down.
    let (accepted, _) = post_all(&url, &during.batches, 2, |_| vec![0]);
    let (imp, meas) = during.totals();
    assert_eq!(accepted, imp + meas);
    let (status, body) = wait_for(
        DEADLINE,
        "/readyz reports the outage",
        || edge.get_raw("/readyz").unwrap(),
        |(_, body)| body.contains("\"store_status\":\"unreachable\""),
    );
    assert_eq!(status, 200, "{body}");
    // The outage lasts a few sync attempts (this is the fault, not a wait
    // for readiness).
    std::thread::sleep(Duration::from_secs(3));
    redis.restart();
    wait_for(
        DEADLINE,
        "/readyz reports the store back",
        || edge.get_raw("/readyz").unwrap().1,
        |body| body.contains("\"store_status\":\"ok\""),
    );
    let mut all = Load::default();
    all.add("before", visitors("outage", "a", 0..20_000, ts));
    all.add("during", visitors("outage", "b", 10_000..40_000, ts));
    check(&redis, &[&edge], &all);
    assert!(edge.terminate().success());
}

#[test]
fn an_edge_starts_and_takes_impressions_before_redis_is_up() {
    let port = glimpse_tests::redis::free_port().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let edge = edge_on(&format!("redis://127.0.0.1:{port}/"), dir.path());
    // Ready (it takes batches) though its store is not up yet.
    let (status, body) = edge.get_raw("/readyz").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"store_status\":\"unreachable\""), "{body}");
    let ts = now_ms() - 1_000;
    let mut load = Load::default();
    load.add("early", visitors("early", "a", 0..3_000, ts));
    let (accepted, _) = post_all(
        std::slice::from_ref(&edge.base_url),
        &load.batches,
        2,
        |_| vec![0],
    );
    assert_eq!(accepted, load.totals().0 + load.totals().1);
    let redis = RedisServer::builder().port(port).start();
    check(&redis, &[&edge], &load);
    let (status, body) = edge.get_raw("/readyz").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"store_status\":\"ok\""), "{body}");
    assert!(edge.terminate().success());
}

#[test]
fn a_reply_lost_after_the_write_is_retried_without_counting_twice() {
    let redis = RedisServer::start();
    let proxy = CuttingProxy::start(redis.port(), b"EVALSHA");
    let dir = tempfile::tempdir().unwrap();
    let edge = edge_on(&proxy.url(), dir.path());
    let ts = now_ms() - 1_000;
    let day = crate::load::day_of(ts);
    let mut load = Load::default();
    load.add("first", visitors("lost-reply", "a", 0..2_000, ts));
    let url = [edge.base_url.clone()];
    post_all(&url, &load.batches, 2, |_| vec![0]);
    let mut conn = redis.connect();
    // The script is loaded and steps land through the proxy.
    wait_for(
        DEADLINE,
        "the first batches are synced",
        || counters(&mut conn, &counters_key("lost-reply", &day)),
        |c| c.0 == 2_000,
    );
    // Now lose the replies of the next two script calls.
    proxy.arm(2);
    let first_len = load.batches.len();
    load.add("second", visitors("lost-reply", "b", 1_000..6_000, ts));
    post_all(&url, &load.batches[first_len..], 2, |_| vec![0]);
    // Single impressions too: their batch ids are the edge's own and are
    // not claimed, so only the step ledger keeps a retry from counting them
    // twice.
    for i in 0..300 {
        let user = format!("single-{i}");
        let (status, body) = edge
            .get_raw(&format!("/v1/impression?ad_id=lost-reply&user_id={user}"))
            .unwrap();
        assert_eq!(status, 200, "{body}");
        let x = load
            .expected
            .entry(("lost-reply".into(), crate::load::day_of(now_ms())))
            .or_default();
        x.impressions += 1;
        x.measurable += 1;
        x.visitors.push(user);
    }
    wait_for(
        DEADLINE,
        "the proxy cut two connections",
        || proxy.cuts(),
        |n| *n >= 2,
    );
    assert!(proxy.swallowed_bytes() > 0, "no reply was lost");
    let third = load.batches.len();
    load.add("third", visitors("lost-reply", "c", 5_000..7_000, ts));
    post_all(&url, &load.batches[third..], 2, |_| vec![0]);
    check(&redis, &[&edge], &load);
    assert!(edge.terminate().success());
}

#[test]
fn an_edge_stopped_with_sigterm_mid_run_loses_and_doubles_nothing() {
    let redis = RedisServer::start();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let a = edge_on(&redis.url(), dirs[0].path());
    let b = edge_on(&redis.url(), dirs[1].path());
    let id_before = std::fs::read_to_string(dirs[0].path().join("edge-id")).unwrap();
    let ts = now_ms() - 1_000;
    let mut load = Load::default();
    load.add("run", visitors("sigterm", "a", 0..60_000, ts));
    let urls = [a.base_url.clone(), b.base_url.clone()];
    let stopping = AtomicBool::new(false);
    std::thread::scope(|s| {
        let loader = s.spawn(|| {
            // Half the batches to each edge; a batch edge A does not answer
            // (it is stopping) is sent to edge B, as a client would retry.
            let mut moved = 0;
            for (i, (_, body)) in load.batches.iter().enumerate() {
                if i == load.batches.len() / 3 {
                    stopping.store(true, Ordering::Release);
                }
                let first = i % 2;
                match post_batch_at(&urls[first], body) {
                    Ok((202, _)) => {}
                    Ok((status, answer)) if first == 0 => {
                        panic!("edge A answered {status}: {answer}")
                    }
                    Err(_) if first == 0 => {
                        moved += 1;
                        let (status, answer) = post_batch_at(&urls[1], body).unwrap();
                        assert_eq!(status, 202, "{answer}");
                    }
                    other => panic!("edge B: {other:?}"),
                }
            }
            moved
        });
        wait_for(
            DEADLINE,
            "a third of the load is sent",
            || stopping.load(Ordering::Acquire),
            |s| *s,
        );
        assert!(a.terminate().success(), "edge A exits cleanly on SIGTERM");
        let moved = loader.join().unwrap();
        assert!(moved > 0, "edge A stopped after the load ended");
    });
    // Edge A again on its directory: same identity, next boot; what it
    // counts now is counted too.
    let a = edge_on(&redis.url(), dirs[0].path());
    assert_eq!(
        std::fs::read_to_string(dirs[0].path().join("edge-id")).unwrap(),
        id_before
    );
    assert_eq!(
        std::fs::read_to_string(dirs[0].path().join("edge-boots")).unwrap(),
        "2"
    );
    let sent = load.batches.len();
    load.add("after", visitors("sigterm", "b", 50_000..55_000, ts));
    post_all(
        std::slice::from_ref(&a.base_url),
        &load.batches[sent..],
        2,
        |_| vec![0],
    );
    check(&redis, &[&a, &b], &load);
    assert!(a.terminate().success());
    assert!(b.terminate().success());
}
