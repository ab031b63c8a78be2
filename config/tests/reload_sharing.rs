//! A reload shares with the snapshot in force what did not change (`load_reusing`), and
//! compiles to the same snapshot a fresh load would.

use meshproxy_config::compile::route::RouteAction;
use meshproxy_config::compile::{load, load_reusing, Snapshot};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

fn service(name: &str, address: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: [{name}.default.svc.cluster.local]
  ports: [{{number: 8080, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints:
  - {{address: {address}, ports: {{http: 9090}}, labels: {{version: v1}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}, namespace: default}}
spec:
  host: {name}.default.svc.cluster.local
  subsets: [{{name: v1, labels: {{version: v1}}}}]
---
"
    )
}

fn route(name: &str, timeout_s: u32) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: [{name}.default.svc.cluster.local]
  http:
  - match: [{{headers: {{end-user: {{exact: jason}}}}}}]
    route: [{{destination: {{host: {name}.default.svc.cluster.local, subset: v1}}}}]
  - timeout: {timeout_s}s
    route: [{{destination: {{host: {name}.default.svc.cluster.local}}}}]
---
"
    )
}

/// A config directory of its own, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("mp-reuse-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    fn write(&self, file: &str, text: &str) -> &Path {
        std::fs::write(self.0.join(file), text).unwrap();
        &self.0
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(a_address: &str, timeout_s: u32) -> String {
    [
        service("a", a_address),
        service("b", "10.0.0.2"),
        route("a", timeout_s),
        route("b", timeout_s),
    ]
    .concat()
}

fn ok(s: Result<Snapshot, meshproxy_config::diag::Diagnostics>) -> Snapshot {
    s.unwrap_or_else(|d| panic!("config refused:\n{d}"))
}

/// The timeout of the last rule of `host`'s virtual host.
fn timeout(s: &Snapshot, host: &str) -> Option<Duration> {
    let vh = s
        .mesh_routes()
        .unwrap()
        .virtual_hosts
        .iter()
        .find(|v| v.domains.iter().any(|d| &**d == host))
        .unwrap();
    let last = vh.routes.last().unwrap();
    assert!(matches!(last.action, RouteAction::Forward(_)));
    last.policy.timeout
}

fn same_text(a: &Snapshot, b: &Snapshot, kind: &str) -> Vec<bool> {
    a.resources
        .iter()
        .zip(&b.resources)
        .filter(|(x, _)| x.kind.as_str() == kind)
        .map(|(x, y)| Arc::ptr_eq(&x.raw, &y.raw))
        .collect()
}

/// A config loaded, then reloaded with every default route's timeout changed (2 s to
/// 3 s): the directory, the config's path, the first snapshot and the reloaded one.
fn timeout_change(name: &str) -> (Dir, PathBuf, Snapshot, Snapshot) {
    let dir = Dir::new(name);
    let first = ok(load(&[dir.write("c.yaml", &config("10.0.0.1", 2))]));
    let path = dir.write("c.yaml", &config("10.0.0.1", 3)).to_path_buf();
    let next = ok(load_reusing(&[&path], Some(&first)));
    (dir, path, first, next)
}

#[test]
fn a_route_change_keeps_the_services_and_unchanged_texts_in_force() {
    let (_dir, path, first, next) = timeout_change("routes");
    let path = path.as_path();

    assert!(Arc::ptr_eq(&first.registry, &next.registry));
    assert!(Arc::ptr_eq(&first.clusters, &next.clusters));
    assert!(Arc::ptr_eq(&first.cluster_index, &next.cluster_index));
    assert_eq!(same_text(&first, &next, "ServiceEntry"), [true, true]);
    assert_eq!(same_text(&first, &next, "VirtualService"), [false, false]);
    let host = "a.default.svc.cluster.local";
    assert_eq!(timeout(&next, host), Some(Duration::from_secs(3)));

    // The same snapshot as a load from scratch.
    let fresh = ok(load(&[path]));
    assert_eq!(next.version, fresh.version);
    assert_eq!(next.resources, fresh.resources);
    assert_eq!(
        format!("{:?}", next.clusters),
        format!("{:?}", fresh.clusters)
    );
    // (Lists only: the hash maps' Debug order differs from one map to the next.)
    let services = |s: &Snapshot| format!("{:?}", s.registry.services);
    assert_eq!(services(&next), services(&fresh));
    let hosts = |s: &Snapshot| format!("{:?}", s.mesh_routes().unwrap().virtual_hosts);
    assert_eq!(hosts(&next), hosts(&fresh));
}

#[test]
fn a_service_change_builds_the_services_anew() {
    let dir = Dir::new("services");
    let first = ok(load(&[dir.write("c.yaml", &config("10.0.0.1", 2))]));
    let path = dir.write("c.yaml", &config("10.0.0.9", 2));
    let next = ok(load_reusing(&[path], Some(&first)));

    assert!(!Arc::ptr_eq(&first.clusters, &next.clusters));
    assert!(!Arc::ptr_eq(&first.registry, &next.registry));
    assert_eq!(same_text(&first, &next, "ServiceEntry"), [false, true]);
    assert_eq!(same_text(&first, &next, "VirtualService"), [true, true]);
    let endpoints = |s: &Snapshot| {
        let c = &s.clusters[0];
        assert_eq!(&*c.name, "outbound|8080||a.default.svc.cluster.local");
        format!("{:?}", c.endpoints[0].address)
    };
    assert!(endpoints(&first).contains("10.0.0.1:9090"));
    assert!(endpoints(&next).contains("10.0.0.9:9090"));
    let fresh = ok(load(&[path]));
    assert_eq!(
        format!("{:?}", next.clusters),
        format!("{:?}", fresh.clusters)
    );
}

#[test]
fn the_same_documents_from_another_file_are_not_the_same_services() {
    // A DestinationRule's TLS file paths are relative to its file: its file is part of it.
    let dir = Dir::new("files");
    let first = ok(load(&[dir.write("c.yaml", &config("10.0.0.1", 2))]));
    std::fs::remove_file(dir.0.join("c.yaml")).unwrap();
    let path = dir.write("d.yaml", &config("10.0.0.1", 2));
    let next = ok(load_reusing(&[path], Some(&first)));
    assert!(!Arc::ptr_eq(&first.clusters, &next.clusters));
    assert_eq!(same_text(&first, &next, "ServiceEntry"), [true, true]);
}

#[test]
fn a_bad_reload_reports_what_a_fresh_load_reports() {
    let dir = Dir::new("bad");
    let first = ok(load(&[dir.write("c.yaml", &config("10.0.0.1", 2))]));
    let bad = config("10.0.0.1", 3).replace("timeout: 3s", "timeout: 3s\n    retires: {}");
    let path = dir.write("c.yaml", &bad);
    let shared = load_reusing(&[path], Some(&first)).unwrap_err();
    let fresh = load(&[path]).unwrap_err();
    assert_eq!(shared.to_string(), fresh.to_string());
    let e = shared.errors().next().unwrap();
    assert_eq!(e.path, "spec.http[1].retires");
    assert!(e.line.is_some(), "{e}");
    assert!(e.origin.as_ref().unwrap().file.ends_with("c.yaml"));
}

#[test]
fn unchanged_rules_share_their_parts_with_the_config_in_force() {
    let (_dir, _, first, next) = timeout_change("parts");
    let rules = |s: &Snapshot| {
        let t = s.mesh_routes().unwrap();
        let vh = t.find("a.default.svc.cluster.local").unwrap();
        vh.routes.clone()
    };
    let (old, new) = (rules(&first), rules(&next));
    let destinations = |r: &meshproxy_config::compile::route::Route| match &r.action {
        RouteAction::Forward(w) => w.destinations.clone(),
        _ => panic!("a forwarding rule"),
    };
    // Rule 0 (a header match to a subset) did not change: its conditions, destinations
    // and policy are the ones in force.
    assert!(Arc::ptr_eq(&old[0].matches, &new[0].matches));
    assert!(Arc::ptr_eq(&destinations(&old[0]), &destinations(&new[0])));
    assert!(Arc::ptr_eq(&old[0].policy, &new[0].policy));
    // Rule 1's timeout changed: a new policy, the destinations in force.
    assert!(!Arc::ptr_eq(&old[1].policy, &new[1].policy));
    assert_eq!(new[1].policy.timeout, Some(Duration::from_secs(3)));
    assert!(Arc::ptr_eq(&destinations(&old[1]), &destinations(&new[1])));
    // Equal parts of different services are not shared: `b`'s destinations are its own.
    let b = next
        .mesh_routes()
        .unwrap()
        .find("b.default.svc.cluster.local")
        .unwrap();
    assert!(!Arc::ptr_eq(
        &destinations(&b.routes[1]),
        &destinations(&new[1])
    ));
    assert!(Arc::ptr_eq(&b.routes[0].matches, &new[0].matches));
}

/// Documents using most of what VirtualServices and ServiceEntries can say.
const RICH: &str = r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: shop, labels: {team: a}, annotations: {note: x}}
spec:
  hosts: [api.example.com, "*.example.org"]
  addresses: [240.0.0.1/32]
  ports: [{number: 443, name: tls, protocol: TLS, targetPort: 8443}, {number: 80, name: http, protocol: HTTP}]
  location: MESH_EXTERNAL
  resolution: DNS
  exportTo: [".", shop]
  subjectAltNames: [spiffe://x/ns/a/sa/b]
  endpoints:
  - {address: a.example.com, ports: {tls: 9443}, labels: {version: v1}, network: n1, locality: r/z/s, weight: 3, serviceAccount: sa}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: rich, namespace: shop}
spec:
  hosts: [api.example.com]
  gateways: [mesh, shop/gw]
  exportTo: ["*"]
  http:
  - name: first
    match:
    - {uri: {regex: "/v[0-9]+/.*"}, method: {exact: GET}, headers: {x-a: {prefix: b}}, withoutHeaders: {x-c: {}}, queryParams: {q: {exact: "1"}}, port: 80, sourceLabels: {app: web}, ignoreUriCase: true, name: m0}
    - {authority: {prefix: api}, scheme: {exact: https}}
    route:
    - destination: {host: api.example.com, port: {number: 80}, subset: v1}
      weight: 75
      headers: {request: {set: {x-b: "1"}, add: {x-c: "2"}, remove: [x-d]}, response: {set: {x-e: "3"}}}
    - {destination: {host: api.example.com}, weight: 25}
    timeout: 1.5s
    retries: {attempts: 2, perTryTimeout: 500ms, retryOn: "5xx,reset", retryRemoteLocalities: true}
    fault: {delay: {fixedDelay: 1s, percentage: {value: 0.5}}, abort: {httpStatus: 503, percentage: {value: 1.25}}}
    mirror: {host: api.example.com}
    mirrorPercentage: {value: 10.5}
    corsPolicy: {allowOrigins: [{exact: "https://a"}], allowMethods: [GET], maxAge: 24h, allowCredentials: true}
    headers: {request: {set: {x-f: g}}}
    rewrite: {uri: /x, authority: b}
  - match: [{uri: {prefix: /old}}]
    redirect: {uri: /new, redirectCode: 308, port: 8080}
  - match: [{uri: {exact: /gone}}]
    directResponse: {status: 410, body: {string: gone}}
  tcp:
  - match: [{port: 9000, destinationSubnets: [10.0.0.0/8]}]
    route: [{destination: {host: api.example.com, port: {number: 443}}}]
  tls:
  - match: [{port: 443, sniHosts: [api.example.com]}]
    route: [{destination: {host: api.example.com}}]
---
"#;

#[test]
fn a_deferred_document_reads_as_the_document_loaded_whole() {
    use meshproxy_config::loader::{load_paths, load_paths_sharing};
    use meshproxy_config::model::Spec;
    let dir = Dir::new("deferred");
    dir.write("rich.yaml", RICH);
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let paths = [dir.0.clone(), examples];
    let whole = load_paths(&paths);
    let deferred = load_paths_sharing(&paths, &Default::default(), true);
    // A deferred document is validated as it is loaded, the others by `validate`: the
    // same findings either way.
    let findings = |l: &meshproxy_config::loader::Loaded| {
        let mut all: Vec<String> = l.diagnostics.0.iter().map(|d| d.to_string()).collect();
        let checked = meshproxy_config::validate::validate(
            &l.resources,
            meshproxy_config::validate::MissingFiles::Warn,
        );
        all.extend(checked.0.iter().map(|d| d.to_string()));
        all.sort();
        all
    };
    assert_eq!(findings(&whole), findings(&deferred));
    assert_eq!(whole.resources.len(), deferred.resources.len());
    let ids: Vec<String> = whole.resources.iter().map(|r| r.id()).collect();
    for id in ["ServiceEntry/shop/ext", "VirtualService/shop/rich"] {
        assert!(
            ids.iter().any(|i| i == id),
            "{id} did not load: {}",
            whole.diagnostics
        );
    }
    let mut kept_as_text = 0;
    for (w, d) in whole.resources.iter().zip(&deferred.resources) {
        assert_eq!((w.kind, &w.name, &w.raw), (d.kind, &d.name, &d.raw));
        assert_eq!(w.annotations, d.annotations, "{}", d.id());
        assert_eq!(*w.spec(), *d.spec(), "{}", d.id());
        if matches!(d.spec, Spec::Deferred(_)) {
            kept_as_text += 1;
        }
    }
    let large = |k: &str| {
        deferred
            .resources
            .iter()
            .filter(|r| {
                r.kind.as_str() == k
                    && !r
                        .annotations
                        .contains_key(meshproxy_config::gateway_api::SOURCE_ANNOTATION)
            })
            .count()
    };
    // Every VirtualService and ServiceEntry written in a file (not those made from the
    // Gateway API's kinds) is held as text.
    assert_eq!(
        kept_as_text,
        large("VirtualService") + large("ServiceEntry")
    );
    assert!(kept_as_text >= 5, "{kept_as_text}");
}
