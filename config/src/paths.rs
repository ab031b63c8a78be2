//! File paths written inside config documents (certificates, keys, CA bundles).

use std::path::{Path, PathBuf};

/// Resolves a path written in a config document: relative paths are relative to the
/// directory of the file the document came from, so a config directory can be moved whole.
pub fn resolve_path(config_file: &Path, p: &str) -> PathBuf {
    let path = Path::new(p);
    if path.is_absolute() {
        return path.to_path_buf();
    }
    match config_file.parent() {
        Some(dir) => dir.join(path),
        None => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_to_the_config_file() {
        assert_eq!(
            resolve_path(Path::new("/etc/mesh/proxy.yaml"), "certs/a.pem"),
            PathBuf::from("/etc/mesh/certs/a.pem")
        );
        assert_eq!(
            resolve_path(Path::new("/etc/mesh/proxy.yaml"), "/abs.pem"),
            PathBuf::from("/abs.pem")
        );
    }
}
