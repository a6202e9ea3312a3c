//! A file of batch-id fingerprints with their hour of arrival: each
//! store's duplicate check, sized for 1.7 billion ids (10,000 batches/s for
//! 48 h) in bounded memory, with one page read per lookup however many ids
//! it holds.
//!
//! This file depends on nothing else in the crate (std, `crc32fast`,
//! `rustix`, `xxhash-rust`), so the benchmark (`bench/src/bin/seen-index.rs`)
//! compiles it as it is.
//!
//! # Layout
//!
//! An id is hashed with XXH3-128 under a random 64-bit seed chosen when the
//! file is made and kept in its header, so nobody outside can aim ids at a
//! bucket. The file is 4 KiB pages: page 0 the header, then two pages per
//! bucket, `1 + 2b` its primary page and `2 + 2b` its overflow page. Buckets
//! are addressed by linear hashing on the hash's low bits: `2^level + split`
//! buckets, bucket `h mod 2^level`, or `h mod 2^(level + 1)` when that is
//! below `split`. While the slots in use (counting the ids a record is
//! about to add) pass half of the primary slots, the bucket at `split` is
//! split into itself and `split + 2^level`: one bucket at a time, two to
//! four page writes, never a rehash of the whole file. A record splits
//! first and inserts after, so a large record into a small file spreads
//! over the buckets it needs instead of piling into the few there were.
//! The file grows by the pages it writes; an overflow page is written only
//! for a bucket that needs one (a hole otherwise, and punched out again
//! when its bucket no longer does), so on disk it holds what its ids need
//! and `ls` shows up to twice that as the file's length. It never shrinks
//! (buckets are not merged): its size follows the most ids it held at once
//! within a retention, which for an edge is its busiest 48 h.
//!
//! A page is a 24-byte header (CRC-32 of the rest, its own page number, a
//! base hour, a slot count, a flag for "my overflow page is in use") and 509
//! slots of 8 bytes. A slot is 6 bits of hour, an offset from the page's
//! base hour, and 58 bits of key: the hash bits just above the bucket's
//! address bits, with a 1 bit above them that marks where they start (so an
//! empty slot is 0). A bucket's ids share their low address bits, which the
//! bucket number holds; each split moves the lowest key bit into the
//! address, so the key loses one bit and the id keeps every bit it had. An
//! id inserted now carries 57 key bits; after 57 more doublings (never, in
//! practice) a key with no bits left is dropped at the next split.
//!
//! # Expiry
//!
//! A slot's hour is the hour the batch was received, clamped to the time
//! passed to `record`. It is gone once its whole hour is older than the
//! retention (48 h): ids are kept between 48 and 49 h. Expired slots are
//! free: they are dropped whenever their bucket is written (each insert
//! into it, each split), so no second table of times is needed. Lookups
//! treat a slot as expired by the time of the last `record`, as the
//! earlier redb index forgot ids when a sync ran.
//!
//! # False "seen"
//!
//! A lookup answers "seen" wrongly (and a batch is lost) only if a slot of
//! its bucket holds the same key bits. An id inserted at the current size
//! has `57` key bits, so each slot it meets matches by chance with
//! probability `2^-57`; a key that has lost `d` bits to splits matches with
//! `2^-(57 - d)`, but such slots are few, because the file held at most
//! `2^-d` of today's ids when they were written. At 1.7 billion ids
//! (6.7 M buckets of about 254 slots in use under the split rule above), a
//! lookup meets about 254 fresh slots: `254 x 2^-57 = 1.8e-15`, plus at most
//! `254 x 2^-57` for each of the 23 doublings since the file was one bucket
//! (`4.2e-14` in all, if it grew from nothing within the 48 h). Over
//! 1.7 billion lookups that is an expected 3e-6 lost batches per 48 h at a
//! steady size, 7e-5 at most while growing from empty: one batch in 10^13
//! to 10^14 counted. Lookups land more often in the fuller, unsplit
//! buckets, but no bucket holds more than twice the mean before it splits,
//! so those figures at most double. (A fixed 64-bit fingerprint with the
//! bucket bits kept apart would not do: a split must know each id's next
//! address bit.)
//!
//! # Size and cost
//!
//! Splitting at half the primary slots keeps every bucket below its 509
//! slots until the end of a round of splits, when the last unsplit buckets
//! are about full and a few need their overflow page. On disk that is about
//! `4096 / (0.5 x 509) = 16.1` bytes per id: 27.4 GB (25.5 GiB) at
//! 1.7 billion ids, within the 32 GiB they are allowed. A lookup hashes the
//! id, reads the bucket's primary page (one `pread`, served by the
//! kernel's page cache when it holds it) and the overflow page only when
//! the flag says so. The process holds no page beyond the one it reads:
//! its memory does not grow with the file.
//!
//! A record reads and writes one or two pages per bucket its ids land in,
//! then syncs: at 1.7 billion ids a sync of 10,000 ids touches about
//! 10,000 buckets, 40 MB of page writes per second at 10,000 batches/s.
//! That is the price of a hash file that takes each id where it will be
//! looked up; a log of fingerprints merged later would write less but
//! would need several reads per lookup, or memory for the newest ids, and
//! one read per lookup in constant memory is what the duplicate check is
//! for. `docs/BENCHMARKS.md` has the measured costs. A bucket whose ids
//! pass its two pages drops its oldest: at the split rule's fill that takes
//! a bucket at more than four times the mean, which random ids under a
//! secret seed do not reach.
//!
//! # Crash safety
//!
//! A record works out all its page writes first, reading the file and
//! writing nothing. It then writes the final image of every page it
//! changes, and the header it ends with, to a journal beside the file
//! (`<path>.journal`: magic, count, `(page, write or release, image)`
//! entries, the header copy, a CRC-32 of it all) and `fdatasync`s it; only
//! then does it write the pages in place, `fdatasync`, write the header
//! into one of two copies in page 0, in turn, and sync again. Opening reads
//! the copy with the higher sequence number whose checksum holds, then the
//! journal: a whole journal whose header is newer than the file's (same
//! seed) is a record a crash cut short, and its pages and header are
//! written again (whole images, so twice is harmless); a torn journal is a
//! record that had not begun to write the file, which is as it was before.
//! So a crash leaves the file as before a record or after it, never
//! between: no id recorded earlier is lost with a split or a bucket the
//! crash cut short, which the embedded store needs, since nothing behind
//! the file catches a re-sent batch there. (The Redis store's claims in
//! Redis would.) The journal costs a sequential write of about the pages'
//! own bytes and one more sync per record, and memory for the record's
//! page images until they are written: two pages per bucket it touches, at
//! most about 80 MB for a sync of 10,000 ids at 1.7 billion. A page whose
//! checksum or number does not hold (a disk that tore a write) reads as
//! empty and is counted (`torn_pages`).

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock};

use xxhash_rust::xxh3::xxh3_128_with_seed;

const PAGE_BYTES: usize = 4096;
const PAGE_HEADER_BYTES: usize = 24;
const SLOT_BYTES: usize = 8;
/// Slots of one page.
pub const SLOTS_PER_PAGE: usize = (PAGE_BYTES - PAGE_HEADER_BYTES) / SLOT_BYTES;
/// The share of primary slots in use past which a bucket is split.
const SPLIT_FILL: f64 = 0.5;

const HOUR_MS: i64 = 3_600_000;
const HOUR_BITS: u32 = 6;
const MAX_HOUR_OFFSET: u32 = (1 << HOUR_BITS) - 1;
const KEY_BITS: u32 = 64 - HOUR_BITS;
const KEY_MASK: u64 = (1 << KEY_BITS) - 1;
/// The key bits of an id inserted now (one bit of the key is the marker).
const FRESH_KEY_BITS: u32 = KEY_BITS - 1;
/// A key whose marker is all that is left: no bit to split it by.
const SPENT_KEY: u64 = 1;

/// Page flag: the bucket's overflow page holds slots too.
const HAS_OVERFLOW: u8 = 1;

const MAGIC: [u8; 8] = *b"GLSEENIX";
const JOURNAL_MAGIC: [u8; 8] = *b"GLSEENJR";
/// A journal entry's head: the page number and what happens to it.
const JOURNAL_ENTRY_BYTES: usize = 16;
const JOURNAL_WRITE: u64 = 1;
const JOURNAL_RELEASE: u64 = 0;
const FORMAT_VERSION: u32 = 1;
const HEADER_COPY_BYTES: usize = PAGE_BYTES / 2;
const HEADER_FIELDS_BYTES: usize = 68;
/// More buckets than any disk holds (2^48 pages of 4 KiB): a header beyond
/// it is corrupt.
const MAX_LEVEL: u32 = 48;

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Where the file is and what it holds, as the last header says.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    seed: u64,
    seq: u64,
    level: u32,
    split: u64,
    /// Slots in use, expired ones not yet dropped included.
    occupied: u64,
    /// The time of the last `record`, by which slots are expired.
    now_ms: i64,
}

impl Geometry {
    fn buckets(&self) -> u64 {
        (1u64 << self.level) + self.split
    }

    /// The bucket of `hash` and the number of address bits it takes.
    fn bucket_of(&self, hash: u128) -> (u64, u32) {
        let low = hash as u64;
        let bucket = low & ((1u64 << self.level) - 1);
        if bucket < self.split {
            (low & ((1u64 << (self.level + 1)) - 1), self.level + 1)
        } else {
            (bucket, self.level)
        }
    }

    /// Whether the file, with `incoming` more slots in use, is past the
    /// split rule's fill.
    fn wants_split(&self, incoming: u64) -> bool {
        (self.occupied + incoming) as f64
            > SPLIT_FILL * (SLOTS_PER_PAGE as u64 * self.buckets()) as f64
    }

    fn encode(&self) -> [u8; HEADER_COPY_BYTES] {
        let mut out = [0u8; HEADER_COPY_BYTES];
        out[0..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[12..16].copy_from_slice(&(PAGE_BYTES as u32).to_le_bytes());
        out[16..20].copy_from_slice(&(SLOT_BYTES as u32).to_le_bytes());
        out[20..24].copy_from_slice(&((HOUR_MS / 1000) as u32).to_le_bytes());
        out[24..32].copy_from_slice(&self.seed.to_le_bytes());
        out[32..40].copy_from_slice(&self.seq.to_le_bytes());
        out[40..44].copy_from_slice(&self.level.to_le_bytes());
        out[44..52].copy_from_slice(&self.split.to_le_bytes());
        out[52..60].copy_from_slice(&self.occupied.to_le_bytes());
        out[60..68].copy_from_slice(&self.now_ms.to_le_bytes());
        let crc = crc32fast::hash(&out[..HEADER_FIELDS_BYTES]);
        out[HEADER_FIELDS_BYTES..HEADER_FIELDS_BYTES + 4].copy_from_slice(&crc.to_le_bytes());
        out
    }

    fn decode(copy: &[u8]) -> Result<Geometry, HeaderFault> {
        let u32_at = |at: usize| u32::from_le_bytes(copy[at..at + 4].try_into().unwrap());
        let u64_at = |at: usize| u64::from_le_bytes(copy[at..at + 8].try_into().unwrap());
        if copy[0..8] != MAGIC {
            return Err(HeaderFault::NoMagic);
        }
        let version = u32_at(8);
        if version != FORMAT_VERSION {
            return Err(HeaderFault::Version(version));
        }
        if crc32fast::hash(&copy[..HEADER_FIELDS_BYTES]) != u32_at(HEADER_FIELDS_BYTES) {
            return Err(HeaderFault::Checksum);
        }
        let (page, slot, hour) = (u32_at(12), u32_at(16), u32_at(20));
        if (page, slot, hour)
            != (
                PAGE_BYTES as u32,
                SLOT_BYTES as u32,
                (HOUR_MS / 1000) as u32,
            )
        {
            return Err(HeaderFault::Geometry(format!(
                "pages of {page} bytes, slots of {slot} bytes, time in units of {hour} s; \
                 this build uses {PAGE_BYTES}, {SLOT_BYTES} and {}",
                HOUR_MS / 1000
            )));
        }
        let geometry = Geometry {
            seed: u64_at(24),
            seq: u64_at(32),
            level: u32_at(40),
            split: u64_at(44),
            occupied: u64_at(52),
            now_ms: u64_at(60) as i64,
        };
        if geometry.level > MAX_LEVEL || geometry.split >= 1u64 << geometry.level {
            return Err(HeaderFault::Geometry(format!(
                "level {} with split {} is out of range",
                geometry.level, geometry.split
            )));
        }
        Ok(geometry)
    }
}

/// Why a header copy cannot be used.
#[derive(Debug)]
enum HeaderFault {
    NoMagic,
    Version(u32),
    Checksum,
    Geometry(String),
}

/// One slot, its hour absolute.
#[derive(Debug, Clone, Copy)]
struct Slot {
    hour: u32,
    key: u64,
}

/// A bucket's slots as read from its pages.
#[derive(Debug, Default)]
struct Bucket {
    slots: Vec<Slot>,
    overflow_in_use: bool,
}

fn hour_of(ms: i64) -> u32 {
    (ms.max(0) / HOUR_MS) as u32
}

fn expired(hour: u32, now_ms: i64, retention_ms: i64) -> bool {
    (i64::from(hour) + 1) * HOUR_MS + retention_ms <= now_ms
}

/// What an id's slot in its bucket looks like: the key it gets when
/// inserted now, and the hash bits its older, shorter keys compare with.
#[derive(Debug, Clone, Copy)]
struct Probe {
    fresh: u64,
    above_address: u64,
}

impl Probe {
    fn new(hash: u128, address_bits: u32) -> Probe {
        let above_address = (hash >> address_bits) as u64;
        Probe {
            fresh: (1u64 << FRESH_KEY_BITS) | (above_address & ((1u64 << FRESH_KEY_BITS) - 1)),
            above_address,
        }
    }

    /// Whether `key` is this id's. Nearly every key has all its bits (the
    /// first comparison, the one a lookup makes hundreds of times); a key
    /// that lost bits to splits compares on the bits it kept.
    fn matches(&self, key: u64) -> bool {
        if key == self.fresh {
            return true;
        }
        if key >> FRESH_KEY_BITS != 0 {
            return false;
        }
        let bits = 63 - key.leading_zeros();
        (key ^ self.above_address) & ((1u64 << bits) - 1) == 0
    }
}

fn primary_page(bucket: u64) -> u64 {
    1 + 2 * bucket
}

fn overflow_page(bucket: u64) -> u64 {
    2 + 2 * bucket
}

/// The page's header fields if its checksum and number hold.
fn check_page(buf: &[u8; PAGE_BYTES], page: u64) -> Option<(u32, usize, u8)> {
    let crc = u32::from_le_bytes(buf[0..4].try_into().unwrap());
    let number = u64::from_le_bytes(buf[4..12].try_into().unwrap());
    let base = u32::from_le_bytes(buf[12..16].try_into().unwrap());
    let count = usize::from(u16::from_le_bytes(buf[16..18].try_into().unwrap()));
    let valid = number == page && count <= SLOTS_PER_PAGE && crc32fast::hash(&buf[4..]) == crc;
    valid.then_some((base, count, buf[18]))
}

fn slot_at(buf: &[u8; PAGE_BYTES], base: u32, index: usize) -> Slot {
    let at = PAGE_HEADER_BYTES + index * SLOT_BYTES;
    let raw = u64::from_le_bytes(buf[at..at + SLOT_BYTES].try_into().unwrap());
    Slot {
        hour: base + (raw >> KEY_BITS) as u32,
        key: raw & KEY_MASK,
    }
}

/// Page `page` holding `slots` (at most a page's worth). The base hour is the
/// oldest slot's, raised when the newest would not fit in the offset; slots
/// older than it are kept as of the base, a little longer than asked.
fn encode_page(page: u64, slots: &[Slot], flags: u8) -> [u8; PAGE_BYTES] {
    let newest = slots.iter().map(|s| s.hour).max().unwrap_or(0);
    let oldest = slots.iter().map(|s| s.hour).min().unwrap_or(0);
    let base = oldest.max(newest.saturating_sub(MAX_HOUR_OFFSET));
    let mut buf = [0u8; PAGE_BYTES];
    buf[4..12].copy_from_slice(&page.to_le_bytes());
    buf[12..16].copy_from_slice(&base.to_le_bytes());
    buf[16..18].copy_from_slice(&(slots.len() as u16).to_le_bytes());
    buf[18] = flags;
    for (index, slot) in slots.iter().enumerate() {
        let raw = (u64::from(slot.hour.max(base) - base) << KEY_BITS) | slot.key;
        let at = PAGE_HEADER_BYTES + index * SLOT_BYTES;
        buf[at..at + SLOT_BYTES].copy_from_slice(&raw.to_le_bytes());
    }
    let crc = crc32fast::hash(&buf[4..]);
    buf[0..4].copy_from_slice(&crc.to_le_bytes());
    buf
}

/// A page write, or a page given back to the file system.
#[derive(Debug)]
enum PageWrite {
    Write(u64, Box<[u8; PAGE_BYTES]>),
    Release(u64),
}

impl PageWrite {
    fn page(&self) -> u64 {
        match self {
            PageWrite::Write(page, _) | PageWrite::Release(page) => *page,
        }
    }
}

/// A record's writes, worked out before any is made: each step's writes
/// with the geometry lookups use once they are made, and where each page's
/// last write is, so that the record reads what it wrote before.
#[derive(Debug, Default)]
struct Staged {
    steps: Vec<(Vec<PageWrite>, Geometry)>,
    /// Page -> (step, index of the write in that step).
    latest: HashMap<u64, (usize, usize)>,
}

impl Staged {
    fn push(&mut self, writes: Vec<PageWrite>, geometry: Geometry) {
        let step = self.steps.len();
        for (index, write) in writes.iter().enumerate() {
            self.latest.insert(write.page(), (step, index));
        }
        self.steps.push((writes, geometry));
    }

    fn latest(&self, page: u64) -> Option<&PageWrite> {
        self.latest
            .get(&page)
            .map(|&(step, index)| &self.steps[step].0[index])
    }
}

/// A record worked out and not yet written
/// ([`FingerprintFile::stage_record`]): it holds the file's writer, and the
/// images of the pages it writes.
pub struct StagedRecord<'f> {
    file: &'f FingerprintFile,
    _writer: MutexGuard<'f, ()>,
    staged: Staged,
    geometry: Geometry,
    held: Vec<bool>,
}

impl StagedRecord<'_> {
    /// One answer per id staged, in order: whether the file held it before
    /// this record, unexpired at the record's time.
    pub fn held(&self) -> &[bool] {
        &self.held
    }

    /// Writes the record through the journal, durable before it returns.
    pub fn write(self) -> io::Result<()> {
        if !self.staged.steps.is_empty() {
            self.file.write_journal(&self.staged, &self.geometry)?;
        }
        self.file.apply(&self.staged.steps, self.geometry)
    }
}

/// Writes the journal in large pieces, keeping its checksum.
struct JournalWriter<'a> {
    file: &'a File,
    offset: u64,
    buf: Vec<u8>,
    crc: crc32fast::Hasher,
}

impl JournalWriter<'_> {
    const FLUSH_BYTES: usize = 1 << 20;

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.crc.update(bytes);
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= Self::FLUSH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.write_all_at(&self.buf, self.offset)?;
        self.offset += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }
}

/// A whole journal: the final write of each page a record makes, and the
/// header it ends with. `None` for an empty, torn or foreign journal.
fn parse_journal(bytes: &[u8]) -> Option<(Vec<PageWrite>, Geometry)> {
    let u64_at = |at: usize| Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?));
    if bytes.get(0..8)? != JOURNAL_MAGIC {
        return None;
    }
    let count = u64_at(8)?;
    let mut at = 16;
    let mut writes = Vec::new();
    for _ in 0..count {
        let (page, kind) = (u64_at(at)?, u64_at(at + 8)?);
        at += JOURNAL_ENTRY_BYTES;
        writes.push(match kind {
            JOURNAL_WRITE => {
                let image: [u8; PAGE_BYTES] = bytes.get(at..at + PAGE_BYTES)?.try_into().ok()?;
                at += PAGE_BYTES;
                PageWrite::Write(page, Box::new(image))
            }
            JOURNAL_RELEASE => PageWrite::Release(page),
            _ => return None,
        });
    }
    let header = bytes.get(at..at + HEADER_COPY_BYTES)?;
    at += HEADER_COPY_BYTES;
    let crc = u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?);
    if crc32fast::hash(&bytes[..at]) != crc {
        return None;
    }
    Some((writes, Geometry::decode(header).ok()?))
}

/// What the file holds and what it takes on disk.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(test), allow(dead_code))] // read by the tests and the benchmark
pub struct Usage {
    /// Slots in use (expired ones not yet dropped included).
    pub occupied: u64,
    pub buckets: u64,
    /// Bytes the file system allocated to the file.
    pub disk_bytes: u64,
    /// The file's length, holes included.
    pub length_bytes: u64,
}

/// The fingerprint file. Lookups may run on any thread at once; records
/// run one at a time.
#[derive(Debug)]
pub struct FingerprintFile {
    file: File,
    /// The record in flight, whole, written before any of its pages
    /// (`<path>.journal`).
    journal: File,
    retention_ms: i64,
    /// Held shared by a lookup across its reads, exclusive while pages are
    /// written, so a lookup never meets a half-written page or a bucket
    /// moved under it.
    geometry: RwLock<Geometry>,
    writer: Mutex<()>,
    lookup_page_reads: AtomicU64,
    torn_pages: AtomicU64,
}

impl FingerprintFile {
    /// Opens the file at `path`, making it if it is missing or empty. A
    /// header that is not this format's is an error that says what it is.
    pub fn open(path: &Path, retention_ms: i64) -> io::Result<FingerprintFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let length = file.metadata()?.len();
        let mut header = [0u8; PAGE_BYTES];
        let readable = (length as usize).min(PAGE_BYTES);
        file.read_exact_at(&mut header[..readable], 0)?;
        let geometry = if header.iter().all(|&b| b == 0) {
            // New, or made by a start that crashed before its header was
            // written: nothing in it to keep.
            let geometry = Geometry {
                seed: RandomState::new().build_hasher().finish(),
                seq: 0,
                level: 0,
                split: 0,
                occupied: 0,
                now_ms: 0,
            };
            let mut page = [0u8; PAGE_BYTES];
            page[..HEADER_COPY_BYTES].copy_from_slice(&geometry.encode());
            file.set_len(0)?;
            file.write_all_at(&page, 0)?;
            file.sync_all()?;
            geometry
        } else if length < PAGE_BYTES as u64 {
            return Err(invalid(format!(
                "not a seen-index file: {length} bytes, shorter than its header"
            )));
        } else {
            Self::choose_header(&header)?
        };
        let mut journal_path = path.as_os_str().to_owned();
        journal_path.push(".journal");
        let journal = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(journal_path)?;
        // Both files' names durable, so that a journal written later is
        // found after a crash.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        let opened = FingerprintFile {
            file,
            journal,
            retention_ms,
            geometry: RwLock::new(geometry),
            writer: Mutex::new(()),
            lookup_page_reads: AtomicU64::new(0),
            torn_pages: AtomicU64::new(0),
        };
        opened.finish_journaled_record()?;
        Ok(opened)
    }

    /// Finishes the record a crash cut short: when the journal is whole and
    /// newer than the header, its pages and header are written again
    /// (they are whole page images, so writing them twice is harmless).
    /// A torn journal is a record that had not begun to write its pages.
    fn finish_journaled_record(&self) -> io::Result<()> {
        let length = self.journal.metadata()?.len();
        if length == 0 {
            return Ok(());
        }
        let mut bytes = vec![0u8; length as usize];
        self.journal.read_exact_at(&mut bytes, 0)?;
        let current = *self.geometry_shared();
        let Some((writes, geometry)) =
            parse_journal(&bytes).filter(|(_, g)| g.seed == current.seed && g.seq > current.seq)
        else {
            return Ok(());
        };
        self.apply(&[(writes, geometry)], geometry)
    }

    /// The newer of the two header copies that is whole.
    fn choose_header(page: &[u8; PAGE_BYTES]) -> io::Result<Geometry> {
        let copies = [
            Geometry::decode(&page[..HEADER_COPY_BYTES]),
            Geometry::decode(&page[HEADER_COPY_BYTES..]),
        ];
        let newest = copies
            .iter()
            .filter_map(|copy| copy.as_ref().ok())
            .max_by_key(|geometry| geometry.seq);
        if let Some(geometry) = newest {
            return Ok(*geometry);
        }
        let faults = copies.into_iter().filter_map(Result::err);
        let worst = faults
            .max_by_key(|fault| match fault {
                HeaderFault::NoMagic => 0,
                HeaderFault::Checksum => 1,
                HeaderFault::Geometry(_) => 2,
                HeaderFault::Version(_) => 3,
            })
            .unwrap_or(HeaderFault::NoMagic);
        Err(invalid(match worst {
            HeaderFault::NoMagic => "not a seen-index file: no header".to_owned(),
            HeaderFault::Version(version) => format!(
                "seen-index format version {version}; this build reads version {FORMAT_VERSION}"
            ),
            HeaderFault::Checksum => {
                "seen-index header corrupt: neither copy's checksum holds".to_owned()
            }
            HeaderFault::Geometry(what) => format!("seen-index header: {what}"),
        }))
    }

    fn geometry_shared(&self) -> std::sync::RwLockReadGuard<'_, Geometry> {
        self.geometry.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads page `page`: `None` for a hole, a page past the end, or a page
    /// whose checksum or number does not hold (torn by a crash).
    fn read_page(
        &self,
        page: u64,
        buf: &mut [u8; PAGE_BYTES],
    ) -> io::Result<Option<(u32, usize, u8)>> {
        let mut filled = 0;
        while filled < PAGE_BYTES {
            match self
                .file
                .read_at(&mut buf[filled..], page * PAGE_BYTES as u64 + filled as u64)
            {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf[filled..].fill(0);
        let checked = check_page(buf, page);
        if checked.is_none() && buf.iter().any(|&b| b != 0) {
            self.torn_pages.fetch_add(1, Ordering::Relaxed);
        }
        Ok(checked)
    }

    /// Whether `id` was recorded and has not expired.
    pub fn contains(&self, id: &[u8]) -> io::Result<bool> {
        let geometry = self.geometry_shared();
        let hash = xxh3_128_with_seed(id, geometry.seed);
        let (bucket, address_bits) = geometry.bucket_of(hash);
        let mut buf = [0u8; PAGE_BYTES];
        for page in [primary_page(bucket), overflow_page(bucket)] {
            self.lookup_page_reads.fetch_add(1, Ordering::Relaxed);
            let Some((base, count, flags)) = self.read_page(page, &mut buf)? else {
                return Ok(false);
            };
            let probe = Probe::new(hash, address_bits);
            // Decoding a slot only once its key matches keeps this loop to
            // a load, a mask and a comparison per slot.
            let found = buf[PAGE_HEADER_BYTES..PAGE_HEADER_BYTES + count * SLOT_BYTES]
                .chunks_exact(SLOT_BYTES)
                .map(|raw| u64::from_le_bytes(raw.try_into().unwrap()))
                .any(|raw| {
                    probe.matches(raw & KEY_MASK)
                        && !expired(
                            base + (raw >> KEY_BITS) as u32,
                            geometry.now_ms,
                            self.retention_ms,
                        )
                });
            if found {
                return Ok(true);
            }
            if flags & HAS_OVERFLOW == 0 {
                return Ok(false);
            }
        }
        Ok(false)
    }

    /// Reads page `page` as the record staging `staged` will leave it.
    fn read_staged_page(
        &self,
        page: u64,
        staged: &Staged,
        buf: &mut [u8; PAGE_BYTES],
    ) -> io::Result<Option<(u32, usize, u8)>> {
        match staged.latest(page) {
            Some(PageWrite::Write(_, image)) => {
                buf.copy_from_slice(&image[..]);
                Ok(check_page(buf, page))
            }
            Some(PageWrite::Release(_)) => Ok(None),
            None => self.read_page(page, buf),
        }
    }

    /// Reads a bucket's slots, both pages, for a writer.
    fn read_bucket(&self, bucket: u64, staged: &Staged) -> io::Result<Bucket> {
        let mut buf = [0u8; PAGE_BYTES];
        let mut read = Bucket::default();
        let Some((base, count, flags)) =
            self.read_staged_page(primary_page(bucket), staged, &mut buf)?
        else {
            return Ok(read);
        };
        read.slots
            .extend((0..count).map(|i| slot_at(&buf, base, i)));
        if flags & HAS_OVERFLOW != 0 {
            read.overflow_in_use = true;
            if let Some((base, count, _)) =
                self.read_staged_page(overflow_page(bucket), staged, &mut buf)?
            {
                read.slots
                    .extend((0..count).map(|i| slot_at(&buf, base, i)));
            }
        }
        Ok(read)
    }

    /// The writes that store `slots` as `bucket`, and how many slots did
    /// not fit in its two pages (the oldest, dropped: a bucket past twice
    /// its page never happens at the split rule's fill).
    fn bucket_writes(
        bucket: u64,
        mut slots: Vec<Slot>,
        overflow_was_in_use: bool,
        writes: &mut Vec<PageWrite>,
    ) -> u64 {
        let mut dropped = 0;
        if slots.len() > 2 * SLOTS_PER_PAGE {
            slots.sort_unstable_by_key(|slot| std::cmp::Reverse(slot.hour));
            dropped = (slots.len() - 2 * SLOTS_PER_PAGE) as u64;
            slots.truncate(2 * SLOTS_PER_PAGE);
        }
        if slots.len() > SLOTS_PER_PAGE {
            let page = overflow_page(bucket);
            let overflow = encode_page(page, &slots[SLOTS_PER_PAGE..], 0);
            writes.push(PageWrite::Write(page, Box::new(overflow)));
            let page = primary_page(bucket);
            let primary = encode_page(page, &slots[..SLOTS_PER_PAGE], HAS_OVERFLOW);
            writes.push(PageWrite::Write(page, Box::new(primary)));
        } else {
            let page = primary_page(bucket);
            writes.push(PageWrite::Write(
                page,
                Box::new(encode_page(page, &slots, 0)),
            ));
            if overflow_was_in_use {
                writes.push(PageWrite::Release(overflow_page(bucket)));
            }
        }
        dropped
    }

    /// Applies `writes` and makes `geometry` the one lookups use, as one
    /// step for them.
    fn publish(&self, writes: &[PageWrite], geometry: Geometry) -> io::Result<()> {
        let mut shared = self.geometry.write().unwrap_or_else(|e| e.into_inner());
        for write in writes {
            match write {
                PageWrite::Write(page, buf) => {
                    self.file.write_all_at(&buf[..], page * PAGE_BYTES as u64)?;
                }
                PageWrite::Release(page) => self.release_page(*page)?,
            }
        }
        *shared = geometry;
        Ok(())
    }

    /// Gives a page's blocks back to the file system; where holes cannot be
    /// punched, the page is zeroed instead (and reads as empty).
    fn release_page(&self, page: u64) -> io::Result<()> {
        let offset = page * PAGE_BYTES as u64;
        let punched = rustix::fs::fallocate(
            &self.file,
            rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE,
            offset,
            PAGE_BYTES as u64,
        );
        if punched.is_err() {
            self.file.write_all_at(&[0u8; PAGE_BYTES], offset)?;
        }
        Ok(())
    }

    /// Stages the split of the bucket at `geometry.split`.
    fn split(&self, geometry: &mut Geometry, staged: &mut Staged) -> io::Result<()> {
        let bucket = geometry.split;
        let image = bucket + (1u64 << geometry.level);
        let read = self.read_bucket(bucket, staged)?;
        let (mut stay, mut moved) = (Vec::new(), Vec::new());
        for slot in read.slots {
            if expired(slot.hour, geometry.now_ms, self.retention_ms) || slot.key == SPENT_KEY {
                geometry.occupied = geometry.occupied.saturating_sub(1);
                continue;
            }
            let next = Slot {
                hour: slot.hour,
                key: slot.key >> 1,
            };
            if slot.key & 1 == 0 {
                stay.push(next);
            } else {
                moved.push(next);
            }
        }
        geometry.split += 1;
        if geometry.split == 1u64 << geometry.level {
            geometry.level += 1;
            geometry.split = 0;
        }
        let mut writes = Vec::with_capacity(4);
        let mut dropped = Self::bucket_writes(image, moved, false, &mut writes);
        dropped += Self::bucket_writes(bucket, stay, read.overflow_in_use, &mut writes);
        geometry.occupied = geometry.occupied.saturating_sub(dropped);
        staged.push(writes, *geometry);
        Ok(())
    }

    /// Records `ids` (each with the time its batch was received) as of
    /// `now_ms`, dropping the expired slots of every bucket it writes, and
    /// makes it all durable before it returns. An id recorded already keeps
    /// its first time. A crash leaves the file as it was before the call or
    /// as it is after, never between: every page the record writes goes to
    /// the journal first.
    #[allow(dead_code)] // the benchmark compiles this file and records as a sync does
    pub fn record<'a>(
        &self,
        ids: impl IntoIterator<Item = (&'a [u8], i64)>,
        now_ms: i64,
    ) -> io::Result<()> {
        self.stage_record(ids, now_ms)?.write()
    }

    /// Works out the record of `ids` as [`FingerprintFile::record`] makes
    /// it, reading the pages it will write and writing nothing, and answers
    /// which ids the file held before it, from the same reads: what
    /// [`FingerprintFile::contains`] would say with `now_ms` the time its
    /// expiry is judged by (a lookup judges by the last record's time).
    /// Until the record is written or dropped no other record begins;
    /// lookups go on.
    pub fn stage_record<'a>(
        &self,
        ids: impl IntoIterator<Item = (&'a [u8], i64)>,
        now_ms: i64,
    ) -> io::Result<StagedRecord<'_>> {
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let (staged, geometry, held) = self.stage(ids, now_ms)?;
        Ok(StagedRecord {
            file: self,
            _writer: writer,
            staged,
            geometry,
            held,
        })
    }

    /// Works out the writes of a record, reading the file but writing
    /// nothing, the header it ends with, and which ids the file held before
    /// it (one answer per id, in order).
    fn stage<'a>(
        &self,
        ids: impl IntoIterator<Item = (&'a [u8], i64)>,
        now_ms: i64,
    ) -> io::Result<(Staged, Geometry, Vec<bool>)> {
        let mut staged = Staged::default();
        let mut geometry = *self.geometry_shared();
        geometry.now_ms = geometry.now_ms.max(now_ms);
        let hashed: Vec<(u128, u32)> = ids
            .into_iter()
            .map(|(id, received_ms)| {
                let hash = xxh3_128_with_seed(id, geometry.seed);
                (hash, hour_of(received_ms.min(geometry.now_ms)))
            })
            .collect();
        // An id past its retention already is held nowhere (its slot, if
        // any, is older still) and would only take a slot that no lookup
        // can find.
        let mut held = vec![false; hashed.len()];
        let live: Vec<(usize, u128, u32)> = hashed
            .into_iter()
            .enumerate()
            .filter(|&(_, (_, hour))| !expired(hour, geometry.now_ms, self.retention_ms))
            .map(|(index, (hash, hour))| (index, hash, hour))
            .collect();
        // Split first to the size the file has once every new id is in it
        // (ids recorded already are counted too, so it may split a little
        // early), so that no bucket takes more ids at once than its pages
        // hold, and the buckets stay put while the ids go in.
        while geometry.wants_split(live.len() as u64) {
            self.split(&mut geometry, &mut staged)?;
        }
        // In bucket order, so each bucket is read and written once, and the
        // writes go through the file from front to back.
        let mut new: Vec<(u64, usize, u128, u32)> = live
            .into_iter()
            .map(|(index, hash, hour)| (geometry.bucket_of(hash).0, index, hash, hour))
            .collect();
        new.sort_unstable_by_key(|&(bucket, ..)| bucket);
        for group in new.chunk_by(|a, b| a.0 == b.0) {
            let (bucket, address_bits) = geometry.bucket_of(group[0].2);
            let read = self.read_bucket(bucket, &staged)?;
            let before = read.slots.len() as u64;
            let mut slots: Vec<Slot> = read
                .slots
                .into_iter()
                .filter(|slot| !expired(slot.hour, geometry.now_ms, self.retention_ms))
                .collect();
            geometry.occupied = geometry
                .occupied
                .saturating_sub(before - slots.len() as u64);
            let earlier = slots.len();
            for &(_, index, hash, hour) in group {
                let probe = Probe::new(hash, address_bits);
                if slots[..earlier].iter().any(|slot| probe.matches(slot.key)) {
                    held[index] = true;
                } else if !slots[earlier..].iter().any(|slot| probe.matches(slot.key)) {
                    slots.push(Slot {
                        hour,
                        key: probe.fresh,
                    });
                    geometry.occupied += 1;
                }
            }
            let mut writes = Vec::with_capacity(2);
            let dropped = Self::bucket_writes(bucket, slots, read.overflow_in_use, &mut writes);
            geometry.occupied = geometry.occupied.saturating_sub(dropped);
            staged.push(writes, geometry);
        }
        geometry.seq += 1;
        Ok((staged, geometry, held))
    }

    /// Writes the final state of every page `staged` writes, and the header
    /// `geometry`, to the journal, and syncs it. Sequential and about as
    /// many bytes as the pages themselves: the price of a record a crash
    /// cannot cut in half.
    fn write_journal(&self, staged: &Staged, geometry: &Geometry) -> io::Result<()> {
        let mut out = JournalWriter {
            file: &self.journal,
            offset: 0,
            buf: Vec::with_capacity(JournalWriter::FLUSH_BYTES + PAGE_BYTES),
            crc: crc32fast::Hasher::new(),
        };
        out.put(&JOURNAL_MAGIC)?;
        out.put(&(staged.latest.len() as u64).to_le_bytes())?;
        for &(step, index) in staged.latest.values() {
            match &staged.steps[step].0[index] {
                PageWrite::Write(page, image) => {
                    out.put(&page.to_le_bytes())?;
                    out.put(&JOURNAL_WRITE.to_le_bytes())?;
                    out.put(&image[..])?;
                }
                PageWrite::Release(page) => {
                    out.put(&page.to_le_bytes())?;
                    out.put(&JOURNAL_RELEASE.to_le_bytes())?;
                }
            }
        }
        out.put(&geometry.encode())?;
        let crc = out.crc.clone().finalize();
        out.buf.extend_from_slice(&crc.to_le_bytes());
        out.flush()?;
        self.journal.set_len(out.offset)?;
        self.journal.sync_data()
    }

    /// Makes `steps` in order, each published to lookups with its
    /// geometry, syncs them, then writes and syncs the header `geometry`.
    fn apply(&self, steps: &[(Vec<PageWrite>, Geometry)], geometry: Geometry) -> io::Result<()> {
        for (writes, step) in steps {
            self.publish(writes, *step)?;
        }
        self.file.sync_data()?;
        let copy = (geometry.seq % 2) as usize * HEADER_COPY_BYTES;
        self.file.write_all_at(&geometry.encode(), copy as u64)?;
        self.file.sync_data()?;
        self.publish(&[], geometry)
    }

    /// Page reads made by lookups since the file was opened.
    #[cfg_attr(not(test), allow(dead_code))] // read by the tests and the benchmark
    pub fn lookup_page_reads(&self) -> u64 {
        self.lookup_page_reads.load(Ordering::Relaxed)
    }

    /// Pages found torn (checksum or number wrong) since the file was opened.
    #[cfg_attr(not(test), allow(dead_code))] // read by the tests and the benchmark
    pub fn torn_pages(&self) -> u64 {
        self.torn_pages.load(Ordering::Relaxed)
    }

    #[cfg_attr(not(test), allow(dead_code))] // read by the tests and the benchmark
    pub fn usage(&self) -> io::Result<Usage> {
        let geometry = *self.geometry_shared();
        let metadata = self.file.metadata()?;
        Ok(Usage {
            occupied: geometry.occupied,
            buckets: geometry.buckets(),
            disk_bytes: metadata.blocks() * 512,
            length_bytes: metadata.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RETENTION_MS: i64 = 48 * HOUR_MS;
    /// An hour boundary, like every time of these tests.
    const T0: i64 = 1_764_000_000_000;

    fn id(n: u64) -> String {
        format!("batch-{n}")
    }

    fn record_range(file: &FingerprintFile, ids: std::ops::Range<u64>, now_ms: i64) {
        let names: Vec<String> = ids.map(id).collect();
        file.record(names.iter().map(|n| (n.as_bytes(), now_ms)), now_ms)
            .unwrap();
    }

    fn open(dir: &tempfile::TempDir) -> FingerprintFile {
        FingerprintFile::open(&dir.path().join("seen"), RETENTION_MS).unwrap()
    }

    #[test]
    fn ids_are_kept_48_to_49_hours_and_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let file = open(&dir);
            assert!(!file.contains(b"a").unwrap());
            file.record([(&b"a"[..], T0 + 30 * 60_000)], T0 + 30 * 60_000)
                .unwrap();
            assert!(file.contains(b"a").unwrap());
            assert!(!file.contains(b"b").unwrap());
        }
        let file = open(&dir);
        assert!(file.contains(b"a").unwrap(), "kept across reopen");
        file.record([], T0 + RETENTION_MS + 30 * 60_000).unwrap();
        assert!(file.contains(b"a").unwrap(), "kept for at least 48 h");
        file.record([], T0 + RETENTION_MS + HOUR_MS).unwrap();
        assert!(
            !file.contains(b"a").unwrap(),
            "gone once its hour is 48 h old"
        );
        assert_eq!(
            file.usage().unwrap().occupied,
            1,
            "not dropped until written"
        );
        file.record(
            [(&b"b"[..], T0 + RETENTION_MS + HOUR_MS)],
            T0 + RETENTION_MS + HOUR_MS,
        )
        .unwrap();
        assert_eq!(file.usage().unwrap().occupied, 1, "its slot was reused");
    }

    #[test]
    fn an_id_past_its_retention_when_recorded_takes_no_slot() {
        let dir = tempfile::tempdir().unwrap();
        let file = open(&dir);
        let now_ms = T0 + RETENTION_MS + HOUR_MS;
        file.record([(&b"old"[..], T0), (&b"new"[..], now_ms)], now_ms)
            .unwrap();
        assert!(!file.contains(b"old").unwrap());
        assert!(file.contains(b"new").unwrap());
        assert_eq!(file.usage().unwrap().occupied, 1, "only the live id");
    }

    #[test]
    fn growth_across_many_splits_keeps_every_id_findable() {
        let dir = tempfile::tempdir().unwrap();
        let file = open(&dir);
        for round in 0..10 {
            record_range(&file, round * 20_000..(round + 1) * 20_000, T0);
        }
        let usage = file.usage().unwrap();
        assert!(usage.buckets > 512, "split hundreds of times: {usage:?}");
        assert_eq!(usage.occupied, 200_000);
        drop(file);
        let file = open(&dir);
        assert!((0..200_000).all(|n| file.contains(id(n).as_bytes()).unwrap()));
        assert!((200_000..220_000).all(|n| !file.contains(id(n).as_bytes()).unwrap()));
        // A delta recorded twice adds nothing.
        record_range(&file, 0..20_000, T0);
        assert_eq!(file.usage().unwrap().occupied, 200_000);
    }

    #[test]
    fn a_staged_record_answers_as_lookups_do_and_writes_nothing_until_written() {
        let dir = tempfile::tempdir().unwrap();
        let file = open(&dir);
        record_range(&file, 0..3_000, T0);
        // Half held, half new (enough to split), one new id twice, one
        // received past its retention.
        let names: Vec<String> = (1_500..4_500).chain([4_000]).map(id).collect();
        let later = T0 + HOUR_MS;
        let mut ids: Vec<(&[u8], i64)> = names.iter().map(|n| (n.as_bytes(), later)).collect();
        ids.push((b"long ago", later - RETENTION_MS - 2 * HOUR_MS));
        let looked_up: Vec<bool> = ids
            .iter()
            .map(|(id, _)| file.contains(id).unwrap())
            .collect();
        assert_eq!(looked_up.iter().filter(|&&held| held).count(), 1_500);

        let record = file.stage_record(ids.iter().copied(), later).unwrap();
        assert_eq!(record.held(), looked_up);
        // Lookups go on, and see none of it yet.
        assert!(!file.contains(id(4_000).as_bytes()).unwrap());
        record.write().unwrap();

        assert!((0..4_500).all(|n| file.contains(id(n).as_bytes()).unwrap()));
        assert!(!file.contains(b"long ago").unwrap());
        assert_eq!(file.usage().unwrap().occupied, 4_500);
        drop(file);
        let file = open(&dir);
        assert!((0..4_500).all(|n| file.contains(id(n).as_bytes()).unwrap()));
    }

    #[test]
    fn a_torn_page_reads_as_empty_and_the_file_still_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seen");
        let file = FingerprintFile::open(&path, RETENTION_MS).unwrap();
        record_range(&file, 0..5_000, T0);
        drop(file);
        // Half a page of another write over bucket 3's primary page.
        let raw = OpenOptions::new().write(true).open(&path).unwrap();
        raw.write_all_at(&[0xA5; PAGE_BYTES / 2], primary_page(3) * PAGE_BYTES as u64)
            .unwrap();
        drop(raw);

        let file = FingerprintFile::open(&path, RETENTION_MS).unwrap();
        let lost: Vec<u64> = (0..5_000)
            .filter(|&n| !file.contains(id(n).as_bytes()).unwrap())
            .collect();
        // The seed is random, so which ids bucket 3 holds (and whether it
        // is a split bucket, holding half the share) differs from run to
        // run: the ids lost must be exactly those.
        let geometry = *file.geometry_shared();
        let in_bucket_3: Vec<u64> = (0..5_000)
            .filter(|&n| {
                let hash = xxh3_128_with_seed(id(n).as_bytes(), geometry.seed);
                geometry.bucket_of(hash).0 == 3
            })
            .collect();
        assert!(!in_bucket_3.is_empty(), "bucket 3 holds ids: {geometry:?}");
        assert_eq!(lost, in_bucket_3, "the torn bucket's ids and no other lost");
        assert!(file.torn_pages() > 0);
        // The bucket takes writes again, and its ids come back when synced again.
        record_range(&file, 0..5_000, T0);
        assert!((0..5_000).all(|n| file.contains(id(n).as_bytes()).unwrap()));
    }

    fn journal_path(dir: &tempfile::TempDir) -> std::path::PathBuf {
        dir.path().join("seen.journal")
    }

    /// Records `ids` as a crash would leave it: the journal written, the
    /// first `steps_made` of its steps made, no header.
    fn record_cut_short(file: &FingerprintFile, ids: std::ops::Range<u64>, steps_made: usize) {
        let names: Vec<String> = ids.map(id).collect();
        let (staged, geometry, _) = file
            .stage(names.iter().map(|n| (n.as_bytes(), T0)), T0)
            .unwrap();
        assert!(staged.steps.len() > steps_made);
        file.write_journal(&staged, &geometry).unwrap();
        for (writes, step) in &staged.steps[..steps_made] {
            file.publish(writes, *step).unwrap();
        }
    }

    #[test]
    fn a_record_a_crash_cut_short_is_finished_from_its_journal() {
        let dir = tempfile::tempdir().unwrap();
        let file = open(&dir);
        record_range(&file, 0..5_000, T0);
        // 10,000 more ids split most buckets: half the steps made moves
        // ids whose new place the header does not know yet.
        record_cut_short(&file, 5_000..15_000, 40);
        drop(file);

        let file = open(&dir);
        assert_eq!(found(&file, 0..15_000), 15_000, "every id, old and new");
        assert_eq!(found(&file, 15_000..20_000), 0);
        assert_eq!(file.usage().unwrap().occupied, 15_000);
        drop(file);

        // What the journal is for: the same cut without it loses old ids.
        let dir = tempfile::tempdir().unwrap();
        let file = open(&dir);
        record_range(&file, 0..5_000, T0);
        record_cut_short(&file, 5_000..15_000, 40);
        drop(file);
        // Each file's hash is seeded afresh, so this cut splits other
        // buckets than the first, and loses old ids without the journal
        // all the same.
        std::fs::remove_file(journal_path(&dir)).unwrap();
        let file = open(&dir);
        assert!(
            found(&file, 0..5_000) < 5_000,
            "ids lost to the half-made splits"
        );
    }

    #[test]
    fn a_torn_journal_leaves_the_file_as_before_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let file = open(&dir);
        record_range(&file, 0..5_000, T0);
        record_cut_short(&file, 5_000..15_000, 0);
        drop(file);
        let journal = OpenOptions::new()
            .write(true)
            .open(journal_path(&dir))
            .unwrap();
        let length = journal.metadata().unwrap().len();
        journal.set_len(length - 100).unwrap();
        drop(journal);

        let file = open(&dir);
        assert_eq!(found(&file, 0..5_000), 5_000);
        assert_eq!(found(&file, 5_000..15_000), 0, "the record never happened");
        record_range(&file, 5_000..15_000, T0);
        assert_eq!(found(&file, 0..15_000), 15_000);
    }

    #[test]
    fn a_journal_the_header_has_passed_is_not_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let file = open(&dir);
        record_range(&file, 0..5_000, T0);
        let earlier = std::fs::read(journal_path(&dir)).unwrap();
        record_range(&file, 5_000..15_000, T0);
        drop(file);
        // As if the second record's journal had not reached the disk.
        std::fs::write(journal_path(&dir), earlier).unwrap();
        let file = open(&dir);
        assert_eq!(found(&file, 0..15_000), 15_000);
    }

    #[test]
    fn a_header_that_is_not_this_format_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seen");
        let error = |path: &Path| {
            FingerprintFile::open(path, RETENTION_MS)
                .unwrap_err()
                .to_string()
        };

        std::fs::write(&path, vec![b'x'; PAGE_BYTES]).unwrap();
        assert_eq!(error(&path), "not a seen-index file: no header");
        std::fs::write(&path, b"short").unwrap();
        assert!(
            error(&path).contains("shorter than its header"),
            "{}",
            error(&path)
        );

        std::fs::remove_file(&path).unwrap();
        drop(FingerprintFile::open(&path, RETENTION_MS).unwrap());
        let made = std::fs::read(&path).unwrap();
        let mut bad = made.clone();
        bad[8..12].copy_from_slice(&2u32.to_le_bytes());
        std::fs::write(&path, &bad).unwrap();
        assert_eq!(
            error(&path),
            "seen-index format version 2; this build reads version 1"
        );
        let mut bad = made.clone();
        bad[30] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        assert_eq!(
            error(&path),
            "seen-index header corrupt: neither copy's checksum holds"
        );
        let mut bad = made.clone();
        bad[12..16].copy_from_slice(&8192u32.to_le_bytes());
        let crc = crc32fast::hash(&bad[..HEADER_FIELDS_BYTES]);
        bad[HEADER_FIELDS_BYTES..HEADER_FIELDS_BYTES + 4].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&path, &bad).unwrap();
        assert!(
            error(&path).contains("pages of 8192 bytes"),
            "{}",
            error(&path)
        );
        std::fs::write(&path, &made).unwrap();
        assert!(FingerprintFile::open(&path, RETENTION_MS).is_ok());
    }

    /// Page reads of lookups of `ids`: the most one lookup made, and the mean.
    fn reads_per_lookup(file: &FingerprintFile, ids: impl Iterator<Item = u64>) -> (u64, f64) {
        let (mut most, mut total, mut lookups) = (0, 0, 0);
        for n in ids {
            let before = file.lookup_page_reads();
            file.contains(id(n).as_bytes()).unwrap();
            let reads = file.lookup_page_reads() - before;
            most = most.max(reads);
            total += reads;
            lookups += 1;
        }
        (most, total as f64 / lookups as f64)
    }

    /// How many of `ids` the file holds, looked up from two threads at once
    /// (as the async workers do).
    fn found(file: &FingerprintFile, ids: std::ops::Range<u64>) -> u64 {
        let middle = ids.start + (ids.end - ids.start) / 2;
        let count = |part: std::ops::Range<u64>| {
            part.filter(|&n| file.contains(id(n).as_bytes()).unwrap())
                .count() as u64
        };
        std::thread::scope(|scope| {
            let first = scope.spawn(|| count(ids.start..middle));
            count(middle..ids.end) + first.join().unwrap()
        })
    }

    /// 32 GiB over 1.7 billion ids.
    const DISK_BUDGET_PER_ID: f64 = 32.0 * 1024.0 * 1024.0 * 1024.0 / 1.7e9;

    #[test]
    fn at_millions_of_ids_over_60_hours_lookups_stay_one_page_and_disk_stays_in_budget() {
        // 1.5 million ids, 1.25 million of them live at the end: about 30 s
        // of CPU in a debug build, most of it the lookups' slot scans.
        const PER_RECORD: u64 = 50_000;
        const RECORDS: u64 = 30;
        const EVERY_MS: i64 = 2 * HOUR_MS;
        let dir = tempfile::tempdir().unwrap();
        let file = open(&dir);
        let time = |record: u64| T0 + record as i64 * EVERY_MS;

        record_range(&file, 0..PER_RECORD, time(0));
        let (most_at_start, mean_at_start) =
            reads_per_lookup(&file, PER_RECORD..PER_RECORD + 10_000);
        assert_eq!(most_at_start, 1, "a lookup at the start reads one page");
        assert_eq!(mean_at_start, 1.0);

        for record in 1..RECORDS {
            record_range(
                &file,
                record * PER_RECORD..(record + 1) * PER_RECORD,
                time(record),
            );
        }
        let now_ms = time(RECORDS - 1);
        // Records whose hour is 48 h old are gone; the rest are live.
        let first_live = (0..RECORDS)
            .find(|&r| !expired(hour_of(time(r)), now_ms, RETENTION_MS))
            .unwrap();
        assert!(first_live >= 5, "expiry happened: {first_live}");
        let live = (RECORDS - first_live) * PER_RECORD;
        assert_eq!(
            found(&file, first_live * PER_RECORD..RECORDS * PER_RECORD),
            live,
            "every live id is found"
        );
        assert_eq!(
            found(&file, 0..first_live * PER_RECORD),
            0,
            "every expired id is gone"
        );

        let (most_at_end, mean_at_end) =
            reads_per_lookup(&file, RECORDS * PER_RECORD..RECORDS * PER_RECORD + 100_000);
        assert!(
            most_at_end <= 2,
            "primary and overflow at most: {most_at_end}"
        );
        assert!(mean_at_end < 1.05, "overflow is rare: {mean_at_end}");

        let usage = file.usage().unwrap();
        assert!(
            usage.occupied < live + live / 20,
            "expired slots were reused: {usage:?}, {live} live"
        );
        assert!(
            usage.disk_bytes < usage.length_bytes * 6 / 10,
            "overflow pages not in use are holes: {usage:?}"
        );
        let per_id = usage.disk_bytes as f64 / live as f64;
        assert!(
            per_id < DISK_BUDGET_PER_ID,
            "{per_id:.1} bytes on disk per live id, {DISK_BUDGET_PER_ID:.1} allowed: {usage:?}"
        );
    }
}
