//! One copy of the values a large config repeats. A mesh of thousands of services
//! declares the same endpoint labels (`version: v1`), the same endpoint port maps and
//! the same route policies (a retry block, a timeout) over and over; the compiled snapshot
//! keeps one shared copy of each instead of one per endpoint or route
//! (docs/performance.md, "Memory with many services").

use super::route::RoutePolicy;
use std::collections::{BTreeMap, HashMap, HashSet};
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
