//! Delivery policy: events queue, batches form, retries back off. Pure: the
//! clock and the randomness are passed in, and nothing here talks to a network
//! or to storage.
//!
//! A batch, once formed, is immutable: its body (with its `batch_id`) is kept
//! as sent and resent whole until the edge acknowledges it, so the edge's
//! `batch_id` dedup makes every retry safe.

use alloc::{string::String, vec::Vec};

use crate::limits::{
    is_id_byte, MAX_AD_IDS_PER_BATCH, MAX_BATCH_OR_EVENT_ID_BYTES, MAX_BODY_BYTES,
    MAX_EVENTS_PER_BATCH, MAX_EVENT_AGE_MS,
};

use crate::engine::Impression;
use crate::text::{push_u64, split_ascii};

/// Largest body the SDK forms. Half the 64 KiB quota that `sendBeacon` and
/// `fetch(.., {keepalive})` share, so two batches fit in flight at once.
pub const MAX_BATCH_BYTES: usize = MAX_BODY_BYTES / 2;
/// Most batches kept waiting (in memory and in storage); the oldest go first.
pub const MAX_QUEUED_BATCHES: usize = 200;
/// Most bytes of batch bodies kept waiting by one tab, stored in its
/// origin's localStorage: far below the ~5 MB browsers give an origin, so
/// the SDK never fills the publisher's own storage.
pub const MAX_QUEUED_BYTES: usize = 256 * 1024;
/// A request unanswered this long is aborted and retried.
pub const REQUEST_TIMEOUT_MS: u32 = 20_000;
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
/// Inserted at the start of a body as it is sent (at every attempt).
const SENT_AT_HEAD: &str = "{\"sent_at\":";
/// The key of an event's timestamp, as [`event_json`] writes it.
const TS_KEY_QUOTED: &str = "\"ts\"";
/// Longest `"sent_at":N,` (N a 13-digit epoch ms until the year 2286).
const SENT_AT_BYTES: usize = SENT_AT_HEAD.len() + 13;

/// Whether `s` is a valid wire id of at most `max` bytes.
pub fn valid_id(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(is_id_byte)
}

/// Appends the wire JSON of one event: `imp` with its event `id` (naming
/// its ad by `ad_id`, or its post by `post_id`), the ad's campaign, the
/// visitor, the time and the ad's token. Every id, and the token of a
/// signed ad when there is one, must be a valid wire id, so nothing needs
/// escaping; a campaign is for ad events only (the edge rejects a post's).
pub fn event_json(
    id: &str,
    imp: &Impression,
    campaign_id: Option<&str>,
    user_id: &str,
    ts: u64,
    token: Option<&str>,
    out: &mut String,
) {
    out.push_str("{\"id\":\"");
    out.push_str(id);
    out.push_str(if imp.post {
        "\",\"post_id\":\""
    } else {
        "\",\"ad_id\":\""
    });
    out.push_str(&imp.ad_id);
    if let Some(campaign_id) = campaign_id {
        out.push_str("\",\"campaign_id\":\"");
        out.push_str(campaign_id);
    }
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
    if imp.audible {
        out.push_str(",\"audible\":true");
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
    /// Handed to `sendBeacon` since it was last taken to be sent by `fetch`.
    pub beaconed: bool,
    /// The `ts` of its newest event (epoch ms by the client's clock).
    pub newest_ts: u64,
}

/// The newest `ts` of the events in `body`, as [`event_json`] writes them
/// (ids never hold `"` or `:`, so a piece between colons ending in `"ts"`
/// is that key, and the next one starts with its value). Written so that
/// nothing can panic: slicing a `str` would bring its panic messages into
/// the wasm.
fn newest_ts(body: &str) -> u64 {
    let mut newest = 0;
    let mut after_ts_key = false;
    for piece in split_ascii(body, b':') {
        if after_ts_key {
            let ts = piece
                .bytes()
                .take_while(u8::is_ascii_digit)
                .try_fold(0u64, |n, b| {
                    n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
                });
            newest = newest.max(ts.unwrap_or(0));
        }
        after_ts_key = piece.ends_with(TS_KEY_QUOTED);
    }
    newest
}

/// `body` as sent at `sent_at` (epoch ms by the client's clock): the same
/// JSON object with `sent_at` first.
pub fn stamped(body: &str, sent_at: u64) -> String {
    let mut s = String::with_capacity(body.len() + SENT_AT_BYTES);
    s.push_str(SENT_AT_HEAD);
    push_u64(&mut s, sent_at);
    s.push(',');
    s.push_str(body.get(1..).unwrap_or_default());
    s
}

impl Batch {
    /// A batch from a stored body, or `None` when the body is not one the
    /// SDK formed.
    pub fn from_body(body: &str, now: f64) -> Option<Batch> {
        let rest = body
            .strip_prefix(BODY_HEAD)
            .or_else(|| body.strip_prefix(WEBDRIVER_BODY_HEAD))?;
        let id = split_ascii(rest, b'"').next()?;
        let ok = valid_id(id, MAX_BATCH_OR_EVENT_ID_BYTES)
            && rest.get(id.len()..)?.starts_with(BODY_MID)
            && body.ends_with(BODY_TAIL)
            && body.len() <= MAX_BODY_BYTES
            && !body.bytes().any(|b| b == b'\n');
        ok.then(|| Batch::new(id.into(), body.into(), now))
    }

    fn new(id: String, body: String, now: f64) -> Batch {
        Batch {
            newest_ts: newest_ts(&body),
            id,
            body,
            attempts: 0,
            due: now,
            in_flight: false,
            beaconed: false,
        }
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

/// Parses a `Retry-After` of delta seconds into milliseconds (HTTP's
/// whitespace is ASCII).
pub fn parse_retry_after_seconds(value: &str) -> Option<f64> {
    let v = value.trim_ascii();
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

/// One event waiting for a batch.
#[derive(Debug)]
struct Pending {
    json: String,
    /// Its ad's or post's id; `post` tells which namespace.
    ad_id: String,
    post: bool,
}

/// The event queue and the formed batches of one tracker.
#[derive(Debug)]
pub struct Queue {
    max_events: usize,
    /// The head of every batch this queue forms.
    body_head: &'static str,
    pending: Vec<Pending>,
    batches: Vec<Batch>,
    /// Nothing is sent before this time (monotonic ms): the edge's
    /// `Retry-After` holds for every batch, not only the one it answered.
    paused_until: f64,
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
            paused_until: f64::NEG_INFINITY,
        }
    }

    /// Queues one event (its wire JSON, made by [`event_json`], and the id
    /// of its ad, or of its post when `post`); true when a batch is full
    /// and should be formed and sent now.
    pub fn push(&mut self, event_json: String, ad_id: &str, post: bool) -> bool {
        self.pending.push(Pending {
            json: event_json,
            ad_id: ad_id.into(),
            post,
        });
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

    /// Forms batches of every pending event, in order, each within the
    /// event, byte and distinct-id limits of the edge (ads and posts
    /// together, each in its own namespace), with ids from
    /// `new_id`. Returns how many were formed. When more than
    /// [`MAX_QUEUED_BATCHES`] or [`MAX_QUEUED_BYTES`] wait, the oldest not
    /// in flight are dropped.
    pub fn seal(&mut self, now: f64, mut new_id: impl FnMut() -> String) -> usize {
        let mut formed = 0;
        let pending = core::mem::take(&mut self.pending);
        let mut events = pending.iter().peekable();
        while events.peek().is_some() {
            let id = new_id();
            let mut body = String::with_capacity(1024);
            body.push_str(self.body_head);
            body.push_str(&id);
            body.push_str(BODY_MID);
            let mut count = 0;
            let mut ads: Vec<(&str, bool)> = Vec::new();
            while let Some(next) = events.peek() {
                let extra = next.json.len() + usize::from(count > 0);
                let new_ad = !ads.contains(&(next.ad_id.as_str(), next.post));
                let full = count >= self.max_events
                    || (new_ad && ads.len() >= MAX_AD_IDS_PER_BATCH)
                    || (count > 0
                        && body.len() + extra + BODY_TAIL.len() + SENT_AT_BYTES > MAX_BATCH_BYTES);
                if full {
                    break;
                }
                if count > 0 {
                    body.push(',');
                }
                body.push_str(&next.json);
                if new_ad {
                    ads.push((&next.ad_id, next.post));
                }
                count += 1;
                events.next();
            }
            body.push_str(BODY_TAIL);
            self.batches.push(Batch::new(id, body, now));
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
        let mut bytes: usize = self.batches.iter().map(|b| b.body.len()).sum();
        while self.batches.len() > MAX_QUEUED_BATCHES || bytes > MAX_QUEUED_BYTES {
            match self.batches.iter().position(|b| !b.in_flight) {
                Some(i) => bytes -= self.batches.remove(i).body.len(),
                None => break,
            }
        }
    }

    /// Drops the batches not in flight whose every event is older than the
    /// edge accepts at `now_epoch_ms` (the client's clock, which is the one
    /// the edge judges ages by once it corrected for `sent_at`); returns
    /// how many.
    pub fn expire(&mut self, now_epoch_ms: u64) -> usize {
        let before = self.batches.len();
        let oldest_accepted = now_epoch_ms.saturating_sub(MAX_EVENT_AGE_MS as u64);
        self.batches
            .retain(|b| b.in_flight || b.newest_ts >= oldest_accepted);
        before - self.batches.len()
    }

    /// Whether a `Retry-After` holds every batch back at `now`.
    fn paused(&self, now: f64) -> bool {
        now < self.paused_until
    }

    /// The next batch due by `now` and not in flight, as sent at
    /// `now_epoch_ms`; marks it in flight.
    pub fn take_due(&mut self, now: f64, now_epoch_ms: u64) -> Option<(String, String)> {
        if self.paused(now) {
            return None;
        }
        let b = self
            .batches
            .iter_mut()
            .find(|b| !b.in_flight && b.due <= now)?;
        b.in_flight = true;
        b.beaconed = false;
        Some((b.id.clone(), stamped(&b.body, now_epoch_ms)))
    }

    /// Makes every waiting batch due at `now` (an explicit flush); a
    /// `Retry-After` still holds.
    pub fn hurry(&mut self, now: f64) {
        for b in &mut self.batches {
            b.due = b.due.min(now);
        }
    }

    /// The earliest time a batch not in flight may be sent.
    pub fn next_due(&self) -> Option<f64> {
        self.batches
            .iter()
            .filter(|b| !b.in_flight)
            .map(|b| b.due)
            .reduce(f64::min)
            .map(|due| due.max(self.paused_until))
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
                if let Some(ms) = after.filter(|ms| ms.is_finite()) {
                    let until = now + ms.clamp(0.0, RETRY_AFTER_CAP_MS);
                    self.paused_until = self.paused_until.max(until);
                }
                let b = &mut self.batches[i];
                b.in_flight = false;
                b.attempts = b.attempts.saturating_add(1);
                b.due = now + backoff(b.attempts, after, random);
                false
            }
        }
    }

    /// Forgets every batch, in flight or not (another tab took them over);
    /// the events not yet in a batch stay.
    pub fn forget_batches(&mut self) {
        self.batches.clear();
    }

    /// The batches to hand to `sendBeacon` as the page hides, as sent at
    /// `now_epoch_ms`: the waiting ones not beaconed already (a
    /// `visibilitychange` and the `pagehide` after it beacon each batch
    /// once), oldest first, while they fit in the shared quota; none while a
    /// `Retry-After` holds (they stay stored). They are marked to be
    /// rechecked after [`BEACON_RECHECK_MS`].
    pub fn beacon_plan(&mut self, now: f64, now_epoch_ms: u64) -> Vec<(String, String)> {
        let mut budget = BEACON_QUOTA_BYTES;
        let mut plan = Vec::new();
        if self.paused(now) {
            return plan;
        }
        for b in &mut self.batches {
            if b.in_flight || b.beaconed {
                continue;
            }
            let body = stamped(&b.body, now_epoch_ms);
            if body.len() > budget {
                continue;
            }
            budget -= body.len();
            b.due = now + BEACON_RECHECK_MS;
            b.beaconed = true;
            plan.push((b.id.clone(), body));
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
/// An iterator, for [`Queue::adopt`] to take: collecting it into a `Vec`
/// would compile a collection of its own into the wasm.
pub fn decode(stored: &str, now: f64) -> impl Iterator<Item = Batch> + '_ {
    split_ascii(stored, b'\n').filter_map(move |line| Batch::from_body(line, now))
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
            post: false,
            kind,
            verified,
            audible: false,
        }
    }

    /// The client's clock during these tests, epoch ms.
    const T0: u64 = 1_764_000_100_000;

    fn ev(i: u64, user: &str) -> String {
        let mut s = String::new();
        event_json(
            &format!("e{i}"),
            &imp("ad-42", Kind::Viewable, false),
            None,
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
        q.push(ev(1, "u1"), "ad-42", false);
        q.push(ev(2, "u1"), "ad-42", false);
        assert_eq!(q.seal(0.0, ids()), 1);
        let body = &q.batches()[0].body;
        let batch = glimpse_wire::ingest::decode_batch(body.as_bytes()).unwrap();
        assert_eq!(batch.batch_id, "b1");
        assert_eq!(batch.events.len(), 2);
        let e = glimpse_wire::ingest::validate_event(batch.events[1], 1_764_000_000_000).unwrap();
        assert_eq!(
            (&*e.id, e.ad_id(), &*e.user_id),
            ("e2", Some("ad-42"), "u1")
        );
        assert_eq!(e.kind, glimpse_wire::Kind::Viewable);
        assert_eq!(e.ts, 1_764_000_000_002);
        let mut m = String::new();
        event_json(
            "x",
            &imp("a", Kind::Measurable, false),
            None,
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
            None,
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
    fn an_ad_event_names_its_campaign_when_the_slot_has_one() {
        let mut m = String::new();
        event_json(
            "x",
            &imp("a", Kind::Viewable, false),
            Some("acme-fall-run"),
            "u",
            0,
            Some("9.ab"),
            &mut m,
        );
        assert_eq!(
            m,
            r#"{"id":"x","ad_id":"a","campaign_id":"acme-fall-run","user_id":"u","kind":"viewable","ts":0,"token":"9.ab"}"#
        );
        let body = format!(r#"{{"batch_id":"b","events":[{m}]}}"#);
        let batch = glimpse_wire::ingest::decode_batch(body.as_bytes()).unwrap();
        let e = glimpse_wire::ingest::validate_event(batch.events[0], 0).unwrap();
        assert_eq!(
            (e.ad_id(), e.campaign_id.as_deref(), e.token.as_deref()),
            (Some("a"), Some("acme-fall-run"), Some("9.ab"))
        );
    }

    #[test]
    fn post_and_video_events_on_the_wire() {
        let mut m = String::new();
        let post = Impression {
            post: true,
            ..imp("p-1", Kind::Viewable, false)
        };
        event_json("x", &post, None, "u", 0, None, &mut m);
        assert_eq!(
            m,
            r#"{"id":"x","post_id":"p-1","user_id":"u","kind":"viewable","ts":0}"#
        );
        m.clear();
        let audible = Impression {
            audible: true,
            ..imp("v", Kind::Viewable, false)
        };
        event_json("x", &audible, None, "u", 0, None, &mut m);
        assert_eq!(
            m,
            r#"{"id":"x","ad_id":"v","user_id":"u","kind":"viewable","ts":0,"audible":true}"#
        );
        for (kind, name) in [
            (Kind::VideoStart, "video_start"),
            (Kind::VideoQ25, "video_q25"),
            (Kind::VideoQ50, "video_q50"),
            (Kind::VideoQ75, "video_q75"),
            (Kind::VideoComplete, "video_complete"),
        ] {
            m.clear();
            event_json("x", &imp("v", kind, false), None, "u", 0, None, &mut m);
            let want = format!(r#"{{"id":"x","ad_id":"v","user_id":"u","kind":"{name}","ts":0}}"#);
            assert_eq!(m, want);
        }
    }

    #[test]
    fn posts_and_ads_count_together_towards_the_distinct_id_limit() {
        let event = |id: &str, post: bool| {
            let mut s = String::new();
            let i = Impression {
                post,
                ..imp(id, Kind::Measurable, false)
            };
            event_json("e", &i, None, "u", 0, None, &mut s);
            s
        };
        let mut q = Queue::new(500, false);
        for n in 0..MAX_AD_IDS_PER_BATCH / 2 {
            let id = format!("x-{n}");
            // The ad and the post of one id are two things.
            q.push(event(&id, false), &id, false);
            q.push(event(&id, true), &id, true);
        }
        assert_eq!(q.seal(0.0, ids()), 1);
        q.push(event("x-0", false), "x-0", false);
        q.push(event("x-0", true), "x-0", true);
        q.push(event("last", true), "last", true);
        q.push(event("x-1", true), "x-1", true);
        assert_eq!(q.seal(0.0, ids()), 1, "four events, three ids");
        let mut q = Queue::new(500, false);
        for n in 0..MAX_AD_IDS_PER_BATCH {
            let id = format!("x-{n}");
            q.push(event(&id, n % 2 == 0), &id, n % 2 == 0);
        }
        q.push(event("x-0", false), "x-0", false);
        assert_eq!(q.seal(0.0, ids()), 2, "ad x-0 is the 51st id");
    }

    #[test]
    fn a_driven_browser_says_webdriver_in_every_body() {
        let mut q = Queue::new(1, true);
        q.push(ev(1, "u1"), "ad-42", false);
        q.push(ev(2, "u1"), "ad-42", false);
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
        let back: Vec<Batch> = decode(&stored, 0.0).collect();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].body, q.batches()[0].body);
        // A browser not driven by a program sends no such field.
        let mut q = Queue::new(50, false);
        q.push(ev(1, "u1"), "ad-42", false);
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
        assert!(!q.push(ev(1, "u"), "ad-42", false));
        assert!(!q.push(ev(2, "u"), "ad-42", false));
        assert!(q.push(ev(3, "u"), "ad-42", false));
        assert_eq!(q.pending(), 3);
        q.seal(0.0, ids());
        assert_eq!(q.pending(), 0);
        assert_eq!(q.seal(0.0, ids()), 0, "nothing pending, no empty batch");
    }

    #[test]
    fn batches_split_by_count_and_bytes() {
        let mut q = Queue::new(2, false);
        for i in 0..5 {
            q.push(ev(i, "u"), "ad-42", false);
        }
        assert_eq!(q.seal(0.0, ids()), 3);
        // Big events: the byte limit splits before the count limit.
        let mut q = Queue::new(500, false);
        let user = "u".repeat(128);
        for i in 0..500 {
            q.push(ev(i, &user), "ad-42", false);
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
        q.push(ev(1, "u"), "ad-42", false);
        q.seal(0.0, ids());
        let (id, body) = q.take_due(0.0, T0).unwrap();
        assert!(q.take_due(0.0, T0).is_none(), "in flight");
        assert!(!q.settle(&id, Outcome::Retry(None), 100.0, 0.0));
        assert_eq!(q.next_due(), Some(600.0));
        assert!(q.take_due(599.0, T0).is_none());
        let (id2, body2) = q.take_due(600.0, T0).unwrap();
        assert_eq!((id2.as_str(), body2.as_str()), (id.as_str(), body.as_str()));
        assert!(!q.settle(&id, Outcome::Retry(None), 1000.0, 1.0));
        q.hurry(1500.0);
        let _ = q.take_due(1500.0, T0).unwrap();
        assert!(q.settle(&id, Outcome::Ack, 2100.0, 0.5));
        assert!(q.batches().is_empty());
        assert!(
            !q.settle(&id, Outcome::Ack, 2100.0, 0.5),
            "unknown ids are ignored"
        );
    }

    /// Decodes a body as the edge would.
    fn decoded(body: &str) -> (Option<i64>, usize) {
        let b = glimpse_wire::ingest::decode_batch(body.as_bytes()).unwrap();
        (b.sent_at, b.events.len())
    }

    #[test]
    fn every_attempt_says_when_it_was_sent() {
        let mut q = Queue::new(50, true);
        q.push(ev(1, "u"), "ad-42", false);
        q.seal(0.0, ids());
        let stored = q.encode();
        assert!(!stored.contains("sent_at"), "{stored}");
        let (id, body) = q.take_due(0.0, T0).unwrap();
        assert_eq!(decoded(&body), (Some(T0 as i64), 1));
        assert!(body.starts_with(r#"{"sent_at":1764000100000,"webdriver":true,"batch_id":"b1""#));
        q.settle(&id, Outcome::Retry(None), 0.0, 0.0);
        // The retry, 7 s later by the client's clock.
        let (_, again) = q.take_due(10_000.0, T0 + 7_000).unwrap();
        assert_eq!(decoded(&again), (Some(T0 as i64 + 7_000), 1));
        assert_eq!(q.encode(), stored, "what is stored never changes");
        q.settle(&id, Outcome::Retry(None), 10_000.0, 0.0);
        let plan = q.beacon_plan(10_000.0, T0 + 9_000);
        assert_eq!(decoded(&plan[0].1), (Some(T0 as i64 + 9_000), 1));
        // Read back from storage, a batch is the same.
        let back: Vec<Batch> = decode(&stored, 0.0).collect();
        assert_eq!(back[0].body, q.batches()[0].body);
        assert_eq!(back[0].newest_ts, 1_764_000_000_001);
    }

    #[test]
    fn retry_after_pauses_the_whole_queue() {
        let mut q = Queue::new(1, false);
        for i in 0..3 {
            q.push(ev(i, "u"), "ad-42", false);
        }
        q.seal(0.0, ids());
        let (id, _) = q.take_due(0.0, T0).unwrap();
        assert!(!q.settle(&id, Outcome::Retry(Some(30_000.0)), 1_000.0, 0.0));
        // The other batches were due, and wait too; a flush does not
        // overrule the edge, nor does the page hiding.
        q.hurry(2_000.0);
        assert!(q.take_due(2_000.0, T0).is_none());
        assert!(q.beacon_plan(2_000.0, T0).is_empty());
        assert_eq!(q.next_due(), Some(31_000.0));
        let (first, _) = q.take_due(31_000.0, T0).unwrap();
        assert_eq!(first, "b1", "oldest first, as before the pause");
        // Without Retry-After only the batch itself backs off.
        assert!(!q.settle(&first, Outcome::Retry(None), 31_000.0, 0.0));
        assert!(q.take_due(31_000.0, T0).is_some());
        // A longer pause never shortens an earlier one.
        let mut q = Queue::new(1, false);
        q.push(ev(1, "u"), "ad-42", false);
        q.push(ev(2, "u"), "ad-42", false);
        q.seal(0.0, ids());
        let (a, _) = q.take_due(0.0, T0).unwrap();
        q.settle(&a, Outcome::Retry(Some(60_000.0)), 0.0, 0.0);
        q.settle("b2", Outcome::Retry(Some(1_000.0)), 0.0, 0.0);
        assert!(q.take_due(59_999.0, T0).is_none());
    }

    #[test]
    fn a_batch_the_edge_would_refuse_as_too_old_is_dropped() {
        let mut q = Queue::new(1, false);
        q.push(ev(1, "u"), "ad-42", false); // ts 1_764_000_000_001
        q.push(ev(5, "u"), "ad-42", false); // ts 1_764_000_000_005
        q.seal(0.0, ids());
        let max_age = MAX_EVENT_AGE_MS as u64;
        assert_eq!(q.expire(1_764_000_000_001 + max_age), 0, "48 h old exactly");
        assert_eq!(q.expire(1_764_000_000_002 + max_age), 1);
        assert_eq!(q.batches().len(), 1);
        assert_eq!(q.batches()[0].id, "b2");
        // One in flight is left for its answer to settle.
        let _ = q.take_due(0.0, T0).unwrap();
        assert_eq!(q.expire(u64::MAX), 0);
        // A batch is as young as its newest event.
        let mut q = Queue::new(50, false);
        q.push(ev(1, "u"), "ad-42", false);
        q.push(ev(9, "u"), "ad-42", false);
        q.seal(0.0, ids());
        assert_eq!(q.batches()[0].newest_ts, 1_764_000_000_009);
        assert_eq!(q.expire(1_764_000_000_008 + max_age), 0);
    }

    #[test]
    fn a_batch_names_at_most_the_edge_limit_of_ads() {
        let event = |i: usize, ad: &str| {
            let mut s = String::new();
            event_json(
                &format!("e{i}"),
                &imp(ad, Kind::Viewable, false),
                None,
                "u",
                1_764_000_000_000,
                None,
                &mut s,
            );
            s
        };
        // 100 ads in view at once, each measurable and then viewable, in
        // one flush of up to 500 events.
        let mut q = Queue::new(500, false);
        for kind in 0..2 {
            for ad in 0..100 {
                let ad = format!("ad-{ad}");
                q.push(event(kind * 100 + 1, &ad), &ad, false);
            }
        }
        assert_eq!(q.seal(0.0, ids()), 4);
        let mut total = 0;
        for b in q.batches() {
            let batch = glimpse_wire::ingest::decode_batch(b.body.as_bytes()).unwrap();
            let events: Vec<_> = batch
                .events
                .iter()
                .map(|e| glimpse_wire::ingest::validate_event(e, 1_764_000_000_000).unwrap())
                .collect();
            glimpse_wire::ingest::check_distinct_ads(&events).unwrap();
            assert_eq!(events.len(), MAX_AD_IDS_PER_BATCH);
            total += events.len();
        }
        assert_eq!(total, 200);
        // Events of ads already in the batch still join it.
        let mut q = Queue::new(500, false);
        for i in 0..300 {
            let ad = format!("ad-{}", i % 50);
            q.push(event(i, &ad), &ad, false);
        }
        assert_eq!(q.seal(0.0, ids()), 1);
        q.push(event(300, "ad-50"), "ad-50", false);
        q.push(event(301, "ad-0"), "ad-0", false);
        assert_eq!(q.seal(0.0, ids()), 1, "a new batch for the 51st ad");
    }

    #[test]
    fn the_queue_is_bounded_in_bytes() {
        let mut q = Queue::new(500, false);
        let user = "u".repeat(128);
        for i in 0..3_000 {
            q.push(ev(i, &user), "ad-42", false);
        }
        let formed = q.seal(0.0, ids());
        let bytes: usize = q.batches().iter().map(|b| b.body.len()).sum();
        assert!(bytes <= MAX_QUEUED_BYTES, "{bytes}");
        assert!(q.batches().len() < formed, "the oldest went");
        assert!(q.encode().len() <= MAX_QUEUED_BYTES + q.batches().len());
        let last = &q.batches()[q.batches().len() - 1];
        assert!(last.body.contains(r#""id":"e2999""#), "the newest stay");
    }

    #[test]
    fn a_beaconed_batch_is_not_beaconed_again() {
        let mut q = Queue::new(1, false);
        let mut new_id = ids();
        q.push(ev(1, "u"), "ad-42", false);
        q.seal(0.0, &mut new_id);
        // `visibilitychange` to hidden, then `pagehide`.
        assert_eq!(q.beacon_plan(0.0, T0).len(), 1);
        assert!(q.beacon_plan(5.0, T0).is_empty());
        // A batch formed in between goes, alone.
        q.push(ev(2, "u"), "ad-42", false);
        q.seal(6.0, &mut new_id);
        let plan = q.beacon_plan(7.0, T0);
        assert_eq!(
            plan.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
            ["b2"]
        );
        // Should the page live on, the recheck sends it by fetch; hidden
        // again later, it may be beaconed once more.
        let (id, _) = q.take_due(BEACON_RECHECK_MS, T0).unwrap();
        q.settle(&id, Outcome::Retry(None), BEACON_RECHECK_MS, 0.0);
        let plan = q.beacon_plan(BEACON_RECHECK_MS + 1.0, T0);
        assert!(plan.iter().any(|(p, _)| *p == id), "{plan:?}");
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
        q.push(ev(1, "u"), "ad-42", false);
        q.push(ev(2, "u"), "ad-42", false);
        q.seal(0.0, ids());
        let stored = q.encode();
        let back: Vec<Batch> = decode(
            &(stored.clone() + "\ngarbage\n{\"batch_id\":\"a b\",\"events\":[]}"),
            5.0,
        )
        .collect();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].body, q.batches()[0].body);
        assert_eq!(back[1].id, "b2");
        let mut other = Queue::new(50, false);
        assert_eq!(other.adopt(back.clone()), 2);
        assert_eq!(other.adopt(back), 0, "adopting twice adds nothing");
        other.push(ev(3, "u"), "ad-42", false);
        other.forget_batches();
        assert!(other.batches().is_empty());
        assert_eq!(other.pending(), 1, "events not yet in a batch stay");
        other.clear();
        assert!(other.encode().is_empty());
        assert_eq!(decode("", 0.0).count(), 0);
    }

    #[test]
    fn the_queue_is_capped() {
        let mut q = Queue::new(1, false);
        for i in 0..(MAX_QUEUED_BATCHES as u64 + 10) {
            q.push(ev(i, "u"), "ad-42", false);
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
            q.push(ev(i, &user), "ad-42", false);
        }
        let formed = q.seal(0.0, ids());
        assert!(formed >= 3);
        let _ = q.take_due(0.0, T0).unwrap(); // one is in flight by fetch already
        let plan = q.beacon_plan(10.0, T0);
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
