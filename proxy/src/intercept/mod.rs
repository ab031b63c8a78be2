//! Transparent interception: the iptables rules of `meshproxy init` ([`iptables`]) and
//! reading where an intercepted connection was going ([`original_dst`]).

pub mod iptables;

use std::net::SocketAddr;
use std::os::fd::AsFd;

/// Where an intercepted connection was going before the nat `REDIRECT` rewrote it
/// (`SO_ORIGINAL_DST`, IPv4 and IPv6). `None` when the connection was not redirected:
/// the original destination is then the socket's own local address.
pub fn original_dst(stream: &impl AsFd, local: SocketAddr) -> Option<SocketAddr> {
    use nix::sys::socket::{getsockopt, sockopt};
    let dst: SocketAddr = if local.is_ipv4() {
        let a = getsockopt(stream, sockopt::OriginalDst).ok()?;
        let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
        SocketAddr::from((ip, u16::from_be(a.sin_port)))
    } else {
        let a = getsockopt(stream, sockopt::Ip6tOriginalDst).ok()?;
        let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
        SocketAddr::from((ip, u16::from_be(a.sin6_port)))
    };
    (dst != local).then_some(dst)
}
