//! One-line descriptions of compiled policies, in Istio's field names, for `explain`.

use meshproxy_config::compile::cluster::{Cluster, HashAlgorithm, HashKey, LoadBalancer};
use meshproxy_config::compile::route::{Abort, Fault, HeaderOps, RetryOn, RetryPolicy};
use meshproxy_config::model::destination_rule::ClientTlsMode;
use std::time::Duration;

use super::decision::{ClusterPolicy, PolicyFrom};

/// A duration as Istio writes it (`10s`, `250ms`).
pub fn duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{d:?}")
    }
}

/// A limit, with Istio's "no limit" default (2^32-1) said so.
fn limit(n: u32) -> String {
    if n == u32::MAX {
        "2^32-1 (no limit)".into()
    } else {
        n.to_string()
    }
}

/// A share per million as a percentage.
pub fn percent(per_million: u32) -> String {
    let p = per_million as f64 / 10_000.0;
    format!("{}%", (p * 10_000.0).round() / 10_000.0)
}

/// `attempts: 2, retryOn: connect-failure,...`.
pub fn retries(r: &RetryPolicy) -> String {
    if r.attempts == 0 {
        return "none".into();
    }
    // Every token Istio accepts, to name the bits of the compiled [`RetryOn`].
    let on: Vec<&str> = meshproxy_config::validate::RETRY_ON_TOKENS
        .iter()
        .copied()
        .filter(|t| RetryOn::token(t).is_some_and(|b| r.on.has(b)))
        .collect();
    let mut s = format!("attempts {}, retryOn {}", r.attempts, on.join(","));
    if !r.status_codes.is_empty() {
        let codes: Vec<String> = r.status_codes.iter().map(u16::to_string).collect();
        s.push_str(&format!(" (codes {})", codes.join(",")));
    }
    if let Some(t) = r.per_try_timeout {
        s.push_str(&format!(", perTryTimeout {}", duration(t)));
    }
    s
}

/// `delay 7s for 100%; abort 503 for 10%`.
pub fn fault(f: &Fault) -> String {
    let mut parts = Vec::new();
    if let Some((d, pm)) = f.delay {
        parts.push(format!("delay {} for {}", duration(d), percent(pm)));
    }
    if let Some((a, pm)) = f.abort {
        let what = match a {
            Abort::Http(s) => format!("abort {s}"),
            Abort::Grpc(c) => format!("abort grpc-status {c}"),
        };
        parts.push(format!("{what} for {}", percent(pm)));
    }
    parts.join("; ")
}

/// Header operations as lines: `request set x-a: 1`, `response remove x-b`.
pub fn header_ops(side: &str, ops: &HeaderOps) -> Vec<String> {
    let mut out = Vec::new();
    for (verb, list) in [("set", &ops.set), ("add", &ops.add)] {
        for (k, v) in list {
            out.push(format!(
                "{side} {verb} {k}: {}",
                String::from_utf8_lossy(v.as_bytes())
            ));
        }
    }
    for k in &ops.remove {
        out.push(format!("{side} remove {k}"));
    }
    out
}

/// A cluster's effective policy.
pub fn cluster_policy(c: &Cluster) -> ClusterPolicy {
    let p = &c.pool;
    let per_conn = p
        .max_requests_per_connection
        .map_or("unlimited".to_string(), |n| n.to_string());
    ClusterPolicy {
        load_balancer: load_balancer(&c.load_balancer),
        connection_pool: format!(
            "maxConnections {}, connectTimeout {}, http1MaxPendingRequests {}, http2MaxRequests {}, maxRequestsPerConnection {per_conn}, maxRetries {}",
            limit(p.max_connections),
            duration(p.connect_timeout),
            limit(p.http1_max_pending_requests),
            limit(p.http2_max_requests),
            limit(p.max_retries)
        ),
        outlier_detection: match &c.outlier {
            None => "off".into(),
            Some(o) => {
                let n = |v: Option<u32>| v.map_or("off".to_string(), |n| n.to_string());
                format!(
                    "consecutive5xxErrors {}, consecutiveGatewayErrors {}, interval {}, baseEjectionTime {}, maxEjectionPercent {}, minHealthPercent {}",
                    n(o.consecutive_5xx),
                    n(o.consecutive_gateway),
                    duration(o.interval),
                    duration(o.base_ejection_time),
                    o.max_ejection_percent,
                    o.min_health_percent
                )
            }
        },
        tls: match c.tls.as_ref().map(|t| t.mode) {
            None => "unset (auto mTLS per endpoint)".into(),
            Some(ClientTlsMode::Disable) => "DISABLE".into(),
            Some(ClientTlsMode::Simple) => "SIMPLE".into(),
            Some(ClientTlsMode::Mutual) => "MUTUAL".into(),
            Some(ClientTlsMode::IstioMutual) => "ISTIO_MUTUAL".into(),
        },
        from: PolicyFrom {
            load_balancer: c.policy_origins.load_balancer.describe(),
            connection_pool: c.policy_origins.connection_pool.describe(),
            outlier_detection: c.policy_origins.outlier_detection.describe(),
            tls: c.policy_origins.tls.describe(),
        },
    }
}

fn load_balancer(lb: &LoadBalancer) -> String {
    match lb {
        LoadBalancer::LeastRequest => "LEAST_REQUEST".into(),
        LoadBalancer::RoundRobin => "ROUND_ROBIN".into(),
        LoadBalancer::Random => "RANDOM".into(),
        LoadBalancer::Passthrough => "PASSTHROUGH".into(),
        LoadBalancer::ConsistentHash { key, algorithm } => {
            let key = match key {
                HashKey::Header(h) => format!("httpHeaderName {h}"),
                HashKey::Cookie { name, .. } => format!("httpCookie {name}"),
                HashKey::SourceIp => "useSourceIp".into(),
                HashKey::QueryParameter(q) => format!("httpQueryParameterName {q}"),
            };
            let algo = match algorithm {
                HashAlgorithm::RingHash { minimum_ring_size } => {
                    format!("ringHash minimumRingSize {minimum_ring_size}")
                }
                HashAlgorithm::Maglev { table_size } => format!("maglev tableSize {table_size}"),
            };
            format!("consistentHash {key}, {algo}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_percentages() {
        assert_eq!(duration(Duration::from_secs(10)), "10s");
        assert_eq!(duration(Duration::from_millis(250)), "250ms");
        assert_eq!(percent(1_000_000), "100%");
        assert_eq!(percent(1_000), "0.1%");
    }

    #[test]
    fn istio_default_retries_are_named() {
        assert_eq!(
            retries(&RetryPolicy::default()),
            "attempts 2, retryOn connect-failure,refused-stream,retriable-status-codes,cancelled,unavailable"
        );
        assert_eq!(retries(&RetryPolicy::NONE), "none");
    }
}
