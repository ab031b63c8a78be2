//! A tracing provider of `Proxy.spec.extensionProviders` as the exporter uses it: where
//! spans go (the collector's service resolved through the registry, so a ServiceEntry can
//! point it anywhere), in which protocol, and which trace headers the proxy reads and
//! writes (docs/telemetry.md).

use super::cluster::EndpointAddress;
use super::registry::Registry;
use crate::model::extension_provider::{ExtensionProvider, HeaderValueSource};
use http::{HeaderName, HeaderValue};
use std::net::SocketAddr;
use std::time::Duration;

/// Istio: `maxTagLength` defaults to 256.
pub const DEFAULT_MAX_TAG_LENGTH: usize = 256;
/// Istio: the Zipkin provider's `timeout` defaults to 5s; OTLP's exporters use the same.
pub const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// How spans are sent.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ExportProtocol {
    /// OTLP over gRPC (`opentelemetry` without `http`).
    OtlpGrpc,
    /// OTLP over HTTP with a protobuf body, to `path`.
    OtlpHttp {
        /// Request path (OTLP's `/v1/traces` by default).
        path: String,
    },
    /// Zipkin v2 JSON, to `path`.
    Zipkin {
        /// Request path (`/api/v2/spans` by default).
        path: String,
    },
}

/// Which trace context headers are read from requests and written upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Propagation {
    /// W3C `traceparent` / `tracestate` (the OpenTelemetry provider).
    W3c,
    /// B3 (`x-b3-*` or the single `b3` header; the Zipkin provider).
    B3,
    /// Both (Zipkin with `USE_B3_WITH_W3C_PROPAGATION`).
    B3AndW3c,
}

impl Propagation {
    /// B3 headers are read and written.
    pub fn b3(self) -> bool {
        matches!(self, Propagation::B3 | Propagation::B3AndW3c)
    }

    /// W3C headers are read and written.
    pub fn w3c(self) -> bool {
        matches!(self, Propagation::W3c | Propagation::B3AndW3c)
    }
}

/// A compiled tracing provider.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TraceProvider {
    /// Its name in `extensionProviders`.
    pub name: String,
    /// Protocol.
    pub protocol: ExportProtocol,
    /// Trace headers.
    pub propagation: Propagation,
    /// The collector's host (for `Host`/`:authority`, and DNS when it has no registry
    /// address).
    pub host: String,
    /// The collector's port.
    pub port: u16,
    /// Addresses of the collector from the registry (empty: resolve `host` by DNS).
    pub addresses: Vec<SocketAddr>,
    /// Longest tag value sent.
    pub max_tag_length: usize,
    /// Export request timeout.
    pub timeout: Duration,
    /// Extra headers on export requests.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Zipkin `enable64bitTraceId`: new traces get 64-bit ids.
    pub trace_id_64: bool,
}

impl TraceProvider {
    /// The tracing provider `p` describes, if it is one (`opentelemetry` or `zipkin`);
    /// `Err` says why a provider that is one cannot be used.
    pub fn compile(
        p: &ExtensionProvider,
        registry: &Registry,
    ) -> Option<Result<TraceProvider, String>> {
        if let Some(o) = &p.opentelemetry {
            let (protocol, timeout, headers) = match &o.http {
                Some(h) => (
                    ExportProtocol::OtlpHttp {
                        path: h.path.clone().unwrap_or_else(|| "/v1/traces".into()),
                    },
                    h.timeout,
                    h.headers.as_deref(),
                ),
                None => {
                    let g = o.grpc.as_ref();
                    (
                        ExportProtocol::OtlpGrpc,
                        g.and_then(|g| g.timeout),
                        g.and_then(|g| g.initial_metadata.as_deref()),
                    )
                }
            };
            let base = Base {
                name: &p.name,
                service: &o.service,
                port: o.port,
                max_tag_length: o.max_tag_length,
            };
            return Some(base.build(registry, protocol, Propagation::W3c, |t| {
                t.timeout = timeout.map_or(DEFAULT_EXPORT_TIMEOUT, |d| d.to_std());
                t.headers = header_list(headers.unwrap_or_default());
            }));
        }
        let z = p.zipkin.as_ref()?;
        let propagation = match z.trace_context_option.as_deref() {
            Some("USE_B3_WITH_W3C_PROPAGATION") => Propagation::B3AndW3c,
            _ => Propagation::B3,
        };
        let protocol = ExportProtocol::Zipkin {
            path: z.path.clone().unwrap_or_else(|| "/api/v2/spans".into()),
        };
        let base = Base {
            name: &p.name,
            service: &z.service,
            port: z.port,
            max_tag_length: z.max_tag_length,
        };
        Some(base.build(registry, protocol, propagation, |t| {
            t.timeout = z.timeout.map_or(DEFAULT_EXPORT_TIMEOUT, |d| d.to_std());
            t.headers = header_list(z.headers.as_deref().unwrap_or_default());
            t.trace_id_64 = z.enable_64bit_trace_id.unwrap_or(false);
        }))
    }
}

/// What both provider types have.
struct Base<'a> {
    name: &'a str,
    service: &'a str,
    port: i64,
    max_tag_length: Option<i64>,
}

impl Base<'_> {
    fn build(
        &self,
        registry: &Registry,
        protocol: ExportProtocol,
        propagation: Propagation,
        rest: impl FnOnce(&mut TraceProvider),
    ) -> Result<TraceProvider, String> {
        let port = u16::try_from(self.port)
            .map_err(|_| format!("provider {:?}: port out of range", self.name))?;
        // Istio: `service` is `[namespace/]host`.
        let host = self
            .service
            .rsplit_once('/')
            .map_or(self.service, |(_, h)| h)
            .to_ascii_lowercase();
        let mut t = TraceProvider {
            name: self.name.to_string(),
            protocol,
            propagation,
            addresses: addresses(registry, &host, port),
            host,
            port,
            max_tag_length: self
                .max_tag_length
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| *n > 0)
                .unwrap_or(DEFAULT_MAX_TAG_LENGTH),
            timeout: DEFAULT_EXPORT_TIMEOUT,
            headers: Vec::new(),
            trace_id_64: false,
        };
        rest(&mut t);
        Ok(t)
    }
}

/// The collector's addresses from the registry: the static endpoints of the service
/// `host` on `port` (a STRICT_DNS or unknown host is resolved by the exporter).
fn addresses(registry: &Registry, host: &str, port: u16) -> Vec<SocketAddr> {
    let Some(svc) = registry.resolve(host).map(|i| &registry.services[i]) else {
        return Vec::new();
    };
    let Some(sp) = svc.port(port) else {
        return Vec::new();
    };
    svc.endpoints_for(sp)
        .into_iter()
        .filter_map(|e| match e.address {
            EndpointAddress::Socket(a) => Some(a),
            _ => None,
        })
        .collect()
}

/// The headers a provider sends; a variable that is unset, or a value that is not a
/// valid header, is left out (Istio reads `envName` from the proxy's environment).
fn header_list(list: &[HeaderValueSource]) -> Vec<(HeaderName, HeaderValue)> {
    list.iter()
        .filter_map(|h| {
            let value = match (&h.value, &h.env_name) {
                (Some(v), _) => v.clone(),
                (None, Some(env)) => std::env::var(env).ok()?,
                (None, None) => return None,
            };
            Some((
                HeaderName::from_bytes(h.name.as_bytes()).ok()?,
                HeaderValue::from_str(&value).ok()?,
            ))
        })
        .collect()
}
