//! A batch counts once: the protocol, step by step, and the claims it
//! keeps in memory. Every part that answers "has this batch counted?" is
//! named here; each step's code is where its state lives.
//!
//! 1. **Claim** (ingest, [`BatchClaims::claim`]). Ingest claims a batch id
//!    before it validates the batch, so two copies arriving together (a
//!    beacon and its fetch fallback, a retry of a request that timed out)
//!    count once. A claim is first *counting*; a second copy waits for it to
//!    settle ([`BatchClaims::settled`]): if the first copy was counted, the
//!    second is a duplicate whose answer must not come before the first
//!    copy's log position is durable (or a crash could lose a batch the
//!    second answer acknowledged); if the first was dropped (rejected, or
//!    its request cancelled), the second is counted in its place. A
//!    [`Claim`] dropped without being marked counted releases itself, so a
//!    request cancelled mid-way never leaves an id claimed that nothing
//!    will count.
//! 2. **Seen index** (ingest, [`crate::store::Store::batch_seen`]). An id
//!    that is not claimed may have been synced already: both stores answer
//!    from the ids this edge has synced, kept on the edge for 48 h
//!    (`store/seen.rs`), so ingest never waits on the network. If the index
//!    cannot be read the batch is accepted and step 5 decides.
//! 3. **Count and log** (ingest, `crate::edge`). The batch's events go into
//!    the aggregator with a [`crate::counts::BatchRecord`] of its shares,
//!    and its record into the write-ahead log under the same guard, in the
//!    segment of the delta that counts it; the claim becomes *counted* with
//!    the log position ([`Claim::counted`]), and with `--durability strict`
//!    the answer waits for that position to be fsynced.
//!    A batch with no valid event counts nothing and keeps no state: its
//!    claim is dropped once it is validated, so it is never logged, synced,
//!    indexed or claimed in Redis, and de-duplication state grows only with
//!    batches that counted something.
//! 4. **Replay** (start). Batches replayed from the log are claimed as
//!    counted ([`BatchClaims::claim_replayed`]) before the edge serves, so a
//!    client retrying one is told it was counted, as before the crash.
//! 5. **Sync** (`crate::sync`, then the store). A store applying a delta
//!    leaves out the counters of every batch it has counted before
//!    ([`crate::counts::Delta::updates`]): the embedded store by its seen
//!    index, written right after the transaction that stores the counts
//!    (a delta at or below the last one it applied changes no count and
//!    writes its ids into the index again, which mends a crash between the
//!    two); the Redis store
//!    by batch claims in Redis, which also catch a copy another edge
//!    counted, and then writes its seen index before `apply` returns.
//!    Redis keeps claims and ledger entries 72 h, which covers every delta
//!    an edge still sends: one whose oldest batch was accepted more than
//!    23 h ago is too old to send blindly (a claim another edge made on one
//!    of its batches may be gone; `store/redis/plan.rs` has the argument),
//!    so the sync drops it, logs it as an error and counts it in
//!    `glimpse_deltas_dropped_total`; its batch ids still go into the seen
//!    index. Before the first sync writes anything, the Redis store checks
//!    that this start's boot number is above every one Redis has seen of
//!    the edge's id: a restored data directory would repeat sequence
//!    numbers, and the edge refuses to run on it.
//! 6. **Release** (`Edge::synced`, after the store has the delta): the
//!    aggregator drops the delta, the log may delete its segment, and only
//!    then are its claims released ([`BatchClaims::release_synced`]): from
//!    step 5 on the seen index answers for those ids, so there is no moment
//!    when neither does.
//!
//! **The single-impression GET.** Each `GET /v1/impression` is a batch of
//! its own under an id the edge mints ([`mint_batch_id`]). Minted ids
//! contain `/`, which no client id may, so they are unique by construction:
//! they are never claimed (steps 1, 4, and the Redis claims of step 5),
//! never looked up in the seen index (step 2), and neither store's index
//! records them: de-duplication state is kept only for client batches that
//! counted something. A delta replayed after it had landed (a crash between
//! the store's commit and the log's delete) still counts nothing: the
//! embedded store knows the last delta it applied, and Redis's ledgers
//! hold each step.

use std::collections::HashMap;
use std::hash::BuildHasher;

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::counts::Delta;
use crate::heap;

/// Whether a batch id takes part in de-duplication: every id but the ones
/// the edge mints ([`mint_batch_id`]).
pub fn needs_claim(batch_id: &str) -> bool {
    !batch_id.contains('/')
}

/// A fresh id for the batch of one `GET /v1/impression`: `single/` and 128
/// random bits, which no client can send (ids never contain `/`).
pub fn mint_batch_id() -> String {
    format!("single/{:032x}", rand::random::<u128>())
}

const SHARDS: usize = 16;

/// What a claimed batch is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// The copy that claimed it is being validated.
    Counting,
    /// Counted; durable once the write-ahead log reaches this position
    /// (`None`: nothing to wait for).
    Counted(Option<u64>),
}

/// Batch ids this edge has accepted and not yet synced (steps 1, 3, 4, 6).
#[derive(Debug)]
pub struct BatchClaims {
    shards: Box<[Mutex<HashMap<String, State>>]>,
    hasher: std::collections::hash_map::RandomState,
    /// Woken whenever a claim settles. Shared by all ids: waiting copies are
    /// rare, and each rechecks its own id.
    settled: Notify,
}

impl Default for BatchClaims {
    fn default() -> Self {
        BatchClaims {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: Default::default(),
            settled: Notify::new(),
        }
    }
}

/// A claim taken by [`BatchClaims::claim`]: released on drop unless
/// [`Claim::counted`] is called.
#[derive(Debug)]
#[must_use = "a claim dropped unused is released at once"]
pub struct Claim<'a> {
    claims: &'a BatchClaims,
    id: &'a str,
    counted: bool,
}

impl Claim<'_> {
    /// The batch is counted; it is durable once the log reaches `position`
    /// (`None` when nothing needs waiting for). The id stays claimed until
    /// [`BatchClaims::release`].
    pub fn counted(mut self, position: Option<u64>) {
        self.claims.set(self.id, State::Counted(position));
        self.counted = true;
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if !self.counted {
            self.claims.release(self.id);
        }
    }
}

impl BatchClaims {
    fn shard(&self, id: &str) -> &Mutex<HashMap<String, State>> {
        &self.shards[(self.hasher.hash_one(id) as usize) % SHARDS]
    }

    fn set(&self, id: &str, state: State) {
        if let Some(s) = self.shard(id).lock().get_mut(id) {
            *s = state;
        }
        self.settled.notify_waiters();
    }

    /// The heap one claim on `batch_id` holds until its batch is synced
    /// (nothing for a minted id, which is never claimed): part of the
    /// pending bytes ([`crate::aggregate::Aggregator::pending_bytes`]).
    pub fn heap_bytes(batch_id: &str) -> usize {
        if needs_claim(batch_id) {
            heap::hash_entry::<(String, State)>() + heap::allocation(batch_id.len())
        } else {
            0
        }
    }

    /// Claims `id` for counting; `None` when it is already claimed.
    pub fn claim<'a>(&'a self, id: &'a str) -> Option<Claim<'a>> {
        let mut shard = self.shard(id).lock();
        if shard.contains_key(id) {
            return None;
        }
        shard.insert(id.to_owned(), State::Counting);
        Some(Claim {
            claims: self,
            id,
            counted: false,
        })
    }

    /// Claims `id` as already counted and durable: a batch replayed from the
    /// log at start.
    fn claim_counted(&self, id: &str) {
        self.shard(id)
            .lock()
            .insert(id.to_owned(), State::Counted(None));
    }

    /// Step 4: claims every batch of `delta`, a delta replayed from the log,
    /// as counted and durable.
    pub fn claim_replayed(&self, delta: &Delta) {
        for record in &delta.batches {
            if needs_claim(&record.batch_id) {
                self.claim_counted(&record.batch_id);
            }
        }
    }

    /// Releases `id` (its batch is in the store now, or was not counted).
    fn release(&self, id: &str) {
        self.shard(id).lock().remove(id);
        self.settled.notify_waiters();
    }

    /// Step 6: the store holds `delta`; its batches' claims go.
    pub fn release_synced(&self, delta: &Delta) {
        for record in &delta.batches {
            if needs_claim(&record.batch_id) {
                self.release(&record.batch_id);
            }
        }
    }

    /// Waits until the claim on `id` is no longer counting: `Some(position)`
    /// when it was counted (durable at that log position, if any), `None`
    /// when it is not claimed (released, or never taken).
    pub async fn settled(&self, id: &str) -> Option<Option<u64>> {
        loop {
            // Registered before the check, so a settle between the check and
            // the wait still wakes this one.
            let woken = self.settled.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            match self.shard(id).lock().get(id) {
                None => return None,
                Some(State::Counted(position)) => return Some(*position),
                Some(State::Counting) => {}
            }
            woken.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_is_exclusive_until_released() {
        let claims = BatchClaims::default();
        claims.claim("b1").expect("free").counted(None);
        assert!(claims.claim("b1").is_none());
        claims.claim("b2").expect("free").counted(Some(3));
        claims.release("b1");
        assert!(claims.claim("b1").is_some());
    }

    #[test]
    fn a_claim_dropped_before_it_is_counted_is_released() {
        let claims = BatchClaims::default();
        {
            let _claim = claims.claim("b1").expect("free");
            assert!(claims.claim("b1").is_none(), "held while counting");
        }
        assert!(claims.claim("b1").is_some(), "released by the drop");
    }

    #[tokio::test]
    async fn a_second_copy_waits_for_the_first_to_settle() {
        let claims = std::sync::Arc::new(BatchClaims::default());
        assert_eq!(claims.settled("b1").await, None, "nothing claimed");

        let first = claims.claim("b1").expect("free");
        let waiter = {
            let claims = std::sync::Arc::clone(&claims);
            tokio::spawn(async move { claims.settled("b1").await })
        };
        // The waiter cannot finish while the first copy is counting.
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        first.counted(Some(42));
        assert_eq!(waiter.await.unwrap(), Some(Some(42)));

        let dropped = claims.claim("b2").expect("free");
        let waiter = {
            let claims = std::sync::Arc::clone(&claims);
            tokio::spawn(async move { claims.settled("b2").await })
        };
        drop(dropped);
        assert_eq!(
            waiter.await.unwrap(),
            None,
            "the first copy was not counted"
        );

        claims.claim_counted("b3");
        assert_eq!(claims.settled("b3").await, Some(None));
    }

    #[test]
    fn minted_ids_need_no_claim_and_replayed_batches_are_claimed_until_synced() {
        let minted = mint_batch_id();
        assert!(minted.starts_with("single/") && !needs_claim(&minted));
        assert_ne!(minted, mint_batch_id());
        assert!(needs_claim("b-7f3a"));
        let agg = crate::aggregate::Aggregator::new();
        agg.record("b1", 0, crate::traffic::Traffic::Valid, &[]);
        agg.record(&minted, 0, crate::traffic::Traffic::Valid, &[]);
        let delta = agg.begin_sync().unwrap();
        let claims = BatchClaims::default();
        claims.claim_replayed(&delta);
        assert!(claims.claim("b1").is_none(), "a replayed batch is claimed");
        assert!(
            !claims.shard(&minted).lock().contains_key(&minted),
            "a minted one is not"
        );
        claims.release_synced(&delta);
        assert!(claims.claim("b1").is_some(), "released once synced");
    }
}
