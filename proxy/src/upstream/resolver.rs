//! The DNS client of `resolution: DNS` clusters: asks the resolver of `spec.dns` (the
//! system's, from `/etc/resolv.conf`, by default) and reports each answer's TTL, which
//! decides when the name is asked again (Istio sets Envoy's `respect_dns_ttl`).
//!
//! Lookups only run on the DNS thread ([`super::dns_refresh`]), never on a request path.

use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfigGroup, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::TokioResolver;
use meshproxy_config::compile::proxy_settings::DnsSettings;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Envoy: `dns_min_refresh_rate` defaults to 5s — a TTL below it (but above 0) is
/// refreshed at this rate instead, so a 1-second record does not make a query a second.
pub const MIN_TTL_REFRESH: Duration = Duration::from_secs(5);

/// A lookup with no answer by then has failed: hickory retries each query and asks for
/// IPv6 after IPv4, so a server that never answers would hold a lookup for 30 s (Envoy's
/// c-ares gives up after a similar bound: 5 s per try).
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// What one lookup said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The name's addresses (empty when the name exists without any, or does not exist:
    /// both are answers, and empty the name's endpoints as in Envoy), with the smallest
    /// TTL of the records (`None`: no TTL, or 0).
    Addresses {
        /// Addresses, in the order of the answer.
        ips: Vec<IpAddr>,
        /// Smallest record TTL.
        ttl: Option<Duration>,
    },
    /// No answer (timeout, refused, server failure, unreadable resolver config): the
    /// previous addresses are kept.
    Failed(String),
}

/// When to ask again after `answer` (Envoy's STRICT_DNS with `respect_dns_ttl: true`):
/// at the TTL, never sooner than [`MIN_TTL_REFRESH`]; at `refresh_rate` when the answer
/// had no TTL or the lookup failed (Istio sets no `dns_failure_refresh_rate`, so Envoy
/// retries a failure at `dns_refresh_rate`).
pub fn next_refresh(answer: &Answer, refresh_rate: Duration) -> Duration {
    match answer {
        Answer::Addresses { ttl: Some(t), .. } if !t.is_zero() => (*t).max(MIN_TTL_REFRESH),
        _ => refresh_rate,
    }
}

/// A DNS client for one `spec.dns` setting, built on its first lookup (no resolver
/// config is read by a proxy that has no DNS cluster in use).
pub struct Resolver {
    settings: DnsSettings,
    client: OnceLock<Result<TokioResolver, String>>,
}

impl Resolver {
    /// A resolver for `settings`.
    pub fn new(settings: &DnsSettings) -> Arc<Resolver> {
        Arc::new(Resolver {
            settings: settings.clone(),
            client: OnceLock::new(),
        })
    }

    /// The settings it was made for.
    pub fn settings(&self) -> &DnsSettings {
        &self.settings
    }

    /// Resolves `host` to its addresses. Must run inside a tokio runtime.
    pub async fn lookup(&self, host: &str) -> Answer {
        let client = match self.client.get_or_init(|| build(&self.settings)) {
            Ok(c) => c,
            Err(e) => return Answer::Failed(e.clone()),
        };
        // Every refresh asks the server: the refresh is already scheduled by the TTL, and
        // a cached answer would only delay a change by another TTL.
        client.clear_cache();
        let found = match tokio::time::timeout(LOOKUP_TIMEOUT, client.lookup_ip(host)).await {
            Ok(found) => found,
            Err(_) => {
                return Answer::Failed(format!("no answer within {}s", LOOKUP_TIMEOUT.as_secs()))
            }
        };
        match found {
            Ok(found) => {
                let left = found
                    .valid_until()
                    .saturating_duration_since(Instant::now());
                let mut ips: Vec<IpAddr> = found.iter().collect();
                ips.dedup();
                // A TTL is whole seconds: what is left of it below half a second is 0.
                let ttl = (left >= Duration::from_millis(500))
                    .then(|| Duration::from_secs(left.as_secs_f64().round() as u64));
                Answer::Addresses { ips, ttl }
            }
            // NXDOMAIN or no A/AAAA record: an answer with no address.
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => Answer::Addresses {
                ips: Vec::new(),
                ttl: None,
            },
            Err(e) => Answer::Failed(e.to_string()),
        }
    }
}

/// The hickory client for `settings`: the system's configuration (nameservers, search
/// domains, `ndots`, `/etc/hosts`) or the one server of `spec.dns.resolver`.
fn build(settings: &DnsSettings) -> Result<TokioResolver, String> {
    let mut builder = match settings.resolver {
        None => TokioResolver::builder_tokio()
            .map_err(|e| format!("cannot read the system resolver configuration: {e}"))?,
        Some(addr) => {
            let servers = NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true);
            let mut b = TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, Vec::new(), servers),
                TokioConnectionProvider::default(),
            );
            // A configured server is the authority: no local hosts file in between.
            b.options_mut().use_hosts_file = ResolveHosts::Never;
            b
        }
    };
    let opts: &mut ResolverOpts = builder.options_mut();
    // IPv4 addresses, or IPv6 ones when a name has none (Istio asks Envoy for V4_ONLY on
    // IPv4 proxies and ALL on dual-stack ones).
    opts.ip_strategy = LookupIpStrategy::Ipv4thenIpv6;
    opts.cache_size = 0;
    Ok(builder.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(ttl: Option<u64>) -> Answer {
        Answer::Addresses {
            ips: vec!["10.0.0.1".parse().unwrap()],
            ttl: ttl.map(Duration::from_secs),
        }
    }

    #[test]
    fn refresh_follows_the_ttl_within_envoys_minimum() {
        let rate = Duration::from_secs(60);
        assert_eq!(
            next_refresh(&addrs(Some(30)), rate),
            Duration::from_secs(30)
        );
        assert_eq!(
            next_refresh(&addrs(Some(600)), rate),
            Duration::from_secs(600)
        );
        assert_eq!(next_refresh(&addrs(Some(1)), rate), MIN_TTL_REFRESH);
        assert_eq!(next_refresh(&addrs(Some(0)), rate), rate);
        assert_eq!(next_refresh(&addrs(None), rate), rate);
        assert_eq!(next_refresh(&Answer::Failed("x".into()), rate), rate);
    }

    #[tokio::test]
    async fn the_system_resolver_answers_localhost() {
        // /etc/hosts is part of the system configuration.
        let r = Resolver::new(&DnsSettings::default());
        match r.lookup("localhost").await {
            Answer::Addresses { ips, .. } => {
                assert!(ips.iter().all(|ip| ip.is_loopback()), "{ips:?}");
                assert!(!ips.is_empty());
            }
            Answer::Failed(e) => panic!("{e}"),
        }
    }
}
