//! The limits of the v1 wire contract that the SDK keeps to. The edge's own
//! definitions live in `glimpse-wire`, which needs `std` and so stays out of
//! the `no_std` wasm; these copies are checked against it by the tests below.

/// Largest request body the edge accepts.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most events in one batch.
pub const MAX_EVENTS_PER_BATCH: usize = 500;
/// Most distinct `ad_id`s in one batch.
pub const MAX_AD_IDS_PER_BATCH: usize = 50;
/// `ad_id` and `user_id` are 1 to this many bytes.
pub const MAX_AD_OR_USER_ID_BYTES: usize = 128;
/// `batch_id` and event `id` are 1 to this many bytes.
pub const MAX_BATCH_OR_EVENT_ID_BYTES: usize = 64;
/// An event may be at most this old when it arrives.
pub const MAX_EVENT_AGE_MS: i64 = 48 * 3_600_000;

/// A byte of the id alphabet, `[A-Za-z0-9._:-]`.
pub const fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use glimpse_wire::ingest;

    #[test]
    fn limits_match_the_wire_contract() {
        assert_eq!(MAX_BODY_BYTES, glimpse_wire::MAX_BODY_BYTES);
        assert_eq!(MAX_EVENTS_PER_BATCH, glimpse_wire::MAX_EVENTS_PER_BATCH);
        assert_eq!(MAX_AD_IDS_PER_BATCH, ingest::MAX_AD_IDS_PER_BATCH);
        assert_eq!(MAX_AD_OR_USER_ID_BYTES, ingest::MAX_AD_OR_USER_ID_BYTES);
        assert_eq!(
            MAX_BATCH_OR_EVENT_ID_BYTES,
            ingest::MAX_BATCH_OR_EVENT_ID_BYTES
        );
        assert_eq!(MAX_EVENT_AGE_MS, ingest::MAX_EVENT_AGE_MS);
    }

    #[test]
    fn id_alphabet_matches_the_wire_contract() {
        for b in 0..=u8::MAX {
            assert_eq!(is_id_byte(b), ingest::is_id_byte(b), "byte {b}");
        }
    }
}
