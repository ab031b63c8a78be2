//! Diagnostics: the errors and warnings the loader, the validator and the compiler report.
//!
//! Every diagnostic carries enough to find the problem without guessing: the file, the
//! document's index in that file, the resource's `kind/namespace/name`, the field path in
//! the same dotted/indexed form users see in `kubectl explain` (`spec.http[0].route[1].weight`),
//! the line when the YAML parser knows it, and the reason.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// How bad a diagnostic is: errors refuse the whole config, warnings are only printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Printed, does not stop the config from being used (like `istioctl analyze`).
    Warning,
    /// The config is refused (like `istioctl validate`).
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// Where a resource came from: the file and the document's 0-based index inside it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The file the document was read from (`<embedded>` for built-in configs).
    pub file: Arc<PathBuf>,
    /// 0-based index of the YAML document in the file, counting empty documents too.
    pub index: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: doc[{}]", self.file.display(), self.index)
    }
}

/// One problem found in the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// File and document index, when the problem belongs to a document.
    pub origin: Option<Origin>,
    /// `Kind/namespace/name` of the resource, when known.
    pub resource: Option<String>,
    /// Field path inside the document (`spec.http[0].timeout`); empty for whole-document problems.
    pub path: String,
    /// 1-based line (and column) when the YAML parser reported one.
    pub line: Option<(usize, usize)>,
    /// What is wrong, in words.
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic that belongs to no particular document (e.g. an unreadable path).
    pub fn global(severity: Severity, message: impl Into<String>) -> Self {
        Diagnostic {
            severity,
            origin: None,
            resource: None,
            path: String::new(),
            line: None,
            message: message.into(),
        }
    }

    /// True for errors.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.severity)?;
        if let Some(origin) = &self.origin {
            write!(f, "{origin}")?;
            if let Some(res) = &self.resource {
                write!(f, " {res}")?;
            }
            f.write_str(": ")?;
        } else if let Some(res) = &self.resource {
            write!(f, "{res}: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some((line, col)) = self.line {
            write!(f, " (line {line}, column {col})")?;
        }
        Ok(())
    }
}

/// A list of diagnostics with helpers to count and print them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Appends one diagnostic.
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    /// True when at least one diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }

    /// The errors only.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.is_error())
    }

    /// The warnings only.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| !d.is_error())
    }

    /// Appends all of `other`.
    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }

    /// Number of diagnostics.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}
