//! What the Gateway API tests share: an in-process gateway proxy serving one Gateway,
//! its listeners by port, and the Services the routes point at.
#![allow(dead_code)]

use crate::common::{service, Upstream};
use meshproxy::access_log::AccessLog;
use meshproxy::server::{Options, Server};
use meshproxy_config::gateway_api::ParentStatus;
use std::net::SocketAddr;

/// A gateway proxy for Gateway `default/<gateway>` (`listeners`: YAML list items at
/// four spaces) with the other documents `rest`, and the routes' status. The proxy
/// selects the Gateway by Istio's `gateway.networking.k8s.io/gateway-name` label.
pub fn start_gateway(gateway: &str, listeners: &str, rest: &str) -> (Server, Vec<ParentStatus>) {
    let yaml = format!(
        "apiVersion: meshproxy.io/v1alpha1
kind: Proxy
metadata: {{name: {gateway}-istio, namespace: default}}
spec:
  workload: {{labels: {{gateway.networking.k8s.io/gateway-name: {gateway}}}}}
  gatewayAddress: 127.0.0.1
  listeners: []
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: {gateway}, namespace: default}}
spec:
  gatewayClassName: istio
  listeners:
{listeners}---
{rest}"
    );
    let snap = meshproxy_config::compile::load_str("t.yaml", &yaml)
        .unwrap_or_else(|d| panic!("config refused:\n{d}"));
    let status = snap.gateway_api.clone();
    let s = Server::start(snap, Options::default(), AccessLog::disabled()).expect("starts");
    (s, status)
}

/// The address of the Gateway listener on `port`.
pub fn listener(s: &Server, port: u16) -> SocketAddr {
    s.addrs()
        .iter()
        .find(|(n, _)| n.contains(&port.to_string()))
        .map(|(_, a)| *a)
        .unwrap_or_else(|| panic!("no listener on {port}: {:?}", s.addrs()))
}

/// A Service `name` in `ns` backed by `up` (port 80).
pub fn svc(name: &str, ns: &str, up: &Upstream) -> String {
    service(
        &format!("{name}.{ns}.svc.cluster.local"),
        &[(up.addr.port(), "app: x")],
    )
}
