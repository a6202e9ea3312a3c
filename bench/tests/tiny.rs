//! CI runs the benchmark in its tiny configuration against real processes
//! (its own redis-server, the edge, the baseline) and checks that it runs and
//! that every exactness check passes. Nothing here is timed.

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
    for scenario in ["write-through baseline", "edge, embedded store"] {
        assert!(
            stdout.contains(&format!("| {scenario} |")) && !stdout.contains("| NO |"),
            "{scenario} missing or inexact:\n{stdout}"
        );
    }
    // Every load run reports no errors in its log line.
    for line in stderr.lines().filter(|l| l.contains("ingest:")) {
        assert!(line.contains(" 0 errors"), "{line}");
        assert!(line.contains("exact: yes"), "{line}");
    }
}
