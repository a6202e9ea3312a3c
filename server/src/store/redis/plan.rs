//! How a [`Delta`] becomes sync steps, and the rules that make each batch
//! and each step count once. Pure: no I/O, tested natively. The Lua script
//! `apply.lua` applies the ledger rule inside Redis; [`tests`] replays the
//! whole protocol (claims, then steps) on a model of Redis through retries
//! and duplicate batches.

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;

use glimpse_hll::Sketch;
use glimpse_wire::ingest::{MAX_EVENT_AGE_MS, MAX_EVENT_LEAD_MS};
use glimpse_wire::Day;

use crate::counted::needs_claim;
use crate::counts::{Counters, Delta, KeyUpdate};

/// The identity of one step of one edge, ordered: a step is applied only if
/// it comes after the last one the ledger holds for that edge and key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StepId {
    /// The delta's sequence number ([`crate::store::identity::sequence`]).
    pub seq: u64,
    /// Always 0 now (one step per (ad, day) and delta); kept so the ledger's
    /// `<seq>:<chunk>` values written by earlier versions still compare.
    pub chunk: u32,
}

impl fmt::Display for StepId {
    /// The ledger's value format, `<seq>:<chunk>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.seq, self.chunk)
    }
}

impl StepId {
    /// A ledger value, `<seq>:<chunk>` (stats read it as the mark of the
    /// deltas an (ad, day) holds).
    pub fn parse(s: &str) -> Option<StepId> {
        let (seq, chunk) = s.split_once(':')?;
        Some(StepId {
            seq: seq.parse().ok()?,
            chunk: chunk.parse().ok()?,
        })
    }
}

/// The ledger's rules, as `apply.lua` applies them inside Redis; the model
/// of Redis in the tests follows them.
#[cfg(test)]
impl StepId {
    /// The ledger rule: given the last step recorded for this edge on this
    /// key, has `self` landed already?
    pub fn already_applied(self, last: Option<StepId>) -> bool {
        last.is_some_and(|last| last >= self)
    }
}

/// The value of a batch claim: `<edge_id>:<seq>`, the edge and the delta
/// that counts the batch.
pub fn claim_value(edge_id: &str, seq: u64) -> String {
    format!("{edge_id}:{seq}")
}

/// The claim rule: given the claim `claims.lua` finds for a batch (the
/// value held before, if any), does this delta count the batch? Yes if no
/// one had claimed it, or if the claim is this very delta's (an earlier
/// attempt of the same sync); no if another edge or another delta holds it.
/// `claims.lua` applies the rule inside Redis; the model of Redis in the
/// tests follows it.
#[cfg(test)]
pub fn owns_claim(previous: Option<&str>, ours: &str) -> bool {
    previous.is_none_or(|v| v == ours)
}

/// A batch id to claim, with when this edge accepted it: every claim on the
/// batch, by any edge, was made after that less [`CLAIM_LOOKBACK_MS`], which
/// bounds the windows its look-up reads ([`ClaimWindows::to_check`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchClaim<'a> {
    pub batch_id: &'a str,
    pub accepted_ms: i64,
}

/// The batch ids of a delta that need a claim ([`needs_claim`]: not the
/// ones the edge minted), each once, in a stable order, with the earliest
/// time this edge accepted a copy.
pub fn claims(delta: &Delta) -> Vec<BatchClaim<'_>> {
    let mut at: HashMap<&str, usize> = HashMap::new();
    let mut claims: Vec<BatchClaim<'_>> = Vec::new();
    for r in &delta.batches {
        let id = r.batch_id.as_str();
        if !needs_claim(id) {
            continue;
        }
        match at.entry(id) {
            Entry::Occupied(i) => {
                let claim = &mut claims[*i.get()];
                claim.accepted_ms = claim.accepted_ms.min(r.received_ms);
            }
            Entry::Vacant(v) => {
                v.insert(claims.len());
                claims.push(BatchClaim {
                    batch_id: id,
                    accepted_ms: r.received_ms,
                });
            }
        }
    }
    claims
}

/// The script call of one (ad, day) or (post, day), its hours included.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyPlan<'a> {
    /// The counts key (`crate::counts::EventKeys`).
    pub key: &'a str,
    pub day: Day,
    /// The sketch to merge, of the same batches as `counters`; `None` when
    /// it is empty.
    pub visitors: Option<Cow<'a, Sketch>>,
    /// The counters of the batches this delta owns.
    pub counters: Counters,
    /// The hours that gain anything, in hour order.
    pub hours: Vec<HourPlan<'a>>,
}

/// What one step adds to one UTC hour of its (ad, day).
#[derive(Clone, Debug, PartialEq)]
pub struct HourPlan<'a> {
    pub hour: u8,
    pub visitors: Option<Cow<'a, Sketch>>,
    pub counters: Counters,
}

impl KeyPlan<'_> {
    /// A step that would write nothing is not sent (every hour's counts are
    /// a part of the day's).
    pub fn is_noop(&self) -> bool {
        self.visitors.is_none() && self.counters.is_zero()
    }
}

/// Turns a delta into one step per (ad, day), sorted: the sketches and the
/// counters of the day and its hours, less the shares of the batches for
/// which `owned` says no ([`Delta::updates`]). Deterministic for a given
/// delta and answer, so a retry of the delta sends exactly the same steps.
pub fn plan<'a>(delta: &'a Delta, owned: impl Fn(&str) -> bool) -> Vec<KeyPlan<'a>> {
    let updates = delta.updates(|record| Ok::<_, Infallible>(owned(&record.batch_id)));
    let Ok(updates) = updates;
    updates.into_iter().map(KeyPlan::from).collect()
}

impl<'a> From<KeyUpdate<'a>> for KeyPlan<'a> {
    fn from(u: KeyUpdate<'a>) -> Self {
        let hours = u
            .hours
            .into_iter()
            .map(|h| HourPlan {
                hour: h.hour,
                visitors: (!h.visitors.is_empty()).then_some(h.visitors),
                counters: h.counters,
            })
            .filter(|h| h.visitors.is_some() || !h.counters.is_zero())
            .collect();
        KeyPlan {
            key: u.key,
            day: u.day,
            visitors: (!u.visitors.is_empty()).then_some(u.visitors),
            counters: u.counters,
            hours,
        }
    }
}

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// How long a batch claim lives at least (from the attempt that made it)
/// and a ledger entry (from its last write).
pub const CLAIM_LIFETIME_MS: i64 = 72 * HOUR_MS;

/// Claims are fields of hashes, one per shard of the batch ids and per
/// window of this many ms of the claiming edge's clock, so that one script
/// call claims a sync's batches of one shard: a few commands per sync
/// instead of one per batch.
pub const CLAIM_WINDOW_MS: i64 = DAY_MS;

/// Shards of the batch ids, each its own hash tag: on a cluster the claims
/// spread over up to this many masters.
pub const CLAIM_SHARDS: u16 = 16;

/// Where claims live, for claims that must live at least `lifetime_ms`
/// ([`CLAIMS`] in the edge; the protocol model of the tests varies it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClaimWindows {
    pub lifetime_ms: i64,
}

/// The claim windows of the edge.
pub const CLAIMS: ClaimWindows = ClaimWindows {
    lifetime_ms: CLAIM_LIFETIME_MS,
};

impl ClaimWindows {
    /// The window holding the claims made at `ms`.
    pub fn window(self, ms: i64) -> i64 {
        ms.div_euclid(CLAIM_WINDOW_MS)
    }

    /// The windows a look-up at `now_ms` reads for batches this edge
    /// accepted at `oldest_accepted_ms` or later, newest first: the first is
    /// where new claims go. Every claim on such a batch was made after
    /// `oldest_accepted_ms - CLAIM_LOOKBACK_MS` (49 h), so older windows
    /// cannot hold one: three day windows for a sync of batches accepted
    /// after 01:00 UTC (four in the first hour of a day), not the four that
    /// cover the claims' whole lifetime. A delta is sent within
    /// [`RETRY_HORIZON_MS`] of its oldest batch, so every window named here
    /// is younger than `lifetime_ms` and still there ([`expiry_ms`](Self::expiry_ms)).
    pub fn to_check(self, now_ms: i64, oldest_accepted_ms: i64) -> impl Iterator<Item = i64> {
        (self.window(oldest_accepted_ms - CLAIM_LOOKBACK_MS)..=self.window(now_ms)).rev()
    }

    /// When a window's hash expires: `lifetime_ms` after the window ends,
    /// so each claim lives at least that long and at most one window more.
    pub fn expiry_ms(self, window: i64) -> i64 {
        (window + 1) * CLAIM_WINDOW_MS + self.lifetime_ms
    }
}

/// The shard of a batch id's claim.
pub fn claim_shard(batch_id: &str) -> u16 {
    super::keys::crc16_xmodem(batch_id.as_bytes()) % CLAIM_SHARDS
}

/// Room for the clocks of edges and Redis to differ.
const CLOCK_ALLOWANCE_MS: i64 = 55 * 60_000;

/// How far before this edge accepted a batch any claim on it can have been
/// made, by any edge: 49 h. A claim is made once some copy of the batch was
/// accepted, so after its events happened; this edge accepted the batch at
/// `r` with events at most 48 h old (and at most 5 min ahead), so every
/// claim on it was made after `r - 48 h - 5 min`, by clocks that differ by
/// up to the allowance.
pub const CLAIM_LOOKBACK_MS: i64 = MAX_EVENT_AGE_MS + MAX_EVENT_LEAD_MS + CLOCK_ALLOWANCE_MS;

/// How long after its oldest batch was accepted a delta may still be sent
/// to Redis: 23 h. Every claim on a batch that this edge accepted at `r` was
/// made after `r -` [`CLAIM_LOOKBACK_MS`] and lives [`CLAIM_LIFETIME_MS`]
/// (72 h), so past `r + 23 h`; this edge's own claims and ledger entries for
/// the delta were written after `r` and live 72 h. A delta sent within the
/// horizon therefore meets every claim and ledger entry that says a batch
/// or a step counted already; past it one of them may have expired, and
/// sending it could count a batch twice.
pub const RETRY_HORIZON_MS: i64 = CLAIM_LIFETIME_MS - CLAIM_LOOKBACK_MS;
const _: () = assert!(RETRY_HORIZON_MS > 0, "claims must outlive the event window");

/// The retry rule: `Some(age)` when `delta` is too old to send (its oldest
/// batch was accepted more than [`RETRY_HORIZON_MS`] before `now_ms`), with
/// that batch's age in ms.
pub fn too_old_to_send(delta: &Delta, now_ms: i64) -> Option<i64> {
    let oldest = delta.batches.iter().map(|b| b.received_ms).min()?;
    let age = now_ms - oldest;
    (age > RETRY_HORIZON_MS).then_some(age)
}

/// The fewest `--retention-days` that hold a day's keys until its last
/// write: events of a day arrive until 48 h (and a clock allowance) after
/// its end, and their delta may land up to [`RETRY_HORIZON_MS`] later, so a
/// shorter retention would have the sync script expire the keys it writes.
pub const MIN_RETENTION_DAYS: u32 =
    ((DAY_MS + MAX_EVENT_AGE_MS + CLOCK_ALLOWANCE_MS + RETRY_HORIZON_MS + DAY_MS - 1) / DAY_MS)
        as u32;

/// Expiry of a day's keys: the start of the day plus the retention.
pub fn day_expiry_ms(day: Day, retention_days: u32) -> i64 {
    day.start_ms() + i64::from(retention_days) * DAY_MS
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::collections::{HashMap, HashSet};
    use std::sync::Arc;

    use glimpse_wire::ingest::Event;
    use glimpse_wire::Kind;
    use glimpse_wire::Subject;

    use super::*;
    use crate::aggregate::Aggregator;
    use crate::traffic::Traffic;

    fn day(s: &str) -> Day {
        s.parse().unwrap()
    }

    fn ev<'a>(id: &'a str, ad: &'a str, user: &'a str, kind: Kind) -> Event<'a> {
        Event {
            id: Cow::Borrowed(id),
            subject: Subject::Ad,
            subject_id: Cow::Borrowed(ad),
            user_id: Cow::Borrowed(user),
            kind,
            ts: 0,
            day: day("2026-11-25"),
            token: None,
            verified: false,
            audible: false,
            campaign_id: None,
        }
    }

    #[test]
    fn the_ledger_rule_orders_steps() {
        let s = |seq, chunk| StepId { seq, chunk };
        assert!(!s(5, 0).already_applied(None));
        assert!(s(5, 0).already_applied(Some(s(5, 0))));
        assert!(s(5, 0).already_applied(Some(s(5, 1))));
        assert!(s(5, 0).already_applied(Some(s(6, 0))));
        assert!(!s(5, 1).already_applied(Some(s(5, 0))));
        assert!(!s(6, 0).already_applied(Some(s(5, 9))));
        assert_eq!(StepId::parse(&s(12, 3).to_string()), Some(s(12, 3)));
        assert_eq!(StepId::parse("12"), None);
        assert_eq!(StepId::parse("a:1"), None);
    }

    #[test]
    fn the_claim_rule_owns_new_and_own_claims_only() {
        let ours = claim_value("edge-a", 7);
        assert_eq!(ours, "edge-a:7");
        assert!(owns_claim(None, &ours));
        assert!(owns_claim(Some("edge-a:7"), &ours));
        assert!(!owns_claim(Some("edge-a:6"), &ours));
        assert!(!owns_claim(Some("edge-b:7"), &ours));
        // A hint written by an earlier version.
        assert!(!owns_claim(Some("1"), &ours));
    }

    #[test]
    fn claim_windows_hold_each_claim_for_its_lifetime_and_at_most_a_window_more() {
        let t0 = 1_764_000_000_000;
        for offset in [0, 1, HOUR_MS, 13 * HOUR_MS, DAY_MS - 1] {
            let made = t0 + offset;
            let w = CLAIMS.window(made);
            let expires = CLAIMS.expiry_ms(w);
            assert!(expires - made >= CLAIM_LIFETIME_MS, "{offset}");
            assert!(expires - made <= CLAIM_LIFETIME_MS + CLAIM_WINDOW_MS);
        }
    }

    #[test]
    fn a_look_up_reads_every_window_that_can_hold_a_claim_on_its_batches() {
        let t0 = 1_764_000_000_000;
        let minute = 60_000;
        // This edge accepted a batch at `accepted`; any edge may have
        // claimed it from `accepted - lookback` on (the earliest at the
        // edge of the event window, by a clock the allowance behind), and
        // this edge looks it up from when it accepted it until the horizon.
        // t0 is 16:00 UTC: the offsets reach the first hour of the next day.
        assert_eq!(t0 % DAY_MS, 16 * HOUR_MS);
        for offset in [
            0,
            1,
            HOUR_MS,
            8 * HOUR_MS + 30 * minute,
            13 * HOUR_MS,
            DAY_MS - 1,
        ] {
            let accepted = t0 + offset;
            for made in [
                accepted - CLAIM_LOOKBACK_MS,
                accepted - 48 * HOUR_MS,
                accepted - DAY_MS,
                accepted,
                accepted + RETRY_HORIZON_MS,
            ] {
                let w = CLAIMS.window(made);
                for later in [made.max(accepted), accepted + RETRY_HORIZON_MS] {
                    let windows: Vec<i64> = CLAIMS.to_check(later, accepted).collect();
                    assert_eq!(windows[0], CLAIMS.window(later));
                    assert!(windows.contains(&w), "{offset} {made} {later}");
                    // The claim, and every window read, is still there.
                    assert!(CLAIMS.expiry_ms(w) > later, "{offset} {made} {later}");
                    assert!(windows.iter().all(|&x| CLAIMS.expiry_ms(x) > later));
                    assert!((3..=4).contains(&windows.len()), "{windows:?}");
                }
            }
            // A sync a second after accepting reads three windows, four in
            // the first hour of a UTC day (the look-back is 2 days and 1 h):
            // not the four of the claims' whole lifetime.
            let sync = accepted + 1_000;
            let expected = if sync.rem_euclid(DAY_MS) < HOUR_MS + 1_000 {
                4
            } else {
                3
            };
            assert_eq!(
                CLAIMS.to_check(sync, accepted).count(),
                expected,
                "{offset}"
            );
        }
        // The whole lifetime of a claim is the look-back and the horizon.
        assert_eq!(CLAIM_LOOKBACK_MS + RETRY_HORIZON_MS, CLAIM_LIFETIME_MS);
        let shards: HashSet<u16> = (0..1000).map(|i| claim_shard(&format!("b-{i}"))).collect();
        assert_eq!(shards.len(), usize::from(CLAIM_SHARDS));
    }

    #[test]
    fn plans_leave_out_batches_not_owned_and_never_claim_edge_made_ids() {
        let agg = Aggregator::new();
        for i in 0..5 {
            let id = format!("b{i}");
            agg.record(
                &id,
                0,
                Traffic::Valid,
                &[ev("1", "ad-1", "u", Kind::Viewable)],
            );
        }
        agg.record(
            "single/x",
            0,
            Traffic::Valid,
            &[ev("1", "ad-1", "u", Kind::Measurable)],
        );
        agg.record(
            "b9",
            0,
            Traffic::Valid,
            &[
                ev("1", "ad-2", "u", Kind::Measurable),
                ev("2", "ad-1", "v", Kind::Viewable),
            ],
        );
        let delta = agg.begin_sync().unwrap();
        let ids: Vec<&str> = claims(&delta).iter().map(|c| c.batch_id).collect();
        assert_eq!(ids, ["b0", "b1", "b2", "b3", "b4", "b9"]);
        let not_owned = ["b1", "b3", "b9"];
        let plans = plan(&delta, |id| !not_owned.contains(&id));
        assert_eq!(plans.len(), 2);
        let p = &plans[0];
        assert_eq!(p.key, "ad-1");
        assert_eq!((p.counters.impressions, p.counters.measurable), (3, 1));
        // The sketch is of the owned batches too: their "u", not b9's "v".
        let mut owned_visitors = Sketch::new();
        owned_visitors.insert(b"u");
        assert_eq!(p.visitors.as_deref(), Some(&owned_visitors));
        // Its one hour (every event is at 00:00) by the same rule.
        assert_eq!(p.hours.len(), 1);
        assert_eq!((p.hours[0].hour, p.hours[0].counters), (0, p.counters));
        assert_eq!(p.hours[0].visitors, p.visitors);
        // ad-2 has no visitors, and its only batch is not owned: nothing to send.
        let c = plans[1].counters;
        assert_eq!((c.impressions, c.measurable), (0, 0));
        assert!(plans[1].is_noop());
        assert!(
            plans[1].hours.is_empty(),
            "an hour that gains nothing is not sent"
        );
        assert_eq!(
            plan(&delta, |id| !not_owned.contains(&id)),
            plans,
            "deterministic"
        );
        let all = plan(&delta, |_| true);
        let (c0, c1) = (all[0].counters, all[1].counters);
        assert_eq!((c0.impressions, c0.measurable), (6, 1));
        assert_eq!((c1.impressions, c1.measurable), (0, 1));
    }

    #[test]
    fn plans_leave_out_the_invalid_events_of_batches_not_owned() {
        let agg = Aggregator::new();
        let bot = [
            ev("1", "ad-1", "u", Kind::Viewable),
            ev("2", "ad-1", "u", Kind::Measurable),
        ];
        agg.record("bot-1", 0, Traffic::Invalid, &bot);
        agg.record("bot-2", 0, Traffic::Invalid, &bot);
        let delta = agg.begin_sync().unwrap();
        let plans = plan(&delta, |id| id != "bot-2");
        assert_eq!(plans.len(), 1);
        let p = &plans[0];
        let c = p.counters;
        assert_eq!((c.impressions, c.measurable, c.invalid), (0, 0, 2));
        assert!(p.visitors.is_none(), "bots add no visitors");
        assert!(!p.is_noop(), "invalid counts alone are worth a step");
        let none = plan(&delta, |_| false);
        assert_eq!(none[0].counters.invalid, 0);
        assert!(none[0].is_noop());
    }

    /// A model of Redis: the claim windows, and per (ad, day) the counters
    /// and the ledger, following the same rules as `redis.rs`, `claims.lua`
    /// and `apply.lua`, with their expiry: claims live at least `lifetime`
    /// from their write (in their window's hash), ledger entries `lifetime`
    /// from their write, by the model's clock `now`. (Shards only split the
    /// work: every batch id is in one shard, so the model has one.)
    struct Model {
        /// Window -> (batch id -> claim, the hash's expiry).
        claims: HashMap<i64, (HashMap<String, String>, i64)>,
        keys: HashMap<(String, Day), ModelKey>,
        lifetime: i64,
        now: i64,
    }

    impl Default for Model {
        fn default() -> Self {
            Model::with_lifetime(CLAIM_LIFETIME_MS)
        }
    }

    #[derive(Default)]
    struct ModelKey {
        counters: Counters,
        /// Per edge, the last step and when the entry expires.
        last_step: HashMap<String, (StepId, i64)>,
    }

    impl Model {
        fn with_lifetime(lifetime: i64) -> Self {
            Model {
                claims: HashMap::new(),
                keys: HashMap::new(),
                lifetime,
                now: 0,
            }
        }

        /// `claims.lua` for one id this edge accepted at `accepted_ms`:
        /// the claim found in the windows to check, else `value` written to
        /// the newest one.
        fn claim(&mut self, id: &str, accepted_ms: i64, value: &str) -> Option<String> {
            let (now, windows) = (
                self.now,
                ClaimWindows {
                    lifetime_ms: self.lifetime,
                },
            );
            self.claims.retain(|_, (_, expires)| *expires > now);
            let found = windows
                .to_check(now, accepted_ms)
                .find_map(|w| self.claims.get(&w)?.0.get(id).cloned());
            if found.is_none() {
                let w = windows.window(now);
                let (hash, expires) = self.claims.entry(w).or_default();
                hash.insert(id.to_owned(), value.to_owned());
                *expires = windows.expiry_ms(w);
            }
            found
        }

        /// One attempt at syncing `delta`: phase 1 (claims), then phase 2
        /// (the steps). `lose_steps` drops the steps, as an edge whose
        /// connection fails after its claims landed.
        fn sync(&mut self, edge: &str, delta: &Delta, lose_steps: bool) {
            let seq = delta.seq;
            let ours = claim_value(edge, seq);
            let owned: HashSet<String> = claims(delta)
                .into_iter()
                .filter(|c| {
                    let found = self.claim(c.batch_id, c.accepted_ms, &ours);
                    owns_claim(found.as_deref(), &ours)
                })
                .map(|c| c.batch_id.to_owned())
                .collect();
            if lose_steps {
                return;
            }
            let (now, lifetime) = (self.now, self.lifetime);
            for p in plan(delta, |id| !needs_claim(id) || owned.contains(id)) {
                let key = self.keys.entry((p.key.to_owned(), p.day)).or_default();
                let id = StepId { seq, chunk: 0 };
                let last = key
                    .last_step
                    .get(edge)
                    .filter(|(_, expires)| *expires > now)
                    .map(|(step, _)| *step);
                if id.already_applied(last) {
                    continue;
                }
                key.counters += p.counters;
                key.last_step.insert(edge.to_owned(), (id, now + lifetime));
            }
        }

        fn impressions(&self) -> u64 {
            self.keys.values().map(|k| k.counters.impressions).sum()
        }
    }

    /// A delta of one batch `b` with one viewable impression, accepted at
    /// `received_ms`.
    fn one_batch(received_ms: i64) -> Delta {
        let agg = Aggregator::new();
        agg.record(
            "b",
            received_ms,
            Traffic::Valid,
            &[ev("1", "ad-1", "u", Kind::Viewable)],
        );
        Arc::unwrap_or_clone(agg.begin_sync().unwrap())
    }

    #[test]
    fn a_retry_after_48_hours_counted_twice_and_now_counts_once_or_is_not_sent() {
        let t0 = 1_764_000_000_000;
        // The delta lands whole at t0 but its reply is lost; the edge is cut
        // off and retries 49 h later. With the lifetimes of before (48 h)
        // claim and ledger are gone and the batch counts again.
        let mut before = Model::with_lifetime(48 * HOUR_MS);
        before.now = t0;
        let delta = one_batch(t0);
        before.sync("edge-0", &delta, false);
        before.now = t0 + 49 * HOUR_MS;
        before.sync("edge-0", &delta, false);
        assert_eq!(before.impressions(), 2, "the old lifetimes count it twice");

        // Now claims and ledger outlive every retry the edge still sends,
        // and a delta past the horizon is not sent at all.
        let mut after = Model {
            now: t0,
            ..Model::default()
        };
        after.sync("edge-0", &delta, false);
        after.now = t0 + RETRY_HORIZON_MS;
        assert_eq!(too_old_to_send(&delta, after.now), None);
        after.sync("edge-0", &delta, false);
        assert_eq!(after.impressions(), 1);
        assert!(too_old_to_send(&delta, t0 + 49 * HOUR_MS).is_some());
    }

    #[test]
    fn another_edges_claim_outlives_every_delta_sent_within_the_horizon() {
        let t0 = 1_764_000_000_000;
        let late = one_batch(t0);
        // Edge 1 counted `b` at t0 - 47 h; the client sent it to edge 0 at
        // t0 (its event still inside the 48 h window), whose first attempt
        // finds edge 1's claim and then loses its steps.
        let cut_off = || {
            let mut redis = Model {
                now: t0 - 47 * HOUR_MS,
                ..Model::default()
            };
            redis.sync("edge-1", &one_batch(redis.now), false);
            redis.now = t0;
            redis.sync("edge-0", &late, true);
            redis
        };
        // Retried at the horizon, the claim of edge 1 still answers.
        let mut redis = cut_off();
        redis.now = t0 + RETRY_HORIZON_MS;
        assert_eq!(too_old_to_send(&late, redis.now), None);
        redis.sync("edge-0", &late, false);
        assert_eq!(redis.impressions(), 1);
        // Past it the claim may be gone (here a day later, when it is gone
        // whatever the time of day) and sending would count it twice, which
        // is why the edge does not send it.
        let mut past = cut_off();
        past.now = t0 + 50 * HOUR_MS;
        assert!(too_old_to_send(&late, past.now).is_some());
        past.sync("edge-0", &late, false);
        assert_eq!(past.impressions(), 2);
    }

    #[test]
    fn retries_and_batches_sent_to_two_edges_count_once_in_the_model() {
        // Two edges get overlapping batches over two ads; each syncs, every
        // sync is attempted again after the other edge's (a reply lost after
        // the write), and one edge's first attempt loses its steps after
        // its claims landed.
        let users: Vec<String> = (0..40).map(|i| format!("u{i}")).collect();
        let edges = [Aggregator::new(), Aggregator::new()];
        let mut distinct = HashSet::new();
        for b in 0..30 {
            let id = format!("batch-{b}");
            let ad = if b % 3 == 0 { "ad-2" } else { "ad-1" };
            let mut events: Vec<_> = users[b..b + 3]
                .iter()
                .map(|u| ev("e", ad, u, Kind::Viewable))
                .collect();
            events.push(ev("m", "ad-1", &users[b], Kind::Measurable));
            // Batches 10..20 reach both edges.
            let targets: &[usize] = match b {
                0..10 => &[0],
                10..20 => &[0, 1],
                _ => &[1],
            };
            // Every fifth batch comes from a bot.
            let traffic = if b % 5 == 4 {
                Traffic::Invalid
            } else {
                Traffic::Valid
            };
            for &t in targets {
                edges[t].record(&id, 0, traffic, &events);
            }
            distinct.insert(id);
        }
        for (e, edge) in edges.iter().enumerate() {
            edge.record(
                &format!("single/{e}"),
                0,
                Traffic::Valid,
                &[ev("s", "ad-1", "s", Kind::Viewable)],
            );
        }
        let deltas: Vec<_> = edges.iter().map(|a| a.begin_sync().unwrap()).collect();
        let mut redis = Model::default();
        redis.sync("edge-0", &deltas[0], true);
        redis.sync("edge-1", &deltas[1], false);
        redis.sync("edge-0", &deltas[0], false);
        redis.sync("edge-1", &deltas[1], false);
        redis.sync("edge-0", &deltas[0], false);
        let imp = redis.impressions();
        let meas: u64 = redis.keys.values().map(|k| k.counters.measurable).sum();
        let invalid: u64 = redis.keys.values().map(|k| k.counters.invalid).sum();
        let bots = distinct.len() as u64 / 5;
        let people = distinct.len() as u64 - bots;
        assert_eq!(imp, 3 * people + 2);
        assert_eq!(meas, people);
        assert_eq!(invalid, 4 * bots, "each bot batch's four events, once");
        // A later delta with a batch already counted leaves it out.
        edges[0].finish_sync();
        edges[0].record(
            "batch-3",
            0,
            Traffic::Valid,
            &[ev("e", "ad-1", "x", Kind::Viewable)],
        );
        let later = edges[0].begin_sync().unwrap();
        redis.sync("edge-0", &later, false);
        let again = redis.impressions();
        assert_eq!(again, imp);
    }

    #[test]
    fn expiry_counts_from_the_start_of_the_day() {
        let d = day("2026-11-25");
        assert_eq!(day_expiry_ms(d, 1), d.succ().start_ms());
        assert_eq!(day_expiry_ms(d, 400) - d.start_ms(), 400 * 86_400_000);
    }

    #[test]
    fn the_shortest_retention_outlives_the_last_write_of_a_day() {
        assert_eq!(MIN_RETENTION_DAYS, 4);
        let d = day("2026-11-25");
        // The last moment an event of `d` is accepted (48 h after the end
        // of the day, by a clock the allowance ahead), plus the horizon in
        // which its delta may land.
        let last_write =
            d.succ().start_ms() + MAX_EVENT_AGE_MS + CLOCK_ALLOWANCE_MS + RETRY_HORIZON_MS;
        assert!(day_expiry_ms(d, MIN_RETENTION_DAYS) > last_write);
        // One day less does not hold it; 1 and 2 expired before the day's
        // late events even arrived.
        assert!(day_expiry_ms(d, MIN_RETENTION_DAYS - 1) <= last_write);
        for short in [1, 2] {
            assert!(day_expiry_ms(d, short) < d.succ().start_ms() + MAX_EVENT_AGE_MS);
        }
    }

    #[test]
    fn deltas_older_than_the_horizon_are_not_sent() {
        assert_eq!(RETRY_HORIZON_MS, 23 * HOUR_MS);
        let agg = Aggregator::new();
        let t0 = 1_764_000_000_000;
        agg.record("first", t0, Traffic::Valid, &[]);
        agg.record("later", t0 + 10 * HOUR_MS, Traffic::Valid, &[]);
        let delta = agg.begin_sync().unwrap();
        assert_eq!(too_old_to_send(&delta, t0 + RETRY_HORIZON_MS), None);
        assert_eq!(
            too_old_to_send(&delta, t0 + RETRY_HORIZON_MS + 1),
            Some(RETRY_HORIZON_MS + 1),
            "judged by the oldest batch"
        );
    }
}
