//! How a [`Delta`] becomes sync steps, and the rules that make each step
//! count once. Pure: no I/O, tested natively. The Lua script `apply.lua`
//! applies the same rules inside Redis; [`tests`] replays them on a model of
//! Redis through retries and duplicate batches.

use std::collections::HashMap;
use std::fmt;

use glimpse_wire::Day;

use crate::aggregate::{DayDelta, Delta};

/// Most batch shares in one script call, so that a long backlog (after an
/// outage) never blocks Redis for long in one call.
pub const MAX_SHARES_PER_STEP: usize = 1000;

/// Whether a batch id takes part in cross-edge de-duplication. Ids the edge
/// makes itself (for `GET /v1/impression`) contain `/`, which no client id
/// may contain: they are unique by construction and need no marker.
pub fn needs_marker(batch_id: &str) -> bool {
    !batch_id.contains('/')
}

/// The identity of one step of one edge, ordered: a step is applied only if
/// it comes after the last one the ledger holds for that edge and key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StepId {
    /// [`sequence`] of the delta.
    pub seq: u64,
    /// Chunk of the (ad, day) within the delta.
    pub chunk: u32,
}

/// Lua numbers are doubles: sequences stay below 2^53.
pub const MAX_SEQUENCE: u64 = (1 << 53) - 1;

/// The sequence of a delta: the edge's boot number in the high bits and the
/// delta's number within that run in the low 32 bits, so it increases across
/// restarts of an edge that keeps its identity.
pub fn sequence(boot: u32, delta_seq: u64) -> Option<u64> {
    if delta_seq >= 1 << 32 {
        return None;
    }
    let seq = (u64::from(boot) << 32) | delta_seq;
    (seq <= MAX_SEQUENCE).then_some(seq)
}

impl fmt::Display for StepId {
    /// The ledger's value format, `<seq>:<chunk>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.seq, self.chunk)
    }
}

impl StepId {
    pub fn parse(s: &str) -> Option<StepId> {
        let (seq, chunk) = s.split_once(':')?;
        Some(StepId {
            seq: seq.parse().ok()?,
            chunk: chunk.parse().ok()?,
        })
    }

    /// The ledger rule: given the last step recorded for this edge on this
    /// key, has `self` landed already?
    pub fn already_applied(self, last: Option<StepId>) -> bool {
        last.is_some_and(|last| last >= self)
    }
}

/// One batch's part of one (ad, day).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Share<'a> {
    pub batch_id: &'a str,
    pub impressions: u64,
    pub measurable: u64,
}

/// One script call.
#[derive(Clone, Debug, PartialEq)]
pub struct Step<'a> {
    pub chunk: u32,
    /// The sketch goes with chunk 0 only (merging it again would be harmless
    /// but costs a round of Redis work).
    pub with_sketch: bool,
    /// Counts of batches without markers (chunk 0 only).
    pub unmarked: (u64, u64),
    pub shares: Vec<Share<'a>>,
}

/// The steps of one (ad, day), to be run in order.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyPlan<'a> {
    pub ad_id: &'a str,
    pub day: Day,
    pub delta: &'a DayDelta,
    pub steps: Vec<Step<'a>>,
}

/// The marked shares of one (ad, day) and the summed unmarked counts.
type KeyShares<'a> = (Vec<Share<'a>>, (u64, u64));

/// Splits a delta into per-(ad, day) steps. Deterministic for a given delta,
/// so a retry of the delta sends exactly the same steps.
pub fn plan(delta: &Delta, max_shares: usize) -> Vec<KeyPlan<'_>> {
    let max_shares = max_shares.max(1);
    let mut shares: HashMap<(&str, Day), KeyShares<'_>> = HashMap::new();
    for record in &delta.batches {
        for c in &record.counts {
            let entry = shares.entry((c.ad_id.as_str(), c.day)).or_default();
            if needs_marker(&record.batch_id) {
                entry.0.push(Share {
                    batch_id: &record.batch_id,
                    impressions: c.impressions,
                    measurable: c.measurable,
                });
            } else {
                entry.1 .0 += c.impressions;
                entry.1 .1 += c.measurable;
            }
        }
    }
    let mut plans: Vec<KeyPlan<'_>> = delta
        .keys()
        .map(|(ad_id, day, d)| {
            let (key_shares, unmarked) = shares.remove(&(ad_id, day)).unwrap_or_default();
            let mut steps: Vec<Step<'_>> = Vec::new();
            let mut rest = key_shares.into_iter().peekable();
            loop {
                let chunk = steps.len() as u32;
                let part: Vec<Share<'_>> = rest.by_ref().take(max_shares).collect();
                steps.push(Step {
                    chunk,
                    with_sketch: chunk == 0 && !d.visitors.is_empty(),
                    unmarked: if chunk == 0 { unmarked } else { (0, 0) },
                    shares: part,
                });
                if rest.peek().is_none() {
                    break;
                }
            }
            KeyPlan {
                ad_id,
                day,
                delta: d,
                steps,
            }
        })
        .collect();
    plans.sort_by(|a, b| (a.ad_id, a.day).cmp(&(b.ad_id, b.day)));
    plans
}

/// Expiry of a day's keys: the start of the day plus the retention.
pub fn day_expiry_ms(day: Day, retention_days: u32) -> i64 {
    day.start_ms() + i64::from(retention_days) * 86_400_000
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::collections::{HashMap, HashSet};

    use glimpse_wire::ingest::Event;
    use glimpse_wire::Kind;

    use super::*;
    use crate::aggregate::Aggregator;

    fn day(s: &str) -> Day {
        s.parse().unwrap()
    }

    fn ev<'a>(id: &'a str, ad: &'a str, user: &'a str, kind: Kind) -> Event<'a> {
        Event {
            id: Cow::Borrowed(id),
            ad_id: Cow::Borrowed(ad),
            user_id: Cow::Borrowed(user),
            kind,
            ts: 0,
            day: day("2026-11-25"),
        }
    }

    #[test]
    fn sequences_grow_across_boots_and_fit_a_double() {
        assert_eq!(sequence(0, 1), Some(1));
        assert!(sequence(1, 1).unwrap() > sequence(0, u32::MAX as u64).unwrap());
        assert_eq!(sequence(1, 1 << 32), None);
        assert!(sequence((1 << 21) - 1, u32::MAX as u64).is_some());
        assert_eq!(sequence(1 << 21, 0), None);
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
    fn plans_split_shares_into_chunks_and_keep_edge_made_ids_unmarked() {
        let agg = Aggregator::new();
        for i in 0..5 {
            let id = format!("b{i}");
            agg.record(&id, 0, &[ev("1", "ad-1", "u", Kind::Viewable)]);
        }
        agg.record("single/x", 0, &[ev("1", "ad-1", "u", Kind::Measurable)]);
        agg.record("b9", 0, &[ev("1", "ad-2", "u", Kind::Measurable)]);
        let delta = agg.begin_sync().unwrap();
        let plans = plan(&delta, 2);
        assert_eq!(plans.len(), 2);
        let p = &plans[0];
        assert_eq!(p.ad_id, "ad-1");
        assert_eq!(p.steps.len(), 3);
        assert_eq!(
            p.steps.iter().map(|s| s.shares.len()).collect::<Vec<_>>(),
            [2, 2, 1]
        );
        assert!(p.steps[0].with_sketch && !p.steps[1].with_sketch);
        assert_eq!(p.steps[0].unmarked, (0, 1));
        assert_eq!(p.steps[1].unmarked, (0, 0));
        // ad-2 has no visitors: no sketch to send.
        assert!(!plans[1].steps[0].with_sketch);
        assert_eq!(plan(&delta, 2), plans, "deterministic");
    }

    /// A model of the Redis side of one (ad, day), following the same rules
    /// as `apply.lua`.
    #[derive(Default)]
    struct ModelKey {
        impressions: u64,
        measurable: u64,
        last_step: HashMap<String, StepId>,
        marked: HashSet<String>,
    }

    impl ModelKey {
        fn apply(&mut self, edge: &str, id: StepId, step: &Step<'_>) {
            if id.already_applied(self.last_step.get(edge).copied()) {
                return;
            }
            let (mut imp, mut meas) = step.unmarked;
            for share in &step.shares {
                if self.marked.insert(share.batch_id.to_owned()) {
                    imp += share.impressions;
                    meas += share.measurable;
                }
            }
            self.impressions += imp;
            self.measurable += meas;
            self.last_step.insert(edge.to_owned(), id);
        }
    }

    #[test]
    fn retries_and_batches_sent_to_two_edges_count_once_in_the_model() {
        // Two edges get overlapping batches; each syncs twice, and every
        // step is delivered twice (a reply lost after the write), the second
        // time after the other edge's steps.
        let users: Vec<String> = (0..40).map(|i| format!("u{i}")).collect();
        let edges = [Aggregator::new(), Aggregator::new()];
        let mut distinct = HashSet::new();
        for b in 0..30 {
            let id = format!("batch-{b}");
            let events: Vec<_> = users[b..b + 3]
                .iter()
                .map(|u| ev("e", "ad-1", u, Kind::Viewable))
                .collect();
            // Batches 10..20 reach both edges.
            let targets: &[usize] = match b {
                0..10 => &[0],
                10..20 => &[0, 1],
                _ => &[1],
            };
            for &t in targets {
                edges[t].record(&id, 0, &events);
            }
            distinct.insert(id);
        }
        let mut key = ModelKey::default();
        let mut deferred = Vec::new();
        let deltas: Vec<_> = edges.iter().map(|a| a.begin_sync().unwrap()).collect();
        for (e, delta) in deltas.iter().enumerate() {
            let seq = sequence(1, delta.seq).unwrap();
            for p in plan(delta, 4) {
                for step in &p.steps {
                    let id = StepId {
                        seq,
                        chunk: step.chunk,
                    };
                    key.apply(&format!("edge-{e}"), id, step);
                    deferred.push((e, id, step.clone()));
                }
            }
        }
        for (e, id, step) in &deferred {
            key.apply(&format!("edge-{e}"), *id, step);
        }
        assert_eq!(key.impressions, 3 * distinct.len() as u64);
    }

    #[test]
    fn expiry_counts_from_the_start_of_the_day() {
        let d = day("2026-11-25");
        assert_eq!(day_expiry_ms(d, 1), d.succ().start_ms());
        assert_eq!(day_expiry_ms(d, 400) - d.start_ms(), 400 * 86_400_000);
    }
}
