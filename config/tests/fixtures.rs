//! The fixture corpus: every file under `tests/fixtures/valid` must load, validate and
//! compile without errors; every file under `tests/fixtures/invalid` must be refused, and
//! each `# expect: <text>` line in it must appear in one of the reported errors.
//! `# expect-warning: <text>` lines (in either directory) must appear in a warning.

use meshproxy_config::compile;
use std::path::{Path, PathBuf};

fn files(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir);
    let mut out: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    out.sort();
    out
}

fn expectations(path: &Path, tag: &str) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("fixture readable");
    let prefix = format!("# {tag}: ");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|s| s.trim().to_string())
        .collect()
}

#[test]
fn valid_fixtures_load_clean() {
    let files = files("valid");
    assert!(
        files.len() >= 40,
        "the corpus needs at least 40 valid documents, has {}",
        files.len()
    );
    let mut failures = Vec::new();
    for f in &files {
        match compile::load(&[f]) {
            Ok(snap) => {
                let warnings: Vec<String> =
                    snap.warnings.warnings().map(|w| w.to_string()).collect();
                for exp in expectations(f, "expect-warning") {
                    if !warnings.iter().any(|w| w.contains(&exp)) {
                        failures.push(format!(
                            "{}: expected a warning containing {exp:?}, got {warnings:#?}",
                            f.display()
                        ));
                    }
                }
                if expectations(f, "expect-warning").is_empty() && !warnings.is_empty() {
                    failures.push(format!(
                        "{}: unexpected warnings {warnings:#?}",
                        f.display()
                    ));
                }
            }
            Err(diags) => failures.push(format!("{}: refused:\n{diags}", f.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn invalid_fixtures_are_refused_with_the_expected_errors() {
    let files = files("invalid");
    assert!(
        files.len() >= 40,
        "the corpus needs at least 40 invalid documents, has {}",
        files.len()
    );
    let mut failures = Vec::new();
    for f in &files {
        let expected = expectations(f, "expect");
        if expected.is_empty() {
            failures.push(format!("{}: has no `# expect:` line", f.display()));
            continue;
        }
        match compile::load(&[f]) {
            Ok(_) => failures.push(format!(
                "{}: accepted, expected errors {expected:?}",
                f.display()
            )),
            Err(diags) => {
                let errors: Vec<String> = diags.errors().map(|e| e.to_string()).collect();
                for exp in &expected {
                    if !errors.iter().any(|e| e.contains(exp.as_str())) {
                        failures.push(format!(
                            "{}: no error contains {exp:?}; errors:\n  {}",
                            f.display(),
                            errors.join("\n  ")
                        ));
                    }
                }
                for exp in expectations(f, "expect-warning") {
                    if !diags.warnings().any(|w| w.to_string().contains(&exp)) {
                        failures.push(format!(
                            "{}: expected a warning containing {exp:?}",
                            f.display()
                        ));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
