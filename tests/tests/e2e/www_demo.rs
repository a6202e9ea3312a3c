//! The demo as its two users see it, in a real headless Chromium against a
//! real edge: a visitor scrolls the feed (which embeds the SDK with the
//! drop-in tag only) through several pages at a human pace and closes it;
//! the stats route then reports, per ad, exactly the viewable impressions the
//! scroll produced, and the advertiser's dashboard shows the same numbers.
//!
//! The test decides what it expects from the page's own geometry: at every
//! stop it measures each ad's visible share and holds the stop for 1.5 s, so
//! ads above their threshold there must count once; between stops it scrolls
//! at 2,500 px/s, so no ad stays in view for a second in transit and ads only
//! passed must count as measurable, never viewable.
//!
//! Screenshots of the feed (overlay on) and the dashboard, at desktop and
//! mobile widths, are written to `tests/artifacts/`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use glimpse_tests::browser::{self, Browser};
use glimpse_tests::edge::{wait_until, workspace_root, Edge, COUNT_AUTOMATION};
use glimpse_wire::api::AdsResponse;
use serde::Deserialize;
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(30);
/// How long each stop is held: the 1 s rule plus room for timer slack.
const HOLD_MS: u64 = 1_500;
/// Scrolling between stops: 300 px every 120 ms, a brisk flick. An ad is
/// over its threshold for at most about 820 px of scrolling, so in transit it
/// stays in view for about 0.33 s: under the 1 s rule even if a loaded
/// machine delays the page's timers threefold.
const SCROLL_STEP_PX: u32 = 300;
const SCROLL_EVERY_MS: u32 = 120;
/// A stop is only used when every ad's visible share is at least this far
/// from its threshold, so sub-pixel layout cannot flip the expectation.
const RATIO_MARGIN: f64 = 0.08;

#[derive(Debug, Deserialize)]
struct AdView {
    id: String,
    top: f64,
    height: f64,
    ratio: f64,
    required: f64,
}

fn ad_views(b: &Browser) -> Vec<AdView> {
    let views = b.execute(
        r#"
        const vw = document.documentElement.clientWidth;
        const vh = document.documentElement.clientHeight;
        return [...document.querySelectorAll('[data-ad-id]')].map(el => {
          const r = el.getBoundingClientRect();
          const area = r.width * r.height;
          const w = Math.max(0, Math.min(r.right, vw) - Math.max(r.left, 0));
          const h = Math.max(0, Math.min(r.bottom, vh) - Math.max(r.top, 0));
          return {
            id: el.dataset.adId,
            top: r.top + scrollY,
            height: r.height,
            ratio: area > 0 ? (w * h) / area : 0,
            required: area >= 242500 ? 0.3 : 0.5,
          };
        });"#,
        vec![],
    );
    serde_json::from_value(views).expect("ad views")
}

/// Scrolls towards `y` in steps, in the page, and answers where it stopped.
fn scroll_at_human_pace(b: &Browser, y: f64) -> f64 {
    let at = b.execute_async(
        r#"
        const [target, step, every, done] = arguments;
        const timer = setInterval(() => {
          const from = scrollY;
          const next = from < target ? Math.min(target, from + step) : Math.max(target, from - step);
          scrollTo(0, next);
          if (Math.abs(scrollY - target) < 1 || scrollY === from) {
            clearInterval(timer);
            done(scrollY);
          }
        }, every);"#,
        vec![json!(y.round()), json!(SCROLL_STEP_PX), json!(SCROLL_EVERY_MS)],
    );
    at.as_f64().expect("scrollY")
}

/// Holds the page still at a stop whose every ad is clearly above or below
/// its threshold, nudging the stop down until it is; answers the ads held
/// in view.
fn hold_stop(b: &Browser) -> BTreeSet<String> {
    for _ in 0..20 {
        let views = ad_views(b);
        let ambiguous = views
            .iter()
            .any(|v| v.ratio > 0.0 && (v.ratio - v.required).abs() < RATIO_MARGIN);
        if !ambiguous {
            std::thread::sleep(Duration::from_millis(HOLD_MS));
            // The page did not move while held.
            let after = ad_views(b);
            for (a, z) in views.iter().zip(&after) {
                assert!(
                    (a.ratio - z.ratio).abs() < 1e-6,
                    "{} moved during the hold",
                    a.id
                );
            }
            return views
                .into_iter()
                .filter(|v| v.ratio >= v.required)
                .map(|v| v.id)
                .collect();
        }
        let y: f64 = b.execute("return scrollY;", vec![]).as_f64().unwrap();
        scroll_at_human_pace(b, y + 40.0);
    }
    panic!("found no stop without an ad at the edge of its threshold");
}

fn artifacts() -> PathBuf {
    workspace_root().join("tests/artifacts")
}

fn start_edge(dir: &Path, store_args: &[&str]) -> Edge {
    let pkg = browser::sdk_pkg();
    let www = workspace_root().join("www");
    let mut args = vec![
        "--www-dir",
        www.to_str().unwrap(),
        "--sdk-dir",
        pkg.to_str().unwrap(),
        "--sync-interval",
        "200ms",
        COUNT_AUTOMATION,
    ];
    args.extend_from_slice(store_args);
    Edge::start(dir, &args)
}

fn new_browser(width: u32, height: u32) -> Browser {
    assert!(
        browser::available(),
        "the browser tests need Debian's chromium and chromium-driver (cargo xtask test installs them)"
    );
    Browser::start_with_size(width, height)
}

fn open_feed(b: &Browser, edge: &Edge, query: &str) {
    b.goto(&edge.url(&format!("/?delay=0{query}")));
    wait_until(DEADLINE, "the SDK started on the feed", &mut || {
        b.execute("return !!window.glimpse;", vec![]) == json!(true)
    });
}

/// Reads the ads table of the dashboard once it has loaded.
fn dashboard_impressions(b: &Browser, edge: &Edge) -> BTreeMap<String, u64> {
    b.goto(&edge.url("/dashboard?live=0"));
    wait_until(DEADLINE, "the dashboard loaded", &mut || {
        b.execute(
            "return document.querySelector('main')?.dataset.state;",
            vec![],
        ) == json!("ready")
    });
    let rows = b.execute(
        r#"return [...document.querySelectorAll('#ads-table tr[data-ad-id]')].map(tr => [
             tr.dataset.adId,
             Number(tr.querySelector('[data-field="impressions"]').dataset.value)]);"#,
        vec![],
    );
    serde_json::from_value::<Vec<(String, u64)>>(rows)
        .expect("dashboard rows")
        .into_iter()
        .collect()
}

/// The whole flow on one store, labelled for messages and artifacts.
fn scroll_close_and_count(store_args: &[&str], label: &str) {
    let _one_at_a_time = browser::exclusive();
    let dir = tempfile::tempdir().unwrap();
    let edge = start_edge(dir.path(), store_args);
    let b = new_browser(browser::WIDTH, browser::HEIGHT);
    b.open_spare_tab();
    open_feed(&b, &edge, "");

    // The first screen, then three ads further down, one per page, each
    // centred and held; everything between is only passed.
    let mut held: BTreeSet<String> = hold_stop(&b);
    for target in [
        "lumen-coffee-0",
        "orbit-banner-1",
        "pixel-travel-2",
        "acme-shoes-4",
    ] {
        let mut views = ad_views(&b);
        // Scroll down until the page holding the target has loaded.
        wait_until(DEADLINE, &format!("{target} is on the page"), &mut || {
            if views.iter().any(|v| v.id == target) {
                return true;
            }
            let bottom: f64 = b
                .execute(
                    "return document.documentElement.scrollHeight - innerHeight;",
                    vec![],
                )
                .as_f64()
                .unwrap();
            scroll_at_human_pace(&b, bottom);
            views = ad_views(&b);
            false
        });
        let ad = views.iter().find(|v| v.id == target).unwrap();
        let viewport: f64 = b
            .execute("return document.documentElement.clientHeight;", vec![])
            .as_f64()
            .unwrap();
        let y = ad.top - (viewport - ad.height) / 2.0;
        scroll_at_human_pace(&b, y.max(0.0));
        let in_view = hold_stop(&b);
        assert!(
            in_view.contains(target),
            "{target} is not in view at its stop"
        );
        held.extend(in_view);
    }
    let loaded: BTreeSet<String> = ad_views(&b).into_iter().map(|v| v.id).collect();
    assert!(
        loaded.len() >= 16,
        "only {} ads loaded: the feed did not scroll",
        loaded.len()
    );
    assert!(
        held.len() < loaded.len(),
        "every ad was held: the test proves nothing"
    );
    b.close_page();

    let expected: BTreeMap<String, (u64, u64)> = loaded
        .iter()
        .map(|id| (id.clone(), (u64::from(held.contains(id)), 1)))
        .collect();
    let mut reported = BTreeMap::new();
    wait_until(DEADLINE, "the stats route reports every ad", &mut || {
        let ads: AdsResponse = edge.get_json("/v1/ads");
        reported = ads
            .ads
            .iter()
            .map(|a| (a.ad_id.clone(), (a.impressions, a.measurable)))
            .collect();
        reported == expected
    });
    assert_eq!(
        reported, expected,
        "{label}: stats (viewable, measurable) per ad"
    );

    let dashboard = dashboard_impressions(&b, &edge);
    let want: BTreeMap<String, u64> = expected
        .iter()
        .map(|(id, (v, _))| (id.clone(), *v))
        .collect();
    assert_eq!(
        dashboard, want,
        "{label}: the dashboard shows the stats route's numbers"
    );
    b.screenshot(&artifacts().join(format!("dashboard-desktop-{label}.png")));
}

#[test]
fn feed_scroll_counts_exactly_on_the_embedded_store() {
    scroll_close_and_count(&[], "embedded");
}

#[test]
fn screenshots_of_the_feed_and_dashboard() {
    let _one_at_a_time = browser::exclusive();
    let dir = tempfile::tempdir().unwrap();
    let edge = start_edge(dir.path(), &[]);
    for (name, width, height) in [("desktop", 1280, 900), ("mobile", 390, 844)] {
        let b = new_browser(width, height);
        open_feed(&b, &edge, "&overlay=1");
        wait_until(DEADLINE, "the overlay marks an ad viewable", &mut || {
            b.execute(
                "return document.querySelector('[data-glimpse-state=\"viewable\"]') !== null;",
                vec![],
            ) == json!(true)
        });
        b.screenshot(&artifacts().join(format!("feed-{name}.png")));
        // The dashboard shows what the edge has synced, and the viewable
        // impression may still be on its way there (a dashboard with
        // nothing to show says so and stays so with `live=0`).
        wait_until(
            DEADLINE,
            "the edge counts a viewable impression",
            &mut || {
                let ads: AdsResponse = edge.get_json("/v1/ads");
                ads.ads.iter().any(|a| a.impressions > 0)
            },
        );
        let shown = dashboard_impressions(&b, &edge);
        assert!(
            !shown.is_empty(),
            "the dashboard lists the ads the feed showed"
        );
        b.screenshot(&artifacts().join(format!("dashboard-{name}.png")));
    }
}

#[test]
fn feed_scroll_counts_exactly_on_the_redis_store() {
    let redis = glimpse_tests::redis::RedisServer::start();
    let flags = glimpse_tests::edge::redis_flags(&redis.url());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    scroll_close_and_count(&flags, "redis");
}

/// Waits until the dashboard at `path` has loaded its ads.
fn open_dashboard(b: &Browser, edge: &Edge, path: &str) {
    b.goto(&edge.url(path));
    wait_until(DEADLINE, "the dashboard loaded", &mut || {
        b.execute(
            "return document.querySelector('main')?.dataset.state;",
            vec![],
        ) == json!("ready")
    });
}

#[test]
fn the_dashboard_shows_video_columns_only_when_an_ad_has_video_events() {
    let _one_at_a_time = browser::exclusive();
    let dir = tempfile::tempdir().unwrap();
    let www = workspace_root().join("www");
    let edge = Edge::start(dir.path(), &["--www-dir", www.to_str().unwrap()]);
    let ts = crate::load::now_ms() - 1_000;
    let event = |id: &str, ad: &str, kind: &str| json!({"id": id, "ad_id": ad, "user_id": "u1", "kind": kind, "ts": ts});
    let display = json!({"batch_id": "d", "events": [event("v", "display-1", "viewable")]});
    assert_eq!(edge.post_batch(&display.to_string()).0, 202);
    let b = new_browser(1280, 900);
    let visible_video_headers = r#"return [...document.querySelectorAll('#ads-table thead th.col-video')]
        .filter(el => !el.hidden && el.offsetParent !== null).length;"#;
    open_dashboard(&b, &edge, "/dashboard?live=0");
    assert_eq!(
        b.execute(visible_video_headers, vec![]),
        json!(0),
        "display ads only"
    );

    let mut audible = event("v", "vid-1", "viewable");
    audible["audible"] = json!(true);
    let video = json!({"batch_id": "v", "events": [
        audible, event("s", "vid-1", "video_start"), event("q1", "vid-1", "video_q25"),
        event("q2", "vid-1", "video_q50"), event("q3", "vid-1", "video_q75"),
        event("c", "vid-1", "video_complete")]});
    assert_eq!(edge.post_batch(&video.to_string()).0, 202);
    open_dashboard(&b, &edge, "/dashboard?live=0");
    // The group's heading and its six columns.
    assert_eq!(b.execute(visible_video_headers, vec![]), json!(7));
    let cells = r#"return ['vid-1', 'display-1'].map(id => [...document.querySelectorAll(
        `#ads-table tr[data-ad-id="${id}"] td.col-video`)].map(td => td.dataset.value));"#;
    assert_eq!(
        b.execute(cells, vec![]),
        json!([
            ["1", "1", "1", "1", "1", "1"],
            ["0", "0", "0", "0", "0", "0"]
        ])
    );
    // The detail of the video ad shows its video numbers; a display ad's does not.
    let detail_video = r#"return [...document.querySelectorAll('#detail .detail__stats .col-video')]
        .filter(el => !el.hidden).map(el => el.querySelector('dd').dataset.value);"#;
    b.execute(
        "document.querySelector('#ads-table tr[data-ad-id=\"vid-1\"] .row-select').click();",
        vec![],
    );
    wait_until(
        DEADLINE,
        "the video ad's detail shows its counts",
        &mut || b.execute(detail_video, vec![]) == json!(["1", "1", "1", "1", "1", "1"]),
    );
    b.execute(
        "document.querySelector('#ads-table tr[data-ad-id=\"display-1\"] .row-select').click();",
        vec![],
    );
    wait_until(
        DEADLINE,
        "the display ad's detail has no video numbers",
        &mut || {
            b.execute(
            "return document.querySelector('#detail')?.dataset.adId === 'display-1' \
             && document.querySelector('#detail dd[data-field=\"impressions\"]').dataset.value === '1';",
            vec![],
        ) == json!(true)
            && b.execute(detail_video, vec![]) == json!([])
        },
    );
}

/// A post the visitor looks at counts one view, and the feed's own counter
/// under it comes to say so (its refresh asks `/v1/views` again); a post
/// never scrolled to stays at 0.
#[test]
fn a_post_seen_on_the_feed_shows_one_view_under_it() {
    let _one_at_a_time = browser::exclusive();
    let dir = tempfile::tempdir().unwrap();
    let edge = start_edge(dir.path(), &[]);
    let b = new_browser(browser::WIDTH, browser::HEIGHT);
    open_feed(&b, &edge, "");
    let posts = || -> (Option<String>, Option<String>) {
        let found = b.execute(
            r#"const posts = [...document.querySelectorAll('[data-post-id]')];
               const seen = posts.find(p => { const r = p.getBoundingClientRect();
                 return r.height > 0 && r.top >= 0 && r.bottom <= innerHeight; });
               const far = posts.find(p => p.getBoundingClientRect().top > 2 * innerHeight);
               return [seen?.dataset.postId ?? null, far?.dataset.postId ?? null];"#,
            vec![],
        );
        serde_json::from_value(found).expect("post ids")
    };
    let (seen, far) = wait_for_posts(posts);
    // The display rule's dwell, in real time: the page's own timers decide.
    std::thread::sleep(Duration::from_millis(HOLD_MS));
    b.execute("return window.glimpse.flush();", vec![]);

    let path = format!("/v1/views?ids={seen},{far}");
    let mut answer = json!(null);
    wait_until(DEADLINE, "the edge counts the post's view", &mut || {
        answer = edge.get_json(&path);
        answer["views"][&seen] == json!(1)
    });
    assert_eq!(answer["views"][&far], json!(0), "{answer}");
    let counter = |id: &str| {
        b.execute(
            "const el = document.querySelector(`[data-views-for=\"${arguments[0]}\"]`);
             return el && !el.hidden ? el.textContent : null;",
            vec![json!(id)],
        )
    };
    wait_until(DEADLINE, "the feed shows the view", &mut || {
        counter(&seen) == json!("1 view")
    });
    assert_eq!(counter(&far), json!("0 views"));
}

/// The ids of a post fully in view and of one two screens below, once the
/// first page of the feed has both.
fn wait_for_posts(mut posts: impl FnMut() -> (Option<String>, Option<String>)) -> (String, String) {
    let mut found = (None, None);
    wait_until(DEADLINE, "a post in view and one far below", &mut || {
        found = posts();
        found.0.is_some() && found.1.is_some()
    });
    (found.0.unwrap(), found.1.unwrap())
}

/// The dashboard's "Download CSV" gives the table's ads, byte for byte what
/// the edge answers for the same range with `format=csv`.
#[test]
fn the_dashboard_downloads_its_table_as_the_edges_csv() {
    let _one_at_a_time = browser::exclusive();
    let dir = tempfile::tempdir().unwrap();
    let www = workspace_root().join("www");
    let edge = Edge::start(dir.path(), &["--www-dir", www.to_str().unwrap()]);
    let ts = crate::load::now_ms() - 1_000;
    let event = |id: &str, ad: &str, user: &str, kind: &str| json!({"id": id, "ad_id": ad, "user_id": user, "kind": kind, "ts": ts});
    let body = json!({"batch_id": "csv", "events": [
        event("m1", "csv-a", "u1", "measurable"), event("v1", "csv-a", "u1", "viewable"),
        event("m2", "csv-a", "u2", "measurable"), event("m3", "csv-b", "u3", "measurable"),
        event("s3", "csv-b", "u3", "video_start")]});
    assert_eq!(edge.post_batch(&body.to_string()).0, 202);
    let b = new_browser(1280, 900);
    open_dashboard(&b, &edge, "/dashboard?live=0");
    let downloaded = b.execute_async(
        r#"const done = arguments[arguments.length - 1];
           const create = URL.createObjectURL;
           URL.createObjectURL = (blob) => { blob.text().then(done); return create(blob); };
           document.getElementById('download-csv').click();"#,
        vec![],
    );
    let range = b.execute(
        "return [document.getElementById('from').value, document.getElementById('to').value,
                 document.getElementById('tz').value];",
        vec![],
    );
    let (from, to) = (range[0].as_str().unwrap(), range[1].as_str().unwrap());
    let tz = range[2].as_str().unwrap().replace('/', "%2F");
    let (status, edge_csv) = edge
        .get_raw(&format!("/v1/ads?from={from}&to={to}&tz={tz}&format=csv"))
        .unwrap();
    assert_eq!(status, 200, "{edge_csv}");
    assert_eq!(downloaded, json!(edge_csv));
    assert!(edge_csv.contains("\r\ncsv-a,1,2,1,0.5,"), "{edge_csv}");
}
