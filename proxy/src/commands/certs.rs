//! `meshproxy certs ca` and `meshproxy certs issue`: a mesh root CA and SPIFFE workload
//! certificates on disk, for local meshes, tests and demos (docs/contract.md §1).

use crate::cli::CertsCommand;
use meshproxy_certs::{Ca, CertError};
use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

/// Runs a `certs` subcommand; prints what was written to `out` and returns the exit code
/// (0, or 1 with the error on stderr).
pub fn run(cmd: CertsCommand, out: &mut dyn Write) -> i32 {
    let result = match cmd {
        CertsCommand::Ca {
            out: dir,
            days,
            common_name,
            force,
        } => ca(&dir, days, &common_name, force, out),
        CertsCommand::Issue {
            ca,
            spiffe,
            dns,
            out: dir,
            days,
        } => issue(&ca, &spiffe, &dns, &dir, days, out),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn ca(dir: &Path, days: u32, name: &str, force: bool, out: &mut dyn Write) -> Result<(), String> {
    let key = dir.join("ca.key");
    // Replacing a CA silently would make every certificate it issued unverifiable.
    if !force && key.exists() {
        return Err(format!(
            "{}: a CA already exists there (use --force to replace it)",
            key.display()
        ));
    }
    let ca = Ca::generate(name, days).map_err(|e| e.to_string())?;
    ca.write(dir).map_err(|e| e.to_string())?;
    let until = date(ca.not_after());
    let _ = writeln!(
        out,
        "wrote {} (CA certificate \"{name}\", ECDSA P-256, valid until {until})",
        dir.join("ca.pem").display()
    );
    let _ = writeln!(out, "wrote {} (CA private key, mode 0600)", key.display());
    Ok(())
}

fn issue(
    ca_dir: &Path,
    spiffe: &str,
    dns: &[String],
    dir: &Path,
    days: u32,
    out: &mut dyn Write,
) -> Result<(), String> {
    let ca = Ca::load(ca_dir).map_err(|e| e.to_string())?;
    let issued = ca
        .issue(spiffe, dns, days)
        .map_err(|e: CertError| e.to_string())?;
    issued.write(dir).map_err(|e| e.to_string())?;
    // Load what was written exactly as `run` will, so a bad result shows here, not at
    // the first handshake; it also gives the actual expiry (capped by the CA's).
    let id = meshproxy_certs::Identity::load(
        &dir.join("cert.pem"),
        &dir.join("key.pem"),
        &dir.join("ca.pem"),
    )
    .map_err(|e| e.to_string())?;
    let mut sans = vec![format!("URI:{spiffe}")];
    sans.extend(dns.iter().map(|d| format!("DNS:{d}")));
    let _ = writeln!(
        out,
        "wrote {} (workload certificate then CA; SAN {}; valid until {})",
        dir.join("cert.pem").display(),
        sans.join(", "),
        date(id.not_after)
    );
    let _ = writeln!(
        out,
        "wrote {} (private key, ECDSA P-256, mode 0600)",
        dir.join("key.pem").display()
    );
    let _ = writeln!(
        out,
        "wrote {} (mesh CA certificate)",
        dir.join("ca.pem").display()
    );
    Ok(())
}

/// `YYYY-MM-DD HH:MM:SS UTC`, as the certificate errors print times.
fn date(t: SystemTime) -> String {
    meshproxy_certs::format_time(t)
}
