//! The Redis store on a 3-master Redis Cluster created by the test: the same
//! exactness checks as on a single Redis, with ads spread over the slots.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use glimpse_tests::edge::{redis_cluster_flags, Edge};
use glimpse_tests::redis::RedisCluster;
use glimpse_wire::api::StatsResponse;

use crate::load::{
    assert_same_registers, counters, counters_key, day_of, now_ms, pfadd_reference, pfcount,
    post_all, sketch_at, uv_key, visitors, wait_for, Load,
};

/// Until the counts reach the cluster. On a loaded machine a few syncs may
/// fail (a reply or a connection timing out), and an edge then waits up to
/// 30 s between attempts: the deadline leaves room for a few of those.
const SYNC_DEADLINE: Duration = Duration::from_secs(150);

#[test]
fn exact_on_a_three_master_cluster() {
    let cluster = RedisCluster::start(3);
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let edges: Vec<Edge> = dirs
        .iter()
        .map(|d| {
            let mut args = redis_cluster_flags(&cluster.nodes_arg());
            args.extend(["--sync-interval", "200ms"].map(String::from));
            Edge::start(d.path(), &args)
        })
        .collect();
    let urls: Vec<String> = edges.iter().map(|e| e.base_url.clone()).collect();
    let now = now_ms() - 1_000;
    let yesterday = now - 86_400_000;
    let mut load = Load::default();
    for (i, n) in [1usize, 100, 5_000, 40_000].into_iter().enumerate() {
        load.add(
            &format!("c{n}"),
            visitors(&format!("cl-{n}"), "t", 0..n, now),
        );
        // The same ad the day before, overlapping visitors: another slot.
        load.add(
            &format!("c{n}-y"),
            visitors(&format!("cl-{n}"), "y", n / 2..n + i, yesterday),
        );
    }
    // Every fourth batch goes to both edges.
    let (accepted, _) = post_all(&urls, &load.batches, 4, |i| {
        if i % 4 == 0 {
            vec![0, 1]
        } else {
            vec![i % 2]
        }
    });
    let (imp, meas) = load.totals();
    assert!(accepted >= imp + meas);

    let mut slots = std::collections::BTreeSet::new();
    for ((ad, day), exp) in &load.expected {
        let what = format!("{ad} {day}");
        let ckey = counters_key(ad, day);
        let node = cluster.node_for(ckey.as_bytes());
        let mut conn = node.connect();
        wait_for(
            SYNC_DEADLINE,
            &format!("{what} is synced"),
            || counters(&mut conn, &ckey),
            |c| *c == (exp.impressions, exp.measurable),
        );
        slots.insert(node.port());
        // Same hash tag as the day's key, so the same node.
        let reference = format!("test:ref:{{{ad}:{day}}}");
        pfadd_reference(&mut conn, &reference, &exp.visitors);
        let ours = sketch_at(&mut conn, &uv_key(ad, day));
        assert_same_registers(&ours, &sketch_at(&mut conn, &reference), &what);
        let count = pfcount(&mut conn, &[&reference]);
        for e in &edges {
            wait_for(
                Duration::from_secs(30),
                &format!("{what}: stats on every edge equal PFCOUNT of the reference"),
                || e.get_json::<StatsResponse>(&format!("/v1/ads/{ad}/stats?from={day}&to={day}")),
                |s| {
                    s.unique_visitors == Some(count)
                        && (s.impressions, s.measurable) == (exp.impressions, exp.measurable)
                },
            );
        }
    }
    assert!(
        slots.len() >= 2,
        "the keys landed on one node only: {slots:?}"
    );
    let range = format!("from={}&to={}", day_of(yesterday), day_of(now));
    let ads: glimpse_wire::api::AdsResponse = edges[0].get_json(&format!("/v1/ads?{range}"));
    assert_eq!(ads.ads.len(), 4);
    for e in edges {
        assert!(e.terminate().success());
    }
}

#[test]
fn an_edge_waits_for_a_cluster_that_is_not_up_yet() {
    let ports: Vec<u16> = (0..3)
        .map(|_| glimpse_tests::redis::free_port().unwrap())
        .collect();
    let nodes = ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let dir = tempfile::tempdir().unwrap();
    let mut args = redis_cluster_flags(&nodes);
    args.extend(["--sync-interval", "200ms"].map(String::from));
    let edge = Edge::start(dir.path(), &args);
    // Readiness means "can accept ingest": the edge is ready with no
    // cluster, and says in the body that the store is not up (unreachable,
    // or a ping that timed out while the client retried).
    let (status, body) = edge.get_raw("/readyz").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"store_status\":") && !body.contains("\"store_status\":\"ok\""),
        "{body}"
    );
    let ts = now_ms() - 1_000;
    let load = posted_to(&edge, "early", "cl-early", 2_000, ts);
    let cluster = RedisCluster::start_on(&ports);
    wait_for_counts(&cluster, "cl-early", ts, load.totals());
    wait_for(
        Duration::from_secs(30),
        "/readyz reports the cluster up",
        || edge.get_raw("/readyz").unwrap(),
        |(s, body)| *s == 200 && body.contains("\"store_status\":\"ok\""),
    );
    assert!(edge.terminate().success());
}

/// The tests above hand the cluster ports picked before it exists, any in
/// the ephemeral range; Redis's default bus port (port + 10000) does not
/// exist above 55535, so the harness gives each node's bus a port of its own.
#[test]
fn a_cluster_forms_on_ports_above_55535() {
    let high: Vec<u16> = (55_536..=u16::MAX)
        .filter(|&p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
        .take(3)
        .collect();
    assert_eq!(high.len(), 3, "no three free ports above 55535");
    let cluster = RedisCluster::start_on(&high);
    assert!(high.contains(&cluster.node_for(b"any key").port()));
}

/// A cluster node that takes connections and never answers (a host that is
/// up but stuck): each sync ends, failed, and is retried, so once a real
/// node serves that address the counts land, once.
#[test]
fn a_node_that_never_answers_fails_syncs_until_a_real_one_serves_its_address() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    silent.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let holder = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            // Held open, never read: the client's commands go unanswered.
            let mut held = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match silent.accept() {
                    Ok((socket, _)) => held.push(socket),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let mut args = redis_cluster_flags(&format!("127.0.0.1:{port}"));
    args.extend(["--sync-interval", "200ms"].map(String::from));
    let edge = Edge::start(dir.path(), &args);
    let ts = now_ms() - 1_000;
    let load = posted_to(&edge, "stuck", "cl-stuck", 1_000, ts);
    wait_for(
        SYNC_DEADLINE,
        "two syncs have failed",
        || edge.counter("glimpse_sync_failures_total"),
        |failures| *failures >= 2,
    );
    // The stuck host goes; a node of a real cluster takes its address.
    stop.store(true, Ordering::Relaxed);
    holder.join().unwrap();
    let free = || glimpse_tests::redis::free_port().unwrap();
    let cluster = RedisCluster::start_on(&[port, free(), free()]);
    wait_for_counts(&cluster, "cl-stuck", ts, load.totals());
    assert!(edge.terminate().success());
}

/// `visitors_n` visitors' events of `ad_id` at `ts`, as batches
/// `<prefix>-<n>`, posted to `edge`, which must accept every one.
fn posted_to(edge: &Edge, prefix: &str, ad_id: &str, visitors_n: usize, ts: i64) -> Load {
    let mut load = Load::default();
    load.add(prefix, visitors(ad_id, "a", 0..visitors_n, ts));
    let (accepted, _) = post_all(
        std::slice::from_ref(&edge.base_url),
        &load.batches,
        2,
        |_| vec![0],
    );
    assert_eq!(accepted, load.totals().0 + load.totals().1);
    load
}

/// Waits until the cluster holds `want` (impressions, measurable) for
/// `ad_id` on the UTC day of `ts`.
fn wait_for_counts(cluster: &RedisCluster, ad_id: &str, ts: i64, want: (u64, u64)) {
    let ckey = counters_key(ad_id, &day_of(ts));
    let mut conn = cluster.node_for(ckey.as_bytes()).connect();
    wait_for(
        SYNC_DEADLINE,
        "the counts reach the cluster",
        || counters(&mut conn, &ckey),
        |c| *c == want,
    );
}
