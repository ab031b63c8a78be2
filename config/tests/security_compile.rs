//! PeerAuthentication and AuthorizationPolicy compiled for one workload, checked against
//! Istio's documented behaviour: YAML in (through `load_str`, so the validator runs too),
//! then `Snapshot::peer_authn.mode(port)` and `Snapshot::authz.evaluate(request)`.
//!
//! The AuthorizationPolicy cases follow Istio's docs (`tasks/security/authorization/
//! authz-{http,deny,tcp,jwt}`, `authorization_policy.proto` examples); the
//! PeerAuthentication ones `authn-policy` "Policy precedence" and istiod's
//! `ComposePeerAuthentication`.

use http::{HeaderMap, HeaderValue};
use meshproxy_config::compile::authz::{AuthzRequest, Decision, HttpAttrs, NO_ALLOW_MATCHED};
use meshproxy_config::compile::load_str;
use meshproxy_config::compile::peer_auth::MtlsMode;
use meshproxy_config::compile::Snapshot;
use std::net::IpAddr;

/// This workload: `reviews` (labels app=reviews, version=v1) in namespace `default`.
const PROXY: &str = "apiVersion: meshproxy.io/v1alpha1
kind: Proxy
metadata: {name: reviews, namespace: default}
spec:
  workload: {labels: {app: reviews, version: v1}, serviceAccount: reviews}
---
";

fn snapshot(proxy: &str, docs: &str) -> Snapshot {
    load_str("security.yaml", &format!("{proxy}{docs}"))
        .unwrap_or_else(|d| panic!("config refused:\n{d}\n---\n{docs}"))
}

// ---------------------------------------------------------------------------------------
// AuthorizationPolicy

fn ap(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{spec}---\n"
    )
}

/// A synthetic request; HTTP by default, `tcp()` drops the HTTP attributes.
#[derive(Clone)]
struct Req {
    principal: Option<&'static str>,
    source: &'static str,
    dest_port: u16,
    sni: Option<&'static str>,
    http: bool,
    method: &'static str,
    path: &'static str,
    host: &'static str,
    headers: Vec<(&'static str, &'static str)>,
}

fn get(path: &'static str) -> Req {
    Req {
        principal: None,
        source: "10.1.2.3",
        dest_port: 9080,
        sni: None,
        http: true,
        method: "GET",
        path,
        host: "reviews",
        headers: vec![],
    }
}

fn post(path: &'static str) -> Req {
    Req {
        method: "POST",
        ..get(path)
    }
}

fn tcp(port: u16) -> Req {
    Req {
        http: false,
        dest_port: port,
        ..get("/")
    }
}

impl Req {
    /// mTLS peer with service account `sa` in namespace `ns`.
    fn from(mut self, ns: &str, sa: &str) -> Self {
        self.principal = Some(Box::leak(
            format!("cluster.local/ns/{ns}/sa/{sa}").into_boxed_str(),
        ));
        self
    }
    fn ip(mut self, ip: &'static str) -> Self {
        self.source = ip;
        self
    }
    fn port(mut self, p: u16) -> Self {
        self.dest_port = p;
        self
    }
    fn host(mut self, h: &'static str) -> Self {
        self.host = h;
        self
    }
    fn header(mut self, k: &'static str, v: &'static str) -> Self {
        self.headers.push((k, v));
        self
    }
    fn sni(mut self, s: &'static str) -> Self {
        self.sni = Some(s);
        self
    }

    fn eval(&self, snap: &Snapshot) -> (Decision, Option<String>) {
        let mut headers = HeaderMap::new();
        for (k, v) in &self.headers {
            headers.append(*k, HeaderValue::from_static(v));
        }
        let ip: IpAddr = self.source.parse().unwrap();
        let request = AuthzRequest {
            source_ip: ip,
            remote_ip: ip,
            principal: self.principal,
            destination_ip: "10.9.9.9".parse().unwrap(),
            destination_port: self.dest_port,
            sni: self.sni,
            http: self.http.then_some(HttpAttrs {
                host: self.host,
                method: self.method,
                path: self.path,
                headers: &headers,
            }),
            jwt: None,
        };
        snap.authz.evaluate(&request)
    }
}

fn allow() -> Decision {
    Decision::Allow
}

fn denied_by(policy: &str) -> Decision {
    Decision::Deny {
        policy: policy.to_string(),
    }
}

fn no_allow() -> Decision {
    denied_by(NO_ALLOW_MATCHED)
}

struct Case {
    name: &'static str,
    policies: String,
    expect: Vec<(Req, Decision)>,
}

fn case(name: &'static str, policies: String, expect: Vec<(Req, Decision)>) -> Case {
    Case {
        name,
        policies,
        expect,
    }
}

fn authz_cases() -> Vec<Case> {
    let d = "default";
    vec![
        case(
            "no policy: everything allowed",
            String::new(),
            vec![(get("/"), allow()), (tcp(9080), allow())],
        ),
        case(
            "allow-nothing (spec: {}) denies everything",
            ap(d, "allow-nothing", "  {}\n"),
            vec![
                (get("/"), no_allow()),
                (get("/").from(d, "sleep"), no_allow()),
                (tcp(9080), no_allow()),
            ],
        ),
        case(
            "allow-all (rules: [{}]) allows everything",
            ap(d, "allow-all", "  rules: [{}]\n"),
            vec![(post("/x"), allow()), (tcp(9080), allow())],
        ),
        case(
            "deny-all (DENY rules: [{}])",
            ap(d, "deny-all", "  action: DENY\n  rules: [{}]\n"),
            vec![
                (get("/"), denied_by("default/deny-all")),
                (tcp(1), denied_by("default/deny-all")),
            ],
        ),
        case(
            "authz-http: GET only",
            ap(
                d,
                "productpage-viewer",
                "  action: ALLOW\n  rules:\n  - to:\n    - operation:\n        methods: [\"GET\"]\n",
            ),
            vec![(get("/"), allow()), (post("/"), no_allow())],
        ),
        case(
            "authz-http: allow by principal and method",
            ap(
                d,
                "details-viewer",
                "  selector: {matchLabels: {app: reviews}}\n  action: ALLOW\n  rules:\n  - from:\n    - source:\n        principals: [\"cluster.local/ns/default/sa/bookinfo-productpage\"]\n    to:\n    - operation:\n        methods: [\"GET\"]\n",
            ),
            vec![
                (get("/").from(d, "bookinfo-productpage"), allow()),
                (post("/").from(d, "bookinfo-productpage"), no_allow()),
                (get("/").from(d, "sleep"), no_allow()),
                (get("/"), no_allow()),
            ],
        ),
        case(
            "principal wildcards: prefix, suffix, any authenticated",
            format!(
                "{}{}",
                ap(
                    d,
                    "sa-suffix",
                    "  rules: [{from: [{source: {principals: [\"*/sa/sleep\", \"cluster.local/ns/prod/*\"]}}]}]\n"
                ),
                ap(d, "deny-plaintext", "  action: DENY\n  rules: [{from: [{source: {notPrincipals: [\"*\"]}}]}]\n")
            ),
            vec![
                (get("/").from("foo", "sleep"), allow()),
                (get("/").from("prod", "anything"), allow()),
                (get("/").from("foo", "other"), no_allow()),
                (get("/"), denied_by("default/deny-plaintext")),
            ],
        ),
        case(
            "namespaces (derived from the principal)",
            ap(d, "from-foo", "  rules: [{from: [{source: {namespaces: [\"foo\", \"team-*\"]}}]}]\n"),
            vec![
                (get("/").from("foo", "sleep"), allow()),
                (get("/").from("team-a", "sleep"), allow()),
                (get("/").from("bar", "sleep"), no_allow()),
                (get("/"), no_allow()),
            ],
        ),
        case(
            "authz-deny: notNamespaces denies plaintext and other namespaces",
            ap(d, "deny-others", "  action: DENY\n  rules: [{from: [{source: {notNamespaces: [\"foo\"]}}]}]\n"),
            vec![
                (get("/").from("foo", "sleep"), allow()),
                (get("/").from("bar", "sleep"), denied_by("default/deny-others")),
                (get("/"), denied_by("default/deny-others")),
            ],
        ),
        case(
            "serviceAccounts: <sa> is in the policy's namespace, <ns>/<sa> anywhere",
            ap(d, "by-sa", "  rules: [{from: [{source: {serviceAccounts: [\"sleep\", \"prod/api\"]}}]}]\n"),
            vec![
                (get("/").from(d, "sleep"), allow()),
                (get("/").from("prod", "api"), allow()),
                (get("/").from("other", "sleep"), no_allow()),
                (get("/").from(d, "sleeper"), no_allow()),
            ],
        ),
        case(
            "authz-deny: deny by path prefix",
            ap(d, "deny-admin", "  action: DENY\n  rules: [{to: [{operation: {paths: [\"/admin*\"]}}]}]\n"),
            vec![
                (get("/admin/users"), denied_by("default/deny-admin")),
                (get("/admin"), denied_by("default/deny-admin")),
                (get("/public"), allow()),
            ],
        ),
        case(
            "paths: exact, suffix and presence",
            ap(d, "paths", "  rules: [{to: [{operation: {paths: [\"/exact\", \"*.png\"]}}]}]\n"),
            vec![
                (get("/exact"), allow()),
                (get("/exact/"), no_allow()),
                (get("/img/a.png"), allow()),
                (get("/img/a.jpg"), no_allow()),
            ],
        ),
        case(
            "notPaths in a DENY rule: deny all but /healthz",
            ap(d, "deny-but-health", "  action: DENY\n  rules: [{to: [{operation: {notPaths: [\"/healthz\"]}}]}]\n"),
            vec![
                (get("/healthz"), allow()),
                (get("/data"), denied_by("default/deny-but-health")),
            ],
        ),
        case(
            "path templates ({*} one segment, {**} the rest)",
            ap(
                d,
                "templates",
                "  rules: [{to: [{operation: {paths: [\"/api/{*}/items\", \"/files/{**}\", \"/v/{*}/x/{**}/\"]}}]}]\n",
            ),
            vec![
                (get("/api/v1/items"), allow()),
                (get("/api/v1/v2/items"), no_allow()),
                (get("/api//items"), no_allow()),
                (get("/files/"), allow()),
                (get("/files/a/b/c.txt"), allow()),
                (get("/files"), no_allow()),
                (get("/v/1/x/a/b/"), allow()),
                (get("/v/1/x/"), no_allow()),
                (get("/v/1/x//"), allow()),
            ],
        ),
        case(
            "ports and notPorts",
            format!(
                "{}{}",
                ap(d, "allow-9080", "  rules: [{to: [{operation: {ports: [\"9080\", \"9443\"]}}]}]\n"),
                ap(d, "deny-9443-post", "  action: DENY\n  rules: [{to: [{operation: {notPorts: [\"9080\"], methods: [POST]}}]}]\n")
            ),
            vec![
                (get("/").port(9080), allow()),
                (post("/").port(9080), allow()),
                (get("/").port(9443), allow()),
                (post("/").port(9443), denied_by("default/deny-9443-post")),
                (get("/").port(9090), no_allow()),
            ],
        ),
        case(
            "methods: case-sensitive, notMethods",
            ap(d, "no-delete", "  rules: [{to: [{operation: {notMethods: [DELETE]}}]}]\n"),
            vec![
                (get("/"), allow()),
                (Req { method: "DELETE", ..get("/") }, no_allow()),
                (Req { method: "delete", ..get("/") }, allow()),
            ],
        ),
        case(
            "hosts: case-insensitive, matched with the port as sent (istio#44080)",
            ap(d, "hosts", "  rules: [{to: [{operation: {hosts: [\"Reviews.default\", \"reviews:*\", \"*.example.com\"]}}]}]\n"),
            vec![
                (get("/").host("reviews.DEFAULT"), allow()),
                (get("/").host("reviews.default:9080"), no_allow()),
                (get("/").host("reviews:9080"), allow()),
                (get("/").host("api.example.com"), allow()),
                (get("/").host("reviews"), no_allow()),
            ],
        ),
        case(
            "when request.headers (values, notValues, presence, repeated header)",
            format!(
                "{}{}",
                ap(d, "token", "  rules:\n  - when:\n    - key: request.headers[X-Token]\n      values: [\"secret\", \"pre*\"]\n"),
                ap(d, "deny-debug", "  action: DENY\n  rules:\n  - when:\n    - key: request.headers[x-debug]\n      values: [\"*\"]\n")
            ),
            vec![
                (get("/").header("x-token", "secret"), allow()),
                (get("/").header("x-token", "prefixed"), allow()),
                (get("/").header("x-token", "guess"), no_allow()),
                (get("/"), no_allow()),
                // Envoy joins repeated headers with ',' before matching.
                (get("/").header("x-token", "secret").header("x-token", "x"), no_allow()),
                (get("/").header("x-token", "pre").header("x-token", "x"), allow()),
                (get("/").header("x-token", "secret").header("x-debug", ""), denied_by("default/deny-debug")),
            ],
        ),
        case(
            "ipBlocks and notIpBlocks with CIDRs",
            format!(
                "{}{}",
                ap(d, "from-ten", "  rules: [{from: [{source: {ipBlocks: [\"10.0.0.0/8\", \"192.168.1.1\", \"fd00::/8\"]}}]}]\n"),
                ap(d, "deny-bad", "  action: DENY\n  rules: [{from: [{source: {ipBlocks: [\"10.66.0.0/16\"]}}]}]\n")
            ),
            vec![
                (get("/").ip("10.1.2.3"), allow()),
                (get("/").ip("::ffff:10.1.2.3"), allow()),
                (get("/").ip("192.168.1.1"), allow()),
                (get("/").ip("192.168.1.2"), no_allow()),
                (get("/").ip("fd00::1"), allow()),
                (get("/").ip("10.66.1.1"), denied_by("default/deny-bad")),
            ],
        ),
        case(
            "when source.ip, destination.port, connection.sni, source.namespace",
            ap(
                d,
                "conditions",
                "  rules:\n  - when:\n    - {key: source.ip, values: [\"10.0.0.0/8\"]}\n    - {key: destination.port, notValues: [\"15000\"]}\n    - {key: connection.sni, values: [\"*.svc.cluster.local\"]}\n    - {key: source.namespace, values: [\"foo\"]}\n",
            ),
            vec![
                (get("/").from("foo", "a").sni("reviews.default.svc.cluster.local"), allow()),
                (get("/").from("foo", "a"), no_allow()),
                (get("/").from("bar", "a").sni("reviews.default.svc.cluster.local"), no_allow()),
                (get("/").from("foo", "a").sni("reviews.default.svc.cluster.local").port(15000), no_allow()),
                (get("/").from("foo", "a").sni("reviews.default.svc.cluster.local").ip("192.168.0.1"), no_allow()),
            ],
        ),
        case(
            "DENY beats ALLOW",
            format!(
                "{}{}",
                ap(d, "allow-all", "  rules: [{}]\n"),
                ap(d, "deny-post", "  action: DENY\n  rules: [{to: [{operation: {methods: [POST]}}]}]\n")
            ),
            vec![(get("/"), allow()), (post("/"), denied_by("default/deny-post"))],
        ),
        case(
            "AUDIT never changes the decision",
            format!(
                "{}{}",
                ap(d, "audit-admin", "  action: AUDIT\n  rules: [{to: [{operation: {paths: [\"/admin*\"]}}]}]\n"),
                ap(d, "deny-delete", "  action: DENY\n  rules: [{to: [{operation: {methods: [DELETE]}}]}]\n")
            ),
            vec![(get("/public"), allow()), (get("/admin"), allow())],
        ),
        case(
            "requestPrincipals need a JWT, which never is present",
            format!(
                "{}{}",
                ap(d, "jwt-only", "  rules: [{from: [{source: {requestPrincipals: [\"*\"]}}]}, {to: [{operation: {paths: [\"/public\"]}}]}]\n"),
                ap(d, "require-jwt", "  action: DENY\n  rules: [{from: [{source: {notRequestPrincipals: [\"*\"]}}], to: [{operation: {paths: [\"/secure*\"]}}]}]\n")
            ),
            vec![
                (get("/"), no_allow()),
                (get("/public"), allow()),
                (get("/secure/x"), denied_by("default/require-jwt")),
            ],
        ),
        case(
            "authz-tcp: ALLOW rule with an HTTP-only field never matches TCP",
            ap(d, "tcp-policy", "  rules:\n  - to: [{operation: {ports: [\"9000\", \"9001\"]}}]\n  - to: [{operation: {methods: [GET], ports: [\"9002\"]}}]\n"),
            vec![
                (tcp(9000), allow()),
                (tcp(9001), allow()),
                (tcp(9002), no_allow()),
                (get("/").port(9002), allow()),
            ],
        ),
        case(
            "authz-tcp: DENY drops only the HTTP-only field (methods:[POST] ports:[9000] denies all TCP on 9000)",
            ap(d, "tcp-deny", "  action: DENY\n  rules: [{to: [{operation: {methods: [POST], ports: [\"9000\"]}}]}]\n"),
            vec![
                (tcp(9000), denied_by("default/tcp-deny")),
                (tcp(9001), allow()),
                (get("/").port(9000), allow()),
                (post("/").port(9000), denied_by("default/tcp-deny")),
            ],
        ),
        case(
            "root-namespace policy applies mesh-wide",
            ap("istio-system", "mesh-deny-post", "  action: DENY\n  rules: [{to: [{operation: {methods: [POST]}}]}]\n"),
            vec![(get("/"), allow()), (post("/"), denied_by("istio-system/mesh-deny-post"))],
        ),
        case(
            "policies for other workloads or namespaces do not apply",
            format!(
                "{}{}{}",
                ap(d, "ratings-only", "  selector: {matchLabels: {app: ratings}}\n"),
                ap("prod", "prod-deny", "  action: DENY\n  rules: [{}]\n"),
                ap("istio-system", "mesh-ratings", "  selector: {matchLabels: {app: ratings}}\n  action: DENY\n  rules: [{}]\n")
            ),
            vec![(get("/"), allow())],
        ),
        case(
            "a selector matching this workload applies",
            ap(d, "v1-only", "  selector: {matchLabels: {app: reviews, version: v1}}\n  action: DENY\n  rules: [{}]\n"),
            vec![(get("/"), denied_by("default/v1-only"))],
        ),
        case(
            "dry-run policies are not enforced",
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: dry\n  namespace: default\n  annotations: {\"istio.io/dry-run\": \"true\"}\nspec:\n  action: DENY\n  rules: [{}]\n---\n".to_string(),
            vec![(get("/"), allow())],
        ),
    ]
}

#[test]
fn authorization_policy_examples() {
    let mut failures = Vec::new();
    for c in authz_cases() {
        let snap = snapshot(PROXY, &c.policies);
        for (i, (req, want)) in c.expect.iter().enumerate() {
            let (got, _) = req.eval(&snap);
            if &got != want {
                failures.push(format!(
                    "{} [#{i}: {} {} {} port {} from {:?}]: got {got:?}, want {want:?}",
                    c.name,
                    if req.http { req.method } else { "TCP" },
                    req.host,
                    req.path,
                    req.dest_port,
                    req.principal
                ));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn audit_reports_the_matching_policy() {
    let snap = snapshot(
        PROXY,
        &format!(
            "{}{}",
            ap(
                "default",
                "audit-admin",
                "  action: AUDIT\n  rules: [{to: [{operation: {paths: [\"/admin*\"]}}]}]\n"
            ),
            ap(
                "default",
                "deny-post",
                "  action: DENY\n  rules: [{to: [{operation: {methods: [POST]}}]}]\n"
            )
        ),
    );
    assert_eq!(get("/public").eval(&snap), (Decision::Allow, None));
    assert_eq!(
        get("/admin/x").eval(&snap),
        (Decision::Allow, Some("default/audit-admin".into()))
    );
    assert_eq!(
        post("/admin/x").eval(&snap),
        (
            denied_by("default/deny-post"),
            Some("default/audit-admin".into())
        )
    );
    // On TCP, AUDIT and DENY rules drop their HTTP-only fields (Istio `checkError`): this
    // AUDIT policy audits every connection and `methods: [POST]` denies every connection.
    assert_eq!(
        tcp(9080).eval(&snap),
        (
            denied_by("default/deny-post"),
            Some("default/audit-admin".into())
        )
    );
}

#[test]
fn is_empty_without_enforced_policies() {
    assert!(snapshot(PROXY, "").authz.is_empty());
    // CUSTOM needs an ext-authz provider meshproxy does not have: not evaluated at all.
    let custom = ap(
        "default",
        "ext",
        "  action: CUSTOM\n  provider: {name: my-ext-authz}\n  rules: [{to: [{operation: {paths: [\"/admin*\"]}}]}]\n",
    );
    let snap = snapshot(PROXY, &custom);
    assert!(snap.authz.is_empty());
    assert_eq!(get("/admin").eval(&snap).0, Decision::Allow);
    assert!(!snapshot(PROXY, &ap("default", "x", "  {}\n"))
        .authz
        .is_empty());
}

#[test]
fn root_namespace_comes_from_the_proxy() {
    let proxy = "apiVersion: meshproxy.io/v1alpha1
kind: Proxy
metadata: {name: reviews, namespace: default}
spec:
  workload: {labels: {app: reviews}}
  rootNamespace: mesh-config
---
";
    let docs = format!(
        "{}{}",
        ap(
            "mesh-config",
            "deny-post",
            "  action: DENY\n  rules: [{to: [{operation: {methods: [POST]}}]}]\n"
        ),
        ap(
            "istio-system",
            "deny-all",
            "  action: DENY\n  rules: [{}]\n"
        )
    );
    let snap = snapshot(proxy, &docs);
    assert_eq!(get("/").eval(&snap).0, Decision::Allow);
    assert_eq!(post("/").eval(&snap).0, denied_by("mesh-config/deny-post"));
}

// ---------------------------------------------------------------------------------------
// PeerAuthentication

fn pa(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{spec}---\n"
    )
}

fn mesh(mode: &str) -> String {
    pa(
        "istio-system",
        "default",
        &format!("  mtls: {{mode: {mode}}}\n"),
    )
}

fn namespace(mode: &str) -> String {
    pa("default", "default", &format!("  mtls: {{mode: {mode}}}\n"))
}

fn workload(mode: &str, ports: &str) -> String {
    pa(
        "default",
        "reviews",
        &format!(
            "  selector: {{matchLabels: {{app: reviews}}}}\n  mtls: {{mode: {mode}}}\n{ports}"
        ),
    )
}

/// (name, policies, [(workload port, expected mode)])
type PaCase = (&'static str, String, Vec<(u16, MtlsMode)>);

#[test]
fn peer_authentication_precedence() {
    use MtlsMode::*;
    let ports = "  portLevelMtls:\n    8080: {mode: STRICT}\n    9090: {mode: UNSET}\n    \"9443\": {mode: DISABLE}\n";
    let cases: Vec<PaCase> = vec![
        ("nothing: PERMISSIVE", String::new(), vec![(9080, Permissive)]),
        ("mesh STRICT", mesh("STRICT"), vec![(9080, Strict), (1, Strict)]),
        ("mesh DISABLE", mesh("DISABLE"), vec![(9080, Disable)]),
        ("mesh UNSET: PERMISSIVE", mesh("UNSET"), vec![(9080, Permissive)]),
        (
            "namespace beats mesh",
            format!("{}{}", mesh("STRICT"), namespace("PERMISSIVE")),
            vec![(9080, Permissive)],
        ),
        (
            "namespace UNSET inherits mesh",
            format!("{}{}", mesh("STRICT"), namespace("UNSET")),
            vec![(9080, Strict)],
        ),
        (
            "workload beats namespace; port level beats workload; port UNSET inherits workload",
            format!("{}{}{}", mesh("STRICT"), namespace("PERMISSIVE"), workload("DISABLE", ports)),
            vec![(9080, Disable), (8080, Strict), (9090, Disable), (9443, Disable)],
        ),
        (
            "workload UNSET inherits namespace, its ports still apply",
            format!(
                "{}{}",
                namespace("STRICT"),
                workload("UNSET", "  portLevelMtls:\n    8080: {mode: DISABLE}\n    9090: {mode: UNSET}\n")
            ),
            vec![(9080, Strict), (8080, Disable), (9090, Strict)],
        ),
        (
            "workload without mtls: only its ports",
            format!(
                "{}{}",
                mesh("STRICT"),
                pa("default", "ports-only", "  selector: {matchLabels: {app: reviews}}\n  portLevelMtls:\n    8080: {mode: PERMISSIVE}\n")
            ),
            vec![(9080, Strict), (8080, Permissive)],
        ),
        (
            "another workload's policy does not apply",
            format!(
                "{}{}",
                mesh("STRICT"),
                pa("default", "ratings", "  selector: {matchLabels: {app: ratings}}\n  mtls: {mode: DISABLE}\n")
            ),
            vec![(9080, Strict)],
        ),
        (
            "all selector labels must match",
            pa("default", "v2", "  selector: {matchLabels: {app: reviews, version: v2}}\n  mtls: {mode: STRICT}\n"),
            vec![(9080, Permissive)],
        ),
        (
            "another namespace's policy does not apply",
            format!("{}{}", mesh("STRICT"), pa("prod", "default", "  mtls: {mode: DISABLE}\n")),
            vec![(9080, Strict)],
        ),
        (
            "root-namespace policy with a selector is ignored",
            pa("istio-system", "sel", "  selector: {matchLabels: {app: reviews}}\n  mtls: {mode: STRICT}\n"),
            vec![(9080, Permissive)],
        ),
        (
            "several at one level: the first in load order wins",
            format!(
                "{}{}",
                pa("default", "first", "  mtls: {mode: STRICT}\n"),
                pa("default", "second", "  mtls: {mode: DISABLE}\n")
            ),
            vec![(9080, Strict)],
        ),
        (
            "several workload policies: the first in load order wins",
            format!(
                "{}{}",
                pa("default", "a", "  selector: {matchLabels: {app: reviews}}\n  mtls: {mode: DISABLE}\n"),
                pa("default", "b", "  selector: {matchLabels: {version: v1}}\n  mtls: {mode: STRICT}\n  portLevelMtls: {8080: {mode: PERMISSIVE}}\n")
            ),
            vec![(9080, Disable), (8080, Disable)],
        ),
    ];
    let mut failures = Vec::new();
    for (name, docs, expect) in cases {
        let snap = snapshot(PROXY, &docs);
        for (port, want) in expect {
            let got = snap.peer_authn.mode(port);
            if got != want {
                failures.push(format!("{name}: port {port}: got {got:?}, want {want:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn peer_authentication_for_a_workload_in_the_root_namespace() {
    let proxy = "apiVersion: meshproxy.io/v1alpha1
kind: Proxy
metadata: {name: ingress, namespace: istio-system}
spec:
  workload: {labels: {app: ingress}}
---
";
    // The root namespace's no-selector policy is the mesh policy; a selector policy there
    // is ignored even for a workload of the root namespace.
    let docs = format!(
        "{}{}",
        mesh("STRICT"),
        pa(
            "istio-system",
            "sel",
            "  selector: {matchLabels: {app: ingress}}\n  mtls: {mode: DISABLE}\n"
        )
    );
    assert_eq!(
        snapshot(proxy, &docs).peer_authn.mode(443),
        MtlsMode::Strict
    );
}
