//! Video ads: the progress kinds and audible impressions in every stats
//! answer (per day, totals, `GET /v1/ads`), zeros for display ads, counted
//! once across a sync, and invalid traffic's video events only `invalid`.

use glimpse_server::sync;
use glimpse_wire::api::VideoStats;
use serde_json::{json, Value};

use crate::support::{batch, event, TestEdge};

fn audible(id: &str, ad: &str, user: &str) -> Value {
    let mut e = event(id, ad, user, "viewable");
    e["audible"] = json!(true);
    e
}

/// A played video: start and quartiles for `played` users, `completes` of
/// them to the end; `audible` of the viewable impressions unmuted.
fn video_batch(batch_id: &str, ad: &str, played: usize, completes: usize, loud: usize) -> Value {
    let mut events = Vec::new();
    for i in 0..played {
        let user = format!("u{i}");
        events.push(event(&format!("m{i}"), ad, &user, "measurable"));
        events.push(if i < loud {
            audible(&format!("v{i}"), ad, &user)
        } else {
            event(&format!("v{i}"), ad, &user, "viewable")
        });
        for kind in ["video_start", "video_q25", "video_q50", "video_q75"] {
            events.push(event(&format!("{kind}{i}"), ad, &user, kind));
        }
        if i < completes {
            events.push(event(&format!("c{i}"), ad, &user, "video_complete"));
        }
    }
    batch(batch_id, events)
}

/// The video object of `ad` today: the range, its one day, its row of
/// `GET /v1/ads`.
async fn video_everywhere(t: &TestEdge, ad: &str) -> [VideoStats; 3] {
    let s = t.stats(ad, "").await;
    let row = t.ad_row(ad).await;
    [
        s.video,
        s.days[0].video.expect("an ad's day has video"),
        row.video,
    ]
}

#[tokio::test]
async fn video_counters_are_in_every_answer_and_count_once() {
    let t = TestEdge::new();
    let r = t.ingest(&video_batch("b1", "vid-1", 4, 3, 1)).await;
    assert_eq!(r.accepted, 4 * 6 + 3);
    t.ingest(&batch(
        "b2",
        vec![event("d", "display-1", "u1", "viewable")],
    ))
    .await;
    let want = VideoStats {
        starts: 4,
        q25: 4,
        q50: 4,
        q75: 4,
        completes: 3,
        audible_impressions: 1,
    };
    for stage in ["pending", "synced", "synced twice"] {
        assert_eq!(video_everywhere(&t, "vid-1").await, [want; 3], "{stage}");
        assert_eq!(
            video_everywhere(&t, "display-1").await,
            [VideoStats::default(); 3],
            "{stage}: a display ad shows zeros"
        );
        // Progress events are no impressions and no visitors of their own.
        let s = t.stats("vid-1", "").await;
        assert_eq!(
            (s.impressions, s.measurable, s.unique_visitors),
            (4, 4, Some(4))
        );
        // A copy of the batch is a duplicate.
        t.ingest(&video_batch("b1", "vid-1", 4, 3, 1)).await;
        sync::flush(&t.edge).await.unwrap();
    }
    let (_, raw) = t.get("/v1/ads/vid-1/stats").await;
    assert_eq!(
        raw["video"],
        json!({"starts": 4, "q25": 4, "q50": 4, "q75": 4, "completes": 3, "audible_impressions": 1})
    );
    assert_eq!(raw["days"][0]["video"]["completes"], 3);
}

#[tokio::test]
async fn a_bots_video_events_count_as_invalid_only() {
    let t = TestEdge::new();
    let bot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
    t.ingest_as(bot, &video_batch("b1", "vid-1", 2, 2, 2)).await;
    let s = t.stats("vid-1", "").await;
    assert_eq!(s.video, VideoStats::default());
    assert_eq!(s.invalid, 2 * 7);
    assert_eq!(s.impressions, 0);
}
