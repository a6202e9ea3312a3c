//! Server processes a benchmark starts. Each is stopped through its own pid
//! (SIGTERM, then SIGKILL after a deadline) and killed on drop.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const DEADLINE: Duration = Duration::from_secs(60);

/// A binary built beside the running one (`target/<profile>/NAME`), unless
/// `GLIMPSE_BENCH_BIN_DIR` names another directory.
pub fn sibling_binary(name: &str) -> Result<PathBuf> {
    let dir = match std::env::var_os("GLIMPSE_BENCH_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let exe = std::env::current_exe().context("current executable")?;
            let mut dir = exe.parent().context("executable directory")?.to_path_buf();
            // Test executables live one level down, in deps/.
            if dir.ends_with("deps") {
                dir.pop();
            }
            dir
        }
    };
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} is missing: build it first (cargo build --release --workspace)",
            path.display()
        );
    }
    Ok(path)
}

/// A running server that printed `... listening on http://ADDR`.
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    pub name: String,
    pub addr: SocketAddr,
}

impl Server {
    /// Spawns `command` and waits for its `listening on http://` line.
    pub fn start(name: &str, mut command: Command) -> Result<Server> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {name}: {command:?}"))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some((_, url)) = line.split_once(" listening on http://") {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let addr = match rx.recv_timeout(DEADLINE) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{name} did not print its address within {DEADLINE:?}");
            }
        };
        let addr: SocketAddr = addr.parse().with_context(|| format!("{name} address"))?;
        if !addr.ip().is_loopback() {
            bail!("{name} listens on {addr}, not a loopback address");
        }
        Ok(Server {
            child: Some(child),
            name: name.to_owned(),
            addr,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// User + system CPU seconds the process has used so far.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds_of(format!("/proc/{}/stat", self.pid())).unwrap_or(f64::NAN)
    }

    /// SIGTERM to this process only, then waits for it to exit.
    pub fn terminate(mut self) -> Result<()> {
        let mut child = self.child.take().expect("running");
        if let Err(e) = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM) {
            let _ = child.kill();
            let _ = child.wait();
            bail!("SIGTERM to {}: {e}", self.name);
        }
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    bail!("{} exited with {status} after SIGTERM", self.name);
                }
                return Ok(());
            }
            if started.elapsed() > DEADLINE {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{} did not exit within {DEADLINE:?} of SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// utime + stime of a `/proc/<pid>/stat` file, in seconds.
pub fn cpu_seconds_of(stat_path: impl AsRef<Path>) -> Option<f64> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    // Fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux architecture this runs on.
    Some(ticks as f64 / 100.0)
}

/// CPU seconds of this process (the load generator) so far.
pub fn own_cpu_seconds() -> f64 {
    cpu_seconds_of("/proc/self/stat").unwrap_or(f64::NAN)
}
