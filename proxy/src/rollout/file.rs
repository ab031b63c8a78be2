//! The generated file, written atomically: the text goes to a hidden temporary file in
//! the same directory (the loader skips names starting with `.`), is flushed to disk, and
//! is renamed over the old one, so a proxy watching the directory reads either the old
//! route or the new one, never half of one.

use std::io::Write;
use std::path::Path;

/// Replaces `path`'s content with `text` atomically.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The file's text, `None` when it does not exist.
pub fn read(path: &Path) -> std::io::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_leave_no_temporary_file() {
        let dir = std::env::temp_dir().join(format!("mp-rollout-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let f = dir.join("rollout-default-r.yaml");
        assert!(read(&f).expect("read").is_none());
        write_atomic(&f, "a").expect("write");
        write_atomic(&f, "b").expect("write");
        assert_eq!(read(&f).expect("read").as_deref(), Some("b"));
        let names: Vec<_> = std::fs::read_dir(&dir)
            .expect("list")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
