//! The source labels of mesh peers that proved an identity over mTLS, one label set per
//! SPIFFE ID. Istio's inbound metrics carry the client's certificate identity as
//! `source_principal` even when nothing else is known about the peer (istio/proxy
//! `istio_stats.cc` reads it from the connection's peer certificate); the other source
//! labels stay `unknown` without Istio's metadata exchange.
//!
//! Label sets are shared per identity, not made per connection: the metric handle caches
//! key on a label set's id, so one per connection would grow them without bound.

use super::labels::{next_id, Peer, UNKNOWN};
use dashmap::DashMap;
use std::sync::Arc;

/// At most this many identities get their own label set; beyond it (a CA issuing an
/// unbounded number of identities) new ones are reported as `unknown`, which bounds the
/// metrics' cardinality.
const MAX_IDENTITIES: usize = 10_000;

/// Label sets of remote peers by SPIFFE ID.
#[derive(Default)]
pub struct PeerLabels {
    by_identity: DashMap<Arc<str>, Arc<Peer>>,
}

impl PeerLabels {
    /// The label set for a peer that proved `identity` (made on first use), or `None`
    /// past [`MAX_IDENTITIES`] (the caller reports it as unknown).
    pub fn get(&self, identity: &Arc<str>) -> Option<Arc<Peer>> {
        if let Some(p) = self.by_identity.get(identity) {
            return Some(p.clone());
        }
        if self.by_identity.len() >= MAX_IDENTITIES {
            return None;
        }
        let peer = self
            .by_identity
            .entry(identity.clone())
            .or_insert_with(|| Arc::new(remote(identity.clone())))
            .clone();
        Some(peer)
    }
}

/// A peer known only by its certificate's identity.
fn remote(principal: Arc<str>) -> Peer {
    let u: Arc<str> = UNKNOWN.into();
    Peer {
        id: next_id(),
        workload: u.clone(),
        namespace: u.clone(),
        principal,
        app: u.clone(),
        version: u.clone(),
        canonical_service: u.clone(),
        canonical_revision: u.clone(),
        cluster: u,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_label_set_per_identity() {
        let peers = PeerLabels::default();
        let a: Arc<str> = "spiffe://cluster.local/ns/default/sa/a".into();
        let b: Arc<str> = "spiffe://cluster.local/ns/default/sa/b".into();
        let a1 = peers.get(&a).unwrap();
        let a2 = peers.get(&a).unwrap();
        let b1 = peers.get(&b).unwrap();
        assert_eq!(a1.id, a2.id);
        assert_ne!(a1.id, b1.id);
        assert_eq!(&*a1.principal, &*a);
        assert_eq!(&*a1.workload, UNKNOWN);
    }
}
