//! `meshproxy validate`: load, validate and compile exactly as `run` would, then report.
//! One difference: a certificate, key or CA file that cannot be read is a warning here and
//! an error for `run` (the config is often validated away from the pod that mounts them).

use meshproxy_config::compile::Snapshot;
use meshproxy_config::model::{Kind, Resource, Spec};
use meshproxy_config::validate::MissingFiles;
use std::io::Write;
use std::path::PathBuf;

/// Runs the command; returns the process exit code (0 valid, 1 invalid).
pub fn run(paths: &[PathBuf], out: &mut dyn Write) -> i32 {
    // Files named in documents may only exist where the proxy runs: warn, do not refuse.
    let (snap, docs) = meshproxy_config::compile::load_documents(paths, MissingFiles::Warn);
    match snap {
        Ok(snap) => {
            for w in snap.warnings.warnings() {
                let _ = writeln!(out, "{w}");
            }
            let _ = writeln!(out, "ok");
            for line in summary(&snap, &docs) {
                let _ = writeln!(out, "{line}");
            }
            0
        }
        Err(diags) => {
            for d in diags.warnings() {
                let _ = writeln!(out, "{d}");
            }
            for d in diags.errors() {
                let _ = writeln!(out, "{d}");
            }
            let n = diags.errors().count();
            let _ = writeln!(out, "invalid: {n} error{}", if n == 1 { "" } else { "s" });
            1
        }
    }
}

/// The summary of a Gateway API kind: listeners, or routes' parents accepted.
fn gateway_api_detail(snap: &Snapshot, kind: Kind, docs: &[&Spec]) -> String {
    use meshproxy_config::model::GatewayApiSpec;
    match kind {
        Kind::KubeGateway => {
            let listeners: usize = docs
                .iter()
                .map(|d| match d {
                    Spec::GatewayApi(g) => match g.as_ref() {
                        GatewayApiSpec::Gateway(g) => g.listeners.len(),
                        _ => 0,
                    },
                    _ => 0,
                })
                .sum();
            format!("{listeners} listeners")
        }
        Kind::ReferenceGrant => "validated".to_string(),
        _ => {
            let prefix = format!("{kind}/");
            let of_kind = || {
                snap.gateway_api
                    .iter()
                    .filter(|s| s.route.starts_with(&prefix))
            };
            let accepted = of_kind().filter(|s| s.accepted.status).count();
            format!("{accepted} of {} parents accepted", of_kind().count())
        }
    }
}

/// One line per kind present in `resources` (the documents `snap` was compiled from):
/// the count and what it holds.
pub fn summary(snap: &Snapshot, resources: &[Resource]) -> Vec<String> {
    let mut lines = Vec::new();
    for kind in Kind::ALL {
        let docs: Vec<&Spec> = resources
            .iter()
            .filter(|r| r.kind == kind)
            .map(|r| &r.spec)
            .collect();
        if docs.is_empty() {
            continue;
        }
        let n = docs.len();
        let detail = match kind {
            Kind::VirtualService => {
                let (mut http, mut tcp, mut tls) = (0, 0, 0);
                for d in &docs {
                    if let Spec::VirtualService(v) = d {
                        http += v.http.len();
                        tcp += v.tcp.len();
                        tls += v.tls.len();
                    }
                }
                format!("{http} http, {tcp} tcp, {tls} tls rules")
            }
            Kind::DestinationRule => {
                let subsets: usize = docs
                    .iter()
                    .map(|d| match d {
                        Spec::DestinationRule(x) => x.subsets.len(),
                        _ => 0,
                    })
                    .sum();
                format!(
                    "{subsets} subsets, {} clusters compiled",
                    snap.clusters.len()
                )
            }
            Kind::ServiceEntry => {
                let eps: usize = snap
                    .registry
                    .services
                    .iter()
                    .map(|s| s.endpoints.len())
                    .sum();
                format!("{} services, {eps} endpoints", snap.registry.services.len())
            }
            Kind::Gateway => {
                let servers: usize = docs
                    .iter()
                    .map(|d| match d {
                        Spec::Gateway(g) => g.servers.len(),
                        _ => 0,
                    })
                    .sum();
                format!("{servers} servers")
            }
            Kind::PeerAuthentication
            | Kind::AuthorizationPolicy
            | Kind::Telemetry
            | Kind::Sidecar
            | Kind::RequestAuthentication
            | Kind::RateLimitPolicy => "validated".to_string(),
            Kind::Rollout => super::rollout::summary(&docs),
            Kind::WorkloadEntry => {
                let selected = resources
                    .iter()
                    .filter(|r| r.kind == Kind::WorkloadEntry)
                    .filter(|we| {
                        snap.registry.services.iter().any(|s| {
                            s.namespace == we.namespace
                                && s.endpoints.iter().any(|e| {
                                    we.as_workload_entry()
                                        .is_some_and(|w| w.address == e.address)
                                })
                        })
                    })
                    .count();
                format!("{selected} selected by a ServiceEntry")
            }
            Kind::Proxy => format!(
                "{}/{}, {} listeners",
                snap.proxy.namespace,
                snap.proxy.name,
                snap.listeners.len()
            ),
            _ => gateway_api_detail(snap, kind, &docs),
        };
        let label = match kind {
            Kind::KubeGateway => "Gateway (gateway.networking.k8s.io)".to_string(),
            k => k.to_string(),
        };
        lines.push(format!("{label}: {n} ({detail})"));
    }
    lines
}
