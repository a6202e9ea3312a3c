//! Ad slots: the elements followed, the observers that watch them, and what
//! they report to the engine.
//!
//! - An IntersectionObserver reports each slot's share in view and box.
//! - A ResizeObserver reports a slot that gets, changes or loses its box
//!   (an ad server filling an empty `div`). The IntersectionObserver sends
//!   nothing then unless a threshold is crossed, so the slot is observed
//!   again, which makes it report at the next frame.
//! - Whether CSS renders a slot visibly (`visibility`, `opacity`,
//!   `content-visibility`) fires no observer: it is sampled at each
//!   intersection report and, while a slot in view is not yet viewable,
//!   every [`SAMPLE_EVERY_MS`] and at the dwell deadline.
//! - Where the browser has IntersectionObserver v2 (`trackVisibility`), a
//!   second one reports whether each slot is covered or visually altered;
//!   that decides the `verified` flag only.
//! - A MutationObserver follows slots added and removed, and `data-ad-id`
//!   (`data-post-id` of a post).
//! - A video ad's `<video>` reports its playback by media events, all to
//!   one closure, which reads the element's state whatever the event.

use alloc::rc::Weak;
use alloc::{string::String, vec, vec::Vec};
use core::cell::RefCell;

use js_sys::Object;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{
    Document, Element, Event, EventTarget, IntersectionObserver, IntersectionObserverInit,
    MutationObserver, Node, ResizeObserver, Window,
};

use super::timer::Timer;
use super::{
    array, attribute, callback, elements, get, has, invoke, is_true, listen, now, number, object,
    page_listener, set, warn, window, with, Callback, Inner, Listener,
};
use crate::engine::{
    window_focused, Engine, Format, Impression, Playback, Rule, SlotId, OCCLUSION_DELAY_MS,
};
use crate::limits::MAX_AD_OR_USER_ID_BYTES;
use crate::queue;

/// How often the CSS visibility of a slot in view, not yet viewable, is
/// sampled: five samples in the one-second dwell.
const SAMPLE_EVERY_MS: f64 = 200.0;

/// The posts followed, always (not an option: the attribute is the API).
const POST_SELECTOR: &str = "[data-post-id]";

/// The media events after which a video's playback is read again.
/// `waiting` and `stalled` report data running out, `seeking` a jump;
/// `timeupdate` carries media time past the quartiles.
const MEDIA_EVENTS: [&str; 11] = [
    "play",
    "playing",
    "pause",
    "ended",
    "waiting",
    "stalled",
    "seeking",
    "seeked",
    "timeupdate",
    "volumechange",
    "durationchange",
];

/// `HTMLMediaElement.HAVE_FUTURE_DATA`: below it, playback waits for data.
const HAVE_FUTURE_DATA: f64 = 3.0;

/// A video's playback as the engine takes it. Read as properties: one
/// import for all of them, not one binding each.
fn playback(v: &Element) -> Playback {
    let flag = |name: &str| is_true(v, name);
    let number = |name: &str| number(v, name);
    let ended = flag("ended");
    Playback {
        playing: !flag("paused")
            && !ended
            && !flag("seeking")
            && number("readyState") >= HAVE_FUTURE_DATA,
        ended,
        time: number("currentTime"),
        duration: number("duration"),
        audible: !flag("muted") && number("volume") > 0.0,
    }
}

/// The `<video>` of a slot that follows the video rule: the slot itself,
/// or the one it holds when it says `data-ad-format="video"`.
fn video_of(el: &Element) -> Option<Element> {
    let tag = get(el, "tagName").as_string();
    if tag.is_some_and(|t| t.eq_ignore_ascii_case("video")) {
        return Some(el.clone());
    }
    if attribute(el, "data-ad-format").as_deref() != Some("video") {
        return None;
    }
    invoke(
        el,
        "querySelector",
        &JsValue::from_str("video"),
        &JsValue::UNDEFINED,
    )
    .dyn_into()
    .ok()
}

/// Adds (or removes) the media listener on `video`, for every media event.
fn listen_media(video: &EventTarget, cb: &Callback, add: bool) {
    for name in MEDIA_EVENTS {
        listen(video, name, cb, add);
    }
}

/// What an observer reports.
#[derive(Clone, Copy)]
enum Report {
    Intersections,
    Occlusion,
    Resizes,
    Mutations,
}

/// The callback of every observer: one closure type, since each closure
/// type costs its own glue in the wasm.
fn observer_callback(me: &Weak<RefCell<Inner>>, report: Report) -> Callback {
    let m = me.clone();
    callback(move |entries: JsValue| {
        with(&m, |i| {
            if i.stopped {
                return;
            }
            match report {
                Report::Intersections => i.on_intersections(&entries),
                Report::Occlusion => i.on_occlusion(&entries),
                Report::Resizes => i.on_resizes(&entries),
                Report::Mutations => i.on_mutations(&entries),
            }
            i.after();
        })
    })
}

#[wasm_bindgen]
extern "C" {
    /// The methods the three observer types share, bound once: web-sys
    /// binds them for each type, an import and its glue apiece. `options`
    /// is the MutationObserver's; the others are given `undefined`.
    type Observer;
    #[wasm_bindgen(method)]
    fn observe(this: &Observer, target: &JsValue, options: &JsValue);
    #[wasm_bindgen(method)]
    fn unobserve(this: &Observer, target: &Element);
    #[wasm_bindgen(method)]
    fn disconnect(this: &Observer);
}

/// An observer and the callback it reports to, disconnected on drop.
struct Watching {
    observer: Observer,
    _cb: Callback,
}

impl Watching {
    fn new(observer: impl JsCast, cb: Callback) -> Watching {
        Watching {
            observer: observer.unchecked_into(),
            _cb: cb,
        }
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.observer.disconnect();
    }
}

struct Slot {
    el: Element,
    id: SlotId,
    format: Format,
    /// The video whose playback decides, for a video ad.
    video: Option<Element>,
    /// The id came from `observe(el, adId)` (or `observePost`), not from
    /// the element's attribute.
    explicit: bool,
    /// The `data-ad-token` of the slot's current ad, read when the ad was
    /// set: by the time an ad refresh is seen the element already holds
    /// the next ad's token, and the last events of the old ad need theirs.
    token: Option<String>,
    /// The campaign of the slot's current ad, sent on each of its events:
    /// `campaignId` of `observe`, else `data-campaign-id`, read when the ad
    /// was set, as the token is. A post has none.
    campaign: Option<String>,
}

/// The campaign of the slot `el`: `given` (`campaignId` of `observe`),
/// else its `data-campaign-id`; none for a post. `Err` when it is not a
/// valid wire id: the slot is then refused as for a bad ad id.
fn campaign_of(el: &Element, given: Option<String>, post: bool) -> Result<Option<String>, ()> {
    if post {
        return Ok(None);
    }
    match given.or_else(|| attribute(el, "data-campaign-id")) {
        Some(c) if !queue::valid_id(&c, MAX_AD_OR_USER_ID_BYTES) => Err(()),
        c => Ok(c),
    }
}

/// A slot's `data-ad-token`; one that would need escaping is left out (the
/// edge then says why).
fn ad_token(el: &Element) -> Option<String> {
    attribute(el, "data-ad-token").filter(|t| queue::valid_id(t, MAX_AD_OR_USER_ID_BYTES))
}

/// The area of the rectangle `r` (a `DOMRectReadOnly`: an element's
/// border box, as IntersectionObserver measures it).
fn area(r: &JsValue) -> f64 {
    number(r, "width").max(0.0) * number(r, "height").max(0.0)
}

/// Whether CSS renders `el` visibly. `checkVisibility` with the opacity and
/// visibility checks covers `visibility`, `opacity: 0` (the element's or an
/// ancestor's) and `content-visibility: hidden` ancestors; the element's own
/// `content-visibility: hidden` (its content is not painted) is read from
/// its computed style. Without `checkVisibility` (Chromium before 121,
/// Firefox before 125, Safari before 17.4) the same is read from the
/// computed styles of the element and its ancestors.
fn rendered(win: &Window, el: &Element, check_options: &JsValue) -> bool {
    let check = has(el, "checkVisibility");
    let mut at = Some(el.clone());
    let mut own = true;
    while let Some(e) = at {
        let Some(style) = Some(invoke(win, "getComputedStyle", &e, &JsValue::UNDEFINED))
            .filter(JsValue::is_object)
        else {
            break;
        };
        let is = |name: &str, value: &str| get(&style, name) == JsValue::from_str(value);
        if is("contentVisibility", "hidden")
            || !check && (is("opacity", "0") || own && !is("visibility", "visible"))
        {
            return false;
        }
        if check {
            let checked = invoke(el, "checkVisibility", check_options, &JsValue::UNDEFINED);
            return checked.as_bool() == Some(true);
        }
        own = false;
        at = object(&e, "parentElement").map(JsCast::unchecked_into);
    }
    true
}

/// Where this document is: the top-level one, or in a frame that can or
/// cannot reach the top-level window.
enum Frame {
    Top,
    /// Same origin as the top-level document.
    Reaches(Window),
    /// Another origin: the top-level document is out of reach.
    Isolated,
}

fn frame(win: &Window) -> Frame {
    let top = get(win, "top");
    if top == JsValue::from(win) {
        return Frame::Top;
    }
    // Reading another origin's `document` throws, which `get` turns into
    // `undefined`.
    if get(&top, "document").is_object() {
        Frame::Reaches(top.unchecked_into())
    } else {
        Frame::Isolated
    }
}

/// `doc.hasFocus()`; `None` when it throws.
fn has_focus(doc: &JsValue) -> Option<bool> {
    invoke(doc, "hasFocus", &JsValue::UNDEFINED, &JsValue::UNDEFINED).as_bool()
}

/// Whether the window counts as focused ([`window_focused`]).
pub(super) fn page_focused(win: &Window, doc: &Document) -> bool {
    let own = has_focus(doc).unwrap_or(true);
    let top = match frame(win) {
        Frame::Top => return own,
        Frame::Reaches(top) => has_focus(&get(&top, "document")),
        Frame::Isolated => None,
    };
    window_focused(own, true, top)
}

/// The followed slots, their observers and the engine that judges them.
pub(super) struct Slots {
    pub(super) engine: Engine,
    /// The engine's impressions not yet queued; kept for its capacity.
    pub(super) out: Vec<Impression>,
    list: Vec<Slot>,
    io: Option<Watching>,
    /// IntersectionObserver v2, where the browser has it.
    occlusion: Option<Watching>,
    ro: Option<Watching>,
    mo: Option<Watching>,
    /// `{opacityProperty: true, visibilityProperty: true}` for `checkVisibility`.
    check_options: JsValue,
    /// The top-level window's focus and blur, in a same-origin frame.
    listeners: Vec<Listener>,
    /// Fires at the engine's next dwell deadline, or sooner for the next
    /// sample while the engine watches a slot.
    timer: Option<Timer>,
    /// When `timer` fires.
    timer_at: f64,
    /// The one media listener of every video followed.
    media: Option<Callback>,
}

impl Slots {
    pub(super) fn new(rule: Rule, visible: bool, focused: bool, prerendered: bool) -> Slots {
        let check_options = Object::new();
        for name in ["opacityProperty", "visibilityProperty"] {
            set(&check_options, name, &JsValue::TRUE);
        }
        let engine = Engine::new(rule, visible, focused);
        Slots {
            engine: if prerendered {
                engine.while_prerendered()
            } else {
                engine
            },
            out: Vec::new(),
            list: Vec::new(),
            io: None,
            occlusion: None,
            ro: None,
            mo: None,
            check_options: check_options.into(),
            listeners: Vec::new(),
            timer: None,
            timer_at: 0.0,
            media: None,
        }
    }

    /// The token and the campaign of the ad `slot` shows now.
    pub(super) fn token_and_campaign(&self, slot: SlotId) -> (Option<&str>, Option<&str>) {
        self.list
            .iter()
            .find(|s| s.id == slot)
            .map_or((None, None), |s| {
                (s.token.as_deref(), s.campaign.as_deref())
            })
    }

    fn id_of(&self, el: &Element) -> Option<SlotId> {
        self.list.iter().find(|s| &s.el == el).map(|s| s.id)
    }

    /// Asks the IntersectionObserver for a fresh report on `el`: a target
    /// observed again is reported at the next frame.
    fn report_again(&self, el: &Element) {
        if let Some(io) = &self.io {
            io.observer.unobserve(el);
            io.observer.observe(el, &JsValue::UNDEFINED);
        }
    }

    /// Disconnects the observers and forgets every slot, in the engine too
    /// (a dwell under way must not end in an event later).
    pub(super) fn stop(&mut self) {
        self.io = None;
        self.occlusion = None;
        self.ro = None;
        self.mo = None;
        self.listeners.clear();
        self.timer = None;
        for slot in &self.list {
            if let (Some(v), Some(cb)) = (&slot.video, &self.media) {
                listen_media(v, cb, false);
            }
            self.engine.remove(slot.id);
        }
        self.list.clear();
        self.media = None;
        self.out.clear();
    }
}

impl Inner {
    /// Creates the observers and tracks the slots already on the page.
    pub(super) fn install_observers(&mut self, win: &Window) {
        let me = self.me.clone();
        if !has(win, "IntersectionObserver") {
            self.log("glimpse: no IntersectionObserver; nothing is measurable");
            return;
        }
        let cb = observer_callback(&me, Report::Intersections);
        let init = IntersectionObserverInit::new();
        // In any order, repeats allowed: the constructor sorts them (both
        // ratios are checked to be in 0..=1).
        let rule = &self.opts.rule;
        // Written out: `[T; N]::map` is compiled once for each use.
        let thresholds = [
            JsValue::from(0.0),
            JsValue::from(rule.min_ratio),
            JsValue::from(rule.large_ratio),
            JsValue::from(1.0),
        ];
        set(&init, "threshold", &array(&thresholds));
        let Ok(io) = IntersectionObserver::new_with_options(cb.as_ref().unchecked_ref(), &init)
        else {
            return;
        };
        self.slots.io = Some(Watching::new(io, cb));

        let cb = observer_callback(&me, Report::Occlusion);
        let init = IntersectionObserverInit::new();
        set(&init, "trackVisibility", &JsValue::TRUE);
        set(&init, "delay", &JsValue::from_f64(OCCLUSION_DELAY_MS));
        if let Ok(io) = IntersectionObserver::new_with_options(cb.as_ref().unchecked_ref(), &init) {
            // A browser without v2 ignores the option.
            if get(&io, "trackVisibility").as_bool() == Some(true) {
                self.slots.occlusion = Some(Watching::new(io, cb));
            }
        }

        if has(win, "ResizeObserver") {
            let cb = observer_callback(&me, Report::Resizes);
            if let Ok(ro) = ResizeObserver::new(cb.as_ref().unchecked_ref()) {
                self.slots.ro = Some(Watching::new(ro, cb));
            }
        }

        if let Frame::Reaches(top) = frame(win) {
            let top: &web_sys::EventTarget = top.as_ref();
            self.slots.listeners = vec![
                page_listener(&me, top, "focus", false),
                page_listener(&me, top, "blur", false),
            ];
        }

        let m = me.clone();
        self.slots.media = Some(callback(move |e: JsValue| {
            with(&m, |i| i.on_media(e.unchecked_ref()));
        }));

        let root = object(&self.doc, "documentElement");
        if let Some(root) = &root {
            self.scan(root.unchecked_ref());
        }
        let cb = observer_callback(&me, Report::Mutations);
        if let Ok(mo) = MutationObserver::new(cb.as_ref().unchecked_ref()) {
            let init = Object::new();
            for name in ["childList", "subtree", "attributes"] {
                set(&init, name, &JsValue::TRUE);
            }
            let filter = [
                JsValue::from_str(id_attribute(false)),
                JsValue::from_str(id_attribute(true)),
            ];
            set(&init, "attributeFilter", &array(&filter));
            let mo = Watching::new(mo, cb);
            if let Some(root) = root {
                mo.observer.observe(&root, &init);
            }
            self.slots.mo = Some(mo);
        }
    }

    fn on_intersections(&mut self, entries: &JsValue) {
        let Some(win) = window() else { return };
        let s = &mut self.slots;
        for e in elements(entries) {
            let target: Element = get(&e, "target").unchecked_into();
            let Some(id) = s.id_of(&target) else {
                continue;
            };
            let ratio = if is_true(&e, "isIntersecting") {
                number(&e, "intersectionRatio")
            } else {
                0.0
            };
            let time = number(&e, "time");
            let shown = rendered(&win, &target, &s.check_options);
            s.engine.set_shown(id, shown, time, &mut s.out);
            let area = area(&get(&e, "boundingClientRect"));
            s.engine.update(id, ratio, area, time, &mut s.out);
        }
    }

    /// IntersectionObserver v2: whether each slot is covered or altered.
    fn on_occlusion(&mut self, entries: &JsValue) {
        let s = &mut self.slots;
        for e in elements(entries) {
            let visible = is_true(&e, "isVisible");
            if let Some(id) = s.id_of(get(&e, "target").unchecked_ref()) {
                s.engine
                    .set_unoccluded(id, visible, number(&e, "time"), &mut s.out);
            }
        }
    }

    /// Slots whose box appeared, changed or went: the engine learns the new
    /// area now, and the share in view from the report asked for.
    fn on_resizes(&mut self, entries: &JsValue) {
        let s = &mut self.slots;
        for e in elements(entries) {
            let el: Element = get(&e, "target").unchecked_into();
            let Some(id) = s.id_of(&el) else { continue };
            let rect = invoke(
                &el,
                "getBoundingClientRect",
                &JsValue::UNDEFINED,
                &JsValue::UNDEFINED,
            );
            let area = area(&rect);
            if s.engine.resize(id, area, now(), &mut s.out) {
                s.report_again(&el);
            }
        }
    }

    /// Samples whether CSS renders the slots the engine watches visibly,
    /// and a watched video's playback (a stall need not fire an event).
    fn sample(&mut self) {
        let Some(win) = window() else { return };
        let s = &mut self.slots;
        let t = now();
        // The watched ids once, by a push loop (a `collect` would be a copy
        // of its own of the collecting code): asking the engine for each
        // slot would scan every slot for every slot.
        let mut watched = Vec::new();
        for id in s.engine.watched() {
            watched.push(id);
        }
        for slot in s.list.iter().filter(|x| watched.contains(&x.id)) {
            if let Some(v) = &slot.video {
                s.engine.set_playback(slot.id, playback(v), t, &mut s.out);
            }
            let shown = rendered(&win, &slot.el, &s.check_options);
            s.engine.set_shown(slot.id, shown, t, &mut s.out);
        }
    }

    /// A media event of a followed video.
    fn on_media(&mut self, e: &Event) {
        if self.stopped {
            return;
        }
        let s = &mut self.slots;
        let target = get(e, "target");
        let found = s.list.iter().find(|x| {
            x.video
                .as_ref()
                .is_some_and(|v| AsRef::<JsValue>::as_ref(v) == &target)
        });
        if let Some(slot) = found {
            if let Some(v) = &slot.video {
                s.engine
                    .set_playback(slot.id, playback(v), now(), &mut s.out);
            }
        }
        self.after();
    }

    /// A new page view: the engine counts each slot again at its next
    /// report, asked for now; the route change removes its slots before.
    pub(super) fn new_page_view(&mut self) {
        let s = &mut self.slots;
        s.engine.pageview(now(), &mut s.out);
        for slot in &s.list {
            s.report_again(&slot.el);
        }
        self.after();
    }

    /// `refresh(el)`: the ad of `el` was refreshed in place, a new
    /// opportunity under the same ad id.
    pub(super) fn refresh_slot(&mut self, el: &Element) {
        let Some(id) = self.slots.id_of(el) else {
            self.log("glimpse: refresh() of an element that is not observed is ignored");
            return;
        };
        self.before_ad_change(el);
        let s = &mut self.slots;
        s.engine.refresh(id, now(), &mut s.out);
        self.after();
    }

    fn on_mutations(&mut self, records: &JsValue) {
        // Removals first: a slot replaced by one of the same ad (a keyed
        // remount) hands over what it earned.
        let removed = elements(records).any(|r| number(&get(&r, "removedNodes"), "length") > 0.0);
        if removed {
            // Pushed, not collected: each `collect` is a copy of its own of
            // the collecting code in the wasm.
            let mut gone = Vec::new();
            for s in &self.slots.list {
                if !is_true(&s.el, "isConnected") {
                    gone.push(s.el.clone());
                }
            }
            for el in &gone {
                self.untrack(el);
            }
        }
        for r in elements(records) {
            if get(&r, "type") == "attributes" {
                if let Ok(el) = get(&r, "target").dyn_into::<Element>() {
                    let post = get(&r, "attributeName") == "data-post-id";
                    self.on_id_change(&el, post);
                }
                continue;
            }
            for node in elements(&get(&r, "addedNodes")) {
                if node.is_object() {
                    self.scan(node.unchecked_ref());
                }
            }
        }
    }

    /// Tracks `node` and its descendants that match the selector (ads) or
    /// carry `data-post-id` (posts); an element that is both is an ad.
    fn scan(&mut self, node: &Node) {
        // Added and removed again before this callback: nothing to follow.
        let Some(el) = node
            .dyn_ref::<Element>()
            .filter(|el| is_true(el, "isConnected"))
        else {
            return;
        };
        let ads = self.opts.selector.clone();
        for (selector, post) in [(ads.as_str(), false), (POST_SELECTOR, true)] {
            let selector = JsValue::from_str(selector);
            if invoke(el, "matches", &selector, &JsValue::UNDEFINED).as_bool() == Some(true) {
                self.track(el, None, None, post);
            }
            let list = invoke(el, "querySelectorAll", &selector, &JsValue::UNDEFINED);
            for child in elements(&list) {
                if let Ok(child) = child.dyn_into::<Element>() {
                    self.track(&child, None, None, post);
                }
            }
        }
    }

    /// `data-ad-id` (or `data-post-id` when `post`) of `el` changed.
    fn on_id_change(&mut self, el: &Element, post: bool) {
        let Some(slot) = self.slots.list.iter().find(|s| &s.el == el) else {
            if is_true(el, "isConnected") {
                self.scan(el);
            }
            return;
        };
        // An explicit id is the page's; the other namespace's attribute
        // says nothing about this slot.
        if slot.explicit || post != (slot.format == Format::Post) {
            return;
        }
        let id = slot.id;
        match (
            attribute(el, id_attribute(post)),
            campaign_of(el, None, post),
        ) {
            (Some(ad), Ok(campaign)) if queue::valid_id(&ad, MAX_AD_OR_USER_ID_BYTES) => {
                if let Some(slot) = self.before_ad_change(el) {
                    slot.campaign = campaign;
                }
                let s = &mut self.slots;
                s.engine.set_ad_id(id, &ad, now(), &mut s.out);
            }
            _ => self.untrack(el),
        }
    }

    /// Follows `el` as an ad slot, or a post when `post`, under `ad_id` or
    /// else its attribute, in the campaign `campaign_id` or else its
    /// attribute's.
    #[inline(never)]
    pub(super) fn track(
        &mut self,
        el: &Element,
        ad_id: Option<String>,
        campaign_id: Option<String>,
        post: bool,
    ) {
        if self.stopped {
            return;
        }
        let explicit = ad_id.is_some();
        let Some(ad) = ad_id.or_else(|| attribute(el, id_attribute(post))) else {
            self.log("glimpse: an element without data-ad-id (data-post-id for a post) is skipped");
            return;
        };
        let (true, Ok(campaign)) = (
            queue::valid_id(&ad, MAX_AD_OR_USER_ID_BYTES),
            campaign_of(el, campaign_id, post),
        ) else {
            warn("glimpse: an id must be 1 to 128 characters of [A-Za-z0-9._:-]; element skipped");
            return;
        };
        if let Some(slot) = self.slots.list.iter_mut().find(|s| &s.el == el) {
            // Observed twice (a re-render): no second impression. An
            // explicit id of the other namespace does not turn it over.
            if explicit && post == (slot.format == Format::Post) {
                slot.explicit = true;
                let id = slot.id;
                if let Some(slot) = self.before_ad_change(el) {
                    slot.campaign = campaign;
                }
                let s = &mut self.slots;
                s.engine.set_ad_id(id, &ad, now(), &mut s.out);
            }
            return;
        }
        let s = &mut self.slots;
        let Some(io) = &s.io else { return };
        let video = if post { None } else { video_of(el) };
        let format = match (&video, post) {
            (_, true) => Format::Post,
            (Some(_), false) => Format::Video,
            (None, false) => Format::Display,
        };
        let id = s.engine.add(&ad, format);
        if let (Some(v), Some(cb)) = (&video, &s.media) {
            listen_media(v, cb, true);
            // It may be playing already (autoplay before the SDK started).
            s.engine.set_playback(id, playback(v), now(), &mut s.out);
        }
        io.observer.observe(el, &JsValue::UNDEFINED);
        if let Some(o) = &s.occlusion {
            o.observer.observe(el, &JsValue::UNDEFINED);
        }
        if let Some(ro) = &s.ro {
            ro.observer.observe(el, &JsValue::UNDEFINED);
        }
        s.list.push(Slot {
            el: el.clone(),
            id,
            format,
            video,
            explicit,
            token: ad_token(el),
            campaign,
        });
    }

    pub(super) fn untrack(&mut self, el: &Element) {
        if let Some(pos) = self.slots.list.iter().position(|s| &s.el == el) {
            let s = &mut self.slots;
            if let Some(io) = &s.io {
                io.observer.unobserve(el);
            }
            if let Some(o) = &s.occlusion {
                o.observer.unobserve(el);
            }
            if let Some(ro) = &s.ro {
                ro.observer.unobserve(el);
            }
            if let (Some(v), Some(cb)) = (s.list.get(pos).and_then(|x| x.video.as_ref()), &s.media)
            {
                listen_media(v, cb, false);
            }
            s.engine.tick(now(), &mut s.out);
            // Queued while the slot, and so its token, is still known.
            self.queue_out();
            let s = &mut self.slots;
            let slot = s.list.swap_remove(pos);
            s.engine.remove(slot.id);
        }
    }

    /// Before `el`'s slot changes ads: queues what its current ad has
    /// earned up to now, with that ad's token and campaign, then takes the
    /// token now on the element for the next ad's events. Returns the slot,
    /// for the caller to set the next ad's campaign (a refresh keeps it).
    fn before_ad_change(&mut self, el: &Element) -> Option<&mut Slot> {
        let s = &mut self.slots;
        s.engine.tick(now(), &mut s.out);
        self.queue_out();
        let slot = self.slots.list.iter_mut().find(|s| &s.el == el)?;
        slot.token = ad_token(el);
        Some(slot)
    }

    /// Turns the engine's impressions into queued events and arms the
    /// timer for the next dwell deadline, or the next sample while the
    /// engine watches a slot; a timer due sooner is kept. The timer samples
    /// CSS visibility before it credits a dwell.
    pub(super) fn after(&mut self) {
        if self.stopped {
            return;
        }
        self.queue_out();
        let t = now();
        let s = &mut self.slots;
        let sample = s.engine.watched().next().map(|_| t + SAMPLE_EVERY_MS);
        let Some(due) = (match (s.engine.next_deadline(), sample) {
            (Some(deadline), Some(sample)) => Some(deadline.min(sample)),
            (deadline, sample) => deadline.or(sample),
        }) else {
            s.timer = None;
            return;
        };
        if s.timer.is_some() && s.timer_at <= due {
            return;
        }
        let m = self.me.clone();
        // Truncated, plus one: the timer fires after the deadline.
        let wait = (due - t).clamp(0.0, 3_600_000.0) as u32 + 1;
        s.timer_at = due;
        s.timer = Timer::once(wait, move || {
            with(&m, |i| {
                i.slots.timer = None;
                i.sample();
                let s = &mut i.slots;
                s.engine.tick(now(), &mut s.out);
                i.after();
            })
        });
    }
}

/// The attribute that names an element's ad, or its post when `post`.
fn id_attribute(post: bool) -> &'static str {
    if post {
        "data-post-id"
    } else {
        "data-ad-id"
    }
}
