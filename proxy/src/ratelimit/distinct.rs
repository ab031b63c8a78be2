//! Counts kept per client value (a `Distinct` header or address): a bounded map from the
//! value to a `u64` of state, least recently used first out.
//!
//! Bounded because the values come from clients: one spraying header values must not
//! grow the proxy's memory. A value pushed out loses its count (its next request finds
//! a full bucket), which only favours a client whose value was idle longest. The map is
//! split in shards, each behind its own lock, so workers counting different clients
//! rarely meet.

use foldhash::fast::FixedState;
use lru::LruCache;
use std::hash::BuildHasher;
use std::num::NonZeroUsize;
use std::sync::Mutex;

/// Most distinct values one rule keeps.
pub const MAX_VALUES: usize = 16_384;
const SHARDS: usize = 16;

/// One shard: values to state, least recently used first out.
type Shard = Mutex<LruCache<Box<[u8]>, u64, FixedState>>;

/// A bounded, sharded map of client values to `u64` state.
pub struct Distinct {
    shards: Box<[Shard]>,
    hasher: FixedState,
}

impl std::fmt::Debug for Distinct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Distinct")
    }
}

impl Default for Distinct {
    fn default() -> Self {
        Distinct::with_capacity(MAX_VALUES)
    }
}

impl Distinct {
    /// A map of at most `capacity` values (rounded up to a multiple of the shards).
    pub fn with_capacity(capacity: usize) -> Distinct {
        let per = NonZeroUsize::new(capacity.div_ceil(SHARDS).max(1)).unwrap_or(NonZeroUsize::MIN);
        Distinct {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(LruCache::with_hasher(per, FixedState::default())))
                .collect(),
            hasher: FixedState::with_seed(0x5eed),
        }
    }

    /// Runs `f` on the state of `key` (0 when the key is new) and stores what it returns
    /// (`None`: left as it was; a new key is then not stored).
    pub fn update<T>(&self, key: &[u8], f: impl FnOnce(u64) -> (Option<u64>, T)) -> T {
        let shard = self.hasher.hash_one(key) as usize % self.shards.len();
        // A poisoned shard only means a panic elsewhere while it was held; its counts
        // are still counts.
        let mut map = self.shards[shard]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let old = map.get(key).copied();
        let (new, out) = f(old.unwrap_or(0));
        match (old, new) {
            (Some(_), Some(v)) => {
                if let Some(slot) = map.get_mut(key) {
                    *slot = v;
                }
            }
            (None, Some(v)) => {
                map.put(key.into(), v);
            }
            (_, None) => {}
        }
        out
    }

    /// Values held now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|m| m.len()).unwrap_or(0))
            .sum()
    }

    /// True when no value is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_value_has_its_state_and_the_map_stays_bounded() {
        let d = Distinct::with_capacity(64);
        for i in 0..10_000u32 {
            d.update(&i.to_be_bytes(), |v| (Some(v + 1), ()));
        }
        assert!(d.len() <= 64, "{}", d.len());
        d.update(b"a", |v| (Some(v + 5), ()));
        assert_eq!(d.update(b"a", |v| (None, v)), 5);
        assert_eq!(d.update(b"b", |v| (None, v)), 0);
    }
}
