//! End-to-end: `meshproxy validate` run as a process.

mod binary;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

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

/// A config whose DestinationRule names a CA file: `ca` is the value written in
/// `caCertificates` (relative to the config file). The Proxy binds only port 0, so a
/// `run` that wrongly starts takes no fixed port.
fn config_with_ca(ca: &str) -> String {
    format!(
        "apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {{name: test, namespace: default}}\nspec:\n  admin: {{address: \"127.0.0.1:0\"}}\n  listeners:\n  - {{name: outbound, address: \"127.0.0.1:0\", direction: OUTBOUND}}\n---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: api, namespace: default}}\nspec:\n  hosts: [api.example.com]\n  ports: [{{number: 443, name: https, protocol: HTTPS}}]\n  resolution: DNS\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: api, namespace: default}}\nspec:\n  host: api.example.com\n  trafficPolicy:\n    tls: {{mode: SIMPLE, caCertificates: {ca}}}\n"
    )
}

/// Runs `meshproxy run -c dir` and returns its output once it exits, or `None` (after
/// killing it) when it is still running after `within`: it served a config it should
/// have refused.
fn run_to_exit(dir: &Path, within: Duration) -> Option<Output> {
    let child = bin()
        .args(["run", "-c"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn meshproxy run");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(within) {
        Ok(out) => Some(out.expect("wait for meshproxy run")),
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            None
        }
    }
}

#[test]
fn a_missing_ca_file_warns_in_validate_and_refuses_run() {
    let dir = temp_dir("missing-ca");
    std::fs::write(dir.join("config.yaml"), config_with_ca("certs/ca.pem")).expect("write");

    let out = bin()
        .args(["validate", "-c"])
        .arg(&dir)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let warning = stdout
        .lines()
        .find(|l| l.starts_with("warning:") && l.contains("caCertificates"))
        .unwrap_or_else(|| panic!("no warning for the CA file in\n{stdout}"));
    for part in [
        "config.yaml: doc[2] DestinationRule/default/api: spec.trafficPolicy.tls.caCertificates:",
        "certs/ca.pem: file not found; it must exist where the proxy runs",
    ] {
        assert!(warning.contains(part), "{part:?} not in {warning:?}");
    }
    assert!(stdout.contains("\nok\n"), "{stdout}");

    let out = run_to_exit(&dir, Duration::from_secs(30))
        .expect("run served a config whose CA file is missing");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error:") && l.contains("caCertificates"))
        .unwrap_or_else(|| panic!("no error for the CA file in\n{stderr}"));
    for part in [
        "config.yaml: doc[2] DestinationRule/default/api: spec.trafficPolicy.tls.caCertificates:",
        "cannot read ",
        "certs/ca.pem",
    ] {
        assert!(error.contains(part), "{part:?} not in {error:?}");
    }
    assert!(
        stderr.contains("invalid config: nothing served"),
        "{stderr}"
    );

    // Once the file exists where the proxy runs, both agree the config is good.
    std::fs::create_dir_all(dir.join("certs")).expect("certs dir");
    std::fs::write(dir.join("certs/ca.pem"), "only its existence is checked\n").expect("ca");
    let out = bin()
        .args(["validate", "-c"])
        .arg(&dir)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().next(), Some("ok"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_reload_naming_a_missing_ca_file_leaves_the_config_in_force() {
    let dir = temp_dir("reload-missing-ca");
    std::fs::create_dir_all(dir.join("certs")).expect("certs dir");
    // Client TLS files are read at the first upstream connection; startup only needs them
    // to exist.
    std::fs::write(dir.join("certs/ca.pem"), "only its existence is checked\n").expect("ca");
    std::fs::write(dir.join("config.yaml"), config_with_ca("certs/ca.pem")).expect("write");
    let proxy = binary::run_dir(&dir, &[]);

    std::fs::write(
        dir.join("config.yaml"),
        config_with_ca("certs/rotated-ca.pem"),
    )
    .expect("rewrite");
    proxy.signal(nix::sys::signal::Signal::SIGHUP);
    let error = proxy
        .wait_log("rotated-ca.pem", Duration::from_secs(20))
        .expect("the reload names the missing file");
    assert!(
        error.contains("spec.trafficPolicy.tls.caCertificates")
            && error.contains("DestinationRule/default/api"),
        "{error}"
    );
    proxy
        .wait_log(
            "config refused: the config in force stays",
            Duration::from_secs(20),
        )
        .expect("the reload is refused");
    // The first config is still the one in force.
    let dump = config_dump(proxy.addr("admin"));
    assert!(
        dump.contains("certs/ca.pem") && !dump.contains("rotated-ca.pem"),
        "{dump}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `GET /config_dump` from the admin port, the whole response as text.
fn config_dump(admin: std::net::SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(admin).expect("admin answers");
    conn.write_all(b"GET /config_dump HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut response = String::new();
    conn.read_to_string(&mut response).expect("response");
    response
}
