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
/// Most distinct ids, `ad_id`s and `post_id`s together, among the valid
/// events of one batch. A page holds a handful of ads and a feed's page of
/// posts; a batch naming many is fabricated and would fill the store with
/// keys.
pub const MAX_AD_IDS_PER_BATCH: usize = 50;
/// `ad_id`, `post_id` and `user_id` are 1..=128 bytes.
pub const MAX_AD_OR_USER_ID_BYTES: usize = 128;
/// `batch_id` and event `id` are 1..=64 bytes.
pub const MAX_BATCH_OR_EVENT_ID_BYTES: usize = 64;
/// An event may be at most this old when it arrives.
pub const MAX_EVENT_AGE_MS: i64 = 48 * 3_600_000;
/// An event may be at most this far ahead of the server's clock.
pub const MAX_EVENT_LEAD_MS: i64 = 5 * 60_000;
/// A batch's `sent_at` and the edge's clock that differ by at most this much
/// are taken to agree, and its events keep their `ts`. The difference is the
/// client's clock error plus the request's time in transit (the SDK sets
/// `sent_at` at each attempt, so time spent queued offline is not in it):
/// 30 s is above the transit time of all but the worst requests, so a right
/// clock is never "corrected" by its latency, and far below the 5 min an
/// event may lead the edge, so an uncorrected clock still counts.
pub const CLOCK_TOLERANCE_MS: i64 = 30_000;

/// What an event reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The impression met the viewability rule (for a video ad, the video
    /// rule); of a post, a post view.
    Viewable,
    /// The impression was rendered and measured, viewable or not.
    Measurable,
    /// A video ad played its first frame.
    VideoStart,
    /// A video ad played a quarter of its length.
    VideoQ25,
    /// A video ad played half of its length.
    VideoQ50,
    /// A video ad played three quarters of its length.
    VideoQ75,
    /// A video ad played to its end.
    VideoComplete,
}

impl Kind {
    /// Whether this is one of the video progress kinds, which only an ad
    /// can report.
    pub fn is_video_progress(self) -> bool {
        !matches!(self, Kind::Viewable | Kind::Measurable)
    }

    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Viewable => "viewable",
            Kind::Measurable => "measurable",
            Kind::VideoStart => "video_start",
            Kind::VideoQ25 => "video_q25",
            Kind::VideoQ50 => "video_q50",
            Kind::VideoQ75 => "video_q75",
            Kind::VideoComplete => "video_complete",
        }
    }
}

/// What an event is about. Ads and posts are separate namespaces: an ad
/// and a post with the same id are different things.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    /// An ad: the event names `ad_id`.
    Ad,
    /// A post, any content item that is not an ad: the event names
    /// `post_id`.
    Post,
}

impl Subject {
    /// The field that names an id of this subject on the wire.
    pub fn field(self) -> &'static str {
        match self {
            Subject::Ad => "ad_id",
            Subject::Post => "post_id",
        }
    }
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
    /// More distinct ad and post ids than [`MAX_AD_IDS_PER_BATCH`].
    TooManyAds(usize),
    /// `webdriver` is present but not `true` or `false`.
    Webdriver,
    /// `sent_at` is present but not a whole number of milliseconds >= 0.
    SentAt,
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
            BatchError::SentAt => "invalid_sent_at",
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
                "the valid events name {n} distinct `ad_id`s and `post_id`s; at most {MAX_AD_IDS_PER_BATCH} are allowed per batch"
            ),
            BatchError::Webdriver => f.write_str("`webdriver` must be true or false when present"),
            BatchError::SentAt => f.write_str(
                "`sent_at` must be a whole number of epoch milliseconds (>= 0) when present",
            ),
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
    /// The client's clock (epoch ms) when it sent this body, when it said.
    pub sent_at: Option<i64>,
}

impl Batch<'_> {
    /// How much this batch's timestamps are shifted at the edge's time
    /// `now_ms` (see [`clock_offset`]).
    pub fn clock_offset(&self, now_ms: i64) -> i64 {
        clock_offset(self.sent_at, now_ms)
    }

    /// Validates one of this batch's events at the edge's time `now_ms`,
    /// its `ts` first corrected by the batch's [`clock_offset`](Self::clock_offset).
    pub fn validate_event<'e>(
        &self,
        raw: &'e RawValue,
        now_ms: i64,
    ) -> Result<Event<'e>, EventError> {
        validate_event_shifted(raw, now_ms, self.clock_offset(now_ms))
    }
}

/// The correction for a client clock: `now_ms - sent_at` when the two
/// clocks differ by more than [`CLOCK_TOLERANCE_MS`], else 0 (and 0 without
/// a `sent_at`). Added to each event's `ts`, it turns a time read on the
/// client's clock into one on the edge's, so an event's age is the one the
/// client measured, whatever its clock says.
pub fn clock_offset(sent_at: Option<i64>, now_ms: i64) -> i64 {
    let Some(sent_at) = sent_at else { return 0 };
    let offset = now_ms.saturating_sub(sent_at);
    if offset.saturating_abs() > CLOCK_TOLERANCE_MS {
        offset
    } else {
        0
    }
}

/// A batch of events, `POST /v1/impressions`.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = Batch)]
struct Envelope<'a> {
    /// The batch's id, the same across the client's retries: the edge
    /// counts a batch once by it.
    #[serde(borrow, default)]
    #[schema(value_type = BatchOrEventId, required = true)]
    batch_id: Option<&'a RawValue>,
    /// 1 to 500 events ([`MAX_EVENTS_PER_BATCH`]), each validated on its own.
    #[serde(borrow, default)]
    #[schema(value_type = Vec<EventFields>, required = true, min_items = 1, max_items = 500)]
    events: Option<Events<'a>>,
    /// The SDK's `navigator.webdriver`: a browser under automation.
    #[serde(default)]
    #[schema(value_type = bool)]
    webdriver: Flag,
    /// The client's clock (epoch ms) when this attempt was sent, by which
    /// the edge corrects each event's `ts`.
    #[serde(default)]
    #[schema(value_type = i64, minimum = 0)]
    sent_at: Millis,
}

/// The request body of `POST /v1/impressions` in the OpenAPI document: the
/// schema of the very types that decode it.
#[derive(Debug)]
pub struct BatchBody;

impl utoipa::PartialSchema for BatchBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <Envelope<'static> as utoipa::PartialSchema>::schema()
    }
}

impl utoipa::ToSchema for BatchBody {
    fn name() -> Cow<'static, str> {
        <Envelope<'static> as utoipa::ToSchema>::name()
    }

    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <Envelope<'static> as utoipa::ToSchema>::schemas(schemas);
    }
}

/// An optional member holding a whole number >= 0 that fits an `i64`, read
/// like [`Flag`]: anything else (`null`, `1.5`, `-1`, `"1"`) is noted, to be
/// refused.
#[derive(Default)]
enum Millis {
    #[default]
    Absent,
    Ms(i64),
    Invalid,
}

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(MillisVisitor)
    }
}

struct MillisVisitor;

impl<'de> Visitor<'de> for MillisVisitor {
    type Value = Millis;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a whole number of milliseconds")
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(n).map_or(Millis::Invalid, Millis::Ms))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
        Ok(if n >= 0 {
            Millis::Ms(n)
        } else {
            Millis::Invalid
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Millis::Invalid)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Millis::Invalid)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Millis::Invalid)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Millis::Invalid)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Millis::Invalid)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Millis::Invalid)
    }
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
    let sent_at = match envelope.sent_at {
        Millis::Absent => None,
        Millis::Ms(ms) => Some(ms),
        Millis::Invalid => return Err(BatchError::SentAt),
    };
    Ok(Batch {
        batch_id,
        events,
        webdriver,
        sent_at,
    })
}

fn first_byte(body: &[u8]) -> Option<u8> {
    body.iter().copied().find(|b| !b.is_ascii_whitespace())
}

/// One valid event, with the day it counts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event<'a> {
    pub id: Cow<'a, str>,
    /// Whether the event is about an ad or a post.
    pub subject: Subject,
    /// The id of the ad (`ad_id`) or post (`post_id`) the event names.
    pub subject_id: Cow<'a, str>,
    pub user_id: Cow<'a, str>,
    pub kind: Kind,
    pub ts: i64,
    pub day: Day,
    /// The ad's signature (`data-ad-token`), when the client sent one; only
    /// an edge that requires signed ads looks at it.
    pub token: Option<Cow<'a, str>>,
    /// The browser vouched that the ad was neither covered nor visually
    /// altered while it was in view (IntersectionObserver v2). Only ever
    /// true on a viewable event: on a measurable one it is read as false.
    pub verified: bool,
    /// The video was unmuted, with volume above zero, when its 2 s of
    /// playback in view completed. Only ever true on a viewable event of an
    /// ad: on any other kind, or of a post, it is read as false.
    pub audible: bool,
    /// The campaign of an ad's event, when the client named one.
    pub campaign_id: Option<Cow<'a, str>>,
}

impl Event<'_> {
    /// The UTC hour of `day` the event counts in, 0..=23 (of its corrected
    /// `ts`).
    pub fn hour(&self) -> u8 {
        let into_day = self.ts - self.day.start_ms();
        (into_day.clamp(0, 23 * 3_600_000) / 3_600_000) as u8
    }

    /// The ad's id, when the event is about an ad.
    pub fn ad_id(&self) -> Option<&str> {
        (self.subject == Subject::Ad).then_some(self.subject_id.as_ref())
    }
}

/// Refuses a batch whose valid events name more than
/// [`MAX_AD_IDS_PER_BATCH`] distinct ids, ads and posts together (an ad
/// and a post of the same id are two).
pub fn check_distinct_ads(events: &[Event<'_>]) -> Result<(), BatchError> {
    if events.len() <= MAX_AD_IDS_PER_BATCH {
        return Ok(());
    }
    let distinct: std::collections::HashSet<(Subject, &str)> = events
        .iter()
        .map(|e| (e.subject, e.subject_id.as_ref()))
        .collect();
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

/// One event of a batch: exactly one of `ad_id` and `post_id`.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = Event)]
struct EventFields<'a> {
    /// The event's id, unique within its page view.
    #[serde(borrow)]
    #[schema(value_type = BatchOrEventId)]
    id: Cow<'a, str>,
    #[serde(borrow, default)]
    #[schema(value_type = Option<Id>)]
    ad_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    #[schema(value_type = Option<Id>)]
    post_id: Option<Cow<'a, str>>,
    /// The visitor's pseudonymous id.
    #[serde(borrow)]
    #[schema(value_type = Id)]
    user_id: Cow<'a, str>,
    kind: Kind,
    /// When it happened, epoch ms on the client's clock.
    ts: i64,
    /// The ad's signature (`data-ad-token`); required by an edge run with
    /// `--ad-signing-secret`.
    #[serde(borrow, default)]
    #[schema(value_type = Option<String>)]
    token: Option<Cow<'a, str>>,
    /// The browser vouched that the ad was neither covered nor altered
    /// while in view (IntersectionObserver v2).
    #[serde(default)]
    verified: bool,
    /// A video ad was unmuted when its viewable playback completed.
    #[serde(default)]
    audible: bool,
    /// The campaign the ad runs in: the event counts for the ad and for
    /// the campaign. Ad events only.
    #[serde(borrow, default)]
    #[schema(value_type = Option<Id>)]
    campaign_id: Option<Cow<'a, str>>,
}

/// Validates one raw event against the contract; `now_ms` is the server
/// clock. An event of a batch goes through [`Batch::validate_event`]
/// instead, which corrects for the client's clock.
pub fn validate_event(raw: &RawValue, now_ms: i64) -> Result<Event<'_>, EventError> {
    validate_event_shifted(raw, now_ms, 0)
}

/// [`validate_event`] with the event's `ts` first shifted by `offset_ms`.
fn validate_event_shifted(
    raw: &RawValue,
    now_ms: i64,
    offset_ms: i64,
) -> Result<Event<'_>, EventError> {
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
    let (subject, subject_id) = match (fields.ad_id, fields.post_id) {
        (Some(ad_id), None) => (Subject::Ad, ad_id),
        (None, Some(post_id)) => (Subject::Post, post_id),
        (Some(_), Some(_)) => {
            return Err(EventError::new(
                "invalid_event",
                "the event names both `ad_id` and `post_id`; it must name exactly one",
            ))
        }
        (None, None) => {
            return Err(EventError::new(
                "invalid_event",
                "the event names neither `ad_id` nor `post_id`; it must name exactly one",
            ))
        }
    };
    field(subject.field(), &subject_id, MAX_AD_OR_USER_ID_BYTES)?;
    if subject == Subject::Post && fields.kind.is_video_progress() {
        return Err(EventError::new(
            "invalid_event",
            format!(
                "`kind` {} is a video progress kind, valid only on an event with `ad_id`, not `post_id`",
                fields.kind.as_str()
            ),
        ));
    }
    field("user_id", &fields.user_id, MAX_AD_OR_USER_ID_BYTES)?;
    if let Some(campaign_id) = &fields.campaign_id {
        if subject == Subject::Post {
            return Err(EventError::new(
                "invalid_event",
                "`campaign_id` is for ad events only",
            ));
        }
        field("campaign_id", campaign_id, MAX_AD_OR_USER_ID_BYTES)?;
    }
    let ts = fields.ts.saturating_add(offset_ms);
    let day = day_bucket(ts, now_ms).map_err(|e| {
        if offset_ms == 0 {
            return e;
        }
        EventError::new(
            e.code,
            format!(
                "{e} (the `ts` sent, {}, corrected by {offset_ms} ms for the client's clock by `sent_at`)",
                fields.ts
            ),
        )
    })?;
    let viewable_ad = fields.kind == Kind::Viewable && subject == Subject::Ad;
    Ok(Event {
        id: fields.id,
        subject,
        subject_id,
        user_id: fields.user_id,
        kind: fields.kind,
        ts,
        day,
        token: fields.token,
        verified: fields.verified && fields.kind == Kind::Viewable,
        audible: fields.audible && viewable_ad,
        campaign_id: fields.campaign_id,
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

/// The rule of [`check_id`] as a JSON Schema pattern.
const ID_PATTERN: &str = "^[A-Za-z0-9._:-]+$";

fn id_schema(max: usize, what: &str) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(max))
        .pattern(Some(ID_PATTERN))
        .description(Some(format!(
            "{what}: 1 to {max} bytes of `[A-Za-z0-9._:-]`."
        )))
        .into()
}

/// An ad, post or user id in the OpenAPI document: 1 to
/// [`MAX_AD_OR_USER_ID_BYTES`] bytes of `[A-Za-z0-9._:-]`.
#[derive(Debug)]
pub struct Id;

impl utoipa::PartialSchema for Id {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        id_schema(MAX_AD_OR_USER_ID_BYTES, "An ad, post or user id")
    }
}

impl utoipa::ToSchema for Id {}

/// A batch or event id in the OpenAPI document: 1 to
/// [`MAX_BATCH_OR_EVENT_ID_BYTES`] bytes of `[A-Za-z0-9._:-]`.
#[derive(Debug)]
pub struct BatchOrEventId;

impl utoipa::PartialSchema for BatchOrEventId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        id_schema(MAX_BATCH_OR_EVENT_ID_BYTES, "A batch or event id")
    }
}

impl utoipa::ToSchema for BatchOrEventId {}

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
        assert_eq!(event.ad_id(), Some("ad-42"));
        assert_eq!(event.subject, Subject::Ad);
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
                "names neither `ad_id` nor `post_id`",
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
                    subject: Subject::Ad,
                    subject_id: format!("ad-{}", i % ads).into(),
                    user_id: "u".into(),
                    kind: Kind::Viewable,
                    ts: NOW,
                    day: Day::from_epoch_ms(NOW).unwrap(),
                    token: None,
                    verified: false,
                    audible: false,
                    campaign_id: None,
                })
                .collect()
        };
        assert!(check_distinct_ads(&events(MAX_AD_IDS_PER_BATCH)).is_ok());
        let err = check_distinct_ads(&events(MAX_AD_IDS_PER_BATCH + 1)).unwrap_err();
        assert_eq!(err, BatchError::TooManyAds(MAX_AD_IDS_PER_BATCH + 1));
        assert_eq!(err.code(), "too_many_ads");
        assert!(check_distinct_ads(&[]).is_ok());
        // Posts count with ads, and a post and an ad of one id are two.
        let mut mixed = events(MAX_AD_IDS_PER_BATCH / 2);
        for (i, e) in mixed.iter_mut().enumerate() {
            if i % 2 == 1 {
                e.subject = Subject::Post;
            }
        }
        assert!(check_distinct_ads(&mixed).is_ok());
        let mut over = events(MAX_AD_IDS_PER_BATCH / 2 + 2);
        for (i, e) in over.iter_mut().enumerate() {
            if i % 2 == 1 {
                e.subject = Subject::Post;
            }
        }
        assert_eq!(
            check_distinct_ads(&over),
            Err(BatchError::TooManyAds(MAX_AD_IDS_PER_BATCH + 4))
        );
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
    fn sent_at_is_an_optional_whole_number() {
        let body = |extra: &str| format!(r#"{{"batch_id":"b","events":[{{}}]{extra}}}"#);
        assert_eq!(decode_batch(body("").as_bytes()).unwrap().sent_at, None);
        let at = body(&format!(r#","sent_at":{NOW}"#));
        assert_eq!(decode_batch(at.as_bytes()).unwrap().sent_at, Some(NOW));
        let zero = body(r#","sent_at":0"#);
        assert_eq!(decode_batch(zero.as_bytes()).unwrap().sent_at, Some(0));
        // Beside `webdriver`, first in the body, as the SDK sends it.
        let first =
            format!(r#"{{"webdriver":true,"sent_at":{NOW},"batch_id":"b","events":[{{}}]}}"#);
        let batch = decode_batch(first.as_bytes()).unwrap();
        assert_eq!((batch.webdriver, batch.sent_at), (true, Some(NOW)));
        for bad in [
            "null",
            "-1",
            "1.5",
            "1e12",
            "\"1764000000000\"",
            "true",
            "[1]",
            r#"{"ms":1}"#,
            "9223372036854775808",
        ] {
            let err = decode_batch(body(&format!(r#","sent_at":{bad}"#)).as_bytes()).unwrap_err();
            assert_eq!(err, BatchError::SentAt, "{bad}");
            assert_eq!(err.code(), "invalid_sent_at");
            assert!(err.to_string().contains("`sent_at`"), "{err}");
        }
    }

    #[test]
    fn clock_offset_applies_beyond_the_tolerance_only() {
        assert_eq!(clock_offset(None, NOW), 0);
        assert_eq!(clock_offset(Some(NOW), NOW), 0);
        assert_eq!(clock_offset(Some(NOW - CLOCK_TOLERANCE_MS), NOW), 0);
        assert_eq!(clock_offset(Some(NOW + CLOCK_TOLERANCE_MS), NOW), 0);
        assert_eq!(
            clock_offset(Some(NOW - CLOCK_TOLERANCE_MS - 1), NOW),
            CLOCK_TOLERANCE_MS + 1
        );
        // A client 10 minutes fast, and one 3 hours slow.
        assert_eq!(clock_offset(Some(NOW + 600_000), NOW), -600_000);
        assert_eq!(clock_offset(Some(NOW - 3 * 3_600_000), NOW), 3 * 3_600_000);
        // Extremes saturate instead of overflowing.
        assert_eq!(clock_offset(Some(0), i64::MIN), i64::MIN);
        assert_eq!(clock_offset(Some(i64::MAX), i64::MIN), i64::MIN);
        assert_eq!(clock_offset(Some(0), i64::MAX), i64::MAX);
    }

    /// A batch formed by a client whose clock is `skew_ms` off, holding one
    /// event `age_ms` old at sending, read by the edge `transit_ms` later.
    /// Returns the edge's time and the event as validated there.
    fn skewed(
        skew_ms: i64,
        age_ms: i64,
        transit_ms: i64,
        sent_at: bool,
    ) -> (i64, Result<Event<'static>, EventError>) {
        let sent = NOW + skew_ms;
        let sent_at = if sent_at {
            format!(r#","sent_at":{sent}"#)
        } else {
            String::new()
        };
        let body = format!(
            r#"{{"batch_id":"b"{sent_at},"events":[{{"id":"e","ad_id":"a","user_id":"u","kind":"viewable","ts":{}}}]}}"#,
            sent - age_ms
        );
        let body: &'static str = Box::leak(body.into_boxed_str());
        let batch = decode_batch(body.as_bytes()).unwrap();
        let now = NOW + transit_ms;
        (now, batch.validate_event(batch.events[0], now))
    }

    #[test]
    fn a_skewed_clock_counts_as_if_it_were_right() {
        // 10 minutes fast and 3 hours slow both count, with their true time.
        for skew in [600_000, -3 * 3_600_000] {
            let (now, e) = skewed(skew, 2_000, 150, true);
            let e = e.unwrap();
            assert_eq!(e.ts, NOW - 2_000 + 150, "{skew}");
            assert_eq!(e.day, Day::from_epoch_ms(now - 2_000).unwrap());
        }
        // Without `sent_at` the fast clock's event is ahead of the window and
        // the slow clock's counts 3 hours early (on another day, near midnight).
        let (_, e) = skewed(600_000, 2_000, 150, false);
        assert_eq!(e.unwrap_err().code(), "ts_out_of_window");
        let (_, e) = skewed(-3 * 3_600_000, 2_000, 150, false);
        assert_eq!(e.unwrap().ts, NOW - 3 * 3_600_000 - 2_000);
        // Within the tolerance the event keeps the `ts` it was sent with.
        let (_, e) = skewed(10_000, 0, 100, true);
        assert_eq!(e.unwrap().ts, NOW + 10_000);
        // The window is judged on the corrected `ts`, and says so.
        let (_, e) = skewed(-3 * 3_600_000, MAX_EVENT_AGE_MS + 1, 0, true);
        let err = e.unwrap_err();
        assert_eq!(err.code(), "ts_out_of_window");
        assert!(err.to_string().contains("more than 48 h before"), "{err}");
        assert!(
            err.to_string().contains("corrected by 10800000 ms"),
            "{err}"
        );
        // A plain `validate_event` knows no batch and corrects nothing.
        let raw = event_json(&good().replace(&NOW.to_string(), &(NOW + 600_000).to_string()));
        assert_eq!(
            validate_event(&raw, NOW).unwrap_err().code(),
            "ts_out_of_window"
        );
    }

    /// Numbers spread over `lo..=hi`, with both ends, from a fixed seed.
    fn spread(seed: &mut u64, lo: i64, hi: i64, n: usize) -> Vec<i64> {
        let mut v = vec![lo, hi];
        let span = (hi - lo) as u64 + 1;
        for _ in 0..n {
            // splitmix64
            *seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = *seed;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            v.push(lo + (z % span) as i64);
        }
        v
    }

    #[test]
    fn property_any_skew_counts_every_event_young_enough() {
        let mut seed = 7;
        let skews = spread(&mut seed, -366 * 86_400_000, 366 * 86_400_000, 60);
        let ages = spread(&mut seed, 0, MAX_EVENT_AGE_MS - CLOCK_TOLERANCE_MS, 20);
        let transits = spread(&mut seed, 0, 10_000, 5);
        for &skew in &skews {
            for &age in &ages {
                for &transit in &transits {
                    let (now, e) = skewed(skew, age, transit, true);
                    let e = e.unwrap_or_else(|err| panic!("{skew} {age} {transit}: {err}"));
                    // The edge's reading of the event's time is off by no
                    // more than the tolerance and the transit time.
                    let truth = NOW - age;
                    assert!(
                        (e.ts - truth).abs() <= CLOCK_TOLERANCE_MS + transit,
                        "{skew} {age} {transit}: {} vs {truth}",
                        e.ts
                    );
                    assert!(e.ts <= now + CLOCK_TOLERANCE_MS);
                    assert_eq!(Some(e.day), Day::from_epoch_ms(e.ts));
                }
            }
        }
    }

    #[test]
    fn property_a_right_clock_is_never_corrected() {
        let mut seed = 11;
        for skew in spread(
            &mut seed,
            -CLOCK_TOLERANCE_MS / 2,
            CLOCK_TOLERANCE_MS / 2,
            200,
        ) {
            for transit in spread(&mut seed, 0, CLOCK_TOLERANCE_MS / 2, 5) {
                let (_, e) = skewed(skew, 1_000, transit, true);
                assert_eq!(e.unwrap().ts, NOW + skew - 1_000, "{skew} {transit}");
            }
        }
    }

    #[test]
    fn verified_is_an_optional_boolean_of_viewable_events() {
        let read = |fields: String| {
            validate_event(&event_json(&fields), NOW).map(|e| (e.kind, e.verified))
        };
        assert_eq!(read(good()), Ok((Kind::Viewable, false)));
        let on = good() + r#","verified":true"#;
        assert_eq!(read(on), Ok((Kind::Viewable, true)));
        let off = good() + r#","verified":false"#;
        assert_eq!(read(off), Ok((Kind::Viewable, false)));
        // Only a viewable impression can be vouched for.
        let measurable = good().replace("viewable", "measurable") + r#","verified":true"#;
        assert_eq!(read(measurable), Ok((Kind::Measurable, false)));
        for bad in ["null", "1", "\"true\"", "[true]"] {
            let err = read(good() + &format!(r#","verified":{bad}"#)).unwrap_err();
            assert_eq!(err.code(), "invalid_event", "{bad}");
            assert!(err.to_string().contains("invalid type"), "{bad}: {err}");
        }
    }

    #[test]
    fn escaped_ids_are_decoded_before_checking() {
        let fields = good().replace("ad-42", "ad\\u002d42");
        assert_eq!(
            validate_event(&event_json(&fields), NOW)
                .unwrap()
                .subject_id,
            "ad-42"
        );
        let fields = good().replace("ad-42", "ad\\n42");
        assert!(validate_event(&event_json(&fields), NOW).is_err());
    }

    #[test]
    fn every_kind_has_its_snake_case_name() {
        let kinds = [
            Kind::Viewable,
            Kind::Measurable,
            Kind::VideoStart,
            Kind::VideoQ25,
            Kind::VideoQ50,
            Kind::VideoQ75,
            Kind::VideoComplete,
        ];
        let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "viewable",
                "measurable",
                "video_start",
                "video_q25",
                "video_q50",
                "video_q75",
                "video_complete"
            ]
        );
        for kind in kinds {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(serde_json::from_str::<Kind>(&json).unwrap(), kind);
            let fields = good().replace("viewable", kind.as_str());
            let raw = event_json(&fields);
            let e = validate_event(&raw, NOW).unwrap();
            assert_eq!((e.kind, e.subject), (kind, Subject::Ad));
        }
        assert_eq!(
            kinds.iter().filter(|k| k.is_video_progress()).count(),
            5,
            "viewable and measurable are not progress kinds"
        );
        for old_spelling in ["VideoStart", "videostart", "video-start", "VIEWABLE"] {
            let fields = good().replace("viewable", old_spelling);
            let err = validate_event(&event_json(&fields), NOW).unwrap_err();
            assert_eq!(err.code(), "invalid_event", "{old_spelling}");
        }
    }

    #[test]
    fn an_event_names_exactly_one_of_ad_id_and_post_id() {
        let post = good().replace(r#""ad_id":"ad-42""#, r#""post_id":"p-7""#);
        let raw = event_json(&post);
        let e = validate_event(&raw, NOW).unwrap();
        assert_eq!((e.subject, &*e.subject_id), (Subject::Post, "p-7"));
        assert_eq!(e.ad_id(), None);
        let both = good() + r#","post_id":"p-7""#;
        let err = validate_event(&event_json(&both), NOW).unwrap_err();
        assert_eq!(err.code(), "invalid_event");
        assert!(
            err.to_string().contains("both `ad_id` and `post_id`"),
            "{err}"
        );
        let neither = good().replace(r#""ad_id":"ad-42","#, "");
        let err = validate_event(&event_json(&neither), NOW).unwrap_err();
        assert_eq!(err.code(), "invalid_event");
        assert!(
            err.to_string().contains("neither `ad_id` nor `post_id`"),
            "{err}"
        );
        // The same alphabet and length rule, named by the field.
        let bad = post.replace("p-7", "p 7");
        let err = validate_event(&event_json(&bad), NOW).unwrap_err();
        assert_eq!(err.code(), "invalid_id");
        assert!(
            err.to_string().starts_with("`post_id` has a character"),
            "{err}"
        );
        let long = post.replace("p-7", &"p".repeat(129));
        let err = validate_event(&event_json(&long), NOW).unwrap_err();
        assert!(
            err.to_string().contains("`post_id` is 129 bytes long"),
            "{err}"
        );
        let longest = post.replace("p-7", &"p".repeat(128));
        assert!(validate_event(&event_json(&longest), NOW).is_ok());
        let null = good().replace(r#""ad_id":"ad-42""#, r#""post_id":null"#);
        let err = validate_event(&event_json(&null), NOW).unwrap_err();
        assert!(err.to_string().contains("neither"), "{err}");
    }

    #[test]
    fn video_kinds_are_refused_on_posts() {
        let post = good().replace(r#""ad_id":"ad-42""#, r#""post_id":"p-7""#);
        for kind in [
            "video_start",
            "video_q25",
            "video_q50",
            "video_q75",
            "video_complete",
        ] {
            let fields = post.replace("viewable", kind);
            let err = validate_event(&event_json(&fields), NOW).unwrap_err();
            assert_eq!(err.code(), "invalid_event", "{kind}");
            assert!(err.to_string().contains(kind), "{err}");
            assert!(err.to_string().contains("`post_id`"), "{err}");
        }
        let measurable = post.replace("viewable", "measurable");
        assert_eq!(
            validate_event(&event_json(&measurable), NOW).unwrap().kind,
            Kind::Measurable
        );
    }

    #[test]
    fn audible_is_an_optional_boolean_of_viewable_ad_events() {
        let read =
            |fields: String| validate_event(&event_json(&fields), NOW).map(|e| (e.kind, e.audible));
        assert_eq!(read(good()), Ok((Kind::Viewable, false)));
        assert_eq!(
            read(good() + r#","audible":true"#),
            Ok((Kind::Viewable, true))
        );
        assert_eq!(
            read(good() + r#","audible":false"#),
            Ok((Kind::Viewable, false))
        );
        for other in ["measurable", "video_start", "video_complete"] {
            let fields = good().replace("viewable", other) + r#","audible":true"#;
            assert!(!read(fields).unwrap().1, "{other}");
        }
        let post =
            good().replace(r#""ad_id":"ad-42""#, r#""post_id":"p-7""#) + r#","audible":true"#;
        assert_eq!(
            read(post),
            Ok((Kind::Viewable, false)),
            "a post is never audible"
        );
        for bad in ["null", "1", "\"true\""] {
            let err = read(good() + &format!(r#","audible":{bad}"#)).unwrap_err();
            assert_eq!(err.code(), "invalid_event", "{bad}");
        }
    }
}
