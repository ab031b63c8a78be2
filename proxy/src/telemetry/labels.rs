//! Istio's standard metric labels (istio/proxy `istio_stats.cc`), computed once per
//! workload (the source side) and per upstream cluster (the destination side), so the
//! request path never builds label strings.

use meshproxy_config::compile::cluster::Cluster;
use meshproxy_config::compile::proxy_settings::ProxySettings;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A set of workload labels (one side of a request).
#[derive(Debug)]
pub struct Peer {
    /// Unique id (handle caches key on it).
    pub id: u64,
    /// `*_workload`.
    pub workload: Arc<str>,
    /// `*_workload_namespace`.
    pub namespace: Arc<str>,
    /// `*_principal`.
    pub principal: Arc<str>,
    /// `*_app`.
    pub app: Arc<str>,
    /// `*_version`.
    pub version: Arc<str>,
    /// `*_canonical_service`.
    pub canonical_service: Arc<str>,
    /// `*_canonical_revision`.
    pub canonical_revision: Arc<str>,
    /// `*_cluster`.
    pub cluster: Arc<str>,
}

/// The destination service of a request (destination side only).
#[derive(Debug)]
pub struct Service {
    /// Unique id.
    pub id: u64,
    /// `destination_service` (FQDN).
    pub host: Arc<str>,
    /// `destination_service_name`.
    pub name: Arc<str>,
    /// `destination_service_namespace`.
    pub namespace: Arc<str>,
    /// `destination_version`: the subset routed to.
    pub version: Arc<str>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh label-set id.
pub fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Istio's value for anything unknown.
pub const UNKNOWN: &str = "unknown";

fn label(p: &ProxySettings, keys: &[&str], fallback: &str) -> Arc<str> {
    keys.iter()
        .find_map(|k| p.labels.get(*k))
        .map(|v| v.as_str())
        .unwrap_or(fallback)
        .into()
}

impl Peer {
    /// This proxy's workload, as Istio derives it from pod labels
    /// (`service.istio.io/canonical-name`, `app.kubernetes.io/name`, `app`; revision from
    /// `service.istio.io/canonical-revision`, `app.kubernetes.io/version`, `version`).
    pub fn local(p: &ProxySettings) -> Arc<Peer> {
        let principal: Arc<str> = match &p.identity {
            Some(_) => p.spiffe_id().into(),
            None => UNKNOWN.into(),
        };
        Arc::new(Peer {
            id: next_id(),
            workload: p.name.as_str().into(),
            namespace: p.namespace.as_str().into(),
            principal,
            app: label(p, &["app", "app.kubernetes.io/name"], UNKNOWN),
            version: label(p, &["version", "app.kubernetes.io/version"], UNKNOWN),
            canonical_service: label(
                p,
                &[
                    "service.istio.io/canonical-name",
                    "app.kubernetes.io/name",
                    "app",
                ],
                &p.name,
            ),
            canonical_revision: label(
                p,
                &[
                    "service.istio.io/canonical-revision",
                    "app.kubernetes.io/version",
                    "version",
                ],
                "latest",
            ),
            cluster: UNKNOWN.into(),
        })
    }

    /// A peer nothing is known about.
    pub fn unknown() -> Arc<Peer> {
        let u: Arc<str> = UNKNOWN.into();
        Arc::new(Peer {
            id: 0,
            workload: u.clone(),
            namespace: u.clone(),
            principal: u.clone(),
            app: u.clone(),
            version: u.clone(),
            canonical_service: u.clone(),
            canonical_revision: u.clone(),
            cluster: u,
        })
    }
}

impl Service {
    /// The destination labels of an upstream cluster.
    pub fn of_cluster(c: &Cluster) -> Arc<Service> {
        Arc::new(Service {
            id: next_id(),
            host: c.key.service.as_ref().into(),
            name: c.service_name.as_str().into(),
            namespace: c.service_namespace.as_str().into(),
            version: c.key.subset.as_deref().unwrap_or(UNKNOWN).into(),
        })
    }

    /// No destination (no route, no cluster).
    pub fn unknown() -> Arc<Service> {
        let u: Arc<str> = UNKNOWN.into();
        Arc::new(Service {
            id: 0,
            host: u.clone(),
            name: u.clone(),
            namespace: u.clone(),
            version: u,
        })
    }
}
