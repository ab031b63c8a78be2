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
