//! `meshproxy init`: install (or print, or remove) the iptables rules that send a pod's
//! traffic through the sidecar, as a mesh's init container does.

use crate::cli::InitArgs;
use meshproxy::intercept::iptables::{self, Capture, Family};
use std::process::Command;

/// Runs the command; returns the exit code.
pub fn run(a: &InitArgs) -> i32 {
    let capture = match capture(a) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let mut families = vec![Family::V4];
    if a.ipv6 {
        families.push(Family::V6);
    }
    let mut code = 0;
    for family in families {
        let cmd = family.command();
        if a.dry_run {
            let rules = if a.cleanup {
                iptables::cleanup()
            } else {
                iptables::install(&capture, family)
            };
            for r in rules {
                println!("{cmd} {}", r.join(" "));
            }
            continue;
        }
        // Removing first makes installing twice leave one set of rules.
        for r in iptables::cleanup() {
            let _ = Command::new(cmd).args(&r).output();
        }
        if a.cleanup {
            println!("{cmd}: meshproxy rules removed");
            continue;
        }
        for r in iptables::install(&capture, family) {
            match Command::new(cmd).args(&r).output() {
                Ok(out) if out.status.success() => {}
                Ok(out) => {
                    eprintln!(
                        "error: {cmd} {}: {}",
                        r.join(" "),
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                    code = 1;
                    break;
                }
                Err(e) => {
                    eprintln!("error: cannot run {cmd}: {e} (is iptables installed, and are we root / NET_ADMIN?)");
                    code = 1;
                    break;
                }
            }
        }
        if code == 0 {
            println!(
                "{cmd}: outbound TCP redirected to {}, inbound to {}; uid/gid {}/{} excluded",
                capture.outbound_port, capture.inbound_port, capture.proxy_uid, capture.proxy_gid
            );
        }
    }
    code
}

fn capture(a: &InitArgs) -> Result<Capture, String> {
    Ok(Capture {
        outbound_port: a.outbound_port,
        inbound_port: a.inbound_port,
        proxy_uid: a.proxy_uid,
        proxy_gid: a.proxy_gid.unwrap_or(a.proxy_uid),
        include_inbound_ports: iptables::ports(&a.include_inbound_ports)
            .map_err(|e| format!("--include-inbound-ports: {e}"))?,
        exclude_inbound_ports: iptables::ports(&a.exclude_inbound_ports)
            .map_err(|e| format!("--exclude-inbound-ports: {e}"))?
            .unwrap_or_default(),
        exclude_outbound_ports: iptables::ports(&a.exclude_outbound_ports)
            .map_err(|e| format!("--exclude-outbound-ports: {e}"))?
            .unwrap_or_default(),
        include_outbound_cidrs: iptables::cidrs(&a.include_outbound_cidrs)
            .map_err(|e| format!("--include-outbound-cidrs: {e}"))?,
        exclude_outbound_cidrs: iptables::cidrs(&a.exclude_outbound_cidrs)
            .map_err(|e| format!("--exclude-outbound-cidrs: {e}"))?
            .unwrap_or_default(),
    })
}
