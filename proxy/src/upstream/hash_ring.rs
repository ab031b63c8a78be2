//! Consistent hashing: Envoy's ring hash (Ketama-style, xxHash64) and Maglev.

use xxhash_rust::xxh64::xxh64;

/// Envoy's hash of a key (xxHash64, seed 0).
pub fn hash_key(key: &[u8]) -> u64 {
    xxh64(key, 0)
}

/// A ring of (hash, endpoint index), sorted by hash.
#[derive(Debug)]
pub struct Ring {
    entries: Vec<(u64, u32)>,
}

impl Ring {
    /// Builds a ring with at least `min_size` entries spread over the endpoints by weight.
    /// Each endpoint contributes entries hashed from `"<address>_<n>"`, as Envoy does.
    pub fn build<S: AsRef<str>>(names: &[S], weights: &[u32], min_size: u64) -> Ring {
        let total: u64 = weights
            .iter()
            .map(|w| u64::from(*w).max(1))
            .sum::<u64>()
            .max(1);
        // Envoy caps the ring at 8M entries; the minimum scales with the host count.
        let target = min_size.max(names.len() as u64).min(8 * 1024 * 1024);
        let mut entries = Vec::with_capacity(target as usize + names.len());
        for (i, name) in names.iter().enumerate() {
            let w = u64::from(weights[i]).max(1);
            let n = ((target * w) as f64 / total as f64).ceil().max(1.0) as u64;
            for k in 0..n {
                let key = format!("{}_{k}", name.as_ref());
                entries.push((hash_key(key.as_bytes()), i as u32));
            }
        }
        entries.sort_unstable();
        Ring { entries }
    }

    /// The endpoints in ring order starting at `hash` (first = the owner).
    pub fn walk(&self, hash: u64) -> impl Iterator<Item = u32> + '_ {
        let start = self.entries.partition_point(|(h, _)| *h < hash);
        let n = self.entries.len();
        (0..n).map(move |i| self.entries[(start + i) % n].1)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A Maglev lookup table (Eisenbud et al., 2016), as Envoy builds it.
#[derive(Debug)]
pub struct Maglev {
    table: Vec<u32>,
}

impl Maglev {
    /// Builds the table of size `m` (prime) for the named endpoints; weights repeat an
    /// endpoint's turn proportionally.
    pub fn build<S: AsRef<str>>(names: &[S], weights: &[u32], m: u64) -> Maglev {
        let m = m.max(1) as usize;
        let n = names.len();
        if n == 0 {
            return Maglev { table: Vec::new() };
        }
        let offsets: Vec<usize> = names
            .iter()
            .map(|s| (xxh64(s.as_ref().as_bytes(), 0) % m as u64) as usize)
            .collect();
        let skips: Vec<usize> = names
            .iter()
            .map(|s| (xxh64(s.as_ref().as_bytes(), 1) % (m as u64 - 1).max(1)) as usize + 1)
            .collect();
        let max_w = weights.iter().copied().max().unwrap_or(1).max(1) as f64;
        let mut next = vec![0usize; n];
        let mut target_weight = vec![0f64; n];
        let mut table = vec![u32::MAX; m];
        let mut filled = 0;
        let mut iteration = 1u64;
        while filled < m {
            for i in 0..n {
                let w = weights[i].max(1) as f64 / max_w;
                target_weight[i] += w;
                if target_weight[i] < iteration as f64 {
                    continue;
                }
                loop {
                    let c = (offsets[i] + skips[i] * next[i]) % m;
                    next[i] += 1;
                    if table[c] == u32::MAX {
                        table[c] = i as u32;
                        filled += 1;
                        break;
                    }
                }
                if filled == m {
                    break;
                }
            }
            iteration += 1;
        }
        Maglev { table }
    }

    /// The endpoint for `hash`.
    pub fn lookup(&self, hash: u64) -> Option<u32> {
        if self.table.is_empty() {
            return None;
        }
        Some(self.table[(hash % self.table.len() as u64) as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{i}:80")).collect()
    }

    #[test]
    fn ring_is_balanced_and_stable() {
        let ring = Ring::build(&names(4), &[1; 4], 1024);
        let mut counts = [0u32; 4];
        for k in 0..40_000u32 {
            let owner = ring.walk(hash_key(&k.to_le_bytes())).next().unwrap();
            counts[owner as usize] += 1;
        }
        for c in counts {
            assert!((7_000..13_000).contains(&c), "{counts:?}");
        }
        let again = Ring::build(&names(4), &[1; 4], 1024);
        assert_eq!(ring.walk(42).next(), again.walk(42).next());
    }

    #[test]
    fn ring_moves_few_keys_when_a_host_is_added() {
        let a = Ring::build(&names(4), &[1; 4], 1024);
        let b = Ring::build(&names(5), &[1; 5], 1024);
        let moved = (0..10_000u32)
            .filter(|k| {
                let h = hash_key(&k.to_le_bytes());
                a.walk(h).next() != b.walk(h).next()
            })
            .count();
        assert!(moved < 3_500, "moved {moved} of 10000");
    }

    #[test]
    fn maglev_is_balanced_and_consistent() {
        let m = Maglev::build(&names(3), &[1; 3], 65537);
        let mut counts = [0u32; 3];
        for k in 0..30_000u32 {
            counts[m.lookup(hash_key(&k.to_le_bytes())).unwrap() as usize] += 1;
        }
        for c in counts {
            assert!((8_500..11_500).contains(&c), "{counts:?}");
        }
        let m2 = Maglev::build(&names(3), &[1; 3], 65537);
        assert_eq!(m.lookup(7), m2.lookup(7));
    }
}
