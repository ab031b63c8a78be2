//! One copy of the values a large config repeats. A mesh of thousands of services
//! declares the same endpoint labels (`version: v1`), the same endpoint port maps and
//! the same route policies (a retry block, a timeout) over and over; the compiled snapshot
//! keeps one shared copy of each instead of one per endpoint or route
//! (docs/performance.md, "Memory with many services").

use super::matcher::RouteMatch;
use super::route::{RouteAction, RoutePolicy, WeightedDestination};
use super::snapshot::Snapshot;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::{self, Debug, Write as _};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

/// Endpoint labels, shared by every endpoint that has the same set.
pub type Labels = Arc<BTreeMap<String, String>>;

/// Port name → endpoint port, shared by every endpoint that declares the same map.
pub type PortMap = Arc<BTreeMap<String, u16>>;

/// The shared copies made while compiling one config.
#[derive(Default)]
pub struct Interner {
    labels: HashSet<Labels>,
    ports: HashSet<PortMap>,
    /// Keyed by the policy's debug text: policies hold compiled regexes and header
    /// values, which have no `Hash`, and equal text means equal behaviour.
    policies: HashMap<String, Arc<RoutePolicy>>,
    /// Route conditions and weighted destinations, by the hash of their debug text (the
    /// text itself is not kept: at 10,000 services the keys would cost what sharing
    /// saves). Equal text means equal behaviour, as for policies.
    matches: Shared<[RouteMatch]>,
    destinations: Shared<[WeightedDestination]>,
}

/// Shared copies by the hash of their debug text; a hash held by unequal values keeps
/// them all.
struct Shared<T: ?Sized> {
    by_hash: HashMap<u64, Vec<Arc<T>>>,
    hasher: std::collections::hash_map::RandomState,
}

impl<T: ?Sized> Default for Shared<T> {
    fn default() -> Self {
        Shared {
            by_hash: HashMap::new(),
            hasher: Default::default(),
        }
    }
}

impl<T: ?Sized + Debug> Shared<T> {
    /// The hash of `v`'s debug text, written straight into the hasher.
    fn hash(&self, v: &T) -> u64 {
        struct Into<H: Hasher>(H);
        impl<H: Hasher> fmt::Write for Into<H> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                self.0.write(s.as_bytes());
                Ok(())
            }
        }
        let mut h = Into(self.hasher.build_hasher());
        let _ = write!(h, "{v:?}");
        h.0.finish()
    }

    /// The copy equal to `v` if there is one, else `v` made shared.
    fn get<V: std::borrow::Borrow<T> + Into<Arc<T>>>(&mut self, v: V) -> Arc<T> {
        let hash = self.hash(v.borrow());
        let same = self.by_hash.get(&hash).and_then(|list| {
            let text = format!("{:?}", v.borrow());
            list.iter().find(|c| format!("{c:?}") == text).cloned()
        });
        same.unwrap_or_else(|| {
            let s: Arc<T> = v.into();
            self.by_hash.entry(hash).or_default().push(s.clone());
            s
        })
    }

    /// Offers `s` as the copy of its value (a copy already known stays).
    fn offer(&mut self, s: &Arc<T>) {
        let hash = self.hash(s);
        let list = self.by_hash.entry(hash).or_default();
        if list.is_empty() {
            list.push(s.clone());
        }
    }
}

impl Interner {
    /// The shared copy of a label set.
    pub fn labels(&mut self, l: BTreeMap<String, String>) -> Labels {
        if let Some(s) = self.labels.get(&l) {
            return s.clone();
        }
        let s = Arc::new(l);
        self.labels.insert(s.clone());
        s
    }

    /// The shared copy of an endpoint's port map.
    pub fn ports(&mut self, p: BTreeMap<String, u16>) -> PortMap {
        if let Some(s) = self.ports.get(&p) {
            return s.clone();
        }
        let s = Arc::new(p);
        self.ports.insert(s.clone());
        s
    }

    /// An interner that already holds the route conditions, destinations and policies
    /// of `previous` (the snapshot in force, on a reload): a route the reload did not
    /// change shares them instead of a second copy beside the old snapshot until the swap
    /// (docs/performance.md).
    pub fn sharing_with(previous: Option<&Snapshot>) -> Interner {
        let mut i = Interner::default();
        let Some(prev) = previous else {
            return i;
        };
        let routes = prev
            .route_tables
            .iter()
            .flat_map(|t| &t.virtual_hosts)
            .flat_map(|v| &v.routes);
        for r in routes {
            i.matches.offer(&r.matches);
            if let RouteAction::Forward(w) = &r.action {
                i.destinations.offer(&w.destinations);
            }
            i.policies
                .entry(format!("{:?}", r.policy))
                .or_insert_with(|| r.policy.clone());
        }
        i
    }

    /// The shared copy of a route's conditions.
    pub fn matches(&mut self, m: Vec<RouteMatch>) -> Arc<[RouteMatch]> {
        self.matches.get(m)
    }

    /// The shared copy of a route's weighted destinations.
    pub fn destinations(&mut self, d: Vec<WeightedDestination>) -> Arc<[WeightedDestination]> {
        self.destinations.get(d)
    }

    /// The shared copy of a route policy.
    pub fn policy(&mut self, p: RoutePolicy) -> Arc<RoutePolicy> {
        let key = format!("{p:?}");
        self.policies
            .entry(key)
            .or_insert_with(|| Arc::new(p))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn equal_values_share_one_copy() {
        let mut i = Interner::default();
        let l = |v: &str| BTreeMap::from([("version".to_string(), v.to_string())]);
        let (a, b, c) = (i.labels(l("v1")), i.labels(l("v1")), i.labels(l("v2")));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        let p = |t| RoutePolicy {
            timeout: Some(Duration::from_secs(t)),
            ..RoutePolicy::default()
        };
        let (x, y, z) = (i.policy(p(2)), i.policy(p(2)), i.policy(p(3)));
        assert!(Arc::ptr_eq(&x, &y));
        assert_eq!(z.timeout, Some(Duration::from_secs(3)));
        let m = |n| BTreeMap::from([("http".to_string(), n)]);
        assert!(Arc::ptr_eq(&i.ports(m(80)), &i.ports(m(80))));
    }
}
