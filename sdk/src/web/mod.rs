//! The browser glue around the pure [`Engine`](crate::engine::Engine) and
//! [`Queue`](crate::queue::Queue), one module per concern:
//! - `slots`: the ad elements, the observers that watch them and what they
//!   report to the engine;
//! - `sending`: events into batches, the send pump, fetch and sendBeacon;
//! - `storage`: what the SDK keeps in localStorage, and the visitor id;
//! - `tabs`: the tab's lock or heartbeat, and adopting closed tabs' queues.
//!
//! This module holds the [`Tracker`], `start` and the public methods.
//!
//! Every JavaScript resource (observer, listener, timer, lock) is owned by a
//! Rust value and released when that value drops. Callbacks reach the tracker
//! through a `Weak`, borrow it with `try_borrow_mut` and never panic, so
//! nothing throws into the host page once `start` has returned.

mod sending;
mod slots;
mod storage;
mod tabs;
mod timer;

use alloc::rc::{Rc, Weak};
use alloc::{boxed::Box, string::String, vec, vec::Vec};
use core::cell::RefCell;

use js_sys::{Function, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{Document, Element, Event, EventTarget, Window};

use crate::options::{says_off, Options};

use sending::Sending;
use slots::Slots;
use storage::Store;
use tabs::Tabs;

fn random() -> f64 {
    js_sys::Math::random()
}

#[wasm_bindgen]
extern "C" {
    /// The global object, only to read `window` from.
    type Global;
    /// The page's `window` (`globalThis.window`), read at each call: one
    /// binding, where `web_sys::window()` looks through four globals
    /// (`self`, `window`, `globalThis`, `global`), and a cached static
    /// brings a lazy cell of its own.
    #[wasm_bindgen(getter, static_method_of = Global, js_class = globalThis, js_name = window)]
    fn window() -> Option<Window>;
    /// `performance.now()`, which every browser with WebAssembly has.
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    fn performance_now() -> f64;
}

fn window() -> Option<Window> {
    Global::window()
}

fn now() -> f64 {
    performance_now()
}

/// The client's clock, epoch ms (`Date.now()`).
fn epoch_ms() -> u64 {
    js_sys::Date::now() as u64
}

fn warn(msg: &str) {
    web_sys::console::warn_1(&JsValue::from_str(msg));
}

fn get(obj: &JsValue, key: &str) -> JsValue {
    Reflect::get(obj, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

/// `obj[key]` when it is an object: properties are read through
/// [`get`], one binding, where web-sys has a getter each.
fn object(obj: &JsValue, key: &str) -> Option<JsValue> {
    Some(get(obj, key)).filter(JsValue::is_object)
}

/// `obj[key]` as a number, `NaN` when it is not one.
fn number(obj: &JsValue, key: &str) -> f64 {
    get(obj, key).as_f64().unwrap_or(f64::NAN)
}

/// Whether `obj[key]` is `true`.
fn is_true(obj: &JsValue, key: &str) -> bool {
    get(obj, key).as_bool() == Some(true)
}

/// The elements of an array, or of an array-like list (a `NodeList`):
/// `list[0]` to `list[length - 1]`, read by [`get`]'s binding; none when
/// `list` has no length.
fn elements(list: &JsValue) -> impl Iterator<Item = JsValue> + '_ {
    // `NaN` (no length) as 0.
    let len = number(list, "length") as u32;
    (0..len).map(move |n| Reflect::get(list, &JsValue::from(n)).unwrap_or(JsValue::UNDEFINED))
}

/// Whether `obj` has a property `key` that is not `undefined`.
fn has(obj: &JsValue, key: &str) -> bool {
    !get(obj, key).is_undefined()
}

/// `f()`, through the binding of [`try_invoke`] (`Function.call`).
fn call(f: &JsValue) {
    let _ = f.unchecked_ref::<Function>().call2(
        &JsValue::UNDEFINED,
        &JsValue::UNDEFINED,
        &JsValue::UNDEFINED,
    );
}

/// `obj[method](a, b)`, or what it threw. Every DOM method the SDK calls
/// outside the observers and `fetch` goes through this one binding (`Function.call`
/// of the method read by [`get`]), where web-sys has one binding each; an
/// argument a method does not take is given as `undefined`, which a
/// method's optional argument reads as absent.
fn try_invoke(obj: &JsValue, method: &str, a: &JsValue, b: &JsValue) -> Result<JsValue, JsValue> {
    get(obj, method)
        .unchecked_into::<Function>()
        .call2(obj, a, b)
}

/// [`try_invoke`], `undefined` when it throws (or `method` is none).
fn invoke(obj: &JsValue, method: &str, a: &JsValue, b: &JsValue) -> JsValue {
    try_invoke(obj, method, a, b).unwrap_or(JsValue::UNDEFINED)
}

/// `el.getAttribute(name)`.
fn attribute(el: &JsValue, name: &str) -> Option<String> {
    invoke(
        el,
        "getAttribute",
        &JsValue::from_str(name),
        &JsValue::UNDEFINED,
    )
    .as_string()
}

/// A JavaScript array of `values`.
fn array(values: &[JsValue]) -> js_sys::Array {
    let a = js_sys::Array::new();
    for v in values {
        a.push(v);
    }
    a
}

/// `obj[key] = value`: one binding for every option object's fields, where
/// web-sys has one setter each.
fn set(obj: &JsValue, key: &str, value: &JsValue) {
    let _ = Reflect::set(obj, &JsValue::from_str(key), value);
}

/// The one closure type of the SDK: every listener, observer, timer and
/// promise callback takes a value and returns one, since each closure type
/// costs its own glue in the wasm and the JavaScript.
type Callback = Closure<dyn FnMut(JsValue) -> JsValue>;

/// A [`Callback`] running `f` at each call.
fn callback(mut f: impl FnMut(JsValue) + 'static) -> Callback {
    boxed(Box::new(move |v: JsValue| {
        f(v);
        JsValue::UNDEFINED
    }))
}

/// `f` as a [`Callback`]: `Closure::new` would instantiate wasm-bindgen's
/// call glue once per closure it is given, this takes the one boxed type.
fn boxed(f: Box<dyn FnMut(JsValue) -> JsValue>) -> Callback {
    Closure::wrap(f)
}

/// A JavaScript function running `f` at its first call (later calls do
/// nothing); its memory goes with the function, when the JavaScript
/// garbage collector takes it.
fn once(f: impl FnOnce(JsValue) -> JsValue + 'static) -> JsValue {
    let mut f = Some(f);
    let cb = boxed(Box::new(move |v: JsValue| match f.take() {
        Some(f) => f(v),
        None => JsValue::UNDEFINED,
    }));
    cb.into_js_value()
}

/// Adds (or removes) `cb` as the listener of `name` events on `target`.
fn listen(target: &JsValue, name: &str, cb: &Callback, add: bool) {
    let method = if add {
        "addEventListener"
    } else {
        "removeEventListener"
    };
    invoke(target, method, &JsValue::from_str(name), cb.as_ref());
}

/// An event listener, removed on drop.
struct Listener {
    target: EventTarget,
    name: &'static str,
    cb: Callback,
}

impl Listener {
    fn new(
        target: &EventTarget,
        name: &'static str,
        mut f: impl FnMut(Event) + 'static,
    ) -> Listener {
        let cb = callback(move |e: JsValue| f(e.unchecked_into()));
        listen(target, name, &cb, true);
        Listener {
            target: target.clone(),
            name,
            cb,
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        listen(&self.target, self.name, &self.cb, false);
    }
}

/// A listener telling the tracker that the page may have changed
/// ([`Inner::on_page`]). Every such listener shares this one closure type,
/// since each closure type costs its own glue in the wasm.
fn page_listener(
    me: &Weak<RefCell<Inner>>,
    target: &EventTarget,
    name: &'static str,
    hide: bool,
) -> Listener {
    let m = me.clone();
    Listener::new(target, name, move |_: Event| with(&m, |i| i.on_page(hide)))
}

/// One running tracker: the options, and one part per concern.
struct Inner {
    opts: Options,
    doc: Document,
    user_id: String,
    stopped: bool,
    slots: Slots,
    sending: Sending,
    store: Store,
    tabs: Tabs,
    /// The page's visibility, focus and lifecycle listeners.
    listeners: Vec<Listener>,
    me: Weak<RefCell<Inner>>,
    /// The tracker itself while it runs, so it lives on when the page drops
    /// its handle; `shutdown` lets go.
    alive: Option<Rc<RefCell<Inner>>>,
}

/// A running tracker (see `index.d.ts` for the documented API), held by
/// the function `start` returns.
struct Tracker {
    inner: Rc<RefCell<Inner>>,
}

fn bad(msg: &str) -> String {
    msg.into()
}

fn read_options(o: &JsValue) -> Result<Options, String> {
    if !o.is_object() {
        return Err(bad(
            "glimpse: start(options) needs an options object with an `endpoint`",
        ));
    }
    let mut opts = Options::default();
    let string = |name: &str| -> Result<Option<String>, String> {
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
    let number = |name: &str, default: f64| -> Result<f64, String> {
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
    let flag = |name: &str, default: bool| flag(&get(o, name)).unwrap_or(default);
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

/// An on/off value: a string by [`says_off`], anything else by its
/// truthiness; `None` when undefined or null.
fn flag(v: &JsValue) -> Option<bool> {
    if v.is_undefined() || v.is_null() {
        return None;
    }
    Some(match v.as_string() {
        Some(s) => !says_off(&s),
        None => v.is_truthy(),
    })
}

/// An `adId` argument (or `campaignId` option): absent, a string, or a
/// finite number as its string (`observe(el, 42)` means the ad `"42"`);
/// `Err` for anything else.
fn ad_id_arg(v: &JsValue) -> Result<Option<String>, ()> {
    if v.is_undefined() || v.is_null() {
        return Ok(None);
    }
    if let Some(s) = v.as_string() {
        return Ok(Some(s));
    }
    match v.as_f64() {
        Some(n) if n.is_finite() => Ok(v
            .unchecked_ref::<js_sys::Number>()
            .to_string_with_radix(10)
            .ok()
            .map(String::from)),
        _ => Err(()),
    }
}

/// Starts a tracker: returns it, or the message of what is wrong with the
/// options as a string, which the wrapper throws as an `Error` (a
/// `JsError` result costs glue of its own). The tracker is a function of
/// one array, `[method, a, b, c]` ([`Tracker::call`]): a function is a
/// [`Callback`], whose glue the SDK has already, where an exported Rust
/// type brings a JavaScript class, its finalizer and a borrow check of its
/// own.
#[wasm_bindgen]
pub fn start(options: JsValue) -> JsValue {
    start_tracker(&options).unwrap_or_else(|msg| JsValue::from_str(&msg))
}

fn start_tracker(options: &JsValue) -> Result<JsValue, String> {
    let opts = read_options(options)?;
    let win = window().ok_or_else(|| bad("glimpse: no window"))?;
    let doc: Document = object(&win, "document")
        .ok_or_else(|| bad("glimpse: no document"))?
        .unchecked_into();
    // A prerendered page stores nothing until it is shown (`activate`).
    let prerendering = prerendering(&doc);
    // A page without consent keeps nothing and sends nothing.
    let store = Store::open(&win, opts.consent && !prerendering);
    let user_id = store.user_id(opts.user_id.as_deref());
    let visible = visible(&doc);
    let focused = slots::page_focused(&win, &doc);
    // Read once: a page does not stop being driven by a program.
    let webdriver = is_true(&get(&win, "navigator"), "webdriver");
    // `me` and `alive` are set once the `Rc` exists: `Rc::new_cyclic`
    // linked a copy of the whole construction of its own (845 bytes).
    let inner = Rc::new(RefCell::new(Inner {
        slots: Slots::new(opts.rule, visible, focused, prerendering),
        sending: Sending::new(opts.max_batch as usize, webdriver),
        opts,
        doc,
        user_id,
        stopped: false,
        store,
        tabs: Tabs::new(),
        listeners: Vec::new(),
        me: Weak::new(),
        alive: None,
    }));
    if let Ok(mut i) = inner.try_borrow_mut() {
        i.me = Rc::downgrade(&inner);
        i.alive = Some(Rc::clone(&inner));
        if i.opts.consent {
            i.boot(&win);
        } else {
            i.log("glimpse: no consent; nothing is stored or sent");
        }
    }
    let tracker = Tracker { inner };
    Ok(boxed(Box::new(move |args: JsValue| {
        tracker.call(&args);
        JsValue::UNDEFINED
    }))
    .into_js_value())
}

/// The tracker's methods, by their index in the wrapper's `METHODS`
/// (`sdk/js/index.js`): one function for all of them, since each export
/// costs its own shim in the wasm and its own method in the glue.
impl Tracker {
    /// Runs method number `method` of `[method, a, b, c]` with the page's
    /// arguments `a`, `b`, `c` (undefined where the page gave fewer; for
    /// `flush`, `a` is the wrapper's resolve of the promise it returns).
    fn call(&self, args: &JsValue) {
        let mut args = elements(args);
        let mut arg = || args.next().unwrap_or(JsValue::UNDEFINED);
        let (method, a, b, c) = (arg(), arg(), arg(), arg());
        // Not a number (never from the wrapper): no method.
        match method.as_f64().map_or(u32::MAX, |m| m as u32) {
            0 => self.observe(a, b, c),
            1 => self.observe_post(a, b),
            2 => self.unobserve(a),
            3 => self.pageview(),
            4 => self.refresh(a),
            5 => self.flush(a),
            6 => self.stop(),
            7 => self.opt_out(),
            8 => self.set_consent(a),
            _ => {}
        }
    }
}

// Every argument arrives as a `JsValue` and is checked here: a type that
// wasm-bindgen would take on trust (`Option<String>` given a number) reads
// the wrong memory.
impl Tracker {
    /// Follows `element` as an ad slot; `adId` (a string, or a number taken
    /// as its string) overrides its `data-ad-id`, and `options.campaignId`
    /// (the same) its `data-campaign-id`.
    fn observe(&self, element: JsValue, ad_id: JsValue, options: JsValue) {
        self.follow(element, ad_id, get(&options, "campaignId"), false);
    }

    /// Follows `element` as a post (content, not an ad), counted by the
    /// display rule; `postId` (as `adId` of `observe`) overrides its
    /// `data-post-id`.
    fn observe_post(&self, element: JsValue, post_id: JsValue) {
        self.follow(element, post_id, JsValue::UNDEFINED, true);
    }

    /// Stops following `element`.
    fn unobserve(&self, element: JsValue) {
        let Ok(mut i) = self.inner.try_borrow_mut() else {
            return;
        };
        if let Some(el) = i.element_arg(element, "unobserve") {
            i.untrack(&el);
            i.after();
        }
    }

    /// Starts a new page view (single-page apps): each slot present in it
    /// counts once more; one the route change removes does not.
    fn pageview(&self) {
        if let Ok(mut i) = self.inner.try_borrow_mut() {
            if !i.stopped {
                i.new_page_view();
            }
        }
    }

    /// The ad of `element` was refreshed in place under the same ad id: a
    /// new opportunity.
    fn refresh(&self, element: JsValue) {
        let Ok(mut i) = self.inner.try_borrow_mut() else {
            return;
        };
        if let Some(el) = i.element_arg(element, "refresh") {
            if !i.stopped {
                i.refresh_slot(&el);
            }
        }
    }

    /// Sends every queued event now; calls `done` (the wrapper's resolve
    /// of `flush`'s promise) once each batch got an answer.
    fn flush(&self, done: JsValue) {
        let Ok(done) = done.dyn_into::<Function>() else {
            return;
        };
        if let Ok(mut i) = self.inner.try_borrow_mut() {
            // Without consent nothing is sent: there is nothing to wait for.
            if !i.stopped && i.opts.consent {
                i.flush_now(done);
                return;
            }
        }
        call(&done);
    }

    /// Stops observing and sending; unsent batches stay stored for the next start.
    fn stop(&self) {
        if let Ok(mut i) = self.inner.try_borrow_mut() {
            i.shutdown();
        }
    }

    /// Stops, and forgets every event, batch and id the SDK stored, with or
    /// without consent.
    fn opt_out(&self) {
        if let Ok(mut i) = self.inner.try_borrow_mut() {
            i.sending.queue.clear();
            i.store.forget_all();
            i.shutdown();
        }
    }

    /// Consent given (`true`: starts as `start` with consent would) or
    /// withdrawn (`false`: stops sending and deletes what is stored).
    fn set_consent(&self, consent: JsValue) {
        let Ok(mut i) = self.inner.try_borrow_mut() else {
            return;
        };
        // A boolean, or a string read as the tag's `data-consent`; a number
        // or an object says nothing clear, and `NaN` must not withdraw.
        let on = consent
            .as_bool()
            .or_else(|| consent.as_string().map(|s| !says_off(&s)));
        match (on, window()) {
            (Some(on), Some(win)) => i.set_consent(on, &win),
            _ => i.debug_warn("glimpse: setConsent(consent) needs a boolean; ignored"),
        }
    }
}

impl Tracker {
    /// `observe` (or `observePost` when `post`), with the campaign `campaign`.
    fn follow(&self, element: JsValue, id: JsValue, campaign: JsValue, post: bool) {
        let Ok(mut i) = self.inner.try_borrow_mut() else {
            return;
        };
        let method = if post { "observePost" } else { "observe" };
        let Some(el) = i.element_arg(element, method) else {
            return;
        };
        match (ad_id_arg(&id), ad_id_arg(&campaign)) {
            (Ok(id), Ok(campaign)) => {
                i.track(&el, id, campaign, post);
                i.after();
            }
            _ => {
                let mut m = String::from("glimpse: ");
                m.push_str(method);
                m.push_str("() needs string ids; ignored");
                i.debug_warn(&m);
            }
        }
    }
}

impl Inner {
    fn log(&self, msg: &str) {
        if self.opts.debug {
            web_sys::console::log_1(&JsValue::from_str(msg));
        }
    }

    fn debug_warn(&self, msg: &str) {
        if self.opts.debug {
            warn(msg);
        }
    }

    /// `value` as an `Element`, or `None` with a debug warning.
    fn element_arg(&self, value: JsValue, method: &str) -> Option<Element> {
        let el = value.dyn_into::<Element>().ok();
        if el.is_none() && self.opts.debug {
            let mut m = String::from("glimpse: ");
            m.push_str(method);
            m.push_str("() needs an Element; ignored");
            warn(&m);
        }
        el
    }

    fn set_consent(&mut self, on: bool, win: &Window) {
        if self.stopped || on == self.opts.consent {
            return;
        }
        self.opts.consent = on;
        if on {
            self.log("glimpse: consent given; starting");
            // A prerendered page opens the store once it is shown.
            if !self.slots.engine.is_prerendered() {
                self.store = Store::open(win, true);
                self.user_id = self.store.user_id(self.opts.user_id.as_deref());
            }
            self.boot(win);
        } else {
            self.log("glimpse: consent withdrawn; nothing more is sent, nothing is kept");
            self.halt();
            self.sending.queue.clear();
            self.store.forget_all();
        }
    }

    /// Installs the observers, listeners and timers, and takes over batches
    /// left by closed tabs. A prerendered page only observes (and counts
    /// nothing) until it is shown.
    fn boot(&mut self, win: &Window) {
        self.install_observers(win);
        if !self.slots.engine.is_prerendered() {
            self.run(win);
        } else if prerendering(&self.doc) {
            let doc: &EventTarget = self.doc.as_ref();
            self.listeners = vec![page_listener(&self.me, doc, "prerenderingchange", false)];
        } else {
            // Shown while consent was off.
            self.activate(win);
        }
    }

    /// The prerendered page is shown: open the store, read the visitor id,
    /// and start counting and sending.
    fn activate(&mut self, win: &Window) {
        self.store = Store::open(win, self.opts.consent);
        self.user_id = self.store.user_id(self.opts.user_id.as_deref());
        let visible = visible(&self.doc);
        let focused = slots::page_focused(win, &self.doc);
        let s = &mut self.slots;
        s.engine.activate(visible, focused, now(), &mut s.out);
        self.run(win);
        self.after();
    }

    /// The page's listeners, the periodic flush, and adopting the batches
    /// of closed tabs.
    fn run(&mut self, win: &Window) {
        let me = &self.me;
        let doc: &EventTarget = self.doc.as_ref();
        let page: &EventTarget = win.as_ref();
        self.listeners = vec![
            page_listener(me, doc, "visibilitychange", false),
            page_listener(me, page, "pagehide", true),
            page_listener(me, page, "pageshow", false),
            page_listener(me, page, "focus", false),
            page_listener(me, page, "blur", false),
            // Firefox keeps a page that holds a Web Lock when it decides on
            // the back/forward cache out of it, and decides before
            // `pagehide`: the lock goes as the page starts to leave.
            Listener::new(page, "beforeunload", {
                let m = me.clone();
                move |_: Event| with(&m, |i| i.tabs.release())
            }),
        ];
        self.start_flush_interval();
        self.adopt_orphans();
    }

    /// The page hid, showed, or lost or gained focus.
    fn on_page(&mut self, pagehide: bool) {
        let Some(win) = window() else { return };
        if self.stopped {
            return;
        }
        if self.slots.engine.is_prerendered() {
            // `prerenderingchange`: the page is shown now.
            if !prerendering(&self.doc) {
                self.activate(&win);
            }
            return;
        }
        let visible = !pagehide && visible(&self.doc);
        let focused = slots::page_focused(&win, &self.doc);
        let s = &mut self.slots;
        s.engine.set_page(visible, focused, now(), &mut s.out);
        self.after();
        if !visible {
            self.beacon_all();
        }
        // Released as the page leaves; taken again only once it is visible
        // (back from the back/forward cache, or a navigation that did not
        // happen after `beforeunload`): a page entering the cache is hidden.
        if pagehide {
            self.tabs.release();
        } else if visible {
            self.hold_tab_lock();
        }
    }

    /// Releases every observer, listener, timer and lock; resolves the
    /// `flush()` promises still waiting.
    fn halt(&mut self) {
        self.slots.stop();
        self.listeners.clear();
        self.sending.stop();
        self.tabs.stop();
    }

    fn shutdown(&mut self) {
        if self.stopped {
            return;
        }
        if self.opts.consent && self.sending.queue.pending() > 0 {
            self.sending.queue.seal(now(), new_batch_id);
            self.persist();
        }
        self.stopped = true;
        self.halt();
        // The caller holds the tracker (its handle, or a callback's
        // upgraded `Weak`), so this is never the last reference.
        self.alive = None;
    }
}

/// Whether the document is visible (`visibilityState`, read as a property:
/// web-sys's enum conversion costs a binding and a panic site).
fn visible(doc: &Document) -> bool {
    get(doc, "visibilityState") == "visible"
}

/// Whether the document is being prerendered, not yet shown to anyone.
fn prerendering(doc: &Document) -> bool {
    is_true(doc, "prerendering")
}

/// A new batch id.
fn new_batch_id() -> String {
    crate::text::random_id(20, random)
}

/// `promise.then(f, f)`: `f` runs once, on either outcome, so the promise
/// never rejects unhandled.
fn then_either(promise: &JsValue, f: &JsValue) -> JsValue {
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
