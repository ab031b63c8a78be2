//! A request on an INBOUND listener: AuthorizationPolicy's decision, taken with the data
//! path's own request facts ([`crate::http::inbound::authz_request`]) and evaluation
//! ([`meshproxy_config::compile::authz::Authz::evaluate`]), then the local application.

use super::action;
use super::decision::{Authorization, Decision, Outcome};
use super::request::{Parsed, RequestSpec};
use crate::conn_info::ConnInfo;
use crate::http::inbound::authz_request;
use crate::policy::headers as hdr;
use meshproxy_config::compile::authz::Decision as Verdict;
use meshproxy_config::compile::Snapshot;
use std::net::SocketAddr;
use std::sync::Arc;

/// Fills in the authorization and outcome of `d`, a request on the INBOUND listener
/// forwarding to `forward_to`.
pub fn decide(
    snap: &Snapshot,
    d: &mut Decision,
    req: &Parsed,
    spec: &RequestSpec,
    forward_to: SocketAddr,
) -> Result<(), String> {
    let source = req.peer;
    let principal = spec.principal.as_deref().map(|p| {
        if p.starts_with("spiffe://") {
            p.to_string()
        } else {
            format!("spiffe://{p}")
        }
    });
    let peer = SocketAddr::new(source, 0);
    let conn = ConnInfo {
        listener: Arc::from(d.listener.name.as_str()),
        local: d.listener.address.parse().unwrap_or(forward_to),
        peer,
        peer_ip: hdr::ip_value(source),
        scheme: req.scheme,
        original_dst: None,
        kill: tokio::sync::watch::channel(false).1,
        peer_identity: principal.as_deref().map(Arc::from),
        peer_labels: None,
        xfcc: None,
        slots: None,
    };
    let mut builder = http::Request::builder()
        .method(req.method.clone())
        .uri(req.path_and_query());
    if let Some(h) = builder.headers_mut() {
        h.clone_from(&req.headers);
    }
    let parts = builder.body(()).map_err(|e| e.to_string())?.into_parts().0;
    let path = crate::policy::path::normalize(&req.path);
    let facts = authz_request(&conn, &parts, &req.authority, &path, forward_to.port());
    let (verdict, audit) = snap.authz.evaluate(&facts);
    let cluster = format!("inbound|{}||", forward_to.port());
    let (decision, policy, outcome) = match verdict {
        Verdict::Allow => (
            "allow",
            None,
            Outcome {
                kind: "forward",
                status: None,
                flag: None,
                clusters: vec![cluster.clone()],
                location: None,
                summary: format!(
                    "allowed; forwarded to the application at {forward_to} ({cluster})"
                ),
            },
        ),
        Verdict::Deny { policy } => {
            let summary =
                format!("denied by AuthorizationPolicy ({policy}): 403 RBAC: access denied");
            ("deny", Some(policy), action::local(403, None, summary))
        }
    };
    d.authorization = Some(Authorization {
        decision,
        policy,
        audit,
        principal,
        source: source.to_string(),
        no_policies: snap.authz.is_empty(),
    });
    d.outcome = outcome;
    Ok(())
}
