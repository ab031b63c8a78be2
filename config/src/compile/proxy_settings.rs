//! The effective `Proxy` settings: the document's values with SPEC §2's defaults filled in.

use crate::model::proxy::{Direction, ListenerProtocol, OutboundMode, Proxy};
use crate::model::{Resource, DEFAULT_NAMESPACE};
use crate::paths::resolve_path;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

/// Default admin address (SPEC §2).
pub const DEFAULT_ADMIN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 15000);
/// Default outbound listener address (SPEC §2).
pub const DEFAULT_OUTBOUND: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 15001);

/// The mesh certificate files of this proxy.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IdentityFiles {
    /// Certificate chain.
    pub certificate: PathBuf,
    /// Private key.
    pub private_key: PathBuf,
    /// Mesh CA bundle.
    pub ca_certificates: PathBuf,
}

/// A listener as the `Proxy` document declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeclaredListener {
    /// Name.
    pub name: String,
    /// Bind address.
    pub address: SocketAddr,
    /// Direction.
    pub direction: Direction,
    /// Protocol handling.
    pub protocol: ListenerProtocol,
    /// Local app (INBOUND).
    pub forward_to: Option<SocketAddr>,
}

/// Who this proxy is and how it is set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxySettings {
    /// Workload name (`metadata.name`).
    pub name: String,
    /// Workload namespace.
    pub namespace: String,
    /// Workload labels.
    pub labels: BTreeMap<String, String>,
    /// Service account.
    pub service_account: Option<String>,
    /// Admin server address.
    pub admin_address: SocketAddr,
    /// Declared listeners.
    pub listeners: Vec<DeclaredListener>,
    /// Mesh identity files.
    pub identity: Option<IdentityFiles>,
    /// Outbound traffic policy.
    pub outbound_mode: OutboundMode,
    /// Bind address of Gateway servers.
    pub gateway_address: IpAddr,
    /// SPIFFE trust domain.
    pub trust_domain: String,
    /// Namespace of mesh-wide security policies.
    pub root_namespace: String,
    /// True when a `Proxy` document was given (false: the built-in local default).
    pub declared: bool,
}

impl ProxySettings {
    /// Settings from the first `Proxy` document, or the local default (SPEC §2: the example
    /// minus `identity` and the inbound listener).
    pub fn from_resources(resources: &[Resource]) -> Self {
        let doc = resources.iter().find_map(|r| r.as_proxy().map(|p| (r, p)));
        match doc {
            Some((r, p)) => Self::from_doc(r, p),
            None => Self::local_default(),
        }
    }

    /// The built-in default used when no `Proxy` document is given.
    pub fn local_default() -> Self {
        ProxySettings {
            name: "meshproxy".into(),
            namespace: DEFAULT_NAMESPACE.into(),
            labels: BTreeMap::new(),
            service_account: None,
            admin_address: DEFAULT_ADMIN,
            listeners: vec![DeclaredListener {
                name: "outbound".into(),
                address: DEFAULT_OUTBOUND,
                direction: Direction::Outbound,
                protocol: ListenerProtocol::Http,
                forward_to: None,
            }],
            identity: None,
            outbound_mode: OutboundMode::RegistryOnly,
            gateway_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            trust_domain: crate::host::DEFAULT_DOMAIN_SUFFIX.into(),
            root_namespace: crate::validate::DEFAULT_ROOT_NAMESPACE.into(),
            declared: false,
        }
    }

    fn from_doc(r: &Resource, p: &Proxy) -> Self {
        let d = Self::local_default();
        let file = r.origin.file.as_path();
        let listeners = match &p.listeners {
            None => d.listeners.clone(),
            Some(ls) => ls
                .iter()
                .filter_map(|l| {
                    Some(DeclaredListener {
                        name: l.name.clone(),
                        address: l.address.parse().ok()?,
                        direction: l.direction?,
                        protocol: l.protocol.unwrap_or(ListenerProtocol::Http),
                        forward_to: l.forward_to.as_ref().and_then(|f| f.parse().ok()),
                    })
                })
                .collect(),
        };
        ProxySettings {
            name: if r.name.is_empty() {
                d.name
            } else {
                r.name.clone()
            },
            namespace: r.namespace.clone(),
            labels: p
                .workload
                .as_ref()
                .map(|w| w.labels.clone())
                .unwrap_or_default(),
            service_account: p.workload.as_ref().and_then(|w| w.service_account.clone()),
            admin_address: p
                .admin
                .as_ref()
                .and_then(|a| a.address.as_ref())
                .and_then(|a| a.parse().ok())
                .unwrap_or(d.admin_address),
            listeners,
            identity: p.identity.as_ref().map(|i| IdentityFiles {
                certificate: resolve_path(file, &i.certificate),
                private_key: resolve_path(file, &i.private_key),
                ca_certificates: resolve_path(file, &i.ca_certificates),
            }),
            outbound_mode: p
                .outbound_traffic_policy
                .as_ref()
                .and_then(|o| o.mode)
                .unwrap_or(d.outbound_mode),
            gateway_address: p
                .gateway_address
                .as_ref()
                .and_then(|g| g.parse().ok())
                .unwrap_or(d.gateway_address),
            trust_domain: p.trust_domain.clone().unwrap_or(d.trust_domain),
            root_namespace: p.root_namespace.clone().unwrap_or(d.root_namespace),
            declared: true,
        }
    }

    /// This workload's SPIFFE identity, `spiffe://<trust-domain>/ns/<ns>/sa/<sa>`.
    pub fn spiffe_id(&self) -> String {
        format!(
            "spiffe://{}/ns/{}/sa/{}",
            self.trust_domain,
            self.namespace,
            self.service_account.as_deref().unwrap_or("default")
        )
    }

    /// True when every `selector` label is carried by this workload (an empty selector
    /// selects every workload).
    pub fn selected_by(&self, selector: &BTreeMap<String, String>) -> bool {
        selector.iter().all(|(k, v)| self.labels.get(k) == Some(v))
    }

    /// Istio `exportTo` visibility of a resource in `ns` for this proxy's namespace.
    pub fn sees(&self, ns: &str, export_to: &[String]) -> bool {
        if export_to.is_empty() {
            return true;
        }
        export_to.iter().any(|e| match e.as_str() {
            "*" => true,
            "." => ns == self.namespace,
            "~" => false,
            other => other == self.namespace,
        })
    }
}
