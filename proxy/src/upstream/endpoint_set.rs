//! One generation of a cluster's endpoints: the list the load balancer picks from, with
//! what is derived from it (weights, consistent-hash table). A static cluster has one
//! generation for its whole life; a `resolution: DNS` cluster gets a new one whenever an
//! answer changes its addresses, swapped in whole (`ArcSwap`) so a request reads one
//! consistent set with one atomic load.
//!
//! [`diff`] is the rule a new answer is applied by (Envoy's STRICT_DNS): addresses that
//! stay keep their live state, new ones get fresh state, the ones that go are drained.

use super::cluster_state::{EndpointState, HashTable};
use super::hash_ring::{Maglev, Ring};
use super::outlier;
use meshproxy_config::compile::cluster::{HashAlgorithm, LoadBalancer, OutlierPolicy};
use std::hash::Hash;
use std::sync::Arc;

/// The endpoints of a cluster at one moment.
pub struct EndpointSet {
    /// The endpoints, in a stable order (config order; a name's addresses in the order
    /// its first answers gave them).
    pub list: Vec<Arc<EndpointState>>,
    /// Consistent-hash table, for consistent-hash clusters.
    pub(super) hash: Option<HashTable>,
    /// Sum of endpoint weights.
    pub(super) total_weight: u64,
    /// All weights equal (fast paths).
    pub(super) equal_weights: bool,
}

impl std::ops::Deref for EndpointSet {
    type Target = [Arc<EndpointState>];

    fn deref(&self) -> &Self::Target {
        &self.list
    }
}

impl EndpointSet {
    /// A set of `list`, with the hash table `lb` needs.
    pub fn build(list: Vec<Arc<EndpointState>>, lb: &LoadBalancer) -> EndpointSet {
        let names: Vec<std::sync::Arc<str>> = list.iter().map(|e| e.name.clone()).collect();
        let weights: Vec<u32> = list.iter().map(|e| e.weight).collect();
        let hash = match lb {
            LoadBalancer::ConsistentHash { algorithm, .. } if !list.is_empty() => {
                Some(match algorithm {
                    HashAlgorithm::RingHash { minimum_ring_size } => {
                        HashTable::Ring(Ring::build(&names, &weights, *minimum_ring_size))
                    }
                    HashAlgorithm::Maglev { table_size } => {
                        HashTable::Maglev(Maglev::build(&names, &weights, *table_size))
                    }
                })
            }
            _ => None,
        };
        EndpointSet {
            total_weight: weights.iter().map(|w| u64::from(*w)).sum(),
            equal_weights: weights.windows(2).all(|w| w[0] == w[1]),
            list,
            hash,
        }
    }

    /// Endpoints the load balancer may use at `now`: all when outlier detection is off or
    /// in panic mode (`minHealthPercent`), else the ones not ejected. `None` = all.
    pub fn available(&self, policy: Option<&OutlierPolicy>, now: u64) -> Option<Vec<bool>> {
        let policy = policy?;
        let healthy = self
            .list
            .iter()
            .filter(|e| !e.outlier.is_ejected(now))
            .count();
        if healthy == self.list.len() || outlier::panic_mode(policy, healthy, self.list.len()) {
            return None;
        }
        Some(
            self.list
                .iter()
                .map(|e| !e.outlier.is_ejected(now))
                .collect(),
        )
    }

    /// The index of `ep` in this set, if it is still a member (`hint` is tried first:
    /// the index it was picked at, right unless the set changed since).
    pub fn position(&self, hint: usize, ep: &EndpointState) -> Option<usize> {
        if self
            .list
            .get(hint)
            .is_some_and(|e| std::ptr::eq(e.as_ref(), ep))
        {
            return Some(hint);
        }
        self.list.iter().position(|e| std::ptr::eq(e.as_ref(), ep))
    }
}

/// How a new answer changes a name's addresses.
#[derive(Debug, PartialEq, Eq)]
pub struct Diff<K> {
    /// The new membership in order: the addresses that stay, where they were, then the
    /// new ones in answer order (a stable order keeps round-robin and hash tables calm).
    pub members: Vec<K>,
    /// Addresses that are new (fresh state).
    pub added: Vec<K>,
    /// Addresses that went (drained).
    pub removed: Vec<K>,
}

impl<K> Diff<K> {
    /// True when the membership is unchanged.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

/// Envoy's STRICT_DNS rule for a new answer: every address in it is a member (duplicates
/// once); addresses of `old` missing from it are removed. An empty answer removes all
/// (Envoy: a successful empty resolution empties the hosts of the name).
pub fn diff<K: Copy + Eq + Hash>(old: &[K], answer: &[K]) -> Diff<K> {
    let new: std::collections::HashSet<K> = answer.iter().copied().collect();
    let before: std::collections::HashSet<K> = old.iter().copied().collect();
    let mut members: Vec<K> = old.iter().copied().filter(|k| new.contains(k)).collect();
    let removed: Vec<K> = old.iter().copied().filter(|k| !new.contains(k)).collect();
    let mut added = Vec::new();
    for k in answer {
        if !before.contains(k) && !added.contains(k) {
            added.push(*k);
        }
    }
    members.extend(added.iter().copied());
    Diff {
        members,
        added,
        removed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_answer_adds_every_address_once() {
        let d = diff::<u8>(&[], &[3, 1, 3, 2]);
        assert_eq!(d.members, vec![3, 1, 2]);
        assert_eq!(d.added, vec![3, 1, 2]);
        assert!(d.removed.is_empty());
    }

    #[test]
    fn same_answer_in_another_order_changes_nothing() {
        let d = diff(&[1, 2, 3], &[3, 2, 1]);
        assert!(d.is_empty());
        assert_eq!(d.members, vec![1, 2, 3], "kept members keep their places");
    }

    #[test]
    fn kept_stay_in_place_new_go_last_gone_are_drained() {
        let d = diff(&[1, 2, 3], &[4, 3, 1]);
        assert_eq!(d.members, vec![1, 3, 4]);
        assert_eq!(d.added, vec![4]);
        assert_eq!(d.removed, vec![2]);
    }

    #[test]
    fn empty_answer_removes_all() {
        let d = diff(&[1, 2], &[]);
        assert!(d.members.is_empty());
        assert_eq!(d.removed, vec![1, 2]);
    }

    #[test]
    fn weights_and_hash_follow_the_list() {
        use meshproxy_config::compile::cluster::EndpointAddress;
        let ep = |a: &str, w| {
            Arc::new(EndpointState::new(
                EndpointAddress::Socket(a.parse().unwrap()),
                w,
                Default::default(),
                1,
            ))
        };
        let lb = LoadBalancer::ConsistentHash {
            key: meshproxy_config::compile::cluster::HashKey::SourceIp,
            algorithm: HashAlgorithm::Maglev { table_size: 101 },
        };
        let s = EndpointSet::build(vec![ep("10.0.0.1:80", 2), ep("10.0.0.2:80", 2)], &lb);
        assert_eq!(s.total_weight, 4);
        assert!(s.equal_weights);
        assert!(s.hash.is_some());
        let other = ep("10.0.0.3:80", 1);
        assert_eq!(s.position(1, &s.list[1]), Some(1));
        assert_eq!(s.position(0, &s.list[1]), Some(1));
        assert_eq!(s.position(0, &other), None);
        let empty = EndpointSet::build(Vec::new(), &lb);
        assert!(empty.hash.is_none());
    }
}
