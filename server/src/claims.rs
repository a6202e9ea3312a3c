//! Batch ids that this edge has accepted but not yet synced.
//!
//! Ingest claims a batch id before counting it, so two copies of one batch
//! arriving together (a beacon and its fetch fallback) count once even before
//! the store knows the id. A claim is released once the sync that carries the
//! batch has landed: from then on the store answers for it.

use std::collections::HashSet;
use std::hash::BuildHasher;

use parking_lot::Mutex;

const SHARDS: usize = 16;

#[derive(Debug)]
pub struct BatchClaims {
    shards: Box<[Mutex<HashSet<String>>]>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for BatchClaims {
    fn default() -> Self {
        BatchClaims {
            shards: (0..SHARDS).map(|_| Mutex::new(HashSet::new())).collect(),
            hasher: Default::default(),
        }
    }
}

impl BatchClaims {
    fn shard(&self, id: &str) -> &Mutex<HashSet<String>> {
        &self.shards[(self.hasher.hash_one(id) as usize) % SHARDS]
    }

    /// Claims `id`; false when it is already claimed.
    pub fn claim(&self, id: &str) -> bool {
        let mut shard = self.shard(id).lock();
        if shard.contains(id) {
            return false;
        }
        shard.insert(id.to_owned())
    }

    /// Releases `id` (its batch is in the store now, or was not counted).
    pub fn release(&self, id: &str) {
        self.shard(id).lock().remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_is_exclusive_until_released() {
        let claims = BatchClaims::default();
        assert!(claims.claim("b1"));
        assert!(!claims.claim("b1"));
        assert!(claims.claim("b2"));
        claims.release("b1");
        assert!(claims.claim("b1"));
    }
}
