//! The one error type of the crate: every message names the file involved (when there is
//! one) and says what is wrong with it, so an operator can fix it without a debugger.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a certificate, key or TLS configuration could not be created, loaded or used.
#[derive(Debug)]
#[non_exhaustive]
pub enum CertError {
    /// A file could not be read or written.
    Io {
        /// The file.
        path: PathBuf,
        /// `"read"`, `"write"`, `"create directory"`…
        action: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file holds no PEM `CERTIFICATE` block.
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The file holds no PEM private key (`PRIVATE KEY`, `EC PRIVATE KEY`, `RSA PRIVATE KEY`).
    NoPrivateKey {
        /// The file.
        path: PathBuf,
    },
    /// The file is not valid PEM, or a certificate or key in it cannot be parsed or used.
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The private key is not the one the certificate was issued for.
    KeyMismatch {
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        cert: PathBuf,
    },
    /// The certificate does not verify against the CA certificates.
    NotTrusted {
        /// The certificate file.
        cert: PathBuf,
        /// The CA file.
        ca: PathBuf,
        /// Why verification failed (from the verifier).
        reason: String,
    },
    /// The certificate's validity ended.
    Expired {
        /// The certificate file.
        path: PathBuf,
        /// Its `notAfter`, formatted `YYYY-MM-DD HH:MM:SS UTC`.
        not_after: String,
    },
    /// The certificate's validity has not started yet.
    NotYetValid {
        /// The certificate file.
        path: PathBuf,
        /// Its `notBefore`, formatted `YYYY-MM-DD HH:MM:SS UTC`.
        not_before: String,
    },
    /// A CA file holds a certificate that is not a CA (no `basicConstraints CA:TRUE`).
    NotCa {
        /// The file.
        path: PathBuf,
    },
    /// A SPIFFE ID given to issue a certificate is malformed.
    InvalidSpiffe {
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A DNS name given to issue a certificate is malformed.
    InvalidDnsName {
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Certificate generation or signing failed, or its parameters are inconsistent.
    Generate(String),
    /// A rustls configuration could not be built from the given material.
    Config(String),
}

impl CertError {
    pub(crate) fn io(path: &Path, action: &'static str, source: std::io::Error) -> CertError {
        CertError::Io {
            path: path.to_path_buf(),
            action,
            source,
        }
    }

    pub(crate) fn invalid(path: &Path, reason: impl fmt::Display) -> CertError {
        CertError::Invalid {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }
}

impl fmt::Display for CertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertError::Io {
                path,
                action,
                source,
            } => write!(f, "{}: cannot {action}: {source}", path.display()),
            CertError::NoCertificate { path } => {
                write!(f, "{}: no certificate found", path.display())
            }
            CertError::NoPrivateKey { path } => {
                write!(f, "{}: no private key found", path.display())
            }
            CertError::Invalid { path, reason } => write!(f, "{}: {reason}", path.display()),
            CertError::KeyMismatch { key, cert } => write!(
                f,
                "{}: key does not match certificate {}",
                key.display(),
                cert.display()
            ),
            CertError::NotTrusted { cert, ca, reason } => write!(
                f,
                "{}: certificate does not verify against the CA certificates in {}: {reason}",
                cert.display(),
                ca.display()
            ),
            CertError::Expired { path, not_after } => {
                write!(f, "{}: certificate expired on {not_after}", path.display())
            }
            CertError::NotYetValid { path, not_before } => write!(
                f,
                "{}: certificate not yet valid (valid from {not_before})",
                path.display()
            ),
            CertError::NotCa { path } => write!(
                f,
                "{}: not a CA certificate (basicConstraints CA:TRUE missing)",
                path.display()
            ),
            CertError::InvalidSpiffe { value, reason } => {
                write!(f, "invalid SPIFFE ID {value:?}: {reason}")
            }
            CertError::InvalidDnsName { value, reason } => {
                write!(f, "invalid DNS name {value:?}: {reason}")
            }
            CertError::Generate(m) => write!(f, "certificate generation failed: {m}"),
            CertError::Config(m) => write!(f, "TLS configuration: {m}"),
        }
    }
}

impl std::error::Error for CertError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CertError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
