//! CI runs the benchmark in its tiny configuration against real processes
//! (its own redis-server and 3-master Redis Cluster, the edge, the baseline)
//! and checks that it runs and that every exactness check passes. Nothing
//! here is timed.

use std::process::Command;

#[test]
fn tiny_bench_runs_and_counts_exactly() {
    let bench = env!("CARGO_BIN_EXE_glimpse-bench");
    let server = std::path::Path::new(bench).with_file_name("glimpse-server");
    assert!(
        server.exists(),
        "{} is missing: run `cargo test --workspace`, which builds it",
        server.display()
    );
    let out = Command::new(bench)
        .arg("--tiny")
        .output()
        .expect("run glimpse-bench --tiny");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "glimpse-bench --tiny failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("exactness: every stored count equals what was sent"),
        "{stdout}\n{stderr}"
    );
    assert!(!stdout.contains("| NO |"), "an inexact run:\n{stdout}");
    // One table per shape, the browsers' first, each with both sides.
    let at = |heading: &str| {
        stdout
            .find(heading)
            .unwrap_or_else(|| panic!("no {heading} table:\n{stdout}"))
    };
    let (browser, fifty, beacons) = (at("`browser`:"), at("`fifty`:"), at("`beacons`:"));
    assert!(browser < fifty && fifty < beacons, "{stdout}");
    for table in [
        &stdout[browser..fifty],
        &stdout[fifty..beacons],
        &stdout[beacons..],
    ] {
        for scenario in [
            "write-through baseline",
            "edge, embedded store",
            "edge, Redis Cluster (3 masters)",
            "write-through baseline, Redis Cluster (3 masters)",
        ] {
            assert!(
                table.contains(&format!("| {scenario} |")),
                "{scenario} missing:\n{table}"
            );
        }
    }
    // The second generator ran beside the first on the headline shape, and
    // so did the edge on Redis with its claim windows filled (only there).
    let headline = &stdout[browser..fifty];
    assert!(
        headline
            .contains("| edge, Redis store, claim windows filled (500 claims per shard and day) |"),
        "no filled-claims row:\n{stdout}"
    );
    assert!(
        !stdout[fifty..].contains("claim windows filled"),
        "{stdout}"
    );
    assert!(
        headline.contains("| write-through baseline (wrk) |"),
        "no wrk rows (is wrk installed?):\n{stdout}"
    );
    // Every load run reports no errors in its log line.
    for line in stderr
        .lines()
        .filter(|l| l.contains("ingest:") || l.contains("wrk:"))
    {
        assert!(line.contains(" 0 errors"), "{line}");
        assert!(line.contains("exact: yes"), "{line}");
    }
}
