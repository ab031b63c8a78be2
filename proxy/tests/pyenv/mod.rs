//! The Python interpreter the tests drive third-party clients with (`tests/python/`).
//!
//! Tried in order: `$MESHPROXY_PYTHON` (when set, the only one), the venv `.ci/run` makes
//! (`${MESHPROXY_PYENV:-/opt/meshproxy-pyenv}/bin/python`), `python3`.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The first interpreter that can `import {modules}` (e.g. `"websockets, grpc"`), or why
/// there is none (naming each candidate's failure).
pub fn find(modules: &str) -> Result<String, String> {
    let candidates = match std::env::var("MESHPROXY_PYTHON") {
        Ok(p) if !p.is_empty() => vec![p],
        _ => {
            let venv = std::env::var("MESHPROXY_PYENV")
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "/opt/meshproxy-pyenv".to_string());
            vec![format!("{venv}/bin/python"), "python3".to_string()]
        }
    };
    let mut why = Vec::new();
    for py in candidates {
        match Command::new(&py)
            .args(["-c", &format!("import {modules}")])
            .stdin(Stdio::null())
            .output()
        {
            Ok(o) if o.status.success() => return Ok(py),
            Ok(o) => why.push(format!(
                "{py}: {}",
                String::from_utf8_lossy(&o.stderr)
                    .trim()
                    .lines()
                    .last()
                    .unwrap_or("import failed")
            )),
            Err(e) => why.push(format!("{py}: {e}")),
        }
    }
    Err(format!(
        "no Python that imports {modules} ({}); run .ci/run's python step or set \
         MESHPROXY_PYTHON",
        why.join("; ")
    ))
}

/// Path of a script in `tests/python/`.
pub fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(name)
}
