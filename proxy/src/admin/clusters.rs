//! `GET /clusters`: every upstream cluster with its policy, circuit-breaker counters and
//! endpoints (health, ejection, active requests, idle connections).

use crate::runtime::active::Active;
use crate::upstream::cluster_state::ClusterState;
use crate::upstream::limits::Limit;
use crate::upstream::outlier;
use meshproxy_config::compile::cluster::{Cluster, LoadBalancer, Protocol};
use meshproxy_config::compile::ClusterId;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

fn lb_name(lb: &LoadBalancer) -> &'static str {
    match lb {
        LoadBalancer::LeastRequest => "LEAST_REQUEST",
        LoadBalancer::RoundRobin => "ROUND_ROBIN",
        LoadBalancer::Random => "RANDOM",
        LoadBalancer::Passthrough => "PASSTHROUGH",
        LoadBalancer::ConsistentHash { .. } => "CONSISTENT_HASH",
    }
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Http => "HTTP",
        Protocol::Http2 => "HTTP2",
        Protocol::Grpc => "GRPC",
        Protocol::GrpcWeb => "GRPC-WEB",
        Protocol::Https => "HTTPS",
        Protocol::Tls => "TLS",
        Protocol::Tcp => "TCP",
    }
}

fn ms(d: Option<Duration>) -> Value {
    d.map(|d| json!(d.as_millis() as u64))
        .unwrap_or(Value::Null)
}

/// One cluster as JSON.
pub fn cluster_json(c: &Cluster, s: &ClusterState) -> Value {
    let now = outlier::now_nanos();
    let wall_now = SystemTime::now();
    let endpoints: Vec<Value> = s
        .endpoints()
        .iter()
        .map(|e| {
            let until = e.outlier.ejected_until(now).map(|u| {
                let left = Duration::from_nanos(u.saturating_sub(now));
                crate::access_log::rfc3339_millis(wall_now + left)
            });
            json!({
                "address": e.name,
                "hostname": e.hostname,
                "labels": &*e.labels,
                "weight": e.weight,
                "health": if until.is_some() { "ejected" } else { "healthy" },
                "ejected_until": until,
                "times_ejected": e.outlier.times_ejected(),
                "ejections_total": e.outlier.ejections_total(),
                "active_requests": e.active_requests.load(Ordering::Relaxed),
                "open_connections": e.connections.load(Ordering::Relaxed),
                "idle_connections": e.pool.idle_count(),
                "waiting_requests": e.waiting.load(Ordering::Relaxed),
            })
        })
        .collect();
    let p = &c.pool;
    let l = &s.limits;
    json!({
        "name": c.name,
        "service": c.key.service.as_ref(),
        "port": c.key.port,
        "subset": c.key.subset.as_deref(),
        "protocol": protocol_name(c.protocol),
        "load_balancer": lb_name(&c.load_balancer),
        "circuit_breakers": {
            "max_connections": p.max_connections,
            "max_pending_requests": p.http1_max_pending_requests,
            "max_requests": p.http2_max_requests,
            "max_retries": p.max_retries,
            "max_requests_per_connection": p.max_requests_per_connection,
            "connect_timeout_ms": p.connect_timeout.as_millis() as u64,
            "idle_timeout_ms": ms(p.http_idle_timeout),
            "max_connection_duration_ms": ms(p.max_connection_duration),
        },
        "outlier_detection": c.outlier.as_ref().map(|o| json!({
            "consecutive_5xx": o.consecutive_5xx,
            "consecutive_gateway_errors": o.consecutive_gateway,
            "consecutive_local_origin_failures": o.consecutive_local_origin,
            "interval_ms": o.interval.as_millis() as u64,
            "base_ejection_time_ms": o.base_ejection_time.as_millis() as u64,
            "max_ejection_percent": o.max_ejection_percent,
            "min_health_percent": o.min_health_percent,
        })),
        "stats": {
            "open_connections": l.open_connections(),
            "pending_requests": l.pending(),
            "active_requests": l.requests(),
            "no_healthy_upstream": s.no_healthy.load(Ordering::Relaxed),
            "overflows": {
                "max_connections": l.overflows(Limit::Connections),
                "max_pending_requests": l.overflows(Limit::Pending),
                "max_requests": l.overflows(Limit::Requests),
                "max_retries": l.overflows(Limit::Retries),
            },
        },
        "endpoints": endpoints,
        "dns_names": s.dns_names().iter().map(|n| json!({
            "hostname": n.host,
            "port": n.port,
            "addresses": n.addresses,
            "answers": n.answers,
            "failures": n.failures,
            "last_error": n.last_error,
        })).collect::<Vec<Value>>(),
    })
}

/// All clusters of the config in force.
pub fn render(active: &Active) -> Value {
    let mut clusters: Vec<Value> = active
        .snapshot
        .clusters
        .iter()
        .enumerate()
        .map(|(i, c)| match active.used_cluster(ClusterId(i as u32)) {
            Some(s) => cluster_json(c, s),
            // Never used: what a fresh state shows (every endpoint healthy, no counts),
            // rendered without keeping one.
            None => cluster_json(c, &ClusterState::new(c, active.workers())),
        })
        .collect();
    for i in &active.inbound {
        clusters.push(cluster_json(&i.cluster, &i.state));
    }
    json!({ "version": active.snapshot.version, "clusters": clusters })
}
