//! What the SDK counts on pages built the way real ad pages are, in a real
//! browser against a real edge: slots an ad server fills (or empties) after
//! the fact, ads hidden by CSS, covered ads, single-page apps, remounts, ad
//! refreshes, prerendering, frames and campaigns. Counts are read from the
//! edge's stats routes; what the page sent is read from its own record of
//! each body.
//!
//! Dwell waits (`pause`) are the behaviour under test (the 1 s rule);
//! everything else is polled with a deadline.

use std::sync::MutexGuard;

use glimpse_tests::browser::{self, Browser, Engine};
use glimpse_tests::edge::{wait_until, Edge, COUNT_AUTOMATION};
use glimpse_tests::in_every_engine;
use glimpse_tests::sdk_page::{
    counts, edge_with_sdk, expect_counts, flush, pause, start_tracker, DELIVERY_DEADLINE,
};
use glimpse_wire::api::{CampaignStatsResponse, StatsResponse};
use serde_json::{json, Value};

/// Flushes only when a test says so, in batches that hold everything.
fn options() -> Value {
    json!({"endpoint": "/v1/impressions", "flushIntervalMs": 600000, "maxBatch": 500})
}

/// One engine's browser and its own edge, for one test at a time.
struct Session {
    b: Browser,
    edge: Edge,
    _dir: tempfile::TempDir,
    _one_at_a_time: MutexGuard<'static, ()>,
}

fn session(engine: Engine) -> Session {
    let one_at_a_time = browser::exclusive();
    assert!(
        engine.available(),
        "the browser tests need {} and its WebDriver (cargo xtask test installs them)",
        engine.name()
    );
    let dir = tempfile::tempdir().unwrap();
    let edge = edge_with_sdk(dir.path(), &[COUNT_AUTOMATION]);
    Session {
        b: Browser::start_in(engine),
        edge,
        _dir: dir,
        _one_at_a_time: one_at_a_time,
    }
}

/// Loads the counting page with its slots in place (by `setup`, a script)
/// and starts the tracker; returns the viewport's height.
fn counting_page(b: &Browser, edge: &Edge, setup: &str) -> f64 {
    b.goto(&edge.url("/counting.html"));
    let height = b.execute("return innerHeight;", vec![]).as_f64().unwrap();
    assert!(height > 400.0, "viewport height {height}");
    b.execute(setup, vec![json!(height)]);
    start_tracker(b, options());
    height
}

in_every_engine! {
    fn slots_filled_emptied_or_resized_after_the_page_loads(engine) {
        let s = session(engine);
        let (b, edge, engine) = (&s.b, &s.edge, engine.name());
        counting_page(
            b,
            edge,
            "const h = arguments[0];
             place('fill-in-view', 0, 0, 0);
             place('fill-below', 3000, 0, 0);
             place('collapses', 0, 300, 250).style.left = '400px';
             // 100 px of 250 in view: 40%, too little for a small ad.
             place('grows-large', h - 100, 300, 250);",
        );
        pause(300);
        flush(b);
        for ad in ["fill-in-view", "fill-below"] {
            assert_eq!(counts(edge, ad), (0, 0), "{engine}: {ad} has no box yet");
        }
        // The creatives arrive (and one slot is emptied) with no scroll.
        b.execute(
            "resize(slot('fill-in-view'), 300, 250);
             resize(slot('fill-below'), 300, 250);
             resize(slot('collapses'), 0, 0);
             // 970x250 = 242,500 px: a large ad, for which 30% is enough.
             resize(slot('grows-large'), 970, 250);",
            vec![],
        );
        pause(1400);
        flush(b);
        for (ad, want) in [
            ("fill-in-view", (1, 1)),
            ("fill-below", (0, 1)),
            ("collapses", (0, 1)),
            ("grows-large", (1, 1)),
        ] {
            expect_counts(edge, ad, want, engine);
        }
        // Shrunk back to a small ad, 40% in view: not enough any more.
        b.execute(
            "place('shrinks', arguments[0] - 100, 970, 250);",
            vec![json!(b.execute("return innerHeight;", vec![]))],
        );
        pause(300);
        b.execute("resize(slot('shrinks'), 300, 250);", vec![]);
        pause(1400);
        flush(b);
        expect_counts(edge, "shrinks", (0, 1), engine);
    }
}

/// Slots that CSS hides, each in view, and one shown in view as control.
const HIDDEN_BY_CSS: &str = "
    const at = (el, left, top) => { el.style.left = left + 'px'; el.style.top = top + 'px'; return el; };
    at(place('shown', 0, 300, 250), 0, 0);
    at(place('visibility-hidden', 0, 300, 250), 320, 0).style.visibility = 'hidden';
    at(place('opacity-0', 0, 300, 250), 640, 0).style.opacity = '0';
    at(place('content-visibility', 0, 300, 250), 960, 0).style.contentVisibility = 'hidden';
    const wrap = (left, css) => {
        const w = document.createElement('div');
        w.style.cssText = 'position:absolute;top:300px;left:' + left + 'px;width:300px;height:250px;' + css;
        document.body.appendChild(w);
        return w;
    };
    at(place('ancestor-hidden', 0, 300, 250, wrap(0, 'visibility:hidden')), 0, 0);
    at(place('ancestor-transparent', 0, 300, 250, wrap(320, 'opacity:0')), 0, 0);
    // Shown at first, hidden 300 ms into its dwell.
    at(place('hidden-later', 0, 300, 250), 640, 300);";

in_every_engine! {
    fn ads_hidden_by_css_are_measurable_and_not_viewable(engine) {
        let s = session(engine);
        let (b, edge, engine) = (&s.b, &s.edge, engine.name());
        for (variant, prefix, before) in [
            ("checkVisibility", "check", ""),
            // The fallback of browsers without it: computed styles.
            (
                "computed styles",
                "styles",
                "delete Element.prototype.checkVisibility;",
            ),
        ] {
            let what = format!("{engine}, {variant}");
            // Each variant on its own ad ids.
            let setup = format!(
                "{before} {}",
                HIDDEN_BY_CSS.replace("place('", &format!("place('{prefix}-"))
            );
            counting_page(b, edge, &setup);
            let ad = |name: &str| format!("{prefix}-{name}");
            pause(300);
            b.execute(
                "slot(arguments[0]).style.visibility = 'hidden';",
                vec![json!(ad("hidden-later"))],
            );
            pause(1200);
            flush(b);
            expect_counts(edge, &ad("shown"), (1, 1), &what);
            for hidden in [
                "visibility-hidden",
                "opacity-0",
                "content-visibility",
                "ancestor-hidden",
                "ancestor-transparent",
                "hidden-later",
            ] {
                expect_counts(edge, &ad(hidden), (0, 1), &what);
            }
            // Shown by a style change while in view: viewable after its dwell.
            b.execute(
                "slot(arguments[0]).style.opacity = '1';",
                vec![json!(ad("opacity-0"))],
            );
            pause(1400);
            flush(b);
            expect_counts(edge, &ad("opacity-0"), (1, 1), &what);
            assert_eq!(counts(edge, &ad("visibility-hidden")), (0, 1), "{what}");
        }
    }
}

in_every_engine! {
    fn a_covered_ad_is_viewable_and_only_an_uncovered_one_verified(engine) {
        let s = session(engine);
        let (b, edge, engine) = (&s.b, &s.edge, engine.name());
        counting_page(
            b,
            edge,
            "place('uncovered', 0, 300, 250);
             place('covered', 300, 300, 250);
             const cover = document.createElement('div');
             cover.className = 'cover';
             cover.style.cssText = 'top:300px;width:300px;height:250px';
             document.body.appendChild(cover);",
        );
        pause(1400);
        flush(b);
        expect_counts(edge, "uncovered", (1, 1), engine);
        // Occlusion never decides what is viewable.
        expect_counts(edge, "covered", (1, 1), engine);
        let verified: Value = b.execute(
            "const v = {};
             for (const e of sentEvents()) if (e.kind === 'viewable') v[e.ad_id] = e.verified;
             return [v.uncovered === undefined ? 'absent' : v.uncovered,
                     v.covered === undefined ? 'absent' : v.covered];",
            vec![],
        );
        let has_v2 = b.execute(
            "return 'isVisible' in IntersectionObserverEntry.prototype;",
            vec![],
        ) == json!(true);
        if has_v2 {
            assert_eq!(verified, json!([true, "absent"]), "{engine}");
        } else {
            // Without IntersectionObserver v2 the field is never sent.
            assert_eq!(verified, json!(["absent", "absent"]), "{engine}");
        }
        assert_eq!(
            has_v2,
            engine == "chromium",
            "IntersectionObserver v2 in {engine}"
        );
        // The edge counts what the browser vouched for.
        for (ad, want) in [("uncovered", u64::from(has_v2)), ("covered", 0)] {
            let stats: StatsResponse = edge.get_json(&format!("/v1/ads/{ad}/stats"));
            assert_eq!(stats.verified, want, "{engine}: {ad} verified");
        }
    }
}

/// The single-page app of `spa.html` (README's example), ready.
fn spa(b: &Browser, edge: &Edge) {
    b.goto(&edge.url("/spa.html"));
    wait_until(DELIVERY_DEADLINE, "the app started", &mut || {
        b.execute("return !!window.spa;", vec![]) == json!(true)
    });
}

fn spa_flush(b: &Browser) {
    let r = b.execute_async(
        "const done = arguments[0]; spa.tracker.flush().then(() => done('ok'), e => done(String(e)));",
        vec![],
    );
    assert_eq!(r, json!("ok"));
}

in_every_engine! {
    fn a_single_page_app_counts_each_slot_once_per_page_view(engine) {
        let s = session(engine);
        let (b, edge, engine) = (&s.b, &s.edge, engine.name());
        spa(b, edge);
        pause(1400);
        spa_flush(b);
        expect_counts(edge, "spa-banner", (1, 1), engine);
        expect_counts(edge, "spa-home", (1, 1), engine);

        // Vue's order: pageview(), then the new view. The home slot leaves
        // and never counts again; the banner stays and counts again.
        b.execute("spa.navigate('/article');", vec![]);
        pause(1400);
        spa_flush(b);
        expect_counts(edge, "spa-article", (1, 1), engine);
        expect_counts(edge, "spa-banner", (2, 2), engine);
        assert_eq!(
            counts(edge, "spa-home"),
            (1, 1),
            "{engine}: the removed slot"
        );

        // React's order: the new view, then pageview() in the same task.
        b.execute("spa.navigate('/', {pageviewFirst: false});", vec![]);
        pause(1400);
        spa_flush(b);
        expect_counts(edge, "spa-home", (2, 2), engine);
        expect_counts(edge, "spa-banner", (3, 3), engine);
        assert_eq!(
            counts(edge, "spa-article"),
            (1, 1),
            "{engine}: the removed slot"
        );

        // A link: the router's hashchange, Vue's order again.
        b.execute("location.hash = '#/article';", vec![]);
        pause(1400);
        spa_flush(b);
        expect_counts(edge, "spa-article", (2, 2), engine);
        expect_counts(edge, "spa-banner", (4, 4), engine);
        assert_eq!(
            counts(edge, "spa-home"),
            (2, 2),
            "{engine}: the removed slot"
        );
    }
}

in_every_engine! {
    fn remounts_count_once_and_a_refresh_counts_again(engine) {
        let s = session(engine);
        let (b, edge, engine) = (&s.b, &s.edge, engine.name());
        spa(b, edge);
        pause(1400);
        spa_flush(b);
        expect_counts(edge, "spa-home", (1, 1), engine);
        // StrictMode's effect, cleanup, effect on one element.
        b.execute("spa.mountStrict('spa-strict');", vec![]);
        // A keyed remount of a slot that counted already, and of one 300 ms
        // into its dwell: a new element for the same ad each time.
        b.execute("spa.remount('spa-home');", vec![]);
        b.execute(
            "document.getElementById('view').insertAdjacentHTML('beforeend',
                 '<div class=\"ad box\" data-ad-id=\"spa-keyed\"></div>');",
            vec![],
        );
        pause(300);
        b.execute("spa.remount('spa-keyed');", vec![]);
        pause(1400);
        spa_flush(b);
        expect_counts(edge, "spa-strict", (1, 1), engine);
        expect_counts(edge, "spa-keyed", (1, 1), engine);
        assert_eq!(counts(edge, "spa-home"), (1, 1), "{engine}: remounted");
        // The home ad refreshed in place: a second opportunity.
        b.execute("spa.refreshAd('spa-home');", vec![]);
        pause(1400);
        spa_flush(b);
        expect_counts(edge, "spa-home", (2, 2), engine);
        for ad in ["spa-strict", "spa-keyed", "spa-banner"] {
            assert_eq!(counts(edge, ad), (1, 1), "{engine}: {ad} was not refreshed");
        }
    }
}

in_every_engine! {
    fn a_prerendered_page_counts_and_stores_nothing_until_shown(engine) {
        let s = session(engine);
        let (b, edge, engine) = (&s.b, &s.edge, engine.name());
        b.goto(&edge.url("/counting.html"));
        // A prerendered document (Chromium's speculation rules make one;
        // here the page stands in for it in every engine).
        b.execute(
            "localStorage.clear();
             window.prerendered = true;
             Object.defineProperty(document, 'prerendering', {configurable: true, get: () => window.prerendered});
             place('prerendered', 0, 300, 250);",
            vec![],
        );
        start_tracker(b, options());
        pause(1400);
        flush(b);
        let stored = |b: &Browser| {
            b.execute(
                "return Object.keys(localStorage).filter(k => k.startsWith('glimpse.')).length;",
                vec![],
            )
        };
        assert_eq!(stored(b), json!(0), "{engine}: stored while prerendered");
        assert_eq!(
            b.execute("return sent.length;", vec![]),
            json!(0),
            "{engine}"
        );
        assert_eq!(counts(edge, "prerendered"), (0, 0), "{engine}");
        // Shown: counting and storing start.
        b.execute(
            "window.prerendered = false;
             document.dispatchEvent(new Event('prerenderingchange'));",
            vec![],
        );
        pause(1400);
        flush(b);
        expect_counts(edge, "prerendered", (1, 1), engine);
        assert_ne!(
            stored(b),
            json!(0),
            "{engine}: the visitor id is stored now"
        );
    }
}

/// Loads `frame-host.html` with `frame.html?ad=AD` from `origin` in its
/// frame, and waits until the frame's tracker runs.
fn framed(b: &Browser, edge: &Edge, origin: &str, ad: &str) {
    let port = edge.base_url.rsplit(':').next().unwrap();
    let src = format!("http://{origin}:{port}/frame.html?ad={ad}");
    b.goto(&edge.url(&format!("/frame-host.html?src={src}")));
    wait_until(DELIVERY_DEADLINE, "the frame's tracker runs", &mut || {
        b.execute("return window.frameReady;", vec![]) == json!(true)
    });
    assert_eq!(
        b.execute(
            "return [document.hasFocus(), window.frameHasFocus];",
            vec![]
        ),
        json!([true, false]),
        "the tab's focus is in the top-level document, not in the frame"
    );
}

fn flush_frame(b: &Browser) {
    let r = b.execute_async(
        "const done = arguments[0]; flushFrame().then(() => done('ok'));",
        vec![],
    );
    assert_eq!(r, json!("ok"));
}

in_every_engine! {
    fn inside_a_frame_the_tab_s_focus_decides(engine) {
        let s = session(engine);
        let (b, edge, engine) = (&s.b, &s.edge, engine.name());
        // Same origin: the frame asks the top-level document for focus.
        framed(b, edge, "127.0.0.1", "same-origin");
        pause(1400);
        flush_frame(b);
        expect_counts(edge, "same-origin", (1, 1), engine);

        // The tab loses focus 0 to 100 ms into the dwell: nothing is
        // viewable until it is back for a full second.
        framed(b, edge, "127.0.0.1", "tab-blurred");
        b.execute("setTabFocus(false);", vec![]);
        pause(1400);
        flush_frame(b);
        expect_counts(edge, "tab-blurred", (0, 1), engine);
        b.execute("setTabFocus(true);", vec![]);
        pause(1400);
        flush_frame(b);
        expect_counts(edge, "tab-blurred", (1, 1), engine);

        // Another origin (localhost is not 127.0.0.1): the top-level
        // document is out of reach, so visibility alone decides.
        framed(b, edge, "localhost", "cross-origin");
        pause(1400);
        flush_frame(b);
        expect_counts(edge, "cross-origin", (1, 1), engine);
    }
}

/// (viewable, measurable) of `campaign`, as the edge reports them.
fn campaign_counts(edge: &Edge, campaign: &str) -> (u64, u64) {
    let s: CampaignStatsResponse = edge.get_json(&format!("/v1/campaigns/{campaign}/stats"));
    (s.impressions, s.measurable)
}

/// `(id, campaign_id)` of every event the page sent about `id` (an ad's or
/// a post's); `campaign_id` is `null` when the event had none.
fn campaigns_sent(b: &Browser, id: &str) -> Vec<Value> {
    let sent = b.execute(
        "return sentEvents()
             .filter((e) => (e.ad_id || e.post_id) === arguments[0])
             .map((e) => e.campaign_id === undefined ? null : e.campaign_id);",
        vec![json!(id)],
    );
    sent.as_array().unwrap().clone()
}

in_every_engine! {
    fn each_event_of_a_slot_names_its_campaign(engine) {
        let s = session(engine);
        let (b, edge, engine) = (&s.b, &s.edge, engine.name());
        counting_page(
            b,
            edge,
            "place('camp-attr', 0, 100, 50).dataset.campaignId = 'acme-fall-run';
             place('camp-none', 60, 100, 50);
             place('camp-bad', 120, 100, 50).dataset.campaignId = 'not a campaign id';
             const post = place('unused', 180, 100, 50);
             delete post.dataset.adId;
             post.dataset.postId = 'camp-post';
             post.dataset.campaignId = 'acme-fall-run';",
        );
        // The option overrides the attribute; a bad option refuses the
        // slot, and nothing is thrown into the page.
        let thrown = b.execute(
            "const el = (top, campaign) => {
                 const d = document.createElement('div');
                 d.className = 'ad';
                 d.style.cssText = 'top:' + top + 'px;width:100px;height:50px';
                 if (campaign) d.dataset.campaignId = campaign;
                 document.body.appendChild(d);
                 return d;
             };
             const thrown = [];
             try {
                 tracker.observe(el(240, 'overridden'), 'camp-opt', { campaignId: 'orbit-roam-free' });
                 tracker.observe(el(300), 'camp-opt-bad', { campaignId: 'no spaces' });
                 tracker.observe(el(360), 'camp-opt-number', { campaignId: 2026 });
             } catch (e) { thrown.push(String(e)); }
             return thrown;",
            vec![],
        );
        assert_eq!(thrown, json!([]), "{engine}: thrown into the page");
        pause(1400);
        flush(b);
        // The edge takes the events with their campaign, and counts them.
        for ad in ["camp-attr", "camp-none", "camp-opt", "camp-opt-number"] {
            expect_counts(edge, ad, (1, 1), engine);
        }
        // Counted in the same cut as their ads: for their campaigns too.
        for campaign in ["acme-fall-run", "orbit-roam-free", "2026"] {
            assert_eq!(campaign_counts(edge, campaign), (1, 1), "{engine}: {campaign}");
        }
        for (id, campaign) in [
            ("camp-attr", json!("acme-fall-run")),
            ("camp-opt", json!("orbit-roam-free")),
            ("camp-opt-number", json!("2026")),
            ("camp-none", Value::Null),
            // A post has no campaign, whatever its element says.
            ("camp-post", Value::Null),
        ] {
            assert_eq!(
                campaigns_sent(b, id),
                vec![campaign; 2],
                "{engine}: {id}'s measurable and viewable events"
            );
        }
        for ad in ["camp-bad", "camp-opt-bad"] {
            assert_eq!(campaigns_sent(b, ad), Vec::<Value>::new(), "{engine}: {ad}");
            assert_eq!(counts(edge, ad), (0, 0), "{engine}: {ad} is not followed");
        }
        // Refilled with another ad of another campaign: the campaign is
        // read again; refilled with a bad campaign, the slot is dropped.
        b.execute(
            "const a = slot('camp-attr');
             a.dataset.campaignId = 'lumen-mornings';
             a.dataset.adId = 'camp-refill';
             const n = slot('camp-none');
             n.dataset.campaignId = 'bad campaign';
             n.dataset.adId = 'camp-refill-bad';",
            vec![],
        );
        pause(1400);
        flush(b);
        expect_counts(edge, "camp-refill", (1, 1), engine);
        assert_eq!(campaign_counts(edge, "lumen-mornings"), (1, 1), "{engine}");
        assert_eq!(campaign_counts(edge, "acme-fall-run"), (1, 1), "{engine}");
        assert_eq!(
            campaigns_sent(b, "camp-refill"),
            vec![json!("lumen-mornings"); 2],
            "{engine}: the refilled ad's events"
        );
        assert_eq!(
            campaigns_sent(b, "camp-attr"),
            vec![json!("acme-fall-run"); 2],
            "{engine}: the first ad's events keep its campaign"
        );
        assert_eq!(counts(edge, "camp-refill-bad"), (0, 0), "{engine}");
        assert_eq!(campaigns_sent(b, "camp-refill-bad"), Vec::<Value>::new(), "{engine}");
    }
}
