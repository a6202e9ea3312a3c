//! The browser SDK's delivery against a real edge: batches split by the
//! edge's ad limit, clocks that are wrong, consent, bad arguments, events the
//! edge rejects, the back/forward cache, and a wasm that cannot load.
//!
//! Dwell waits (`pause`) are the behaviour under test (the 1 s rule);
//! everything else (readiness, delivery) is polled with a deadline.

use std::path::Path;

use glimpse_tests::browser::{self, Browser};
use glimpse_tests::edge::{wait_until, Edge, COUNT_AUTOMATION};
use glimpse_tests::sdk_page::{
    counts, edge_serving, edge_with_sdk, expect_counts, flush, pause, place, start_tracker,
    DELIVERY_DEADLINE,
};
use glimpse_wire::api::{AdsResponse, StatsResponse};
use serde_json::{json, Value};

/// Options of a tracker that sends only when flushed.
const START: &str =
    r#"{"endpoint": "/v1/impressions", "flushIntervalMs": 600000, "maxBatch": 500}"#;

fn options(extra: Value) -> Value {
    let mut o: Value = serde_json::from_str(START).unwrap();
    if let (Some(o), Some(extra)) = (o.as_object_mut(), extra.as_object()) {
        o.extend(extra.clone());
    }
    o
}

/// Records, in the page, every warning, uncaught error and unhandled
/// rejection, and what `console.log` said.
fn watch_console(b: &Browser) {
    b.execute(
        "window.warnings = []; window.logs = []; window.failures = [];
         const warn = console.warn, log = console.log;
         console.warn = (...a) => { warnings.push(a.map(String).join(' ')); warn.apply(console, a); };
         console.log = (...a) => { logs.push(a.map(String).join(' ')); log.apply(console, a); };
         addEventListener('error', e => failures.push('error: ' + e.message));
         addEventListener('unhandledrejection', e => failures.push('unhandled: ' + e.reason));",
        vec![],
    );
}

fn failures(b: &Browser) -> Value {
    b.execute("return window.failures;", vec![])
}

/// The SDK's keys in the page's localStorage.
fn stored_keys(b: &Browser) -> Value {
    b.execute(
        "return Object.keys(localStorage).filter(k => k.startsWith('glimpse.')).sort();",
        vec![],
    )
}

glimpse_tests::in_every_engine! {
    fn a_hundred_ads_in_view_at_once_all_count(engine) {
        let _one_at_a_time = browser::exclusive();
        let b = &Browser::start_in(engine);
        let dir = tempfile::tempdir().unwrap();
        let edge = edge_with_sdk(dir.path(), &[COUNT_AUTOMATION]);
        b.goto(&edge.url("/ads.html"));
        // A 10 x 10 grid of 100 x 50 ads, all in the viewport.
        b.execute(
            "for (let i = 0; i < 100; i++) {
               const ad = place('grid-' + i, 10 + Math.floor(i / 10) * 60, 100, 50);
               ad.style.left = (10 + (i % 10) * 110) + 'px';
             }",
            vec![],
        );
        start_tracker(b, options(json!({})));
        pause(1400);
        flush(b);
        let mut last = Vec::new();
        wait_until(
            DELIVERY_DEADLINE,
            &format!("{engine}: 100 ads count 1 viewable and 1 measurable each"),
            &mut || {
                let ads: AdsResponse = edge.get_json("/v1/ads");
                last = ads
                    .ads
                    .iter()
                    .map(|a| (a.ad_id.clone(), a.impressions, a.measurable))
                    .collect();
                last.len() == 100 && last.iter().all(|(_, v, m)| (*v, *m) == (1, 1))
            },
        );
        // No batch was refused for naming too many ads.
        assert_eq!(
            edge.counter("glimpse_batches_rejected_total{reason=\"too_many_ads\"}"
            ),
            0,
            "{engine}"
        );
        assert_eq!(
            edge.counter("glimpse_events_accepted_total"),
            200,
            "{engine}"
        );
    }
}

glimpse_tests::in_every_engine! {
    fn a_client_clock_minutes_fast_or_hours_slow_counts(engine) {
        let _one_at_a_time = browser::exclusive();
        let b = &Browser::start_in(engine);
        let dir = tempfile::tempdir().unwrap();
        let edge = edge_with_sdk(dir.path(), &[COUNT_AUTOMATION]);
        for (ad, skew_ms) in [("fast-10min", 600_000i64), ("slow-3h", -3 * 3_600_000)] {
            b.goto(&edge.url("/ads.html"));
            b.execute(
                "const skew = arguments[0], real = Date.now;
                 Date.now = () => real() + skew;",
                vec![json!(skew_ms)],
            );
            place(b, ad, 0.0, 300, 250);
            start_tracker(b, options(json!({})));
            pause(1400);
            flush(b);
            expect_counts(&edge, ad, (1, 1), engine.name());
        }
        assert_eq!(
            edge.counter("glimpse_events_rejected_total{reason=\"ts_out_of_window\"}"
            ),
            0,
            "{engine}"
        );
    }
}

glimpse_tests::in_every_engine! {
    fn consent_off_flushes_stores_nothing_and_can_be_given_or_withdrawn(engine) {
        let _one_at_a_time = browser::exclusive();
        let b = &Browser::start_in(engine);
        let dir = tempfile::tempdir().unwrap();
        let edge = edge_with_sdk(dir.path(), &[COUNT_AUTOMATION]);
        b.goto(&edge.url("/ads.html"));
        // Keys a previous visit left: opting out deletes them even now.
        b.execute(
            "localStorage.clear();
             localStorage.setItem('glimpse.uid', 'earlier-visitor');
             localStorage.setItem('glimpse.q.oldtab', '');
             localStorage.setItem('publisher.own', 'kept');",
            vec![],
        );
        watch_console(b);
        place(b, "consent", 0.0, 300, 250);
        // The tag's attribute values for "off", in any case.
        start_tracker(b, options(json!({"consent": "Off"})));
        pause(1400);
        flush(b);
        assert_eq!(counts(&edge, "consent"), (0, 0), "{engine}: nothing sent");
        assert_eq!(
            stored_keys(b),
            json!(["glimpse.q.oldtab", "glimpse.uid"]),
            "{engine}: nothing stored"
        );

        // Given at run time: counting and sending start.
        b.execute("tracker.setConsent(true);", vec![]);
        pause(1400);
        flush(b);
        expect_counts(&edge, "consent", (1, 1), engine.name());

        // Withdrawn: what is stored goes, and nothing more is sent.
        place(b, "after-withdrawal", 300.0, 300, 250);
        b.execute("tracker.setConsent(false);", vec![]);
        assert_eq!(stored_keys(b), json!([]), "{engine}: stored keys deleted");
        pause(1400);
        flush(b);
        b.execute("tracker.pageview();", vec![]);
        flush(b);
        assert_eq!(counts(&edge, "after-withdrawal"), (0, 0), "{engine}");
        assert_eq!(
            edge.counter("glimpse_events_accepted_total"),
            2,
            "{engine}"
        );
        assert_eq!(
            b.execute("return localStorage.getItem('publisher.own');", vec![]),
            json!("kept"),
            "{engine}: the page's own keys stay"
        );
        assert_eq!(failures(b), json!([]), "{engine}");

        // A fresh page that starts without consent and opts out.
        b.goto(&edge.url("/ads.html"));
        b.execute(
            "localStorage.setItem('glimpse.uid', 'earlier-visitor');
             localStorage.setItem('glimpse.q.oldtab', '');",
            vec![],
        );
        start_tracker(b, options(json!({"consent": false})));
        flush(b);
        b.execute("tracker.optOut();", vec![]);
        assert_eq!(
            stored_keys(b),
            json!([]),
            "{engine}: optOut without consent"
        );
    }
}

glimpse_tests::in_every_engine! {
    fn bad_arguments_to_every_method_throw_nothing_into_the_page(engine) {
        let _one_at_a_time = browser::exclusive();
        let b = &Browser::start_in(engine);
        let dir = tempfile::tempdir().unwrap();
        let edge = edge_with_sdk(dir.path(), &[COUNT_AUTOMATION]);
        b.goto(&edge.url("/ads.html"));
        watch_console(b);
        start_tracker(b, options(json!({"debug": true})));
        let thrown = b.execute_async(
            "const done = arguments[0];
             const thrown = [];
             // Slots without data-ad-id: the one to count, and one far below.
             const slot = (top) => {
               const el = document.createElement('div');
               el.style.cssText = 'position:absolute;left:0;top:' + top + 'px;width:300px;height:250px';
               return document.body.appendChild(el);
             };
             const el = slot(0), below = slot(5000);
             const notElements = [undefined, null, 42, 'div', {}, [], true, NaN, Symbol('x'),
                                  () => 1, document, document.createTextNode('t'),
                                  new Proxy({}, {})];
             const notIds = [{}, [], true, NaN, Infinity, Symbol('x'), () => 1, document];
             const calls = [];
             for (const x of notElements) {
               calls.push(['observe', [x]], ['observe', [x, 'ad']], ['observe', [x, x]],
                          ['observePost', [x]], ['observePost', [x, 'post']],
                          ['unobserve', [x]], ['setConsent', [x]], ['pageview', [x]],
                          ['flush', [x]], ['refresh', [x]]);
             }
             for (const x of notIds) calls.push(['observe', [below, x]], ['observePost', [below, x]]);
             calls.push(['observe', []], ['unobserve', []], ['setConsent', []],
                        ['observe', [below, 'a b']], ['observe', [below, 'x'.repeat(129)]],
                        ['observe', [below, 1e21]]);
             const pending = [];
             for (const [name, args] of calls) {
               try {
                 const r = tracker[name](...args);
                 if (name == 'flush') pending.push(r);
               } catch (e) { thrown.push(name + ': ' + e); }
             }
             // Unbound, as `const { observe } = tracker` in a component.
             const { observe, flush } = tracker;
             try { observe(el, 42); pending.push(flush()); } catch (e) { thrown.push('unbound: ' + e); }
             Promise.all(pending).then(() => done(thrown), e => done(thrown.concat(['flush rejected: ' + e])));",
            vec![],
        );
        assert_eq!(thrown, json!([]), "{engine}: thrown into the page");
        // observe(el, 42) is the ad "42".
        pause(1400);
        flush(b);
        expect_counts(&edge, "42", (1, 1), engine.name());
        // Let any rejection and error reach its listeners.
        flush(b);
        assert_eq!(failures(b), json!([]), "{engine}");
        let warnings = b.execute("return window.warnings;", vec![]);
        let said = |needle: &str| {
            warnings
                .as_array()
                .unwrap()
                .iter()
                .any(|w| w.as_str().unwrap_or_default().contains(needle))
        };
        assert!(said("observe() needs an Element"), "{engine}: {warnings}");
        assert!(
            said("setConsent(consent) needs a boolean"),
            "{engine}: {warnings}"
        );
        for method in ["observe", "observePost"] {
            assert!(
                said(&format!("{method}() needs string ids")),
                "{engine}: {warnings}"
            );
        }
    }
}

glimpse_tests::in_every_engine! {
    fn rejected_events_are_logged_and_never_resent(engine) {
        let _one_at_a_time = browser::exclusive();
        let b = &Browser::start_in(engine);
        let dir = tempfile::tempdir().unwrap();
        let edge = edge_with_sdk(
            dir.path(),
            &[
                "--ad-signing-secret",
                "e2e-secret-of-at-least-thirty-two-bytes",
            ],
        );
        b.goto(&edge.url("/ads.html"));
        watch_console(b);
        // A token of the right form that the edge's secret did not sign.
        b.execute(
            "place('forged', 0, 300, 250).dataset.adToken = '4102444800.0123abcd';",
            vec![],
        );
        start_tracker(b, options(json!({"debug": true})));
        pause(1400);
        flush(b);
        let rejected = "glimpse_events_rejected_total{reason=\"invalid_token\"}";
        edge.wait_until(DELIVERY_DEADLINE, "the edge rejected both events", || {
            edge.counter(rejected) == 2
        });
        // Flushed again and again, and hidden: nothing goes out twice.
        flush(b);
        b.execute("setHidden(true); setHidden(false);", vec![]);
        flush(b);
        assert_eq!(edge.counter(rejected), 2, "{engine}");
        assert_eq!(
            edge.counter("glimpse_batches_duplicate_total"),
            0,
            "{engine}"
        );
        assert_eq!(counts(&edge, "forged"), (0, 0), "{engine}");
        let queued = b.execute(
            "return Object.keys(localStorage).filter(k => k.startsWith('glimpse.q.')).length;",
            vec![],
        );
        assert_eq!(queued, json!(0), "{engine}: nothing left to send");
        // Debug mode said which events and why.
        let logs = b.execute(
            "return logs.filter(l => l.includes('the edge rejected an event'));",
            vec![],
        );
        let logs = logs.as_array().unwrap();
        assert_eq!(logs.len(), 2, "{engine}: {logs:?}");
        assert!(
            logs.iter().all(|l| l.as_str().unwrap().contains("token")),
            "{engine}: {logs:?}"
        );
    }
}

/// How many pages with the SDK may be left for the back/forward cache
/// before it counts as keeping them out.
const BFCACHE_TRIES: usize = 3;

/// Whether `bfcache.html` (with the SDK started when `sdk`) comes back
/// from the back/forward cache after a visit to another page, which goes
/// back by itself. The page tells the edge how each showing came about, so
/// no WebDriver command meets a page between two documents (WebKit's
/// driver can hang then).
fn restored_from_bfcache(b: &Browser, edge: &Edge, run: &str, sdk: bool) -> bool {
    let query = if sdk { "&sdk" } else { "" };
    b.goto(&edge.url(&format!("/bfcache.html?run={run}{query}")));
    let loaded = format!("{run}-loaded");
    let restored = format!("{run}-restored");
    expect_counts(edge, &loaded, (0, 1), b.engine().name());
    if sdk {
        // The tracker counted and sent: it holds its lock and a queue.
        expect_counts(edge, &format!("{run}-ad"), (1, 1), b.engine().name());
    }
    b.goto(&edge.url("/plain.html?back"));
    let mut shown = (0, 0);
    wait_until(
        DELIVERY_DEADLINE,
        &format!("{}: {run} shown again", b.engine()),
        &mut || {
            shown = (counts(edge, &restored).1, counts(edge, &loaded).1);
            shown != (0, 1)
        },
    );
    assert!(
        shown == (1, 1) || shown == (0, 2),
        "{}: {run} shown as (restored, loaded) {shown:?}",
        b.engine()
    );
    shown == (1, 1)
}

glimpse_tests::in_every_engine! {
    fn a_page_with_the_sdk_is_restored_from_the_back_forward_cache(engine) {
        let _one_at_a_time = browser::exclusive();
        let b = &Browser::start_in(engine);
        let dir = tempfile::tempdir().unwrap();
        let edge = edge_with_sdk(dir.path(), &[COUNT_AUTOMATION]);
        if !restored_from_bfcache(b, &edge, "without", false) {
            eprintln!(
                "{engine}: a page without the SDK is not restored from the back/forward cache \
                 either (headless, under WebDriver); nothing more to check here"
            );
            return;
        }
        // A browser may evict any page from its cache (memory pressure, a
        // busy machine), so a page with the SDK gets three tries; one the
        // SDK kept out (an `unload` listener, a held connection) is never
        // restored, so three misses still fail.
        let run = (1..=BFCACHE_TRIES)
            .map(|attempt| format!("with{attempt}"))
            .find(|run| restored_from_bfcache(b, &edge, run, true))
            .unwrap_or_else(|| {
                panic!("{engine}: the SDK kept the page out of the back/forward cache")
            });
        // The restored page still counts, once.
        let after = format!("{run}-after");
        b.execute(&format!("place('{after}', 300);"), vec![]);
        expect_counts(&edge, &after, (1, 1), engine.name());
        assert_eq!(counts(&edge, &format!("{run}-ad")), (1, 1), "{engine}");
    }
}

/// The SDK in `sdk/pkg` without its wasm, as a server missing the file
/// (or a blocker refusing it) would serve it.
fn sdk_without_wasm(dir: &Path) -> std::path::PathBuf {
    let pkg = browser::sdk_pkg();
    let broken = dir.join("sdk-without-wasm");
    std::fs::create_dir_all(&broken).unwrap();
    for entry in std::fs::read_dir(&pkg).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy();
        if name.ends_with(".js") {
            std::fs::copy(&path, broken.join(&*name)).unwrap();
        }
    }
    broken
}

/// Checks the inert tracker of a page whose wasm did not load: every
/// method there and doing nothing, one warning, nothing thrown.
fn check_inert(b: &Browser, edge: &Edge, engine: browser::Engine, how: &str) {
    let methods = b.execute("return Object.keys(window.tracker).sort();", vec![]);
    assert_eq!(
        methods,
        json!([
            "flush",
            "observe",
            "observePost",
            "optOut",
            "pageview",
            "refresh",
            "setConsent",
            "stop",
            "unobserve"
        ]),
        "{engine} ({how})"
    );
    let r = b.execute_async(
        "const done = arguments[0];
         try {
           tracker.observe(document.body, 'x');
           tracker.observePost(document.body, 'p');
           tracker.pageview();
           tracker.setConsent(true);
           tracker.flush().then(() => done('resolved'), e => done('rejected ' + e));
         } catch (e) { done('threw ' + e); }",
        vec![],
    );
    assert_eq!(r, json!("resolved"), "{engine} ({how})");
    // A second start answers the same tracker, without a second warning.
    let same = b.execute_async(
        "const done = arguments[0];
         import('/sdk/index.js').then(m => m.start({endpoint: '/v1/impressions'}))
           .then(t => done(t === window.tracker), e => done(String(e)));",
        vec![],
    );
    assert_eq!(same, json!(true), "{engine} ({how})");
    let warnings = b.execute(
        "return warnings.filter(w => w.startsWith('glimpse:'));",
        vec![],
    );
    assert_eq!(
        warnings.as_array().map(Vec::len),
        Some(1),
        "{engine} ({how}): {warnings}"
    );
    assert!(
        warnings[0].as_str().unwrap().contains("could not load"),
        "{engine} ({how}): {warnings}"
    );
    assert_eq!(failures(b), json!([]), "{engine} ({how})");
    assert_eq!(
        edge.counter("glimpse_events_accepted_total"),
        0,
        "{engine} ({how})"
    );
}

glimpse_tests::in_every_engine! {
    fn start_resolves_to_an_inert_tracker_when_the_wasm_cannot_load(engine) {
        let _one_at_a_time = browser::exclusive();
        let b = &Browser::start_in(engine);
        // The wasm file is missing (404).
        let dir = tempfile::tempdir().unwrap();
        let broken = sdk_without_wasm(dir.path());
        let edge = edge_serving(dir.path(), &broken, &[COUNT_AUTOMATION]);
        b.goto(&edge.url("/ads.html"));
        watch_console(b);
        start_tracker(b, options(json!({})));
        check_inert(b, &edge, engine, "wasm missing");

        // A Content-Security-Policy without 'wasm-unsafe-eval', the SDK
        // started by the drop-in tag.
        let dir = tempfile::tempdir().unwrap();
        let edge = edge_with_sdk(dir.path(), &[COUNT_AUTOMATION]);
        b.goto(&edge.url("/csp.html"));
        let refused = b.execute_async("const done = arguments[0]; wasmRefused.then(done);", vec![]);
        if refused != json!(true) {
            eprintln!("{engine}: compiles wasm despite a CSP without 'wasm-unsafe-eval'; the CSP case checks nothing more");
            return;
        }
        wait_until(
            DELIVERY_DEADLINE,
            "the tag's tracker ran its calls",
            &mut || b.execute("return !!window.result;", vec![]) == json!(true),
        );
        b.execute("window.tracker = window.glimpse;", vec![]);
        let result = b.execute("return window.result;", vec![]);
        assert_eq!(
            result["flushed"],
            json!("resolved"),
            "{engine} (CSP): {result}"
        );
        check_inert(b, &edge, engine, "CSP");
    }
}

/// The edge corrects a batch's events by its `sent_at` (the SDK's
/// clock when it sent them), as a browser would send them, without one.
#[test]
fn the_edge_corrects_a_skewed_batch_by_its_sent_at() {
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start(dir.path(), &["--sync-interval", "100ms"]);
    let clock = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    let now = clock();
    let batch = |id: &str, ad: &str, client_now: i64, sent_at: bool| {
        let sent_at = if sent_at {
            format!(r#""sent_at":{client_now},"#)
        } else {
            String::new()
        };
        format!(
            r#"{{{sent_at}"batch_id":"{id}","events":[{{"id":"e1","ad_id":"{ad}","user_id":"u","kind":"measurable","ts":{}}},{{"id":"e2","ad_id":"{ad}","user_id":"u","kind":"viewable","ts":{},"verified":true}}]}}"#,
            client_now - 2_000,
            client_now - 1_000
        )
    };
    // Ten minutes fast: refused one by one without sent_at, counted with it.
    let (status, answer) = edge.post_batch(&batch("b1", "skew-fast", now + 600_000, false));
    assert_eq!(status, 202);
    assert_eq!(answer["accepted"], json!(0), "{answer}");
    assert!(
        answer["rejected"][0]["error"]
            .as_str()
            .unwrap()
            .contains("more than 5 min after"),
        "{answer}"
    );
    let (status, answer) = edge.post_batch(&batch("b2", "skew-fast", now + 600_000, true));
    assert_eq!((status, &answer["accepted"]), (202, &json!(2)), "{answer}");
    // Three days slow: too old without sent_at, counted with it.
    let slow = now - 3 * 86_400_000;
    let (_, answer) = edge.post_batch(&batch("b3", "skew-slow", slow, false));
    assert_eq!(answer["accepted"], json!(0), "{answer}");
    let (_, answer) = edge.post_batch(&batch("b4", "skew-slow", slow, true));
    assert_eq!(answer["accepted"], json!(2), "{answer}");
    // A sent_at that is not a whole number refuses the batch.
    let (status, answer) = edge.post_batch(r#"{"batch_id":"b5","sent_at":"soon","events":[{}]}"#);
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        answer["error"]["code"],
        json!("invalid_sent_at"),
        "{answer}"
    );
    let days = [now, clock()].map(|ms| glimpse_wire::Day::from_epoch_ms(ms).unwrap());
    for ad in ["skew-fast", "skew-slow"] {
        let mut last = (0, 0);
        edge.wait_until(DELIVERY_DEADLINE, &format!("{ad} counts (1, 1)"), || {
            last = counts(&edge, ad);
            last == (1, 1)
        });
        // On the edge's day, whatever the client's clock said.
        let s: StatsResponse = edge.get_json(&format!("/v1/ads/{ad}/stats"));
        let counted: Vec<_> = s.days.iter().filter(|d| d.measurable > 0).collect();
        assert_eq!(counted.len(), 1, "{ad}: {:?}", s.days);
        assert!(
            days.contains(&counted[0].date),
            "{ad}: counted on {}, the edge's day is {}",
            counted[0].date,
            days[0]
        );
    }
}
