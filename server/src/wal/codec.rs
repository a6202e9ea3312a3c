//! The write-ahead log's byte format: pure encoding and decoding, no I/O.
//!
//! A segment file is a header followed by records:
//!
//! ```text
//! header  (24 bytes): magic "GLMPSWAL" | version u32 = 3 | seq u64 | crc32 u32 of the 20 bytes before
//! record:             len u32 | crc32 u32 of (len bytes ++ payload) | payload (len bytes)
//! payload:            flags u8 | received_ms i64 | batch_id str | events u32 | event*
//! event (version 3):  kind u8 | event flags u8 | day u32 (days since 1970-01-01) | hour u8 | subject id str | user_id str | campaign_id str (empty: none)
//! event (version 2):  kind u8 | event flags u8 | day u32 (days since 1970-01-01) | subject id str | user_id str
//! event (version 1):  kind u8 (0 viewable, 1 measurable, 2 viewable and verified) | day u32 | ad_id str | user_id str
//! str:                len u16 | UTF-8 bytes
//! ```
//!
//! Version 3 came with hourly and campaign counts: each event's UTC hour
//! and campaign. A version 2 or 1 event has neither: it replays into its
//! day as before, into hour 00 of that day, and into no campaign (only
//! segments an older edge left at a crash hold such events).
//!
//! Version 2 came with video kinds, `audible` and posts: its kind byte is
//! 0 viewable, 1 measurable, 2 video_start, 3 video_q25, 4 video_q50,
//! 5 video_q75, 6 video_complete, and its event flags are bit 0 verified,
//! bit 1 audible, bit 2 the id is a post's (else an ad's), the other bits
//! 0. An edge writes version 2 and replays both, so segments left by the
//! version before (an upgrade after a crash) count the same; an edge of
//! version 1 refuses a version 2 segment by its header rather than count
//! it wrong.
//!
//! All integers are little-endian. A record holds exactly what
//! [`crate::aggregate::Aggregator::record`] needs to rebuild the same counts
//! and sketch: the accepted events (after validation and de-duplication) in
//! their order, each with whether the browser verified it, the batch id, the
//! time it was accepted, and a flags byte (bit 0: the batch was judged
//! invalid traffic; other bits must be 0). Kind 2 came with the verified
//! counter: segments written before it hold 0 and 1 only and read the same,
//! and an edge from before it refuses a segment holding a 2 (a record that
//! does not parse) rather than count it wrong.
//!
//! Reading tolerates a torn tail (the last group commit cut short by a crash:
//! a partial record, a record whose CRC fails, zeroed pages) and reports it so
//! the caller can cut the file there; damage followed by a valid record is
//! corruption in the middle and an error, since cutting there would drop
//! records that had been made durable.

use std::borrow::Cow;
use std::fmt;
use std::io::Read;

use glimpse_wire::ingest::Event;
use glimpse_wire::{Day, Kind, Subject};

use crate::traffic::Traffic;

pub const MAGIC: [u8; 8] = *b"GLMPSWAL";
pub const VERSION: u32 = 3;
/// The version before hours and campaigns, still replayed.
const VERSION_2: u32 = 2;
/// The version before video kinds and posts, still replayed.
const VERSION_1: u32 = 1;
pub const HEADER_LEN: usize = 24;
/// `len` and `crc` in front of every payload.
pub const RECORD_HEADER_LEN: usize = 8;
/// No record is longer: a batch body is at most 64 KiB, and its record
/// cannot be much longer than its accepted events. Anything longer in a
/// length field is damage.
pub const MAX_PAYLOAD_LEN: usize = 1 << 20;
/// Flags bit 0: the batch was judged invalid traffic.
const FLAG_INVALID_TRAFFIC: u8 = 1;
/// The kind byte of a version 1 event.
const V1_VIEWABLE: u8 = 0;
const V1_MEASURABLE: u8 = 1;
const V1_VIEWABLE_VERIFIED: u8 = 2;
/// The kinds by their version 2 byte.
const KINDS: [Kind; 7] = [
    Kind::Viewable,
    Kind::Measurable,
    Kind::VideoStart,
    Kind::VideoQ25,
    Kind::VideoQ50,
    Kind::VideoQ75,
    Kind::VideoComplete,
];
/// Event flags of version 2.
const EVENT_VERIFIED: u8 = 1;
const EVENT_AUDIBLE: u8 = 2;
const EVENT_POST: u8 = 4;

/// The header that starts a segment of `seq`.
pub fn header(seq: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32fast::hash(&h[..20]);
    h[20..].copy_from_slice(&crc.to_le_bytes());
    h
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Ids are at most 128 bytes (the wire contract); a u16 leaves room.
    let len = u16::try_from(s.len()).expect("ids are validated to be short");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Appends one framed record (length, CRC, payload) to `out`.
pub fn encode_record(
    out: &mut Vec<u8>,
    traffic: Traffic,
    batch_id: &str,
    received_ms: i64,
    events: &[Event<'_>],
) {
    let start = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER_LEN]);
    out.push(match traffic {
        Traffic::Valid => 0,
        Traffic::Invalid => FLAG_INVALID_TRAFFIC,
    });
    out.extend_from_slice(&received_ms.to_le_bytes());
    put_str(out, batch_id);
    out.extend_from_slice(&(events.len() as u32).to_le_bytes());
    for e in events {
        let kind = KINDS
            .iter()
            .position(|k| *k == e.kind)
            .expect("every kind has a byte");
        out.push(kind as u8);
        let mut flags = 0;
        if e.verified {
            flags |= EVENT_VERIFIED;
        }
        if e.audible {
            flags |= EVENT_AUDIBLE;
        }
        if e.subject == Subject::Post {
            flags |= EVENT_POST;
        }
        out.push(flags);
        out.extend_from_slice(&e.day.days_since_epoch().to_le_bytes());
        out.push(e.hour());
        put_str(out, &e.subject_id);
        put_str(out, &e.user_id);
        put_str(out, e.campaign_id.as_deref().unwrap_or(""));
    }
    let len = (out.len() - start - RECORD_HEADER_LEN) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len.to_le_bytes());
    crc.update(&out[start + RECORD_HEADER_LEN..]);
    out[start + 4..start + 8].copy_from_slice(&crc.finalize().to_le_bytes());
}

/// One accepted batch as the log holds it. Its events borrow from the
/// segment's bytes; their `id` is empty and `ts` the start of their hour
/// (the aggregator needs no more).
#[derive(Clone, Debug, PartialEq)]
pub struct Record<'a> {
    pub traffic: Traffic,
    pub batch_id: &'a str,
    pub received_ms: i64,
    pub events: Vec<Event<'a>>,
}

/// Where a segment's readable part ends and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Torn {
    /// Byte offset of the first unreadable byte; the file is cut here.
    pub offset: usize,
    pub reason: &'static str,
}

/// How a segment ended: its number, and where its readable part stops if
/// the tail was torn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentEnd {
    /// From the header; `None` when the file ends inside its header (a crash
    /// right after creating it).
    pub seq: Option<u64>,
    /// Set when the tail was torn; the file is valid up to `offset`.
    pub torn: Option<Torn>,
}

/// A segment that cannot be read safely.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corrupt {
    pub offset: usize,
    pub reason: String,
}

impl fmt::Display for Corrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte offset {}: {}", self.offset, self.reason)
    }
}

/// Why [`read_segment`] stopped before the end.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Corrupt(Corrupt),
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// A complete record with a good CRC at `at`: its payload.
fn framed_at(bytes: &[u8], at: usize) -> Option<&[u8]> {
    let len = u32_at(bytes, at)? as usize;
    if len == 0 || len > MAX_PAYLOAD_LEN {
        return None;
    }
    let crc = u32_at(bytes, at + 4)?;
    let payload = bytes.get(at + RECORD_HEADER_LEN..at + RECORD_HEADER_LEN + len)?;
    let mut h = crc32fast::Hasher::new();
    h.update(&(len as u32).to_le_bytes());
    h.update(payload);
    (h.finalize() == crc).then_some(payload)
}

/// One event of a `version` segment: `(kind, verified, audible, subject)`
/// and the bytes it took before its day.
fn decode_kind(p: &[u8], at: usize, version: u32) -> Option<((Kind, bool, bool, Subject), usize)> {
    if version == VERSION_1 {
        let kind = match *p.get(at)? {
            V1_VIEWABLE => (Kind::Viewable, false, false, Subject::Ad),
            V1_MEASURABLE => (Kind::Measurable, false, false, Subject::Ad),
            V1_VIEWABLE_VERIFIED => (Kind::Viewable, true, false, Subject::Ad),
            _ => return None,
        };
        return Some((kind, 1));
    }
    let kind = *KINDS.get(usize::from(*p.get(at)?))?;
    let flags = *p.get(at + 1)?;
    if flags & !(EVENT_VERIFIED | EVENT_AUDIBLE | EVENT_POST) != 0 {
        return None;
    }
    let subject = if flags & EVENT_POST != 0 {
        Subject::Post
    } else {
        Subject::Ad
    };
    Some((
        (
            kind,
            flags & EVENT_VERIFIED != 0,
            flags & EVENT_AUDIBLE != 0,
            subject,
        ),
        2,
    ))
}

fn decode_payload(p: &[u8], version: u32) -> Option<Record<'_>> {
    let mut at = 0;
    let take_str = |at: &mut usize| -> Option<&str> {
        let len = u16_at(p, *at)? as usize;
        let s = std::str::from_utf8(p.get(*at + 2..*at + 2 + len)?).ok()?;
        *at += 2 + len;
        Some(s)
    };
    // A bit this version does not know would change how the batch counts:
    // damage, not something to guess at.
    let traffic = match *p.first()? {
        0 => Traffic::Valid,
        FLAG_INVALID_TRAFFIC => Traffic::Invalid,
        _ => return None,
    };
    at += 1;
    let received_ms = u64_at(p, at)? as i64;
    at += 8;
    let batch_id = take_str(&mut at)?;
    let n = u32_at(p, at)? as usize;
    at += 4;
    // Each event takes at least 9 bytes: a count beyond that is damage.
    let mut events = Vec::with_capacity(n.min(p.len() / 9));
    for _ in 0..n {
        let ((kind, verified, audible, subject), took) = decode_kind(p, at, version)?;
        let day = Day::from_days_since_epoch(u32_at(p, at + took)?);
        at += took + 4;
        let mut hour = 0;
        if version == VERSION {
            hour = *p.get(at).filter(|h| **h < 24)?;
            at += 1;
        }
        let subject_id = take_str(&mut at)?;
        let user_id = take_str(&mut at)?;
        let mut campaign_id = None;
        if version == VERSION {
            campaign_id = Some(take_str(&mut at)?)
                .filter(|c| !c.is_empty())
                .map(Cow::Borrowed);
        }
        events.push(Event {
            id: Cow::Borrowed(""),
            subject,
            subject_id: Cow::Borrowed(subject_id),
            user_id: Cow::Borrowed(user_id),
            kind,
            ts: day.start_ms() + i64::from(hour) * 3_600_000,
            day,
            token: None,
            verified,
            audible,
            campaign_id,
        });
    }
    (at == p.len()).then_some(Record {
        traffic,
        batch_id,
        received_ms,
        events,
    })
}

/// Bytes read from a segment and not yet consumed: at most one read chunk
/// and one record, whatever the file's size.
struct Window<R> {
    input: R,
    buf: Vec<u8>,
    /// Bytes of `buf` already consumed.
    start: usize,
    /// The file offset of `buf[0]`.
    base: usize,
    eof: bool,
}

/// How much one read asks for. Replay's memory is this plus one record.
const READ_CHUNK: usize = 256 * 1024;

impl<R: Read> Window<R> {
    fn available(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// The file offset of `available()[0]`.
    fn offset(&self) -> usize {
        self.base + self.start
    }

    fn advance(&mut self, n: usize) {
        self.start += n;
    }

    /// Reads until at least `want` bytes are available, or the input ends.
    fn fill(&mut self, want: usize) -> std::io::Result<()> {
        if self.available().len() >= want || self.eof {
            return Ok(());
        }
        self.buf.drain(..self.start);
        self.base += self.start;
        self.start = 0;
        while self.buf.len() < want && !self.eof {
            let have = self.buf.len();
            self.buf.resize(have + READ_CHUNK.max(want - have), 0);
            match self.input.read(&mut self.buf[have..]) {
                Ok(0) => {
                    self.eof = true;
                    self.buf.truncate(have);
                }
                Ok(n) => self.buf.truncate(have + n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => self.buf.truncate(have),
                Err(e) => {
                    self.buf.truncate(have);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// The offset of the first whole record with a good CRC at or after
    /// the current position, reading (and dropping) the input up to it.
    fn find_valid_record(&mut self) -> std::io::Result<Option<usize>> {
        loop {
            // Every position among the first READ_CHUNK bytes has a whole
            // record's worth of bytes after it (or the end of the input).
            self.fill(READ_CHUNK + RECORD_HEADER_LEN + MAX_PAYLOAD_LEN)?;
            let available = self.available();
            if available.is_empty() {
                return Ok(None);
            }
            let span = available.len().min(READ_CHUNK);
            if let Some(at) = (0..span).find(|p| framed_at(available, *p).is_some()) {
                return Ok(Some(self.offset() + at));
            }
            self.advance(span);
        }
    }
}

/// Reads a segment from `input`, handing each whole record to `each` in
/// order, in bounded memory ([`READ_CHUNK`] and one record at a time). A
/// torn tail ends the records and is reported in [`SegmentEnd::torn`];
/// damage with a valid record after it, a foreign or future header, or a
/// record that passes its CRC but does not parse is [`ReadError::Corrupt`].
pub fn read_segment<R: Read>(
    input: R,
    mut each: impl FnMut(&Record<'_>),
) -> Result<SegmentEnd, ReadError> {
    let corrupt = |offset, reason: &str| {
        ReadError::Corrupt(Corrupt {
            offset,
            reason: reason.to_owned(),
        })
    };
    let mut window = Window {
        input,
        buf: Vec::new(),
        start: 0,
        base: 0,
        eof: false,
    };
    window.fill(HEADER_LEN)?;
    let head = window.available();
    if head.len() < HEADER_LEN || head[..HEADER_LEN].iter().all(|b| *b == 0) {
        // Created, then the crash came before its header was on disk.
        return Ok(SegmentEnd {
            seq: None,
            torn: (!head.is_empty()).then_some(Torn {
                offset: 0,
                reason: "the file ends inside its header",
            }),
        });
    }
    if head[..8] != MAGIC {
        return Err(corrupt(0, "not a glimpse write-ahead log segment"));
    }
    let version = u32_at(head, 8).unwrap_or_default();
    if ![VERSION, VERSION_2, VERSION_1].contains(&version) {
        return Err(corrupt(
            8,
            &format!("format version {version}; this edge reads versions {VERSION_1} to {VERSION}"),
        ));
    }
    if crc32fast::hash(&head[..20]).to_le_bytes() != head[20..24] {
        return Err(corrupt(0, "the header's checksum does not match"));
    }
    let seq = u64_at(head, 12);
    window.advance(HEADER_LEN);
    loop {
        window.fill(RECORD_HEADER_LEN)?;
        if window.available().is_empty() {
            return Ok(SegmentEnd { seq, torn: None });
        }
        let len = (window.available().len() >= RECORD_HEADER_LEN)
            .then(|| u32_at(window.available(), 0).map(|l| l as usize))
            .flatten();
        if let Some(len) = len.filter(|l| *l <= MAX_PAYLOAD_LEN) {
            window.fill(RECORD_HEADER_LEN + len)?;
        }
        let at = window.offset();
        let available = window.available();
        if let Some(payload) = framed_at(available, 0) {
            let record = decode_payload(payload, version).ok_or_else(|| {
                corrupt(
                    at,
                    "a record with a valid checksum that does not parse (written by another version?)",
                )
            })?;
            each(&record);
            let consumed = RECORD_HEADER_LEN + payload.len();
            window.advance(consumed);
            continue;
        }
        // Damage. It is a torn tail only if nothing valid follows: a crash
        // can only cut the last, not yet durable, group short.
        let reason = match len {
            None => "a partial record header",
            Some(len) if len <= MAX_PAYLOAD_LEN && RECORD_HEADER_LEN + len > available.len() => {
                "a partial record"
            }
            Some(_) => "a record whose checksum does not match",
        };
        window.advance(1);
        if let Some(next) = window.find_valid_record()? {
            return Err(corrupt(
                at,
                &format!("a damaged record, followed by a valid one at offset {next}"),
            ));
        }
        return Ok(SegmentEnd {
            seq,
            torn: Some(Torn { offset: at, reason }),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev<'a>(ad: &'a str, user: &'a str, kind: Kind, day: u32) -> Event<'a> {
        let day = Day::from_days_since_epoch(day);
        Event {
            id: Cow::Borrowed(""),
            subject: Subject::Ad,
            subject_id: Cow::Borrowed(ad),
            user_id: Cow::Borrowed(user),
            kind,
            ts: day.start_ms(),
            day,
            token: None,
            verified: false,
            audible: false,
            campaign_id: None,
        }
    }

    /// A segment of three records and the offsets where each starts.
    fn sample() -> (Vec<u8>, Vec<usize>, Vec<Record<'static>>) {
        let records = vec![
            Record {
                traffic: Traffic::Valid,
                batch_id: "b-1",
                received_ms: 1_764_000_000_123,
                events: vec![
                    ev("ad-1", "u1", Kind::Viewable, 20_417),
                    ev("ad-1", "u1", Kind::Measurable, 20_417),
                    ev("ad-2", "ü-2", Kind::Viewable, 20_416),
                ],
            },
            Record {
                traffic: Traffic::Invalid,
                batch_id: "single/00ff",
                received_ms: -5,
                events: vec![],
            },
            Record {
                traffic: Traffic::Valid,
                batch_id: "b-3",
                received_ms: 7,
                events: vec![ev("ad-3", "u9", Kind::Measurable, 1)],
            },
        ];
        let mut bytes = header(42).to_vec();
        let mut starts = Vec::new();
        for r in &records {
            starts.push(bytes.len());
            encode_record(&mut bytes, r.traffic, r.batch_id, r.received_ms, &r.events);
        }
        (bytes, starts, records)
    }

    /// Reads `bytes` whole: how the segment ended, and its records (as
    /// their debug text, since they borrow the reader's buffer).
    fn decode(bytes: &[u8]) -> Result<(SegmentEnd, Vec<String>), ReadError> {
        let mut records = Vec::new();
        let end = read_segment(bytes, |r| records.push(format!("{r:?}")))?;
        Ok((end, records))
    }

    fn texts(records: &[Record<'_>]) -> Vec<String> {
        records.iter().map(|r| format!("{r:?}")).collect()
    }

    fn corrupt_offset(e: ReadError) -> usize {
        match e {
            ReadError::Corrupt(c) => c.offset,
            ReadError::Io(e) => panic!("a slice cannot fail to read: {e}"),
        }
    }

    #[test]
    fn round_trip() {
        let (bytes, _, records) = sample();
        let (end, got) = decode(&bytes).unwrap();
        assert_eq!(end.seq, Some(42));
        assert_eq!(end.torn, None);
        assert_eq!(got, texts(&records));
        // A header alone is an empty segment.
        let empty = header(7);
        let (end, got) = decode(&empty).unwrap();
        assert_eq!((end.seq, got.len()), (Some(7), 0));
    }

    #[test]
    fn a_tail_torn_at_any_byte_keeps_every_whole_record_before_it() {
        let (bytes, starts, records) = sample();
        for cut in 0..bytes.len() {
            let (end, got) = decode(&bytes[..cut]).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
            let whole = starts
                .iter()
                .enumerate()
                .filter(|(i, _)| starts.get(i + 1).copied().unwrap_or(bytes.len()) <= cut)
                .count();
            assert_eq!(got, texts(&records[..whole]), "cut at {cut}");
            if cut < HEADER_LEN {
                assert_eq!(end.seq, None);
            } else {
                let torn_at = starts.get(whole).copied().filter(|s| *s < cut);
                assert_eq!(end.torn.map(|t| t.offset), torn_at, "cut at {cut}");
            }
        }
    }

    #[test]
    fn a_bit_flipped_in_the_last_record_is_a_torn_tail_elsewhere_an_error() {
        let (bytes, starts, records) = sample();
        for byte in HEADER_LEN..bytes.len() {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[byte] ^= 1 << bit;
                let result = decode(&damaged);
                let record = starts.iter().rposition(|s| *s <= byte).unwrap();
                if record == records.len() - 1 {
                    let (end, got) = result.unwrap_or_else(|e| panic!("byte {byte}: {e}"));
                    assert_eq!(got, texts(&records[..record]));
                    assert_eq!(end.torn.unwrap().offset, starts[record]);
                } else {
                    let err = result.expect_err(&format!("byte {byte} bit {bit}"));
                    assert_eq!(corrupt_offset(err), starts[record], "byte {byte} bit {bit}");
                }
            }
        }
        for byte in 0..HEADER_LEN {
            let mut damaged = bytes.clone();
            damaged[byte] ^= 0x10;
            assert!(decode(&damaged).is_err(), "header byte {byte}");
        }
    }

    #[test]
    fn a_segment_longer_than_many_reads_streams_whole_and_damage_far_before_a_valid_record_is_found(
    ) {
        // Records of 500 events each, together several times READ_CHUNK.
        let users: Vec<String> = (0..500).map(|i| format!("visitor-{i}")).collect();
        let events: Vec<Event<'_>> = users
            .iter()
            .map(|u| ev("ad-1", u, Kind::Viewable, 20_417))
            .collect();
        let mut bytes = header(9).to_vec();
        let mut starts = Vec::new();
        while bytes.len() < 4 * READ_CHUNK {
            starts.push(bytes.len());
            let id = format!("b{}", starts.len());
            encode_record(&mut bytes, Traffic::Valid, &id, 1, &events);
        }
        let n = starts.len();
        let mut count = 0;
        let end = read_segment(bytes.as_slice(), |r| {
            count += 1;
            assert_eq!(r.batch_id, format!("b{count}"));
            assert_eq!(r.events.len(), 500);
        })
        .unwrap();
        assert_eq!((end.seq, end.torn, count), (Some(9), None, n));

        // Damage in the second record: the next valid one is found, and
        // that is corruption, not a tail.
        let mut damaged = bytes.clone();
        damaged[starts[1] + RECORD_HEADER_LEN + 3] ^= 1;
        let err = read_segment(damaged.as_slice(), |_| {}).unwrap_err();
        assert_eq!(corrupt_offset(err), starts[1]);
        // Damage in the last one, beyond the first reads: a torn tail.
        let mut damaged = bytes.clone();
        damaged[starts[n - 1] + RECORD_HEADER_LEN + 3] ^= 1;
        let (end, got) = decode(&damaged).unwrap();
        assert_eq!(
            (end.torn.unwrap().offset, got.len()),
            (starts[n - 1], n - 1)
        );
    }

    #[test]
    fn zeroed_pages_at_the_end_are_a_torn_tail() {
        let (mut bytes, starts, records) = sample();
        bytes.truncate(starts[2]);
        bytes.extend_from_slice(&[0; 4096]);
        let (end, got) = decode(&bytes).unwrap();
        assert_eq!(got, texts(&records[..2]));
        assert_eq!(end.torn.unwrap().offset, starts[2]);
    }

    #[test]
    fn foreign_files_and_future_versions_are_refused() {
        assert!(decode(b"not a wal segment at all, no").is_err());
        let mut h = header(1);
        h[8] = 4;
        let err = decode(&h).unwrap_err();
        assert!(err.to_string().contains("version 4"), "{err}");
    }

    #[test]
    fn verified_events_round_trip_and_an_unknown_kind_is_refused() {
        let verified = Event {
            verified: true,
            ..ev("ad-1", "u1", Kind::Viewable, 20_417)
        };
        let events = vec![verified, ev("ad-1", "u2", Kind::Viewable, 20_417)];
        let mut bytes = header(3).to_vec();
        encode_record(&mut bytes, Traffic::Valid, "b-v", 9, &events);
        let mut decoded = Vec::new();
        read_segment(bytes.as_slice(), |r| decoded.push(r.events == events)).unwrap();
        assert_eq!(decoded, [true]);

        // A kind byte no version writes, under a valid checksum: refused.
        let mut bytes = header(3).to_vec();
        encode_record(&mut bytes, Traffic::Valid, "b-x", 9, &events[..1]);
        let kind_at = HEADER_LEN + RECORD_HEADER_LEN + 1 + 8 + 2 + "b-x".len() + 4;
        assert_eq!((bytes[kind_at], bytes[kind_at + 1]), (0, EVENT_VERIFIED));
        for (at, byte) in [(kind_at, KINDS.len() as u8), (kind_at + 1, 8)] {
            let mut bytes = bytes.clone();
            bytes[at] = byte;
            reseal(&mut bytes);
            let err = decode(&bytes).unwrap_err();
            assert!(err.to_string().contains("does not parse"), "{err}");
        }
    }

    /// Recomputes the checksum of the one record after the header.
    fn reseal(bytes: &mut [u8]) {
        let payload = &bytes[HEADER_LEN + RECORD_HEADER_LEN..];
        let mut crc = crc32fast::Hasher::new();
        crc.update(&(payload.len() as u32).to_le_bytes());
        crc.update(payload);
        let crc = crc.finalize().to_le_bytes();
        bytes[HEADER_LEN + 4..HEADER_LEN + 8].copy_from_slice(&crc);
    }

    #[test]
    fn video_kinds_audible_and_posts_round_trip() {
        let post = Event {
            subject: Subject::Post,
            ..ev("p-1", "u1", Kind::Viewable, 20_417)
        };
        let audible = Event {
            audible: true,
            campaign_id: None,
            verified: true,
            ..ev("ad-v", "u1", Kind::Viewable, 20_417)
        };
        let mut events = vec![post, audible];
        for kind in &KINDS[1..] {
            events.push(ev("ad-v", "u2", *kind, 20_418));
        }
        let mut bytes = header(5).to_vec();
        encode_record(&mut bytes, Traffic::Valid, "b-video", 9, &events);
        let mut decoded = Vec::new();
        read_segment(bytes.as_slice(), |r| decoded.push(r.events == events)).unwrap();
        assert_eq!(decoded, [true]);
    }

    #[test]
    fn hours_and_campaigns_round_trip() {
        let day = Day::from_days_since_epoch(20_417);
        let at = |hour: i64| day.start_ms() + hour * 3_600_000;
        let events = vec![
            Event {
                ts: at(0),
                campaign_id: Some(Cow::Borrowed("fall-run")),
                ..ev("ad-1", "u1", Kind::Viewable, 20_417)
            },
            Event {
                ts: at(23),
                ..ev("ad-2", "u2", Kind::Measurable, 20_417)
            },
            Event {
                ts: at(13),
                campaign_id: Some(Cow::Borrowed("c")),
                ..ev("ad-2", "u3", Kind::Viewable, 20_417)
            },
        ];
        let mut bytes = header(5).to_vec();
        encode_record(&mut bytes, Traffic::Valid, "b-hours", 9, &events);
        let mut decoded = Vec::new();
        read_segment(bytes.as_slice(), |r| {
            let read: Vec<(u8, Option<String>)> = r
                .events
                .iter()
                .map(|e| (e.hour(), e.campaign_id.as_deref().map(str::to_owned)))
                .collect();
            decoded.push(read);
            assert_eq!(r.events, events);
        })
        .unwrap();
        assert_eq!(
            decoded,
            [vec![
                (0, Some("fall-run".to_owned())),
                (23, None),
                (13, Some("c".to_owned()))
            ]]
        );
    }

    #[test]
    fn a_version_2_segment_replays_into_its_days_at_hour_zero() {
        let events = vec![
            Event {
                audible: true,
                ..ev("vid-1", "u1", Kind::Viewable, 20_417)
            },
            ev("ad-2", "u2", Kind::VideoStart, 20_416),
        ];
        let mut bytes = header(7).to_vec();
        bytes[8..12].copy_from_slice(&VERSION_2.to_le_bytes());
        let crc = crc32fast::hash(&bytes[..20]);
        bytes[20..24].copy_from_slice(&crc.to_le_bytes());
        let mut payload = vec![0u8];
        payload.extend_from_slice(&9i64.to_le_bytes());
        put_str(&mut payload, "b-v2");
        payload.extend_from_slice(&(events.len() as u32).to_le_bytes());
        for e in &events {
            let kind = KINDS.iter().position(|k| *k == e.kind).unwrap();
            payload.push(kind as u8);
            payload.push(if e.audible { EVENT_AUDIBLE } else { 0 });
            payload.extend_from_slice(&e.day.days_since_epoch().to_le_bytes());
            put_str(&mut payload, &e.subject_id);
            put_str(&mut payload, &e.user_id);
        }
        frame(&mut bytes, &payload);
        let mut decoded = Vec::new();
        read_segment(bytes.as_slice(), |r| decoded.push(r.events == events)).unwrap();
        assert_eq!(decoded, [true]);
        assert!(events
            .iter()
            .all(|e| e.hour() == 0 && e.campaign_id.is_none()));
    }

    /// Appends `payload` framed by its length and CRC.
    fn frame(out: &mut Vec<u8>, payload: &[u8]) {
        let len = payload.len() as u32;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&len.to_le_bytes());
        crc.update(payload);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&crc.finalize().to_le_bytes());
        out.extend_from_slice(payload);
    }

    /// A record as version 1 wrote it: ads only, the kind byte saying
    /// viewable, measurable or viewable and verified.
    fn encode_v1_record(out: &mut Vec<u8>, batch_id: &str, events: &[Event<'_>]) {
        let mut payload = vec![0u8];
        payload.extend_from_slice(&9i64.to_le_bytes());
        put_str(&mut payload, batch_id);
        payload.extend_from_slice(&(events.len() as u32).to_le_bytes());
        for e in events {
            payload.push(match (e.kind, e.verified) {
                (Kind::Viewable, false) => V1_VIEWABLE,
                (Kind::Viewable, true) => V1_VIEWABLE_VERIFIED,
                _ => V1_MEASURABLE,
            });
            payload.extend_from_slice(&e.day.days_since_epoch().to_le_bytes());
            put_str(&mut payload, &e.subject_id);
            put_str(&mut payload, &e.user_id);
        }
        frame(out, &payload);
    }

    #[test]
    fn a_version_1_segment_replays_as_it_was_written() {
        let events = vec![
            Event {
                verified: true,
                ..ev("ad-1", "u1", Kind::Viewable, 20_417)
            },
            ev("ad-1", "u2", Kind::Viewable, 20_417),
            ev("ad-2", "u2", Kind::Measurable, 20_416),
        ];
        let mut bytes = header(7).to_vec();
        bytes[8..12].copy_from_slice(&VERSION_1.to_le_bytes());
        let crc = crc32fast::hash(&bytes[..20]);
        bytes[20..24].copy_from_slice(&crc.to_le_bytes());
        encode_v1_record(&mut bytes, "b-old", &events);
        let mut decoded = Vec::new();
        let end = read_segment(bytes.as_slice(), |r| {
            decoded.push((r.batch_id.to_owned(), r.events == events))
        })
        .unwrap();
        assert_eq!(
            end,
            SegmentEnd {
                seq: Some(7),
                torn: None
            }
        );
        assert_eq!(decoded, [("b-old".to_owned(), true)]);
        // The same bytes under a newer header do not parse: the header
        // says how to read them.
        bytes[8..12].copy_from_slice(&VERSION.to_le_bytes());
        let crc = crc32fast::hash(&bytes[..20]);
        bytes[20..24].copy_from_slice(&crc.to_le_bytes());
        assert!(decode(&bytes).is_err());
    }
}
