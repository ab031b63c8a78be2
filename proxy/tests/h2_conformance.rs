//! h2spec-style HTTP/2 conformance of the h2c (prior knowledge) side of an HTTP listener:
//! `tests/python/h2_conformance.py` (Python's `h2`/`hpack` for header blocks and the valid
//! exchanges, raw frames for the invalid ones) runs its checks against the `meshproxy`
//! binary's outbound listener, which routes `web.default.svc.cluster.local` to a real
//! upstream: connection preface, frames on the wrong stream or of the wrong size, stream
//! states and ids, SETTINGS values, flow-control windows, PING, unknown frame types and
//! settings, malformed header lists (upper-case names, connection-specific fields, pseudo
//! header rules), HPACK errors, and GET/POST requests answered by the upstream.
//!
//! The HTTP server is hyper's, on the published `h2` crate, behind meshproxy's HTTP/2
//! guard (`proxy/src/server/h2_guard`): the rules the guard enforces must be answered
//! with a GOAWAY carrying the right code (not a bare close), and every check must pass
//! except the known gaps of `h2` ([`KNOWN_GAPS`], `docs/h2-known-gaps.md`): those need
//! the decoded header block, which only `h2` has. They still run and are reported as
//! known failures; one that starts passing (a fixed `h2`) fails the test, so the list and
//! the document are brought up to date rather than going stale.
//!
//! The interpreter is `$MESHPROXY_PYTHON` (`.ci/run` makes a venv with `h2` and exports
//! it), else that venv's default place, else `python3`. When none can import `h2`, the
//! test prints why and passes without running.

mod binary;
mod common;
mod pyenv;

use serde_json::Value;
use std::time::Duration;

/// Checks that fail because of the `h2` crate itself, with why (`docs/h2-known-gaps.md`
/// has the RFC rule, what `h2` does, and the upstream report).
const KNOWN_GAPS: &[(&str, &str)] = &[
    (
        "headers/trailers-with-pseudo",
        "h2 drops pseudo-header fields from trailers and serves the request; RFC 9113 §8.1 \
         makes the message malformed (stream error PROTOCOL_ERROR); needs the decoded block",
    ),
    (
        "hpack/invalid-index",
        "h2 answers an undecodable field block with GOAWAY PROTOCOL_ERROR; RFC 9113 §4.3 \
         requires COMPRESSION_ERROR; needs HPACK decoding",
    ),
    (
        "hpack/table-size-update-too-large",
        "h2 answers a table size update above SETTINGS_HEADER_TABLE_SIZE with \
         PROTOCOL_ERROR; RFC 7541 §4.2/§6.3 and RFC 9113 §4.3 require COMPRESSION_ERROR",
    ),
];

/// Bound on the script's run (about 60 checks of at most a few seconds each).
const WAIT: Duration = Duration::from_secs(240);

/// The Python interpreter that imports `h2`, or why there is none.
fn python() -> Result<String, String> {
    pyenv::find("h2.connection, hpack")
}

fn config(upstream_port: u16) -> String {
    format!(
        "apiVersion: meshproxy.io/v1alpha1
kind: Proxy
metadata: {{name: h2conformance, namespace: default}}
spec:
  admin: {{address: \"127.0.0.1:0\"}}
  listeners:
  - {{name: outbound, address: \"127.0.0.1:0\", direction: OUTBOUND}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: web}}
spec:
  hosts: [web.default.svc.cluster.local]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {upstream_port}}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web}}
spec:
  hosts: [web]
  http:
  - route: [{{destination: {{host: web}}}}]
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_listener_passes_h2spec_style_checks() {
    let py = match python() {
        Ok(py) => py,
        Err(why) => {
            eprintln!("SKIPPED h2c_listener_passes_h2spec_style_checks: {why}");
            return;
        }
    };
    let web = common::upstream("web").await;
    let p = binary::run(&config(web.addr.port()), &["--workers", "1"]);
    let args = vec![
        "--target".to_string(),
        p.addr("outbound").to_string(),
        "--authority".to_string(),
        "web.default.svc.cluster.local".to_string(),
        "--expect-fail".to_string(),
        KNOWN_GAPS
            .iter()
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(","),
    ];
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || {
        let f = pyenv::run(&py, "h2_conformance.py", &args, WAIT);
        (f.code, f.stdout, f.stderr)
    })
    .await
    .expect("script thread");
    // The per-check lines, for whoever reads the test's output.
    eprintln!(
        "{}",
        stdout
            .lines()
            .filter(|l| !l.starts_with('{'))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let json: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!("h2_conformance.py printed no JSON (exit {code:?}).\nstdout:\n{stdout}\nstderr:\n{stderr}")
        });
    let failures: Vec<String> = json["failures"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|n| {
                    let name = n.as_str().unwrap_or("?");
                    let c = &json["checks"][name];
                    format!(
                        "{name} [{}]: expected {}, observed {}",
                        c["rfc"].as_str().unwrap_or(""),
                        c["expected"].as_str().unwrap_or(""),
                        c["observed"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(
        failures.is_empty() && code == Some(0),
        "HTTP/2 conformance failures (exit {code:?}):\n{}\nstderr:\n{stderr}",
        failures.join("\n")
    );
    let names = |key: &str| -> Vec<String> {
        json[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|n| n.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let fixed = names("unexpected_passes");
    assert!(
        fixed.is_empty(),
        "known h2 gaps now pass (remove them from KNOWN_GAPS and docs/h2-known-gaps.md): {fixed:?}"
    );
    let mut known = names("known_failures");
    known.sort();
    let mut listed: Vec<String> = KNOWN_GAPS.iter().map(|(n, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(known, listed, "known failures");
    for (name, why) in KNOWN_GAPS {
        eprintln!("KNOWN {name}: {why}");
    }
    let passed = json["passed"].as_u64().unwrap_or(0);
    assert!(passed >= 60, "only {passed} checks passed: {json}");
    for check in [
        "request/get-200",
        "request/post-body",
        "request/concurrent-streams",
        "preface/invalid",
        "stream/data-on-half-closed-remote",
        "stream/headers-on-half-closed-remote",
        "flow/dropped-data-credited",
    ] {
        assert_eq!(json["checks"][check]["ok"], true, "{check}: {json}");
    }
    // The valid requests reached the upstream through the proxy.
    assert!(web.count() >= 10, "upstream saw {} requests", web.count());
    // The guard's refusals are counted as HTTP/2 protocol errors, and none of these
    // HTTP/2 connections was mistaken for a refused HTTP/1 request.
    let metrics = common::metrics_text(p.addr("admin")).await;
    let count = |protocol: &str| -> u64 {
        let key = format!("meshproxy_downstream_protocol_errors_total{{protocol=\"{protocol}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(key.as_str()))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {}", metrics))
    };
    assert!(count("http2") >= 15, "{}", metrics);
    assert_eq!(count("http1"), 0, "{}", metrics);
}
