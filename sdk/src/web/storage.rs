//! What the SDK keeps in localStorage: the visitor id, each tab's queue of
//! batches and heartbeat, all under keys starting `glimpse.`.

use alloc::{string::String, vec::Vec};

use web_sys::{Storage, Window};

use wasm_bindgen::{JsCast, JsValue};

use super::{invoke, number, object, random, try_invoke, window, Inner};
use crate::limits::MAX_AD_OR_USER_ID_BYTES;
use crate::queue;
use crate::text::random_id;

const KEY_PREFIX: &str = "glimpse.";
/// A tab's queue: this prefix and the tab's id.
pub(super) const QUEUE_PREFIX: &str = "glimpse.q.";
/// A tab's last heartbeat (epoch ms): this prefix and the tab's id.
pub(super) const BEAT_PREFIX: &str = "glimpse.h.";
const USER_KEY: &str = "glimpse.uid";

/// The origin's localStorage, when the SDK may use it.
pub(super) struct Store {
    pub(super) storage: Option<Storage>,
    /// Whether our queue key was written with batches in it.
    stored: bool,
}

/// `prefix` followed by `tab`.
pub(super) fn tab_key(prefix: &str, tab: &str) -> String {
    let mut k = String::from(prefix);
    k.push_str(tab);
    k
}

/// Every key of `s` the SDK wrote (by any tab).
pub(super) fn sdk_keys(s: &Storage) -> Vec<String> {
    // `NaN` (no number) as 0.
    let len = number(s, "length") as u32;
    // Pushed, not collected, as `on_mutations`' removed slots are.
    let mut keys = Vec::new();
    for n in 0..len {
        let key = invoke(s, "key", &JsValue::from(n), &JsValue::UNDEFINED).as_string();
        if let Some(key) = key.filter(|k| k.starts_with(KEY_PREFIX)) {
            keys.push(key);
        }
    }
    keys
}

/// `s.getItem(key)`; `None` when it throws or there is none.
pub(super) fn read(s: &Storage, key: &str) -> Option<String> {
    invoke(s, "getItem", &JsValue::from_str(key), &JsValue::UNDEFINED).as_string()
}

/// `s.setItem(key, value)`; whether it was stored (not over quota).
pub(super) fn write(s: &Storage, key: &str, value: &str) -> bool {
    try_invoke(
        s,
        "setItem",
        &JsValue::from_str(key),
        &JsValue::from_str(value),
    )
    .is_ok()
}

/// `s.removeItem(key)`.
pub(super) fn remove(s: &Storage, key: &str) {
    invoke(
        s,
        "removeItem",
        &JsValue::from_str(key),
        &JsValue::UNDEFINED,
    );
}

/// `localStorage`, unless reading it throws (storage disabled) or gives
/// nothing.
fn local_storage(win: &Window) -> Option<Storage> {
    object(win, "localStorage").map(JsCast::unchecked_into)
}

impl Store {
    /// localStorage with consent; without it nothing is kept.
    pub(super) fn open(win: &Window, consent: bool) -> Store {
        Store {
            storage: if consent { local_storage(win) } else { None },
            stored: false,
        }
    }

    /// The visitor id: `given`, else the stored one, else a new one (stored
    /// when storage is there).
    pub(super) fn user_id(&self, given: Option<&str>) -> String {
        if let Some(id) = given {
            return id.into();
        }
        let Some(s) = &self.storage else {
            return random_id(22, random);
        };
        match read(s, USER_KEY) {
            Some(id) if queue::valid_id(&id, MAX_AD_OR_USER_ID_BYTES) => id,
            _ => {
                let id = random_id(22, random);
                write(s, USER_KEY, &id);
                id
            }
        }
    }

    /// Deletes every key the SDK wrote, by this page or any other (even
    /// when this one has no consent to use storage), and stops using it.
    pub(super) fn forget_all(&mut self) {
        self.storage = None;
        self.stored = false;
        if let Some(s) = window().and_then(|w| local_storage(&w)) {
            for k in &sdk_keys(&s) {
                remove(&s, k);
            }
        }
    }
}

impl Inner {
    fn queue_key(&self) -> String {
        tab_key(QUEUE_PREFIX, &self.tabs.id)
    }

    /// Forgets the batches we hold when they are no longer ours: another
    /// tab took them over if our stored queue vanished.
    pub(super) fn check_ownership(&mut self) {
        if let (true, Some(s)) = (self.store.stored, &self.store.storage) {
            if read(s, &self.queue_key()).is_none() {
                self.log("glimpse: another tab took over this tab's batches");
                self.sending.queue.forget_batches();
                self.store.stored = false;
            }
        }
    }

    /// Writes the queue's batches to storage (or removes the key when none).
    pub(super) fn persist(&mut self) {
        self.check_ownership();
        let Some(s) = &self.store.storage else { return };
        let key = self.queue_key();
        let v = self.sending.queue.encode();
        if v.is_empty() {
            remove(s, &key);
            self.store.stored = false;
        } else {
            self.store.stored = write(s, &key, &v);
        }
    }
}
