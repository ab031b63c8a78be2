//! Where a `jwksUri` is fetched from under the config in force: the registry's endpoints
//! for the URI's host and port (a ServiceEntry can point the host anywhere), else the
//! host through DNS; trust from a DestinationRule `SIMPLE`/`MUTUAL` TLS block for that
//! host (its `caCertificates`, `subjectAltNames`, `sni`), else the system roots.

use super::fetch::{Dial, Target};
use meshproxy_certs::ClientTlsOptions;
use meshproxy_config::compile::cluster::{ClientTls, Cluster, ClusterKey, EndpointAddress};
use meshproxy_config::compile::jwt::RemoteJwks;
use meshproxy_config::compile::Snapshot;
use meshproxy_config::model::destination_rule::ClientTlsMode;

/// The fetch target of `r` under `snap`.
pub fn target(snap: &Snapshot, r: &RemoteJwks) -> Target {
    let key = ClusterKey {
        service: r.host.as_str().into(),
        port: r.port,
        subset: None,
    };
    let cluster = snap.find_cluster(&key).map(|id| snap.cluster(id));
    let dial = cluster
        .and_then(dial)
        .unwrap_or_else(|| Dial::Name(r.host.clone(), r.port));
    let dr_tls = cluster
        .and_then(|c| c.tls.as_ref())
        .filter(|t| matches!(t.mode, ClientTlsMode::Simple | ClientTlsMode::Mutual));
    Target {
        remote: r.clone(),
        dial,
        tls: r.https.then(|| client_tls(dr_tls)),
        server_name: dr_tls
            .and_then(|t| t.sni.clone())
            .unwrap_or_else(|| r.host.clone()),
    }
}

/// The cluster's endpoints: addresses, or the name of a DNS endpoint.
fn dial(c: &Cluster) -> Option<Dial> {
    let mut addrs = Vec::new();
    for e in &c.endpoints {
        match &e.address {
            EndpointAddress::Socket(a) => addrs.push(*a),
            EndpointAddress::Dns(n, p) | EndpointAddress::LogicalDns(n, p) => {
                return Some(Dial::Name(n.clone(), *p))
            }
            EndpointAddress::Unix(_) => {}
        }
    }
    (!addrs.is_empty()).then_some(Dial::Addrs(addrs))
}

fn client_tls(dr: Option<&ClientTls>) -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
    let o = match dr {
        Some(t) => ClientTlsOptions {
            ca: t.ca_certificates.clone(),
            client_cert: t.client_certificate.clone(),
            client_key: t.private_key.clone(),
            subject_alt_names: t.subject_alt_names.clone(),
            insecure_skip_verify: t.insecure_skip_verify,
            alpn: vec![b"http/1.1".to_vec()],
        },
        None => ClientTlsOptions {
            alpn: vec![b"http/1.1".to_vec()],
            ..Default::default()
        },
    };
    meshproxy_certs::client_config(&o).map_err(|e| format!("TLS settings: {e}"))
}
