//! Batch ids that this edge has accepted but not yet synced.
//!
//! Ingest claims a batch id before counting it, so two copies of one batch
//! arriving together (a beacon and its fetch fallback, a client's retry of a
//! request that timed out) count once even before the store knows the id. A
//! claim is released once the sync that carries the batch has landed: from
//! then on the store answers for it.
//!
//! A claim is first *counting* (the copy that took it is still being
//! validated) and then *counted*, with the log position that makes it
//! durable. A second copy waits for the first to settle ([`BatchClaims::settled`]):
//! if the first was counted, the second is a duplicate whose answer must not
//! come before the first copy's log position is durable (or a crash could
//! lose a batch the second answer acknowledged); if the first was dropped
//! (rejected, or its request cancelled), the second is counted in its place.
//!
//! A [`Claim`] releases itself when dropped without being marked counted, so
//! a request cancelled mid-way (the client hung up during an `await`) never
//! leaves an id claimed that nothing will count.

use std::collections::HashMap;
use std::hash::BuildHasher;

use parking_lot::Mutex;
use tokio::sync::Notify;

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
    pub fn claim_counted(&self, id: &str) {
        self.shard(id)
            .lock()
            .insert(id.to_owned(), State::Counted(None));
    }

    /// Releases `id` (its batch is in the store now, or was not counted).
    pub fn release(&self, id: &str) {
        self.shard(id).lock().remove(id);
        self.settled.notify_waiters();
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
}
