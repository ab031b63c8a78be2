//! The documents and processes the rate-limit tests start from: a Proxy with an admin
//! port and an OUTBOUND listener, the `ok` Service, a RateLimitPolicy, and
//! `meshproxy run` without the access log.

use crate::{binary, common};
use std::net::SocketAddr;

/// The Proxy `name` (workload `app: name`) with an admin port and an OUTBOUND listener;
/// `spec_extra` adds lines to its spec (at two spaces).
pub fn outbound_proxy(name: &str, spec_extra: &str) -> String {
    format!(
        "apiVersion: meshproxy.io/v1alpha1
kind: Proxy
metadata: {{name: {name}, namespace: default}}
spec:
  admin: {{address: \"127.0.0.1:0\"}}
  workload: {{labels: {{app: {name}}}}}
  listeners:
  - {{name: outbound, address: \"127.0.0.1:0\", direction: OUTBOUND}}
{spec_extra}---
"
    )
}

/// The `ok` Service, backed by the upstream on `port`.
pub fn ok_service(port: u16) -> String {
    common::service("ok", &[(port, "version: v1")])
}

/// The RateLimitPolicy `default/name` with `spec` (lines at two spaces).
pub fn policy(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: meshproxy.io/v1alpha1
kind: RateLimitPolicy
metadata: {{name: {name}, namespace: default}}
spec:
{spec}"
    )
}

/// `meshproxy run` on `yaml` with `workers` workers and the access log off.
pub fn run_quiet(yaml: &str, workers: &str) -> binary::Running {
    binary::run(yaml, &["--workers", workers, "--access-log", "off"])
}

/// A counter of rule `rule` of `policy` (`namespace/name`): `meshproxy_ratelimit_<name>_total`.
pub async fn rule_counter(admin: SocketAddr, name: &str, policy: &str, rule: usize) -> u64 {
    let series = format!("meshproxy_ratelimit_{name}_total{{policy=\"{policy}\",rule=\"{rule}\"}}");
    super::metric(admin, &series).await
}
