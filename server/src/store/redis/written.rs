//! The sketch values this edge last wrote to Redis, so that a sync step
//! can replace a hot sketch with one `SET` instead of a `PFMERGE`. Pure: no
//! I/O, tested natively; `apply.lua` holds the Redis half of the protocol.
//!
//! Most of Redis's cost of a sync at browser traffic was `PFMERGE`: it
//! rewrites a dense key register by register, ten times the cost of
//! storing the same 12 KiB with `SET`. When this edge is the only writer of
//! a key between two of its steps, it knows the value: the one it wrote.
//! It then sends that value merged with the step's sketch, with the SHA1 of
//! what it wrote last; the script replaces the value if it still has that
//! digest ([`Expect::Digest`]). When another writer got in between, the
//! digest differs and the script merges with `PFMERGE` instead, which is
//! still right (the bytes sent are a past value of the key merged with the
//! step's sketch, and a key's registers only grow). A key that keeps
//! changing under the edge is merged blind for a while ([`Expect::Blind`],
//! [`BLIND_STEPS`]), so contention costs the `GET` and the digest only once
//! in a while.
//!
//! The entry of a key is taken out while its step runs and put back with
//! what the reply says the key holds: a step that fails, or that had landed
//! before, leaves no entry, and the next step asks afresh.

use std::collections::HashMap;

use glimpse_hll::{DecodeError, Sketch};
use parking_lot::Mutex;

/// Memory the known values may take, counted as the sketches' heap bytes:
/// 4,096 dense sketches (16 KiB each), more sparse ones.
pub const MAX_BYTES: usize = 64 << 20;

/// A value unused for this long is dropped at the next prune: its hour or
/// day has gone quiet.
pub const IDLE_MS: i64 = 3_600_000;

/// Steps of a contended key merged without a look at its value before the
/// edge asks for the value again.
pub const BLIND_STEPS: u8 = 16;

/// What a step tells `apply.lua` the key holds now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The SHA1 (lowercase hex) of the value this edge wrote last; the
    /// bytes sent are that value merged with the step's sketch.
    Digest(String),
    /// Unknown; the bytes are the step's sketch, and the script answers the
    /// merged value.
    Unknown,
    /// Another writer is busy; the bytes are the step's sketch, merged
    /// without an answer.
    Blind,
}

impl Expect {
    /// As `apply.lua` reads it.
    pub fn as_arg(&self) -> &str {
        match self {
            Expect::Digest(digest) => digest,
            Expect::Unknown => "",
            Expect::Blind => "*",
        }
    }
}

/// One sketch of a step, ready to send.
#[derive(Debug)]
pub struct SketchWrite {
    pub bytes: Vec<u8>,
    pub expect: Expect,
    /// The sketch of `bytes`: the key's value if the script stores them.
    sent: Sketch,
    /// Blind steps left after this one, for [`Expect::Blind`].
    blind_left: u8,
}

/// What `apply.lua` answered for one sketch.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// The key holds the bytes sent.
    Stored,
    /// Merged; the key holds these bytes.
    Merged(Vec<u8>),
    /// Merged blind.
    MergedBlind,
}

#[derive(Debug)]
enum Entry {
    Known {
        sketch: Sketch,
        digest: String,
        used_ms: i64,
    },
    Contended {
        blind_left: u8,
        used_ms: i64,
    },
}

impl Entry {
    fn used_ms(&self) -> i64 {
        match self {
            Entry::Known { used_ms, .. } | Entry::Contended { used_ms, .. } => *used_ms,
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Entry::Known { sketch, .. } => sketch.heap_bytes(),
            Entry::Contended { .. } => 0,
        }
    }
}

#[derive(Debug, Default)]
struct Entries {
    by_key: HashMap<String, Entry>,
    /// The sum of the entries' [`Entry::heap_bytes`].
    bytes: usize,
}

/// The values this edge last wrote, by Redis key.
#[derive(Debug)]
pub struct WrittenSketches {
    entries: Mutex<Entries>,
    max_bytes: usize,
}

impl Default for WrittenSketches {
    fn default() -> Self {
        WrittenSketches::new(MAX_BYTES)
    }
}

/// The SHA1 of `bytes` as `redis.sha1hex` writes it.
pub fn digest(bytes: &[u8]) -> String {
    sha1_smol::Sha1::from(bytes).digest().to_string()
}

impl WrittenSketches {
    pub fn new(max_bytes: usize) -> Self {
        WrittenSketches {
            entries: Mutex::default(),
            max_bytes,
        }
    }

    /// How the step adding `sketch` to `key` writes it; takes the key's
    /// entry out until [`settle`](Self::settle) puts one back.
    pub fn prepare(&self, key: &str, sketch: &Sketch) -> SketchWrite {
        let taken = {
            let mut entries = self.entries.lock();
            let entry = entries.by_key.remove(key);
            if let Some(entry) = &entry {
                entries.bytes -= entry.heap_bytes();
            }
            entry
        };
        match taken {
            Some(Entry::Known {
                sketch: mut held,
                digest,
                ..
            }) => {
                held.merge(sketch);
                SketchWrite {
                    bytes: held.to_redis_bytes(),
                    expect: Expect::Digest(digest),
                    sent: held,
                    blind_left: 0,
                }
            }
            Some(Entry::Contended { blind_left, .. }) if blind_left > 0 => SketchWrite {
                bytes: sketch.to_redis_bytes(),
                expect: Expect::Blind,
                sent: Sketch::new(),
                blind_left: blind_left - 1,
            },
            Some(Entry::Contended { .. }) | None => SketchWrite {
                bytes: sketch.to_redis_bytes(),
                expect: Expect::Unknown,
                sent: sketch.clone(),
                blind_left: 0,
            },
        }
    }

    /// Puts back `key`'s entry after its step landed with `answer`, at
    /// `now_ms`. An answer that does not fit the expectation is an error
    /// and leaves no entry.
    pub fn settle(
        &self,
        key: String,
        write: SketchWrite,
        answer: Answer,
        now_ms: i64,
    ) -> Result<(), SettleError> {
        let entry = match (write.expect, answer) {
            (Expect::Digest(_) | Expect::Unknown, Answer::Stored) => Entry::Known {
                digest: digest(&write.bytes),
                sketch: write.sent,
                used_ms: now_ms,
            },
            // Someone else wrote since: merge blind for a while.
            (Expect::Digest(_), Answer::Merged(_)) => Entry::Contended {
                blind_left: BLIND_STEPS,
                used_ms: now_ms,
            },
            (Expect::Unknown, Answer::Merged(bytes)) => Entry::Known {
                sketch: Sketch::from_redis_bytes(&bytes).map_err(SettleError::Decode)?,
                digest: digest(&bytes),
                used_ms: now_ms,
            },
            (Expect::Blind, Answer::MergedBlind) => Entry::Contended {
                blind_left: write.blind_left,
                used_ms: now_ms,
            },
            (expect, answer) => return Err(SettleError::Unexpected { expect, answer }),
        };
        let mut entries = self.entries.lock();
        entries.bytes += entry.heap_bytes();
        if let Some(old) = entries.by_key.insert(key, entry) {
            entries.bytes -= old.heap_bytes();
        }
        Ok(())
    }

    /// Drops the entries unused for [`IDLE_MS`] before `now_ms`, then the
    /// least recently used ones while the values take more than the
    /// budget. Once per sync.
    pub fn prune(&self, now_ms: i64) {
        let mut entries = self.entries.lock();
        let Entries { by_key, bytes } = &mut *entries;
        by_key.retain(|_, e| {
            let keep = now_ms - e.used_ms() < IDLE_MS;
            if !keep {
                *bytes -= e.heap_bytes();
            }
            keep
        });
        if *bytes <= self.max_bytes {
            return;
        }
        let mut by_age: Vec<(i64, String)> = by_key
            .iter()
            .map(|(k, e)| (e.used_ms(), k.clone()))
            .collect();
        by_age.sort_unstable();
        for (_, key) in by_age {
            if *bytes <= self.max_bytes {
                break;
            }
            if let Some(e) = by_key.remove(&key) {
                *bytes -= e.heap_bytes();
            }
        }
    }

    /// Memory the known values take.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.entries.lock().bytes
    }
}

/// A reply of `apply.lua` that the edge cannot take in.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    #[error("the sketch answered is not an HLL: {0}")]
    Decode(DecodeError),
    #[error("the answer {answer:?} does not fit the expectation {expect:?}")]
    Unexpected { expect: Expect, answer: Answer },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sketch(items: impl IntoIterator<Item = u32>) -> Sketch {
        let mut s = Sketch::new();
        for i in items {
            s.insert(format!("v{i}").as_bytes());
        }
        s
    }

    /// A model of the script's `write` on one key: what it answers and
    /// what the key holds after.
    fn redis_write(held: &mut Option<Vec<u8>>, w: &SketchWrite) -> Answer {
        if w.expect != Expect::Blind {
            let matches = match (&*held, &w.expect) {
                (None, _) => true,
                (Some(h), Expect::Digest(d)) => digest(h) == *d,
                (Some(_), _) => false,
            };
            if matches {
                *held = Some(w.bytes.clone());
                return Answer::Stored;
            }
        }
        let mut merged = match &*held {
            Some(h) => Sketch::from_redis_bytes(h).unwrap(),
            None => Sketch::new(),
        };
        merged.merge(&Sketch::from_redis_bytes(&w.bytes).unwrap());
        let bytes = merged.to_dense_redis_bytes();
        *held = Some(bytes.clone());
        match w.expect {
            Expect::Blind => Answer::MergedBlind,
            _ => Answer::Merged(bytes),
        }
    }

    /// One step adding `add` to the key "k": answers what it expected.
    fn step(
        cache: &WrittenSketches,
        held: &mut Option<Vec<u8>>,
        add: &Sketch,
        now_ms: i64,
    ) -> Expect {
        let w = cache.prepare("k", add);
        let expect = w.expect.clone();
        let answer = redis_write(held, &w);
        cache.settle("k".into(), w, answer, now_ms).unwrap();
        expect
    }

    #[test]
    fn a_lone_writer_sends_the_whole_value_against_its_digest() {
        let cache = WrittenSketches::default();
        let mut held = None;
        step(&cache, &mut held, &sketch(0..100), 0);
        let w = cache.prepare("k", &sketch(100..200));
        assert_eq!(w.expect, Expect::Digest(digest(held.as_ref().unwrap())));
        assert_eq!(redis_write(&mut held, &w), Answer::Stored);
        cache.settle("k".into(), w, Answer::Stored, 1).unwrap();
        let got = Sketch::from_redis_bytes(held.as_ref().unwrap()).unwrap();
        assert_eq!(got, sketch(0..200));
    }

    #[test]
    fn two_writers_end_with_the_union_of_everything_either_sent() {
        let (a, b) = (WrittenSketches::default(), WrittenSketches::default());
        let mut held = None;
        for round in 0..40u32 {
            let from = round * 50;
            step(&a, &mut held, &sketch(from..from + 25), round.into());
            step(&b, &mut held, &sketch(from + 25..from + 50), round.into());
            let got = Sketch::from_redis_bytes(held.as_ref().unwrap()).unwrap();
            assert_eq!(got, sketch(0..from + 50), "round {round}");
        }
    }

    #[test]
    fn a_contended_key_is_merged_blind_then_asked_again() {
        let (a, b) = (WrittenSketches::default(), WrittenSketches::default());
        let mut held = None;
        step(&a, &mut held, &sketch(0..10), 0);
        step(&b, &mut held, &sketch(10..20), 0);
        // a's digest no longer matches: merged, then blind.
        let w = a.prepare("k", &sketch(20..30));
        assert!(matches!(w.expect, Expect::Digest(_)));
        let answer = redis_write(&mut held, &w);
        assert!(matches!(answer, Answer::Merged(_)));
        a.settle("k".into(), w, answer, 0).unwrap();
        for _ in 0..BLIND_STEPS {
            assert_eq!(step(&a, &mut held, &sketch(30..31), 0), Expect::Blind);
        }
        assert_eq!(step(&a, &mut held, &sketch(31..32), 0), Expect::Unknown);
        assert!(matches!(
            a.prepare("k", &sketch(32..33)).expect,
            Expect::Digest(_)
        ));
    }

    #[test]
    fn a_key_whose_step_failed_is_asked_again() {
        let cache = WrittenSketches::default();
        let mut held = None;
        step(&cache, &mut held, &sketch(0..10), 0);
        drop(cache.prepare("k", &sketch(10..20)));
        assert_eq!(cache.prepare("k", &sketch(10..20)).expect, Expect::Unknown);
    }

    #[test]
    fn an_answer_that_does_not_fit_is_refused_and_forgotten() {
        let cache = WrittenSketches::default();
        let w = cache.prepare("k", &sketch(0..10));
        assert!(cache.settle("k".into(), w, Answer::MergedBlind, 0).is_err());
        let w = cache.prepare("k", &sketch(0..10));
        let err = cache.settle("k".into(), w, Answer::Merged(b"nope".to_vec()), 0);
        assert!(matches!(err, Err(SettleError::Decode(_))));
        assert_eq!(cache.prepare("k", &sketch(0..1)).expect, Expect::Unknown);
    }

    #[test]
    fn prune_drops_idle_values_then_the_oldest_over_budget() {
        let dense = sketch(0..20_000);
        let cache = WrittenSketches::new(2 * dense.heap_bytes());
        for (i, key) in ["a", "b", "c", "d"].into_iter().enumerate() {
            let w = cache.prepare(key, &dense);
            cache
                .settle(key.into(), w, Answer::Stored, i as i64 * 10)
                .unwrap();
        }
        assert_eq!(cache.bytes(), 4 * dense.heap_bytes());
        cache.prune(30);
        assert_eq!(cache.bytes(), 2 * dense.heap_bytes());
        assert_eq!(cache.prepare("a", &dense).expect, Expect::Unknown);
        assert!(matches!(
            cache.prepare("d", &dense).expect,
            Expect::Digest(_)
        ));
        // Taken out by prepare: nothing is held now but "c".
        assert_eq!(cache.bytes(), dense.heap_bytes());
        cache.prune(20 + IDLE_MS);
        assert_eq!(cache.bytes(), 0);
    }
}
