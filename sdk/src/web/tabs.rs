//! Tabs: each tracker holds a Web Lock named after its tab (or, without Web
//! Locks, writes a heartbeat), so another tab can tell when it is gone and
//! take over the batches it left in storage.

use alloc::{string::String, vec::Vec};

use js_sys::Function;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use super::storage::{read, remove, sdk_keys, tab_key, write, BEAT_PREFIX, QUEUE_PREFIX};
use super::timer::Timer;
use super::{call, elements, now, once, random, with, Inner};
use crate::queue;
use crate::text::{parse_u64, push_u64, random_id};

/// Without Web Locks, a tab whose heartbeat is older than this is gone.
const HEARTBEAT_STALE_MS: f64 = 120_000.0;
const HEARTBEAT_EVERY_MS: u32 = 20_000;

#[wasm_bindgen(module = "/js/locks.js")]
extern "C" {
    /// Holds the Web Lock that tells other tabs `tab` is alive until the
    /// returned function is called; when `take` is a function, also calls
    /// it with the ids of the tabs holding their lock, under an origin-wide
    /// lock. Undefined, and no call, without Web Locks (`sdk/js/locks.js`).
    #[wasm_bindgen(js_name = tabLock)]
    fn tab_lock(tab: &str, take: &JsValue) -> JsValue;
}

/// The Web Lock that tells other tabs this one is alive; released on drop.
struct TabLock {
    release: Function,
}

impl Drop for TabLock {
    fn drop(&mut self) {
        call(&self.release);
    }
}

/// This tab's id and what tells other tabs it is alive.
pub(super) struct Tabs {
    /// A new random id at each start: names the tab's queue, lock and events.
    pub(super) id: String,
    heartbeat: Option<Timer>,
    lock: Option<TabLock>,
}

impl Tabs {
    pub(super) fn new() -> Tabs {
        Tabs {
            id: random_id(12, random),
            heartbeat: None,
            lock: None,
        }
    }

    /// Stops the heartbeat and releases the lock.
    pub(super) fn stop(&mut self) {
        self.heartbeat = None;
        self.lock = None;
    }

    /// Releases the lock as the page leaves (`beforeunload`, `pagehide`):
    /// nothing held then may keep it out of the back/forward cache. Another
    /// tab may then take this tab's stored batches over, which
    /// [`Inner::check_ownership`] notices should the page come back.
    pub(super) fn release(&mut self) {
        self.lock = None;
    }
}

impl Inner {
    /// Takes over the stored queues of tabs that are gone: those without
    /// their Web Lock when the browser has them, else those whose
    /// heartbeat stopped. Holds this tab's lock (or beats) from now on.
    pub(super) fn adopt_orphans(&mut self) {
        let m = self.me.clone();
        let take = once(move |tabs: JsValue| {
            // Pushed, not collected, as `sdk_keys`' keys are.
            let mut live = Vec::new();
            for tab in elements(&tabs) {
                if let Some(tab) = tab.as_string() {
                    live.push(tab);
                }
            }
            with(&m, |i| i.take_orphans(Some(&live)));
            JsValue::UNDEFINED
        });
        if self.lock_tab(&take) {
            return;
        }
        self.beat();
        let m = self.me.clone();
        self.tabs.heartbeat = Timer::every(HEARTBEAT_EVERY_MS, move || with(&m, |i| i.beat()));
        self.take_orphans(None);
    }

    /// Holds a lock named after this tab, for as long as the tracker runs
    /// and the page is not hidden by `pagehide` (taken again when it comes
    /// back from the back/forward cache); nothing without Web Locks.
    pub(super) fn hold_tab_lock(&mut self) {
        if self.tabs.lock.is_none() && !self.stopped && self.opts.consent {
            self.lock_tab(&JsValue::UNDEFINED);
        }
    }

    /// Takes this tab's lock (and runs `take` as [`tab_lock`] does);
    /// whether the browser has Web Locks.
    fn lock_tab(&mut self, take: &JsValue) -> bool {
        let release = tab_lock(&self.tabs.id, take).dyn_into::<Function>();
        let held = release.is_ok();
        self.tabs.lock = release.ok().map(|release| TabLock { release });
        held
    }

    fn beat(&self) {
        if let Some(s) = &self.store.storage {
            let mut v = String::new();
            push_u64(&mut v, js_sys::Date::now() as u64);
            write(s, &tab_key(BEAT_PREFIX, &self.tabs.id), &v);
        }
    }

    /// Adopts the queues of the tabs that are not alive (`live`: the tabs
    /// holding a lock, when Web Locks tell) and removes their keys.
    fn take_orphans(&mut self, live: Option<&[String]>) {
        let Some(s) = self.store.storage.clone() else {
            return;
        };
        let now_epoch = js_sys::Date::now();
        let mut adopted = 0;
        for k in &sdk_keys(&s) {
            let (tab, is_queue) = match (k.strip_prefix(QUEUE_PREFIX), k.strip_prefix(BEAT_PREFIX))
            {
                (Some(t), _) => (t, true),
                (None, Some(t)) => (t, false),
                (None, None) => continue,
            };
            if tab == self.tabs.id {
                continue;
            }
            let beat = read(&s, &tab_key(BEAT_PREFIX, tab))
                .and_then(|v| parse_u64(&v))
                .map(|v| v as f64);
            if !queue::is_orphan(tab, live, beat, now_epoch, HEARTBEAT_STALE_MS) {
                continue;
            }
            if is_queue {
                if let Some(v) = read(&s, k) {
                    adopted += self.sending.queue.adopt(queue::decode(&v, now()));
                }
            }
            remove(&s, k);
        }
        if adopted > 0 {
            self.log("glimpse: resending batches left by an earlier page");
            self.persist();
            self.after();
        }
    }
}
