//! `meshproxy init`: the rules it prints match a reviewed golden file, and inside a
//! network namespace (root only) they are installed, idempotent, and removed.

use std::process::Command;

fn meshproxy(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_meshproxy"))
        .args(args)
        .output()
        .expect("run meshproxy")
}

#[test]
fn dry_run_prints_the_golden_rules() {
    let out = meshproxy(&[
        "init",
        "--dry-run",
        "--exclude-inbound-ports",
        "22",
        "--exclude-outbound-cidrs",
        "169.254.169.254/32",
    ]);
    assert!(out.status.success());
    let got = String::from_utf8(out.stdout).unwrap();
    let golden = include_str!("golden/init-dry-run.txt");
    assert_eq!(
        got, golden,
        "rules changed: review and update tests/golden/init-dry-run.txt"
    );
    let out = meshproxy(&["init", "--dry-run", "--cleanup"]);
    let got = String::from_utf8(out.stdout).unwrap();
    assert!(
        got.contains("iptables -t nat -D OUTPUT -p tcp -j MESHPROXY_OUTPUT"),
        "{got}"
    );
    assert!(
        got.contains("iptables -t nat -X MESHPROXY_REDIRECT"),
        "{got}"
    );
}

#[test]
fn bad_lists_are_refused() {
    let out = meshproxy(&["init", "--dry-run", "--exclude-inbound-ports", "ssh"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--exclude-inbound-ports"));
}

/// Why a root-only test cannot run here, if it cannot.
fn cannot_run_as_root() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("needs root (network namespaces and iptables)".into());
    }
    for tool in ["ip", "iptables", "iptables-save"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !found {
            return Some(format!(
                "needs `{tool}` (apt-get install iproute2 iptables)"
            ));
        }
    }
    None
}

struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let name = format!("mp-init-{}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap();
        assert!(ok.success(), "ip netns add");
        Netns(name)
    }

    fn exec(&self, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(args)
            .output()
            .unwrap()
    }

    fn nat_rules(&self) -> String {
        String::from_utf8(self.exec(&["iptables-save", "-t", "nat"]).stdout).unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn installs_idempotently_and_cleans_up_in_a_namespace() {
    if let Some(why) = cannot_run_as_root() {
        eprintln!("SKIPPED installs_idempotently_and_cleans_up_in_a_namespace: {why}");
        return;
    }
    let ns = Netns::new();
    let bin = env!("CARGO_BIN_EXE_meshproxy");
    let out = ns.exec(&[bin, "init"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let once = ns.nat_rules();
    assert!(
        once.contains("-A OUTPUT -p tcp -j MESHPROXY_OUTPUT"),
        "{once}"
    );
    assert!(
        once.contains("-A MESHPROXY_REDIRECT -p tcp -j REDIRECT --to-ports 15001"),
        "{once}"
    );
    assert!(
        once.contains("-A MESHPROXY_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006"),
        "{once}"
    );
    assert!(once.contains("--uid-owner 1337 -j RETURN"), "{once}");
    let count = |s: &str| s.lines().filter(|l| l.starts_with("-A")).count();
    let out = ns.exec(&[bin, "init"]);
    assert!(out.status.success());
    assert_eq!(
        count(&ns.nat_rules()),
        count(&once),
        "installing twice leaves one set of rules"
    );
    let out = ns.exec(&[bin, "init", "--cleanup"]);
    assert!(out.status.success());
    let after = ns.nat_rules();
    assert!(!after.contains("MESHPROXY"), "{after}");
}
