//! End-to-end: `meshproxy certs ca` and `meshproxy certs issue` run as processes, their
//! output checked with `openssl` (an independent X.509 implementation).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SPIFFE: &str = "spiffe://cluster.local/ns/default/sa/reviews";

fn meshproxy(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshproxy"))
        .args(args)
        .output()
        .expect("meshproxy runs")
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("meshproxy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `openssl` with these arguments, or `None` (with a note) when it is not installed.
fn openssl(args: &[&str]) -> Option<Output> {
    match Command::new("openssl").args(args).output() {
        Ok(o) => Some(o),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("SKIPPED openssl checks: `openssl` is not installed (CI installs it)");
            None
        }
        Err(e) => panic!("openssl: {e}"),
    }
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

#[test]
fn ca_then_issue_verified_by_openssl() {
    let dir = temp_dir("certs-cli");
    let ca_dir = dir.join("ca");
    let out_dir = dir.join("reviews");

    let o = meshproxy(&["certs", "ca", "--out", p(&ca_dir)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    assert!(
        stdout.contains("ca.pem") && stdout.contains("ca.key"),
        "{stdout}"
    );
    assert!(ca_dir.join("ca.pem").is_file() && ca_dir.join("ca.key").is_file());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(ca_dir.join("ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the CA key is private");
    }

    let o = meshproxy(&[
        "certs",
        "issue",
        "--ca",
        p(&ca_dir),
        "--spiffe",
        SPIFFE,
        "--dns",
        "reviews.default.svc.cluster.local",
        "--out",
        p(&out_dir),
        "--days",
        "30",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    for f in ["cert.pem", "key.pem", "ca.pem"] {
        assert!(out_dir.join(f).is_file(), "{f} written");
        assert!(stdout.contains(f), "{stdout}");
    }
    assert!(stdout.contains(SPIFFE), "{stdout}");

    let cert = out_dir.join("cert.pem");
    let Some(o) = openssl(&["x509", "-in", p(&cert), "-noout", "-text"]) else {
        return;
    };
    assert!(o.status.success(), "{}", text(&o.stderr));
    let x509 = text(&o.stdout);
    assert!(x509.contains(&format!("URI:{SPIFFE}")), "{x509}");
    assert!(
        x509.contains("DNS:reviews.default.svc.cluster.local"),
        "{x509}"
    );
    assert!(x509.contains("id-ecPublicKey"), "EC key: {x509}");
    assert!(
        x509.contains("prime256v1") || x509.contains("P-256"),
        "P-256: {x509}"
    );
    assert!(x509.contains("TLS Web Server Authentication"), "{x509}");
    assert!(x509.contains("TLS Web Client Authentication"), "{x509}");

    let ca_pem = out_dir.join("ca.pem");
    let o = openssl(&["verify", "-CAfile", p(&ca_pem), p(&cert)]).expect("openssl");
    let verify = text(&o.stdout);
    assert!(
        o.status.success() && verify.contains("OK"),
        "{verify}{}",
        text(&o.stderr)
    );

    // The key file holds the certificate's key.
    let key = out_dir.join("key.pem");
    let cert_pub = openssl(&["x509", "-in", p(&cert), "-noout", "-pubkey"]).expect("openssl");
    let key_pub = openssl(&["pkey", "-in", p(&key), "-pubout"]).expect("openssl");
    assert!(key_pub.status.success(), "{}", text(&key_pub.stderr));
    assert_eq!(text(&cert_pub.stdout), text(&key_pub.stdout));

    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn errors_exit_1_with_a_clear_message() {
    let dir = temp_dir("certs-cli-errors");
    let ca_dir = dir.join("ca");
    let o = meshproxy(&["certs", "ca", "--out", p(&ca_dir)]);
    assert!(o.status.success(), "{}", text(&o.stderr));

    // An existing CA is not replaced without --force.
    let o = meshproxy(&["certs", "ca", "--out", p(&ca_dir)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("--force"), "{}", text(&o.stderr));
    let o = meshproxy(&["certs", "ca", "--out", p(&ca_dir), "--force"]);
    assert!(o.status.success(), "{}", text(&o.stderr));

    // Not a SPIFFE ID.
    let out_dir = dir.join("w");
    let o = meshproxy(&[
        "certs",
        "issue",
        "--ca",
        p(&ca_dir),
        "--spiffe",
        "cluster.local/ns/default/sa/reviews",
        "--out",
        p(&out_dir),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = text(&o.stderr);
    assert!(
        e.contains("invalid SPIFFE ID") && e.contains("spiffe://"),
        "{e}"
    );
    assert!(!out_dir.join("cert.pem").exists());

    // No CA there.
    let o = meshproxy(&[
        "certs",
        "issue",
        "--ca",
        p(&dir.join("nope")),
        "--spiffe",
        SPIFFE,
        "--out",
        p(&out_dir),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = text(&o.stderr);
    assert!(e.contains("ca.pem: cannot read"), "{e}");

    let _ = std::fs::remove_dir_all(&dir);
}
