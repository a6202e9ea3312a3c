//! A real `glimpse-server` process on a free loopback port.
//!
//! The binary is the one cargo built for this test run (it sits beside the
//! test executable's `deps/` directory). The edge prints the address it bound
//! on stdout; the harness reads it rather than guessing a port, then polls
//! `/healthz` until the server answers. Its log (stderr, warnings and
//! errors) is kept, and printed with the test's output when the test fails
//! while the edge is still held, so a failure in CI says what the edge saw.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// How long a server may take to start or stop before the test fails.
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);

/// How many of the edge's last log lines a failing test prints.
const LOG_LINES_KEPT: usize = 200;

/// The flag for edges that browser tests talk to: the tests drive browsers
/// over WebDriver (`navigator.webdriver`, and Chromium's `HeadlessChrome`),
/// which an edge otherwise counts as invalid traffic, not as impressions.
pub const COUNT_AUTOMATION: &str = "--count-automation";

/// Path of a binary of this workspace, built by the same `cargo test` run.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/e2e-<hash> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace` so cargo builds it",
        path.display()
    );
    path
}

/// The workspace root (for `www/` and `sdk/pkg`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace root")
        .to_path_buf()
}

/// A running edge. Killed (SIGKILL) on drop unless stopped first.
#[derive(Debug)]
pub struct Edge {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`
    pub base_url: String,
    /// `http://ADDR` of `/metrics` when started with `--metrics-listen`.
    pub metrics_url: Option<String>,
    pub data_dir: PathBuf,
    /// The last [`LOG_LINES_KEPT`] lines the edge wrote to stderr.
    log: Arc<Mutex<VecDeque<String>>>,
}

impl Edge {
    /// Starts an edge in `data_dir` with extra flags (the embedded store
    /// unless they say otherwise, e.g. with [`redis_flags`]).
    pub fn start<S: AsRef<std::ffi::OsStr>>(data_dir: &Path, extra_args: &[S]) -> Edge {
        let mut command = Command::new(workspace_binary("glimpse-server"));
        command
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra_args)
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Tests pick their own directories and store; the defaults would
        // point at the developer's working copy.
        for var in [
            "GLIMPSE_WWW_DIR",
            "GLIMPSE_SDK_DIR",
            "GLIMPSE_API_KEYS",
            "GLIMPSE_API_KEYS_FILE",
            "GLIMPSE_RATE_LIMIT",
            "GLIMPSE_TRUSTED_PROXIES",
            "GLIMPSE_MAX_CONCURRENT_REQUESTS",
            "GLIMPSE_BODY_TIMEOUT",
            "GLIMPSE_HEADER_READ_TIMEOUT",
            "GLIMPSE_METRICS_LISTEN",
            "GLIMPSE_STORE",
            "GLIMPSE_REDIS_URL",
            "GLIMPSE_REDIS_CLUSTER_NODES",
            "GLIMPSE_REDIS_PREFIX",
            "GLIMPSE_STATS_CACHE",
            "GLIMPSE_MAX_PENDING_BYTES",
            "GLIMPSE_MAX_LOG_BYTES",
            "GLIMPSE_RETENTION_DAYS",
            "GLIMPSE_COUNT_AUTOMATION",
            "GLIMPSE_DURABILITY",
        ] {
            command.env_remove(var);
        }
        let given = |flag: &str| extra_args.iter().any(|a| a.as_ref() == flag);
        if !given("--www-dir") {
            command.arg("--www-dir").arg(data_dir.join("no-www"));
        }
        if !given("--sdk-dir") {
            command.arg("--sdk-dir").arg(data_dir.join("no-sdk"));
        }
        let mut child = command.spawn().expect("spawn glimpse-server");
        let stdout = child.stdout.take().expect("piped stdout");
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let kept = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
                if kept.len() == LOG_LINES_KEPT {
                    kept.pop_front();
                }
                kept.push_back(line);
            }
        });
        let (tx, rx) = mpsc::channel();
        let (metrics_tx, metrics_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("glimpse-server listening on ") {
                    let _ = tx.send(url.trim().to_owned());
                }
                if let Some(url) = line.strip_prefix("glimpse-server metrics on ") {
                    let _ = metrics_tx.send(url.trim().to_owned());
                }
            }
        });
        let base_url = match rx.recv_timeout(STARTUP_DEADLINE) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!("glimpse-server did not print its address within {STARTUP_DEADLINE:?}");
            }
        };
        // Printed once the main address is, when metrics listen apart.
        let metrics_url = if given("--metrics-listen") {
            metrics_rx.recv_timeout(STARTUP_DEADLINE).ok()
        } else {
            None
        };
        let edge = Edge {
            child: Some(child),
            base_url,
            metrics_url,
            data_dir: data_dir.to_path_buf(),
            log,
        };
        edge.wait_until(STARTUP_DEADLINE, "/healthz answers", || {
            edge.get_raw("/healthz")
                .is_ok_and(|(status, _)| status == 200)
        });
        edge
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// A memory figure of the process from `/proc/<pid>/status`, in bytes:
    /// `VmRSS` (resident now) or `VmHWM` (the most it was ever resident).
    pub fn memory_bytes(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/<pid>/status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/<pid>/status"));
        kib * 1024
    }

    /// Polls `done` every 20 ms until it holds, failing the test at `deadline`.
    pub fn wait_until(&self, deadline: Duration, what: &str, mut done: impl FnMut() -> bool) {
        wait_until(deadline, what, &mut done)
    }

    /// SIGKILL by pid (no shutdown flush, no chance to finish a write),
    /// then reaps the process.
    pub fn kill_hard(mut self) {
        let mut child = self.child.take().expect("running");
        kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).expect("send SIGKILL");
        let status = child.wait().expect("wait for glimpse-server");
        assert!(!status.success(), "killed, yet exited with {status}");
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn terminate(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("send SIGTERM");
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("wait for glimpse-server") {
                return status;
            }
            if started.elapsed() > STARTUP_DEADLINE {
                let _ = child.kill();
                panic!("glimpse-server did not exit within {STARTUP_DEADLINE:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// A Prometheus counter of the edge's `/metrics`, 0 while absent: a
    /// labelled series is written from its first increment on.
    pub fn counter(&self, series: &str) -> u64 {
        self.series_value(series).unwrap_or(0)
    }

    /// A Prometheus gauge of the edge's `/metrics`, which the edge always
    /// writes; panics when it is absent.
    pub fn gauge(&self, series: &str) -> u64 {
        self.series_value(series)
            .unwrap_or_else(|| panic!("no {series} in the edge's /metrics"))
    }

    fn series_value(&self, series: &str) -> Option<u64> {
        let (status, text) = self.get_raw("/metrics").expect("GET /metrics");
        assert_eq!(status, 200, "{text}");
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    /// GET, any status; `Err` only when no answer came.
    pub fn get_raw(&self, path: &str) -> Result<(u16, String), String> {
        answer(agent().get(&self.url(path)).call())
    }

    /// GET with these extra headers, any status; `Err` only when no answer
    /// came.
    pub fn get_with_headers(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<(u16, String), String> {
        let mut request = agent().get(&self.url(path));
        for (name, value) in headers {
            request = request.set(name, value);
        }
        answer(request.call())
    }

    /// GET expecting 200 and a JSON body.
    pub fn get_json<T: DeserializeOwned>(&self, path: &str) -> T {
        let (status, body) = self
            .get_raw(path)
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// POSTs a batch as a beacon would (`text/plain`); returns status and JSON.
    pub fn post_batch(&self, body: &str) -> (u16, Value) {
        let result = agent()
            .post(&self.url("/v1/impressions"))
            .set("Content-Type", "text/plain;charset=UTF-8")
            .send_string(body);
        let (status, text) = answer(result).unwrap_or_else(|e| panic!("POST batch: {e}"));
        let json =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("POST batch: {e}: {text}"));
        (status, json)
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        // Printed from the test's thread, so the test harness shows it with
        // the failure.
        if std::thread::panicking() {
            let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
            eprintln!(
                "--- the edge at {} logged ({} last lines) ---",
                self.base_url,
                log.len()
            );
            for line in log.iter() {
                eprintln!("{line}");
            }
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// POSTs a batch to the edge at `base_url` without panicking: `Err` when no
/// answer came (e.g. the edge is stopping), for tests that retry elsewhere.
pub fn post_batch_at(base_url: &str, body: &str) -> Result<(u16, Value), String> {
    let result = agent()
        .post(&format!("{base_url}/v1/impressions"))
        .set("Content-Type", "text/plain;charset=UTF-8")
        .send_string(body);
    let (status, text) = answer(result)?;
    let json = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
    Ok((status, json))
}

/// The flags that put an edge on a single Redis.
pub fn redis_flags(url: &str) -> Vec<String> {
    ["--store", "redis", "--redis-url", url]
        .map(String::from)
        .to_vec()
}

/// The flags that put an edge on a Redis Cluster.
pub fn redis_cluster_flags(nodes: &str) -> Vec<String> {
    ["--store", "redis", "--redis-cluster-nodes", nodes]
        .map(String::from)
        .to_vec()
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build()
}

fn answer(result: Result<ureq::Response, ureq::Error>) -> Result<(u16, String), String> {
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => return Err(e.to_string()),
    };
    let status = response.status();
    let body = response.into_string().map_err(|e| e.to_string())?;
    Ok((status, body))
}

/// Polls `done` every 20 ms until it holds, failing the test at `deadline`.
pub fn wait_until(deadline: Duration, what: &str, done: &mut dyn FnMut() -> bool) {
    assert!(
        poll(deadline, done),
        "timed out after {deadline:?} waiting until {what}"
    );
}

/// Polls `read` every 20 ms until it answers `want`, failing the test at
/// `deadline` with the last answer.
pub fn wait_for_value<T: PartialEq + std::fmt::Debug>(
    deadline: Duration,
    what: &str,
    want: &T,
    read: &mut dyn FnMut() -> T,
) {
    let mut last = None;
    let arrived = poll(deadline, &mut || {
        let now = read();
        let done = now == *want;
        last = Some(now);
        done
    });
    assert!(
        arrived,
        "timed out after {deadline:?} waiting for {what} to be {want:?}: last {last:?}"
    );
}

/// Whether `done` held within `deadline`, asked every 20 ms.
pub(crate) fn poll(deadline: Duration, done: &mut dyn FnMut() -> bool) -> bool {
    let started = Instant::now();
    while !done() {
        if started.elapsed() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}
