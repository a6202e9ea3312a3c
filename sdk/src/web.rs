//! The browser glue: observers, listeners, timers, transport and storage
//! around the pure [`Engine`] and [`Queue`].
//!
//! Every JavaScript resource (observer, listener, timer, lock) is owned by a
//! Rust value and released when that value drops. Callbacks reach the tracker
//! through a `Weak`, borrow it with `try_borrow_mut` and never panic, so
//! nothing throws into the host page once `start` has returned.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use gloo_timers::callback::{Interval, Timeout};
use js_sys::{Array, Function, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{
    Document, Element, Event, EventTarget, IntersectionObserver, IntersectionObserverEntry,
    IntersectionObserverInit, MutationObserver, MutationObserverInit, MutationRecord, Node,
    RequestCredentials, RequestInit, Response, Storage, VisibilityState, Window,
};

use crate::engine::{Engine, Impression, SlotId};
use crate::options::Options;
use crate::queue::{self, classify, parse_retry_after_seconds, Outcome, Queue};
use crate::text::{parse_u64, push_u64, random_id};
use glimpse_wire::ingest::MAX_AD_OR_USER_ID_BYTES;

const KEY_PREFIX: &str = "glimpse.";
const QUEUE_PREFIX: &str = "glimpse.q.";
const BEAT_PREFIX: &str = "glimpse.h.";
const USER_KEY: &str = "glimpse.uid";
const LOCK_PREFIX: &str = "glimpse.tab.";
/// Without Web Locks, a tab whose heartbeat is older than this is gone.
const HEARTBEAT_STALE_MS: f64 = 120_000.0;
const HEARTBEAT_EVERY_MS: u32 = 20_000;

fn random() -> f64 {
    js_sys::Math::random()
}

fn window() -> Option<Window> {
    web_sys::window()
}

fn now() -> f64 {
    window()
        .and_then(|w| w.performance())
        .map(|p| p.now())
        .unwrap_or_else(js_sys::Date::now)
}

fn warn(msg: &str) {
    web_sys::console::warn_1(&JsValue::from_str(msg));
}

fn get(obj: &JsValue, key: &str) -> JsValue {
    Reflect::get(obj, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

/// An event listener, removed on drop.
struct Listener {
    target: EventTarget,
    name: &'static str,
    cb: Closure<dyn FnMut(Event)>,
}

impl Listener {
    fn new(target: &EventTarget, name: &'static str, f: impl FnMut(Event) + 'static) -> Listener {
        let cb = Closure::<dyn FnMut(Event)>::new(f);
        let _ = target.add_event_listener_with_callback(name, cb.as_ref().unchecked_ref());
        Listener {
            target: target.clone(),
            name,
            cb,
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self
            .target
            .remove_event_listener_with_callback(self.name, self.cb.as_ref().unchecked_ref());
    }
}

/// The IntersectionObserver, disconnected on drop.
struct Io {
    io: IntersectionObserver,
    _cb: Closure<dyn FnMut(Array)>,
}

impl Drop for Io {
    fn drop(&mut self) {
        self.io.disconnect();
    }
}

/// The MutationObserver, disconnected on drop.
struct Mo {
    mo: MutationObserver,
    _cb: Closure<dyn FnMut(Array)>,
}

impl Drop for Mo {
    fn drop(&mut self) {
        self.mo.disconnect();
    }
}

/// The Web Lock that tells other tabs this one is alive; released on drop.
struct TabLock {
    release: Rc<RefCell<Option<Function>>>,
}

impl Drop for TabLock {
    fn drop(&mut self) {
        if let Some(f) = self.release.borrow_mut().take() {
            let _ = f.call0(&JsValue::UNDEFINED);
        }
    }
}

struct Slot {
    el: Element,
    id: SlotId,
    /// The ad id came from `observe(el, adId)`, not from `data-ad-id`.
    explicit: bool,
    /// The `data-ad-token` of the slot's current ad, read when the ad was
    /// set: by the time an ad refresh is seen the element already holds
    /// the next ad's token, and the last events of the old ad need theirs.
    token: Option<String>,
}

/// A slot's `data-ad-token`; one that would need escaping is left out (the
/// edge then says why).
fn ad_token(el: &Element) -> Option<String> {
    el.get_attribute("data-ad-token")
        .filter(|t| queue::valid_id(t, MAX_AD_OR_USER_ID_BYTES))
}

struct Inner {
    opts: Options,
    doc: Document,
    engine: Engine,
    queue: Queue,
    slots: Vec<Slot>,
    user_id: String,
    tab: String,
    seq: u32,
    storage: Option<Storage>,
    /// Whether our queue key was written with batches in it.
    stored: bool,
    stopped: bool,
    sending: bool,
    /// `flush()` promises to resolve once nothing is due.
    waiters: Vec<Function>,
    out: Vec<Impression>,
    io: Option<Io>,
    mo: Option<Mo>,
    listeners: Vec<Listener>,
    dwell: Option<Timeout>,
    retry: Option<Timeout>,
    interval: Option<Interval>,
    heartbeat: Option<Interval>,
    lock: Option<TabLock>,
    me: Weak<RefCell<Inner>>,
}

/// A running tracker (see `index.d.ts` for the documented API).
#[wasm_bindgen]
pub struct Tracker {
    inner: Rc<RefCell<Inner>>,
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tracker")
    }
}

fn bad(msg: &str) -> JsError {
    JsError::new(msg)
}

fn read_options(o: &JsValue) -> Result<Options, JsError> {
    if !o.is_object() {
        return Err(bad(
            "glimpse: start(options) needs an options object with an `endpoint`",
        ));
    }
    let mut opts = Options::default();
    let string = |name: &str| -> Result<Option<String>, JsError> {
        let v = get(o, name);
        if v.is_undefined() || v.is_null() {
            return Ok(None);
        }
        v.as_string().map(Some).ok_or_else(|| {
            let mut m = String::from("glimpse: option `");
            m.push_str(name);
            m.push_str("` must be a string");
            bad(&m)
        })
    };
    let number = |name: &str, default: f64| -> Result<f64, JsError> {
        let v = get(o, name);
        if v.is_undefined() || v.is_null() {
            return Ok(default);
        }
        v.as_f64().ok_or_else(|| {
            let mut m = String::from("glimpse: option `");
            m.push_str(name);
            m.push_str("` must be a number");
            bad(&m)
        })
    };
    let flag = |name: &str, default: bool| -> bool {
        let v = get(o, name);
        if v.is_undefined() || v.is_null() {
            default
        } else {
            v.is_truthy() && v.as_string().is_none_or(|s| s != "false")
        }
    };
    opts.endpoint = string("endpoint")?.unwrap_or_default();
    opts.user_id = string("userId")?.filter(|s| !s.is_empty());
    if let Some(s) = string("selector")? {
        opts.selector = s;
    }
    opts.flush_interval_ms = number("flushIntervalMs", opts.flush_interval_ms)?;
    opts.max_batch = number("maxBatch", opts.max_batch)?;
    opts.rule.min_ratio = number("minVisibleRatio", opts.rule.min_ratio)?;
    opts.rule.min_visible_ms = number("minVisibleMs", opts.rule.min_visible_ms)?;
    opts.rule.large_pixels = number("largeAdPixels", opts.rule.large_pixels)?;
    opts.rule.large_ratio = number("largeAdRatio", opts.rule.large_ratio)?;
    opts.consent = flag("consent", true);
    opts.debug = flag("debug", false);
    opts.check().map_err(bad)?;
    Ok(opts)
}

/// Starts a tracker; throws a JavaScript `Error` when an option is wrong.
#[wasm_bindgen]
pub fn start(options: JsValue) -> Result<Tracker, JsError> {
    let opts = read_options(&options)?;
    let win = window().ok_or_else(|| bad("glimpse: no window"))?;
    let doc = win.document().ok_or_else(|| bad("glimpse: no document"))?;
    // A page without consent keeps nothing and sends nothing.
    let storage = if opts.consent {
        win.local_storage().ok().flatten()
    } else {
        None
    };
    let user_id = match (&opts.user_id, &storage) {
        (Some(id), _) => id.clone(),
        (None, Some(s)) => match s.get_item(USER_KEY).ok().flatten() {
            Some(id) if queue::valid_id(&id, MAX_AD_OR_USER_ID_BYTES) => id,
            _ => {
                let id = random_id(22, random);
                let _ = s.set_item(USER_KEY, &id);
                id
            }
        },
        (None, None) => random_id(22, random),
    };
    let visible = doc.visibility_state() == VisibilityState::Visible;
    let focused = doc.has_focus().unwrap_or(true);
    let inner = Rc::new_cyclic(|me| {
        RefCell::new(Inner {
            engine: Engine::new(opts.rule, visible, focused),
            // Read once: a page does not stop being driven by a program.
            queue: Queue::new(
                opts.max_batch as usize,
                get(&win.navigator(), "webdriver").as_bool() == Some(true),
            ),
            opts,
            doc,
            slots: Vec::new(),
            user_id,
            tab: random_id(12, random),
            seq: 0,
            storage,
            stored: false,
            stopped: false,
            sending: false,
            waiters: Vec::new(),
            out: Vec::new(),
            io: None,
            mo: None,
            listeners: Vec::new(),
            dwell: None,
            retry: None,
            interval: None,
            heartbeat: None,
            lock: None,
            me: me.clone(),
        })
    });
    if let Ok(mut i) = inner.try_borrow_mut() {
        if i.opts.consent {
            i.boot(&win);
        } else {
            i.log("glimpse: no consent; nothing is stored or sent");
        }
    }
    ACTIVE.with(|a| a.borrow_mut().push(inner.clone()));
    Ok(Tracker { inner })
}

thread_local! {
    /// Running trackers stay alive even when the page drops its handle.
    static ACTIVE: RefCell<Vec<Rc<RefCell<Inner>>>> = const { RefCell::new(Vec::new()) };
}

#[wasm_bindgen]
impl Tracker {
    /// Follows `element` as an ad slot; `adId` overrides its `data-ad-id`.
    pub fn observe(&self, element: JsValue, ad_id: Option<String>) {
        if let (Ok(mut i), Ok(el)) = (self.inner.try_borrow_mut(), element.dyn_into::<Element>()) {
            match ad_id {
                Some(ad) => i.track(&el, Some(ad)),
                None => i.track(&el, None),
            }
            i.after();
        }
    }

    /// Stops following `element`.
    pub fn unobserve(&self, element: JsValue) {
        if let (Ok(mut i), Ok(el)) = (self.inner.try_borrow_mut(), element.dyn_into::<Element>()) {
            i.untrack(&el);
            i.after();
        }
    }

    /// Starts a new page view (single-page apps): every slot may count again.
    pub fn pageview(&self) {
        if let Ok(mut i) = self.inner.try_borrow_mut() {
            if !i.stopped {
                let mut out = std::mem::take(&mut i.out);
                i.engine.pageview(now(), &mut out);
                i.out = out;
                i.after();
            }
        }
    }

    /// Sends every queued event now; resolves once each batch got an answer.
    pub fn flush(&self) -> Promise {
        let mut resolve = None;
        let promise = Promise::new(&mut |res, _| resolve = Some(res));
        if let (Ok(mut i), Some(res)) = (self.inner.try_borrow_mut(), resolve.clone()) {
            if !i.stopped {
                i.waiters.push(res);
                resolve = None;
                if i.queue.pending() > 0 {
                    i.queue.seal(now(), || random_id(20, random));
                    i.persist();
                }
                i.queue.hurry(now());
                i.pump();
            }
        }
        if let Some(res) = resolve {
            let _ = res.call0(&JsValue::UNDEFINED);
        }
        promise
    }

    /// Stops observing and sending; unsent batches stay stored for the next start.
    pub fn stop(&self) {
        if let Ok(mut i) = self.inner.try_borrow_mut() {
            i.shutdown();
        }
    }

    /// Stops, and forgets every event, batch and id the SDK stored.
    #[wasm_bindgen(js_name = optOut)]
    pub fn opt_out(&self) {
        if let Ok(mut i) = self.inner.try_borrow_mut() {
            i.queue.clear();
            if let Some(s) = i.storage.take() {
                let len = s.length().unwrap_or(0);
                let keys: Vec<String> = (0..len)
                    .filter_map(|n| s.key(n).ok().flatten())
                    .filter(|k| k.starts_with(KEY_PREFIX))
                    .collect();
                for k in keys {
                    let _ = s.remove_item(&k);
                }
            }
            i.shutdown();
        }
    }
}

/// Posts one body with `fetch(.., {keepalive: true})` and calls `done`
/// with the outcome.
fn post(endpoint: &str, body: &str, done: impl FnOnce(Outcome) + 'static) {
    let Some(win) = window() else {
        return done(Outcome::Retry(None));
    };
    let init = RequestInit::new();
    init.set_method("POST");
    init.set_body(&JsValue::from_str(body));
    let _ = Reflect::set(&init, &JsValue::from_str("keepalive"), &JsValue::TRUE);
    init.set_credentials(RequestCredentials::Omit);
    // One function for both outcomes, so it is called exactly once and freed.
    let settle = Closure::once_into_js(move |answer: JsValue| {
        let outcome = match answer.dyn_into::<Response>() {
            Ok(resp) => {
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .ok()
                    .flatten()
                    .and_then(|v| {
                        parse_retry_after_seconds(&v).or_else(|| {
                            let at = js_sys::Date::parse(&v);
                            at.is_finite().then(|| at - js_sys::Date::now())
                        })
                    });
                classify(Some(resp.status()), retry_after)
            }
            Err(_) => Outcome::Retry(None),
        };
        done(outcome);
    });
    then_either(&win.fetch_with_str_and_init(endpoint, &init), &settle);
}

impl Inner {
    fn log(&self, msg: &str) {
        if self.opts.debug {
            web_sys::console::log_1(&JsValue::from_str(msg));
        }
    }

    fn queue_key(&self) -> String {
        let mut k = String::from(QUEUE_PREFIX);
        k.push_str(&self.tab);
        k
    }

    /// Installs the observers, listeners and timers, and takes over batches
    /// left by closed tabs.
    fn boot(&mut self, win: &Window) {
        let me = self.me.clone();
        if Reflect::has(win, &JsValue::from_str("IntersectionObserver")).unwrap_or(false) {
            let m = me.clone();
            let cb = Closure::<dyn FnMut(Array)>::new(move |entries: Array| {
                with(&m, |i| i.on_intersections(&entries));
            });
            let init = IntersectionObserverInit::new();
            let mut t = vec![
                0.0,
                self.opts.rule.min_ratio,
                self.opts.rule.large_ratio,
                1.0,
            ];
            t.sort_by(f64::total_cmp);
            t.dedup();
            let thresholds: Array = t.into_iter().map(JsValue::from_f64).collect();
            init.set_threshold(&thresholds);
            if let Ok(io) =
                IntersectionObserver::new_with_options(cb.as_ref().unchecked_ref(), &init)
            {
                self.io = Some(Io { io, _cb: cb });
            }
        } else {
            self.log("glimpse: no IntersectionObserver; nothing is measurable");
        }
        if self.io.is_some() {
            if let Ok(list) = self.doc.query_selector_all(&self.opts.selector) {
                for n in 0..list.length() {
                    if let Some(el) = list.item(n).and_then(|n| n.dyn_into::<Element>().ok()) {
                        self.track(&el, None);
                    }
                }
            }
            let m = me.clone();
            let cb = Closure::<dyn FnMut(Array)>::new(move |records: Array| {
                with(&m, |i| i.on_mutations(&records));
            });
            if let Ok(mo) = MutationObserver::new(cb.as_ref().unchecked_ref()) {
                let init = MutationObserverInit::new();
                init.set_child_list(true);
                init.set_subtree(true);
                init.set_attributes(true);
                let filter: Array = std::iter::once(JsValue::from_str("data-ad-id")).collect();
                init.set_attribute_filter(&filter);
                let root = self.doc.document_element();
                if let Some(root) = root {
                    let _ = mo.observe_with_options(&root, &init);
                }
                self.mo = Some(Mo { mo, _cb: cb });
            }
        }
        let doc: &EventTarget = self.doc.as_ref();
        let page: &EventTarget = win.as_ref();
        let on_page = |me: &Weak<RefCell<Inner>>, hide: bool| {
            let m = me.clone();
            move |_: Event| with(&m, |i| i.on_page(hide))
        };
        self.listeners = vec![
            Listener::new(doc, "visibilitychange", on_page(&me, false)),
            Listener::new(page, "pagehide", on_page(&me, true)),
            Listener::new(page, "pageshow", on_page(&me, false)),
            Listener::new(page, "focus", on_page(&me, false)),
            Listener::new(page, "blur", on_page(&me, false)),
        ];
        let ms = self.opts.flush_interval_ms;
        if ms > 0.0 {
            let m = me.clone();
            self.interval = Some(Interval::new(ms.min(2e9) as u32, move || {
                with(&m, |i| {
                    i.seal();
                });
            }));
        }
        self.adopt_orphans(win);
    }

    /// Takes over the stored queues of tabs that are gone, under a Web Lock
    /// when the browser has them, else by heartbeat.
    fn adopt_orphans(&mut self, win: &Window) {
        let locks = get(&win.navigator(), "locks");
        let request = get(&locks, "request").dyn_into::<Function>().ok();
        let query = get(&locks, "query").dyn_into::<Function>().ok();
        let (Some(request), Some(query)) = (request, query) else {
            self.beat();
            let m = self.me.clone();
            self.heartbeat = Some(Interval::new(HEARTBEAT_EVERY_MS, move || {
                with(&m, |i| i.beat())
            }));
            self.take_orphans(None);
            return;
        };
        // Hold a lock named after this tab for as long as the tracker runs.
        let release = Rc::new(RefCell::new(None::<Function>));
        let r = release.clone();
        let hold = Closure::once_into_js(move |_lock: JsValue| -> JsValue {
            Promise::new(&mut |resolve, _| {
                *r.borrow_mut() = Some(resolve);
            })
            .into()
        });
        let mut name = String::from(LOCK_PREFIX);
        name.push_str(&self.tab);
        let _ = request.call2(&locks, &JsValue::from_str(&name), &hold);
        self.lock = Some(TabLock { release });
        // Adopt under one origin-wide lock, so two tabs never take the same queue.
        let m = self.me.clone();
        let l = locks.clone();
        let adopt = Closure::once_into_js(move |_lock: JsValue| -> JsValue {
            let Ok(p) = query.call0(&l).map(Promise::from) else {
                return JsValue::UNDEFINED;
            };
            let take = Closure::once_into_js(move |snapshot: JsValue| {
                let held = get(&snapshot, "held");
                let pending = get(&snapshot, "pending");
                let mut live = Vec::new();
                for list in [held, pending] {
                    if let Ok(list) = list.dyn_into::<Array>() {
                        for lock in list.iter() {
                            if let Some(n) = get(&lock, "name").as_string() {
                                if let Some(tab) = n.strip_prefix(LOCK_PREFIX) {
                                    live.push(tab.to_string());
                                }
                            }
                        }
                    }
                }
                with(&m, |i| i.take_orphans(Some(&live)));
            });
            then_either(&p, &take)
        });
        let _ = request.call2(&locks, &JsValue::from_str("glimpse.adopt"), &adopt);
    }

    fn beat(&self) {
        if let Some(s) = &self.storage {
            let mut k = String::from(BEAT_PREFIX);
            k.push_str(&self.tab);
            let mut v = String::new();
            push_u64(&mut v, js_sys::Date::now() as u64);
            let _ = s.set_item(&k, &v);
        }
    }

    fn take_orphans(&mut self, live: Option<&[String]>) {
        let Some(s) = self.storage.clone() else {
            return;
        };
        let now_epoch = js_sys::Date::now();
        let len = s.length().unwrap_or(0);
        let keys: Vec<String> = (0..len)
            .filter_map(|n| s.key(n).ok().flatten())
            .filter(|k| k.starts_with(QUEUE_PREFIX) || k.starts_with(BEAT_PREFIX))
            .collect();
        let mut adopted = 0;
        for k in keys {
            let (tab, is_queue) = match (k.strip_prefix(QUEUE_PREFIX), k.strip_prefix(BEAT_PREFIX))
            {
                (Some(t), _) => (t, true),
                (None, Some(t)) => (t, false),
                (None, None) => continue,
            };
            if tab == self.tab {
                continue;
            }
            let mut beat_key = String::from(BEAT_PREFIX);
            beat_key.push_str(tab);
            let beat = s
                .get_item(&beat_key)
                .ok()
                .flatten()
                .and_then(|v| parse_u64(&v))
                .map(|v| v as f64);
            if !queue::is_orphan(tab, live, beat, now_epoch, HEARTBEAT_STALE_MS) {
                continue;
            }
            if is_queue {
                if let Some(v) = s.get_item(&k).ok().flatten() {
                    adopted += self.queue.adopt(queue::decode(&v, now()));
                }
            }
            let _ = s.remove_item(&k);
        }
        if adopted > 0 {
            self.log("glimpse: resending batches left by an earlier page");
            self.persist();
            self.after();
        }
    }

    /// Whether the batches we hold are still ours; another tab took them
    /// over if our stored queue vanished.
    fn owned(&mut self) -> bool {
        if let (true, Some(s)) = (self.stored, &self.storage) {
            if s.get_item(&self.queue_key()).ok().flatten().is_none() {
                self.log("glimpse: another tab took over this tab's batches");
                let ids: Vec<String> = self.queue.batches().iter().map(|b| b.id.clone()).collect();
                for id in ids {
                    self.queue.forget(&id);
                }
                self.stored = false;
            }
        }
        true
    }

    fn persist(&mut self) {
        self.owned();
        let Some(s) = &self.storage else { return };
        let key = self.queue_key();
        let v = self.queue.encode();
        if v.is_empty() {
            let _ = s.remove_item(&key);
            self.stored = false;
        } else {
            self.stored = s.set_item(&key, &v).is_ok();
        }
    }

    /// Forms batches of the pending events, stores them and sends.
    fn seal(&mut self) {
        if self.stopped {
            return;
        }
        if self.queue.pending() > 0 {
            let n = self.queue.seal(now(), || random_id(20, random));
            if n > 0 {
                self.persist();
            }
        }
        self.pump();
    }

    /// Sends the next due batch unless one is on its way; arms the retry timer.
    fn pump(&mut self) {
        self.retry = None;
        // A send on its way calls pump again when it settles.
        if self.stopped || !self.opts.consent || self.sending {
            return;
        }
        self.owned();
        if let Some((id, body)) = self.queue.take_due(now()) {
            self.sending = true;
            let endpoint = self.opts.endpoint.clone();
            let m = self.me.clone();
            post(&endpoint, &body, move |outcome| {
                with(&m, |i| {
                    i.sending = false;
                    i.settle(&id, outcome);
                })
            });
            return;
        }
        for w in self.waiters.drain(..) {
            let _ = w.call0(&JsValue::UNDEFINED);
        }
        if let Some(due) = self.queue.next_due() {
            let m = self.me.clone();
            let wait = (due - now()).clamp(0.0, 3_600_000.0) as u32 + 1;
            self.retry = Some(Timeout::new(wait, move || with(&m, |i| i.pump())));
        }
    }

    fn settle(&mut self, id: &str, outcome: Outcome) {
        if outcome == Outcome::Drop {
            warn("glimpse: the edge refused a batch; it is dropped");
        }
        if outcome != Outcome::Ack {
            self.log("glimpse: a batch will be retried");
        }
        if self.queue.settle(id, outcome, now(), random()) {
            self.persist();
        }
        self.pump();
    }

    /// The page hid, showed, or lost or gained focus.
    fn on_page(&mut self, pagehide: bool) {
        if self.stopped {
            return;
        }
        let visible = !pagehide && self.doc.visibility_state() == VisibilityState::Visible;
        let focused = self.doc.has_focus().unwrap_or(true);
        let mut out = std::mem::take(&mut self.out);
        self.engine.set_page(visible, focused, now(), &mut out);
        self.out = out;
        self.after();
        if !visible {
            self.beacon_all();
        }
    }

    /// The page is hiding and may never come back: beacon everything.
    fn beacon_all(&mut self) {
        if !self.opts.consent {
            return;
        }
        if self.queue.pending() > 0 {
            self.queue.seal(now(), || random_id(20, random));
            self.persist();
        }
        self.owned();
        let Some(win) = window() else { return };
        let nav = win.navigator();
        for (id, body) in self.queue.beacon_plan(now()) {
            if nav.send_beacon_with_opt_str(&self.opts.endpoint, Some(&body)) == Ok(true) {
                self.log("glimpse: batch handed to sendBeacon");
            } else {
                // Refused: fetch with keepalive, settled normally if the page lives.
                let endpoint = self.opts.endpoint.clone();
                let m = self.me.clone();
                post(&endpoint, &body, move |outcome| {
                    with(&m, |i| i.settle(&id, outcome))
                });
            }
        }
    }

    fn on_intersections(&mut self, entries: &Array) {
        if self.stopped {
            return;
        }
        let mut out = std::mem::take(&mut self.out);
        for e in entries.iter() {
            let e: IntersectionObserverEntry = e.unchecked_into();
            let target = e.target();
            let Some(slot) = self.slots.iter().find(|s| s.el == target) else {
                continue;
            };
            let r = e.bounding_client_rect();
            let area = r.width().max(0.0) * r.height().max(0.0);
            let ratio = if e.is_intersecting() {
                e.intersection_ratio()
            } else {
                0.0
            };
            self.engine.update(slot.id, ratio, area, e.time(), &mut out);
        }
        self.out = out;
        self.after();
    }

    fn on_mutations(&mut self, records: &Array) {
        if self.stopped {
            return;
        }
        let mut removed = false;
        for r in records.iter() {
            let r: MutationRecord = r.unchecked_into();
            if r.type_() == "attributes" {
                if let Ok(el) = r
                    .target()
                    .and_then(|t| t.dyn_into::<Element>().ok())
                    .ok_or(())
                {
                    self.on_ad_id_change(&el);
                }
                continue;
            }
            let added = r.added_nodes();
            for n in 0..added.length() {
                if let Some(node) = added.item(n) {
                    self.scan(&node);
                }
            }
            removed |= r.removed_nodes().length() > 0;
        }
        if removed {
            let gone: Vec<Element> = self
                .slots
                .iter()
                .filter(|s| !s.el.is_connected())
                .map(|s| s.el.clone())
                .collect();
            for el in gone {
                self.untrack(&el);
            }
        }
        self.after();
    }

    /// Tracks `node` and its descendants that match the selector.
    fn scan(&mut self, node: &Node) {
        let Some(el) = node.dyn_ref::<Element>() else {
            return;
        };
        if el.matches(&self.opts.selector).unwrap_or(false) {
            self.track(el, None);
        }
        if let Ok(list) = el.query_selector_all(&self.opts.selector) {
            for n in 0..list.length() {
                if let Some(child) = list.item(n).and_then(|n| n.dyn_into::<Element>().ok()) {
                    self.track(&child, None);
                }
            }
        }
    }

    fn on_ad_id_change(&mut self, el: &Element) {
        let Some(slot) = self.slots.iter().find(|s| &s.el == el) else {
            if el.is_connected() {
                self.scan(el);
            }
            return;
        };
        if slot.explicit {
            return;
        }
        let id = slot.id;
        match el.get_attribute("data-ad-id") {
            Some(ad) if queue::valid_id(&ad, MAX_AD_OR_USER_ID_BYTES) => {
                self.before_ad_change(el);
                let mut out = std::mem::take(&mut self.out);
                self.engine.set_ad_id(id, &ad, now(), &mut out);
                self.out = out;
            }
            _ => self.untrack(el),
        }
    }

    fn track(&mut self, el: &Element, ad_id: Option<String>) {
        if self.stopped {
            return;
        }
        let explicit = ad_id.is_some();
        let Some(ad) = ad_id.or_else(|| el.get_attribute("data-ad-id")) else {
            self.log("glimpse: an ad slot without data-ad-id is skipped");
            return;
        };
        if !queue::valid_id(&ad, MAX_AD_OR_USER_ID_BYTES) {
            warn("glimpse: an ad id must be 1 to 128 characters of [A-Za-z0-9._:-]; slot skipped");
            return;
        }
        if let Some(slot) = self.slots.iter_mut().find(|s| &s.el == el) {
            // Observed twice (a re-render): no second impression.
            if explicit {
                slot.explicit = true;
                let id = slot.id;
                self.before_ad_change(el);
                let mut out = std::mem::take(&mut self.out);
                self.engine.set_ad_id(id, &ad, now(), &mut out);
                self.out = out;
            }
            return;
        }
        let Some(io) = &self.io else { return };
        let id = self.engine.add(&ad);
        io.io.observe(el);
        self.slots.push(Slot {
            el: el.clone(),
            id,
            explicit,
            token: ad_token(el),
        });
    }

    fn untrack(&mut self, el: &Element) {
        if let Some(pos) = self.slots.iter().position(|s| &s.el == el) {
            if let Some(io) = &self.io {
                io.io.unobserve(el);
            }
            let mut out = std::mem::take(&mut self.out);
            self.engine.tick(now(), &mut out);
            self.out = out;
            // Queued while the slot, and so its token, is still known.
            self.queue_out();
            let slot = self.slots.swap_remove(pos);
            self.engine.remove(slot.id);
        }
    }

    /// Before `el`'s slot changes ads: queues what its current ad has
    /// earned up to now, with that ad's token, then takes the token now on
    /// the element for the next ad's events.
    fn before_ad_change(&mut self, el: &Element) {
        let mut out = std::mem::take(&mut self.out);
        self.engine.tick(now(), &mut out);
        self.out = out;
        self.queue_out();
        if let Some(slot) = self.slots.iter_mut().find(|s| &s.el == el) {
            slot.token = ad_token(el);
        }
    }

    /// Turns the engine's impressions into queued events and re-arms the
    /// dwell timer.
    fn after(&mut self) {
        if self.stopped {
            return;
        }
        self.queue_out();
        self.dwell = None;
        if let Some(deadline) = self.engine.next_deadline() {
            let m = self.me.clone();
            let wait = (deadline - now()).clamp(0.0, 3_600_000.0).ceil() as u32 + 1;
            self.dwell = Some(Timeout::new(wait, move || {
                with(&m, |i| {
                    let mut out = std::mem::take(&mut i.out);
                    i.engine.tick(now(), &mut out);
                    i.out = out;
                    i.after();
                })
            }));
        }
    }

    /// Turns the engine's impressions so far into queued events, each with
    /// its slot's token; seals the batch when it is full.
    fn queue_out(&mut self) {
        if self.stopped {
            return;
        }
        let out = std::mem::take(&mut self.out);
        let mut full = false;
        for imp in &out {
            self.seq = self.seq.wrapping_add(1);
            let mut id = self.tab.clone();
            id.push('-');
            push_u64(&mut id, u64::from(self.seq));
            let token = self
                .slots
                .iter()
                .find(|s| s.id == imp.slot)
                .and_then(|s| s.token.clone());
            let mut json = String::with_capacity(256);
            queue::event_json(
                &id,
                &imp.ad_id,
                &self.user_id,
                imp.kind,
                js_sys::Date::now() as u64,
                token.as_deref(),
                &mut json,
            );
            if self.opts.debug {
                let mut m = String::from("glimpse: ");
                m.push_str(imp.kind.as_str());
                m.push(' ');
                m.push_str(&imp.ad_id);
                self.log(&m);
            }
            full |= self.queue.push(json);
        }
        // Keeps the buffer's capacity for the next callback.
        self.out = out;
        self.out.clear();
        if full {
            self.seal();
        }
    }

    fn shutdown(&mut self) {
        if self.stopped {
            return;
        }
        if self.opts.consent && self.queue.pending() > 0 {
            self.queue.seal(now(), || random_id(20, random));
            self.persist();
        }
        self.stopped = true;
        self.io = None;
        self.mo = None;
        self.listeners.clear();
        self.dwell = None;
        self.retry = None;
        self.interval = None;
        self.heartbeat = None;
        self.lock = None;
        self.slots.clear();
        for w in self.waiters.drain(..) {
            let _ = w.call0(&JsValue::UNDEFINED);
        }
        let me = self.me.as_ptr();
        ACTIVE.with(|a| {
            if let Ok(mut a) = a.try_borrow_mut() {
                a.retain(|rc| !std::ptr::eq(Rc::as_ptr(rc), me));
            }
        });
    }
}

/// `promise.then(f, f)`: `f` runs once, on either outcome.
fn then_either(promise: &Promise, f: &JsValue) -> JsValue {
    get(promise, "then")
        .dyn_into::<Function>()
        .and_then(|then| then.call2(promise, f, f))
        .unwrap_or(JsValue::UNDEFINED)
}

/// Runs `f` on the tracker if it is alive and not busy.
fn with(me: &Weak<RefCell<Inner>>, f: impl FnOnce(&mut Inner)) {
    if let Some(rc) = me.upgrade() {
        if let Ok(mut i) = rc.try_borrow_mut() {
            f(&mut i);
        }
    }
}
