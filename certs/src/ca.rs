//! The mesh root CA and the workload certificates it issues.
//!
//! Certificates follow what Istio's CA issues, so peers (and `openssl`) see the same shape:
//! ECDSA P-256 keys, an empty subject on workload certificates with the identity in a
//! critical subjectAltName (`URI:spiffe://...`, plus any DNS names), `digitalSignature,
//! keyEncipherment` key usage and both `serverAuth` and `clientAuth` extended key usage,
//! since a sidecar's certificate is used in both directions.

use crate::{files, x509, CertError};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::CertificateDer;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// How far back certificates are dated, so a peer whose clock is a little behind ours
/// does not see a certificate that is "not yet valid".
const BACKDATE: Duration = Duration::from_secs(5 * 60);

const DAY: u64 = 24 * 60 * 60;

/// A mesh root CA: its certificate and private key, able to issue workload certificates.
pub struct Ca {
    /// rcgen's view of the CA, used only as the issuer when signing: its subject and key
    /// identifier. For a loaded CA it is rebuilt from the certificate file, so its own DER
    /// (re-signed) is never published; `cert_der`/`cert_pem` are.
    issuer: rcgen::Certificate,
    key: KeyPair,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    not_after: i64,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Ca")
            .field("not_after", &x509::fmt_time(self.not_after))
            .finish_non_exhaustive()
    }
}

/// A freshly issued workload certificate and its key, as PEM text.
#[derive(Clone)]
pub struct Issued {
    /// The leaf certificate followed by its chain (the CA certificate).
    pub cert_pem: String,
    /// The leaf's private key (PKCS#8).
    pub key_pem: String,
    /// The CA certificate: the trust root peers verify this certificate against.
    pub ca_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Issued").finish_non_exhaustive()
    }
}

impl Issued {
    /// Writes `DIR/cert.pem`, `DIR/key.pem` (mode 0600) and `DIR/ca.pem`, each replaced
    /// atomically (the key first, then the certificate, then the CA).
    pub fn write(&self, dir: &Path) -> Result<(), CertError> {
        files::write(dir, "key.pem", self.key_pem.as_bytes(), true)?;
        files::write(dir, "cert.pem", self.cert_pem.as_bytes(), false)?;
        files::write(dir, "ca.pem", self.ca_pem.as_bytes(), false)
    }
}

impl Ca {
    /// Creates a self-signed root CA valid for `days` days: ECDSA P-256, `CA:TRUE`,
    /// `keyCertSign, cRLSign, digitalSignature`, subject `O=meshproxy, CN=<common_name>`.
    pub fn generate(common_name: &str, days: u32) -> Result<Ca, CertError> {
        if common_name.trim().is_empty() {
            return Err(CertError::Generate("the CA's common name is empty".into()));
        }
        let not_after = validity_end(SystemTime::now(), days)?;
        let key = new_key()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "meshproxy");
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = (SystemTime::now() - BACKDATE).into();
        params.not_after = not_after.into();
        let cert = params.self_signed(&key).map_err(gen_err)?;
        Ok(Ca {
            cert_der: cert.der().clone(),
            cert_pem: cert.pem(),
            not_after: x509::unix_secs(not_after),
            issuer: cert,
            key,
        })
    }

    /// Loads `DIR/ca.pem` and `DIR/ca.key`, checking that the certificate is a CA, is
    /// currently valid, and that the key is its key.
    pub fn load(dir: &Path) -> Result<Ca, CertError> {
        let cert_path = dir.join("ca.pem");
        let key_path = dir.join("ca.key");
        let der = files::certs(&cert_path)?.swap_remove(0);
        let parsed = x509::parse(der.as_ref()).map_err(|e| CertError::invalid(&cert_path, e))?;
        let is_ca = matches!(parsed.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
        if !is_ca {
            return Err(CertError::NotCa { path: cert_path });
        }
        check_validity(&cert_path, &parsed)?;
        // rcgen panics on a subject with an empty RDN set: refuse such a file here.
        if parsed
            .subject()
            .iter()
            .any(|rdn| rdn.iter().next().is_none())
        {
            return Err(CertError::invalid(&cert_path, "empty RDN in the subject"));
        }
        let key_text = String::from_utf8(files::read(&key_path)?)
            .map_err(|_| CertError::invalid(&key_path, "not a PEM text file"))?;
        let key = KeyPair::from_pem(&key_text).map_err(|e| match e {
            rcgen::Error::CouldNotParseKeyPair if !key_text.contains("PRIVATE KEY") => {
                CertError::NoPrivateKey {
                    path: key_path.clone(),
                }
            }
            e => CertError::invalid(&key_path, format!("unusable CA key: {e}")),
        })?;
        if key.public_key_der() != parsed.public_key().raw {
            return Err(CertError::KeyMismatch {
                key: key_path,
                cert: cert_path,
            });
        }
        let not_after = x509::validity(&parsed).1;
        let params = CertificateParams::from_ca_cert_der(&der)
            .map_err(|e| CertError::invalid(&cert_path, format!("unusable CA certificate: {e}")))?;
        let issuer = params.self_signed(&key).map_err(gen_err)?;
        drop(parsed);
        Ok(Ca {
            issuer,
            key,
            cert_pem: pem_encode("CERTIFICATE", der.as_ref()),
            cert_der: der,
            not_after,
        })
    }

    /// Writes `DIR/ca.pem` and `DIR/ca.key` (mode 0600), creating `DIR` if needed. Existing
    /// files are replaced: callers that must not overwrite a CA check first.
    pub fn write(&self, dir: &Path) -> Result<(), CertError> {
        files::write(dir, "ca.key", self.key.serialize_pem().as_bytes(), true)?;
        files::write(dir, "ca.pem", self.cert_pem.as_bytes(), false)
    }

    /// The CA certificate as PEM.
    pub fn cert_pem(&self) -> String {
        self.cert_pem.clone()
    }

    /// The CA certificate as DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// When the CA certificate expires.
    pub fn not_after(&self) -> SystemTime {
        x509::system_time(self.not_after)
    }

    /// Issues a workload certificate for `spiffe` (its URI SAN) and `dns` names (DNS SANs;
    /// an IP address given there becomes an IP SAN), valid from now (back-dated a few
    /// minutes for clock skew) for `days` days, but never past the CA's own expiry (a leaf
    /// outliving its CA would not verify anyway).
    pub fn issue(&self, spiffe: &str, dns: &[String], days: u32) -> Result<Issued, CertError> {
        let now = SystemTime::now();
        let end = validity_end(now, days)?.min(self.not_after());
        self.issue_with(Some(spiffe), dns, now - BACKDATE, end)
    }

    /// Issues a workload certificate with an explicit validity window (tests use it for
    /// expired and not-yet-valid certificates) and an optional SPIFFE ID; at least one of
    /// `spiffe` and `dns` must be given, since the subject is empty.
    pub fn issue_with(
        &self,
        spiffe: Option<&str>,
        dns: &[String],
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<Issued, CertError> {
        if let Some(s) = spiffe {
            validate_spiffe(s)?;
        }
        let mut names = Vec::new();
        if let Some(s) = spiffe {
            names.push(San::Uri(s));
        }
        for d in dns {
            match d.parse::<IpAddr>() {
                Ok(ip) => names.push(San::Ip(ip)),
                Err(_) => {
                    validate_dns(d)?;
                    names.push(San::Dns(d));
                }
            }
        }
        if names.is_empty() {
            return Err(CertError::Generate(
                "a workload certificate needs a SPIFFE ID or a DNS name".into(),
            ));
        }
        if not_before >= not_after {
            return Err(CertError::Generate(
                "the validity window is empty (notBefore is not before notAfter)".into(),
            ));
        }
        let key = new_key()?;
        let mut params = CertificateParams::default();
        // Istio's workload certificates have an empty subject: the identity is the SAN.
        params.distinguished_name = DistinguishedName::new();
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        // With an empty subject RFC 5280 §4.2.1.6 requires the SAN extension to be
        // critical; rcgen always writes it non-critical, so it is encoded here.
        let mut san = CustomExtension::from_oid_content(&[2, 5, 29, 17], general_names(&names));
        san.set_criticality(true);
        params.custom_extensions = vec![san];
        let cert = params
            .signed_by(&key, &self.issuer, &self.key)
            .map_err(gen_err)?;
        // A loaded CA's subject is re-encoded by rcgen: make sure the issued certificate
        // names its issuer byte for byte as the CA certificate does, or nothing would
        // chain to it.
        let ca = x509::parse(self.cert_der.as_ref()).map_err(CertError::Generate)?;
        let leaf = x509::parse(cert.der().as_ref()).map_err(CertError::Generate)?;
        if leaf.issuer().as_raw() != ca.subject().as_raw() {
            return Err(CertError::Generate(
                "the CA's subject could not be reproduced exactly in the issued certificate".into(),
            ));
        }
        Ok(Issued {
            cert_pem: format!("{}{}", cert.pem(), self.cert_pem),
            key_pem: key.serialize_pem(),
            ca_pem: self.cert_pem.clone(),
        })
    }
}

fn new_key() -> Result<KeyPair, CertError> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen_err)
}

fn gen_err(e: rcgen::Error) -> CertError {
    CertError::Generate(e.to_string())
}

/// `start + days`, refusing zero days and overflow.
fn validity_end(start: SystemTime, days: u32) -> Result<SystemTime, CertError> {
    if days == 0 {
        return Err(CertError::Generate(
            "validity must be at least 1 day".into(),
        ));
    }
    start
        .checked_add(Duration::from_secs(u64::from(days) * DAY))
        .ok_or_else(|| CertError::Generate(format!("{days} days is too long a validity")))
}

/// Refuses a certificate outside its validity window, saying which bound failed.
pub(crate) fn check_validity(
    path: &Path,
    cert: &x509_parser::certificate::X509Certificate<'_>,
) -> Result<(), CertError> {
    let (not_before, not_after) = x509::validity(cert);
    let now = x509::unix_secs(SystemTime::now());
    if now > not_after {
        return Err(CertError::Expired {
            path: path.to_path_buf(),
            not_after: x509::fmt_time(not_after),
        });
    }
    if now < not_before {
        return Err(CertError::NotYetValid {
            path: path.to_path_buf(),
            not_before: x509::fmt_time(not_before),
        });
    }
    Ok(())
}

/// Checks a SPIFFE ID against the SPIFFE spec: `spiffe://` (lowercase), a trust domain of
/// lowercase letters, digits, `.`, `-`, `_`, then an optional path of non-empty segments of
/// letters, digits, `.`, `-`, `_` (no `.`/`..` segments, no trailing `/`, no query or
/// fragment).
pub(crate) fn validate_spiffe(id: &str) -> Result<(), CertError> {
    let bad = |reason: &str| CertError::InvalidSpiffe {
        value: id.to_string(),
        reason: reason.to_string(),
    };
    let Some(rest) = id.strip_prefix("spiffe://") else {
        return Err(bad("must start with spiffe://"));
    };
    if id.len() > 2048 {
        return Err(bad("longer than 2048 bytes"));
    }
    let (td, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if td.is_empty() {
        return Err(bad("the trust domain is empty"));
    }
    if !td
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b))
    {
        return Err(bad(
            "the trust domain may only hold lowercase letters, digits, '.', '-' and '_'",
        ));
    }
    if path.is_empty() {
        return Ok(());
    }
    for seg in path[1..].split('/') {
        if seg.is_empty() {
            return Err(bad("the path has an empty segment (or a trailing '/')"));
        }
        if seg == "." || seg == ".." {
            return Err(bad("the path may not hold '.' or '..' segments"));
        }
        if !seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        {
            return Err(bad(
                "path segments may only hold letters, digits, '.', '-' and '_'",
            ));
        }
    }
    Ok(())
}

/// Checks a DNS SAN: labels of letters, digits, `-` and `_` (1–63 bytes each, 253 in all),
/// with an optional leading `*` wildcard label.
fn validate_dns(name: &str) -> Result<(), CertError> {
    let bad = |reason: &str| CertError::InvalidDnsName {
        value: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() || name.len() > 253 {
        return Err(bad("must be 1 to 253 bytes long"));
    }
    let body = name.strip_prefix("*.").unwrap_or(name);
    for label in body.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(bad("every label must be 1 to 63 bytes long"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(bad("labels may only hold letters, digits, '-' and '_'"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad("a label may not start or end with '-'"));
        }
    }
    Ok(())
}

/// One subjectAltName entry.
enum San<'a> {
    Uri(&'a str),
    Dns(&'a str),
    Ip(IpAddr),
}

/// DER `GeneralNames` (RFC 5280 §4.2.1.6) for the SAN extension.
fn general_names(names: &[San<'_>]) -> Vec<u8> {
    let mut seq = Vec::new();
    for n in names {
        // Context-specific, primitive, IMPLICIT tags: [2] dNSName, [6] URI, [7] iPAddress.
        match n {
            San::Dns(d) => der_tlv(&mut seq, 0x82, d.as_bytes()),
            San::Uri(u) => der_tlv(&mut seq, 0x86, u.as_bytes()),
            San::Ip(IpAddr::V4(a)) => der_tlv(&mut seq, 0x87, &a.octets()),
            San::Ip(IpAddr::V6(a)) => der_tlv(&mut seq, 0x87, &a.octets()),
        }
    }
    let mut out = Vec::new();
    der_tlv(&mut out, 0x30, &seq);
    out
}

fn der_tlv(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
}

/// PEM text for one DER object (base64, 64-column lines), as `openssl` writes it.
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::with_capacity(der.len().div_ceil(3) * 4);
    for chunk in der.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;

    #[test]
    fn pem_round_trips() {
        for len in 0..10 {
            let der: Vec<u8> = (0..200 + len).map(|i| (i * 7) as u8).collect();
            let pem = pem_encode("CERTIFICATE", &der);
            let back = CertificateDer::pem_slice_iter(pem.as_bytes())
                .next()
                .unwrap()
                .unwrap();
            assert_eq!(back.as_ref(), &der[..]);
        }
    }

    #[test]
    fn der_lengths() {
        let mut v = Vec::new();
        der_tlv(&mut v, 0x04, &[0; 300]);
        assert_eq!(&v[..4], &[0x04, 0x82, 0x01, 0x2c]);
        let mut v = Vec::new();
        der_tlv(&mut v, 0x04, &[0; 5]);
        assert_eq!(&v[..2], &[0x04, 0x05]);
    }

    #[test]
    fn spiffe_validation() {
        assert!(validate_spiffe("spiffe://cluster.local/ns/default/sa/reviews").is_ok());
        assert!(validate_spiffe("spiffe://cluster.local").is_ok());
        for bad in [
            "http://cluster.local/ns/a",
            "spiffe:///ns/a",
            "spiffe://Cluster.local/ns/a",
            "spiffe://cluster.local/ns//a",
            "spiffe://cluster.local/ns/a/",
            "spiffe://cluster.local/ns/../a",
            "spiffe://cluster.local/ns/a?x=1",
        ] {
            let e = validate_spiffe(bad).unwrap_err().to_string();
            assert!(e.contains("invalid SPIFFE ID"), "{bad}: {e}");
        }
    }

    #[test]
    fn dns_validation() {
        for ok in [
            "reviews",
            "reviews.default.svc.cluster.local",
            "*.example.com",
        ] {
            validate_dns(ok).unwrap();
        }
        for bad in ["", "a..b", "-a.b", "a b", "*", "a.*.b"] {
            assert!(validate_dns(bad).is_err(), "{bad}");
        }
    }
}
