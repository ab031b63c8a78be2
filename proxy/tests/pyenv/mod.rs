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

/// What a script run to completion left: its exit code, stdout and stderr.
pub struct Finished {
    /// The exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

/// Runs `py tests/python/<name> <args>` to completion; panics if it is still running
/// after `wait` (killing it) or cannot be started.
pub fn run(py: &str, name: &str, args: &[String], wait: std::time::Duration) -> Finished {
    use std::io::Read;
    let path = script(name);
    let mut child = Command::new(py)
        .arg(&path)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {py} {}: {e}", path.display()));
    // Read both pipes while waiting: a script filling one would block otherwise.
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let deadline = std::time::Instant::now() + wait;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the script") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name} {args:?} did not finish within {wait:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Finished {
        code: status.code(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}
