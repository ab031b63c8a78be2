//! The Gateway API through the binary: `meshproxy validate` reports route status and the
//! API's validation errors with their field paths, and `/config_dump` of a running proxy
//! lists every route's conditions and the documents generated for them.

mod binary;

use std::process::Command;

const DOCS: &str = "apiVersion: meshproxy.io/v1alpha1
kind: Proxy
metadata: {name: gw-istio, namespace: default}
spec:
  admin: {address: \"127.0.0.1:0\"}
  workload: {labels: {gateway.networking.k8s.io/gateway-name: gw}}
  gatewayAddress: 127.0.0.1
  listeners:
  - {name: outbound, address: \"127.0.0.1:0\", direction: OUTBOUND}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: istio
  listeners:
  - {name: http, port: 0, protocol: HTTP}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web}
spec:
  hosts: [web.default.svc.cluster.local]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: good}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: web, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: missing-backend}
spec:
  parentRefs: [{name: gw}]
  hostnames: [other.example]
  rules: [{backendRefs: [{name: gone, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: lost}
spec:
  parentRefs: [{name: no-such-gateway}]
";

fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("meshproxy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn validate(dir: &std::path::Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_meshproxy"))
        .args(["validate", "-c"])
        .arg(dir)
        .output()
        .expect("runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn validate_reports_route_status_and_the_apis_rules() {
    let dir = temp_dir("gwapi-validate");
    // A Gateway port of 0 is refused by the API's rules; the status test uses 8080.
    std::fs::write(dir.join("a.yaml"), DOCS.replace("port: 0", "port: 8080")).unwrap();
    let (ok, text) = validate(&dir);
    assert!(ok, "warnings only:\n{text}");
    for want in [
        "HTTPRoute/default/missing-backend: spec.rules[0].backendRefs[0]: route status for parent Gateway default/gw: ResolvedRefs=False, reason BackendNotFound",
        "HTTPRoute/default/lost: spec.parentRefs[0]: route status for parent Gateway default/no-such-gateway: Accepted=False, reason NoMatchingParent",
        "HTTPRoute: 3 (2 of 3 parents accepted)",
        "Gateway (gateway.networking.k8s.io): 1 (1 listeners)",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    std::fs::write(
        dir.join("b.yaml"),
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: bad}\nspec:\n  rules:\n  - matches: [{path: {type: PathPrefix, value: nope}}]\n",
    )
    .unwrap();
    let (ok, text) = validate(&dir);
    assert!(!ok, "{text}");
    assert!(
        text.contains("HTTPRoute/default/bad: spec.rules[0].matches[0].path.value: value must be an absolute path"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_bookinfo_example_validates_clean() {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(env!("CARGO_BIN_EXE_meshproxy"))
        .args(["validate", "-c"])
        .arg(here.join("../examples/bookinfo/services.yaml"))
        .arg("-c")
        .arg(here.join("../examples/gateway-api"))
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert_eq!(text.lines().next(), Some("ok"), "{text}");
    assert!(
        text.contains("HTTPRoute: 2 (2 of 2 parents accepted)"),
        "{text}"
    );
}

#[test]
fn config_dump_lists_route_status_and_generated_documents() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let proxy = binary::run(&DOCS.replace("port: 0", &format!("port: {port}")), &[]);
    let dump = config_dump(proxy.addr("admin"));
    let body = dump.split("\r\n\r\n").nth(1).unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {dump}"));
    let status = v["gateway_api_status"]
        .as_array()
        .expect("gateway_api_status");
    let reasons: Vec<(String, String, String)> = status
        .iter()
        .map(|s| {
            (
                s["route"].as_str().unwrap_or("").to_string(),
                s["accepted"]["reason"].as_str().unwrap_or("").to_string(),
                s["resolved_refs"]["reason"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    assert!(
        reasons.contains(&(
            "HTTPRoute/default/good".into(),
            "Accepted".into(),
            "ResolvedRefs".into()
        )),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&(
            "HTTPRoute/default/missing-backend".into(),
            "Accepted".into(),
            "BackendNotFound".into()
        )),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&(
            "HTTPRoute/default/lost".into(),
            "NoMatchingParent".into(),
            "ResolvedRefs".into()
        )),
        "{reasons:?}"
    );
    let generated = v["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter(|r| {
            r["document"]["metadata"]["annotations"]["meshproxy.io/gateway-api-source"].is_string()
        })
        .count();
    assert_eq!(
        generated, 3,
        "one Istio Gateway and two VirtualServices (two hostnames): {body}"
    );
}

/// `GET /config_dump` from the admin port, the whole response as text.
fn config_dump(admin: std::net::SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(admin).expect("admin answers");
    conn.write_all(b"GET /config_dump HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut response = String::new();
    conn.read_to_string(&mut response).expect("response");
    response
}
