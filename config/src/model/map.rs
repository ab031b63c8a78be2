//! [`Map`]: the typed model's string-keyed maps (labels, endpoint ports, header matches),
//! stored as one sorted slice.
//!
//! Nearly every such map in a mesh config has one or two entries (`version: v1`,
//! `http: 8080`, `end-user: {exact: jason}`). A `BTreeMap` allocates a whole node for
//! them, room for eleven entries (540 bytes for one label), so the parsed documents of a
//! 10,000-service config held ~50 MB in map nodes alone while it was compiled
//! (docs/performance.md, "Memory with many services"). A `Map` allocates exactly its
//! entries and reads like a `BTreeMap`: entries in key order, one value per key (the last
//! written wins, as a `BTreeMap` built by inserting them would keep).

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

/// A map with few entries, sorted by key; see the module documentation.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Map<K, V>(Box<[(K, V)]>);

impl<K, V> Default for Map<K, V> {
    fn default() -> Self {
        Map(Box::new([]))
    }
}

impl<K: Ord, V> Map<K, V> {
    /// An empty map (no allocation).
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there is no entry.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value of `key`.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.0
            .binary_search_by(|(k, _)| k.borrow().cmp(key))
            .ok()
            .map(|i| &self.0[i].1)
    }

    /// Whether `key` has a value.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.get(key).is_some()
    }

    /// Sets `key` to `value`, returning the value it had. Rebuilds the entries: for the
    /// rare merge (delegated VirtualServices), not for building a map.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.0.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                let mut v = std::mem::take(&mut self.0).into_vec();
                v.insert(i, (key, value));
                self.0 = v.into_boxed_slice();
                None
            }
        }
    }

    /// The entries in key order.
    pub fn iter(&self) -> Iter<'_, K, V> {
        Iter(self.0.iter())
    }

    /// The keys in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &K> + ExactSizeIterator {
        self.0.iter().map(|(k, _)| k)
    }

    /// The values in key order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + ExactSizeIterator {
        self.0.iter().map(|(_, v)| v)
    }

    /// The same entries as a `BTreeMap` (for the compiled snapshot's shared label sets).
    pub fn to_btree(&self) -> BTreeMap<K, V>
    where
        K: Clone,
        V: Clone,
    {
        self.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// Iterator over a [`Map`]'s entries, in key order.
#[derive(Clone, Debug)]
pub struct Iter<'a, K, V>(std::slice::Iter<'a, (K, V)>);

impl<'a, K, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(k, v)| (k, v))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl<K, V> DoubleEndedIterator for Iter<'_, K, V> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back().map(|(k, v)| (k, v))
    }
}

impl<K, V> ExactSizeIterator for Iter<'_, K, V> {}

impl<'a, K: Ord, V> IntoIterator for &'a Map<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = Iter<'a, K, V>;
    fn into_iter(self) -> Iter<'a, K, V> {
        self.iter()
    }
}

impl<K, V> IntoIterator for Map<K, V> {
    type Item = (K, V);
    type IntoIter = std::vec::IntoIter<(K, V)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_vec().into_iter()
    }
}

impl<K: Ord, V> FromIterator<(K, V)> for Map<K, V> {
    /// Sorted by key; of several values for one key the last is kept.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut v: Vec<(K, V)> = iter.into_iter().collect();
        // Stable: equal keys stay in the order written, so the last one is the last of
        // its run, and the one kept.
        v.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(K, V)> = Vec::with_capacity(v.len());
        for e in v {
            match out.last_mut() {
                Some(last) if last.0 == e.0 => *last = e,
                _ => out.push(e),
            }
        }
        Map(out.into_boxed_slice())
    }
}

impl<K: Ord, V, const N: usize> From<[(K, V); N]> for Map<K, V> {
    fn from(a: [(K, V); N]) -> Self {
        a.into_iter().collect()
    }
}

impl<K: Ord, V> From<BTreeMap<K, V>> for Map<K, V> {
    fn from(m: BTreeMap<K, V>) -> Self {
        Map(m.into_iter().collect())
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for Map<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| (k, v)))
            .finish()
    }
}

impl<'de, K, V> Deserialize<'de> for Map<K, V>
where
    K: Deserialize<'de> + Ord,
    V: Deserialize<'de>,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MapVisitor<K, V>(PhantomData<(K, V)>);
        impl<'de, K, V> Visitor<'de> for MapVisitor<K, V>
        where
            K: Deserialize<'de> + Ord,
            V: Deserialize<'de>,
        {
            type Value = Map<K, V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Map<K, V>, A::Error> {
                // No pre-sizing from the hint: an untrusted length must not reserve memory.
                let mut v = Vec::new();
                while let Some(e) = a.next_entry()? {
                    v.push(e);
                }
                Ok(v.into_iter().collect())
            }
        }
        d.deserialize_map(MapVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_like_a_btreemap() {
        let m: Map<String, u32> = [("b".to_string(), 2), ("a".to_string(), 1)].into();
        assert_eq!(m.len(), 2);
        assert_eq!(m.get("a"), Some(&1));
        assert_eq!(m.get("c"), None);
        assert!(m.contains_key("b"));
        let keys: Vec<_> = m.keys().cloned().collect();
        assert_eq!(keys, ["a", "b"]);
        assert_eq!(format!("{m:?}"), r#"{"a": 1, "b": 2}"#);
        assert_eq!(
            m.to_btree(),
            BTreeMap::from([("a".into(), 1), ("b".into(), 2)])
        );
        assert!(Map::<String, u32>::new().is_empty());
        let mut m = m;
        assert_eq!(m.insert("b".into(), 3), Some(2));
        assert_eq!(m.insert("0".into(), 0), None);
        assert_eq!(format!("{m:?}"), r#"{"0": 0, "a": 1, "b": 3}"#);
    }

    #[test]
    fn the_last_value_of_a_repeated_key_wins() {
        let m: Map<&str, u32> = [("k", 1), ("a", 0), ("k", 2)].into_iter().collect();
        let entries: Vec<_> = m.into_iter().collect();
        assert_eq!(entries, [("a", 0), ("k", 2)]);
    }

    #[test]
    fn deserializes_from_yaml_in_key_order() {
        let m: Map<String, String> = serde_yaml::from_str("{z: '1', a: '2'}").unwrap();
        let entries: Vec<_> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(entries, ["a=2", "z=1"]);
        assert!(serde_yaml::from_str::<Map<String, u32>>("[1]").is_err());
    }
}
