//! What the SDK's browser tests share: an edge serving the built SDK and the
//! test pages, the counts it reports, and the calls into a test page.
//!
//! The pages are `tests/fixtures/browser/`; each defines the helpers named
//! here (`boot`, `tracker`).

use std::path::Path;
use std::time::Duration;

use glimpse_wire::api::StatsResponse;
use serde_json::{json, Value};

use crate::browser::{self, Browser};
use crate::edge::{wait_for_value, workspace_root, Edge};

/// How long events may take from the page to the edge's stats.
pub const DELIVERY_DEADLINE: Duration = Duration::from_secs(30);

/// Waits `ms` milliseconds of page time: the dwell of the viewability rule
/// is the behaviour under test, so this is no readiness wait.
pub fn pause(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// An edge serving the built SDK and the browser test pages, syncing every
/// 100 ms, with `extra` flags.
pub fn edge_with_sdk(dir: &Path, extra: &[&str]) -> Edge {
    edge_serving(dir, &browser::sdk_pkg(), extra)
}

/// [`edge_with_sdk`] serving the SDK found in `sdk` instead of the built one.
pub fn edge_serving(dir: &Path, sdk: &Path, extra: &[&str]) -> Edge {
    let www = workspace_root().join("tests/fixtures/browser");
    let mut args = vec![
        "--sdk-dir",
        sdk.to_str().expect("a UTF-8 path"),
        "--www-dir",
        www.to_str().expect("a UTF-8 path"),
        "--sync-interval",
        "100ms",
    ];
    args.extend_from_slice(extra);
    Edge::start(dir, &args)
}

/// (viewable, measurable) of `ad`, as the edge reports them.
pub fn counts(edge: &Edge, ad: &str) -> (u64, u64) {
    let s: StatsResponse = edge.get_json(&format!("/v1/ads/{ad}/stats"));
    (s.impressions, s.measurable)
}

/// Waits until the edge reports `want` = (viewable, measurable) for `ad`;
/// a failure names `what` and the counts last seen.
pub fn expect_counts(edge: &Edge, ad: &str, want: (u64, u64), what: &str) {
    wait_for_value(
        DELIVERY_DEADLINE,
        &format!("{what}: {ad}'s (viewable, measurable)"),
        &want,
        &mut || counts(edge, ad),
    );
}

/// Starts the page's tracker (`boot(options)`), failing on a rejection.
pub fn start_tracker(b: &Browser, options: Value) {
    let r = b.execute_async(
        "const done = arguments[1];
         boot(arguments[0]).then(() => done('ok'), e => done(String(e)));",
        vec![options],
    );
    assert_eq!(r, json!("ok"), "start failed");
}

/// `tracker.flush()`, waiting until it resolved.
pub fn flush(b: &Browser) {
    let r = b.execute_async(
        "const done = arguments[0]; tracker.flush().then(() => done('ok'), e => done(String(e)));",
        vec![],
    );
    assert_eq!(r, json!("ok"), "flush failed");
}

/// Places the test page's ad `id` (`place(...)` of the page) at `top`, of
/// `width` x `height` CSS pixels.
pub fn place(b: &Browser, id: &str, top: f64, width: u32, height: u32) {
    b.execute(
        "place(arguments[0], arguments[1], arguments[2], arguments[3]);",
        vec![json!(id), json!(top), json!(width), json!(height)],
    );
}
