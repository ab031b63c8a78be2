//! The steps of routing a request that come before any route rule is tried: the listener's
//! route table, the port the request is for, and a Gateway's `httpsRedirect`. Pure
//! functions, so the data path and `meshproxy explain` / `meshproxy test` take the very
//! same decisions.

use super::listener::{Listener, ListenerRole};
use super::route_table::RouteTable;
use super::snapshot::Snapshot;

/// The route table an OUTBOUND or Gateway listener routes with (`None`: every request on
/// it is `404 NR`).
pub fn route_table<'a>(snap: &'a Snapshot, listener: &Listener) -> Option<&'a RouteTable> {
    listener.route_table.and_then(|i| snap.route_tables.get(i))
}

/// The port a request is for: the one its authority names; else, on a Gateway, the port
/// the request arrived on (Envoy matches a gateway's virtual hosts per listener port); else
/// the scheme's default (a sidecar's outbound listener sees the application's `Host`).
pub fn request_port(
    authority_port: Option<u16>,
    listener: &Listener,
    local_port: u16,
    scheme: &str,
) -> u16 {
    authority_port.unwrap_or(match listener.role {
        ListenerRole::Gateway { .. } => local_port,
        _ if scheme == "https" => 443,
        _ => 80,
    })
}

/// A Gateway port whose every server sets `tls.httpsRedirect` answers each plain request
/// with `301` to the same host and path over https (Istio: `require_tls: ALL` on the
/// virtual host). Returns the `Location`, or `None` when the request is routed.
pub fn https_redirect(listener: &Listener, host: &str, path_and_query: &str) -> Option<String> {
    let ListenerRole::Gateway { servers } = &listener.role else {
        return None;
    };
    (!servers.is_empty() && servers.iter().all(|s| s.https_redirect))
        .then(|| format!("https://{host}{path_and_query}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::listener::GatewayServer;
    use crate::model::proxy::ListenerProtocol;

    fn listener(role: ListenerRole) -> Listener {
        Listener {
            name: "l".into(),
            address: "127.0.0.1:8080".parse().unwrap(),
            role,
            protocol: ListenerProtocol::Http,
            route_table: None,
            tcp_routes: None,
        }
    }

    fn server(https_redirect: bool) -> GatewayServer {
        GatewayServer {
            gateway: "default/gw".into(),
            name: String::new(),
            protocol: "HTTP".into(),
            hosts: vec!["*".into()],
            https_redirect,
            tls: None,
        }
    }

    #[test]
    fn port_from_authority_listener_or_scheme() {
        let out = listener(ListenerRole::Outbound);
        assert_eq!(request_port(Some(9080), &out, 15001, "http"), 9080);
        assert_eq!(request_port(None, &out, 15001, "http"), 80);
        assert_eq!(request_port(None, &out, 15001, "https"), 443);
        let gw = listener(ListenerRole::Gateway {
            servers: vec![server(false)],
        });
        assert_eq!(request_port(None, &gw, 8080, "http"), 8080);
    }

    #[test]
    fn https_redirect_only_when_every_server_asks() {
        let all = listener(ListenerRole::Gateway {
            servers: vec![server(true)],
        });
        assert_eq!(
            https_redirect(&all, "shop.example", "/cart?id=1").as_deref(),
            Some("https://shop.example/cart?id=1")
        );
        let mixed = listener(ListenerRole::Gateway {
            servers: vec![server(true), server(false)],
        });
        assert_eq!(https_redirect(&mixed, "shop.example", "/"), None);
        assert_eq!(
            https_redirect(&listener(ListenerRole::Outbound), "a", "/"),
            None
        );
    }
}
