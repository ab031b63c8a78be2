//! meshproxy's own state as Prometheus families, read from the live state at scrape time
//! (no per-request cost, and no stale series for clusters removed by a reload).

use crate::runtime::active::Active;
use crate::server::Shared;
use crate::upstream::cluster_state::{ClusterState, EndpointState};
use crate::upstream::limits::Limit;
use meshproxy_config::compile::cluster::Cluster;
use meshproxy_config::compile::ClusterId;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

/// Escapes a Prometheus label value.
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Appends the cluster, outlier, config and access-log families.
pub fn render(out: &mut String, shared: &Shared, active: &Active) {
    family(
        out,
        "meshproxy_downstream_connections_active",
        "gauge",
        "Open downstream connections (upgraded tunnels included).",
    );
    let _ = writeln!(
        out,
        "meshproxy_downstream_connections_active {}",
        shared
            .connections
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    downstream(out, &shared.downstream.stats());
    crate::authn::stats::render(out);
    // Envoy's overload manager exposes its shedding the same way
    // (`overload.envoy.overload_actions.stop_accepting_requests`, `http.*.downstream_rq_overload_close`).
    family(
        out,
        "meshproxy_overload_requests_active",
        "gauge",
        "Requests in flight counted against spec.limits.maxActiveRequests (0 while unset).",
    );
    let _ = writeln!(
        out,
        "meshproxy_overload_requests_active {}",
        shared.overload.active()
    );
    family(
        out,
        "meshproxy_overload_requests_shed_total",
        "counter",
        "Requests answered 503 (flag OM) at spec.limits.maxActiveRequests.",
    );
    let _ = writeln!(
        out,
        "meshproxy_overload_requests_shed_total {}",
        shared.overload.shed()
    );
    if let Ok(handles) = shared.worker_runtimes.lock() {
        family(
            out,
            "meshproxy_worker_tasks_alive",
            "gauge",
            "Tasks alive on the worker runtimes (connections, tunnels, background work).",
        );
        let tasks: usize = handles.iter().map(|h| h.metrics().num_alive_tasks()).sum();
        let _ = writeln!(out, "meshproxy_worker_tasks_alive {tasks}");
    }
    crate::ratelimit::stats::render(
        out,
        &active.snapshot.rate_limits,
        active.rate_limiter.as_deref(),
    );
    // A cluster nothing has used yet has no live state: its series read zero.
    let clusters: Vec<(&Cluster, Option<&ClusterState>)> = active
        .snapshot
        .clusters
        .iter()
        .enumerate()
        .map(|(i, c)| (c, active.used_cluster(ClusterId(i as u32)).map(Arc::as_ref)))
        .chain(
            active
                .inbound
                .iter()
                .map(|i| (&i.cluster, Some(i.state.as_ref()))),
        )
        .collect();

    let per_cluster =
        |out: &mut String, name: &str, kind: &str, help: &str, f: &dyn Fn(&ClusterState) -> u64| {
            family(out, name, kind, help);
            for (c, s) in &clusters {
                let v = s.map_or(0, f);
                let _ = writeln!(out, "{name}{{cluster=\"{}\"}} {v}", escape(&c.name));
            }
        };
    per_cluster(
        out,
        "meshproxy_cluster_connections_active",
        "gauge",
        "Open upstream connections.",
        &|s| {
            s.endpoints()
                .iter()
                .map(|e| u64::from(e.connections.load(Ordering::Relaxed)))
                .sum()
        },
    );
    per_cluster(
        out,
        "meshproxy_cluster_connections_opened_total",
        "counter",
        "Upstream connections opened.",
        &|s| {
            s.endpoints()
                .iter()
                .map(|e| e.opened.load(Ordering::Relaxed))
                .sum()
        },
    );
    per_cluster(
        out,
        "meshproxy_cluster_connections_closed_total",
        "counter",
        "Upstream connections closed.",
        &|s| {
            s.endpoints()
                .iter()
                .map(|e| e.closed.load(Ordering::Relaxed))
                .sum()
        },
    );
    per_cluster(
        out,
        "meshproxy_cluster_requests_pending",
        "gauge",
        "Requests waiting for an upstream connection.",
        &|s| u64::from(s.limits.pending()),
    );
    per_cluster(
        out,
        "meshproxy_cluster_requests_active",
        "gauge",
        "Requests in flight to the cluster.",
        &|s| u64::from(s.limits.requests()),
    );
    per_cluster(
        out,
        "meshproxy_cluster_retries_total",
        "counter",
        "Retries sent.",
        &|s| s.retries.load(Ordering::Relaxed),
    );
    per_cluster(
        out,
        "meshproxy_cluster_no_healthy_upstream_total",
        "counter",
        "Requests that found no available endpoint (UH).",
        &|s| s.no_healthy.load(Ordering::Relaxed),
    );
    family(
        out,
        "meshproxy_cluster_overflows_total",
        "counter",
        "Requests refused by a circuit breaker (UO), per limit.",
    );
    for (c, s) in &clusters {
        for l in [
            Limit::Connections,
            Limit::Pending,
            Limit::Requests,
            Limit::Retries,
        ] {
            let _ = writeln!(
                out,
                "meshproxy_cluster_overflows_total{{cluster=\"{}\",limit=\"{}\"}} {}",
                escape(&c.name),
                l.as_str(),
                s.map_or(0, |s| s.limits.overflows(l))
            );
        }
    }
    let now = crate::upstream::outlier::now_nanos();
    family(
        out,
        "meshproxy_outlier_ejections_total",
        "counter",
        "Outlier ejections per endpoint.",
    );
    for (c, s) in &clusters {
        per_endpoint(c, *s, &mut |endpoint, e| {
            let _ = writeln!(
                out,
                "meshproxy_outlier_ejections_total{{cluster=\"{}\",endpoint=\"{}\"}} {}",
                escape(&c.name),
                escape(endpoint),
                e.map_or(0, |e| e.outlier.ejections_total())
            );
        });
    }
    family(
        out,
        "meshproxy_outlier_ejected",
        "gauge",
        "1 while the endpoint is ejected.",
    );
    for (c, s) in &clusters {
        per_endpoint(c, *s, &mut |endpoint, e| {
            let _ = writeln!(
                out,
                "meshproxy_outlier_ejected{{cluster=\"{}\",endpoint=\"{}\"}} {}",
                escape(&c.name),
                escape(endpoint),
                e.is_some_and(|e| e.outlier.is_ejected(now)) as u8
            );
        });
    }
    let snap = &active.snapshot;
    family(
        out,
        "meshproxy_config_version_info",
        "gauge",
        "The config in force (version = content hash).",
    );
    let _ = writeln!(
        out,
        "meshproxy_config_version_info{{version=\"{}\"}} 1",
        escape(&snap.version)
    );
    family(
        out,
        "meshproxy_config_loaded_timestamp_seconds",
        "gauge",
        "When the config in force was loaded.",
    );
    let loaded = snap
        .loaded_at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let _ = writeln!(out, "meshproxy_config_loaded_timestamp_seconds {loaded}");
    by_result(
        out,
        "meshproxy_config_reloads_total",
        "Config reloads, by result.",
        &shared.reloads_accepted,
        &shared.reloads_rejected,
    );
    by_result(
        out,
        "meshproxy_identity_rotations_total",
        "Identity (certificate) file changes, by result: accepted, or rejected (the identity in force stayed).",
        &shared.identity_rotations,
        &shared.identity_rejected,
    );
    if let Some(mesh) = shared.mesh_tls.load().as_ref() {
        family(
            out,
            "meshproxy_identity_expiry_seconds",
            "gauge",
            "Seconds until this workload's certificate expires.",
        );
        let _ = writeln!(
            out,
            "meshproxy_identity_expiry_seconds{{identity=\"{}\"}} {:.0}",
            escape(mesh.spiffe.as_deref().unwrap_or("")),
            mesh.seconds_to_expiry()
        );
    }
    family(
        out,
        "meshproxy_inbound_connections_refused_total",
        "counter",
        "Inbound connections refused by PeerAuthentication or a failed mTLS handshake.",
    );
    let _ = writeln!(
        out,
        "meshproxy_inbound_connections_refused_total {}",
        shared.inbound_refused.load(Ordering::Relaxed)
    );
    family(
        out,
        "meshproxy_downstream_protocol_errors_total",
        "counter",
        "Downstream protocol violations refused: HTTP/1 request heads refused by the codec \
         (unparsable, too large, request smuggling); HTTP/2 connections and streams refused \
         by the HTTP/2 guard (RFC 9113 frame, preface, SETTINGS and stream-state rules).",
    );
    let _ = writeln!(
        out,
        "meshproxy_downstream_protocol_errors_total{{protocol=\"http1\"}} {}",
        shared.downstream_protocol_errors.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "meshproxy_downstream_protocol_errors_total{{protocol=\"http2\"}} {}",
        shared.downstream_h2_protocol_errors.load(Ordering::Relaxed)
    );
    family(
        out,
        "meshproxy_access_log_dropped_total",
        "counter",
        "Access log lines dropped because the writer fell behind.",
    );
    let _ = writeln!(
        out,
        "meshproxy_access_log_dropped_total {}",
        shared.access_log.dropped()
    );
    let spans = &shared.tracer.counters;
    for (name, help, n) in [
        (
            "meshproxy_tracing_spans_exported_total",
            "Spans a trace collector accepted.",
            &spans.exported,
        ),
        (
            "meshproxy_tracing_spans_dropped_total",
            "Spans dropped: the export queue was full, or the collector failed or refused them.",
            &spans.dropped,
        ),
    ] {
        family(out, name, "counter", help);
        let _ = writeln!(out, "{name} {}", n.load(Ordering::Relaxed));
    }
}

/// A counter family with `result="accepted"` and `result="rejected"` series.
fn by_result(out: &mut String, name: &str, help: &str, accepted: &AtomicU64, rejected: &AtomicU64) {
    family(out, name, "counter", help);
    for (result, n) in [("accepted", accepted), ("rejected", rejected)] {
        let _ = writeln!(
            out,
            "{name}{{result=\"{result}\"}} {}",
            n.load(Ordering::Relaxed)
        );
    }
}

/// The global connection cap, what it refused, the idle connections closed and failed
/// accepts (Envoy: `downstream_global_cx_overflow`, and the overload manager's
/// `reduce_timeouts` closing idle connections sooner).
fn downstream(out: &mut String, d: &crate::server::downstream::Stats) {
    family(
        out,
        "meshproxy_downstream_connections_max",
        "gauge",
        "Open downstream connections allowed in the whole proxy (spec.limits.maxDownstreamConnections, or derived from the file-descriptor limit).",
    );
    let _ = writeln!(out, "meshproxy_downstream_connections_max {}", d.cap);
    family(
        out,
        "meshproxy_downstream_connections_refused_total",
        "counter",
        "Downstream connections closed at once because the proxy was at its connection cap, by listener.",
    );
    for (listener, n) in &d.refused {
        let _ = writeln!(
            out,
            "meshproxy_downstream_connections_refused_total{{listener=\"{}\"}} {n}",
            escape(listener)
        );
    }
    family(
        out,
        "meshproxy_downstream_idle_closed_total",
        "counter",
        "Idle downstream connections closed, by reason: timeout (spec.limits.idleTimeout) or overload (oldest idle closed near the connection cap).",
    );
    for (reason, n) in [
        ("timeout", d.idle_closed_timeout),
        ("overload", d.idle_closed_overload),
    ] {
        let _ = writeln!(
            out,
            "meshproxy_downstream_idle_closed_total{{reason=\"{reason}\"}} {n}"
        );
    }
    family(
        out,
        "meshproxy_downstream_accept_errors_total",
        "counter",
        "Failed accepts on the listeners (file descriptors exhausted and the like).",
    );
    let _ = writeln!(
        out,
        "meshproxy_downstream_accept_errors_total {}",
        d.accept_errors
    );
    if let Some(nofile) = d.nofile {
        family(
            out,
            "meshproxy_process_max_fds",
            "gauge",
            "The soft file-descriptor limit (RLIMIT_NOFILE) read at start.",
        );
        let _ = writeln!(out, "meshproxy_process_max_fds {nofile}");
    }
}

/// Calls `f` with each endpoint's name and live state: the state's endpoints when the
/// cluster has been used, else the snapshot's (no state: nothing counted yet).
fn per_endpoint(
    c: &Cluster,
    s: Option<&ClusterState>,
    f: &mut dyn FnMut(&str, Option<&EndpointState>),
) {
    match s {
        Some(s) => s.endpoints().iter().for_each(|e| f(&e.name, Some(e))),
        None => c
            .endpoints
            .iter()
            .for_each(|e| f(&e.address.to_string(), None)),
    }
}
