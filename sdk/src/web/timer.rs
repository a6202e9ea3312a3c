//! Timers (`setTimeout`, `setInterval`), cleared on drop. Every timer shares
//! one closure type, since each closure type costs its own glue in the wasm.

use wasm_bindgen::JsValue;

use super::{callback, invoke, try_invoke, window, Callback};

/// A pending timeout or a running interval.
pub(super) struct Timer {
    /// The id `setTimeout` or `setInterval` gave.
    handle: JsValue,
    _cb: Callback,
}

impl Timer {
    /// Runs `f` once, after `ms`; `None` without a window.
    pub(super) fn once(ms: u32, f: impl FnOnce() + 'static) -> Option<Timer> {
        let mut f = Some(f);
        let cb = callback(move |_| {
            if let Some(f) = f.take() {
                f();
            }
        });
        Timer::start(ms, false, cb)
    }

    /// Runs `f` every `ms`; `None` without a window.
    pub(super) fn every(ms: u32, mut f: impl FnMut() + 'static) -> Option<Timer> {
        Timer::start(ms, true, callback(move |_| f()))
    }

    /// Not generic: what the callers share is compiled once.
    fn start(ms: u32, repeat: bool, cb: Callback) -> Option<Timer> {
        let win = window()?;
        let method = if repeat { "setInterval" } else { "setTimeout" };
        let ms = JsValue::from(ms.min(i32::MAX as u32));
        let handle = try_invoke(&win, method, cb.as_ref(), &ms).ok()?;
        Some(Timer { handle, _cb: cb })
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        // Timeouts and intervals share one list of timers, which
        // `clearTimeout` clears either from (HTML, timers).
        if let Some(win) = window() {
            invoke(&win, "clearTimeout", &self.handle, &JsValue::UNDEFINED);
        }
    }
}
