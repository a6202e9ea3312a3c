//! Tabs: each tracker holds a Web Lock named after its tab (or, without Web
//! Locks, writes a heartbeat), so another tab can tell when it is gone and
//! take over the batches it left in storage.

use alloc::rc::Rc;
use alloc::{string::String, vec::Vec};
use core::cell::Cell;

use js_sys::{Function, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::Window;

use super::storage::{read, remove, sdk_keys, tab_key, write, BEAT_PREFIX, QUEUE_PREFIX};
use super::timer::Timer;
use super::{
    call, elements, get, ignore_outcome, now, once, random, then_either, window, with, Inner,
};
use crate::queue;
use crate::text::{parse_u64, push_u64, random_id};

const LOCK_PREFIX: &str = "glimpse.tab.";
/// Without Web Locks, a tab whose heartbeat is older than this is gone.
const HEARTBEAT_STALE_MS: f64 = 120_000.0;
const HEARTBEAT_EVERY_MS: u32 = 20_000;

/// The Web Lock that tells other tabs this one is alive; released on drop.
struct TabLock {
    release: Rc<Cell<Option<Function>>>,
}

impl Drop for TabLock {
    fn drop(&mut self) {
        if let Some(f) = self.release.take() {
            call(&f);
        }
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

/// `navigator.locks` and its `request` and `query`, where the browser has
/// Web Locks.
fn web_locks(win: &Window) -> Option<(JsValue, Function, Function)> {
    let locks = get(&get(win, "navigator"), "locks");
    let request = get(&locks, "request").dyn_into::<Function>().ok()?;
    let query = get(&locks, "query").dyn_into::<Function>().ok()?;
    Some((locks, request, query))
}

impl Inner {
    /// Takes over the stored queues of tabs that are gone, under a Web Lock
    /// when the browser has them, else by heartbeat.
    pub(super) fn adopt_orphans(&mut self, win: &Window) {
        let Some((locks, request, query)) = web_locks(win) else {
            self.beat();
            let m = self.me.clone();
            self.tabs.heartbeat = Timer::every(HEARTBEAT_EVERY_MS, move || with(&m, |i| i.beat()));
            self.take_orphans(None);
            return;
        };
        self.hold_tab_lock();
        // Adopt under one origin-wide lock, so two tabs never take the same queue.
        let m = self.me.clone();
        let l = locks.clone();
        let adopt = once(move |_lock: JsValue| -> JsValue {
            let none = JsValue::UNDEFINED;
            let Ok(p) = query.call2(&l, &none, &none) else {
                return JsValue::UNDEFINED;
            };
            let take = once(move |snapshot: JsValue| {
                let held = get(&snapshot, "held");
                let pending = get(&snapshot, "pending");
                let mut live = Vec::new();
                for list in [held, pending] {
                    for lock in elements(&list) {
                        if let Some(n) = get(&lock, "name").as_string() {
                            if let Some(tab) = n.strip_prefix(LOCK_PREFIX) {
                                live.push(String::from(tab));
                            }
                        }
                    }
                }
                with(&m, |i| i.take_orphans(Some(&live)));
                JsValue::UNDEFINED
            });
            then_either(&p, &take)
        });
        ignore_outcome(
            request
                .call2(&locks, &JsValue::from_str("glimpse.adopt"), &adopt)
                .unwrap_or_default(),
        );
    }

    /// Holds a lock named after this tab, for as long as the tracker runs
    /// and the page is not hidden by `pagehide` (taken again when it comes
    /// back from the back/forward cache); nothing without Web Locks.
    pub(super) fn hold_tab_lock(&mut self) {
        if self.tabs.lock.is_some() || self.stopped || !self.opts.consent {
            return;
        }
        let Some((locks, request, _)) = window().as_ref().and_then(web_locks) else {
            return;
        };
        // A `Cell`: set once and taken once, with no borrow that could fail.
        let release = Rc::new(Cell::new(None::<Function>));
        let r = release.clone();
        let hold = once(move |_lock: JsValue| -> JsValue {
            Promise::new(&mut |resolve, _| {
                r.set(Some(resolve));
            })
            .into()
        });
        let name = tab_key(LOCK_PREFIX, &self.tabs.id);
        ignore_outcome(
            request
                .call2(&locks, &JsValue::from_str(&name), &hold)
                .unwrap_or_default(),
        );
        self.tabs.lock = Some(TabLock { release });
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
