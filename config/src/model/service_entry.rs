//! `ServiceEntry` (networking.istio.io): the service registry in file mode — hosts, virtual
//! addresses, ports and endpoints with labels. Follows Istio's `service_entry.proto` and
//! `workload_entry.proto`.

use super::common::NetworkingWorkloadSelector;
use super::map::Map;
use serde::Deserialize;

/// `ServiceEntry.spec`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceEntry {
    /// Host names of the service (required).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Virtual IPs/CIDRs of the service.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Service ports.
    #[serde(default)]
    pub ports: Vec<ServicePort>,
    /// Inside or outside the mesh.
    #[serde(default)]
    pub location: Option<Location>,
    /// How endpoints are found (default NONE).
    #[serde(default)]
    pub resolution: Option<Resolution>,
    /// Endpoints.
    #[serde(default)]
    pub endpoints: Vec<WorkloadEntry>,
    /// Select WorkloadEntries/pods (needs a registry; not available in file mode).
    #[serde(default, alias = "workload_selector")]
    pub workload_selector: Option<NetworkingWorkloadSelector>,
    /// Namespaces this entry is visible to.
    #[serde(default, alias = "export_to")]
    pub export_to: Vec<String>,
    /// SANs the endpoints' certificates must carry.
    #[serde(default, alias = "subject_alt_names")]
    pub subject_alt_names: Vec<String>,
}

/// `ServicePort`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServicePort {
    /// Port number (required, 1..=65535).
    #[serde(default)]
    pub number: u32,
    /// Protocol: HTTP, HTTPS, GRPC, HTTP2, MONGO, TCP, TLS...
    #[serde(default)]
    pub protocol: String,
    /// Port name (required).
    #[serde(default)]
    pub name: String,
    /// Endpoint port when the endpoint does not name one (default: `number`).
    #[serde(default, alias = "target_port")]
    pub target_port: Option<u32>,
}

/// `ServiceEntry.Location`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Location {
    /// Outside the mesh (default).
    MeshExternal,
    /// Part of the mesh.
    MeshInternal,
}

/// `ServiceEntry.Resolution`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Resolution {
    /// Forward to the address the client connected to.
    None,
    /// Endpoints are IP addresses.
    Static,
    /// Endpoints (or hosts) are resolved through DNS, all addresses used.
    Dns,
    /// DNS, one address at a time.
    DnsRoundRobin,
    /// DNS per request host (wildcard hosts only).
    DynamicDns,
}

/// `WorkloadEntry`, used as a ServiceEntry endpoint.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadEntry {
    /// IP, host name, or `unix://` path.
    #[serde(default)]
    pub address: String,
    /// Port name → endpoint port.
    #[serde(default)]
    pub ports: Map<String, u32>,
    /// Endpoint labels (what subsets select).
    #[serde(default)]
    pub labels: Map<String, String>,
    /// Network name.
    #[serde(default)]
    pub network: String,
    /// Locality `region/zone/subzone`.
    #[serde(default)]
    pub locality: String,
    /// Load-balancing weight.
    #[serde(default)]
    pub weight: Option<u32>,
    /// Service account of the endpoint.
    #[serde(default, alias = "service_account")]
    pub service_account: String,
}
