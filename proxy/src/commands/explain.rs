//! `meshproxy explain` and `meshproxy test`: the config loaded exactly as `validate` loads
//! it, then requests explained or test cases checked (`meshproxy::explain`).

use crate::cli::{ExplainArgs, TestArgs};
use meshproxy::explain::{self, cases, render, RequestSpec};
use meshproxy_config::compile::Snapshot;
use meshproxy_config::validate::MissingFiles;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

/// `key=value,key=value` (the equality form of a Kubernetes label selector). Any key and
/// value are taken: they are only compared with the config's selectors.
fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                labels.insert(k.trim().to_string(), v.trim().to_string());
            }
            _ => return Err(format!("{pair:?} is not key=value")),
        }
    }
    if labels.is_empty() {
        return Err("no labels (expected key=value[,key=value...])".into());
    }
    Ok(labels)
}

/// Loads the config as `validate` does (a certificate file missing here is only a warning:
/// routing does not read it), for the workload `labels` name when given; prints every error
/// and returns `None` when it is invalid.
fn load(
    paths: &[PathBuf],
    labels: Option<BTreeMap<String, String>>,
    out: &mut dyn Write,
) -> Option<Snapshot> {
    let snap = match labels {
        Some(l) => {
            meshproxy_config::compile::load_documents_for_workload(paths, MissingFiles::Warn, l)
        }
        None => meshproxy_config::compile::load_documents(paths, MissingFiles::Warn).0,
    };
    match snap {
        Ok(s) => Some(s),
        Err(diags) => {
            for d in diags.errors() {
                let _ = writeln!(out, "{d}");
            }
            let _ = writeln!(out, "invalid config: nothing explained");
            None
        }
    }
}

/// Runs `explain`; returns the exit code (0 explained, 1 bad config or request).
pub fn explain(a: &ExplainArgs, out: &mut dyn Write) -> i32 {
    let labels = match a.source_labels.as_deref().map(parse_labels).transpose() {
        Ok(l) => l,
        Err(e) => {
            let _ = writeln!(out, "--source-labels: {e}");
            return 1;
        }
    };
    let Some(snap) = load(&a.config.config, labels, out) else {
        return 1;
    };
    if let Some(name) = a.proxy.as_deref().filter(|n| *n != snap.proxy.name) {
        let _ = writeln!(
            out,
            "--proxy {name}: the config's Proxy is {:?}",
            snap.proxy.name
        );
        return 1;
    }
    let mut spec = RequestSpec {
        url: a.url.clone(),
        method: Some(a.method.clone()),
        listener: a.listener.clone(),
        gateway: a.gateway.clone(),
        principal: a.principal.clone(),
        source_address: a.source_address.clone(),
        ..Default::default()
    };
    for line in &a.headers {
        match explain::request::header_line(line) {
            // Repeated headers are joined as Envoy joins them before matching.
            Ok((k, v)) => {
                spec.headers
                    .entry(k.to_ascii_lowercase())
                    .and_modify(|e| {
                        e.push(',');
                        e.push_str(&v);
                    })
                    .or_insert(v);
            }
            Err(e) => {
                let _ = writeln!(out, "{e}");
                return 1;
            }
        }
    }
    match explain::decide(&snap, &spec) {
        Ok(d) if a.json => match serde_json::to_string_pretty(&d) {
            Ok(j) => {
                let _ = writeln!(out, "{j}");
                0
            }
            Err(e) => {
                let _ = writeln!(out, "cannot write JSON: {e}");
                1
            }
        },
        Ok(d) => {
            let _ = write!(out, "{}", render::text(&d));
            0
        }
        Err(e) => {
            let _ = writeln!(out, "{e}");
            1
        }
    }
}

/// Runs `test`; returns the exit code (0 every case passed, 1 otherwise).
pub fn test(a: &TestArgs, out: &mut dyn Write) -> i32 {
    let text = match std::fs::read_to_string(&a.tests) {
        Ok(t) => t,
        Err(e) => {
            let _ = writeln!(out, "{}: {e}", a.tests.display());
            return 1;
        }
    };
    let file = match cases::parse(&text) {
        Ok(f) => f,
        Err(e) => {
            let _ = writeln!(out, "{}: {e}", a.tests.display());
            return 1;
        }
    };
    let Some(snap) = load(&a.config.config, None, out) else {
        return 1;
    };
    let results = cases::run(&snap, &file);
    let failed = results.iter().filter(|r| !r.failures.is_empty()).count();
    for r in &results {
        if r.failures.is_empty() {
            let _ = writeln!(out, "PASS  {}", r.name);
        } else {
            let _ = writeln!(out, "FAIL  {}", r.name);
            for f in &r.failures {
                let _ = writeln!(out, "      {f}");
            }
        }
    }
    let _ = writeln!(out, "{} passed, {failed} failed", results.len() - failed);
    i32::from(failed > 0)
}
