//! Decoding and validating `POST /v1/impressions` bodies.
//!
//! Two levels, as the contract asks: [`decode_batch`] refuses a body as a whole
//! (not JSON, no usable `batch_id` or `events`), and [`validate_event`] judges
//! each event on its own, so one bad event never costs its valid siblings.
//! Events stay raw JSON until they are validated one by one.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use crate::day::Day;

/// Largest accepted body, in bytes (a body of exactly this size is allowed).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most events in one batch.
pub const MAX_EVENTS_PER_BATCH: usize = 500;
/// Most distinct `ad_id`s among the valid events of one batch. A page holds a
/// handful of ads; a batch naming many is fabricated and would fill the store
/// with keys.
pub const MAX_AD_IDS_PER_BATCH: usize = 50;
/// `ad_id` and `user_id` are 1..=128 bytes.
pub const MAX_AD_OR_USER_ID_BYTES: usize = 128;
/// `batch_id` and event `id` are 1..=64 bytes.
pub const MAX_BATCH_OR_EVENT_ID_BYTES: usize = 64;
/// An event may be at most this old when it arrives.
pub const MAX_EVENT_AGE_MS: i64 = 48 * 3_600_000;
/// An event may be at most this far ahead of the server's clock.
pub const MAX_EVENT_LEAD_MS: i64 = 5 * 60_000;

/// What an event reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The impression met the viewability rule.
    Viewable,
    /// The impression was rendered and measured, viewable or not.
    Measurable,
}

/// Why a whole batch was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchError {
    /// The body is not JSON (or not UTF-8).
    NotJson(String),
    /// The body is JSON but not an object.
    NotAnObject,
    /// `batch_id` is missing or not a valid id.
    BatchId(String),
    /// `events` is missing, not an array, or empty.
    Events(&'static str),
    /// More events than [`MAX_EVENTS_PER_BATCH`].
    TooManyEvents(usize),
    /// More distinct ad ids than [`MAX_AD_IDS_PER_BATCH`].
    TooManyAds(usize),
    /// `webdriver` is present but not `true` or `false`.
    Webdriver,
}

impl BatchError {
    /// The machine-readable code of the JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            BatchError::NotJson(_) => "invalid_json",
            BatchError::NotAnObject => "not_an_object",
            BatchError::BatchId(_) => "invalid_batch_id",
            BatchError::Events(_) => "invalid_events",
            BatchError::TooManyEvents(_) => "too_many_events",
            BatchError::TooManyAds(_) => "too_many_ads",
            BatchError::Webdriver => "invalid_webdriver",
        }
    }
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchError::NotJson(why) => write!(f, "the body is not valid JSON: {why}"),
            BatchError::NotAnObject => f.write_str("the body must be a JSON object"),
            BatchError::BatchId(why) => write!(f, "`batch_id` {why}"),
            BatchError::Events(why) => write!(f, "`events` {why}"),
            BatchError::TooManyEvents(n) => write!(
                f,
                "`events` holds {n} events; at most {MAX_EVENTS_PER_BATCH} are allowed per batch"
            ),
            BatchError::TooManyAds(n) => write!(
                f,
                "the valid events name {n} distinct `ad_id`s; at most {MAX_AD_IDS_PER_BATCH} are allowed per batch"
            ),
            BatchError::Webdriver => f.write_str("`webdriver` must be true or false when present"),
        }
    }
}

impl std::error::Error for BatchError {}

/// A batch whose envelope is valid; its events are not validated yet.
#[derive(Debug)]
pub struct Batch<'a> {
    pub batch_id: String,
    pub events: Vec<&'a RawValue>,
    /// The page's `navigator.webdriver`, as the SDK reported it: the browser
    /// is driven by a program. `false` when the field is absent.
    pub webdriver: bool,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    batch_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    events: Option<Events<'a>>,
    #[serde(default)]
    webdriver: Flag,
}

/// An optional boolean member, read in the same pass as the rest of the
/// envelope. Not an `Option<bool>`: serde would take `null` for "absent",
/// and the contract wants anything but `true` and `false` refused.
#[derive(Default)]
enum Flag {
    #[default]
    Absent,
    Bool(bool),
    NotABool,
}

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FlagVisitor)
    }
}

struct FlagVisitor;

impl<'de> Visitor<'de> for FlagVisitor {
    type Value = Flag;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("true or false")
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
        Ok(Flag::Bool(b))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Flag::NotABool)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Flag::NotABool)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Flag::NotABool)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Flag::NotABool)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Flag::NotABool)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Flag::NotABool)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Flag::NotABool)
    }
}

/// The `events` member, split into its elements' raw JSON in the same pass
/// over the body as the envelope (each event is parsed once more, alone, by
/// [`validate_event`]), or noted as not being an array.
enum Events<'a> {
    Array(Vec<&'a RawValue>),
    NotAnArray,
}

impl<'de: 'a, 'a> Deserialize<'de> for Events<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(EventsVisitor(PhantomData))
    }
}

struct EventsVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for EventsVisitor<'a> {
    type Value = Events<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut events = Vec::with_capacity(64);
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            events.push(raw);
        }
        Ok(Events::Array(events))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Events::NotAnArray)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Events::NotAnArray)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Events::NotAnArray)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Events::NotAnArray)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Events::NotAnArray)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Events::NotAnArray)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Events::NotAnArray)
    }
}

/// Decodes the envelope of a batch body.
pub fn decode_batch(body: &[u8]) -> Result<Batch<'_>, BatchError> {
    let envelope: Envelope<'_> = serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => BatchError::NotAnObject,
        // Serde reads an array as a struct's fields in order and then trips
        // over the third element; the body is not an object either way.
        _ if first_byte(body) == Some(b'[') => BatchError::NotAnObject,
        _ => BatchError::NotJson(e.to_string()),
    })?;
    // Serde also fills a struct from an array; the contract wants an object.
    if first_byte(body) != Some(b'{') {
        return Err(BatchError::NotAnObject);
    }
    let batch_id = match envelope.batch_id {
        None => return Err(BatchError::BatchId("is missing".into())),
        Some(raw) => match serde_json::from_str::<String>(raw.get()) {
            Ok(id) => id,
            Err(_) => return Err(BatchError::BatchId("must be a string".into())),
        },
    };
    check_id(&batch_id, MAX_BATCH_OR_EVENT_ID_BYTES).map_err(BatchError::BatchId)?;
    let events = match envelope.events {
        None => return Err(BatchError::Events("is missing")),
        Some(Events::NotAnArray) => return Err(BatchError::Events("must be an array")),
        Some(Events::Array(events)) => events,
    };
    if events.is_empty() {
        return Err(BatchError::Events("must not be empty"));
    }
    if events.len() > MAX_EVENTS_PER_BATCH {
        return Err(BatchError::TooManyEvents(events.len()));
    }
    let webdriver = match envelope.webdriver {
        Flag::Absent => false,
        Flag::Bool(b) => b,
        Flag::NotABool => return Err(BatchError::Webdriver),
    };
    Ok(Batch {
        batch_id,
        events,
        webdriver,
    })
}

fn first_byte(body: &[u8]) -> Option<u8> {
    body.iter().copied().find(|b| !b.is_ascii_whitespace())
}

/// One valid event, with the day it counts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event<'a> {
    pub id: Cow<'a, str>,
    pub ad_id: Cow<'a, str>,
    pub user_id: Cow<'a, str>,
    pub kind: Kind,
    pub ts: i64,
    pub day: Day,
    /// The ad's signature (`data-ad-token`), when the client sent one; only
    /// an edge that requires signed ads looks at it.
    pub token: Option<Cow<'a, str>>,
}

/// Refuses a batch whose valid events name more than
/// [`MAX_AD_IDS_PER_BATCH`] distinct ad ids.
pub fn check_distinct_ads(events: &[Event<'_>]) -> Result<(), BatchError> {
    if events.len() <= MAX_AD_IDS_PER_BATCH {
        return Ok(());
    }
    let distinct: std::collections::HashSet<&str> =
        events.iter().map(|e| e.ad_id.as_ref()).collect();
    if distinct.len() > MAX_AD_IDS_PER_BATCH {
        return Err(BatchError::TooManyAds(distinct.len()));
    }
    Ok(())
}

/// Why one event was rejected; its `Display` is the reason sent back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventError {
    code: &'static str,
    message: String,
}

impl EventError {
    pub fn new(code: &'static str, msg: impl Into<String>) -> Self {
        EventError {
            code,
            message: msg.into(),
        }
    }

    /// The category of the rejection, one of a fixed few (for metrics):
    /// `invalid_event` (not an object, a field missing or of the wrong type),
    /// `invalid_id` (an id outside the alphabet or too long),
    /// `ts_out_of_window`, or, from an edge that requires signed ads,
    /// `invalid_token`.
    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for EventError {}

#[derive(Deserialize)]
struct EventFields<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    ad_id: Cow<'a, str>,
    #[serde(borrow)]
    user_id: Cow<'a, str>,
    kind: Kind,
    ts: i64,
    #[serde(borrow, default)]
    token: Option<Cow<'a, str>>,
}

/// Validates one raw event against the contract; `now_ms` is the server clock.
pub fn validate_event(raw: &RawValue, now_ms: i64) -> Result<Event<'_>, EventError> {
    let fields: EventFields<'_> = serde_json::from_str(raw.get()).map_err(|e| {
        let msg = e.to_string();
        // serde_json appends the position inside the event, which means
        // nothing to a caller who sees the event's index instead.
        let msg = msg.split(" at line ").next().unwrap_or(&msg);
        EventError::new("invalid_event", msg)
    })?;
    let field = |name: &str, value: &str, max: usize| {
        check_id(value, max).map_err(|why| EventError::new("invalid_id", format!("`{name}` {why}")))
    };
    field("id", &fields.id, MAX_BATCH_OR_EVENT_ID_BYTES)?;
    field("ad_id", &fields.ad_id, MAX_AD_OR_USER_ID_BYTES)?;
    field("user_id", &fields.user_id, MAX_AD_OR_USER_ID_BYTES)?;
    let day = day_bucket(fields.ts, now_ms)?;
    Ok(Event {
        id: fields.id,
        ad_id: fields.ad_id,
        user_id: fields.user_id,
        kind: fields.kind,
        ts: fields.ts,
        day,
        token: fields.token,
    })
}

/// The UTC day an event with timestamp `ts` counts on, when `ts` lies in the
/// accepted window around `now_ms`.
pub fn day_bucket(ts: i64, now_ms: i64) -> Result<Day, EventError> {
    if ts < now_ms.saturating_sub(MAX_EVENT_AGE_MS) {
        return Err(EventError::new(
            "ts_out_of_window",
            format!("`ts` {ts} is more than 48 h before the server time {now_ms}"),
        ));
    }
    if ts > now_ms.saturating_add(MAX_EVENT_LEAD_MS) {
        return Err(EventError::new(
            "ts_out_of_window",
            format!("`ts` {ts} is more than 5 min after the server time {now_ms}"),
        ));
    }
    Day::from_epoch_ms(ts)
        .ok_or_else(|| EventError::new("ts_out_of_window", format!("`ts` {ts} is before 1970")))
}

/// Checks an id: 1..=`max` bytes of `[A-Za-z0-9._:-]`. The message completes
/// a sentence that starts with the field's name.
pub fn check_id(id: &str, max: usize) -> Result<(), String> {
    if id.is_empty() {
        return Err("must not be empty".into());
    }
    if id.len() > max {
        return Err(format!(
            "is {} bytes long; at most {max} are allowed",
            id.len()
        ));
    }
    match id.bytes().position(|b| !ID_BYTES[usize::from(b)]) {
        None => Ok(()),
        Some(at) => Err(format!(
            "has a character outside [A-Za-z0-9._:-] at byte {at}"
        )),
    }
}

/// Whether `b` may appear in an id.
pub const fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')
}

/// [`is_id_byte`] as a table: one load per byte in [`check_id`], the
/// per-byte check every event pays three times.
static ID_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = is_id_byte(b as u8);
        b += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_000_000_000;

    fn event_json(fields: &str) -> Box<RawValue> {
        RawValue::from_string(format!("{{{fields}}}")).unwrap()
    }

    fn good() -> String {
        format!(r#""id":"e1","ad_id":"ad-42","user_id":"u.1:x_y","kind":"viewable","ts":{NOW}"#)
    }

    #[test]
    fn accepts_a_valid_batch() {
        let body = format!(
            r#"{{"batch_id":"b-1","events":[{{{}}}],"extra":1}}"#,
            good()
        );
        let batch = decode_batch(body.as_bytes()).unwrap();
        assert_eq!(batch.batch_id, "b-1");
        let event = validate_event(batch.events[0], NOW).unwrap();
        assert_eq!(event.ad_id, "ad-42");
        assert_eq!(event.kind, Kind::Viewable);
        assert_eq!(event.day.to_string(), "2025-11-24");
    }

    #[test]
    fn refuses_bad_envelopes_with_a_code() {
        let cases: &[(&str, &str)] = &[
            ("", "invalid_json"),
            ("{", "invalid_json"),
            ("{\"batch_id\":\"b\",\"events\":[{}]} x", "invalid_json"),
            ("[1,2]", "not_an_object"),
            ("[1,2,3]", "not_an_object"),
            (" [[[", "not_an_object"),
            ("\"text\"", "not_an_object"),
            ("null", "not_an_object"),
            (r#"{"events":[{}]}"#, "invalid_batch_id"),
            (r#"{"batch_id":7,"events":[{}]}"#, "invalid_batch_id"),
            (r#"{"batch_id":null,"events":[{}]}"#, "invalid_batch_id"),
            (r#"{"batch_id":"","events":[{}]}"#, "invalid_batch_id"),
            (r#"{"batch_id":"a b","events":[{}]}"#, "invalid_batch_id"),
            (r#"{"batch_id":"b"}"#, "invalid_events"),
            (r#"{"batch_id":"b","events":{}}"#, "invalid_events"),
            (r#"{"batch_id":"b","events":null}"#, "invalid_events"),
            (r#"{"batch_id":"b","events":[]}"#, "invalid_events"),
        ];
        for (body, code) in cases {
            let err = decode_batch(body.as_bytes()).unwrap_err();
            assert_eq!(err.code(), *code, "{body:?}: {err}");
            assert!(!err.to_string().is_empty());
        }
        let long_id = "x".repeat(65);
        let body = format!(r#"{{"batch_id":"{long_id}","events":[{{}}]}}"#);
        assert_eq!(
            decode_batch(body.as_bytes()).unwrap_err().code(),
            "invalid_batch_id"
        );
    }

    #[test]
    fn events_that_are_not_an_array_are_refused_alone() {
        for events in [
            "{}",
            r#"{"a":[1,{"b":2}]}"#,
            "1",
            "-1",
            "1.5",
            "true",
            "\"x\"",
        ] {
            let body = format!(r#"{{"batch_id":"b","events":{events},"extra":[1]}}"#);
            assert_eq!(
                decode_batch(body.as_bytes()).unwrap_err(),
                BatchError::Events("must be an array"),
                "{events}"
            );
        }
        let body = r#"{"events":[{"id":1}, 2 ,"x"],"batch_id":"b"}"#;
        let batch = decode_batch(body.as_bytes()).unwrap();
        let raw: Vec<&str> = batch.events.iter().map(|e| e.get()).collect();
        assert_eq!(raw, [r#"{"id":1}"#, "2", r#""x""#]);
        let body = r#"{"batch_id":"b","events":[{"id":1},]}"#;
        assert_eq!(
            decode_batch(body.as_bytes()).unwrap_err().code(),
            "invalid_json"
        );
    }

    #[test]
    fn webdriver_is_an_optional_boolean() {
        let body = |extra: &str| format!(r#"{{"batch_id":"b","events":[{{}}]{extra}}}"#);
        assert!(!decode_batch(body("").as_bytes()).unwrap().webdriver);
        let on = body(r#","webdriver":true"#);
        assert!(decode_batch(on.as_bytes()).unwrap().webdriver);
        let off = body(r#","webdriver":false"#);
        assert!(!decode_batch(off.as_bytes()).unwrap().webdriver);
        // First in the body, as the SDK sends it.
        let first = r#"{"webdriver":true,"batch_id":"b","events":[{}]}"#;
        assert!(decode_batch(first.as_bytes()).unwrap().webdriver);
        for bad in [
            "null",
            "1",
            "0",
            "\"true\"",
            "[true]",
            r#"{"a":true}"#,
            "1.5",
            "-1",
        ] {
            let err = decode_batch(body(&format!(r#","webdriver":{bad}"#)).as_bytes()).unwrap_err();
            assert_eq!(err, BatchError::Webdriver, "{bad}");
            assert_eq!(err.code(), "invalid_webdriver");
            assert_eq!(
                err.to_string(),
                "`webdriver` must be true or false when present"
            );
        }
    }

    #[test]
    fn the_id_table_matches_the_alphabet() {
        for b in 0..=255u8 {
            assert_eq!(ID_BYTES[usize::from(b)], is_id_byte(b), "{b}");
        }
    }

    #[test]
    fn invalid_utf8_is_not_json() {
        let body = b"{\"batch_id\":\"b\xff\",\"events\":[{}]}";
        assert_eq!(decode_batch(body).unwrap_err().code(), "invalid_json");
    }

    #[test]
    fn event_count_limit() {
        let events = vec!["{}"; MAX_EVENTS_PER_BATCH].join(",");
        let body = format!(r#"{{"batch_id":"b","events":[{events}]}}"#);
        assert_eq!(decode_batch(body.as_bytes()).unwrap().events.len(), 500);
        let body = format!(r#"{{"batch_id":"b","events":[{events},{{}}]}}"#);
        assert_eq!(
            decode_batch(body.as_bytes()).unwrap_err(),
            BatchError::TooManyEvents(501)
        );
    }

    #[test]
    fn each_event_rule_has_a_reason() {
        let g = good();
        let cases: Vec<(String, &str)> = vec![
            (g.replace(r#""id":"e1","#, ""), "missing field `id`"),
            (
                g.replace(r#""ad_id":"ad-42""#, r#""ad_id":null"#),
                "invalid type: null",
            ),
            (
                g.replace(r#""ad_id":"ad-42""#, r#""ad_id":42"#),
                "invalid type: integer",
            ),
            (
                g.replace("viewable", "clicked"),
                "unknown variant `clicked`",
            ),
            (
                g.replace(r#""user_id":"u.1:x_y""#, r#""user_id":"""#),
                "`user_id` must not be empty",
            ),
            (
                g.replace("ad-42", "ad 42"),
                "`ad_id` has a character outside",
            ),
            (
                g.replace("ad-42", "ad{42}"),
                "`ad_id` has a character outside",
            ),
            (
                g.replace("ad-42", "ad-é"),
                "`ad_id` has a character outside",
            ),
            (
                g.replace(r#""id":"e1""#, &format!(r#""id":"{}""#, "e".repeat(65))),
                "`id` is 65 bytes long",
            ),
            (
                g.replace(&NOW.to_string(), "1.5"),
                "invalid type: floating point",
            ),
            (g.replace(&NOW.to_string(), "\"1\""), "invalid type: string"),
            (
                g.replace(&NOW.to_string(), "99999999999999999999999"),
                "expected i64",
            ),
            (
                g.replace(&NOW.to_string(), &(NOW - MAX_EVENT_AGE_MS - 1).to_string()),
                "more than 48 h before",
            ),
            (
                g.replace(&NOW.to_string(), &(NOW + MAX_EVENT_LEAD_MS + 1).to_string()),
                "more than 5 min after",
            ),
        ];
        for (fields, reason) in cases {
            let raw = event_json(&fields);
            let err = validate_event(&raw, NOW).unwrap_err().to_string();
            assert!(
                err.contains(reason),
                "{fields}: got {err:?}, want {reason:?}"
            );
            assert!(!err.contains(" at line "), "{err}");
        }
        for not_object in ["null", "3", "\"e\"", "[]"] {
            let raw = RawValue::from_string(not_object.to_owned()).unwrap();
            assert!(validate_event(&raw, NOW).is_err(), "{not_object}");
        }
    }

    #[test]
    fn event_errors_have_a_category() {
        let g = good();
        let cases = [
            (g.replace("viewable", "clicked"), "invalid_event"),
            (g.replace(r#""id":"e1","#, ""), "invalid_event"),
            (g.replace("ad-42", "ad{42}"), "invalid_id"),
            (
                g.replace(&NOW.to_string(), &(NOW + MAX_EVENT_LEAD_MS + 1).to_string()),
                "ts_out_of_window",
            ),
        ];
        for (fields, code) in cases {
            let err = validate_event(&event_json(&fields), NOW).unwrap_err();
            assert_eq!(err.code(), code, "{fields}");
        }
    }

    #[test]
    fn distinct_ad_id_limit() {
        let events = |ads: usize| -> Vec<Event<'static>> {
            (0..MAX_EVENTS_PER_BATCH)
                .map(|i| Event {
                    id: format!("e{i}").into(),
                    ad_id: format!("ad-{}", i % ads).into(),
                    user_id: "u".into(),
                    kind: Kind::Viewable,
                    ts: NOW,
                    day: Day::from_epoch_ms(NOW).unwrap(),
                    token: None,
                })
                .collect()
        };
        assert!(check_distinct_ads(&events(MAX_AD_IDS_PER_BATCH)).is_ok());
        let err = check_distinct_ads(&events(MAX_AD_IDS_PER_BATCH + 1)).unwrap_err();
        assert_eq!(err, BatchError::TooManyAds(MAX_AD_IDS_PER_BATCH + 1));
        assert_eq!(err.code(), "too_many_ads");
        assert!(check_distinct_ads(&[]).is_ok());
    }

    #[test]
    fn id_length_limits_are_inclusive() {
        let ad = "a".repeat(128);
        let id = "i".repeat(64);
        let fields = good()
            .replace("ad-42", &ad)
            .replace(r#""id":"e1""#, &format!(r#""id":"{id}""#));
        assert!(validate_event(&event_json(&fields), NOW).is_ok());
        let fields = good().replace("ad-42", &format!("{ad}a"));
        assert!(validate_event(&event_json(&fields), NOW).is_err());
    }

    #[test]
    fn day_bucket_window_edges() {
        assert!(day_bucket(NOW - MAX_EVENT_AGE_MS, NOW).is_ok());
        assert!(day_bucket(NOW + MAX_EVENT_LEAD_MS, NOW).is_ok());
        assert!(day_bucket(NOW - MAX_EVENT_AGE_MS - 1, NOW).is_err());
        assert!(day_bucket(NOW + MAX_EVENT_LEAD_MS + 1, NOW).is_err());
        // Just before and after UTC midnight land on different days.
        let midnight = "2025-11-24".parse::<Day>().unwrap().start_ms();
        assert_eq!(
            day_bucket(midnight - 1, midnight).unwrap().to_string(),
            "2025-11-23"
        );
        assert_eq!(
            day_bucket(midnight, midnight).unwrap().to_string(),
            "2025-11-24"
        );
        assert!(day_bucket(i64::MIN, NOW).is_err());
        assert!(day_bucket(i64::MAX, NOW).is_err());
    }

    #[test]
    fn escaped_ids_are_decoded_before_checking() {
        let fields = good().replace("ad-42", "ad\\u002d42");
        assert_eq!(
            validate_event(&event_json(&fields), NOW).unwrap().ad_id,
            "ad-42"
        );
        let fields = good().replace("ad-42", "ad\\n42");
        assert!(validate_event(&event_json(&fields), NOW).is_err());
    }
}
