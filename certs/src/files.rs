//! PEM files: reading certificates and keys with errors that name the file, and writing
//! them so that a reader never sees half a file and private keys are never world-readable.

use crate::CertError;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io::Write;
use std::path::Path;

/// Reads a whole file.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|e| CertError::io(path, "read", e))
}

/// Every `CERTIFICATE` block of a PEM file, in file order (other blocks are skipped).
pub(crate) fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let bytes = read(path)?;
    certs_from_pem(path, &bytes)
}

/// Every `CERTIFICATE` block of PEM text; `path` only names the source in errors.
pub(crate) fn certs_from_pem(
    path: &Path,
    bytes: &[u8],
) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::invalid(path, format!("invalid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(CertError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The first private key (PKCS#8, SEC1 or PKCS#1) of a PEM file.
pub(crate) fn key(path: &Path) -> Result<PrivateKeyDer<'static>, CertError> {
    let bytes = read(path)?;
    match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(k) => Ok(k),
        Err(pem::Error::NoItemsFound) => Err(CertError::NoPrivateKey {
            path: path.to_path_buf(),
        }),
        Err(e) => Err(CertError::invalid(path, format!("invalid PEM: {e}"))),
    }
}

/// Writes `contents` to `dir/name` through a temporary file renamed into place, so a proxy
/// watching the file for rotation never reads a truncated certificate or key. `private`
/// files are created with mode 0600 (owner only) before any byte is written.
pub(crate) fn write(
    dir: &Path,
    name: &str,
    contents: &[u8],
    private: bool,
) -> Result<(), CertError> {
    std::fs::create_dir_all(dir).map_err(|e| CertError::io(dir, "create directory", e))?;
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(if private { 0o600 } else { 0o644 });
        }
        let mut f = opts
            .open(&tmp)
            .map_err(|e| CertError::io(&tmp, "write", e))?;
        // The mode given to open() only applies to a new file: a leftover temporary file
        // keeps its old mode, so set it explicitly too.
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| CertError::io(&tmp, "write", e))?;
        }
        f.write_all(contents)
            .and_then(|()| f.sync_all())
            .map_err(|e| CertError::io(&tmp, "write", e))?;
        std::fs::rename(&tmp, &path).map_err(|e| CertError::io(&path, "write", e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
