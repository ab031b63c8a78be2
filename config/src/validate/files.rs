//! Files named inside documents (certificates, keys, CA bundles): one existence check whose
//! severity the caller chooses.
//!
//! `meshproxy validate` usually runs away from the pod that mounts the files (a CI job, a
//! laptop), so there a missing file is a warning: Istio does not look at these paths either
//! (`istioctl validate` only checks the field combinations; Envoy reads the files). `run`
//! and a reload are where the files are used: there a missing file refuses the config,
//! naming the file, the document and the field, so a reload that would break TLS leaves the
//! config in force untouched (docs/config.md, "Files named in documents").

use super::V;
use crate::diag::Severity;
use crate::paths::resolve_path;
use std::io::ErrorKind;

/// How a missing or unreadable file is reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissingFiles {
    /// An error: the config is being loaded to be served (`run`, a reload).
    Refuse,
    /// A warning: the config is being checked where it may not run (`validate`).
    Warn,
}

impl MissingFiles {
    fn severity(self) -> Severity {
        match self {
            MissingFiles::Refuse => Severity::Error,
            MissingFiles::Warn => Severity::Warning,
        }
    }
}

/// Reports `file` (written at field path `p`, relative to the document's own file) when it
/// cannot be read, with the severity `v` was given.
pub(crate) fn check(v: &mut V, p: &str, file: &str) {
    let path = resolve_path(&v.res.origin.file, file);
    let Err(e) = std::fs::metadata(&path) else {
        return;
    };
    let severity = v.missing_files.severity();
    let message = match (severity, e.kind()) {
        (Severity::Warning, ErrorKind::NotFound) => format!(
            "{}: file not found; it must exist where the proxy runs",
            path.display()
        ),
        (Severity::Warning, _) => format!(
            "cannot read {}: {e}; it must be readable where the proxy runs",
            path.display()
        ),
        (Severity::Error, _) => format!("cannot read {}: {e}", path.display()),
    };
    v.push(severity, p, message);
}
