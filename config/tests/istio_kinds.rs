//! Istio's kinds beyond the routing and security ones: a real Istio config directory
//! loads. EnvoyFilter, WasmPlugin, ProxyConfig and WorkloadGroup are named in a warning
//! and ignored; the same kind names outside Istio's API groups stay unknown kinds.

use meshproxy_config::compile::load_str;

const IGNORED: &str = "apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: lua, namespace: istio-system}
spec:
  configPatches:
  - applyTo: HTTP_FILTER
    match: {context: SIDECAR_INBOUND}
    patch: {operation: INSERT_BEFORE, value: {name: envoy.lua}}
---
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: auth, namespace: default}
spec: {url: oci://example.com/auth:1, phase: AUTHN}
---
apiVersion: networking.istio.io/v1beta1
kind: ProxyConfig
metadata: {name: conc, namespace: default}
spec: {concurrency: 2}
---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: vms, namespace: default}
spec:
  metadata: {labels: {app: vm}}
  template: {serviceAccount: vm}
---
";

#[test]
fn istios_envoy_specific_kinds_load_as_warnings() {
    let snap = load_str("istio.yaml", IGNORED).unwrap_or_else(|d| panic!("{d}"));
    let w = snap.warnings.to_string();
    for kind in ["EnvoyFilter", "WasmPlugin", "ProxyConfig", "WorkloadGroup"] {
        assert!(
            w.contains(&format!(
                "kind \"{kind}\" is not supported by meshproxy: ignored"
            )),
            "{kind}: {w}"
        );
    }
    assert!(snap.resources.is_empty(), "nothing of them is kept");
}

#[test]
fn the_same_names_outside_istio_are_unknown_kinds() {
    let text = "apiVersion: example.com/v1\nkind: EnvoyFilter\nmetadata: {name: x}\nspec: {}\n";
    let e = load_str("x.yaml", text)
        .err()
        .map(|d| d.to_string())
        .unwrap_or_default();
    assert!(e.contains("unknown kind \"EnvoyFilter\""), "{e}");
}

fn we(name: &str, ns: &str, spec: &str) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}\n---\n")
}

const VM_SERVICE: &str = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: details-vm, namespace: vms}
spec:
  hosts: [details.vms.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{number: 9080, name: http, protocol: HTTP, targetPort: 8000}]
  resolution: STATIC
  workloadSelector: {labels: {app: details}}
---
";

#[test]
fn a_service_entry_selects_workload_entries_of_its_namespace() {
    let text = format!(
        "{VM_SERVICE}{}{}{}{}",
        we("vm-1", "vms", "{address: 10.0.0.1, labels: {app: details, version: v1}, ports: {http: 9081}, weight: 3, serviceAccount: details}"),
        we("vm-2", "vms", "{address: 10.0.0.2, labels: {app: details, version: v2}}"),
        we("other-app", "vms", "{address: 10.0.0.3, labels: {app: ratings}}"),
        we("other-ns", "default", "{address: 10.0.0.4, labels: {app: details}}"),
    );
    let snap = load_str("vm.yaml", &text).unwrap_or_else(|d| panic!("{d}"));
    let svc = &snap.registry.services[snap.registry.get("details.vms.svc.cluster.local").unwrap()];
    let eps: Vec<&str> = svc.endpoints.iter().map(|e| e.address.as_str()).collect();
    assert_eq!(eps, ["10.0.0.1", "10.0.0.2"]);
    let port = svc.port(9080).unwrap();
    let addrs: Vec<String> = svc
        .endpoints_for(port)
        .iter()
        .map(|e| e.address.to_string())
        .collect();
    // Istio: the entry's port for the service port's name, else the targetPort.
    assert_eq!(addrs, ["10.0.0.1:9081", "10.0.0.2:8000"]);
    assert_eq!(svc.endpoints[0].weight, 3);
    assert_eq!(svc.endpoints[0].service_account.as_deref(), Some("details"));
}

#[test]
fn invalid_workload_entries_are_refused_with_the_field() {
    for (spec, want) in [
        ("{labels: {app: a}}", "spec.address: address is required"),
        (
            "{address: \"unix:///sock\", ports: {http: 80}}",
            "spec.ports: UDS may not include ports",
        ),
        (
            "{address: 10.0.0.1, ports: {http: 70000}}",
            "spec.ports.http",
        ),
        (
            "{address: 10.0.0.1, serviceAccount: \"Bad_SA\"}",
            "spec.serviceAccount",
        ),
        ("{address: 10.0.0.1, bogus: 1}", "bogus"),
    ] {
        let e = load_str("we.yaml", &we("x", "default", spec))
            .err()
            .map(|d| d.to_string())
            .unwrap_or_default();
        assert!(e.contains(want), "{spec}: {e}");
    }
}

fn sidecar(name: &str, ns: &str, spec: &str) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{spec}---\n")
}

fn entry(host: &str, ns: &str, port: u16) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {}, namespace: {ns}}}\nspec:\n  hosts: [{host}]\n  ports: [{{number: {port}, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  endpoints: [{{address: 10.0.0.1}}]\n---\n", host.split('.').next().unwrap())
}

fn proxy(labels: &str) -> String {
    format!("apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {{name: p, namespace: shop}}\nspec:\n  workload: {{labels: {{{labels}}}}}\n  outboundTrafficPolicy: {{mode: ALLOW_ANY}}\n---\n")
}

fn services() -> String {
    [
        entry("cart.shop.svc.cluster.local", "shop", 80),
        entry("users.accounts.svc.cluster.local", "accounts", 80),
        entry("admin.accounts.svc.cluster.local", "accounts", 8080),
        entry("api.example.com", "istio-system", 443),
    ]
    .concat()
}

fn visible(text: &str) -> Vec<String> {
    let snap = load_str("s.yaml", text).unwrap_or_else(|d| panic!("{d}"));
    let mut hosts: Vec<String> = snap
        .registry
        .services
        .iter()
        .map(|s| s.host.clone())
        .collect();
    hosts.sort();
    hosts
}

#[test]
fn egress_hosts_scope_what_the_workload_sees() {
    let text = format!(
        "{}{}{}",
        proxy("app: web"),
        services(),
        sidecar("default", "shop", "  egress:\n  - hosts: [\"./*\", \"accounts/users.accounts.svc.cluster.local\", \"istio-system/*\"]\n"),
    );
    assert_eq!(
        visible(&text),
        [
            "api.example.com",
            "cart.shop.svc.cluster.local",
            "users.accounts.svc.cluster.local"
        ]
    );
    // Exclusions (Istio 1.31): everything but one namespace's admin service.
    let text = format!(
        "{}{}{}",
        proxy("app: web"),
        services(),
        sidecar(
            "default",
            "shop",
            "  egress:\n  - hosts: [\"*/*\", \"~accounts/admin.accounts.svc.cluster.local\"]\n"
        ),
    );
    assert!(!visible(&text).contains(&"admin.accounts.svc.cluster.local".to_string()));
    assert_eq!(visible(&text).len(), 3);
    // A listener with a port imports only services that have it.
    let text = format!(
        "{}{}{}",
        proxy("app: web"),
        services(),
        sidecar("default", "shop", "  egress:\n  - port: {number: 8080, protocol: HTTP, name: http}\n    hosts: [\"*/*\"]\n  - hosts: [\"./*\"]\n"),
    );
    assert_eq!(
        visible(&text),
        [
            "admin.accounts.svc.cluster.local",
            "cart.shop.svc.cluster.local"
        ]
    );
    // `~/*`: nothing.
    let text = format!(
        "{}{}{}",
        proxy("app: web"),
        services(),
        sidecar("none", "shop", "  egress:\n  - hosts: [\"~/*\"]\n")
    );
    assert!(visible(&text).is_empty());
}

#[test]
fn the_workload_sidecar_beats_the_namespace_one_which_beats_the_roots() {
    let root = sidecar(
        "root",
        "istio-system",
        "  egress:\n  - hosts: [\"istio-system/*\"]\n",
    );
    let ns = sidecar("ns", "shop", "  egress:\n  - hosts: [\"./*\"]\n");
    let wl = sidecar(
        "wl",
        "shop",
        "  workloadSelector: {labels: {app: web}}\n  egress:\n  - hosts: [\"accounts/*\"]\n",
    );
    let other_ns = sidecar("elsewhere", "accounts", "  egress:\n  - hosts: [\"~/*\"]\n");
    let base = format!("{}{}{other_ns}", proxy("app: web"), services());
    assert_eq!(visible(&format!("{base}{root}")), ["api.example.com"]);
    assert_eq!(
        visible(&format!("{base}{root}{ns}")),
        ["cart.shop.svc.cluster.local"]
    );
    assert_eq!(
        visible(&format!("{base}{root}{ns}{wl}")),
        [
            "admin.accounts.svc.cluster.local",
            "users.accounts.svc.cluster.local"
        ]
    );
    // Another workload's Sidecar does not apply; without any Sidecar everything is seen.
    let db = format!("{}{}{wl}", proxy("app: db"), services());
    assert_eq!(visible(&db).len(), 4);
    // The root Sidecar's `.` is the proxy's namespace.
    let root_dot = sidecar("root", "istio-system", "  egress:\n  - hosts: [\"./*\"]\n");
    assert_eq!(
        visible(&format!("{base}{root_dot}")),
        ["cart.shop.svc.cluster.local"]
    );
}

#[test]
fn a_sidecars_outbound_policy_overrides_the_proxys() {
    use meshproxy_config::model::proxy::OutboundMode;
    let snap = |s: &str| {
        load_str("s.yaml", &format!("{}{s}", proxy("app: web"))).unwrap_or_else(|d| panic!("{d}"))
    };
    assert_eq!(snap("").proxy.outbound_mode, OutboundMode::AllowAny);
    // Istio: an explicit `{}` is REGISTRY_ONLY, the proto's zero value.
    let s = sidecar("s", "shop", "  outboundTrafficPolicy: {}\n");
    assert_eq!(snap(&s).proxy.outbound_mode, OutboundMode::RegistryOnly);
    let s = sidecar("s", "shop", "  outboundTrafficPolicy: {mode: ALLOW_ANY}\n");
    assert_eq!(snap(&s).proxy.outbound_mode, OutboundMode::AllowAny);
}

#[test]
fn invalid_sidecars_are_refused_with_the_field() {
    for (spec, want) in [
        ("  {}\n", "empty configuration"),
        ("  egress:\n  - hosts: [reviews]\n", "must be of form namespace/dnsName"),
        ("  egress:\n  - hosts: [\"Bad_NS/*\"]\n", "invalid namespace value"),
        ("  egress:\n  - hosts: []\n", "at least one host"),
        ("  egress:\n  - hosts: [\"./*\"]\n  - port: {number: 80, protocol: HTTP}\n    hosts: [\"./*\"]\n", "should be the last listener"),
        ("  ingress:\n  - defaultEndpoint: 127.0.0.1:8080\n", "ingress listener must have a port"),
        ("  ingress:\n  - port: {number: 80, protocol: HTTP}\n    defaultEndpoint: 10.1.1.1:8080\n", "invalid defaultEndpoint"),
        ("  ingress:\n  - port: {number: 80, protocol: HTTP, targetPort: 81}\n    defaultEndpoint: 127.0.0.1:8080\n", "targetPort has no meaning"),
        ("  ingress:\n  - port: {number: 80, protocol: HTTP}\n  - port: {number: 80, protocol: HTTP}\n", "must be unique"),
        ("  outboundTrafficPolicy: {mode: REGISTRY_ONLY, egressProxy: {host: proxy, port: {number: 3128}}}\n", "egress_proxy must be set only with ALLOW_ANY"),
        ("  workloadSelector: {labels: {\"\": x}}\n  egress:\n  - hosts: [\"./*\"]\n", "empty key or wildcard"),
        ("  egress:\n  - hosts: [\"./*\"]\n    bogus: 1\n", "bogus"),
    ] {
        let e = load_str("s.yaml", &sidecar("s", "shop", spec)).err().map(|d| d.to_string()).unwrap_or_default();
        assert!(e.contains(want), "{spec}: {e}");
    }
}

#[test]
fn a_directory_with_every_istio_kind_loads() {
    let every = format!(
        "{IGNORED}{}{}{}apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: details, namespace: vms}}
spec:
  hosts: [details.vms.svc.cluster.local]
  http: [{{route: [{{destination: {{host: details.vms.svc.cluster.local}}}}]}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: details, namespace: vms}}
spec:
  host: details.vms.svc.cluster.local
  subsets: [{{name: v1, labels: {{version: v1}}}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers: [{{port: {{number: 80, name: http, protocol: HTTP}}, hosts: [\"*/*\"]}}]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: istio-system}}
spec: {{mtls: {{mode: PERMISSIVE}}}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: allow, namespace: vms}}
spec: {{rules: [{{}}]}}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: istio-system}}
spec:
  jwtRules: [{{issuer: \"https://issuer.example.com\", jwksUri: \"https://issuer.example.com/jwks.json\"}}]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {{name: mesh-default, namespace: istio-system}}
spec: {{accessLogging: [{{disabled: false}}]}}
---
",
        VM_SERVICE,
        we("vm-1", "vms", "{address: 10.0.0.1, labels: {app: details, version: v1}}"),
        sidecar("default", "istio-system", "  egress:\n  - hosts: [\"*/*\"]\n"),
    );
    let snap = load_str("every.yaml", &every).unwrap_or_else(|d| panic!("{d}"));
    let w = snap.warnings.to_string();
    assert_eq!(
        w.matches("is not supported by meshproxy: ignored").count(),
        4,
        "{w}"
    );
    let kinds: std::collections::BTreeSet<_> =
        snap.resources.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds.len(), 10, "{kinds:?}");
}
