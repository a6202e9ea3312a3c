//! The ingest decoder on arbitrary bodies: `decode_batch`, then
//! `Batch::validate_event` on each event (with the batch's clock correction),
//! must never panic, and whatever they accept must keep the contract's
//! promises.
#![no_main]

use glimpse_wire::ingest::{
    check_distinct_ads, check_id, clock_offset, decode_batch, validate_event, Kind,
    MAX_AD_OR_USER_ID_BYTES,
    MAX_BATCH_OR_EVENT_ID_BYTES, MAX_EVENTS_PER_BATCH, MAX_EVENT_AGE_MS, MAX_EVENT_LEAD_MS,
};
use glimpse_wire::{Day, Subject};
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;

/// 2025-11-24T16:00:00Z, the server time the events are judged against.
const NOW: i64 = 1_764_000_000_000;

fuzz_target!(|body: &[u8]| {
    let Ok(batch) = decode_batch(body) else {
        return;
    };
    assert!(check_id(&batch.batch_id, MAX_BATCH_OR_EVENT_ID_BYTES).is_ok());
    assert!(!batch.events.is_empty() && batch.events.len() <= MAX_EVENTS_PER_BATCH);
    assert!(batch.sent_at.is_none_or(|ms| ms >= 0));
    assert_eq!(batch.clock_offset(NOW), clock_offset(batch.sent_at, NOW));
    // Round trip of the envelope: its fields written back read the same.
    let raw_events: Vec<&str> = batch.events.iter().map(|e| e.get()).collect();
    let sent_at = match batch.sent_at {
        Some(ms) => format!(r#","sent_at":{ms}"#),
        None => String::new(),
    };
    let envelope = format!(
        r#"{{"batch_id":{},"webdriver":{}{sent_at},"events":[{}]}}"#,
        serde_json::to_string(&batch.batch_id).unwrap(),
        batch.webdriver,
        raw_events.join(",")
    );
    let again = decode_batch(envelope.as_bytes()).unwrap();
    assert_eq!(
        (&again.batch_id, again.webdriver, again.sent_at, again.events.len()),
        (&batch.batch_id, batch.webdriver, batch.sent_at, batch.events.len())
    );
    let mut valid = Vec::new();
    for raw in &batch.events {
        let Ok(event) = batch.validate_event(raw, NOW) else {
            continue;
        };
        assert!(check_id(&event.id, MAX_BATCH_OR_EVENT_ID_BYTES).is_ok());
        assert!(check_id(&event.subject_id, MAX_AD_OR_USER_ID_BYTES).is_ok());
        assert!(check_id(&event.user_id, MAX_AD_OR_USER_ID_BYTES).is_ok());
        assert!(event.ts >= NOW - MAX_EVENT_AGE_MS && event.ts <= NOW + MAX_EVENT_LEAD_MS);
        assert_eq!(Some(event.day), Day::from_epoch_ms(event.ts));
        assert!(!event.verified || event.kind == Kind::Viewable);
        assert!(!event.audible || (event.kind == Kind::Viewable && event.subject == Subject::Ad));
        assert!(!event.kind.is_video_progress() || event.subject == Subject::Ad);
        // Round trip: the event written back out (its `ts` as corrected)
        // validates to itself with no correction.
        let kind = serde_json::to_string(&event.kind).unwrap();
        let token = match &event.token {
            Some(t) => format!(r#","token":{}"#, serde_json::to_string(t).unwrap()),
            None => String::new(),
        };
        let again = format!(
            r#"{{"id":"{}","{}":"{}","user_id":"{}","kind":{kind},"ts":{}{token},"verified":{},"audible":{}}}"#,
            event.id,
            event.subject.field(),
            event.subject_id,
            event.user_id,
            event.ts,
            event.verified,
            event.audible
        );
        let again = RawValue::from_string(again).unwrap();
        assert_eq!(validate_event(&again, NOW).unwrap(), event);
        valid.push(event);
    }
    let _ = check_distinct_ads(&valid);
});
