//! Ad slots: the elements followed, the IntersectionObserver and
//! MutationObserver that watch them, and what they report to the engine.

use gloo_timers::callback::Timeout;
use js_sys::{Array, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{
    Element, IntersectionObserver, IntersectionObserverEntry, IntersectionObserverInit,
    MutationObserver, MutationObserverInit, MutationRecord, Node, Window,
};

use super::{now, warn, with, Inner};
use crate::engine::{Engine, Impression, Rule, SlotId};
use crate::queue;
use glimpse_wire::ingest::MAX_AD_OR_USER_ID_BYTES;

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

/// The followed slots, their observers and the engine that judges them.
pub(super) struct Slots {
    pub(super) engine: Engine,
    /// The engine's impressions not yet queued; kept for its capacity.
    pub(super) out: Vec<Impression>,
    list: Vec<Slot>,
    io: Option<Io>,
    mo: Option<Mo>,
    /// Fires at the engine's next dwell deadline.
    dwell: Option<Timeout>,
}

impl Slots {
    pub(super) fn new(rule: Rule, visible: bool, focused: bool) -> Slots {
        Slots {
            engine: Engine::new(rule, visible, focused),
            out: Vec::new(),
            list: Vec::new(),
            io: None,
            mo: None,
            dwell: None,
        }
    }

    /// The token of the ad `slot` shows now.
    pub(super) fn token(&self, slot: SlotId) -> Option<String> {
        self.list
            .iter()
            .find(|s| s.id == slot)
            .and_then(|s| s.token.clone())
    }

    /// Disconnects the observers and forgets every slot, in the engine too
    /// (a dwell under way must not end in an event later).
    pub(super) fn stop(&mut self) {
        self.io = None;
        self.mo = None;
        self.dwell = None;
        for slot in self.list.drain(..) {
            self.engine.remove(slot.id);
        }
        self.out.clear();
    }
}

impl Inner {
    /// Creates the observers and tracks the slots already on the page.
    pub(super) fn install_observers(&mut self, win: &Window) {
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
                self.slots.io = Some(Io { io, _cb: cb });
            }
        } else {
            self.log("glimpse: no IntersectionObserver; nothing is measurable");
        }
        if self.slots.io.is_none() {
            return;
        }
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
            self.slots.mo = Some(Mo { mo, _cb: cb });
        }
    }

    fn on_intersections(&mut self, entries: &Array) {
        if self.stopped {
            return;
        }
        let s = &mut self.slots;
        for e in entries.iter() {
            let e: IntersectionObserverEntry = e.unchecked_into();
            let target = e.target();
            let Some(slot) = s.list.iter().find(|s| s.el == target) else {
                continue;
            };
            let r = e.bounding_client_rect();
            let area = r.width().max(0.0) * r.height().max(0.0);
            let ratio = if e.is_intersecting() {
                e.intersection_ratio()
            } else {
                0.0
            };
            s.engine.update(slot.id, ratio, area, e.time(), &mut s.out);
        }
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
                .list
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
        let Some(slot) = self.slots.list.iter().find(|s| &s.el == el) else {
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
                let s = &mut self.slots;
                s.engine.set_ad_id(id, &ad, now(), &mut s.out);
            }
            _ => self.untrack(el),
        }
    }

    pub(super) fn track(&mut self, el: &Element, ad_id: Option<String>) {
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
        if let Some(slot) = self.slots.list.iter_mut().find(|s| &s.el == el) {
            // Observed twice (a re-render): no second impression.
            if explicit {
                slot.explicit = true;
                let id = slot.id;
                self.before_ad_change(el);
                let s = &mut self.slots;
                s.engine.set_ad_id(id, &ad, now(), &mut s.out);
            }
            return;
        }
        let s = &mut self.slots;
        let Some(io) = &s.io else { return };
        let id = s.engine.add(&ad);
        io.io.observe(el);
        s.list.push(Slot {
            el: el.clone(),
            id,
            explicit,
            token: ad_token(el),
        });
    }

    pub(super) fn untrack(&mut self, el: &Element) {
        if let Some(pos) = self.slots.list.iter().position(|s| &s.el == el) {
            let s = &mut self.slots;
            if let Some(io) = &s.io {
                io.io.unobserve(el);
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
    /// earned up to now, with that ad's token, then takes the token now on
    /// the element for the next ad's events.
    fn before_ad_change(&mut self, el: &Element) {
        let s = &mut self.slots;
        s.engine.tick(now(), &mut s.out);
        self.queue_out();
        if let Some(slot) = self.slots.list.iter_mut().find(|s| &s.el == el) {
            slot.token = ad_token(el);
        }
    }

    /// Turns the engine's impressions into queued events and re-arms the
    /// dwell timer.
    pub(super) fn after(&mut self) {
        if self.stopped {
            return;
        }
        self.queue_out();
        self.slots.dwell = None;
        if let Some(deadline) = self.slots.engine.next_deadline() {
            let m = self.me.clone();
            let wait = (deadline - now()).clamp(0.0, 3_600_000.0).ceil() as u32 + 1;
            self.slots.dwell = Some(Timeout::new(wait, move || {
                with(&m, |i| {
                    let s = &mut i.slots;
                    s.engine.tick(now(), &mut s.out);
                    i.after();
                })
            }));
        }
    }
}
