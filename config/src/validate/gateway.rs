//! Gateway rules (istio/istio `ValidateGateway`, `validateServer`, `validateTLSOptions`).

use super::names;
use super::V;
use crate::model::gateway::*;
use std::collections::BTreeSet;

const GATEWAY_PROTOCOLS: &[&str] = &[
    "HTTP", "HTTPS", "GRPC", "GRPC-WEB", "HTTP2", "MONGO", "TCP", "TLS",
];

pub(crate) fn validate(v: &mut V, gw: &Gateway) {
    // Istio: a Gateway's name must be a DNS-1123 label (no dots), stricter than the
    // subdomain rule every kind gets.
    if names::is_dns1123_subdomain(&v.res.name) && !names::is_dns1123_label(&v.res.name) {
        v.err(
            "metadata.name",
            format!(
                "invalid gateway name {:?}: must be a DNS-1123 label (no dots)",
                v.res.name
            ),
        );
    }
    if gw.servers.is_empty() {
        v.err("spec.servers", "gateway must have at least one server");
    }
    v.labels("spec.selector", &gw.selector);
    let mut server_names = BTreeSet::new();
    let mut port_names = BTreeSet::new();
    for (i, s) in gw.servers.iter().enumerate() {
        let p = format!("spec.servers[{i}]");
        server(v, &p, s);
        if !s.name.is_empty() && !server_names.insert(s.name.as_str()) {
            v.err(
                &format!("{p}.name"),
                format!("server name {:?} is not unique", s.name),
            );
        }
        // Istio: port names are unique across all servers of the Gateway.
        if let Some(port) = &s.port {
            if !port_names.insert(port.name.as_str()) {
                v.err(
                    &format!("{p}.port.name"),
                    format!(
                        "port names in servers must be unique: duplicate name {:?}",
                        port.name
                    ),
                );
            }
        }
    }
}

/// Istio `ValidateNamespaceSlashWildcardHostname` for gateways: `[namespace/]dnsName`, the
/// namespace `*`, `.` or a DNS-1123 label; the name `*`, an IP, or a dotted (non-short)
/// DNS name whose only wildcard is a leading `*.`.
fn server_host(v: &mut V, hp: &str, h: &str) {
    let host = match h.split_once('/') {
        Some((ns, host)) => {
            if ns.is_empty() || host.is_empty() {
                v.err(
                    hp,
                    format!("config namespace and dnsName in host {h:?} cannot be empty"),
                );
            }
            if ns != "*" && ns != "." && !names::is_dns1123_label(ns) {
                v.err(
                    hp,
                    format!("invalid namespace {ns:?} in host {h:?}: must be '*', '.' or a namespace name"),
                );
            }
            host
        }
        None => h,
    };
    if host != "*" && !host.contains('.') {
        v.err(
            hp,
            format!("short names (non FQDN) are not allowed: {host:?}"),
        );
    }
    if host.parse::<std::net::IpAddr>().is_err() {
        if let Err(e) = names::check_wildcard_domain(host) {
            v.err(hp, e);
        }
    }
    if host.contains('*') && host != "*" && !host.starts_with("*.") {
        v.err(hp, format!("partial wildcard {host:?} not allowed"));
    }
}

fn server(v: &mut V, p: &str, s: &Server) {
    let uds = s.bind.starts_with("unix://");
    let protocol = s
        .port
        .as_ref()
        .map(|pt| pt.protocol.to_ascii_uppercase())
        .unwrap_or_default();
    match &s.port {
        None => v.err(&format!("{p}.port"), "server config must contain a port"),
        Some(port) => {
            let pp = format!("{p}.port");
            if uds {
                if port.number != 0 {
                    v.err(
                        &format!("{pp}.number"),
                        "port number must be 0 with a unix domain socket bind",
                    );
                }
            } else if let Err(e) = names::check_port(port.number as u64) {
                v.err(&format!("{pp}.number"), e);
            }
            if port.protocol.is_empty() {
                v.err(&format!("{pp}.protocol"), "port protocol is required");
            } else if !GATEWAY_PROTOCOLS.contains(&protocol.as_str()) {
                v.err(
                    &format!("{pp}.protocol"),
                    format!(
                        "invalid protocol {:?} (expected one of {})",
                        port.protocol,
                        GATEWAY_PROTOCOLS.join(", ")
                    ),
                );
            }
            if port.name.is_empty() {
                v.err(&format!("{pp}.name"), "port name must be set");
            }
            if port.target_port.is_some_and(|tp| tp > 0) {
                v.err(
                    &format!("{pp}.targetPort"),
                    "targetPort has no impact on Gateways",
                );
            }
        }
    }
    if s.hosts.is_empty() {
        v.err(
            &format!("{p}.hosts"),
            "server config must contain at least one host",
        );
    }
    for (i, h) in s.hosts.iter().enumerate() {
        server_host(v, &format!("{p}.hosts[{i}]"), h);
    }
    if !s.bind.is_empty() && !uds && s.bind.parse::<std::net::IpAddr>().is_err() {
        v.err(
            &format!("{p}.bind"),
            format!("bind {:?} must be an IP address or unix:// path", s.bind),
        );
    }
    if !s.default_endpoint.is_empty() {
        v.not_enforced(
            &format!("{p}.defaultEndpoint"),
            "Istio does not implement it either",
        );
    }
    let tls_protocol = protocol == "HTTPS" || protocol == "TLS";
    match &s.tls {
        None => {
            if tls_protocol {
                v.err(
                    &format!("{p}.tls"),
                    format!("server must have TLS settings for {protocol} protocol"),
                );
            }
        }
        Some(t) => server_tls(v, &format!("{p}.tls"), t, &protocol),
    }
}

/// A server's `tls` block, given its port's (upper-cased) protocol.
fn server_tls(v: &mut V, p: &str, t: &ServerTlsSettings, protocol: &str) {
    let tls_protocol = protocol == "HTTPS" || protocol == "TLS";
    if !tls_protocol && GATEWAY_PROTOCOLS.contains(&protocol) {
        plain_text_tls(v, p, t, protocol);
    }
    if t.https_redirect && !is_http(protocol) {
        v.warn(
            &format!("{p}.httpsRedirect"),
            "tls.httpsRedirect should only be used with http servers",
        );
    }
    tls(v, p, t);
}

/// Istio `protocol.IsHTTP` for the protocols a Gateway server may name.
fn is_http(protocol: &str) -> bool {
    matches!(protocol, "HTTP" | "HTTP2" | "GRPC" | "GRPC-WEB")
}

/// Istio `validateServer`: a server whose port is neither HTTPS nor TLS may carry a `tls`
/// block only on an HTTP port, in a passthrough mode (the default) and without certificate
/// files: that is what `httpsRedirect` needs.
fn plain_text_tls(v: &mut V, p: &str, t: &ServerTlsSettings, protocol: &str) {
    let passthrough = matches!(
        t.mode.unwrap_or(ServerTlsMode::Passthrough),
        ServerTlsMode::Passthrough | ServerTlsMode::AutoPassthrough
    );
    let files = !t.server_certificate.is_empty()
        || !t.private_key.is_empty()
        || !t.ca_certificates.is_empty();
    if !is_http(protocol) {
        v.err(p, "server cannot have TLS settings for non HTTPS/TLS ports");
    } else if !passthrough || files {
        v.err(
            p,
            "server cannot have TLS settings for plain text HTTP ports (only httpsRedirect)",
        );
    }
}

/// Istio `validateTLSOptions`: one source of server certificates at most. A file pair
/// counts only when both halves are set; a lone file or `caCertificates` is no source.
fn certificate_sources(v: &mut V, p: &str, t: &ServerTlsSettings) {
    let sources = [
        !t.server_certificate.is_empty() && !t.private_key.is_empty(),
        !t.credential_name.is_empty(),
        !t.credential_names.is_empty(),
        !t.tls_certificates.is_empty(),
    ];
    if sources.iter().filter(|s| **s).count() > 1 {
        v.err(
            p,
            "only one of credentialName, credentialNames, serverCertificate/privateKey or tlsCertificates can be set",
        );
    }
}

/// Istio warns, for backwards compatibility, when a mode that does not terminate TLS names
/// certificates: they are ignored (and so not checked on disk either).
fn unused_certificates(v: &mut V, p: &str, t: &ServerTlsSettings, mode: ServerTlsMode) {
    let named = !t.ca_crl.is_empty()
        || !t.server_certificate.is_empty()
        || !t.private_key.is_empty()
        || !t.ca_certificates.is_empty()
        || !t.tls_certificates.is_empty()
        || !t.credential_name.is_empty()
        || !t.credential_names.is_empty();
    if named {
        let name = match mode {
            ServerTlsMode::AutoPassthrough => "AUTO_PASSTHROUGH",
            _ => "PASSTHROUGH",
        };
        v.warn(
            p,
            format!("{name} mode does not use certificates, they will be ignored"),
        );
    }
}

fn tls(v: &mut V, p: &str, t: &ServerTlsSettings) {
    let mode = t.mode.unwrap_or(ServerTlsMode::Passthrough);
    let files = !t.server_certificate.is_empty()
        || !t.private_key.is_empty()
        || !t.ca_certificates.is_empty();
    let has_creds = !t.credential_name.is_empty() || !t.credential_names.is_empty();
    certificate_sources(v, p, t);
    if matches!(
        mode,
        ServerTlsMode::Passthrough | ServerTlsMode::AutoPassthrough
    ) {
        unused_certificates(v, p, t, mode);
    }
    let terminates = termination(v, p, t, mode, has_creds);
    if mode == ServerTlsMode::IstioMutual && (files || has_creds || !t.tls_certificates.is_empty())
    {
        v.err(p, "ISTIO_MUTUAL uses the mesh identity: certificate files and credentials must not be set");
    }
    versions(v, p, t, mode);
    if terminates {
        tls_files(v, p, t);
    }
    not_enforced(v, p, t, mode);
}

/// What a server that terminates TLS needs: its certificates (from one source) and, for
/// the MUTUAL modes, a client CA. True when `mode` terminates TLS.
fn termination(
    v: &mut V,
    p: &str,
    t: &ServerTlsSettings,
    mode: ServerTlsMode,
    has_creds: bool,
) -> bool {
    if t.credential_names.len() > 2 {
        v.err(
            &format!("{p}.credentialNames"),
            "at most 2 credentialNames are allowed",
        );
    }
    if t.tls_certificates.len() > 2 {
        v.err(
            &format!("{p}.tlsCertificates"),
            "at most 2 tlsCertificates are allowed",
        );
    }
    for (i, c) in t.tls_certificates.iter().enumerate() {
        if c.server_certificate.is_empty() || c.private_key.is_empty() {
            v.err(
                &format!("{p}.tlsCertificates[{i}]"),
                "serverCertificate and privateKey are both required",
            );
        }
    }
    let terminates = matches!(
        mode,
        ServerTlsMode::Simple | ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual
    );
    if terminates && !has_creds && t.tls_certificates.is_empty() {
        if t.server_certificate.is_empty() {
            v.err(
                &format!("{p}.serverCertificate"),
                "TLS termination requires a server certificate",
            );
        }
        if t.private_key.is_empty() {
            v.err(
                &format!("{p}.privateKey"),
                "TLS termination requires a private key",
            );
        }
    }
    if matches!(mode, ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual)
        && !has_creds
        && t.ca_certificates.is_empty()
        && t.ca_cert_credential_name.is_empty()
    {
        v.err(
            &format!("{p}.caCertificates"),
            "MUTUAL TLS requires a client CA bundle",
        );
    }
    // Istio: a CRL cannot be used with SIMPLE (no client certificates to check), unless the
    // credentials come from credentialName(s), where Istio stops checking.
    if mode == ServerTlsMode::Simple && !t.ca_crl.is_empty() && !has_creds {
        v.err(
            &format!("{p}.caCrl"),
            "CRL is not supported with SIMPLE TLS",
        );
    }
    terminates
}

/// The client SANs (MUTUAL only) and the TLS version range.
fn versions(v: &mut V, p: &str, t: &ServerTlsSettings, mode: ServerTlsMode) {
    if !t.subject_alt_names.is_empty()
        && !matches!(mode, ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual)
    {
        v.warn(
            &format!("{p}.subjectAltNames"),
            "subjectAltNames only apply to MUTUAL modes",
        );
    }
    if let (Some(min), Some(max)) = (t.min_protocol_version, t.max_protocol_version) {
        if min != TlsProtocol::TlsAuto && max != TlsProtocol::TlsAuto && max < min {
            v.err(
                p,
                "maxProtocolVersion must be greater than or equal to minProtocolVersion",
            );
        }
    }
    for (field, ver) in [
        ("minProtocolVersion", t.min_protocol_version),
        ("maxProtocolVersion", t.max_protocol_version),
    ] {
        if matches!(ver, Some(TlsProtocol::Tlsv10) | Some(TlsProtocol::Tlsv11)) {
            v.warn(
                &format!("{p}.{field}"),
                "TLS 1.0 and 1.1 are not supported; meshproxy speaks TLS 1.2 and 1.3 only",
            );
        }
    }
}

/// Fields parsed and validated but not (or not fully) enforced.
fn not_enforced(v: &mut V, p: &str, t: &ServerTlsSettings, mode: ServerTlsMode) {
    if mode == ServerTlsMode::AutoPassthrough {
        v.not_enforced(
            &format!("{p}.mode"),
            "AUTO_PASSTHROUGH (multi-cluster SNI routing)",
        );
    }
    if !t.subject_alt_names.is_empty() {
        v.not_enforced(
            &format!("{p}.subjectAltNames"),
            "client certificate SAN checks; any client certificate from caCertificates is accepted",
        );
    }
    // TLS 1.2 and 1.3 are always offered (never older ones): only a range that excludes
    // one of them is not honoured.
    use crate::model::gateway::TlsProtocol as V;
    if t.min_protocol_version == Some(V::Tlsv13) {
        v.not_enforced(
            &format!("{p}.minProtocolVersion"),
            "TLS 1.3 only; TLS 1.2 and 1.3 are always offered",
        );
    }
    if matches!(
        t.max_protocol_version,
        Some(V::Tlsv10 | V::Tlsv11 | V::Tlsv12)
    ) {
        v.not_enforced(
            &format!("{p}.maxProtocolVersion"),
            "a maximum below TLS 1.3; TLS 1.2 and 1.3 are always offered",
        );
    }
    if t.tls_certificates.len() > 1 {
        v.not_enforced(
            &format!("{p}.tlsCertificates[1]"),
            "a second certificate pair; the first one is served",
        );
    }

    for (field, set) in [
        ("credentialName", !t.credential_name.is_empty()),
        ("credentialNames", !t.credential_names.is_empty()),
        (
            "caCertCredentialName",
            !t.ca_cert_credential_name.is_empty(),
        ),
        (
            "verifyCertificateSpki",
            !t.verify_certificate_spki.is_empty(),
        ),
        (
            "verifyCertificateHash",
            !t.verify_certificate_hash.is_empty(),
        ),
        ("cipherSuites", !t.cipher_suites.is_empty()),
        ("ecdhCurves", !t.ecdh_curves.is_empty()),
        ("caCrl", !t.ca_crl.is_empty()),
    ] {
        if set {
            let why = if field.contains("redential") {
                "Kubernetes secrets are not read in file mode; use certificate file paths"
            } else {
                "meshproxy uses rustls' default, safe TLS parameters"
            };
            v.not_enforced(&format!("{p}.{field}"), why);
        }
    }
}

/// The certificate files of a server that terminates TLS, checked where they are used
/// (passthrough and ISTIO_MUTUAL servers ignore them).
fn tls_files(v: &mut V, p: &str, t: &ServerTlsSettings) {
    for (field, file) in [
        ("serverCertificate", &t.server_certificate),
        ("privateKey", &t.private_key),
        ("caCertificates", &t.ca_certificates),
    ] {
        if !file.is_empty() {
            super::files::check(v, &format!("{p}.{field}"), file);
        }
    }
    for (i, c) in t.tls_certificates.iter().enumerate() {
        for (field, file) in [
            ("serverCertificate", &c.server_certificate),
            ("privateKey", &c.private_key),
        ] {
            if !file.is_empty() {
                super::files::check(v, &format!("{p}.tlsCertificates[{i}].{field}"), file);
            }
        }
    }
}
