//! Network namespaces for root-only end-to-end tests: creating and deleting them,
//! running commands and threads inside them, and deciding whether such a test can run.
#![allow(dead_code)]

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::{Command, Output};

/// Why a root-only test cannot run here (not root, or one of `tools` is missing), if it
/// cannot.
pub fn cannot_run_as_root(tools: &[&str]) -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("needs root (network namespaces and iptables)".into());
    }
    for tool in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !found {
            return Some(format!(
                "needs `{tool}` (apt-get install iproute2 iptables util-linux curl)"
            ));
        }
    }
    None
}

/// Runs `cmd`, panicking with its output unless it succeeds.
pub fn must(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A named network namespace (`ip netns add`), deleted on drop together with its
/// `/etc/netns/<name>` directory (even when the test panicked).
pub struct Netns {
    /// Its name (as `ip netns` knows it).
    pub name: String,
}

impl Netns {
    /// Creates namespace `name` (deleting a stale one of that name first) with `lo` up.
    pub fn new(name: &str) -> Netns {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        must(Command::new("ip").args(["netns", "add", name]));
        let ns = Netns {
            name: name.to_string(),
        };
        ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// `ip netns exec <name> <args...>`, not yet run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).args(args);
        cmd
    }

    /// Runs `args` inside the namespace; its output, whatever its exit status.
    pub fn exec(&self, args: &[&str]) -> Output {
        self.command(args)
            .output()
            .unwrap_or_else(|e| panic!("ip netns exec {} {args:?}: {e}", self.name))
    }

    /// Runs `args` inside the namespace, panicking with its output unless it succeeds.
    pub fn exec_ok(&self, args: &[&str]) -> Output {
        must(&mut self.command(args))
    }

    /// The directory `ip netns exec` bind-mounts over `/etc` files (`hosts`,
    /// `resolv.conf`) for this namespace.
    pub fn etc_dir(&self) -> std::path::PathBuf {
        std::path::Path::new("/etc/netns").join(&self.name)
    }

    /// Moves the calling thread into this namespace: sockets it creates from now on
    /// belong to it. Meant for a thread of its own (see [`Netns::run`]).
    pub fn enter(&self) -> std::io::Result<()> {
        enter(&self.name)
    }

    /// Runs `f` on a new thread that entered this namespace, and returns its result
    /// (re-raising its panic).
    pub fn run<T, F>(&self, f: F) -> T
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let name = self.name.clone();
        let handle = std::thread::spawn(move || {
            enter(&name).expect("setns into the test namespace");
            f()
        });
        match handle.join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

/// Moves the calling thread into the network namespace `name` (`ip netns` naming).
pub fn enter(name: &str) -> std::io::Result<()> {
    let file = File::open(format!("/var/run/netns/{name}"))?;
    // SAFETY: `setns` is given an fd that stays open for the call and the namespace type
    // it refers to; it only changes the calling thread's network namespace.
    let rc = unsafe { nix::libc::setns(file.as_raw_fd(), nix::libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = std::fs::remove_dir_all(self.etc_dir());
    }
}

/// Joins `a` and `b` with a veth pair (`<prefix>a`/`<prefix>b`, moved into each), gives
/// them `a_ip/24` and `b_ip/24`, and brings them up. The pair goes with the namespaces.
pub fn veth(a: &Netns, a_ip: &str, b: &Netns, b_ip: &str, prefix: &str) {
    let (va, vb) = (format!("{prefix}a"), format!("{prefix}b"));
    must(Command::new("ip").args([
        "link", "add", &va, "netns", &a.name, "type", "veth", "peer", "name", &vb, "netns", &b.name,
    ]));
    for (ns, dev, ip) in [(a, &va, a_ip), (b, &vb, b_ip)] {
        ns.exec_ok(&["ip", "addr", "add", &format!("{ip}/24"), "dev", dev]);
        ns.exec_ok(&["ip", "link", "set", dev, "up"]);
    }
}
