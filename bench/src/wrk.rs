//! A second, independent load generator for the browser shape: `wrk`
//! (Debian's package) with a Lua script ([`SCRIPT`]) that makes every batch
//! and event id unique and counts the events each answer accepted. It runs
//! beside `glimpse-load` so the headline figure does not rest on one client.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::sys::wait::{waitid, Id, WaitPidFlag};
use nix::unistd::Pid;

use crate::gen::Mix;
use crate::procs::cpu_seconds_of;

/// The request and answer callbacks.
pub const SCRIPT: &str = include_str!("wrk.lua");

/// Whether `wrk` is on the `PATH`.
pub fn available() -> bool {
    Command::new("wrk")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// What one wrk run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct WrkReport {
    pub requests_per_s: f64,
    /// Events the answers accepted, in all.
    pub accepted_events: u64,
    pub elapsed: Duration,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Answers other than 202, and socket errors.
    pub errors: u64,
    /// CPU seconds wrk itself used.
    pub cpu_seconds: f64,
}

impl WrkReport {
    pub fn events_per_s(&self) -> f64 {
        self.accepted_events as f64 / self.elapsed.as_secs_f64()
    }
}

/// Runs wrk for `duration` with `connections` kept-alive connections on one
/// thread against the ingest route of `target` (loopback only).
pub fn run(
    target: SocketAddr,
    connections: usize,
    duration: Duration,
    mix: Mix,
    run_id: &str,
) -> Result<WrkReport> {
    if !target.ip().is_loopback() {
        bail!("benchmarks target loopback addresses only, not {target}");
    }
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("browser-shape.lua");
    std::fs::write(&script, SCRIPT)?;
    let child = Command::new("wrk")
        .args(["--threads", "1", "--latency"])
        .arg(format!("--connections={connections}"))
        .arg(format!("--duration={}s", duration.as_secs().max(1)))
        .arg("--script")
        .arg(&script)
        .arg(format!("http://{target}/v1/impressions"))
        .arg("--")
        .args([
            run_id.to_owned(),
            mix.ads.to_string(),
            mix.visitors.to_string(),
            mix.batch.min.to_string(),
            mix.batch.max.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting wrk")?;
    // Wait for the exit without reaping, so its CPU can still be read.
    let pid = Pid::from_raw(child.id() as i32);
    waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT).context("waiting for wrk")?;
    let cpu_seconds = cpu_seconds_of(format!("/proc/{pid}/stat")).unwrap_or(f64::NAN);
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk failed ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse(&stdout, cpu_seconds).with_context(|| format!("reading wrk's report:\n{stdout}"))
}

/// `1.23ms`, `850.00us`, `1.02s` in milliseconds.
fn millis(value: &str) -> Option<f64> {
    let (number, scale) = if let Some(n) = value.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = value.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = value.strip_suffix('m') {
        (n, 60_000.0)
    } else {
        (value.strip_suffix('s')?, 1000.0)
    };
    Some(number.parse::<f64>().ok()? * scale)
}

/// The figures of wrk's `--latency` report and the script's summary line.
fn parse(report: &str, cpu_seconds: f64) -> Result<WrkReport> {
    let words = |prefix: &str| {
        report
            .lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(|rest| rest.split_whitespace().collect::<Vec<_>>())
    };
    let number = |prefix: &str| -> Result<f64> {
        words(prefix)
            .and_then(|w| w.first()?.parse().ok())
            .with_context(|| format!("no `{prefix}` line"))
    };
    let latency = |q: &str| -> Result<f64> {
        words(q)
            .and_then(|w| millis(w.first()?))
            .with_context(|| format!("no `{q}` latency"))
    };
    let summary = words("glimpse-wrk:").context("no summary line from the script")?;
    let field = |name: &str| -> Result<u64> {
        summary
            .iter()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no `{name}` in the summary"))
    };
    // "123456 requests in 10.00s, 12.34MB read"
    let elapsed = report
        .lines()
        .find_map(
            |l| match l.split_whitespace().collect::<Vec<_>>().as_slice() {
                [_, "requests", "in", took, ..] => millis(took.trim_end_matches(',')),
                _ => None,
            },
        )
        .context("no `requests in` line")?;
    let socket_errors: u64 = words("Socket errors:").map_or(0, |w| {
        w.iter()
            .filter_map(|v| v.trim_end_matches(',').parse::<u64>().ok())
            .sum()
    });
    Ok(WrkReport {
        requests_per_s: number("Requests/sec:")?,
        accepted_events: field("accepted_events")?,
        elapsed: Duration::from_secs_f64(elapsed / 1000.0),
        p50_ms: latency("50%")?,
        p99_ms: latency("99%")?,
        errors: field("refused")? + socket_errors,
        cpu_seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "Running 10s test @ http://127.0.0.1:4000/v1/impressions
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.52ms  410.11us   9.80ms   80.12%
    Req/Sec    42.10k     1.20k   44.00k    71.00%
  Latency Distribution
     50%    1.44ms
     75%    1.70ms
     90%    2.01ms
     99%    3.02ms
  419000 requests in 10.00s, 61.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
Requests/sec:  41897.31
Transfer/sec:      6.10MB
glimpse-wrk: accepted_events=1466500 refused=4
";

    #[test]
    fn reads_the_figures_of_a_report() {
        let r = parse(REPORT, 3.5).unwrap();
        assert_eq!(r.requests_per_s, 41897.31);
        assert_eq!(r.accepted_events, 1_466_500);
        assert_eq!(r.elapsed, Duration::from_secs(10));
        assert_eq!(r.p50_ms, 1.44);
        assert_eq!(r.p99_ms, 3.02);
        assert_eq!(r.errors, 4 + 3);
        assert_eq!(r.events_per_s(), 146_650.0);
    }

    #[test]
    fn a_report_without_the_scripts_summary_is_refused() {
        let cut = REPORT.replace("glimpse-wrk: accepted_events=1466500 refused=4\n", "");
        assert!(parse(&cut, 0.0).is_err());
    }

    #[test]
    fn latency_units() {
        assert_eq!(millis("850.00us"), Some(0.85));
        assert_eq!(millis("1.50ms"), Some(1.5));
        assert_eq!(millis("2.00s"), Some(2000.0));
        assert_eq!(millis("1.00m"), Some(60_000.0));
        assert_eq!(millis("fast"), None);
    }
}
