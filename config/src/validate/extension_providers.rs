//! `Proxy.spec.extensionProviders` / `defaultProviders` (Istio MeshConfig
//! `ExtensionProvider`; istio/istio `pkg/config/validation/agent` `ValidateMeshConfig`):
//! unique non-empty names, exactly one provider type, a service and a port.

use super::V;
use crate::model::extension_provider::*;
use crate::model::proxy::Proxy;
use std::collections::BTreeSet;

pub(crate) fn validate(v: &mut V, px: &Proxy) {
    let mut names = BTreeSet::new();
    for (i, p) in px.extension_providers.iter().flatten().enumerate() {
        let path = format!("spec.extensionProviders[{i}]");
        if p.name.is_empty() {
            v.err(&format!("{path}.name"), "empty extension provider name");
        } else if !names.insert(p.name.to_ascii_lowercase()) {
            v.err(
                &format!("{path}.name"),
                format!("duplicate extension provider name {:?}", p.name),
            );
        }
        provider(v, &path, p);
    }
    let known =
        |n: &str| names.contains(&n.to_ascii_lowercase()) || ["envoy", "prometheus"].contains(&n);
    if let Some(d) = &px.default_providers {
        let lists = [
            ("tracing", &d.tracing),
            ("metrics", &d.metrics),
            ("accessLogging", &d.access_logging),
        ];
        for (field, list) in lists {
            for (i, n) in list.iter().flatten().enumerate() {
                if !known(n) {
                    v.err(
                        &format!("spec.defaultProviders.{field}[{i}]"),
                        format!("no extension provider named {n:?}"),
                    );
                }
            }
        }
    }
    if let Some(s) = px.trace_sampling {
        if !(0.0..=100.0).contains(&s) || s.is_nan() {
            v.err("spec.traceSampling", "must be in range [0.0, 100.0]");
        }
    }
}

fn provider(v: &mut V, path: &str, p: &ExtensionProvider) {
    let unsupported = [
        ("envoyExtAuthzHttp", p.envoy_ext_authz_http.is_some()),
        ("envoyExtAuthzGrpc", p.envoy_ext_authz_grpc.is_some()),
        ("datadog", p.datadog.is_some()),
        ("stackdriver", p.stackdriver.is_some()),
        ("skywalking", p.skywalking.is_some()),
        ("lightstep", p.lightstep.is_some()),
        ("envoyOtelAls", p.envoy_otel_als.is_some()),
        ("envoyHttpAls", p.envoy_http_als.is_some()),
        ("envoyTcpAls", p.envoy_tcp_als.is_some()),
        ("sds", p.sds.is_some()),
    ];
    let supported = [
        p.opentelemetry.is_some(),
        p.zipkin.is_some(),
        p.envoy_file_access_log.is_some(),
        p.prometheus.is_some(),
    ];
    let count =
        supported.iter().filter(|s| **s).count() + unsupported.iter().filter(|(_, s)| *s).count();
    if count != 1 {
        v.err(path, "exactly one provider type must be set");
    }
    for (field, _) in unsupported.iter().filter(|(_, s)| *s) {
        v.not_enforced(
            &format!("{path}.{field}"),
            "this provider type is not supported; a Telemetry naming it is ignored",
        );
    }
    if let Some(o) = &p.opentelemetry {
        service(v, &format!("{path}.opentelemetry"), &o.service, o.port);
        if let Some(h) = &o.http {
            v.duration(&format!("{path}.opentelemetry.http.timeout"), &h.timeout);
            if h.path.as_deref().is_some_and(|p| !p.starts_with('/')) {
                v.err(
                    &format!("{path}.opentelemetry.http.path"),
                    "path must start with /",
                );
            }
        }
        if let Some(g) = &o.grpc {
            v.duration(&format!("{path}.opentelemetry.grpc.timeout"), &g.timeout);
        }
    }
    if let Some(z) = &p.zipkin {
        service(v, &format!("{path}.zipkin"), &z.service, z.port);
        v.duration(&format!("{path}.zipkin.timeout"), &z.timeout);
        if let Some(o) = z.trace_context_option.as_deref() {
            if !["USE_B3", "USE_B3_WITH_W3C_PROPAGATION"].contains(&o) {
                v.err(
                    &format!("{path}.zipkin.traceContextOption"),
                    format!("unknown option {o:?}: USE_B3 or USE_B3_WITH_W3C_PROPAGATION"),
                );
            }
        }
    }
}

fn service(v: &mut V, path: &str, service: &str, port: i64) {
    if service.is_empty() {
        v.err(&format!("{path}.service"), "service is required");
    }
    if !(1..=65535).contains(&port) {
        v.err(
            &format!("{path}.port"),
            format!("port {port} must be between 1-65535"),
        );
    }
}
