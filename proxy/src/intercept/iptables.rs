//! The nat rules that send a pod's TCP traffic through the sidecar, as istio-iptables
//! writes them (istio/istio `tools/istio-iptables/pkg/capture/run.go`): inbound to the
//! inbound listener, outbound to the outbound listener, the proxy's own traffic (by uid
//! and gid) and loopback destinations left alone.

/// What to capture.
#[derive(Clone, Debug)]
pub struct Capture {
    /// Outbound listener port (Istio: 15001).
    pub outbound_port: u16,
    /// Inbound listener port (Istio: 15006).
    pub inbound_port: u16,
    /// The proxy's uid (Istio: 1337).
    pub proxy_uid: u32,
    /// The proxy's gid (Istio: 1337).
    pub proxy_gid: u32,
    /// Inbound ports to capture; `None` = all.
    pub include_inbound_ports: Option<Vec<u16>>,
    /// Inbound ports never captured (besides the proxy's own).
    pub exclude_inbound_ports: Vec<u16>,
    /// Outbound destination ports never captured.
    pub exclude_outbound_ports: Vec<u16>,
    /// Outbound destinations to capture; `None` = all.
    pub include_outbound_cidrs: Option<Vec<String>>,
    /// Outbound destinations never captured.
    pub exclude_outbound_cidrs: Vec<String>,
}

/// The proxy's own ports, never captured inbound: admin, the two capture ports, and the
/// ports Istio reserves for its agent (15020, 15021, 15090) so pods moving from Istio
/// keep their probes working.
const OWN_PORTS: [u16; 3] = [15000, 15020, 15021];

const INBOUND: &str = "MESHPROXY_INBOUND";
const IN_REDIRECT: &str = "MESHPROXY_IN_REDIRECT";
const OUTPUT: &str = "MESHPROXY_OUTPUT";
const REDIRECT: &str = "MESHPROXY_REDIRECT";

/// The address family the rules are for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `iptables`.
    V4,
    /// `ip6tables`.
    V6,
}

impl Family {
    /// The command that installs rules for this family.
    pub fn command(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }

    fn loopback(self) -> &'static str {
        match self {
            Family::V4 => "127.0.0.1/32",
            Family::V6 => "::1/128",
        }
    }
}

fn rule(args: &[&str]) -> Vec<String> {
    let mut v = vec!["-t".to_string(), "nat".to_string()];
    v.extend(args.iter().map(|s| s.to_string()));
    v
}

/// The rules to install, each the arguments of one `iptables` call.
pub fn install(c: &Capture, family: Family) -> Vec<Vec<String>> {
    let mut r = Vec::new();
    for chain in [INBOUND, IN_REDIRECT, OUTPUT, REDIRECT] {
        r.push(rule(&["-N", chain]));
    }
    let out_port = c.outbound_port.to_string();
    let in_port = c.inbound_port.to_string();
    r.push(rule(&[
        "-A",
        REDIRECT,
        "-p",
        "tcp",
        "-j",
        "REDIRECT",
        "--to-ports",
        &out_port,
    ]));
    r.push(rule(&[
        "-A",
        IN_REDIRECT,
        "-p",
        "tcp",
        "-j",
        "REDIRECT",
        "--to-ports",
        &in_port,
    ]));

    // Inbound: everything arriving for the pod, except the proxy's own ports.
    r.push(rule(&["-A", "PREROUTING", "-p", "tcp", "-j", INBOUND]));
    match &c.include_inbound_ports {
        None => {
            let mut skip: Vec<u16> = OWN_PORTS.to_vec();
            skip.extend([c.outbound_port, c.inbound_port]);
            skip.extend(&c.exclude_inbound_ports);
            skip.sort_unstable();
            skip.dedup();
            for p in skip {
                r.push(rule(&[
                    "-A",
                    INBOUND,
                    "-p",
                    "tcp",
                    "--dport",
                    &p.to_string(),
                    "-j",
                    "RETURN",
                ]));
            }
            r.push(rule(&["-A", INBOUND, "-p", "tcp", "-j", IN_REDIRECT]));
        }
        Some(ports) => {
            for p in ports {
                if c.exclude_inbound_ports.contains(p) {
                    continue;
                }
                r.push(rule(&[
                    "-A",
                    INBOUND,
                    "-p",
                    "tcp",
                    "--dport",
                    &p.to_string(),
                    "-j",
                    IN_REDIRECT,
                ]));
            }
        }
    }

    // Outbound: everything the pod's processes send, except the proxy's own traffic.
    r.push(rule(&["-A", "OUTPUT", "-p", "tcp", "-j", OUTPUT]));
    for p in &c.exclude_outbound_ports {
        r.push(rule(&[
            "-A",
            OUTPUT,
            "-p",
            "tcp",
            "--dport",
            &p.to_string(),
            "-j",
            "RETURN",
        ]));
    }
    let lo = family.loopback();
    let uid = c.proxy_uid.to_string();
    let gid = c.proxy_gid.to_string();
    // Istio: the proxy calling its own pod's IP over loopback goes to the inbound side
    // (a pod calling itself through its service); other loopback traffic of the app is
    // left alone, and so is everything the proxy itself sends.
    for (flag, id) in [("--uid-owner", &uid), ("--gid-owner", &gid)] {
        r.push(rule(&[
            "-A",
            OUTPUT,
            "!",
            "-d",
            lo,
            "-o",
            "lo",
            "-p",
            "tcp",
            "-m",
            "owner",
            flag,
            id,
            "-j",
            IN_REDIRECT,
        ]));
        r.push(rule(&[
            "-A", OUTPUT, "-o", "lo", "-m", "owner", "!", flag, id, "-j", "RETURN",
        ]));
        r.push(rule(&[
            "-A", OUTPUT, "-m", "owner", flag, id, "-j", "RETURN",
        ]));
    }
    r.push(rule(&["-A", OUTPUT, "-d", lo, "-j", "RETURN"]));
    for cidr in &c.exclude_outbound_cidrs {
        r.push(rule(&["-A", OUTPUT, "-d", cidr, "-j", "RETURN"]));
    }
    match &c.include_outbound_cidrs {
        None => r.push(rule(&["-A", OUTPUT, "-j", REDIRECT])),
        Some(cidrs) => {
            for cidr in cidrs {
                r.push(rule(&["-A", OUTPUT, "-d", cidr, "-j", REDIRECT]));
            }
        }
    }
    r
}

/// The calls that remove every rule [`install`] adds; each may fail harmlessly when the
/// rule is already gone, which is what makes install and cleanup idempotent.
pub fn cleanup() -> Vec<Vec<String>> {
    let mut r = vec![
        rule(&["-D", "PREROUTING", "-p", "tcp", "-j", INBOUND]),
        rule(&["-D", "OUTPUT", "-p", "tcp", "-j", OUTPUT]),
    ];
    for chain in [INBOUND, IN_REDIRECT, OUTPUT, REDIRECT] {
        r.push(rule(&["-F", chain]));
    }
    for chain in [INBOUND, IN_REDIRECT, OUTPUT, REDIRECT] {
        r.push(rule(&["-X", chain]));
    }
    r
}

/// Parses a comma-separated port list; `*` is `None` (all).
pub fn ports(s: &str) -> Result<Option<Vec<u16>>, String> {
    let s = s.trim();
    if s == "*" {
        return Ok(None);
    }
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<u16>().map_err(|_| format!("{p:?} is not a port")))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Parses a comma-separated CIDR list; `*` is `None` (all).
pub fn cidrs(s: &str) -> Result<Option<Vec<String>>, String> {
    let s = s.trim();
    if s == "*" {
        return Ok(None);
    }
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|c| {
            c.parse::<ipnet::IpNet>()
                .map(|n| n.to_string())
                .or_else(|_| {
                    c.parse::<std::net::IpAddr>()
                        .map(|a| ipnet::IpNet::from(a).to_string())
                })
                .map_err(|_| format!("{c:?} is not a CIDR"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture() -> Capture {
        Capture {
            outbound_port: 15001,
            inbound_port: 15006,
            proxy_uid: 1337,
            proxy_gid: 1337,
            include_inbound_ports: None,
            exclude_inbound_ports: vec![22],
            exclude_outbound_ports: vec![],
            include_outbound_cidrs: None,
            exclude_outbound_cidrs: vec!["10.0.0.0/8".into()],
        }
    }

    fn has(rules: &[Vec<String>], text: &str) -> bool {
        rules.iter().any(|r| r.join(" ").contains(text))
    }

    #[test]
    fn the_proxy_and_its_ports_are_never_captured() {
        let r = install(&capture(), Family::V4);
        assert!(has(
            &r,
            "-A MESHPROXY_INBOUND -p tcp --dport 15000 -j RETURN"
        ));
        assert!(has(
            &r,
            "-A MESHPROXY_INBOUND -p tcp --dport 15006 -j RETURN"
        ));
        assert!(has(&r, "-A MESHPROXY_INBOUND -p tcp --dport 22 -j RETURN"));
        assert!(has(
            &r,
            "-A MESHPROXY_OUTPUT -m owner --uid-owner 1337 -j RETURN"
        ));
        assert!(has(&r, "-A MESHPROXY_OUTPUT -d 127.0.0.1/32 -j RETURN"));
        assert!(has(&r, "-A MESHPROXY_OUTPUT -d 10.0.0.0/8 -j RETURN"));
        // The catch-all redirect comes after every exception.
        let last = r.last().unwrap().join(" ");
        assert_eq!(last, "-t nat -A MESHPROXY_OUTPUT -j MESHPROXY_REDIRECT");
    }

    #[test]
    fn ipv6_uses_its_loopback() {
        let r = install(&capture(), Family::V6);
        assert!(has(&r, "-d ::1/128 -j RETURN"));
    }

    #[test]
    fn lists_parse() {
        assert_eq!(ports("*").unwrap(), None);
        assert_eq!(ports("80, 443").unwrap(), Some(vec![80, 443]));
        assert!(ports("http").is_err());
        assert_eq!(cidrs("10.0.0.1").unwrap(), Some(vec!["10.0.0.1/32".into()]));
        assert!(cidrs("nope").is_err());
    }
}
