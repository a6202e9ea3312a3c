//! Delivery policy: events queue, batches form, retries back off. Pure: the
//! clock and the randomness are passed in, and nothing here talks to a network
//! or to storage.
//!
//! A batch, once formed, is immutable: its body (with its `batch_id`) is kept
//! as sent and resent whole until the edge acknowledges it, so the edge's
//! `batch_id` dedup makes every retry safe.

use glimpse_wire::ingest::is_id_byte;
use glimpse_wire::{MAX_BODY_BYTES, MAX_EVENTS_PER_BATCH};

use crate::engine::Impression;
use crate::text::push_u64;

/// Largest body the SDK forms. Half the 64 KiB quota that `sendBeacon` and
/// `fetch(.., {keepalive})` share, so two batches fit in flight at once.
pub const MAX_BATCH_BYTES: usize = MAX_BODY_BYTES / 2;
/// Most batches kept waiting (in memory and in storage); the oldest go first.
pub const MAX_QUEUED_BATCHES: usize = 200;
/// The in-flight quota of beacons and keepalive fetches.
pub const BEACON_QUOTA_BYTES: usize = MAX_BODY_BYTES;
/// A batch handed to `sendBeacon` is resent (deduplicated by the edge) this
/// long after, should the page live on, since a beacon is never confirmed.
pub const BEACON_RECHECK_MS: f64 = 30_000.0;
/// First retry delay and the cap of the exponential backoff.
pub const RETRY_BASE_MS: f64 = 1_000.0;
pub const RETRY_CAP_MS: f64 = 60_000.0;
/// `Retry-After` is honoured up to this long.
pub const RETRY_AFTER_CAP_MS: f64 = 600_000.0;

const BODY_HEAD: &str = "{\"batch_id\":\"";
/// The head of a batch from a browser driven by a program
/// (`navigator.webdriver`): the edge counts it as invalid traffic.
const WEBDRIVER_BODY_HEAD: &str = "{\"webdriver\":true,\"batch_id\":\"";
const BODY_MID: &str = "\",\"events\":[";
const BODY_TAIL: &str = "]}";

/// Whether `s` is a valid wire id of at most `max` bytes.
pub fn valid_id(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(is_id_byte)
}

/// Appends the wire JSON of one event: `imp` with its event `id`, the
/// visitor, the time and the ad's token. Every id, and the token of a signed
/// ad when there is one, must be a valid wire id, so nothing needs escaping.
pub fn event_json(
    id: &str,
    imp: &Impression,
    user_id: &str,
    ts: u64,
    token: Option<&str>,
    out: &mut String,
) {
    out.push_str("{\"id\":\"");
    out.push_str(id);
    out.push_str("\",\"ad_id\":\"");
    out.push_str(&imp.ad_id);
    out.push_str("\",\"user_id\":\"");
    out.push_str(user_id);
    out.push_str("\",\"kind\":\"");
    out.push_str(imp.kind.as_str());
    out.push_str("\",\"ts\":");
    push_u64(out, ts);
    if let Some(token) = token {
        out.push_str(",\"token\":\"");
        out.push_str(token);
        out.push('"');
    }
    if imp.verified {
        out.push_str(",\"verified\":true");
    }
    out.push('}');
}

/// One formed batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub id: String,
    pub body: String,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When it may be sent next (monotonic ms).
    pub due: f64,
    /// Being sent by `fetch` right now.
    pub in_flight: bool,
}

impl Batch {
    /// A batch from a stored body, or `None` when the body is not one the
    /// SDK formed.
    pub fn from_body(body: &str, now: f64) -> Option<Batch> {
        let rest = body
            .strip_prefix(BODY_HEAD)
            .or_else(|| body.strip_prefix(WEBDRIVER_BODY_HEAD))?;
        let (id, tail) = rest.split_once('"')?;
        let ok = valid_id(id, glimpse_wire::ingest::MAX_BATCH_OR_EVENT_ID_BYTES)
            && tail.starts_with(&BODY_MID[1..])
            && body.ends_with(BODY_TAIL)
            && body.len() <= MAX_BODY_BYTES
            && !body.contains('\n');
        ok.then(|| Batch {
            id: id.into(),
            body: body.into(),
            attempts: 0,
            due: now,
            in_flight: false,
        })
    }
}

/// What became of one attempt to send a batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Outcome {
    /// The edge took it (2xx).
    Ack,
    /// Try again later, not before the given delay (ms) when the edge said so.
    Retry(Option<f64>),
    /// The edge refused it for good (a 4xx other than 408 and 429).
    Drop,
}

/// Classifies an HTTP status; `None` is a network error.
pub fn classify(status: Option<u16>, retry_after_ms: Option<f64>) -> Outcome {
    match status {
        None => Outcome::Retry(None),
        Some(200..=299) => Outcome::Ack,
        Some(408 | 429) | Some(500..) => Outcome::Retry(retry_after_ms),
        Some(_) => Outcome::Drop,
    }
}

/// Parses a `Retry-After` of delta seconds into milliseconds.
pub fn parse_retry_after_seconds(value: &str) -> Option<f64> {
    let v = value.trim();
    if v.len() > 9 {
        return None;
    }
    crate::text::parse_u64(v).map(|n| n as f64 * 1000.0)
}

/// The delay before retry number `attempt` (1 for the first retry): capped
/// exponential backoff with equal jitter (`random` in 0..1), never shorter
/// than what the edge asked for in `Retry-After` (itself capped).
pub fn backoff(attempt: u32, retry_after_ms: Option<f64>, random: f64) -> f64 {
    let exp = attempt.saturating_sub(1).min(16);
    let ceiling = (RETRY_BASE_MS * f64::from(1u32 << exp)).min(RETRY_CAP_MS);
    let jittered = ceiling / 2.0 + random.clamp(0.0, 1.0) * ceiling / 2.0;
    match retry_after_ms {
        Some(ms) if ms.is_finite() => jittered.max(ms.clamp(0.0, RETRY_AFTER_CAP_MS)),
        _ => jittered,
    }
}

/// The event queue and the formed batches of one tracker.
#[derive(Debug)]
pub struct Queue {
    max_events: usize,
    /// The head of every batch this queue forms.
    body_head: &'static str,
    pending: Vec<String>,
    batches: Vec<Batch>,
}

impl Queue {
    /// A queue forming batches of at most `max_events` events, each saying
    /// `"webdriver":true` when the page's `navigator.webdriver` is.
    pub fn new(max_events: usize, webdriver: bool) -> Self {
        Queue {
            max_events: max_events.clamp(1, MAX_EVENTS_PER_BATCH),
            body_head: if webdriver {
                WEBDRIVER_BODY_HEAD
            } else {
                BODY_HEAD
            },
            pending: Vec::new(),
            batches: Vec::new(),
        }
    }

    /// Queues one event (its wire JSON); true when a batch is full and
    /// should be formed and sent now.
    pub fn push(&mut self, event_json: String) -> bool {
        self.pending.push(event_json);
        self.pending.len() >= self.max_events
    }

    /// Events not yet in a batch.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The formed batches, oldest first.
    pub fn batches(&self) -> &[Batch] {
        &self.batches
    }

    /// Forms batches of every pending event, each within the event and byte
    /// limits, with ids from `new_id`. Returns how many were formed. When
    /// more than [`MAX_QUEUED_BATCHES`] wait, the oldest not in flight are
    /// dropped.
    pub fn seal(&mut self, now: f64, mut new_id: impl FnMut() -> String) -> usize {
        let mut formed = 0;
        let mut events = std::mem::take(&mut self.pending).into_iter().peekable();
        while events.peek().is_some() {
            let id = new_id();
            let mut body = String::with_capacity(1024);
            body.push_str(self.body_head);
            body.push_str(&id);
            body.push_str(BODY_MID);
            let mut count = 0;
            while let Some(next) = events.peek() {
                let extra = next.len() + usize::from(count > 0);
                let full = count >= self.max_events
                    || (count > 0 && body.len() + extra + BODY_TAIL.len() > MAX_BATCH_BYTES);
                if full {
                    break;
                }
                if count > 0 {
                    body.push(',');
                }
                body.push_str(next);
                count += 1;
                events.next();
            }
            body.push_str(BODY_TAIL);
            self.batches.push(Batch {
                id,
                body,
                attempts: 0,
                due: now,
                in_flight: false,
            });
            formed += 1;
        }
        self.trim();
        formed
    }

    /// Adds batches read back from storage, skipping ids already queued.
    pub fn adopt(&mut self, batches: impl IntoIterator<Item = Batch>) -> usize {
        let mut added = 0;
        for b in batches {
            if !self.batches.iter().any(|q| q.id == b.id) {
                self.batches.push(b);
                added += 1;
            }
        }
        self.trim();
        added
    }

    fn trim(&mut self) {
        while self.batches.len() > MAX_QUEUED_BATCHES {
            match self.batches.iter().position(|b| !b.in_flight) {
                Some(i) => {
                    self.batches.remove(i);
                }
                None => break,
            }
        }
    }

    /// The next batch due by `now` and not in flight; marks it in flight.
    pub fn take_due(&mut self, now: f64) -> Option<(String, String)> {
        let b = self
            .batches
            .iter_mut()
            .find(|b| !b.in_flight && b.due <= now)?;
        b.in_flight = true;
        Some((b.id.clone(), b.body.clone()))
    }

    /// Makes every waiting batch due at `now` (an explicit flush).
    pub fn hurry(&mut self, now: f64) {
        for b in &mut self.batches {
            b.due = b.due.min(now);
        }
    }

    /// The earliest time a batch not in flight is due.
    pub fn next_due(&self) -> Option<f64> {
        self.batches
            .iter()
            .filter(|b| !b.in_flight)
            .map(|b| b.due)
            .reduce(f64::min)
    }

    /// Records what became of a send of `id`; returns true when the batch left
    /// the queue (acknowledged or dropped).
    pub fn settle(&mut self, id: &str, outcome: Outcome, now: f64, random: f64) -> bool {
        let Some(i) = self.batches.iter().position(|b| b.id == id) else {
            return false;
        };
        match outcome {
            Outcome::Ack | Outcome::Drop => {
                self.batches.remove(i);
                true
            }
            Outcome::Retry(after) => {
                let b = &mut self.batches[i];
                b.in_flight = false;
                b.attempts = b.attempts.saturating_add(1);
                b.due = now + backoff(b.attempts, after, random);
                false
            }
        }
    }

    /// Forgets a batch (another tab took it over).
    pub fn forget(&mut self, id: &str) {
        self.batches.retain(|b| b.id != id);
    }

    /// The batches to hand to `sendBeacon` as the page hides: the waiting
    /// ones, oldest first, while their bodies fit in the shared quota. They
    /// are marked to be rechecked after [`BEACON_RECHECK_MS`].
    pub fn beacon_plan(&mut self, now: f64) -> Vec<(String, String)> {
        let mut budget = BEACON_QUOTA_BYTES;
        let mut plan = Vec::new();
        for b in &mut self.batches {
            if b.in_flight || b.body.len() > budget {
                continue;
            }
            budget -= b.body.len();
            b.due = now + BEACON_RECHECK_MS;
            plan.push((b.id.clone(), b.body.clone()));
        }
        plan
    }

    /// The stored form of the waiting batches: one body a line.
    pub fn encode(&self) -> String {
        let mut s = String::new();
        for b in &self.batches {
            if !s.is_empty() {
                s.push('\n');
            }
            s.push_str(&b.body);
        }
        s
    }

    /// Drops everything (opt-out).
    pub fn clear(&mut self) {
        self.pending.clear();
        self.batches.clear();
    }
}

/// Reads the stored form back; lines that are not batch bodies are skipped.
pub fn decode(stored: &str, now: f64) -> Vec<Batch> {
    stored
        .split('\n')
        .filter_map(|line| Batch::from_body(line, now))
        .collect()
}

/// Whether the queue a tab left in storage is an orphan another tab may take
/// over: its tab is not alive, by the Web Locks held when `live` is known,
/// else by a heartbeat older than `stale_ms`.
pub fn is_orphan(
    tab: &str,
    live: Option<&[String]>,
    heartbeat: Option<f64>,
    now_epoch_ms: f64,
    stale_ms: f64,
) -> bool {
    match live {
        Some(live) => !live.iter().any(|t| t == tab),
        None => heartbeat.is_none_or(|h| now_epoch_ms - h > stale_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Kind;

    fn imp(ad_id: &str, kind: Kind, verified: bool) -> Impression {
        Impression {
            slot: 1,
            ad_id: ad_id.into(),
            kind,
            verified,
        }
    }

    fn ev(i: u64, user: &str) -> String {
        let mut s = String::new();
        event_json(
            &format!("e{i}"),
            &imp("ad-42", Kind::Viewable, false),
            user,
            1_764_000_000_000 + i,
            None,
            &mut s,
        );
        s
    }

    fn ids() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("b{n}")
        }
    }

    #[test]
    fn bodies_are_the_wire_contract() {
        let mut q = Queue::new(50, false);
        q.push(ev(1, "u1"));
        q.push(ev(2, "u1"));
        assert_eq!(q.seal(0.0, ids()), 1);
        let body = &q.batches()[0].body;
        let batch = glimpse_wire::ingest::decode_batch(body.as_bytes()).unwrap();
        assert_eq!(batch.batch_id, "b1");
        assert_eq!(batch.events.len(), 2);
        let e = glimpse_wire::ingest::validate_event(batch.events[1], 1_764_000_000_000).unwrap();
        assert_eq!((&*e.id, &*e.ad_id, &*e.user_id), ("e2", "ad-42", "u1"));
        assert_eq!(e.kind, glimpse_wire::Kind::Viewable);
        assert_eq!(e.ts, 1_764_000_000_002);
        let mut m = String::new();
        event_json(
            "x",
            &imp("a", Kind::Measurable, false),
            "u",
            0,
            None,
            &mut m,
        );
        assert_eq!(
            m,
            r#"{"id":"x","ad_id":"a","user_id":"u","kind":"measurable","ts":0}"#
        );
        m.clear();
        event_json(
            "x",
            &imp("a", Kind::Viewable, true),
            "u",
            0,
            Some("9.ab"),
            &mut m,
        );
        assert_eq!(
            m,
            r#"{"id":"x","ad_id":"a","user_id":"u","kind":"viewable","ts":0,"token":"9.ab","verified":true}"#
        );
        let body = format!(r#"{{"batch_id":"b","events":[{m}]}}"#);
        let batch = glimpse_wire::ingest::decode_batch(body.as_bytes()).unwrap();
        let e = glimpse_wire::ingest::validate_event(batch.events[0], 0).unwrap();
        assert_eq!(e.token.as_deref(), Some("9.ab"));
        assert!(e.verified);
    }

    #[test]
    fn a_driven_browser_says_webdriver_in_every_body() {
        let mut q = Queue::new(1, true);
        q.push(ev(1, "u1"));
        q.push(ev(2, "u1"));
        assert_eq!(q.seal(0.0, ids()), 2);
        for b in q.batches() {
            assert!(
                b.body.starts_with(r#"{"webdriver":true,"batch_id":""#),
                "{}",
                b.body
            );
            let batch = glimpse_wire::ingest::decode_batch(b.body.as_bytes()).unwrap();
            assert!(batch.webdriver);
            assert_eq!(batch.batch_id, b.id);
            assert_eq!(batch.events.len(), 1);
        }
        // Stored and read back (by this tab after a reload, or another tab).
        let stored = q.encode();
        let back = decode(&stored, 0.0);
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].body, q.batches()[0].body);
        // A browser not driven by a program sends no such field.
        let mut q = Queue::new(50, false);
        q.push(ev(1, "u1"));
        q.seal(0.0, ids());
        let body = &q.batches()[0].body;
        assert!(!body.contains("webdriver"), "{body}");
        assert!(
            !glimpse_wire::ingest::decode_batch(body.as_bytes())
                .unwrap()
                .webdriver
        );
    }

    #[test]
    fn push_says_when_max_batch_is_reached() {
        let mut q = Queue::new(3, false);
        assert!(!q.push(ev(1, "u")));
        assert!(!q.push(ev(2, "u")));
        assert!(q.push(ev(3, "u")));
        assert_eq!(q.pending(), 3);
        q.seal(0.0, ids());
        assert_eq!(q.pending(), 0);
        assert_eq!(q.seal(0.0, ids()), 0, "nothing pending, no empty batch");
    }

    #[test]
    fn batches_split_by_count_and_bytes() {
        let mut q = Queue::new(2, false);
        for i in 0..5 {
            q.push(ev(i, "u"));
        }
        assert_eq!(q.seal(0.0, ids()), 3);
        // Big events: the byte limit splits before the count limit.
        let mut q = Queue::new(500, false);
        let user = "u".repeat(128);
        for i in 0..500 {
            q.push(ev(i, &user));
        }
        let formed = q.seal(0.0, ids());
        assert!(formed > 1);
        let mut total = 0;
        for b in q.batches() {
            assert!(b.body.len() <= MAX_BATCH_BYTES, "{}", b.body.len());
            total += glimpse_wire::ingest::decode_batch(b.body.as_bytes())
                .unwrap()
                .events
                .len();
        }
        assert_eq!(total, 500);
    }

    #[test]
    fn retries_resend_the_same_body_and_back_off() {
        let mut q = Queue::new(50, false);
        q.push(ev(1, "u"));
        q.seal(0.0, ids());
        let (id, body) = q.take_due(0.0).unwrap();
        assert!(q.take_due(0.0).is_none(), "in flight");
        assert!(!q.settle(&id, Outcome::Retry(None), 100.0, 0.0));
        assert_eq!(q.next_due(), Some(600.0));
        assert!(q.take_due(599.0).is_none());
        let (id2, body2) = q.take_due(600.0).unwrap();
        assert_eq!((id2.as_str(), body2.as_str()), (id.as_str(), body.as_str()));
        assert!(!q.settle(&id, Outcome::Retry(Some(30_000.0)), 1000.0, 1.0));
        assert_eq!(q.next_due(), Some(31_000.0), "Retry-After wins");
        q.hurry(2000.0);
        let _ = q.take_due(2000.0).unwrap();
        assert!(q.settle(&id, Outcome::Ack, 2100.0, 0.5));
        assert!(q.batches().is_empty());
        assert!(
            !q.settle(&id, Outcome::Ack, 2100.0, 0.5),
            "unknown ids are ignored"
        );
    }

    #[test]
    fn classification() {
        assert_eq!(classify(None, None), Outcome::Retry(None));
        assert_eq!(classify(Some(202), None), Outcome::Ack);
        assert_eq!(classify(Some(200), None), Outcome::Ack);
        assert_eq!(classify(Some(408), None), Outcome::Retry(None));
        assert_eq!(
            classify(Some(429), Some(5000.0)),
            Outcome::Retry(Some(5000.0))
        );
        assert_eq!(classify(Some(500), None), Outcome::Retry(None));
        assert_eq!(classify(Some(503), None), Outcome::Retry(None));
        assert_eq!(classify(Some(400), None), Outcome::Drop);
        assert_eq!(classify(Some(413), None), Outcome::Drop);
        assert_eq!(classify(Some(415), None), Outcome::Drop);
        assert_eq!(classify(Some(404), None), Outcome::Drop);
    }

    #[test]
    fn backoff_is_capped_exponential_with_jitter() {
        assert_eq!(backoff(1, None, 0.0), 500.0);
        assert_eq!(backoff(1, None, 1.0), 1000.0);
        assert_eq!(backoff(2, None, 1.0), 2000.0);
        assert_eq!(backoff(3, None, 0.5), 3000.0);
        assert_eq!(backoff(7, None, 1.0), 60_000.0);
        assert_eq!(backoff(1000, None, 1.0), 60_000.0);
        assert_eq!(backoff(1000, None, 0.0), 30_000.0);
        assert_eq!(backoff(1, Some(120_000.0), 0.0), 120_000.0);
        assert_eq!(backoff(1, Some(1e12), 0.0), RETRY_AFTER_CAP_MS);
        assert_eq!(backoff(5, Some(1.0), 1.0), 16_000.0);
        assert_eq!(parse_retry_after_seconds(" 120 "), Some(120_000.0));
        assert_eq!(parse_retry_after_seconds("0"), Some(0.0));
        assert_eq!(parse_retry_after_seconds("-1"), None);
        assert_eq!(
            parse_retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT"),
            None
        );
    }

    #[test]
    fn storage_round_trip_and_adoption() {
        let mut q = Queue::new(1, false);
        q.push(ev(1, "u"));
        q.push(ev(2, "u"));
        q.seal(0.0, ids());
        let stored = q.encode();
        let back = decode(
            &(stored.clone() + "\ngarbage\n{\"batch_id\":\"a b\",\"events\":[]}"),
            5.0,
        );
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].body, q.batches()[0].body);
        assert_eq!(back[1].id, "b2");
        let mut other = Queue::new(50, false);
        assert_eq!(other.adopt(back.clone()), 2);
        assert_eq!(other.adopt(back), 0, "adopting twice adds nothing");
        other.forget("b1");
        assert_eq!(other.batches().len(), 1);
        other.clear();
        assert!(other.encode().is_empty());
        assert!(decode("", 0.0).is_empty());
    }

    #[test]
    fn the_queue_is_capped() {
        let mut q = Queue::new(1, false);
        for i in 0..(MAX_QUEUED_BATCHES as u64 + 10) {
            q.push(ev(i, "u"));
        }
        q.seal(0.0, ids());
        assert_eq!(q.batches().len(), MAX_QUEUED_BATCHES);
        assert_eq!(q.batches()[0].id, "b11", "the oldest went first");
    }

    #[test]
    fn beacons_fit_the_shared_quota() {
        let mut q = Queue::new(500, false);
        let user = "u".repeat(128);
        for i in 0..1000 {
            q.push(ev(i, &user));
        }
        let formed = q.seal(0.0, ids());
        assert!(formed >= 3);
        let _ = q.take_due(0.0).unwrap(); // one is in flight by fetch already
        let plan = q.beacon_plan(10.0);
        let bytes: usize = plan.iter().map(|(_, b)| b.len()).sum();
        assert!(bytes <= BEACON_QUOTA_BYTES);
        assert!(!plan.is_empty());
        assert!(plan.iter().all(|(id, _)| id != "b1"));
        assert_eq!(q.batches()[1].due, 10.0 + BEACON_RECHECK_MS);
    }

    #[test]
    fn orphans() {
        let live = vec!["t1".to_string()];
        assert!(!is_orphan("t1", Some(&live), None, 0.0, 1.0));
        assert!(is_orphan("t2", Some(&live), Some(1e15), 0.0, 1.0));
        assert!(is_orphan("t2", None, None, 0.0, 1000.0));
        assert!(!is_orphan("t2", None, Some(500.0), 1000.0, 1000.0));
        assert!(is_orphan("t2", None, Some(500.0), 2000.0, 1000.0));
    }

    #[test]
    fn ids_are_checked() {
        assert!(valid_id("ad-42", 128));
        assert!(valid_id("a.b:c_d-E9", 128));
        assert!(!valid_id("", 128));
        assert!(!valid_id("a b", 128));
        assert!(!valid_id("é", 128));
        assert!(valid_id(&"x".repeat(128), 128));
        assert!(!valid_id(&"x".repeat(129), 128));
    }
}
