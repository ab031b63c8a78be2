//! `Telemetry` and `Proxy.spec.extensionProviders`: Istio's validation rules (errors with
//! the field path), and how mesh, namespace and workload levels combine per side.

use meshproxy_config::compile::load_str;
use meshproxy_config::compile::telemetry::{metric, TagValue};
use meshproxy_config::compile::trace_provider::{ExportProtocol, Propagation};

const COLLECTOR: &str = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: otel, namespace: istio-system}\nspec:\n  hosts: [otel.observability.svc.cluster.local]\n  ports: [{number: 4317, name: grpc, protocol: GRPC}]\n  resolution: STATIC\n  endpoints: [{address: 10.0.0.9, ports: {grpc: 14317}}]\n---\n";

fn proxy(labels: &str, ns: &str) -> String {
    format!(
        "apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {{name: p, namespace: {ns}}}\nspec:\n  workload: {{labels: {{{labels}}}}}\n  extensionProviders:\n  - {{name: otel, opentelemetry: {{service: otel.observability.svc.cluster.local, port: 4317}}}}\n  - {{name: zip, zipkin: {{service: zipkin.example.com, port: 9411, traceContextOption: USE_B3_WITH_W3C_PROPAGATION}}}}\n  - {{name: http, opentelemetry: {{service: otel.observability.svc.cluster.local, port: 4317, http: {{path: /otlp}}}}}}\n---\n{COLLECTOR}"
    )
}

fn telemetry(name: &str, ns: &str, spec: &str) -> String {
    format!("apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{spec}---\n")
}

fn errors(text: &str) -> String {
    match load_str("t.yaml", text) {
        Ok(_) => String::new(),
        Err(d) => d.to_string(),
    }
}

#[test]
fn invalid_telemetry_is_refused_with_the_field() {
    let cases = [
        ("  tracing: [{randomSamplingPercentage: 101}]\n", "spec.tracing[0].randomSamplingPercentage"),
        ("  tracing: [{providers: [{name: \"\"}]}]\n", "spec.tracing[0].providers[0].name"),
        ("  tracing: [{customTags: {a: {}}}]\n", "spec.tracing[0].customTags.a"),
        ("  tracing: [{customTags: {a: {literal: {value: x}, header: {name: y}}}}]\n", "spec.tracing[0].customTags.a"),
        ("  accessLogging: [{filter: {expression: \"response.code >=\"}}]\n", "spec.accessLogging[0].filter.expression"),
        ("  metrics: [{overrides: [{match: {metric: NOT_A_METRIC}}]}]\n", "spec.metrics[0].overrides[0].match.metric"),
        ("  metrics: [{overrides: [{tagOverrides: {x: {operation: REMOVE, value: a}}}]}]\n", "spec.metrics[0].overrides[0].tagOverrides.x"),
        ("  metrics: [{overrides: [{tagOverrides: {x: {operation: UPSERT}}}]}]\n", "spec.metrics[0].overrides[0].tagOverrides.x"),
        ("  selector: {matchLabels: {app: a}}\n  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: g}]\n", "only one of targetRefs or workloadSelector"),
        ("  tracing: [{bogus: 1}]\n", "bogus"),
    ];
    for (spec, want) in cases {
        let e = errors(&format!(
            "{}{}",
            proxy("app: a", "default"),
            telemetry("t", "default", spec)
        ));
        assert!(e.contains(want), "{spec}: {e}");
    }
    let ok = telemetry(
        "t",
        "default",
        "  tracing: [{randomSamplingPercentage: 5.5, customTags: {env: {literal: {value: prod}}}}]\n  accessLogging: [{filter: {expression: \"!has(response.code) || response.code >= 500\"}}]\n  metrics: [{overrides: [{match: {metric: REQUEST_COUNT, mode: CLIENT}, disabled: true}]}]\n",
    );
    assert_eq!(errors(&format!("{}{ok}", proxy("app: a", "default"))), "");
}

#[test]
fn invalid_providers_are_refused_with_the_field() {
    let px = |providers: &str| {
        format!("apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {{name: p}}\nspec:\n{providers}")
    };
    let cases = [
        ("  extensionProviders: [{name: a}]\n", "exactly one provider type"),
        ("  extensionProviders: [{name: a, zipkin: {service: z, port: 0}}]\n", "spec.extensionProviders[0].zipkin.port"),
        ("  extensionProviders: [{name: a, opentelemetry: {port: 4317}}]\n", "spec.extensionProviders[0].opentelemetry.service"),
        ("  extensionProviders: [{name: a, zipkin: {service: z, port: 1}}, {name: A, zipkin: {service: z, port: 1}}]\n", "duplicate extension provider name"),
        ("  extensionProviders: [{name: a, zipkin: {service: z, port: 1, traceContextOption: W3C}}]\n", "traceContextOption"),
        ("  defaultProviders: {tracing: [nope]}\n", "spec.defaultProviders.tracing[0]"),
        ("  traceSampling: -1\n", "spec.traceSampling"),
    ];
    for (spec, want) in cases {
        let e = errors(&px(spec));
        assert!(e.contains(want), "{spec}: {e}");
    }
}

#[test]
fn levels_combine_mesh_then_namespace_then_workload() {
    let text = format!(
        "{}{}{}{}{}",
        proxy("app: reviews, version: v1", "bookinfo"),
        telemetry("mesh", "istio-system", "  tracing: [{providers: [{name: otel}], randomSamplingPercentage: 100, customTags: {team: {literal: {value: mesh}}}}]\n"),
        telemetry("ns", "bookinfo", "  tracing: [{randomSamplingPercentage: 20}]\n"),
        telemetry("wl", "bookinfo", "  selector: {matchLabels: {app: reviews}}\n  tracing: [{match: {mode: SERVER}, providers: [{name: zip}], customTags: {h: {header: {name: x-user, defaultValue: anon}}}}]\n"),
        telemetry("other", "bookinfo", "  selector: {matchLabels: {app: ratings}}\n  tracing: [{randomSamplingPercentage: 0}]\n"),
    );
    let snap = load_str("t.yaml", &text).unwrap_or_else(|d| panic!("{d}"));
    let client = snap
        .telemetry
        .client
        .tracing
        .as_ref()
        .expect("client traced");
    assert_eq!(client.provider.name, "otel");
    assert_eq!(client.provider.protocol, ExportProtocol::OtlpGrpc);
    assert_eq!(client.provider.propagation, Propagation::W3c);
    assert_eq!(
        client.provider.addresses,
        vec!["10.0.0.9:14317".parse().unwrap()]
    );
    assert_eq!(client.sampling, 20.0, "the namespace overrides the mesh");
    assert!(
        matches!(&client.custom_tags[..], [(k, TagValue::Fixed(v))] if &**k == "team" && &**v == "mesh")
    );
    let server = snap
        .telemetry
        .server
        .tracing
        .as_ref()
        .expect("server traced");
    assert_eq!(server.provider.name, "zip", "the workload's SERVER entry");
    assert_eq!(server.provider.propagation, Propagation::B3AndW3c);
    assert!(
        server.provider.addresses.is_empty(),
        "not in the registry: DNS"
    );
    assert_eq!(server.sampling, 20.0);
    assert!(
        matches!(&server.custom_tags[..], [(k, TagValue::Header(..))] if &**k == "h"),
        "customTags replaced wholesale"
    );
}

#[test]
fn without_a_telemetry_the_default_provider_traces_at_one_percent() {
    let base = proxy("app: a", "default").replace(
        "  extensionProviders:",
        "  defaultProviders: {tracing: [http]}\n  extensionProviders:",
    );
    let snap = load_str("t.yaml", &base).unwrap_or_else(|d| panic!("{d}"));
    let t = snap
        .telemetry
        .client
        .tracing
        .as_ref()
        .expect("default provider");
    assert_eq!(
        t.provider.protocol,
        ExportProtocol::OtlpHttp {
            path: "/otlp".into()
        }
    );
    assert_eq!(t.sampling, 1.0, "Istio's PILOT_TRACE_SAMPLING default");
    assert!(t.report && t.propagate && t.use_request_id && t.istio_tags);
    // No default provider, no Telemetry: no tracing.
    let snap = load_str("t.yaml", &proxy("app: a", "default")).unwrap();
    assert!(snap.telemetry.client.tracing.is_none());
    assert!(snap.telemetry.server.tracing.is_none());
}

#[test]
fn an_unknown_provider_leaves_tracing_off_with_a_warning() {
    let text = format!(
        "{}{}",
        proxy("app: a", "default"),
        telemetry(
            "mesh",
            "istio-system",
            "  tracing: [{providers: [{name: jaeger}]}]\n"
        )
    );
    let snap = load_str("t.yaml", &text).unwrap_or_else(|d| panic!("{d}"));
    assert!(snap.telemetry.client.tracing.is_none());
    assert!(snap
        .warnings
        .to_string()
        .contains("no extension provider named \"jaeger\""));
}

#[test]
fn access_logging_and_metrics_per_side() {
    let text = format!(
        "{}{}{}",
        proxy("app: a", "default"),
        telemetry("mesh", "istio-system", "  accessLogging: [{disabled: true}]\n  metrics: [{overrides: [{disabled: true}]}]\n"),
        telemetry("wl", "default", "  selector: {matchLabels: {app: a}}\n  accessLogging: [{match: {mode: CLIENT}, disabled: false, filter: {expression: \"response.code >= 400\"}}]\n  metrics: [{overrides: [{match: {mode: SERVER}, disabled: false}, {match: {metric: REQUEST_SIZE, mode: SERVER}, disabled: true}]}]\n"),
    );
    let snap = load_str("t.yaml", &text).unwrap_or_else(|d| panic!("{d}"));
    let (c, s) = (&snap.telemetry.client, &snap.telemetry.server);
    assert!(
        !c.access_log.disabled,
        "re-enabled below a disabling parent"
    );
    assert_eq!(
        c.access_log.filter.as_ref().unwrap().expression,
        "response.code >= 400"
    );
    assert!(s.access_log.disabled && s.access_log.filter.is_none());
    assert_eq!(
        c.metrics.disabled,
        u16::MAX,
        "ALL_METRICS off on the client side"
    );
    assert_eq!(s.metrics.disabled, metric::REQUEST_SIZE);
    assert!(s.metrics.is_disabled("REQUEST_SIZE") && !s.metrics.is_disabled("REQUEST_COUNT"));
}
