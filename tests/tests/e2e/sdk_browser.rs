//! The browser SDK in real browsers of three engines (Chromium, Firefox,
//! WebKit) against a real edge: the viewability rule, the drop-in tag,
//! delivery on page close and through an outage. Counts are checked through
//! the edge's stats route. Each test runs once per engine
//! (`in_every_engine!`: `test_name::chromium`, `::firefox`, `::webkit`)
//! unless it says why it cannot.
//!
//! Dwell waits (`pause`) are the behaviour under test (the 1 s rule);
//! everything else (readiness, delivery) is polled with a deadline.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use glimpse_tests::browser::{self, Browser, Engine};
use glimpse_tests::edge::{wait_for_value, wait_until, workspace_binary, Edge, COUNT_AUTOMATION};
use glimpse_tests::sdk_page::{
    counts, edge_with_sdk, expect_counts, flush, pause, place, start_tracker, DELIVERY_DEADLINE,
};
use glimpse_wire::api::{AdsResponse, StatsResponse};
use serde_json::json;

fn scroll_to(b: &Browser, y: u32) {
    let at = b.execute("scrollTo(0, arguments[0]); return scrollY;", vec![json!(y)]);
    assert_eq!(at, json!(y));
}

glimpse_tests::in_every_engine! {
    fn viewability_rule_in_a_real_browser(engine) {
        let _one_at_a_time = browser::exclusive();
        let dir = tempfile::tempdir().unwrap();
        let edge = edge_with_sdk(dir.path(), &[COUNT_AUTOMATION]);
        let b = Browser::start_in(engine);
        b.goto(&edge.url("/ads.html"));
        let height = b.execute("return innerHeight;", vec![]).as_f64().unwrap();
        assert!(height > 400.0, "viewport height {height}");
        assert_eq!(
            b.execute("return document.hasFocus();", vec![]),
            json!(true)
        );

        // Observed at start: in view, below the fold, 40 % in view, and a large
        // (970x250 = 242,500 px) ad 35 % in view.
        place(&b, "visible", 0.0, 300, 250);
        place(&b, "below", 3000.0, 300, 250);
        place(&b, "forty", height - 100.0, 300, 250);
        place(&b, "large35", height - 87.5, 970, 250);
        start_tracker(
            &b,
            json!({"endpoint": "/v1/impressions", "flushIntervalMs": 600000, "maxBatch": 500}),
        );
        pause(1400);
        flush(&b);
        expect_counts(&edge, "visible", (1, 1), engine.name());
        expect_counts(&edge, "large35", (1, 1), engine.name());
        expect_counts(&edge, "below", (0, 1), engine.name());
        expect_counts(&edge, "forty", (0, 1), engine.name());

        // Below the fold: viewable once scrolled into view for a second.
        scroll_to(&b, 2900);
        pause(400);
        flush(&b);
        assert_eq!(counts(&edge, "below"), (0, 1), "not before a full second");
        pause(1000);
        flush(&b);
        expect_counts(&edge, "below", (1, 1), engine.name());

        // In view for 600 ms, then scrolled away: not viewable.
        place(&b, "away", 6000.0, 300, 250);
        scroll_to(&b, 5900);
        pause(600);
        scroll_to(&b, 0);
        pause(1200);
        flush(&b);
        expect_counts(&edge, "away", (0, 1), engine.name());

        // Inserted after load, in view: counted.
        place(&b, "inserted", 300.0, 300, 250);
        pause(1300);
        flush(&b);
        expect_counts(&edge, "inserted", (1, 1), engine.name());

        // Hidden 300 ms into the dwell: not viewable until visible again for a
        // full second.
        place(&b, "hidden", 100.0, 300, 250);
        pause(300);
        b.execute("setHidden(true);", vec![]);
        pause(1500);
        flush(&b);
        expect_counts(&edge, "hidden", (0, 1), engine.name());
        b.execute("setHidden(false);", vec![]);
        pause(500);
        flush(&b);
        assert_eq!(counts(&edge, "hidden"), (0, 1), "the clock restarted");
        pause(800);
        flush(&b);
        expect_counts(&edge, "hidden", (1, 1), engine.name());

        // Observing again (a re-render) never counts twice; nothing doubled.
        b.execute(
            "for (const el of document.querySelectorAll('[data-ad-id]')) tracker.observe(el);",
            vec![],
        );
        pause(1200);
        flush(&b);
        for (ad, want) in [
            ("visible", (1, 1)),
            ("large35", (1, 1)),
            ("below", (1, 1)),
            ("forty", (0, 1)),
            ("away", (0, 1)),
            ("inserted", (1, 1)),
            ("hidden", (1, 1)),
        ] {
            assert_eq!(counts(&edge, ad), want, "{ad}");
        }
    }
}

glimpse_tests::in_every_engine! {
    fn drop_in_tag_delivers_when_the_page_closes(engine) {
        let _one_at_a_time = browser::exclusive();
        let dir = tempfile::tempdir().unwrap();
        let edge = edge_with_sdk(dir.path(), &[COUNT_AUTOMATION]);
        let b = Browser::start_in(engine);
        b.goto(&edge.url("/tag.html"));
        wait_until(DELIVERY_DEADLINE, "the tag is ready", &mut || {
            b.execute("return window.readyFired && !!window.glimpse;", vec![]) == json!(true)
        });
        pause(1300);
        // Nothing was sent yet: flushes are every 10 minutes, batches 500 events.
        assert_eq!(counts(&edge, "tag-ad"), (0, 0));
        // Another tab of the site stays open, as the test is of what the SDK
        // sends as its page closes, not of Firefox ending a site's process
        // with its last tab (browser::FIREFOX_CLOSE_LOSES_BEACONS).
        b.open_spare_tab_on(&edge.url("/ads.html"));
        b.close_page();
        expect_counts(&edge, "tag-ad", (1, 1), engine.name());
    }
}

glimpse_tests::in_every_engine! {
    fn signed_ads_count_only_with_a_valid_token(engine) {
        let _one_at_a_time = browser::exclusive();
        let dir = tempfile::tempdir().unwrap();
        let edge = edge_with_sdk(
            dir.path(),
            &["--ad-signing-secret", "e2e-secret-of-at-least-thirty-two-bytes", COUNT_AUTOMATION],
        );
        let sign = |ad: &str| {
            let out = std::process::Command::new(workspace_binary("glimpse-server"))
                .args([
                    "sign-ad",
                    "--secret",
                    "e2e-secret-of-at-least-thirty-two-bytes",
                    "--ad-id",
                    ad,
                    "--ttl",
                    "1h",
                ])
                .output()
                .expect("run glimpse-server sign-ad");
            assert!(out.status.success(), "{out:?}");
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        };
        let token = sign("signed");
        let b = Browser::start_in(engine);
        b.goto(&edge.url("/ads.html"));
        b.execute(
            "place('signed', 0, 300, 250).dataset.adToken = arguments[0];
             place('unsigned', 0, 300, 250);",
            vec![json!(token)],
        );
        start_tracker(
            &b,
            json!({"endpoint": "/v1/impressions", "flushIntervalMs": 600000, "maxBatch": 500}),
        );
        pause(1400);
        flush(&b);
        expect_counts(&edge, "signed", (1, 1), engine.name());
        assert_eq!(counts(&edge, "unsigned"), (0, 0));

        // An ad refresh: the slot gets the next ad and that ad's token. The new
        // ad's impressions carry the new token, and nothing of the old ad is
        // sent with it.
        b.execute(
            "const el = document.querySelector('[data-ad-id=\"signed\"]');
             el.dataset.adToken = arguments[0];
             el.dataset.adId = 'signed-next';",
            vec![json!(sign("signed-next"))],
        );
        pause(1400);
        flush(&b);
        expect_counts(&edge, "signed-next", (1, 1), engine.name());
        assert_eq!(counts(&edge, "signed"), (1, 1));
        assert_eq!(
            edge.counter("glimpse_events_rejected_total{reason=\"invalid_token\"}"
            ),
            2,
            "the unsigned ad's two events only"
        );
    }
}

/// One ad in view for the dwell, in `b`, against an edge counting invalid
/// traffic; answers the stats once the events arrived.
fn view_one_ad(b: &Browser, edge: &Edge, ad: &str) -> StatsResponse {
    b.goto(&edge.url("/ads.html"));
    assert_eq!(
        b.execute("return navigator.webdriver;", vec![]),
        json!(true),
        "{}: WebDriver drives the page",
        b.engine()
    );
    place(b, ad, 0.0, 300, 250);
    start_tracker(
        b,
        json!({"endpoint": "/v1/impressions", "flushIntervalMs": 600000, "maxBatch": 500}),
    );
    pause(1400);
    flush(b);
    let mut last = None;
    wait_until(
        DELIVERY_DEADLINE,
        &format!("{ad}'s viewable and measurable events arrive"),
        &mut || {
            let s: StatsResponse = edge.get_json(&format!("/v1/ads/{ad}/stats"));
            let arrived = s.invalid + s.impressions + s.measurable == 2;
            last = Some(s);
            arrived
        },
    );
    last.unwrap()
}

/// Chromium only: what it checks is Chromium's, its own user agent
/// (`HeadlessChrome/...`) and a desktop Chrome one put in its place. Firefox
/// and WebKit send their usual desktop user agents when driven; their test
/// is `webdriver_is_automation_without_the_switch`.
#[test]
fn a_headless_browser_is_invalid_traffic_without_the_switch() {
    let _one_at_a_time = browser::exclusive();
    let dir = tempfile::tempdir().unwrap();
    // No COUNT_AUTOMATION: this edge judges its traffic as in production.
    let edge = edge_with_sdk(dir.path(), &[]);
    // Chromium's own user agent says HeadlessChrome; the second browser
    // claims to be desktop Chrome, so only the SDK's `webdriver: true`
    // gives it away.
    let desktop_chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
    for (ad, user_agent, shows) in [
        ("headless", None, "HeadlessChrome/"),
        ("webdriver", Some(desktop_chrome), desktop_chrome),
    ] {
        let b = match user_agent {
            None => Browser::start(),
            Some(ua) => Browser::start_with_user_agent(ua),
        };
        let ua = b.execute("return navigator.userAgent;", vec![]);
        assert!(ua.as_str().unwrap().contains(shows), "{ua}");
        let s = view_one_ad(&b, &edge, ad);
        assert_eq!(
            (s.impressions, s.measurable, s.unique_visitors, s.invalid),
            (0, 0, Some(0), 2),
            "{ad} ({ua})"
        );
        assert_eq!(s.viewability_rate, None);
        let today: Vec<u64> = s.days.iter().map(|d| d.invalid).collect();
        assert_eq!(today, [2], "{ad}: invalid per day");
        assert_eq!(s.days[0].impressions, 0);
    }
    let ads: AdsResponse = edge.get_json("/v1/ads");
    let listed: Vec<(&str, u64, u64, u64)> = ads
        .ads
        .iter()
        .map(|a| (a.ad_id.as_str(), a.impressions, a.measurable, a.invalid))
        .collect();
    assert_eq!(
        listed,
        [("headless", 0, 0, 2), ("webdriver", 0, 0, 2)],
        "/v1/ads"
    );
    // Every event the edge took in is one of those invalid ones.
    assert_eq!(edge.counter("glimpse_events_accepted_total"), 4);
    assert_eq!(
        edge.counter("glimpse_events_invalid_total{reason=\"automation\"}"),
        4
    );
}

/// Firefox and WebKit under WebDriver: an ordinary desktop user agent, so
/// only the SDK's `webdriver: true` gives them away. An edge judging traffic
/// as in production counts them as automation; one run with
/// `--count-automation` counts them as people.
fn driven_browser_counts_as_automation_unless_the_switch(engine: Engine) {
    let _one_at_a_time = browser::exclusive();
    let (dir, counting_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let production = edge_with_sdk(dir.path(), &[]);
    let counting = edge_with_sdk(counting_dir.path(), &[COUNT_AUTOMATION]);
    let b = Browser::start_in(engine);
    let ua = b.execute("return navigator.userAgent;", vec![]);
    let ua = ua.as_str().unwrap();
    assert!(
        !ua.contains("Headless") && ua.starts_with("Mozilla/5.0 (X11; Linux x86_64"),
        "{engine}: a desktop user agent: {ua}"
    );
    let s = view_one_ad(&b, &production, "driven");
    assert_eq!(
        (s.impressions, s.measurable, s.unique_visitors, s.invalid),
        (0, 0, Some(0), 2),
        "{engine}: without --count-automation"
    );
    assert_eq!(
        production.counter("glimpse_events_invalid_total{reason=\"automation\"}"),
        2
    );
    let s = view_one_ad(&b, &counting, "driven");
    assert_eq!(
        (s.impressions, s.measurable, s.unique_visitors, s.invalid),
        (1, 1, Some(1), 0),
        "{engine}: with --count-automation"
    );
}

mod webdriver_is_automation_without_the_switch {
    use super::*;

    #[test]
    fn firefox() {
        driven_browser_counts_as_automation_unless_the_switch(Engine::Firefox);
    }

    #[test]
    fn webkit() {
        driven_browser_counts_as_automation_unless_the_switch(Engine::WebKit);
    }
}

glimpse_tests::in_every_engine! {
    fn bad_options_throw_at_start(engine) {
        let _one_at_a_time = browser::exclusive();
        let dir = tempfile::tempdir().unwrap();
        let edge = edge_with_sdk(dir.path(), &[COUNT_AUTOMATION]);
        let b = Browser::start_in(engine);
        b.goto(&edge.url("/ads.html"));
        for (options, needle) in [
            (json!({}), "endpoint"),
            (
                json!({"endpoint": "/v1/impressions", "minVisibleRatio": 1.5}),
                "minVisibleRatio",
            ),
            (
                json!({"endpoint": "/v1/impressions", "minVisibleMs": -1}),
                "minVisibleMs",
            ),
        ] {
            let r = b.execute_async(
                // Not `instanceof Error`: Firefox's WebDriver runs this script
                // in a realm of its own, whose `Error` is not the page's.
                "const done = arguments[1];
                 const isError = e => Object.prototype.toString.call(e) === '[object Error]';
                 boot(arguments[0]).then(() => done('started'), e => done(isError(e) + ' ' + e.message));",
                vec![options.clone()],
            );
            let r = r.as_str().unwrap_or_default().to_string();
            assert!(
                r.starts_with("true ") && r.contains(needle),
                "{engine}: {options}: {r}"
            );
        }
    }
}

/// A TCP forwarder on a fixed loopback port that can be taken down (no
/// listener, live connections cut) and brought up again: the edge as the
/// browser sees it during an outage.
struct Switch {
    addr: SocketAddr,
    target: SocketAddr,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    accept: Option<JoinHandle<()>>,
}

impl Switch {
    fn new(target: SocketAddr) -> Switch {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        Switch {
            addr,
            target,
            stop: Arc::new(AtomicBool::new(false)),
            conns: Arc::new(Mutex::new(Vec::new())),
            accept: None,
        }
    }

    fn up(&mut self) {
        let listener = TcpListener::bind(self.addr).unwrap();
        listener.set_nonblocking(true).unwrap();
        self.stop.store(false, Ordering::SeqCst);
        let (stop, conns, target) = (self.stop.clone(), self.conns.clone(), self.target);
        self.accept = Some(std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let mut list = conns.lock().unwrap();
                list.push(client.try_clone().unwrap());
                list.push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16 * 1024];
                        while let Ok(n @ 1..) = from.read(&mut buf) {
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Write);
                    });
                }
            }
        }));
    }

    fn down(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            t.join().unwrap();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        self.down();
    }
}

/// An edge with the SDK, a [`Switch`] in front of it (down until `up`), a
/// browser of `engine` on the edge's ad page, and the endpoint through the
/// switch, for a tracker to send to.
fn ads_page_behind_a_switch(engine: Engine, dir: &Path) -> (Edge, Switch, Browser, String) {
    let edge = edge_with_sdk(dir, &[COUNT_AUTOMATION]);
    let target: SocketAddr = edge.base_url.trim_start_matches("http://").parse().unwrap();
    let switch = Switch::new(target);
    let b = Browser::start_in(engine);
    b.goto(&edge.url("/ads.html"));
    let endpoint = format!("http://{}/v1/impressions", switch.addr);
    (edge, switch, b, endpoint)
}

glimpse_tests::in_every_engine! {
    fn edge_down_during_a_flush_then_up_delivers_once(engine) {
        let _one_at_a_time = browser::exclusive();
        let dir = tempfile::tempdir().unwrap();
        let (edge, mut switch, b, endpoint) = ads_page_behind_a_switch(engine, dir.path());
        place(&b, "outage", 0.0, 300, 250);
        start_tracker(
            &b,
            json!({"endpoint": endpoint, "flushIntervalMs": 600000, "maxBatch": 500}),
        );
        pause(1300);
        // The edge is unreachable during the flush: the batch waits for a retry.
        flush(&b);
        assert_eq!(counts(&edge, "outage"), (0, 0));
        switch.up();
        // The batch that waited holds the measurable event, and the viewable
        // one too unless the dwell ended after the first flush (a loaded
        // machine): each flush sends what is queued, so flush until both
        // have arrived.
        wait_for_value(
            Duration::from_secs(30),
            &format!("{}: outage's (viewable, measurable)", engine.name()),
            &(1, 1),
            &mut || {
                flush(&b);
                counts(&edge, "outage")
            },
        );
        // Retries stop once acknowledged; nothing is counted twice.
        pause(1500);
        flush(&b);
        assert_eq!(counts(&edge, "outage"), (1, 1));
        let pending = b.execute(
            "return Object.keys(localStorage).filter(k => k.startsWith('glimpse.q.')).length;",
            vec![],
        );
        assert_eq!(pending, json!(0), "the acknowledged batch left storage");
    }
}

/// The lines of the SDK's stored queues that hold events of ad `ad`.
const STORED_LINES_OF: &str = "const ad = JSON.stringify(arguments[0]);
     return Object.keys(localStorage).filter(k => k.startsWith('glimpse.q.'))
       .flatMap(k => localStorage.getItem(k).split('\\n'))
       .filter(line => line.includes('\"ad_id\":' + ad));";

glimpse_tests::in_every_engine! {
    fn a_gone_tab_s_batches_are_sent_by_the_next_and_a_live_tab_s_are_not(engine) {
        let _one_at_a_time = browser::exclusive();
        let dir = tempfile::tempdir().unwrap();
        // Down until the last tracker: the first two only store.
        let (edge, mut switch, b, endpoint) = ads_page_behind_a_switch(engine, dir.path());
        b.execute("localStorage.clear();", vec![]);
        let options = json!({"endpoint": endpoint, "flushIntervalMs": 600000, "maxBatch": 500});
        // One ad per tracker, stopped once its viewable event is stored
        // (a stopped tracker keeps its batches stored and holds no lock,
        // so the second takes over the first's).
        for ad in ["gone-tab", "live-tab"] {
            b.execute("document.querySelectorAll('.ad').forEach(e => e.remove());", vec![]);
            place(&b, ad, 0.0, 300, 250);
            start_tracker(&b, options.clone());
            wait_until(DELIVERY_DEADLINE, &format!("{engine}: {ad} viewable, stored"), &mut || {
                flush(&b);
                let lines = b.execute(STORED_LINES_OF, vec![json!(ad)]);
                lines.as_array().unwrap().iter().any(|l| l.as_str().unwrap().contains("\"viewable\""))
            });
            b.execute("tracker.stop();", vec![]);
        }
        // The two ads' batches as two tabs' queues, and no ad on the page
        // for the next trackers: `gone`'s tab holds no lock, `live`'s holds
        // its lock in this page (the lock's name is the SDK's,
        // `sdk/js/locks.js`).
        let stored = b.execute(
            &format!(
                "const of = (ad) => (function () {{ {STORED_LINES_OF} }}).call(null, ad);
                 const gone = of('gone-tab'), live = of('live-tab');
                 document.querySelectorAll('.ad').forEach(e => e.remove());
                 Object.keys(localStorage).filter(k => k.startsWith('glimpse.')).forEach(k => localStorage.removeItem(k));
                 localStorage.setItem('glimpse.q.gone', gone.join('\\n'));
                 localStorage.setItem('glimpse.q.live', live.join('\\n'));
                 navigator.locks.request('glimpse.tab.live', () => new Promise(r => window.releaseLive = r));
                 return [gone.length > 0, live.length > 0];"
            ),
            vec![],
        );
        assert_eq!(stored, json!([true, true]), "{engine}");
        switch.up();
        let queues = "return Object.keys(localStorage).filter(k => k.startsWith('glimpse.q.')).sort();";

        // A new tracker takes over the gone tab's batches and sends them,
        // and leaves the live tab's where they are.
        start_tracker(&b, options.clone());
        wait_for_value(DELIVERY_DEADLINE, &format!("{engine}: gone-tab's counts"), &(1, 1), &mut || {
            flush(&b);
            counts(&edge, "gone-tab")
        });
        flush(&b);
        assert_eq!(counts(&edge, "live-tab"), (0, 0), "{engine}");
        assert_eq!(b.execute(queues, vec![]), json!(["glimpse.q.live"]), "{engine}");

        // Once that tab is gone too, the next tracker sends its batches.
        b.execute("tracker.stop(); releaseLive();", vec![]);
        start_tracker(&b, options);
        wait_for_value(DELIVERY_DEADLINE, &format!("{engine}: live-tab's counts"), &(1, 1), &mut || {
            flush(&b);
            counts(&edge, "live-tab")
        });
        flush(&b);
        assert_eq!(counts(&edge, "gone-tab"), (1, 1), "{engine}: counted once");
        assert_eq!(b.execute(queues, vec![]), json!([]), "{engine}");
    }
}

/// The budget of what the drop-in tag loads, gzip -9 (README, SDK).
const SDK_BUDGET_GZIP_BYTES: usize = 25_006;

#[test]
fn sdk_size_is_within_budget() {
    let pkg = browser::sdk_pkg();
    // What the tag loads: itself, and the content-hashed module and wasm it
    // names (a page importing the npm module loads the same bytes under
    // the package's names, without the tag).
    let hashed: Vec<String> = std::fs::read_dir(&pkg)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("glimpse-") && (n.ends_with(".js") || n.ends_with(".wasm")))
        .collect();
    assert_eq!(
        hashed.len(),
        2,
        "one hashed module and one hashed wasm: {hashed:?}"
    );
    let tag = std::fs::read_to_string(pkg.join("glimpse.js")).unwrap();
    let mut total = 0;
    for name in hashed.iter().map(String::as_str).chain(["glimpse.js"]) {
        assert!(
            name == "glimpse.js" || tag.contains(name),
            "the tag names {name}"
        );
        let raw = std::fs::read(pkg.join(name)).unwrap();
        let n = browser::gzip9(&raw);
        eprintln!("{name}: {} bytes, gzip -9 {n}", raw.len());
        total += n;
    }
    eprintln!("what the tag loads, gzip -9: {total} bytes");
    assert!(
        total <= SDK_BUDGET_GZIP_BYTES,
        "the SDK is {total} bytes gzip -9; the budget is {SDK_BUDGET_GZIP_BYTES}"
    );
}
