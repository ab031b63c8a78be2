//! Reading X.509 certificates: SANs, validity, subject; the SPIFFE ID of a peer and the
//! `x-forwarded-client-cert` value derived from its certificate.

use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::x509::X509Name;

/// Parses a DER certificate; the error says what x509-parser found wrong.
pub(crate) fn parse<'a>(der: &'a [u8]) -> Result<X509Certificate<'a>, String> {
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => Ok(cert),
        Err(e) => Err(format!("invalid certificate: {e}")),
    }
}

/// The subject alternative names of a certificate, by kind.
#[derive(Debug, Default)]
pub(crate) struct Sans {
    pub dns: Vec<String>,
    pub uri: Vec<String>,
    pub ip: Vec<std::net::IpAddr>,
}

/// The DNS, URI and IP SANs of a parsed certificate (none when the extension is absent or
/// malformed: a malformed SAN extension identifies nobody).
pub(crate) fn sans(cert: &X509Certificate<'_>) -> Sans {
    let mut out = Sans::default();
    let Ok(Some(ext)) = cert.subject_alternative_name() else {
        return out;
    };
    for name in &ext.value.general_names {
        match name {
            GeneralName::DNSName(d) => out.dns.push((*d).to_string()),
            GeneralName::URI(u) => out.uri.push((*u).to_string()),
            GeneralName::IPAddress(b) => {
                if let Ok(v4) = <[u8; 4]>::try_from(*b) {
                    out.ip.push(std::net::IpAddr::from(v4));
                } else if let Ok(v6) = <[u8; 16]>::try_from(*b) {
                    out.ip.push(std::net::IpAddr::from(v6));
                }
            }
            _ => {}
        }
    }
    out
}

/// Whether a URI is a SPIFFE ID (the scheme is case-insensitive, as for any URI).
pub(crate) fn is_spiffe(uri: &str) -> bool {
    uri.get(..9)
        .is_some_and(|s| s.eq_ignore_ascii_case("spiffe://"))
}

/// The first `spiffe://` URI SAN of a DER certificate: the peer's mesh identity (Istio's
/// `source.principal` is this URI without the scheme). `None` when the certificate does not
/// parse or carries no SPIFFE ID.
pub fn peer_spiffe(cert: &CertificateDer<'_>) -> Option<String> {
    let cert = parse(cert.as_ref()).ok()?;
    sans(&cert).uri.into_iter().find(|u| is_spiffe(u))
}

/// Envoy's `x-forwarded-client-cert` element for a peer, as an Istio sidecar sets it
/// (`forward_client_cert_details: APPEND_FORWARD` with subject, URI and DNS details):
/// `By=<our spiffe>;Hash=<sha256 hex of the peer leaf DER>;Subject="<peer subject>";URI=<peer
/// URI SAN>[;DNS=<peer DNS SAN>...]`.
///
/// `By` is left out when we have no URI identity. Like Envoy, the `URI` key is present even
/// when the peer has no URI SAN (`URI=`), there is one `URI=`/`DNS=` pair per SAN, the subject
/// is in RFC 2253 form and always quoted (`Subject=""` for Istio workload certificates, which
/// have an empty subject), and a value holding `,`, `;` or `=` is double-quoted.
pub fn xfcc(ours: Option<&str>, peer_leaf: &CertificateDer<'_>) -> String {
    let mut out = String::new();
    if let Some(by) = ours {
        let _ = write!(out, "By={};", quote(by));
    }
    out.push_str("Hash=");
    for b in Sha256::digest(peer_leaf.as_ref()) {
        let _ = write!(out, "{b:02x}");
    }
    let (subject, sans) = match parse(peer_leaf.as_ref()) {
        Ok(c) => (rfc2253(c.subject()), sans(&c)),
        Err(_) => (String::new(), Sans::default()),
    };
    let _ = write!(out, ";Subject=\"{}\"", subject.replace('"', "\\\""));
    if sans.uri.is_empty() {
        out.push_str(";URI=");
    }
    for u in &sans.uri {
        let _ = write!(out, ";URI={}", quote(u));
    }
    for d in &sans.dns {
        let _ = write!(out, ";DNS={}", quote(d));
    }
    out
}

/// An XFCC value, double-quoted (with `"` escaped) when it holds a separator.
fn quote(v: &str) -> String {
    if v.contains([',', ';', '=', '"']) {
        format!("\"{}\"", v.replace('"', "\\\""))
    } else {
        v.to_string()
    }
}

/// A distinguished name in RFC 2253 form (`CN=x,O=y`: last RDN first), as Envoy prints it.
fn rfc2253(name: &X509Name<'_>) -> String {
    let registry = x509_parser::objects::oid_registry();
    let rdns: Vec<_> = name.iter().collect();
    let mut out = String::new();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, attr) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let key = x509_parser::objects::oid2abbrev(attr.attr_type(), registry)
                .map(str::to_string)
                .unwrap_or_else(|_| attr.attr_type().to_id_string());
            let _ = write!(out, "{key}=");
            match attr.as_str() {
                Ok(v) => escape_rfc2253(&mut out, v),
                // Not a string type: RFC 2253 prints the DER value as #hex.
                Err(_) => {
                    out.push('#');
                    for b in attr.attr_value().data {
                        let _ = write!(out, "{b:02x}");
                    }
                }
            }
        }
    }
    out
}

fn escape_rfc2253(out: &mut String, v: &str) {
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == ' ' || c == '#'))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
}

/// `notBefore` and `notAfter` as Unix seconds.
pub(crate) fn validity(cert: &X509Certificate<'_>) -> (i64, i64) {
    let v = cert.validity();
    (v.not_before.timestamp(), v.not_after.timestamp())
}

/// Unix seconds as a `SystemTime`.
pub(crate) fn system_time(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

/// A `SystemTime` as Unix seconds (negative before 1970).
pub(crate) fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC`, the form error messages use.
pub(crate) fn fmt_time(secs: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("{secs} (Unix time)"),
    }
}
