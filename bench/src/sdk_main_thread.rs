//! Main-thread time of the SDK while a page of observed ads (1,000 unless
//! told) scrolls by,
//! in a real headless Chromium.
//!
//! Method: the fixture page (`fixture.html`) wraps, before the SDK loads,
//! every way the SDK can get called on the main thread — IntersectionObserver
//! and MutationObserver callbacks, `setTimeout`/`setInterval`,
//! `requestAnimationFrame` and event listeners — so each callback's duration
//! is summed with `performance.now()`. The page's own scrolling uses the saved
//! originals, so only the SDK's work is counted. The browser's own
//! intersection computation (layout, not script) is not included. Chromium
//! coarsens `performance.now()` to 100 us with jitter on a page that is not
//! cross-origin isolated, so single callbacks are imprecise and the sum is
//! the figure to read.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use glimpse_tests::browser::{self, Browser};
use serde_json::{json, Value};

use crate::procs::{sibling_binary, Server};

const FIXTURE: &str = include_str!("fixture.html");

/// Scrolls half a viewport every 100 ms (a brisk scroll) and pauses 1.2 s
/// every 20 steps (a reader stopping), so both the observer callbacks and the
/// SDK's one-second viewability timers run.
const SCROLL: &str = r#"
const done = arguments[arguments.length - 1];
window.__result = null;
window.__started.then(async (startMs) => {
  const sleep = (ms) => new Promise((r) => window.__orig.setTimeout(r, ms));
  await sleep(1500);
  const before = JSON.parse(JSON.stringify(window.__cost));
  const max = document.documentElement.scrollHeight - innerHeight;
  const step = Math.floor(innerHeight / 2);
  const t0 = performance.now();
  let steps = 0;
  for (let y = 0; y <= max + step; y += step) {
    window.scrollTo(0, Math.min(y, max));
    steps += 1;
    await sleep(steps % 20 === 0 ? 1200 : 100);
  }
  await sleep(1500);
  const after = JSON.parse(JSON.stringify(window.__cost));
  window.__result = { startMs, before, after, steps, scrollMs: performance.now() - t0, height: max };
}).catch((e) => { window.__result = { error: String(e) }; });
done(true);
"#;

/// Runs the scroll over a page of `ads` ads and reports the SDK's time.
pub fn measure(pkg: &Path, ads: usize) -> Result<String> {
    if !browser::available() {
        bail!("Chromium and chromedriver are needed: apt-get install -y chromium chromium-driver");
    }
    if !pkg.join("index.js").exists() {
        bail!("{} has no built SDK: run `cargo xtask sdk`", pkg.display());
    }
    let dir = tempfile::tempdir()?;
    let www = dir.path().join("www");
    std::fs::create_dir_all(&www)?;
    std::fs::write(www.join("index.html"), FIXTURE)?;
    let mut cmd = Command::new(sibling_binary("glimpse-server")?);
    cmd.arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--www-dir")
        .arg(&www)
        .arg("--sdk-dir")
        .arg(pkg)
        // The page runs in headless Chromium under chromedriver: counted as
        // people, so the edge does the work a real page would cost it.
        .arg("--count-automation")
        .env("RUST_LOG", "warn");
    let edge = Server::start("glimpse-server", cmd)?;
    let b = Browser::start();
    b.goto(&format!("http://{}/index.html?ads={ads}", edge.addr));
    b.execute_async(SCROLL, vec![]);
    let deadline = Instant::now() + Duration::from_secs(120);
    let result = loop {
        let r = b.execute("return window.__result;", vec![]);
        if !r.is_null() {
            break r;
        }
        if Instant::now() > deadline {
            bail!("the scroll did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    drop(b);
    edge.terminate()?;
    if let Some(e) = result.get("error") {
        bail!("the page failed: {e}");
    }
    report(&result, ads).context("reading the page's figures")
}

fn report(r: &Value, ads: usize) -> Option<String> {
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let (before, after) = (&r["before"], &r["after"]);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{ads} observed ads (300x250, 4 per row), scrolled top to bottom in {} steps over {:.1} s; SDK start (wasm load + observing every ad) {:.1} ms.\n",
        r["steps"],
        f(&r["scrollMs"]) / 1000.0,
        f(&r["startMs"]),
    );
    let _ = writeln!(out, "| callbacks | calls | main-thread ms |");
    let _ = writeln!(out, "|---|---:|---:|");
    let empty = json!({});
    let kinds = after["byKind"].as_object()?;
    for (kind, a) in kinds {
        let b = before["byKind"].get(kind).unwrap_or(&empty);
        let calls = f(&a["calls"]) - b["calls"].as_f64().unwrap_or(0.0);
        let ms = f(&a["ms"]) - b["ms"].as_f64().unwrap_or(0.0);
        let _ = writeln!(out, "| {kind} | {calls:.0} | {ms:.1} |");
    }
    let scrolling_ms = f(&after["ms"]) - f(&before["ms"]);
    let _ = writeln!(
        out,
        "| all, while scrolling ({ads} ads) | {:.0} | {scrolling_ms:.1} |",
        f(&after["calls"]) - f(&before["calls"]),
    );
    let _ = writeln!(
        out,
        "| per scroll step (of {}) | | {:.3} |",
        r["steps"],
        scrolling_ms / f(&r["steps"]),
    );
    let _ = writeln!(
        out,
        "| during start-up (observing {ads} ads) | {:.0} | {:.1} |",
        f(&before["calls"]),
        f(&before["ms"]),
    );
    let _ = writeln!(
        out,
        "\nLongest single callback: {:.1} ms.",
        f(&after["max"])
    );
    Some(out)
}
