//! Sending: the engine's impressions become queued events, events become
//! batches, and the pump sends them one at a time by `fetch`, or all at once
//! by `sendBeacon` as the page hides.

use alloc::rc::Weak;
use alloc::{string::String, vec::Vec};
use core::cell::RefCell;
use js_sys::Function;
use wasm_bindgen::prelude::*;

use super::timer::Timer;
use super::{
    call, elements, epoch_ms, get, invoke, new_batch_id, now, once, random, then_either, warn,
    window, with, Inner,
};
use crate::queue::{self, classify, parse_retry_after_seconds, Outcome, Queue, REQUEST_TIMEOUT_MS};
use crate::text::push_u64;

/// The queue and the state of the pump that empties it.
pub(super) struct Sending {
    pub(super) queue: Queue,
    /// The number of the last event formed (event ids are the tab's id and
    /// this number).
    seq: u32,
    /// A `fetch` is on its way; it calls the pump again when it settles.
    busy: bool,
    /// `flush()` promises to resolve once nothing is due.
    waiters: Vec<Function>,
    /// Fires when the next batch is due.
    retry: Option<Timer>,
    /// The periodic flush.
    interval: Option<Timer>,
}

impl Sending {
    pub(super) fn new(max_batch: usize, webdriver: bool) -> Sending {
        Sending {
            queue: Queue::new(max_batch, webdriver),
            seq: 0,
            busy: false,
            waiters: Vec::new(),
            retry: None,
            interval: None,
        }
    }

    /// Stops the timers and resolves every `flush()` still waiting.
    pub(super) fn stop(&mut self) {
        self.retry = None;
        self.interval = None;
        self.resolve_waiters();
    }

    fn resolve_waiters(&mut self) {
        // By reference, then dropped whole: a loop by value would link a
        // `Vec` iterator's drop for each element type.
        let waiters = core::mem::take(&mut self.waiters);
        for w in &waiters {
            call(w);
        }
    }
}

/// Logs each event the edge rejected in an accepted batch (its 202's
/// `rejected` list), with the reason. The batch is acknowledged all the
/// same: a rejected event would be rejected again, so it is never resent.
fn log_rejections(resp: &JsValue) {
    let json = invoke(resp, "json", &JsValue::UNDEFINED, &JsValue::UNDEFINED);
    let log = once(move |answer: JsValue| {
        for r in elements(&get(&answer, "rejected")) {
            web_sys::console::log_3(
                &JsValue::from_str("glimpse: the edge rejected an event (it is not resent):"),
                &get(&r, "index"),
                &get(&r, "error"),
            );
        }
        JsValue::UNDEFINED
    });
    then_either(&json, &log);
}

#[wasm_bindgen(module = "/js/post.js")]
extern "C" {
    /// `fetch` of `body` to `url` (`sdk/js/post.js`), aborted after `ms`;
    /// `done` gets the `Response`, or `undefined` when there is none.
    #[wasm_bindgen(js_name = post)]
    fn fetch_post(url: &str, body: &str, ms: u32, done: &JsValue);
}

/// Posts one body with `fetch(.., {keepalive: true})`, aborted after
/// [`REQUEST_TIMEOUT_MS`], and calls `done` with the outcome; in `debug`
/// mode logs the events the edge rejected. Not generic over `done`: each
/// caller's type would make a copy of the whole answer handling.
fn post(endpoint: &str, body: &str, debug: bool, done: Settle) {
    // Called once, on either outcome, so it is freed.
    let settle = once(move |answer: JsValue| {
        // A `Response` has a numeric `status`; `undefined` (no answer) has
        // none.
        let outcome = match get(&answer, "status").as_f64() {
            Some(status) => {
                let resp = answer;
                let headers = get(&resp, "headers");
                let retry_after = invoke(
                    &headers,
                    "get",
                    &JsValue::from_str("retry-after"),
                    &JsValue::UNDEFINED,
                )
                .as_string()
                .and_then(|v| {
                    parse_retry_after_seconds(&v).or_else(|| {
                        let at = js_sys::Date::parse(&v);
                        at.is_finite().then(|| at - js_sys::Date::now())
                    })
                });
                let outcome = classify(Some(status as u16), retry_after);
                if debug && outcome == Outcome::Ack {
                    log_rejections(&resp);
                }
                outcome
            }
            None => Outcome::Retry(None),
        };
        done.run(outcome);
        JsValue::UNDEFINED
    });
    fetch_post(endpoint, body, REQUEST_TIMEOUT_MS, &settle);
}

/// What to do with the outcome of a [`post`] of the batch `id`: settle it,
/// and when the pump sent it (not a refused beacon's fallback), let the
/// pump send the next.
struct Settle {
    me: Weak<RefCell<Inner>>,
    id: String,
    pumped: bool,
}

impl Settle {
    fn run(self, outcome: Outcome) {
        with(&self.me, |i| {
            if self.pumped {
                i.sending.busy = false;
            }
            i.settle(&self.id, outcome);
        });
    }
}

impl Inner {
    /// Starts the periodic flush, unless `flushIntervalMs` is 0.
    pub(super) fn start_flush_interval(&mut self) {
        let ms = self.opts.flush_interval_ms;
        if ms > 0.0 {
            let m = self.me.clone();
            self.sending.interval = Timer::every(ms.min(2e9) as u32, move || {
                with(&m, |i| i.seal());
            });
        }
    }

    /// `flush()`: batches what is pending, makes every batch due and sends;
    /// `resolve` is called once nothing is due.
    pub(super) fn flush_now(&mut self, resolve: Function) {
        self.sending.waiters.push(resolve);
        if self.sending.queue.pending() > 0 {
            self.sending.queue.seal(now(), new_batch_id);
            self.persist();
        }
        self.sending.queue.hurry(now());
        self.pump();
    }

    /// Forms batches of the pending events, stores them and sends.
    fn seal(&mut self) {
        if self.stopped {
            return;
        }
        if self.sending.queue.pending() > 0 {
            let n = self.sending.queue.seal(now(), new_batch_id);
            if n > 0 {
                self.persist();
            }
        }
        self.pump();
    }

    /// Sends the next due batch unless one is on its way; arms the retry timer.
    fn pump(&mut self) {
        self.sending.retry = None;
        // A send on its way calls pump again when it settles.
        if self.stopped || !self.opts.consent || self.sending.busy {
            return;
        }
        self.check_ownership();
        self.expire();
        if let Some((id, body)) = self.sending.queue.take_due(now(), epoch_ms()) {
            self.sending.busy = true;
            self.post(id, &body, true);
            return;
        }
        self.sending.resolve_waiters();
        if let Some(due) = self.sending.queue.next_due() {
            let m = self.me.clone();
            let wait = (due - now()).clamp(0.0, 3_600_000.0) as u32 + 1;
            self.sending.retry = Timer::once(wait, move || with(&m, |i| i.pump()));
        }
    }

    /// Drops the batches too old for the edge to accept.
    fn expire(&mut self) {
        if self.sending.queue.expire(epoch_ms()) > 0 {
            self.log("glimpse: dropped batches older than the edge accepts");
            self.persist();
        }
    }

    /// [`post`]s the batch `id` to the endpoint (`pumped`: sent by the pump).
    fn post(&self, id: String, body: &str, pumped: bool) {
        let done = Settle {
            me: self.me.clone(),
            id,
            pumped,
        };
        post(&self.opts.endpoint, body, self.opts.debug, done);
    }

    fn settle(&mut self, id: &str, outcome: Outcome) {
        match outcome {
            Outcome::Ack => {}
            Outcome::Drop => warn("glimpse: the edge refused a batch; it is dropped"),
            Outcome::Retry(Some(_)) => {
                self.log("glimpse: the edge asked to wait (Retry-After); sending is paused")
            }
            Outcome::Retry(None) => self.log("glimpse: a batch will be retried"),
        }
        if self.sending.queue.settle(id, outcome, now(), random()) {
            self.persist();
        }
        self.pump();
    }

    /// The page is hiding and may never come back: beacon everything.
    pub(super) fn beacon_all(&mut self) {
        if !self.opts.consent {
            return;
        }
        if self.sending.queue.pending() > 0 {
            self.sending.queue.seal(now(), new_batch_id);
            self.persist();
        }
        self.check_ownership();
        self.expire();
        let Some(win) = window() else { return };
        let nav = get(&win, "navigator");
        let endpoint = JsValue::from_str(&self.opts.endpoint);
        // By reference, as `resolve_waiters` goes through its list.
        for (id, body) in &self.sending.queue.beacon_plan(now(), epoch_ms()) {
            let sent = invoke(&nav, "sendBeacon", &endpoint, &JsValue::from_str(body));
            if sent.as_bool() == Some(true) {
                self.log("glimpse: batch handed to sendBeacon");
            } else {
                // Refused: fetch with keepalive, settled normally if the page lives.
                self.post(id.clone(), body, false);
            }
        }
    }

    /// Turns the engine's impressions so far into queued events, each with
    /// its slot's token and campaign; seals the batch when it is full.
    pub(super) fn queue_out(&mut self) {
        if self.stopped {
            return;
        }
        let out = core::mem::take(&mut self.slots.out);
        let mut full = false;
        for imp in &out {
            let s = &mut self.sending;
            s.seq = s.seq.wrapping_add(1);
            let mut id = self.tabs.id.clone();
            id.push('-');
            push_u64(&mut id, u64::from(s.seq));
            let (token, campaign) = self.slots.token_and_campaign(imp.slot);
            let mut json = String::with_capacity(256);
            queue::event_json(
                &id,
                imp,
                campaign,
                &self.user_id,
                epoch_ms(),
                token,
                &mut json,
            );
            if self.opts.debug {
                let mut m = String::from("glimpse: ");
                m.push_str(imp.kind.as_str());
                m.push(' ');
                m.push_str(&imp.ad_id);
                self.log(&m);
            }
            full |= self.sending.queue.push(json, &imp.ad_id, imp.post);
        }
        // Keeps the buffer's capacity for the next callback.
        self.slots.out = out;
        self.slots.out.clear();
        if full {
            self.seal();
        }
    }
}
