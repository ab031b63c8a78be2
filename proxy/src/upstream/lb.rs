//! Endpoint selection: Istio's load balancers over a cluster's live state.
//!
//! `exclude` lists endpoints already tried by this request (Envoy's `previous_hosts`
//! retry predicate); they are avoided while another choice exists. A pick reads the
//! cluster's endpoint set once and returns the endpoint itself with its index, so a
//! DNS answer swapping the set meanwhile cannot turn an index into another endpoint.

use super::cluster_state::{ClusterState, EndpointState, HashTable};
use super::endpoint_set::EndpointSet;
use meshproxy_config::compile::cluster::{HashAlgorithm, LoadBalancer};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Picks an endpoint (and its index in the set it was picked from), or `None` when the
/// cluster has no usable endpoint.
pub fn pick(
    state: &ClusterState,
    lb: &LoadBalancer,
    hash: Option<u64>,
    exclude: &[usize],
) -> Option<(usize, Arc<EndpointState>)> {
    let set = state.endpoints();
    let i = pick_in(&set, state, lb, hash, exclude)?;
    Some((i, set[i].clone()))
}

fn pick_in(
    set: &EndpointSet,
    state: &ClusterState,
    lb: &LoadBalancer,
    hash: Option<u64>,
    exclude: &[usize],
) -> Option<usize> {
    let n = set.len();
    // Ejected endpoints are skipped unless the cluster is in panic mode.
    let avail = set.available(state.outlier.as_ref(), super::outlier::now_nanos());
    let usable = |i: usize| avail.as_ref().is_none_or(|a| a[i]);
    if n == 0 || !(0..n).any(usable) {
        return None;
    }
    if n == 1 {
        return Some(0);
    }
    let allowed = |i: usize| usable(i) && !exclude.contains(&i);
    let any_allowed = (0..n).any(allowed);
    let ok = |i: usize| if any_allowed { allowed(i) } else { usable(i) };
    match lb {
        LoadBalancer::RoundRobin => Some(round_robin(set, &state.cursor, ok)),
        LoadBalancer::Random | LoadBalancer::Passthrough => Some(random(set, ok)),
        LoadBalancer::LeastRequest => Some(least_request(set, ok)),
        LoadBalancer::ConsistentHash { algorithm, .. } => match (hash, &set.hash) {
            (Some(h), Some(table)) => {
                let first = match (table, algorithm) {
                    (HashTable::Maglev(m), HashAlgorithm::Maglev { .. }) => m.lookup(h),
                    (HashTable::Ring(r), _) => r.walk(h).find(|i| ok(*i as usize)),
                    (HashTable::Maglev(m), _) => m.lookup(h),
                };
                match first {
                    Some(i) if ok(i as usize) => Some(i as usize),
                    _ => Some(random(set, ok)),
                }
            }
            // Envoy: no hash key in the request → a random host.
            _ => Some(random(set, ok)),
        },
    }
}

fn round_robin(set: &EndpointSet, cursor: &AtomicU64, ok: impl Fn(usize) -> bool) -> usize {
    let n = set.len();
    for _ in 0..n {
        let c = cursor.fetch_add(1, Ordering::Relaxed);
        let i = if set.equal_weights {
            (c % n as u64) as usize
        } else {
            weighted_index(set, c % set.total_weight.max(1))
        };
        if ok(i) {
            return i;
        }
    }
    random(set, ok)
}

fn weighted_index(set: &EndpointSet, mut r: u64) -> usize {
    for (i, e) in set.iter().enumerate() {
        let w = u64::from(e.weight);
        if r < w {
            return i;
        }
        r -= w;
    }
    set.len() - 1
}

fn random(set: &EndpointSet, ok: impl Fn(usize) -> bool) -> usize {
    let n = set.len();
    for _ in 0..8 {
        let i = if set.equal_weights {
            fastrand::usize(..n)
        } else {
            weighted_index(set, fastrand::u64(..set.total_weight.max(1)))
        };
        if ok(i) {
            return i;
        }
    }
    let start = fastrand::usize(..n);
    (0..n)
        .map(|k| (start + k) % n)
        .find(|i| ok(*i))
        .unwrap_or(0)
}

/// Envoy's least-request with equal weights: power of two random choices, the one with
/// fewer active requests wins. With unequal weights Envoy divides the weight by the active
/// requests (plus one); the candidates are drawn by weight.
fn least_request(set: &EndpointSet, ok: impl Fn(usize) -> bool + Copy) -> usize {
    let a = random(set, ok);
    let mut b = random(set, ok);
    if a == b {
        b = random(set, ok);
    }
    let active = |i: usize| set[i].active_requests.load(Ordering::Relaxed);
    if set.equal_weights {
        if active(b) < active(a) {
            b
        } else {
            a
        }
    } else {
        let score = |i: usize| f64::from(set[i].weight) / (f64::from(active(i)) + 1.0);
        if score(b) > score(a) {
            b
        } else {
            a
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::cluster_state::ClusterState;
    use meshproxy_config::compile::cluster::*;
    use std::sync::atomic::Ordering;

    fn cluster(n: usize, lb: LoadBalancer, weights: Option<Vec<u32>>) -> ClusterState {
        let endpoints = (0..n)
            .map(|i| Endpoint {
                address: EndpointAddress::Socket(format!("10.0.0.{i}:80").parse().unwrap()),
                labels: Default::default(),
                weight: weights.as_ref().map(|w| w[i]).unwrap_or(1),
                service_account: None,
            })
            .collect();
        let c = super::super::test_cluster(endpoints, lb);
        ClusterState::new(&c, 1)
    }

    fn idx(s: &ClusterState, lb: &LoadBalancer, h: Option<u64>, exclude: &[usize]) -> usize {
        pick(s, lb, h, exclude).unwrap().0
    }

    #[test]
    fn round_robin_cycles() {
        let s = cluster(3, LoadBalancer::RoundRobin, None);
        let picks: Vec<usize> = (0..6)
            .map(|_| idx(&s, &LoadBalancer::RoundRobin, None, &[]))
            .collect();
        for i in 0..3 {
            assert_eq!(picks.iter().filter(|p| **p == i).count(), 2, "{picks:?}");
        }
        assert_ne!(picks[0], picks[1]);
    }

    #[test]
    fn weighted_round_robin_follows_weights() {
        let s = cluster(2, LoadBalancer::RoundRobin, Some(vec![3, 1]));
        let picks: Vec<usize> = (0..400)
            .map(|_| idx(&s, &LoadBalancer::RoundRobin, None, &[]))
            .collect();
        assert_eq!(picks.iter().filter(|p| **p == 0).count(), 300);
    }

    #[test]
    fn random_is_roughly_uniform() {
        let s = cluster(4, LoadBalancer::Random, None);
        let mut counts = [0; 4];
        for _ in 0..40_000 {
            counts[idx(&s, &LoadBalancer::Random, None, &[])] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn least_request_avoids_busy_endpoints() {
        let s = cluster(2, LoadBalancer::LeastRequest, None);
        s.endpoints()[0]
            .active_requests
            .store(10, Ordering::Relaxed);
        let picks: Vec<usize> = (0..1000)
            .map(|_| idx(&s, &LoadBalancer::LeastRequest, None, &[]))
            .collect();
        // P2C with 2 endpoints: the idle one wins whenever both are drawn (3/4 of draws
        // differ or draw it twice), the busy one only when drawn twice.
        let busy = picks.iter().filter(|p| **p == 0).count();
        assert!(busy < 150, "busy endpoint picked {busy} times");
    }

    #[test]
    fn previous_hosts_are_avoided() {
        for lb in [
            LoadBalancer::RoundRobin,
            LoadBalancer::Random,
            LoadBalancer::LeastRequest,
        ] {
            let s = cluster(3, lb.clone(), None);
            for _ in 0..100 {
                let p = idx(&s, &lb, None, &[0, 1]);
                assert_eq!(p, 2, "{lb:?}");
            }
            // Everything excluded: still answers.
            assert!(pick(&s, &lb, None, &[0, 1, 2]).is_some());
        }
    }

    #[test]
    fn consistent_hash_is_sticky() {
        for algorithm in [
            HashAlgorithm::RingHash {
                minimum_ring_size: 1024,
            },
            HashAlgorithm::Maglev { table_size: 65537 },
        ] {
            let lb = LoadBalancer::ConsistentHash {
                key: HashKey::SourceIp,
                algorithm,
            };
            let s = cluster(5, lb.clone(), None);
            for k in 0..200u64 {
                let h = crate::upstream::hash_ring::hash_key(&k.to_le_bytes());
                let first = idx(&s, &lb, Some(h), &[]);
                for _ in 0..5 {
                    assert_eq!(idx(&s, &lb, Some(h), &[]), first);
                }
            }
        }
    }
}
