//! Files named in documents (DestinationRule and Gateway TLS files, the Proxy identity) are
//! checked by one rule with two severities: a warning for `validate`, which often runs away
//! from the pod that mounts them, an error for `run` and reloads, which use them.

use meshproxy_config::compile;
use meshproxy_config::validate::MissingFiles;
use meshproxy_config::{Diagnostic, Severity};
use std::path::{Path, PathBuf};

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mp-config-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

const DOCS: &str = "\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api, namespace: default}
spec:
  host: api.example.com
  trafficPolicy:
    tls: {mode: MUTUAL, clientCertificate: certs/client.pem, privateKey: certs/client.key, caCertificates: certs/ca.pem}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [www.example.com]
    tls: {mode: SIMPLE, serverCertificate: certs/tls.pem, privateKey: /nonexistent/tls.key}
---
apiVersion: meshproxy.io/v1alpha1
kind: Proxy
metadata: {name: p, namespace: default}
spec:
  identity: {certificate: certs/cert.pem, privateKey: certs/key.pem, caCertificates: certs/ca.pem}
";

/// The file-related diagnostics: (severity, field path, message).
fn file_diags<'a>(diags: impl Iterator<Item = &'a Diagnostic>) -> Vec<(Severity, String, String)> {
    diags
        .filter(|d| d.message.contains("certs/") || d.message.contains("/nonexistent/"))
        .map(|d| (d.severity, d.path.clone(), d.message.clone()))
        .collect()
}

const FIELDS: [&str; 8] = [
    "spec.trafficPolicy.tls.clientCertificate",
    "spec.trafficPolicy.tls.privateKey",
    "spec.trafficPolicy.tls.caCertificates",
    "spec.servers[0].tls.serverCertificate",
    "spec.servers[0].tls.privateKey",
    "spec.identity.certificate",
    "spec.identity.privateKey",
    "spec.identity.caCertificates",
];

#[test]
fn validate_warns_and_run_refuses_for_the_same_files() {
    let dir = temp_dir("missing-files");
    let file = dir.join("config.yaml");
    std::fs::write(&file, DOCS).expect("write");

    // `validate`: every missing file is a warning, the config is accepted.
    let (snap, _) = compile::load_documents(&[&file], MissingFiles::Warn);
    let snap = snap.unwrap_or_else(|d| panic!("refused:\n{d}"));
    let warned = file_diags(snap.warnings.warnings());
    assert_eq!(warned.len(), FIELDS.len(), "{warned:#?}");
    for ((severity, path, message), field) in warned.iter().zip(FIELDS) {
        assert_eq!(*severity, Severity::Warning);
        assert_eq!(path, field);
        assert!(
            message.ends_with("file not found; it must exist where the proxy runs"),
            "{message}"
        );
    }
    // Relative paths resolve against the document's own file.
    assert!(warned[0]
        .2
        .starts_with(&format!("{}: ", dir.join("certs/client.pem").display())));
    assert!(warned[4].2.starts_with("/nonexistent/tls.key: "));

    // `run` and reloads: the same files are errors naming file, document and field.
    let diags = match compile::load(&[&file]) {
        Ok(_) => panic!("run accepted a config whose files are missing"),
        Err(d) => d,
    };
    let refused = file_diags(diags.errors());
    assert_eq!(refused.len(), FIELDS.len(), "{diags}");
    for ((_, path, message), field) in refused.iter().zip(FIELDS) {
        assert_eq!(path, field);
        assert!(message.starts_with("cannot read "), "{message}");
    }
    let first = diags
        .errors()
        .find(|d| d.path == FIELDS[2])
        .expect("caCertificates error")
        .to_string();
    assert!(
        first.contains("config.yaml: doc[0] DestinationRule/default/api: spec.trafficPolicy.tls.caCertificates: cannot read"),
        "{first}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn files_that_exist_are_not_reported() {
    let dir = temp_dir("present-files");
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).expect("certs");
    for f in [
        "client.pem",
        "client.key",
        "ca.pem",
        "tls.pem",
        "tls.key",
        "cert.pem",
        "key.pem",
    ] {
        std::fs::write(certs.join(f), "only its existence is checked\n").expect("write");
    }
    let file = dir.join("config.yaml");
    std::fs::write(&file, DOCS.replace("/nonexistent/tls.key", "certs/tls.key")).expect("write");
    for mode in [MissingFiles::Warn, MissingFiles::Refuse] {
        let (snap, _) = compile::load_documents(&[&file], mode);
        let snap = snap.unwrap_or_else(|d| panic!("{mode:?} refused:\n{d}"));
        let reported = file_diags(snap.warnings.0.iter());
        assert!(reported.is_empty(), "{mode:?}: {reported:#?}");
    }
    assert!(compile::load(&[Path::new(&file)]).is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}
