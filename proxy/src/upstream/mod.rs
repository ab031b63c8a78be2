//! Upstream side: cluster live state, load balancing, connection pools, connecting.

pub mod cluster_state;
pub mod connect;
pub mod connector;
pub mod dns;
pub mod dns_refresh;
pub mod endpoint_set;
pub mod hash_ring;
pub mod lb;
pub mod limits;
pub mod link;
pub mod outlier;
pub mod pool;
pub mod resolver;

/// A plain cluster `c` of service `s`, port 80, for the tests of this tier.
#[cfg(test)]
pub(crate) fn test_cluster(
    endpoints: Vec<meshproxy_config::compile::cluster::Endpoint>,
    load_balancer: meshproxy_config::compile::cluster::LoadBalancer,
) -> meshproxy_config::compile::cluster::Cluster {
    use meshproxy_config::compile::cluster::{Cluster, ClusterKey, ConnectionPool, Protocol};
    Cluster {
        key: ClusterKey {
            service: "s".into(),
            port: 80,
            subset: None,
        },
        name: "c".into(),
        service_name: "s".into(),
        service_namespace: "default".into(),
        protocol: Protocol::Http,
        endpoints,
        load_balancer,
        pool: ConnectionPool::default(),
        outlier: None,
        tls: None,
        service_sans: Vec::new(),
        fingerprint: 0,
        policy_origins: Default::default(),
    }
}
