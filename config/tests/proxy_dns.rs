//! `Proxy.spec.dns`: parsing, validation errors, the compiled defaults, and which
//! endpoint address each DNS resolution of a ServiceEntry compiles to.

use meshproxy_config::compile::cluster::{ClusterKey, EndpointAddress};
use meshproxy_config::compile::load_str;
use meshproxy_config::compile::proxy_settings::{DnsSettings, ProxySettings};
use std::time::Duration;

fn doc(dns: &str) -> String {
    format!(
        "apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {{name: p, namespace: default}}\nspec:\n  dns:\n{dns}"
    )
}

fn errors(dns: &str) -> String {
    match load_str("test.yaml", &doc(dns)) {
        Ok(_) => String::new(),
        Err(d) => d.to_string(),
    }
}

#[test]
fn defaults_are_the_system_resolver_and_istios_refresh_rate() {
    let d = ProxySettings::local_default().dns;
    assert_eq!(d, DnsSettings::default());
    assert_eq!(d.resolver, None);
    assert_eq!(d.refresh_rate, Duration::from_secs(60));
}

#[test]
fn resolver_and_refresh_rate_are_compiled() {
    let snap = load_str(
        "test.yaml",
        &doc("    resolver: 127.0.0.1:5353\n    refreshRate: 2s\n"),
    )
    .unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(
        snap.proxy.dns.resolver,
        Some("127.0.0.1:5353".parse().unwrap())
    );
    assert_eq!(snap.proxy.dns.refresh_rate, Duration::from_secs(2));
    // A bare address means port 53; IPv6 in brackets with a port.
    let snap = load_str("test.yaml", &doc("    resolver: 10.96.0.10\n")).unwrap();
    assert_eq!(
        snap.proxy.dns.resolver,
        Some("10.96.0.10:53".parse().unwrap())
    );
    let snap = load_str("test.yaml", &doc("    resolver: \"[::1]:5300\"\n")).unwrap();
    assert_eq!(snap.proxy.dns.resolver, Some("[::1]:5300".parse().unwrap()));
}

#[test]
fn bad_values_get_clear_errors() {
    let e = errors("    resolver: dns.example.com\n");
    assert!(
        e.contains("spec.dns.resolver") && e.contains("not an IP address"),
        "{e}"
    );
    let e = errors("    resolver: 127.0.0.1:0\n");
    assert!(e.contains("spec.dns.resolver"), "{e}");
    let e = errors("    resolver: 0.0.0.0\n");
    assert!(e.contains("cannot receive DNS queries"), "{e}");
    let e = errors("    refreshRate: 0s\n");
    assert!(e.contains("spec.dns.refreshRate"), "{e}");
    let e = errors("    refreshRate: 48h\n");
    assert!(e.contains("at most"), "{e}");
    let e = errors("    resolvers: [127.0.0.1]\n");
    assert!(e.contains("resolvers"), "{e}");
}

fn service_entry(resolution: &str) -> String {
    format!(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: db, namespace: default}}
spec:
  hosts: [db.example.com]
  location: MESH_EXTERNAL
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: {resolution}
  endpoints:
  - address: pods.db.example.com
    labels: {{version: v1}}
    weight: 3
"#
    )
}

fn first_endpoint(resolution: &str) -> EndpointAddress {
    let s = load_str("test.yaml", &service_entry(resolution)).unwrap_or_else(|d| panic!("{d}"));
    let id = s
        .find_cluster(&ClusterKey {
            service: "db.example.com".into(),
            port: 80,
            subset: None,
        })
        .unwrap();
    s.cluster(id).endpoints[0].address.clone()
}

#[test]
fn dns_is_strict_and_dns_round_robin_is_logical() {
    assert_eq!(
        first_endpoint("DNS"),
        EndpointAddress::Dns("pods.db.example.com".into(), 80)
    );
    assert_eq!(
        first_endpoint("DNS_ROUND_ROBIN"),
        EndpointAddress::LogicalDns("pods.db.example.com".into(), 80)
    );
}
