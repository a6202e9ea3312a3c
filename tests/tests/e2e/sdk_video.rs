//! Video ads by the MRC video rule and post views, in real browsers with
//! real `<video>` playback of a clip the test page records itself
//! (`tests/fixtures/browser/video.html`, canvas + `MediaRecorder`).
//!
//! Each test checks two things: the events the SDK sent (the page keeps
//! every body it hands to `fetch` and `sendBeacon`), and what the edge
//! reports of them. Playback waits (`pause`) are the behaviour under test
//! (the 2 s of playback); readiness and delivery are polled.
//!
//! The video tests run in Chromium and Firefox: WebKitGTK here has no
//! `MediaRecorder` ("unsupported on this platform"), so its page cannot
//! make the clip (README, the engine table). Posts run in every engine.

use glimpse_tests::browser::{self, Browser, Engine};
use glimpse_tests::edge::{wait_for_value, wait_until, Edge, COUNT_AUTOMATION};
use glimpse_tests::sdk_page::{
    counts, edge_with_sdk, expect_counts, flush, pause, start_tracker, DELIVERY_DEADLINE,
};
use serde_json::{json, Value};

/// A test in each engine whose page can record the clip (not WebKit).
macro_rules! where_clips_record {
    (fn $name:ident($engine:ident) $body:block) => {
        mod $name {
            use super::*;

            fn run($engine: Engine) $body

            #[test]
            fn chromium() {
                run(Engine::Chromium)
            }

            #[test]
            fn firefox() {
                run(Engine::Firefox)
            }
        }
    };
}

fn options() -> Value {
    json!({"endpoint": "/v1/impressions", "flushIntervalMs": 600000, "maxBatch": 500})
}

/// One test's browser on the test page, its edge, and their files; fields
/// drop in order, the browser first.
struct Session {
    browser: Browser,
    edge: Edge,
    _dir: tempfile::TempDir,
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
}

/// A browser of `engine` on the test page, its scripts ready.
fn session(engine: Engine) -> Session {
    let one_at_a_time = browser::exclusive();
    let dir = tempfile::tempdir().unwrap();
    let edge = edge_with_sdk(dir.path(), &[COUNT_AUTOMATION]);
    let b = Browser::start_in(engine);
    b.goto(&edge.url("/video.html"));
    wait_until(DELIVERY_DEADLINE, "the page's module ran", &mut || {
        b.execute("return window.ready === true;", vec![]) == json!(true)
    });
    Session {
        browser: b,
        edge,
        _dir: dir,
        _one_at_a_time: one_at_a_time,
    }
}

/// Places the muted video ad `id` at `top` (in a `data-ad-format="video"`
/// wrapper when `wrapped`), its clip loaded.
fn place_video(b: &Browser, id: &str, top: u32, wrapped: bool) {
    let r = b.execute_async(
        "const done = arguments[3];
         placeVideo(arguments[0], arguments[1], arguments[2])
           .then(v => done(v.duration), e => done(String(e)));",
        vec![json!(id), json!(top), json!(wrapped)],
    );
    let duration = r.as_f64().unwrap_or_else(|| panic!("no clip: {r}"));
    assert!(
        (3.0..5.0).contains(&duration),
        "the clip is 4 s long, its duration known: {duration}"
    );
}

/// Script that finds `v`, the `<video>` of the slot whose ad id is
/// `arguments[0]`: the slot itself or the one it wraps.
const CLIP_OF_SLOT: &str =
    "const slot = document.querySelector(`[data-ad-id=\"${arguments[0]}\"]`);
     const v = slot.tagName == 'VIDEO' ? slot : slot.querySelector('video');";

/// Runs `method` (`play` or `pause`) on the video of ad `id`.
fn video(b: &Browser, id: &str, method: &str) {
    let r = b.execute_async(
        &format!(
            "const done = arguments[2]; {CLIP_OF_SLOT}
             Promise.resolve(v[arguments[1]]()).then(() => done('ok'), e => done(String(e)));"
        ),
        vec![json!(id), json!(method)],
    );
    assert_eq!(r, json!("ok"), "{method}() of {id}");
}

/// The `currentTime` of the clip of slot `id`, in seconds.
fn played_s(b: &Browser, id: &str) -> f64 {
    let r = b.execute(
        &format!("{CLIP_OF_SLOT} return v.currentTime;"),
        vec![json!(id)],
    );
    r.as_f64()
        .unwrap_or_else(|| panic!("no currentTime for {id}: {r}"))
}

/// The events the SDK sent for the ad (or the post, `field` = `post_id`)
/// `id`.
fn sent(b: &Browser, field: &str, id: &str) -> Vec<Value> {
    let all = b.execute("return window.sent;", vec![]);
    all.as_array()
        .unwrap()
        .iter()
        .filter(|e| e[field] == json!(id))
        .cloned()
        .collect()
}

fn kinds(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["kind"].as_str().unwrap()).collect()
}

where_clips_record! {
    fn a_muted_video_in_view_playing_for_2_5_s_is_viewable_and_not_audible(engine) {
        let session = session(engine);
        let (b, edge) = (&session.browser, &session.edge);
        // A <video> slot and a wrapper that holds one, both in view.
        place_video(b, "video-own", 0, false);
        place_video(b, "video-wrapped", 200, true);
        start_tracker(b, options());
        pause(1200);
        flush(b);
        for ad in ["video-own", "video-wrapped"] {
            assert_eq!(
                kinds(&sent(b, "ad_id", ad)),
                ["measurable"],
                "{ad}: not played"
            );
        }
        video(b, "video-own", "play");
        video(b, "video-wrapped", "play");
        // 2.5 s of the clips' own time: a busy machine may start playback
        // late or stall it, and the rule counts time played.
        for ad in ["video-own", "video-wrapped"] {
            wait_until(DELIVERY_DEADLINE, &format!("{ad} played 2.5 s"), &mut || {
                played_s(b, ad) >= 2.5
            });
        }
        for ad in ["video-own", "video-wrapped"] {
            wait_until(DELIVERY_DEADLINE, &format!("{ad} sent viewable"), &mut || {
                flush(b);
                kinds(&sent(b, "ad_id", ad)).contains(&"viewable")
            });
            let events = sent(b, "ad_id", ad);
            let viewable: Vec<&Value> = events.iter().filter(|e| e["kind"] == "viewable").collect();
            assert_eq!(viewable.len(), 1, "{ad}: {events:?}");
            assert_eq!(viewable[0].get("audible"), None, "{ad}: muted");
            assert!(kinds(&events).contains(&"video_start"), "{ad}: {events:?}");
            expect_counts(edge, ad, (1, 1), ad);
        }
    }
}

where_clips_record! {
    fn a_video_paused_after_1_s_is_measurable_only(engine) {
        let session = session(engine);
        let (b, edge) = (&session.browser, &session.edge);
        place_video(b, "video-paused", 0, false);
        start_tracker(b, options());
        wait_for_value(DELIVERY_DEADLINE, "the video measured", &vec!["measurable".to_owned()], &mut || {
            flush(b);
            kinds(&sent(b, "ad_id", "video-paused")).into_iter().map(String::from).collect::<Vec<_>>()
        });
        video(b, "video-paused", "play");
        pause(1000);
        video(b, "video-paused", "pause");
        // In view and paused well past the 2 s.
        pause(3000);
        flush(b);
        let events = sent(b, "ad_id", "video-paused");
        assert_eq!(kinds(&events)[..2], ["measurable", "video_start"]);
        assert!(
            !kinds(&events).contains(&"viewable"),
            "paused after 1 s: {events:?}"
        );
        expect_counts(edge, "video-paused", (0, 1), "paused after 1 s");
    }
}

/// The `video` object of an ad's stats, as the edge reports it.
fn video_stats(edge: &Edge, ad: &str) -> Value {
    let stats: Value = edge.get_json(&format!("/v1/ads/{ad}/stats"));
    stats["video"].clone()
}

where_clips_record! {
    fn a_video_played_to_its_end_sends_start_quartiles_and_complete_once(engine) {
        let session = session(engine);
        let (b, edge) = (&session.browser, &session.edge);
        place_video(b, "video-end", 0, false);
        start_tracker(b, options());
        let ended = || {
            b.execute(
                "return document.querySelector('[data-ad-id=\"video-end\"]').ended;",
                vec![],
            ) == json!(true)
        };
        for round in ["first play", "replay"] {
            video(b, "video-end", "play");
            wait_until(DELIVERY_DEADLINE, &format!("{round} ended"), &mut || {
                ended()
            });
            flush(b);
            let mut got = kinds(&sent(b, "ad_id", "video-end"))
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>();
            got.sort();
            assert_eq!(
                got,
                [
                    "measurable",
                    "video_complete",
                    "video_q25",
                    "video_q50",
                    "video_q75",
                    "video_start",
                    "viewable"
                ],
                "{round}: each once"
            );
        }
        // Every progress event keeps its own event id.
        let events = sent(b, "ad_id", "video-end");
        let mut ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), events.len());
        expect_counts(edge, "video-end", (1, 1), "played to its end");
        wait_for_value(
            DELIVERY_DEADLINE,
            "video-end's video stats",
            &json!({"starts": 1, "q25": 1, "q50": 1, "q75": 1, "completes": 1, "audible_impressions": 0}),
            &mut || video_stats(edge, "video-end"),
        );
    }
}

glimpse_tests::in_every_engine! {
    fn a_post_scrolled_past_sends_one_post_view(engine) {
        let session = session(engine);
        let (b, edge) = (&session.browser, &session.edge);
        // One post by its attribute, one by observePost; an ad of the same
        // id as the first post is another thing.
        b.execute(
            "placePost('post-1', 3000);
             placePost('', 3400);
             const ad = document.createElement('div');
             ad.style.cssText = 'position:absolute;top:3000px;left:400px;width:300px;height:250px';
             ad.dataset.adId = 'post-1';
             document.body.append(ad);",
            vec![],
        );
        start_tracker(b, options());
        b.execute(
            "tracker.observePost(document.querySelectorAll('[data-post-id]')[1], 'post-2');",
            vec![],
        );
        for _ in 0..2 {
            b.execute("scrollTo(0, 2900);", vec![]);
            pause(1400);
            b.execute("scrollTo(0, 0);", vec![]);
            pause(200);
        }
        flush(b);
        for post in ["post-1", "post-2"] {
            let events = sent(b, "post_id", post);
            assert_eq!(kinds(&events), ["measurable", "viewable"], "{engine}: {post}");
            assert!(events.iter().all(|e| e.get("ad_id").is_none()), "{events:?}");
        }
        expect_counts(edge, "post-1", (1, 1), "the ad post-1, not the post");
        assert_eq!(counts(edge, "post-2"), (0, 0), "no ad post-2");
        wait_for_value(
            DELIVERY_DEADLINE,
            "the posts' views",
            &json!({"views": {"post-1": 1, "post-2": 1, "post-3": 0}}),
            &mut || edge.get_json::<Value>("/v1/views?ids=post-1,post-2,post-3"),
        );
    }
}
