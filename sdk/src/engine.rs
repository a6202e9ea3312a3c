//! The viewability engine: pure state, an injected clock, no browser.
//!
//! The browser glue feeds it what the page reports (an element's visible
//! ratio and area, its size, whether CSS renders it visibly, whether the
//! browser found it covered, the document's visibility and the window's
//! focus) with the time of each report, and asks it for the impressions that
//! follow. Times are milliseconds on one monotonic clock (`performance.now()`
//! in the browser).
//!
//! The rule (IAB/MRC display): a slot is *measurable* from the moment it has
//! a box (a non-zero area); it is *viewable* once at least `min_ratio` of its
//! pixels (`large_ratio` while its area is at least `large_pixels`) stayed in
//! the viewport, rendered visibly, for `min_visible_ms` continuous
//! milliseconds while the page was in front of the visitor. Each is reported
//! at most once per slot and page view, and a slot that is removed and added
//! again with the same ad in one page view (a remount) is the same slot.
//!
//! Where the browser checks occlusion (IntersectionObserver v2), a viewable
//! impression is *verified* when the browser reported the element neither
//! covered nor visually altered for the whole dwell. That check only adds the
//! flag: it never changes what is viewable.
//!
//! A video ad ([`Format::Video`]) follows the MRC video rule instead: at
//! least `min_ratio` of its pixels (whatever its size) in view, rendered
//! visibly, on a page in front of the visitor, for [`VIDEO_VISIBLE_MS`]
//! continuous milliseconds *of playback* (as the glue reports it:
//! [`Playback::playing`], media time advancing). Its viewable impression is *audible* when the
//! video had sound on as those milliseconds completed. It also reports its
//! progress ([`Kind::VideoStart`] to [`Kind::VideoComplete`]), each once per
//! slot and page view, whether or not it is in view.
//!
//! A post ([`Format::Post`]: any content item that is not an ad) follows
//! the display rule; its id is in a namespace of its own.

use alloc::{string::String, vec::Vec};

/// How often, at most, the browser's occlusion check reports on an element
/// (IntersectionObserver v2's `delay`; Chromium's minimum). A dwell counts as
/// vouched for when the check reported the element visible no later than
/// this after the dwell began, and not otherwise since.
pub const OCCLUSION_DELAY_MS: f64 = 100.0;

/// Continuous playback in view that makes a video ad viewable (MRC video).
pub const VIDEO_VISIBLE_MS: f64 = 2000.0;

/// Removed slots remembered per page view for a remount; beyond this many the
/// oldest are forgotten.
pub const MAX_RETIRED: usize = 1024;

/// The thresholds of the rule; every one is an option of the SDK.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rule {
    /// Share of pixels that must be in view (0..=1).
    pub min_ratio: f64,
    /// Continuous time in view, in milliseconds.
    pub min_visible_ms: f64,
    /// Area, in CSS pixels, from which an ad counts as large.
    pub large_pixels: f64,
    /// Share of pixels that must be in view for a large ad (0..=1).
    pub large_ratio: f64,
}

impl Default for Rule {
    fn default() -> Self {
        Rule {
            min_ratio: 0.5,
            min_visible_ms: 1000.0,
            large_pixels: 242_500.0,
            large_ratio: 0.3,
        }
    }
}

impl Rule {
    /// The share of pixels an element of `area` pixels needs in view.
    pub fn required_ratio(&self, area: f64) -> f64 {
        if area >= self.large_pixels {
            self.large_ratio
        } else {
            self.min_ratio
        }
    }
}

/// What an impression reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Measurable,
    Viewable,
    /// The first frame of a video ad played.
    VideoStart,
    /// Media time reached a quarter of the duration.
    VideoQ25,
    VideoQ50,
    VideoQ75,
    /// The video ended, or media time reached its duration.
    VideoComplete,
}

impl Kind {
    /// The wire name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Measurable => "measurable",
            Kind::Viewable => "viewable",
            Kind::VideoStart => "video_start",
            Kind::VideoQ25 => "video_q25",
            Kind::VideoQ50 => "video_q50",
            Kind::VideoQ75 => "video_q75",
            Kind::VideoComplete => "video_complete",
        }
    }
}

/// The video progress kinds in the order playback reaches them.
const PROGRESS: [Kind; 5] = [
    Kind::VideoStart,
    Kind::VideoQ25,
    Kind::VideoQ50,
    Kind::VideoQ75,
    Kind::VideoComplete,
];

/// What a slot holds, which decides its rule and the namespace of its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A display ad: the display rule.
    Display,
    /// A video ad: the video rule, and progress events.
    Video,
    /// A post (not an ad): the display rule, its id a `post_id`.
    Post,
}

/// A video's playback as the browser reports it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Playback {
    /// Playing: not paused, not ended, not seeking, not waiting for data.
    pub playing: bool,
    pub ended: bool,
    /// Media time, in seconds.
    pub time: f64,
    /// In seconds; unknown while not finite or not positive (a recorded
    /// WebM reports `Infinity` until played through).
    pub duration: f64,
    /// Not muted, and the volume above zero.
    pub audible: bool,
}

impl Playback {
    /// A video that has not started.
    pub const IDLE: Playback = Playback {
        playing: false,
        ended: false,
        time: 0.0,
        duration: f64::NAN,
        audible: false,
    };

    /// Whether playback has reached `kind` (a progress kind). No quartile
    /// is guessed while the duration is unknown.
    fn reached(&self, kind: Kind) -> bool {
        let known = self.duration.is_finite() && self.duration > 0.0;
        let at = |share: f64| known && self.time >= share * self.duration;
        match kind {
            Kind::VideoStart => self.playing,
            Kind::VideoQ25 => at(0.25),
            Kind::VideoQ50 => at(0.5),
            Kind::VideoQ75 => at(0.75),
            Kind::VideoComplete => self.ended || at(1.0),
            Kind::Measurable | Kind::Viewable => false,
        }
    }
}

/// A set of progress kinds sent, bit `i` for kind `i` of [`PROGRESS`] (so
/// bit 0 is the start).
type Sent = u8;

/// A handle to one observed slot.
pub type SlotId = u32;

/// One impression the engine decided on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Impression {
    pub slot: SlotId,
    /// The ad's id, or the post's when `post`.
    pub ad_id: String,
    /// The id names a post, not an ad.
    pub post: bool,
    pub kind: Kind,
    /// A viewable impression the browser's occlusion check vouched for.
    pub verified: bool,
    /// A viewable video impression with sound on as its dwell completed.
    pub audible: bool,
}

/// Whether a document's window counts as focused for the rule: in front of
/// the visitor. `own` is the document's `hasFocus()`. Inside a frame it is
/// false unless focus is in that very frame, so a frame asks the top-level
/// document instead (`top`, whose `hasFocus()` is true when focus is anywhere
/// in the tab), when it can reach it (same origin). A frame that cannot
/// learn about focus at all is judged by the document's visibility alone.
pub fn window_focused(own: bool, framed: bool, top: Option<bool>) -> bool {
    match (framed, top) {
        (false, _) => own,
        (true, Some(top)) => top,
        (true, None) => true,
    }
}

#[derive(Debug)]
struct Slot {
    id: SlotId,
    ad_id: String,
    format: Format,
    /// The video's playback, as last reported (a video ad only).
    playback: Playback,
    /// The progress kinds sent in this page view.
    progress: Sent,
    /// A video's media time when its dwell began: a dwell completes only
    /// if media time advanced since.
    dwell_media: f64,
    area: f64,
    ratio: f64,
    /// The area changed after the last intersection report: the share in
    /// view is unknown until the next one, so no dwell starts or completes.
    ratio_stale: bool,
    /// Whether CSS renders the element visibly, as last sampled.
    shown: bool,
    /// Counted in an earlier page view and not laid out since this one
    /// began: it counts again at its next intersection report, which a slot
    /// the route change removes never gets.
    carried: bool,
    measured: bool,
    viewed: bool,
    /// When the rule started to hold without a break, if it holds.
    since: Option<f64>,
    /// Since when the occlusion check has reported the element visible
    /// without a break; `None` while it does not (or never reported).
    unoccluded_since: Option<f64>,
}

impl Slot {
    /// Laid out in this page view with a box, and its share in view known.
    fn laid_out(&self) -> bool {
        !self.carried && self.area > 0.0
    }

    /// The geometry of the rule holds: enough of the box is in view for its
    /// size class now (a video has no large class).
    fn in_view(&self, rule: &Rule) -> bool {
        let needed = match self.format {
            Format::Video => rule.min_ratio,
            Format::Display | Format::Post => rule.required_ratio(self.area),
        };
        self.laid_out() && !self.ratio_stale && self.ratio >= needed
    }

    /// Whether time counts towards its dwell, as far as the slot itself
    /// goes: a video only while it plays.
    fn running(&self) -> bool {
        self.format != Format::Video || self.playback.playing
    }

    /// How long its dwell lasts.
    fn dwell_ms(&self, rule: &Rule) -> f64 {
        match self.format {
            Format::Video => VIDEO_VISIBLE_MS,
            Format::Display | Format::Post => rule.min_visible_ms,
        }
    }

    fn impression(&self, kind: Kind) -> Impression {
        Impression {
            slot: self.id,
            ad_id: self.ad_id.clone(),
            post: self.format == Format::Post,
            kind,
            verified: false,
            audible: false,
        }
    }

    /// Counts again as a new opportunity.
    fn restart(&mut self) {
        self.measured = false;
        self.viewed = false;
        self.progress = 0;
        self.since = None;
        self.carried = false;
    }
}

/// What a slot removed in this page view had earned, for a slot of the same
/// ad that takes its place (a remount).
#[derive(Debug)]
struct Retired {
    ad_id: String,
    format: Format,
    measured: bool,
    viewed: bool,
    progress: Sent,
}

/// The state of every observed slot on one page.
#[derive(Debug)]
pub struct Engine {
    rule: Rule,
    slots: Vec<Slot>,
    retired: Vec<Retired>,
    visible: bool,
    focused: bool,
    /// A prerendered page nobody has seen yet: nothing counts.
    prerendered: bool,
    next_id: SlotId,
}

impl Engine {
    /// A page whose document is `visible` and whose window has `focused`.
    pub fn new(rule: Rule, visible: bool, focused: bool) -> Self {
        Engine {
            rule,
            slots: Vec::new(),
            retired: Vec::new(),
            visible,
            focused,
            prerendered: false,
            next_id: 1,
        }
    }

    /// The same engine for a page being prerendered: it follows its slots
    /// but counts nothing until [`Engine::activate`].
    pub fn while_prerendered(mut self) -> Self {
        self.prerendered = true;
        self
    }

    /// Whether the page is prerendered and not yet shown.
    pub fn is_prerendered(&self) -> bool {
        self.prerendered
    }

    /// The prerendered page is shown to the visitor: counting starts, from
    /// what its slots last reported.
    pub fn activate(&mut self, visible: bool, focused: bool, now: f64, out: &mut Vec<Impression>) {
        self.prerendered = false;
        self.set_page(visible, focused, now, out);
    }

    /// Whether the page is in front of the visitor.
    fn in_front(&self) -> bool {
        self.visible && self.focused && !self.prerendered
    }

    /// Starts following a slot of `format` showing `ad_id` (a post's id for
    /// a post); nothing is known of its geometry until [`Engine::update`]. A
    /// slot of the same ad (or post) removed earlier in this page view takes
    /// over what that one earned (a remount counts once).
    pub fn add(&mut self, ad_id: &str, format: Format) -> SlotId {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let earned = self
            .retired
            .iter()
            .position(|r| r.ad_id == ad_id && r.format == format)
            .map(|i| self.retired.remove(i));
        self.slots.push(Slot {
            id,
            ad_id: ad_id.into(),
            format,
            playback: Playback::IDLE,
            progress: earned.as_ref().map_or(0, |r| r.progress),
            dwell_media: 0.0,
            area: 0.0,
            ratio: 0.0,
            ratio_stale: false,
            shown: true,
            carried: false,
            measured: earned.as_ref().is_some_and(|r| r.measured),
            viewed: earned.is_some_and(|r| r.viewed),
            since: None,
            unoccluded_since: None,
        });
        id
    }

    /// Stops following a slot; its dwell is cancelled.
    pub fn remove(&mut self, slot: SlotId) {
        let Some(i) = self.slots.iter().position(|s| s.id == slot) else {
            return;
        };
        let s = self.slots.remove(i);
        if s.measured || s.progress != 0 {
            if self.retired.len() >= MAX_RETIRED {
                self.retired.remove(0);
            }
            self.retired.push(Retired {
                ad_id: s.ad_id,
                format: s.format,
                measured: s.measured,
                viewed: s.viewed,
                progress: s.progress,
            });
        }
    }

    /// How many slots are followed.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no slot is followed.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The ad a slot shows.
    pub fn ad_id(&self, slot: SlotId) -> Option<&str> {
        self.slots
            .iter()
            .find(|s| s.id == slot)
            .map(|s| s.ad_id.as_str())
    }

    fn slot_mut(&mut self, slot: SlotId) -> Option<&mut Slot> {
        self.slots.iter_mut().find(|s| s.id == slot)
    }

    /// The slot now shows another ad (an ad refresh): a new impression.
    pub fn set_ad_id(&mut self, slot: SlotId, ad_id: &str, now: f64, out: &mut Vec<Impression>) {
        self.tick(now, out);
        if let Some(s) = self.slot_mut(slot) {
            if s.ad_id != ad_id {
                s.ad_id = ad_id.into();
                s.restart();
            }
        }
        self.reconcile(now, out);
    }

    /// The slot's ad was refreshed in place under the same ad id: a new
    /// opportunity, measurable at once if it has a box.
    pub fn refresh(&mut self, slot: SlotId, now: f64, out: &mut Vec<Impression>) {
        self.tick(now, out);
        if let Some(s) = self.slot_mut(slot) {
            s.restart();
        }
        self.reconcile(now, out);
    }

    /// The element of `slot` now has `ratio` of its `area` pixels in view
    /// (an intersection report).
    pub fn update(
        &mut self,
        slot: SlotId,
        ratio: f64,
        area: f64,
        now: f64,
        out: &mut Vec<Impression>,
    ) {
        self.tick(now, out);
        if let Some(s) = self.slot_mut(slot) {
            s.ratio = ratio;
            s.area = area;
            s.ratio_stale = false;
            s.carried = false;
        }
        self.reconcile(now, out);
    }

    /// The element's box is now `area` pixels (a creative arrived, the slot
    /// collapsed or changed size). Measurable at once if it has a box; the
    /// share in view is unknown until the next [`Engine::update`], which the
    /// glue asks for when this answers true (the area changed).
    pub fn resize(&mut self, slot: SlotId, area: f64, now: f64, out: &mut Vec<Impression>) -> bool {
        self.tick(now, out);
        let changed = match self.slot_mut(slot) {
            Some(s) if s.area != area => {
                s.area = area;
                s.ratio_stale = true;
                true
            }
            _ => false,
        };
        self.reconcile(now, out);
        changed
    }

    /// Whether CSS renders the element visibly (`visibility`, `opacity`,
    /// `content-visibility`), as sampled at `now`. A sample is not an event:
    /// a slot found hidden may have been hidden since the sample before, so
    /// its dwell ends without crediting the time up to now.
    pub fn set_shown(&mut self, slot: SlotId, shown: bool, now: f64, out: &mut Vec<Impression>) {
        if let Some(s) = self.slot_mut(slot) {
            s.shown = shown;
        }
        self.reconcile(now, out);
    }

    /// The occlusion check reported at `time` whether the element is
    /// visible: neither covered nor visually altered.
    pub fn set_unoccluded(
        &mut self,
        slot: SlotId,
        visible: bool,
        time: f64,
        out: &mut Vec<Impression>,
    ) {
        self.tick(time, out);
        if let Some(s) = self.slot_mut(slot) {
            s.unoccluded_since = if visible {
                s.unoccluded_since.or(Some(time))
            } else {
                None
            };
        }
    }

    /// The video of `slot` reported its playback at `now` (a media event).
    /// A dwell runs only while it plays; progress is reported as reached.
    pub fn set_playback(
        &mut self,
        slot: SlotId,
        playback: Playback,
        now: f64,
        out: &mut Vec<Impression>,
    ) {
        // Media time says how far playback went up to now, which the dwell
        // that may complete before this report needs; the rest is news.
        if let Some(s) = self.slot_mut(slot) {
            s.playback.time = playback.time;
        }
        self.tick(now, out);
        if let Some(s) = self.slot_mut(slot) {
            s.playback = playback;
        }
        self.reconcile(now, out);
    }

    /// The document became visible or hidden, the window gained or lost focus.
    pub fn set_page(&mut self, visible: bool, focused: bool, now: f64, out: &mut Vec<Impression>) {
        self.tick(now, out);
        self.visible = visible;
        self.focused = focused;
        self.reconcile(now, out);
    }

    /// A new page view (a route change in a single-page app). Every slot is
    /// a new opportunity in it, once: one counted before counts again at its
    /// next intersection report, so a slot the route change removes first
    /// is never counted again. Removed slots are forgotten.
    pub fn pageview(&mut self, now: f64, out: &mut Vec<Impression>) {
        self.tick(now, out);
        self.retired.clear();
        for s in &mut self.slots {
            let carried = s.carried || s.measured;
            s.restart();
            s.carried = carried;
        }
        self.reconcile(now, out);
    }

    /// Reports the slots whose dwell completed by `now`.
    pub fn tick(&mut self, now: f64, out: &mut Vec<Impression>) {
        for s in &mut self.slots {
            if let (false, false, Some(since)) = (s.viewed, s.ratio_stale, s.since) {
                if now - since >= s.dwell_ms(&self.rule) {
                    if s.format == Format::Video && s.playback.time <= s.dwell_media {
                        // Said to play, yet media time stood still: a
                        // stall no event reported. Nothing to credit.
                        s.since = Some(now);
                        s.dwell_media = s.playback.time;
                        continue;
                    }
                    s.viewed = true;
                    out.push(Impression {
                        verified: s
                            .unoccluded_since
                            .is_some_and(|t| t <= since + OCCLUSION_DELAY_MS),
                        audible: s.format == Format::Video && s.playback.audible,
                        ..s.impression(Kind::Viewable)
                    });
                }
            }
        }
    }

    /// The earliest time at which [`Engine::tick`] may report something.
    pub fn next_deadline(&self) -> Option<f64> {
        self.slots
            .iter()
            .filter(|s| !s.viewed && !s.ratio_stale)
            .filter_map(|s| s.since.map(|since| since + s.dwell_ms(&self.rule)))
            .reduce(f64::min)
    }

    /// The slots whose CSS visibility decides now whether their dwell runs,
    /// and so should be sampled ([`Engine::set_shown`]) while they are: not
    /// yet viewable, in view (a video: playing), on a page in front of the
    /// visitor.
    pub fn watched(&self) -> impl Iterator<Item = SlotId> + '_ {
        let page = self.in_front();
        self.slots
            .iter()
            .filter(move |s| page && !s.viewed && s.running() && s.in_view(&self.rule))
            .map(|s| s.id)
    }

    /// Brings every slot's measured flag and dwell start in line with the
    /// current state, then reports what completed (a zero dwell counts at once).
    fn reconcile(&mut self, now: f64, out: &mut Vec<Impression>) {
        if self.prerendered {
            return;
        }
        let page = self.in_front();
        for s in &mut self.slots {
            if s.laid_out() && !s.measured {
                s.measured = true;
                out.push(s.impression(Kind::Measurable));
            }
            // Progress is playback's own, in view or not; a slot carried
            // from an earlier page view waits for its report in this one.
            if s.format == Format::Video && !s.carried {
                for (i, kind) in PROGRESS.into_iter().enumerate() {
                    let bit: Sent = 1 << i;
                    // Nothing is reached before playback started.
                    let due = i == 0 || s.progress & 1 != 0;
                    if s.progress & bit == 0 && due && s.playback.reached(kind) {
                        s.progress |= bit;
                        out.push(s.impression(kind));
                    }
                }
            }
            let eligible = page && s.shown && s.laid_out() && s.running();
            if s.since.is_none() {
                s.dwell_media = s.playback.time;
            }
            s.since = if eligible && s.in_view(&self.rule) {
                s.since.or(Some(now))
            } else if eligible && s.ratio_stale {
                // The next report decides; until then a running dwell goes on.
                s.since
            } else {
                None
            };
        }
        self.tick(now, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Format::Display;

    const SMALL: f64 = 300.0 * 250.0;

    fn engine() -> Engine {
        Engine::new(Rule::default(), true, true)
    }

    fn kinds(out: &[Impression]) -> Vec<(&str, Kind)> {
        out.iter().map(|i| (i.ad_id.as_str(), i.kind)).collect()
    }

    fn viewables(out: &[Impression]) -> usize {
        out.iter().filter(|i| i.kind == Kind::Viewable).count()
    }

    #[test]
    fn visible_ad_is_measurable_then_viewable_after_exactly_one_second() {
        let mut e = engine();
        let mut out = Vec::new();
        let s = e.add("ad-1", Display);
        assert!(out.is_empty());
        e.update(s, 1.0, SMALL, 0.0, &mut out);
        assert_eq!(kinds(&out), [("ad-1", Kind::Measurable)]);
        assert_eq!(e.next_deadline(), Some(1000.0));
        e.tick(999.9, &mut out);
        assert_eq!(viewables(&out), 0);
        e.tick(1000.0, &mut out);
        assert_eq!(kinds(&out)[1], ("ad-1", Kind::Viewable));
        e.tick(5000.0, &mut out);
        e.update(s, 1.0, SMALL, 6000.0, &mut out);
        assert_eq!(out.len(), 2, "one of each per page view");
        assert_eq!(e.next_deadline(), None);
    }

    #[test]
    fn zero_area_is_not_measurable() {
        let mut e = engine();
        let mut out = Vec::new();
        let s = e.add("ad-1", Display);
        e.update(s, 0.0, 0.0, 0.0, &mut out);
        e.update(s, 1.0, 0.0, 10.0, &mut out);
        e.tick(5000.0, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn below_the_fold_is_measurable_only_until_scrolled_in_for_a_second() {
        let mut e = engine();
        let mut out = Vec::new();
        let s = e.add("ad-1", Display);
        e.update(s, 0.0, SMALL, 0.0, &mut out);
        e.tick(10_000.0, &mut out);
        assert_eq!(kinds(&out), [("ad-1", Kind::Measurable)]);
        assert_eq!(e.next_deadline(), None);
        e.update(s, 0.8, SMALL, 20_000.0, &mut out);
        e.tick(20_999.0, &mut out);
        assert_eq!(viewables(&out), 0);
        e.tick(21_000.0, &mut out);
        assert_eq!(viewables(&out), 1);
    }

    #[test]
    fn ratio_exactly_half_counts_and_just_below_does_not() {
        let mut e = engine();
        let mut out = Vec::new();
        let a = e.add("a", Display);
        let b = e.add("b", Display);
        e.update(a, 0.5, SMALL, 0.0, &mut out);
        e.update(b, 0.499_999, SMALL, 0.0, &mut out);
        e.tick(1000.0, &mut out);
        let v: Vec<_> = out.iter().filter(|i| i.kind == Kind::Viewable).collect();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].ad_id, "a");
    }

    #[test]
    fn forty_percent_is_not_viewable() {
        let mut e = engine();
        let mut out = Vec::new();
        let s = e.add("a", Display);
        e.update(s, 0.4, SMALL, 0.0, &mut out);
        e.tick(60_000.0, &mut out);
        assert_eq!(viewables(&out), 0);
    }

    #[test]
    fn large_ad_threshold_is_at_242_500_pixels() {
        let mut e = engine();
        let mut out = Vec::new();
        let big = e.add("big", Display);
        let almost = e.add("almost", Display);
        e.update(big, 0.35, 242_500.0, 0.0, &mut out);
        e.update(almost, 0.35, 242_499.0, 0.0, &mut out);
        e.tick(1000.0, &mut out);
        let v: Vec<_> = out.iter().filter(|i| i.kind == Kind::Viewable).collect();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].ad_id, "big");
        // 970x250 is large; 30% exactly holds, 29% does not.
        let mut e = engine();
        let mut out = Vec::new();
        let a = e.add("a", Display);
        let b = e.add("b", Display);
        e.update(a, 0.3, 970.0 * 250.0, 0.0, &mut out);
        e.update(b, 0.29, 970.0 * 250.0, 0.0, &mut out);
        e.tick(1000.0, &mut out);
        assert_eq!(viewables(&out), 1);
    }

    #[test]
    fn scrolled_away_at_600_ms_resets_the_clock() {
        let mut e = engine();
        let mut out = Vec::new();
        let s = e.add("a", Display);
        e.update(s, 1.0, SMALL, 0.0, &mut out);
        e.update(s, 0.0, SMALL, 600.0, &mut out);
        e.tick(5000.0, &mut out);
        assert_eq!(viewables(&out), 0);
        e.update(s, 1.0, SMALL, 6000.0, &mut out);
        e.tick(6600.0, &mut out);
        assert_eq!(viewables(&out), 0, "a new dwell starts from zero");
        e.tick(7000.0, &mut out);
        assert_eq!(viewables(&out), 1);
    }

    #[test]
    fn focus_lost_at_999_ms_is_not_viewable() {
        let mut e = engine();
        let mut out = Vec::new();
        let s = e.add("a", Display);
        e.update(s, 1.0, SMALL, 0.0, &mut out);
        e.set_page(true, false, 999.0, &mut out);
        e.tick(10_000.0, &mut out);
        assert_eq!(viewables(&out), 0);
        e.set_page(true, true, 10_000.0, &mut out);
        e.tick(10_999.0, &mut out);
        assert_eq!(viewables(&out), 0);
        e.tick(11_000.0, &mut out);
        assert_eq!(viewables(&out), 1);
    }

    #[test]
    fn hidden_then_visible_again_needs_a_full_second() {
        let mut e = engine();
        let mut out = Vec::new();
        let s = e.add("a", Display);
        e.update(s, 1.0, SMALL, 0.0, &mut out);
        e.set_page(false, true, 500.0, &mut out);
        e.tick(3000.0, &mut out);
        assert_eq!(viewables(&out), 0);
        assert_eq!(e.next_deadline(), None);
        e.set_page(true, true, 3000.0, &mut out);
        assert_eq!(e.next_deadline(), Some(4000.0));
        e.tick(3999.0, &mut out);
        assert_eq!(viewables(&out), 0);
        e.tick(4000.0, &mut out);
        assert_eq!(viewables(&out), 1);
    }

    #[test]
    fn a_page_starting_hidden_or_unfocused_counts_nothing_until_it_is_not() {
        let mut e = Engine::new(Rule::default(), false, true);
        let mut out = Vec::new();
        let s = e.add("a", Display);
        e.update(s, 1.0, SMALL, 0.0, &mut out);
        e.tick(5000.0, &mut out);
        assert_eq!(kinds(&out), [("a", Kind::Measurable)]);
        e.set_page(true, true, 5000.0, &mut out);
        e.tick(6000.0, &mut out);
        assert_eq!(viewables(&out), 1);
    }

    #[test]
    fn a_late_report_still_counts_a_completed_dwell() {
        // The timer was late; the element left at 1,005 ms after 1,005 ms in view.
        let mut e = engine();
        let mut out = Vec::new();
        let s = e.add("a", Display);
        e.update(s, 1.0, SMALL, 0.0, &mut out);
        e.update(s, 0.0, SMALL, 1005.0, &mut out);
        assert_eq!(viewables(&out), 1);
    }

    #[test]
    fn removed_mid_dwell_cancels() {
        let mut e = engine();
        let mut out = Vec::new();
        let s = e.add("a", Display);
        let t = e.add("b", Display);
        e.update(s, 1.0, SMALL, 0.0, &mut out);
        e.update(t, 1.0, SMALL, 200.0, &mut out);
        e.remove(s);
        assert_eq!(e.next_deadline(), Some(1200.0));
        e.tick(2000.0, &mut out);
        let v: Vec<_> = out.iter().filter(|i| i.kind == Kind::Viewable).collect();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].ad_id, "b");
        assert_eq!(e.len(), 1);
        assert_eq!(e.ad_id(s), None);
    }

    #[test]
    fn ad_refresh_is_a_new_impression() {
        let mut e = engine();
        let mut out = Vec::new();
        let s = e.add("a", Display);
        e.update(s, 1.0, SMALL, 0.0, &mut out);
        e.tick(1000.0, &mut out);
        e.set_ad_id(s, "a", 1500.0, &mut out);
        assert_eq!(out.len(), 2, "the same ad id is no refresh");
        e.set_ad_id(s, "b", 2000.0, &mut out);
        assert_eq!(kinds(&out)[2], ("b", Kind::Measurable));
        e.tick(2999.0, &mut out);
        assert_eq!(out.len(), 3);
        e.tick(3000.0, &mut out);
        assert_eq!(kinds(&out)[3], ("b", Kind::Viewable));
    }

    #[test]
    fn pageview_counts_again_but_not_twice_per_view() {
        let mut e = engine();
        let mut out = Vec::new();
        let s = e.add("a", Display);
        e.update(s, 1.0, SMALL, 0.0, &mut out);
        e.tick(1000.0, &mut out);
        e.pageview(2000.0, &mut out);
        assert_eq!(out.len(), 2, "nothing until the slot is laid out again");
        assert_eq!(e.next_deadline(), None);
        e.update(s, 1.0, SMALL, 2016.0, &mut out);
        e.tick(3015.0, &mut out);
        assert_eq!(out.len(), 3);
        e.tick(3016.0, &mut out);
        e.update(s, 1.0, SMALL, 4000.0, &mut out);
        e.tick(9000.0, &mut out);
        assert_eq!(
            kinds(&out),
            [
                ("a", Kind::Measurable),
                ("a", Kind::Viewable),
                ("a", Kind::Measurable),
                ("a", Kind::Viewable)
            ]
        );
    }

    #[test]
    fn thresholds_are_options() {
        let rule = Rule {
            min_ratio: 0.8,
            min_visible_ms: 2000.0,
            large_pixels: 1000.0,
            large_ratio: 0.6,
        };
        let mut e = Engine::new(rule, true, true);
        let mut out = Vec::new();
        let small = e.add("small", Display);
        let large = e.add("large", Display);
        e.update(small, 0.7, 999.0, 0.0, &mut out);
        e.update(large, 0.6, 1000.0, 0.0, &mut out);
        e.tick(1999.0, &mut out);
        assert_eq!(viewables(&out), 0);
        e.tick(2000.0, &mut out);
        let v: Vec<_> = out.iter().filter(|i| i.kind == Kind::Viewable).collect();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].ad_id, "large");
        // A zero dwell counts at once.
        let mut e = Engine::new(
            Rule {
                min_visible_ms: 0.0,
                ..Rule::default()
            },
            true,
            true,
        );
        let mut out = Vec::new();
        let s = e.add("a", Display);
        e.update(s, 1.0, SMALL, 0.0, &mut out);
        assert_eq!(viewables(&out), 1);
    }

    #[test]
    fn small_moves_in_view_keep_the_clock() {
        let mut e = engine();
        let mut out = Vec::new();
        let s = e.add("a", Display);
        e.update(s, 0.6, SMALL, 0.0, &mut out);
        e.update(s, 1.0, SMALL, 300.0, &mut out);
        e.update(s, 0.55, SMALL, 700.0, &mut out);
        e.set_page(true, true, 800.0, &mut out);
        e.tick(1000.0, &mut out);
        assert_eq!(viewables(&out), 1);
    }

    fn measurables(out: &[Impression]) -> usize {
        out.iter().filter(|i| i.kind == Kind::Measurable).count()
    }

    #[test]
    fn an_empty_slot_filled_in_view_counts_without_a_scroll() {
        let mut e = engine();
        let mut out = Vec::new();
        let s = e.add("a", Display);
        // A 0x0 target in view intersects with ratio 1.
        e.update(s, 1.0, 0.0, 0.0, &mut out);
        e.tick(5000.0, &mut out);
        assert!(out.is_empty(), "no box, nothing measurable");
        // The creative arrives: measurable at once, the share in view unknown.
        assert!(e.resize(s, SMALL, 6000.0, &mut out));
        assert_eq!(kinds(&out), [("a", Kind::Measurable)]);
        assert_eq!(e.next_deadline(), None, "no dwell before the report");
        assert!(!e.resize(s, SMALL, 6001.0, &mut out), "same size");
        // The intersection report the glue asked for.
        e.update(s, 1.0, SMALL, 6016.0, &mut out);
        e.tick(7015.0, &mut out);
        assert_eq!(viewables(&out), 0);
        e.tick(7016.0, &mut out);
        assert_eq!(
            kinds(&out),
            [("a", Kind::Measurable), ("a", Kind::Viewable)]
        );
    }

    #[test]
    fn an_empty_slot_filled_below_the_fold_is_measurable_only() {
        let mut e = engine();
        let mut out = Vec::new();
        let s = e.add("a", Display);
        e.update(s, 0.0, 0.0, 0.0, &mut out);
        assert!(e.resize(s, SMALL, 100.0, &mut out));
        e.update(s, 0.0, SMALL, 116.0, &mut out);
        e.tick(60_000.0, &mut out);
        assert_eq!(kinds(&out), [("a", Kind::Measurable)]);
    }

    #[test]
    fn a_slot_collapsing_to_nothing_stops_its_dwell() {
        let mut e = engine();
        let mut out = Vec::new();
        let s = e.add("a", Display);
        e.update(s, 1.0, SMALL, 0.0, &mut out);
        assert!(e.resize(s, 0.0, 500.0, &mut out));
        assert_eq!(e.next_deadline(), None);
        e.update(s, 1.0, 0.0, 516.0, &mut out);
        e.tick(5000.0, &mut out);
        assert_eq!(kinds(&out), [("a", Kind::Measurable)]);
        // Filled again: a fresh dwell from its report.
        e.resize(s, SMALL, 6000.0, &mut out);
        e.update(s, 1.0, SMALL, 6016.0, &mut out);
        e.tick(7015.0, &mut out);
        assert_eq!(viewables(&out), 0);
        e.tick(7016.0, &mut out);
        assert_eq!(
            kinds(&out),
            [("a", Kind::Measurable), ("a", Kind::Viewable)]
        );
    }

    #[test]
    fn a_resize_during_a_dwell_is_judged_by_the_size_now() {
        let large = 970.0 * 250.0;
        // Small at 40%: no dwell. Grown to large, still 40% in view: 30% is
        // enough now, a dwell starts at the report.
        let mut e = engine();
        let mut out = Vec::new();
        let s = e.add("a", Display);
        e.update(s, 0.4, SMALL, 0.0, &mut out);
        assert_eq!(e.next_deadline(), None);
        e.resize(s, large, 300.0, &mut out);
        e.update(s, 0.4, large, 316.0, &mut out);
        assert_eq!(e.next_deadline(), Some(1316.0));
        e.tick(1316.0, &mut out);
        assert_eq!(viewables(&out), 1);

        // Large at 35% in a dwell, shrunk to small still 35%: 50% needed now,
        // the dwell ends.
        let mut e = engine();
        let mut out = Vec::new();
        let s = e.add("a", Display);
        e.update(s, 0.35, large, 0.0, &mut out);
        e.resize(s, SMALL, 400.0, &mut out);
        assert_eq!(e.next_deadline(), None, "paused until the report");
        e.tick(1000.0, &mut out);
        assert_eq!(viewables(&out), 0, "an unknown share completes nothing");
        e.update(s, 0.35, SMALL, 1016.0, &mut out);
        e.tick(9000.0, &mut out);
        assert_eq!(viewables(&out), 0);

        // Growing in view while the rule keeps holding keeps the clock.
        let mut e = engine();
        let mut out = Vec::new();
        let s = e.add("a", Display);
        e.update(s, 1.0, SMALL, 0.0, &mut out);
        e.resize(s, large, 400.0, &mut out);
        e.update(s, 0.6, large, 416.0, &mut out);
        e.tick(1000.0, &mut out);
        assert_eq!(viewables(&out), 1);
    }

    #[test]
    fn the_large_class_starts_at_exactly_242_500_pixels_on_a_resize() {
        let mut e = engine();
        let mut out = Vec::new();
        let s = e.add("a", Display);
        e.update(s, 0.3, 242_499.0, 0.0, &mut out);
        e.tick(2000.0, &mut out);
        assert_eq!(viewables(&out), 0);
        e.resize(s, 242_500.0, 2000.0, &mut out);
        e.update(s, 0.3, 242_500.0, 2016.0, &mut out);
        e.tick(3016.0, &mut out);
        assert_eq!(viewables(&out), 1);
    }

    #[test]
    fn hidden_by_css_is_measurable_and_never_viewable() {
        let mut e = engine();
        let mut out = Vec::new();
        let s = e.add("a", Display);
        e.set_shown(s, false, 0.0, &mut out);
        e.update(s, 1.0, SMALL, 0.0, &mut out);
        assert_eq!(
            e.watched().collect::<Vec<_>>(),
            [s],
            "sampled while in view"
        );
        e.tick(60_000.0, &mut out);
        assert_eq!(kinds(&out), [("a", Kind::Measurable)]);
        assert_eq!(e.next_deadline(), None);
        // Shown (a class change): a full dwell from the sample that saw it.
        e.set_shown(s, true, 61_000.0, &mut out);
        e.tick(61_999.0, &mut out);
        assert_eq!(viewables(&out), 0);
        e.tick(62_000.0, &mut out);
        assert_eq!(viewables(&out), 1);
        assert_eq!(e.watched().count(), 0, "viewable: no more samples");
    }

    #[test]
    fn hidden_mid_dwell_credits_nothing_since_the_last_sample() {
        let mut e = engine();
        let mut out = Vec::new();
        let s = e.add("a", Display);
        e.update(s, 1.0, SMALL, 0.0, &mut out);
        // Samples at 200 ms steps; the one at the deadline finds it hidden.
        for t in [200.0, 400.0, 600.0, 800.0] {
            e.set_shown(s, true, t, &mut out);
        }
        e.set_shown(s, false, 1000.0, &mut out);
        assert_eq!(viewables(&out), 0);
        e.tick(5000.0, &mut out);
        assert_eq!(viewables(&out), 0);
        assert_eq!(e.watched().count(), 1, "still in view: still sampled");
        // Hidden by a class change, then shown again: the clock restarts.
        e.set_shown(s, true, 5000.0, &mut out);
        e.set_shown(s, false, 5600.0, &mut out);
        e.set_shown(s, true, 5800.0, &mut out);
        e.tick(6500.0, &mut out);
        assert_eq!(viewables(&out), 0);
        e.tick(6800.0, &mut out);
        assert_eq!(viewables(&out), 1);
    }

    #[test]
    fn samples_are_asked_for_only_while_they_decide_something() {
        let mut e = engine();
        let mut out = Vec::new();
        let below = e.add("below", Display);
        let inside = e.add("in", Display);
        let empty = e.add("empty", Display);
        e.update(below, 0.0, SMALL, 0.0, &mut out);
        e.update(inside, 0.7, SMALL, 0.0, &mut out);
        e.update(empty, 1.0, 0.0, 0.0, &mut out);
        assert_eq!(e.watched().collect::<Vec<_>>(), [inside]);
        e.set_page(true, false, 10.0, &mut out);
        assert_eq!(
            e.watched().count(),
            0,
            "an unfocused page dwells on nothing"
        );
    }

    #[test]
    fn a_slot_removed_after_a_pageview_is_never_counted_again() {
        let mut e = engine();
        let mut out = Vec::new();
        let old = e.add("old", Display);
        let sticky = e.add("sticky", Display);
        e.update(old, 1.0, SMALL, 0.0, &mut out);
        e.update(sticky, 1.0, SMALL, 0.0, &mut out);
        e.tick(1000.0, &mut out);
        assert_eq!(out.len(), 4);
        out.clear();
        // The router calls pageview() before it swaps the page (Vue's
        // afterEach); the old slot goes, a new one comes, the sticky stays.
        e.pageview(2000.0, &mut out);
        e.remove(old);
        let new = e.add("new", Display);
        e.update(new, 1.0, SMALL, 2016.0, &mut out);
        e.update(sticky, 1.0, SMALL, 2016.0, &mut out);
        e.tick(10_000.0, &mut out);
        let mut got = kinds(&out);
        got.sort_by_key(|(ad, k)| (*ad, k.as_str()));
        assert_eq!(
            got,
            [
                ("new", Kind::Measurable),
                ("new", Kind::Viewable),
                ("sticky", Kind::Measurable),
                ("sticky", Kind::Viewable)
            ]
        );
    }

    #[test]
    fn a_pageview_after_the_swap_counts_each_slot_once() {
        // React's layout effect: the page is swapped, then pageview(), then
        // the mutation records reach the tracker.
        let mut e = engine();
        let mut out = Vec::new();
        let old = e.add("old", Display);
        e.update(old, 1.0, SMALL, 0.0, &mut out);
        e.pageview(2000.0, &mut out);
        e.remove(old);
        let new = e.add("new", Display);
        e.update(new, 1.0, SMALL, 2016.0, &mut out);
        e.tick(5000.0, &mut out);
        assert_eq!(
            kinds(&out),
            [
                ("old", Kind::Measurable),
                ("old", Kind::Viewable),
                ("new", Kind::Measurable),
                ("new", Kind::Viewable)
            ]
        );
        // A slot added but not yet laid out when pageview() runs counts in
        // the new page view only.
        let late = e.add("late", Display);
        e.pageview(6000.0, &mut out);
        e.update(late, 1.0, SMALL, 6016.0, &mut out);
        e.tick(8000.0, &mut out);
        let late: Vec<_> = out.iter().filter(|i| i.ad_id == "late").collect();
        assert_eq!(late.len(), 2);
    }

    #[test]
    fn a_remount_in_one_page_view_counts_once() {
        let mut e = engine();
        let mut out = Vec::new();
        let first = e.add("a", Display);
        e.update(first, 1.0, SMALL, 0.0, &mut out);
        e.tick(1000.0, &mut out);
        // StrictMode: unobserve and observe again; a keyed remount: a new
        // element with the same ad.
        e.remove(first);
        let again = e.add("a", Display);
        e.update(again, 1.0, SMALL, 1100.0, &mut out);
        e.tick(9000.0, &mut out);
        assert_eq!(
            kinds(&out),
            [("a", Kind::Measurable), ("a", Kind::Viewable)]
        );

        // Removed mid-dwell: the remount is measured already and may still
        // become viewable, from a fresh dwell.
        let b = e.add("b", Display);
        e.update(b, 1.0, SMALL, 10_000.0, &mut out);
        e.remove(b);
        let b = e.add("b", Display);
        e.update(b, 1.0, SMALL, 10_500.0, &mut out);
        e.tick(11_499.0, &mut out);
        assert_eq!(measurables(&out), 2);
        assert_eq!(viewables(&out), 1);
        e.tick(11_500.0, &mut out);
        assert_eq!(viewables(&out), 2);
    }

    #[test]
    fn two_slots_of_one_ad_at_once_are_two_opportunities() {
        let mut e = engine();
        let mut out = Vec::new();
        let a = e.add("a", Display);
        let b = e.add("a", Display);
        e.update(a, 1.0, SMALL, 0.0, &mut out);
        e.update(b, 1.0, SMALL, 0.0, &mut out);
        e.tick(1000.0, &mut out);
        assert_eq!((measurables(&out), viewables(&out)), (2, 2));
        // Each remount takes over one removed slot's record, once.
        e.remove(a);
        e.remove(b);
        let c = e.add("a", Display);
        let d = e.add("a", Display);
        let f = e.add("a", Display);
        for s in [c, d, f] {
            e.update(s, 1.0, SMALL, 2000.0, &mut out);
        }
        e.tick(3000.0, &mut out);
        assert_eq!((measurables(&out), viewables(&out)), (3, 3));
    }

    #[test]
    fn a_pageview_forgets_removed_slots() {
        let mut e = engine();
        let mut out = Vec::new();
        let a = e.add("a", Display);
        e.update(a, 1.0, SMALL, 0.0, &mut out);
        e.remove(a);
        e.pageview(500.0, &mut out);
        let a = e.add("a", Display);
        e.update(a, 1.0, SMALL, 600.0, &mut out);
        assert_eq!(measurables(&out), 2, "a new page view, a new opportunity");
    }

    #[test]
    fn removed_slots_are_remembered_within_a_bound() {
        let mut e = engine();
        let mut out = Vec::new();
        for n in 0..=MAX_RETIRED {
            let ad = format!("ad-{n}");
            let s = e.add(&ad, Display);
            e.update(s, 0.0, SMALL, 0.0, &mut out);
            e.remove(s);
        }
        // The oldest record went; the newest are still taken over.
        let first = e.add("ad-0", Display);
        let last = e.add(&format!("ad-{MAX_RETIRED}"), Display);
        e.update(first, 0.0, SMALL, 1.0, &mut out);
        e.update(last, 0.0, SMALL, 1.0, &mut out);
        assert_eq!(measurables(&out), MAX_RETIRED + 2);
    }

    #[test]
    fn refresh_in_place_is_a_new_opportunity() {
        let mut e = engine();
        let mut out = Vec::new();
        let s = e.add("a", Display);
        e.update(s, 1.0, SMALL, 0.0, &mut out);
        e.tick(1000.0, &mut out);
        e.refresh(s, 1500.0, &mut out);
        assert_eq!(
            kinds(&out)[2],
            ("a", Kind::Measurable),
            "at once: it has a box"
        );
        e.tick(2499.0, &mut out);
        assert_eq!(viewables(&out), 1);
        e.tick(2500.0, &mut out);
        assert_eq!(viewables(&out), 2);
        // A refresh below the fold: measurable only.
        e.update(s, 0.0, SMALL, 3000.0, &mut out);
        e.refresh(s, 3100.0, &mut out);
        e.tick(9000.0, &mut out);
        assert_eq!((measurables(&out), viewables(&out)), (3, 2));
    }

    #[test]
    fn verified_when_the_browser_vouched_for_the_whole_dwell() {
        let verified = |out: &[Impression]| -> Vec<bool> {
            out.iter()
                .filter(|i| i.kind == Kind::Viewable)
                .map(|i| i.verified)
                .collect()
        };
        // Reported visible within the check's delay of the dwell's start.
        let mut e = engine();
        let mut out = Vec::new();
        let s = e.add("a", Display);
        e.update(s, 1.0, SMALL, 0.0, &mut out);
        e.set_unoccluded(s, true, OCCLUSION_DELAY_MS, &mut out);
        e.tick(1000.0, &mut out);
        assert_eq!(verified(&out), [true]);
        assert!(!out[0].verified, "a measurable is never verified");

        // Covered for part of the dwell: viewable all the same, not verified.
        let mut e = engine();
        let mut out = Vec::new();
        let s = e.add("a", Display);
        e.set_unoccluded(s, true, -500.0, &mut out);
        e.update(s, 1.0, SMALL, 0.0, &mut out);
        e.set_unoccluded(s, false, 300.0, &mut out);
        e.set_unoccluded(s, true, 500.0, &mut out);
        e.tick(1000.0, &mut out);
        assert_eq!(verified(&out), [false]);

        // Reported visible only late in the dwell.
        let mut e = engine();
        let mut out = Vec::new();
        let s = e.add("a", Display);
        e.update(s, 1.0, SMALL, 0.0, &mut out);
        e.set_unoccluded(s, true, OCCLUSION_DELAY_MS + 1.0, &mut out);
        e.tick(1000.0, &mut out);
        assert_eq!(verified(&out), [false]);

        // Covered after the dwell completed: the report comes late, the
        // impression stays verified.
        let mut e = engine();
        let mut out = Vec::new();
        let s = e.add("a", Display);
        e.set_unoccluded(s, true, 0.0, &mut out);
        e.update(s, 1.0, SMALL, 0.0, &mut out);
        e.set_unoccluded(s, false, 1200.0, &mut out);
        assert_eq!(verified(&out), [true]);

        // Never reported (a browser without the check): never verified.
        let mut e = engine();
        let mut out = Vec::new();
        let s = e.add("a", Display);
        e.update(s, 1.0, SMALL, 0.0, &mut out);
        e.tick(1000.0, &mut out);
        assert_eq!(verified(&out), [false]);
    }

    #[test]
    fn the_occlusion_check_never_changes_what_is_viewable() {
        let mut e = engine();
        let mut out = Vec::new();
        let covered = e.add("covered", Display);
        let below = e.add("below", Display);
        e.set_unoccluded(covered, false, 0.0, &mut out);
        e.update(covered, 1.0, SMALL, 0.0, &mut out);
        e.set_unoccluded(below, true, 0.0, &mut out);
        e.update(below, 0.0, SMALL, 0.0, &mut out);
        assert_eq!(e.next_deadline(), Some(1000.0));
        e.tick(5000.0, &mut out);
        let v: Vec<_> = out
            .iter()
            .filter(|i| i.kind == Kind::Viewable)
            .map(|i| (i.ad_id.as_str(), i.verified))
            .collect();
        assert_eq!(v, [("covered", false)]);
    }

    #[test]
    fn a_frame_without_its_own_focus_follows_the_top_window() {
        // The top-level document: its own focus.
        assert!(window_focused(true, false, None));
        assert!(!window_focused(false, false, None));
        // A same-origin frame: the tab's focus, wherever it is in the tab.
        assert!(window_focused(false, true, Some(true)));
        assert!(!window_focused(true, true, Some(false)));
        // A cross-origin frame cannot tell: visibility alone decides.
        assert!(window_focused(false, true, None));
    }

    #[test]
    fn a_prerendered_page_counts_nothing_until_shown() {
        let mut e = Engine::new(Rule::default(), false, false).while_prerendered();
        let mut out = Vec::new();
        let s = e.add("a", Display);
        e.update(s, 1.0, SMALL, 0.0, &mut out);
        e.resize(s, 2.0 * SMALL, 100.0, &mut out);
        e.update(s, 1.0, 2.0 * SMALL, 116.0, &mut out);
        e.set_page(true, true, 200.0, &mut out);
        e.tick(60_000.0, &mut out);
        assert!(out.is_empty());
        assert!(e.is_prerendered());
        assert_eq!(e.watched().count(), 0);
        assert_eq!(e.next_deadline(), None);
        e.activate(true, true, 60_000.0, &mut out);
        assert_eq!(kinds(&out), [("a", Kind::Measurable)]);
        e.tick(61_000.0, &mut out);
        assert_eq!(
            kinds(&out),
            [("a", Kind::Measurable), ("a", Kind::Viewable)]
        );
    }

    /// A video that plays from media time `time` of `duration` seconds.
    fn playing(time: f64, duration: f64) -> Playback {
        Playback {
            playing: true,
            ended: false,
            time,
            duration,
            audible: false,
        }
    }

    fn paused(time: f64, duration: f64) -> Playback {
        Playback {
            playing: false,
            ..playing(time, duration)
        }
    }

    fn video_kinds(out: &[Impression]) -> Vec<&'static str> {
        out.iter().map(|i| i.kind.as_str()).collect()
    }

    /// A video ad fully in view, measurable, not started.
    fn video_in_view(e: &mut Engine, out: &mut Vec<Impression>) -> SlotId {
        let s = e.add("v", Format::Video);
        e.update(s, 1.0, SMALL, 0.0, out);
        assert_eq!(video_kinds(out), ["measurable"]);
        s
    }

    #[test]
    fn a_video_in_view_is_viewable_after_two_seconds_of_playback() {
        let mut e = engine();
        let mut out = Vec::new();
        let s = video_in_view(&mut e, &mut out);
        assert_eq!(e.next_deadline(), None, "no dwell before it plays");
        e.tick(10_000.0, &mut out);
        assert_eq!(viewables(&out), 0, "in view, never played");
        e.set_playback(s, playing(0.0, 30.0), 10_000.0, &mut out);
        assert_eq!(video_kinds(&out), ["measurable", "video_start"]);
        assert_eq!(e.next_deadline(), Some(12_000.0));
        assert_eq!(e.watched().collect::<Vec<_>>(), [s]);
        e.set_playback(s, playing(1.0, 30.0), 11_000.0, &mut out);
        e.tick(11_999.0, &mut out);
        assert_eq!(viewables(&out), 0, "a display second is not enough");
        e.tick(12_000.0, &mut out);
        assert_eq!(viewables(&out), 1);
        let v = out.iter().find(|i| i.kind == Kind::Viewable).unwrap();
        assert!(!v.audible, "muted");
        assert!(!v.post);
        assert_eq!(e.watched().count(), 0);
    }

    #[test]
    fn a_video_needs_half_its_pixels_whatever_its_size() {
        let mut e = engine();
        let mut out = Vec::new();
        let s = e.add("v", Format::Video);
        e.update(s, 0.35, 970.0 * 250.0, 0.0, &mut out);
        e.set_playback(s, playing(0.0, 30.0), 0.0, &mut out);
        e.tick(10_000.0, &mut out);
        assert_eq!(viewables(&out), 0, "no large class for video");
        e.update(s, 0.5, 970.0 * 250.0, 10_000.0, &mut out);
        e.set_playback(s, playing(12.0, 30.0), 12_000.0, &mut out);
        assert_eq!(viewables(&out), 1);
    }

    #[test]
    fn pausing_seeking_or_stalling_restarts_the_two_seconds() {
        // Each of pause, seek and stall reports not playing.
        let mut e = engine();
        let mut out = Vec::new();
        let s = video_in_view(&mut e, &mut out);
        e.set_playback(s, playing(0.0, 30.0), 0.0, &mut out);
        e.set_playback(s, paused(1.0, 30.0), 1000.0, &mut out);
        assert_eq!(e.next_deadline(), None);
        assert_eq!(e.watched().count(), 0, "paused: nothing to sample");
        e.tick(60_000.0, &mut out);
        assert_eq!(viewables(&out), 0, "paused after 1 s: measurable only");
        assert_eq!(video_kinds(&out), ["measurable", "video_start"]);
        // Played again: a fresh 2 s, cut by a seek and by a stall.
        e.set_playback(s, playing(1.0, 30.0), 60_000.0, &mut out);
        e.set_playback(s, paused(1.9, 30.0), 61_900.0, &mut out);
        e.set_playback(s, playing(1.9, 30.0), 62_000.0, &mut out);
        e.set_playback(s, paused(3.0, 30.0), 63_100.0, &mut out);
        e.set_playback(s, playing(3.0, 30.0), 63_500.0, &mut out);
        e.set_playback(s, playing(4.99, 30.0), 65_499.0, &mut out);
        assert_eq!(viewables(&out), 0);
        e.set_playback(s, playing(5.0, 30.0), 65_500.0, &mut out);
        assert_eq!(viewables(&out), 1);
    }

    #[test]
    fn a_video_said_to_play_whose_media_time_stands_still_is_not_viewable() {
        let mut e = engine();
        let mut out = Vec::new();
        let s = video_in_view(&mut e, &mut out);
        e.set_playback(s, playing(1.0, 30.0), 0.0, &mut out);
        // The sample at the deadline finds the same media time.
        e.set_playback(s, playing(1.0, 30.0), 2000.0, &mut out);
        e.tick(2000.0, &mut out);
        assert_eq!(viewables(&out), 0);
        assert_eq!(e.next_deadline(), Some(4000.0), "a fresh dwell from now");
        // Still standing at the next deadline: again nothing.
        e.set_playback(s, playing(1.0, 30.0), 4000.0, &mut out);
        assert_eq!(viewables(&out), 0);
        e.set_playback(s, playing(1.2, 30.0), 4200.0, &mut out);
        e.set_playback(s, playing(3.0, 30.0), 6000.0, &mut out);
        assert_eq!(viewables(&out), 1);
    }

    #[test]
    fn a_video_playing_out_of_view_or_on_a_hidden_page_is_not_viewable() {
        let mut e = engine();
        let mut out = Vec::new();
        let s = video_in_view(&mut e, &mut out);
        e.set_playback(s, playing(0.0, 30.0), 0.0, &mut out);
        // Scrolled out after 1.5 s, back for 1.5 s: no 2 continuous seconds.
        e.update(s, 0.2, SMALL, 1500.0, &mut out);
        e.update(s, 1.0, SMALL, 3000.0, &mut out);
        e.update(s, 0.0, SMALL, 4500.0, &mut out);
        e.tick(20_000.0, &mut out);
        assert_eq!(viewables(&out), 0);
        // In view again, then the tab hides and the window loses focus.
        e.update(s, 1.0, SMALL, 20_000.0, &mut out);
        e.set_page(false, true, 21_000.0, &mut out);
        e.set_page(true, true, 22_000.0, &mut out);
        e.set_page(true, false, 23_500.0, &mut out);
        e.set_page(true, true, 24_000.0, &mut out);
        e.set_playback(s, playing(25.0, 30.0), 25_000.0, &mut out);
        e.tick(25_999.0, &mut out);
        assert_eq!(viewables(&out), 0);
        e.tick(26_000.0, &mut out);
        assert_eq!(viewables(&out), 1);
    }

    #[test]
    fn audible_is_the_sound_as_the_two_seconds_complete() {
        let sound = |p: Playback, audible: bool| Playback { audible, ..p };
        // Unmuted at the end of the dwell: audible.
        let mut e = engine();
        let mut out = Vec::new();
        let s = video_in_view(&mut e, &mut out);
        e.set_playback(s, playing(0.0, 30.0), 0.0, &mut out);
        e.set_playback(s, sound(playing(1.5, 30.0), true), 1500.0, &mut out);
        e.tick(2000.0, &mut out);
        let v: Vec<_> = out.iter().filter(|i| i.kind == Kind::Viewable).collect();
        assert!(v[0].audible);
        // Muted before the dwell completed: not audible.
        let mut e = engine();
        let mut out = Vec::new();
        let s = video_in_view(&mut e, &mut out);
        e.set_playback(s, sound(playing(0.0, 30.0), true), 0.0, &mut out);
        e.set_playback(s, playing(1.9, 30.0), 1900.0, &mut out);
        e.tick(2000.0, &mut out);
        let v: Vec<_> = out.iter().filter(|i| i.kind == Kind::Viewable).collect();
        assert!(!v[0].audible);
        // Unmuted after it: too late.
        e.set_playback(s, sound(playing(2.1, 30.0), true), 2100.0, &mut out);
        assert_eq!(viewables(&out), 1);
        // Only a video is ever audible.
        assert!(out
            .iter()
            .filter(|i| i.kind != Kind::Viewable)
            .all(|i| !i.audible));
    }

    #[test]
    fn progress_is_reported_once_each_as_media_time_passes_the_quartiles() {
        let mut e = engine();
        let mut out = Vec::new();
        let s = e.add("v", Format::Video);
        // Below the fold: progress all the same.
        e.update(s, 0.0, SMALL, 0.0, &mut out);
        out.clear();
        e.set_playback(s, playing(0.0, 8.0), 0.0, &mut out);
        e.set_playback(s, playing(1.9, 8.0), 1900.0, &mut out);
        assert_eq!(video_kinds(&out), ["video_start"]);
        e.set_playback(s, playing(2.0, 8.0), 2000.0, &mut out);
        e.set_playback(s, playing(4.1, 8.0), 4100.0, &mut out);
        e.set_playback(s, playing(6.0, 8.0), 6000.0, &mut out);
        assert_eq!(
            video_kinds(&out),
            ["video_start", "video_q25", "video_q50", "video_q75"]
        );
        e.set_playback(
            s,
            Playback {
                ended: true,
                ..paused(8.0, 8.0)
            },
            8000.0,
            &mut out,
        );
        assert_eq!(video_kinds(&out)[4..], ["video_complete"]);
        assert_eq!(viewables(&out), 0, "never in view");
        // Replayed after its end: nothing is sent again.
        for t in [0.0, 2.0, 4.0, 6.0, 8.0] {
            e.set_playback(s, playing(t, 8.0), 9000.0 + t * 1000.0, &mut out);
        }
        assert_eq!(out.len(), 5);
        // Every event names the ad, none a post.
        assert!(out.iter().all(|i| i.ad_id == "v" && !i.post));
    }

    #[test]
    fn a_seek_past_a_quartile_or_to_the_end_reports_what_media_time_reached() {
        let mut e = engine();
        let mut out = Vec::new();
        let s = e.add("v", Format::Video);
        // Seeked while paused, never played: nothing, not even a start.
        e.set_playback(s, paused(6.0, 8.0), 0.0, &mut out);
        assert!(out.is_empty());
        e.set_playback(s, playing(6.0, 8.0), 100.0, &mut out);
        assert_eq!(
            video_kinds(&out),
            ["video_start", "video_q25", "video_q50", "video_q75"]
        );
        // Media time reaching the duration completes without `ended`.
        e.set_playback(s, playing(8.0, 8.0), 2100.0, &mut out);
        assert_eq!(video_kinds(&out)[4..], ["video_complete"]);
    }

    #[test]
    fn no_quartile_is_guessed_while_the_duration_is_unknown() {
        for unknown in [f64::INFINITY, f64::NAN, 0.0] {
            let mut e = engine();
            let mut out = Vec::new();
            let s = e.add("v", Format::Video);
            for t in [0.0, 1.0, 3.0, 7.0, 50.0] {
                e.set_playback(s, playing(t, unknown), t * 1000.0, &mut out);
            }
            assert_eq!(video_kinds(&out), ["video_start"], "{unknown}");
            // Played through: the recording's duration is known at its end.
            let end = Playback {
                ended: true,
                ..paused(8.0, 8.0)
            };
            e.set_playback(s, end, 60_000.0, &mut out);
            assert_eq!(
                video_kinds(&out),
                [
                    "video_start",
                    "video_q25",
                    "video_q50",
                    "video_q75",
                    "video_complete"
                ]
            );
        }
        // Ended with the duration still unknown: complete, no quartile.
        let mut e = engine();
        let mut out = Vec::new();
        let s = e.add("v", Format::Video);
        e.set_playback(s, playing(0.0, f64::INFINITY), 0.0, &mut out);
        let end = Playback {
            ended: true,
            ..paused(8.0, f64::INFINITY)
        };
        e.set_playback(s, end, 8000.0, &mut out);
        assert_eq!(video_kinds(&out), ["video_start", "video_complete"]);
    }

    #[test]
    fn a_new_page_view_or_a_remount_and_video_progress() {
        // A remount in one page view keeps what was sent.
        let mut e = engine();
        let mut out = Vec::new();
        let s = e.add("v", Format::Video);
        e.set_playback(s, playing(3.0, 8.0), 0.0, &mut out);
        assert_eq!(video_kinds(&out), ["video_start", "video_q25"]);
        // Removed before it had a box: what it sent is remembered all the same.
        e.remove(s);
        let s = e.add("v", Format::Video);
        e.update(s, 0.0, SMALL, 100.0, &mut out);
        e.set_playback(s, playing(3.0, 8.0), 100.0, &mut out);
        assert_eq!(
            video_kinds(&out)[2..],
            ["measurable"],
            "one start per page view"
        );
        // A new page view: counted again, from its next report.
        e.pageview(1000.0, &mut out);
        e.set_playback(s, playing(3.1, 8.0), 1100.0, &mut out);
        assert_eq!(out.len(), 3, "carried until laid out in this page view");
        e.update(s, 0.0, SMALL, 1116.0, &mut out);
        assert_eq!(
            video_kinds(&out)[3..],
            ["measurable", "video_start", "video_q25"]
        );
        // A display ad of the same id is another slot, not a remount.
        let mut e = engine();
        let mut out = Vec::new();
        let v = e.add("v", Format::Video);
        e.update(v, 1.0, SMALL, 0.0, &mut out);
        e.remove(v);
        let d = e.add("v", Display);
        e.update(d, 1.0, SMALL, 10.0, &mut out);
        assert_eq!(measurables(&out), 2);
    }

    #[test]
    fn a_post_follows_the_display_rule_in_its_own_namespace() {
        let mut e = engine();
        let mut out = Vec::new();
        let ad = e.add("x", Display);
        let post = e.add("x", Format::Post);
        e.update(ad, 1.0, SMALL, 0.0, &mut out);
        e.update(post, 1.0, SMALL, 0.0, &mut out);
        e.set_playback(post, playing(0.0, 8.0), 0.0, &mut out);
        e.tick(1000.0, &mut out);
        let got: Vec<_> = out.iter().map(|i| (i.post, i.kind)).collect();
        assert_eq!(
            got,
            [
                (false, Kind::Measurable),
                (true, Kind::Measurable),
                (false, Kind::Viewable),
                (true, Kind::Viewable)
            ],
            "a post reports no video progress"
        );
        // Both removed and added again: each takes over its own record.
        e.remove(ad);
        e.remove(post);
        let post2 = e.add("x", Format::Post);
        let ad2 = e.add("x", Display);
        e.update(ad2, 1.0, SMALL, 2000.0, &mut out);
        e.update(post2, 1.0, SMALL, 2000.0, &mut out);
        e.tick(3000.0, &mut out);
        assert_eq!(out.len(), 4, "remounts count once");
    }
}
