//! `resolution: DNS` as Envoy's STRICT_DNS: every address a cluster's names resolve to is
//! an endpoint, re-resolved off the request path.
//!
//! One task per name, on a thread of its own ([`runtime`]), started with the cluster's
//! live state — that is on the cluster's first use, as all live state is
//! (runtime/active.rs): a sidecar that knows a thousand DNS services and talks to three
//! asks DNS about three. Each answer is applied by [`super::endpoint_set::diff`]:
//! addresses that stay keep their state (pools, ejections, counters), new ones get fresh
//! state, the ones that go are drained (never picked again, idle connections closed,
//! requests in flight finish). A failed lookup keeps the last good answer. The next
//! lookup comes at the answer's TTL (Istio sets Envoy's `respect_dns_ttl`), else at
//! `spec.dns.refreshRate`. The tasks end when the live state is dropped (a reload that
//! changed or removed the cluster).

use super::cluster_state::EndpointState;
use super::endpoint_set::{diff, EndpointSet};
use super::resolver::{next_refresh, Answer, Resolver};
use arc_swap::ArcSwap;
use meshproxy_config::compile::cluster::{Cluster, EndpointAddress, LoadBalancer};
use meshproxy_config::compile::intern::Labels;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::watch;

/// The background resolution of one cluster; dropping it stops its tasks.
pub struct DnsRefresh {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::AbortHandle>,
}

impl Drop for DnsRefresh {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A name of the cluster and what it resolves to now.
struct Name {
    host: String,
    port: u16,
    weight: u32,
    labels: Labels,
    /// Current members, in a stable order.
    resolved: Vec<(IpAddr, Arc<EndpointState>)>,
    /// Whether an answer (or a failure) came yet.
    answered: bool,
    /// Lookups that got an answer, and lookups that failed.
    answers: u64,
    failures: u64,
    /// Why the last lookup failed, when it did.
    last_error: Option<String>,
}

/// What `/clusters` shows of one name of a DNS cluster.
#[derive(Clone, Debug)]
pub struct NameStatus {
    /// The name.
    pub host: String,
    /// The endpoint port its addresses get.
    pub port: u16,
    /// Addresses it resolves to now.
    pub addresses: usize,
    /// Lookups answered (an empty answer included).
    pub answers: u64,
    /// Lookups that failed (the previous addresses were kept).
    pub failures: u64,
    /// The error of the last lookup, if it failed.
    pub last_error: Option<String>,
}

/// A cluster endpoint as configured: a fixed address, or a name.
enum Slot {
    Fixed(Arc<EndpointState>),
    Name(Name),
}

struct Slots {
    slots: Vec<Slot>,
    /// Removed endpoints whose connections are still in use: their pools are cleared again
    /// on each answer (a connection opened during the drain), and they are forgotten
    /// when nothing else holds them.
    draining: Vec<Arc<EndpointState>>,
}

/// What the refresh tasks share with the cluster state.
struct Shared {
    cluster: String,
    lb: LoadBalancer,
    workers: usize,
    resolver: Arc<Resolver>,
    set: Arc<ArcSwap<EndpointSet>>,
    slots: Mutex<Slots>,
    /// True once every name had its first answer or failure (Envoy initializes a
    /// STRICT_DNS cluster when its first resolutions complete).
    ready: AtomicBool,
    first: watch::Sender<bool>,
}

/// The thread the refresh tasks run on, started on the first DNS cluster's use: lookups
/// and timers never run on a worker, and outlive no worker.
fn runtime() -> &'static tokio::runtime::Handle {
    static RT: OnceLock<tokio::runtime::Handle> = OnceLock::new();
    RT.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("cannot start the DNS runtime");
        let handle = rt.handle().clone();
        std::thread::Builder::new()
            .name("meshproxy-dns".into())
            .spawn(move || rt.block_on(std::future::pending::<()>()))
            .expect("cannot start the DNS thread");
        handle
    })
}

impl DnsRefresh {
    /// Starts resolving the DNS names among `cluster`'s endpoints; `None` when it has
    /// none. Returns the endpoint set the tasks keep current (at first the cluster's
    /// fixed endpoints only).
    pub fn start(
        cluster: &Cluster,
        workers: usize,
        resolver: &Arc<Resolver>,
    ) -> Option<(DnsRefresh, Arc<ArcSwap<EndpointSet>>)> {
        let mut hosts = Vec::new();
        let slots: Vec<Slot> = cluster
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| match &e.address {
                EndpointAddress::Dns(host, port) => {
                    hosts.push((i, host.clone()));
                    Slot::Name(Name {
                        host: host.clone(),
                        port: *port,
                        weight: e.weight,
                        labels: e.labels.clone(),
                        resolved: Vec::new(),
                        answered: false,
                        answers: 0,
                        failures: 0,
                        last_error: None,
                    })
                }
                a => Slot::Fixed(Arc::new(EndpointState::new(
                    a.clone(),
                    e.weight,
                    e.labels.clone(),
                    workers,
                ))),
            })
            .collect();
        if hosts.is_empty() {
            return None;
        }
        let slots = Slots {
            slots,
            draining: Vec::new(),
        };
        let set = Arc::new(ArcSwap::from_pointee(EndpointSet::build(
            slots.members(),
            &cluster.load_balancer,
        )));
        let shared = Arc::new(Shared {
            cluster: cluster.name.to_string(),
            lb: cluster.load_balancer.clone(),
            workers,
            resolver: resolver.clone(),
            set: set.clone(),
            slots: Mutex::new(slots),
            ready: AtomicBool::new(false),
            first: watch::channel(false).0,
        });
        let tasks = hosts
            .into_iter()
            .map(|(slot, host)| {
                runtime()
                    .spawn(refresh(shared.clone(), slot, host))
                    .abort_handle()
            })
            .collect();
        Some((DnsRefresh { shared, tasks }, set))
    }

    /// Waits, at most `limit`, for every name's first answer: the first requests of a
    /// cluster that was never resolved (later ones never wait).
    pub async fn ready(&self, limit: Duration) {
        if self.shared.ready.load(Ordering::Acquire) {
            return;
        }
        let mut rx = self.shared.first.subscribe();
        let _ = tokio::time::timeout(limit, rx.wait_for(|r| *r)).await;
    }

    /// Each name with its resolution state.
    pub fn names(&self) -> Vec<NameStatus> {
        let g = self.shared.slots.lock().unwrap_or_else(|p| p.into_inner());
        g.slots
            .iter()
            .filter_map(|s| match s {
                Slot::Name(n) => Some(NameStatus {
                    host: n.host.clone(),
                    port: n.port,
                    addresses: n.resolved.len(),
                    answers: n.answers,
                    failures: n.failures,
                    last_error: n.last_error.clone(),
                }),
                Slot::Fixed(_) => None,
            })
            .collect()
    }

    /// The resolver the cluster asks (a reload that changes `spec.dns` makes new state).
    pub fn resolver(&self) -> &Arc<Resolver> {
        &self.shared.resolver
    }
}

impl Slots {
    /// Every current member, in slot order.
    fn members(&self) -> Vec<Arc<EndpointState>> {
        let mut out = Vec::new();
        for s in &self.slots {
            match s {
                Slot::Fixed(e) => out.push(e.clone()),
                Slot::Name(n) => out.extend(n.resolved.iter().map(|(_, e)| e.clone())),
            }
        }
        out
    }
}

/// Resolves `host` (slot `slot`) for as long as the cluster lives.
async fn refresh(shared: Arc<Shared>, slot: usize, host: String) {
    let rate = shared.resolver.settings().refresh_rate;
    loop {
        let answer = shared.resolver.lookup(&host).await;
        shared.apply(slot, &answer);
        tokio::time::sleep(next_refresh(&answer, rate)).await;
    }
}

impl Shared {
    /// Applies an answer for slot `slot`: a new endpoint set when its addresses changed.
    fn apply(&self, slot: usize, answer: &Answer) {
        let mut g = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let Some(Slot::Name(name)) = g.slots.get_mut(slot) else {
            return;
        };
        let first = !std::mem::replace(&mut name.answered, true);
        let mut gone = Vec::new();
        let mut changed = false;
        match answer {
            Answer::Failed(e) => {
                name.failures += 1;
                name.last_error = Some(e.clone());
                // Envoy keeps the hosts of the last successful resolution.
                tracing::warn!(cluster = %self.cluster, host = %name.host, error = %e, kept = name.resolved.len(), "DNS resolution failed; keeping the last answer");
            }
            Answer::Addresses { ips, .. } => {
                name.answers += 1;
                name.last_error = None;
                let old: Vec<IpAddr> = name.resolved.iter().map(|(ip, _)| *ip).collect();
                let d = diff(&old, ips);
                if !d.is_empty() {
                    changed = true;
                    tracing::info!(cluster = %self.cluster, host = %name.host, added = ?d.added, removed = ?d.removed, "DNS endpoints changed");
                    let mut before: HashMap<IpAddr, Arc<EndpointState>> =
                        name.resolved.drain(..).collect();
                    name.resolved = d
                        .members
                        .iter()
                        .map(|ip| {
                            let ep = before
                                .remove(ip)
                                .unwrap_or_else(|| endpoint(name, *ip, self.workers));
                            (*ip, ep)
                        })
                        .collect();
                    gone.extend(before.into_values());
                }
            }
        }
        if changed {
            self.set
                .store(Arc::new(EndpointSet::build(g.members(), &self.lb)));
        }
        // After the swap, so no request picks a drained endpoint from the new set.
        for ep in gone {
            ep.drain();
            g.draining.push(ep);
        }
        g.draining.retain(|ep| {
            ep.pool.clear();
            Arc::strong_count(ep) > 1
        });
        let all_answered = g.slots.iter().all(|s| match s {
            Slot::Name(n) => n.answered,
            Slot::Fixed(_) => true,
        });
        drop(g);
        if first && all_answered && !self.ready.swap(true, Ordering::AcqRel) {
            self.first.send_replace(true);
        }
    }
}

/// Fresh live state for address `ip` of `name`: the declaring endpoint's port, weight
/// and labels.
fn endpoint(name: &Name, ip: IpAddr, workers: usize) -> Arc<EndpointState> {
    let mut ep = EndpointState::new(
        EndpointAddress::Socket(SocketAddr::new(ip, name.port)),
        name.weight,
        name.labels.clone(),
        workers,
    );
    ep.hostname = Some(name.host.clone());
    Arc::new(ep)
}

#[cfg(test)]
mod tests {
    use super::super::cluster_state::ClusterState;
    use super::*;
    use meshproxy_config::compile::cluster::Endpoint;
    use meshproxy_config::compile::proxy_settings::DnsSettings;

    fn cluster(endpoints: Vec<EndpointAddress>) -> Cluster {
        let endpoints = endpoints
            .into_iter()
            .map(|address| Endpoint {
                address,
                labels: Default::default(),
                weight: 1,
                service_account: None,
            })
            .collect();
        super::super::test_cluster(endpoints, LoadBalancer::RoundRobin)
    }

    fn resolver() -> Arc<Resolver> {
        // Nothing answers on the discard port: every lookup fails.
        Resolver::new(&DnsSettings {
            resolver: Some("127.0.0.1:9".parse().unwrap()),
            refresh_rate: Duration::from_millis(50),
        })
    }

    #[test]
    fn a_cluster_without_names_has_no_background_resolution() {
        let r = resolver();
        let c = cluster(vec![EndpointAddress::Socket(
            "10.0.0.1:80".parse().unwrap(),
        )]);
        let s = ClusterState::with_resolver(&c, 1, Some(&r));
        assert!(s.dns_names().is_empty());
        assert_eq!(s.endpoints().len(), 1);
        assert_eq!(Arc::strong_count(&r), 1, "no task holds the resolver");
    }

    #[tokio::test]
    async fn fixed_endpoints_serve_at_once_and_dropping_the_state_stops_the_lookups() {
        let r = resolver();
        let c = cluster(vec![
            EndpointAddress::Socket("10.0.0.1:80".parse().unwrap()),
            EndpointAddress::Dns("name.test".into(), 80),
        ]);
        let s = ClusterState::with_resolver(&c, 1, Some(&r));
        assert_eq!(
            s.endpoints().len(),
            1,
            "the fixed address, before any answer"
        );
        // The first lookup fails: the cluster is ready with what it has.
        tokio::time::timeout(Duration::from_secs(30), s.resolved(Duration::from_secs(60)))
            .await
            .expect("ready after the first failure");
        assert!(s.dns_names()[0].failures >= 1);
        assert_eq!(s.endpoints().len(), 1);
        assert!(Arc::strong_count(&r) > 1, "the task holds the resolver");
        drop(s);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&r) > 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "the task outlived its cluster"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
