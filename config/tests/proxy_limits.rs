//! `Proxy.spec.limits`: parsing, validation errors and the compiled defaults.

use meshproxy_config::compile::load_str;
use meshproxy_config::compile::proxy_settings::{Limits, ProxySettings};
use std::time::Duration;

fn doc(limits: &str) -> String {
    format!(
        "apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {{name: p, namespace: default}}\nspec:\n  limits:\n{limits}"
    )
}

fn errors(limits: &str) -> String {
    match load_str("test.yaml", &doc(limits)) {
        Ok(_) => String::new(),
        Err(d) => d.to_string(),
    }
}

#[test]
fn defaults_are_envoy_and_istio_values() {
    let d = ProxySettings::local_default().limits;
    assert_eq!(d, Limits::default());
    assert_eq!(d.max_request_headers_bytes, 60 * 1024);
    assert_eq!(d.max_request_headers, 100);
    assert_eq!(d.request_headers_timeout, Duration::from_secs(10));
    assert_eq!(d.idle_timeout, Duration::from_secs(3600));
    assert_eq!(d.stream_idle_timeout, Duration::from_secs(300));
    assert_eq!(d.max_connections_per_listener, 100_000);
    // Derived from the file-descriptor limit at run time.
    assert_eq!(d.max_downstream_connections, None);
    assert_eq!(d.max_concurrent_streams, 1024);
    assert_eq!(d.max_active_requests, None);
    // A Proxy document without `limits` gets the same.
    let snap = load_str(
        "test.yaml",
        &doc("    {}\n").replace("  limits:\n    {}\n", ""),
    )
    .unwrap();
    assert_eq!(snap.proxy.limits, Limits::default());
}

#[test]
fn every_field_is_compiled() {
    let snap = load_str(
        "test.yaml",
        &doc("    maxRequestHeadersKb: 16\n    maxRequestHeaders: 20\n    requestHeadersTimeout: 250ms\n    idleTimeout: 2s\n    streamIdleTimeout: 3s\n    maxConnectionsPerListener: 3\n    maxDownstreamConnections: 4\n    maxConcurrentStreams: 7\n    maxActiveRequests: 5\n"),
    )
    .unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(
        snap.proxy.limits,
        Limits {
            max_request_headers_bytes: 16 * 1024,
            max_request_headers: 20,
            request_headers_timeout: Duration::from_millis(250),
            idle_timeout: Duration::from_secs(2),
            stream_idle_timeout: Duration::from_secs(3),
            max_connections_per_listener: 3,
            max_downstream_connections: Some(4),
            max_concurrent_streams: 7,
            max_active_requests: Some(5),
        }
    );
}

#[test]
fn snake_case_spellings_are_accepted() {
    let snap = load_str(
        "test.yaml",
        &doc("    max_request_headers_kb: 8\n    max_active_requests: 9\n"),
    )
    .unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(snap.proxy.limits.max_request_headers_bytes, 8192);
    assert_eq!(snap.proxy.limits.max_active_requests, Some(9));
}

#[test]
fn unknown_fields_are_refused() {
    let e = errors("    maxRequestHeaderKb: 10\n");
    assert!(e.contains("maxRequestHeaderKb"), "{e}");
}

#[test]
fn zero_negative_and_absurd_counts_are_refused() {
    for (field, bad, want) in [
        ("maxRequestHeadersKb", "0", "at least 1"),
        ("maxRequestHeadersKb", "-1", "at least 1"),
        ("maxRequestHeadersKb", "8193", "at most 8192 KiB"),
        ("maxRequestHeaders", "0", "at least 1"),
        ("maxRequestHeaders", "1000000", "at most 10000"),
        ("maxConnectionsPerListener", "-5", "at least 1"),
        ("maxConnectionsPerListener", "100000000", "at most 10000000"),
        ("maxDownstreamConnections", "0", "at least 1"),
        ("maxDownstreamConnections", "10000001", "at most 10000000"),
        ("maxConcurrentStreams", "0", "at least 1"),
        ("maxConcurrentStreams", "4294967295", "at most 2147483647"),
        ("maxActiveRequests", "0", "at least 1"),
        ("maxActiveRequests", "1000000000", "at most 100000000"),
    ] {
        let e = errors(&format!("    {field}: {bad}\n"));
        assert!(
            e.contains(&format!("spec.limits.{field}")) && e.contains(want),
            "{field}: {bad}: {e}"
        );
    }
}

#[test]
fn zero_negative_and_absurd_durations_are_refused() {
    for (field, bad, want) in [
        ("requestHeadersTimeout", "0s", "at least 1ms"),
        ("requestHeadersTimeout", "-1s", "at least 1ms"),
        ("requestHeadersTimeout", "0.5ms", "at least 1ms"),
        ("requestHeadersTimeout", "2h", "at most 3600s"),
        ("idleTimeout", "0s", "at least 1ms"),
        ("idleTimeout", "1.0005s", "whole number of milliseconds"),
        ("idleTimeout", "25h", "at most 86400s"),
        ("streamIdleTimeout", "0s", "at least 1ms"),
        ("streamIdleTimeout", "-5m", "at least 1ms"),
        ("streamIdleTimeout", "25h", "at most 86400s"),
    ] {
        let e = errors(&format!("    {field}: {bad}\n"));
        assert!(
            e.contains(&format!("spec.limits.{field}")) && e.contains(want),
            "{field}: {bad}: {e}"
        );
    }
    let e = errors("    idleTimeout: soon\n");
    assert!(e.contains("idleTimeout") || e.contains("soon"), "{e}");
}

#[test]
fn limits_at_their_bounds_are_accepted() {
    let e = errors("    maxRequestHeadersKb: 8192\n    maxRequestHeaders: 1\n    requestHeadersTimeout: 1h\n    idleTimeout: 24h\n    streamIdleTimeout: 24h\n    maxConcurrentStreams: 2147483647\n");
    assert_eq!(e, "");
}
