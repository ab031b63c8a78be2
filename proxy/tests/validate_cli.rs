//! End-to-end: `meshproxy validate` run as a process.

use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_meshproxy"))
}

fn bookinfo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/bookinfo")
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("meshproxy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[test]
fn bookinfo_validates_clean() {
    let out = bin()
        .args(["validate", "-c"])
        .arg(bookinfo())
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0], "ok",
        "no warnings expected for bookinfo:\n{stdout}"
    );
    for kind in [
        "Proxy: 1",
        "Gateway: 1",
        "ServiceEntry: 4",
        "VirtualService: 5",
        "DestinationRule: 4",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(kind)),
            "missing {kind:?} in\n{stdout}"
        );
    }
}

#[test]
fn a_broken_copy_reports_every_error_with_its_location() {
    let dir = temp_dir("broken");
    for entry in std::fs::read_dir(bookinfo()).expect("bookinfo") {
        let p = entry.expect("entry").path();
        std::fs::copy(&p, dir.join(p.file_name().expect("name"))).expect("copy");
    }
    let edit = |file: &str, from: &str, to: &str| {
        let p = dir.join(file);
        let text = std::fs::read_to_string(&p).expect("read");
        assert!(text.contains(from), "{file} lacks {from:?}");
        std::fs::write(&p, text.replacen(from, to, 1)).expect("write");
    };
    edit("virtual-services.yaml", "weight: 50", "weight: -5");
    edit("virtual-services.yaml", "fixedDelay: 7s", "fixedDelay: 7x");
    edit("destination-rules.yaml", "interval: 1s", "interval: 0.5ms");
    edit(
        "destination-rules.yaml",
        "maxEjectionPercent: 100",
        "maxEjectionPercent: 150",
    );
    edit("gateway.yaml", "protocol: HTTP}", "protocol: HTTPX}");

    let out = bin()
        .args(["validate", "-c"])
        .arg(&dir)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let expect = [
        "virtual-services.yaml: doc[0] VirtualService/default/reviews: spec.http[1].route[0].weight: weight -5 must not be negative",
        "virtual-services.yaml: doc[1] VirtualService/default/ratings: spec.http[0].fault.delay.fixedDelay: invalid duration \"7x\"",
        "destination-rules.yaml: doc[2] DestinationRule/default/ratings: spec.trafficPolicy.outlierDetection.interval: duration must be at least 1ms",
        "destination-rules.yaml: doc[2] DestinationRule/default/ratings: spec.trafficPolicy.outlierDetection.maxEjectionPercent: maxEjectionPercent 150 must be in the range 0..100",
        "gateway.yaml: doc[0] Gateway/default/bookinfo-gateway: spec.servers[0].port.protocol: invalid protocol \"HTTPX\"",
    ];
    for e in expect {
        assert!(stdout.contains(e), "missing {e:?} in\n{stdout}");
    }
    // The parse error carries the parser's line.
    let fault_line = stdout
        .lines()
        .find(|l| l.contains("7x"))
        .expect("fault error");
    assert!(fault_line.contains("(line "), "{fault_line}");
    assert!(stdout.contains("invalid: 5 errors"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn istio_resources_without_a_proxy_validate_on_their_own() {
    let dir = temp_dir("noproxy");
    for f in [
        "services.yaml",
        "virtual-services.yaml",
        "destination-rules.yaml",
    ] {
        std::fs::copy(bookinfo().join(f), dir.join(f)).expect("copy");
    }
    let out = bin()
        .args(["validate", "-c"])
        .arg(&dir)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.lines().next() == Some("ok"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn warnings_do_not_fail_validation() {
    let dir = temp_dir("warn");
    std::fs::write(
        dir.join("vs.yaml"),
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\nspec:\n  hosts: [x]\n  http:\n  - route: [{destination: {host: x}}]\n  - route: [{destination: {host: y}}]\n",
    )
    .expect("write");
    let out = bin()
        .args(["validate", "-c"])
        .arg(&dir)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("warning:") && stdout.contains("spec.http[1]: rule is unreachable"),
        "{stdout}"
    );
    assert!(stdout.contains("referenced host not found"), "{stdout}");
    assert!(stdout.contains("\nok\n"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unreadable_path_is_an_error() {
    let out = bin()
        .args(["validate", "-c", "/nonexistent/meshproxy"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("/nonexistent/meshproxy: cannot read"));
}
