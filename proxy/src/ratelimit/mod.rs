//! RateLimitPolicy on the data path: the live counts of the compiled rules
//! (`meshproxy_config::compile::rate_limit`), the decision for one request, and the
//! counters `/metrics` shows (docs/config.md, "Rate limiting").
//!
//! `Local` rules count in this proxy ([`bucket`], [`distinct`]); `Global` rules count in
//! Redis ([`global`]). A request is counted by every rule it matches; it is refused when
//! a rule that is not `shadow` is over its limit. The live state of a rule is kept by a
//! reload that leaves the rule unchanged (its fingerprint), as a cluster's is.

pub mod bucket;
pub mod distinct;
pub mod global;
pub mod stats;

use bucket::{Bucket, Quota, Rate};
use distinct::Distinct;
use global::Backend;
use meshproxy_config::compile::matcher::RequestView;
use meshproxy_config::compile::rate_limit::{Client, RateLimits, Rule};
use stats::Stats;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

/// The live state of one rule.
#[derive(Debug)]
pub struct RuleState {
    fingerprint: u64,
    rate: Rate,
    /// The bucket of a Local rule without Distinct selectors.
    bucket: Bucket,
    /// Local: each value's bucket; Global: the keys known over their limit, with the
    /// window they are over in.
    values: Distinct,
    /// This rule's counters.
    pub stats: Stats,
}

/// The live rate-limit state of a config: one [`RuleState`] per compiled rule (aligned
/// with `snapshot.rate_limits`), and the Redis of Global rules.
pub struct RateLimiter {
    rules: Vec<Vec<Arc<RuleState>>>,
    backend: Option<Arc<Backend>>,
}

/// The decision for a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Forward it.
    Allow,
    /// Refuse it: 429 with the quota of the rule that refused.
    Limited {
        /// The rule's quota.
        quota: Quota,
        /// Counted in Redis.
        global: bool,
    },
    /// Redis failed and `failureModeDeny` is set.
    BackendFailed,
}

impl RateLimiter {
    /// The state for `cfg`, keeping `previous` state for unchanged rules and an unchanged
    /// Redis; `None` when no rule applies (the request path skips the step).
    pub fn build(cfg: &RateLimits, previous: Option<&RateLimiter>) -> Option<Arc<RateLimiter>> {
        if cfg.is_empty() {
            return None;
        }
        let old: HashMap<u64, &Arc<RuleState>> = previous
            .iter()
            .flat_map(|p| p.rules.iter().flatten())
            .map(|s| (s.fingerprint, s))
            .collect();
        let rules = cfg
            .policies
            .iter()
            .map(|p| {
                p.rules
                    .iter()
                    .map(|r| match old.get(&r.fingerprint) {
                        Some(s) => Arc::clone(s),
                        None => Arc::new(RuleState::new(r)),
                    })
                    .collect()
            })
            .collect();
        let backend = cfg.redis.as_ref().and_then(|settings| {
            let kept = previous
                .and_then(|p| p.backend.as_ref())
                .filter(|b| b.settings == *settings);
            match kept {
                Some(b) => Some(b.clone()),
                None => Backend::start(settings)
                    .map_err(|e| tracing::error!(error = %e, "rate-limit Redis not started"))
                    .ok(),
            }
        });
        Some(Arc::new(RateLimiter { rules, backend }))
    }

    /// The state of rule `rule` of policy `policy`.
    pub fn rule(&self, policy: usize, rule: usize) -> Option<&RuleState> {
        self.rules.get(policy)?.get(rule).map(|s| &**s)
    }

    /// Counts the request against every rule it matches and decides.
    pub async fn check(
        &self,
        cfg: &RateLimits,
        host: &str,
        req: &RequestView<'_>,
        client: &Client<'_>,
    ) -> Verdict {
        let mut verdict = Verdict::Allow;
        // Global keys to count: nothing is allocated unless a Global rule matches.
        let mut global: Vec<GlobalKey<'_>> = Vec::new();
        for (p, states) in cfg.policies.iter().zip(&self.rules) {
            if !p.for_host(host) {
                continue;
            }
            for (r, st) in p.rules.iter().zip(states) {
                if !r.applies(req, client) {
                    continue;
                }
                if p.global {
                    let (start, left) = global::window(r.unit_secs);
                    let key = with_key(r, req, client, |k| global::key(&p.name, &r.name, k, start));
                    if let Some(q) = st.known_over(r, &key, start, left) {
                        set_limited(&mut verdict, q, true);
                        continue;
                    }
                    global.push(GlobalKey {
                        state: st,
                        rule: r,
                        policy: &p.name,
                        key,
                    });
                    continue;
                }
                let q = st.take_local(r, req, client);
                st.stats.record(&p.name, r, q.allowed);
                if !q.allowed && !r.shadow {
                    set_limited(&mut verdict, q, false);
                }
            }
        }
        if !global.is_empty() && verdict == Verdict::Allow {
            verdict = self.count_global(cfg, &global).await;
        }
        verdict
    }

    /// One round trip for every Global key of the request.
    async fn count_global(&self, cfg: &RateLimits, keys: &[GlobalKey<'_>]) -> Verdict {
        let failed = || {
            for k in keys {
                k.state.stats.backend_error();
            }
            if cfg.failure_mode_deny {
                Verdict::BackendFailed
            } else {
                Verdict::Allow
            }
        };
        let Some(backend) = &self.backend else {
            return failed();
        };
        let request = keys.iter().map(|k| (k.key.as_slice(), k.rule.unit_secs));
        let Ok(counts) = backend.increment(request).await else {
            return failed();
        };
        let mut verdict = Verdict::Allow;
        for (
            GlobalKey {
                state: st,
                rule: r,
                policy,
                key,
            },
            count,
        ) in keys.iter().zip(counts)
        {
            let (start, left) = global::window(r.unit_secs);
            let allowed = count <= r.requests;
            st.stats.record(policy, r, allowed);
            let quota = Quota {
                allowed,
                limit: r.requests,
                window_secs: r.unit_secs,
                remaining: r.requests.saturating_sub(count),
                reset_secs: left,
            };
            if !allowed {
                st.values.update(key, |_| (Some(start + 1), ()));
                if !r.shadow {
                    set_limited(&mut verdict, quota, true);
                }
            }
        }
        verdict
    }
}

/// A Global rule's count to take for the request.
struct GlobalKey<'a> {
    state: &'a Arc<RuleState>,
    rule: &'a Rule,
    policy: &'a str,
    key: Vec<u8>,
}

/// The first refusing rule's quota is the one the response reports.
fn set_limited(verdict: &mut Verdict, quota: Quota, global: bool) {
    if *verdict == Verdict::Allow {
        *verdict = Verdict::Limited { quota, global };
    }
}

thread_local! {
    /// The distinct-values key of the rule being counted, reused by every request of the
    /// worker.
    static KEY: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on the rule's distinct-values key for the request (empty when it has none).
fn with_key<T>(
    r: &Rule,
    req: &RequestView<'_>,
    client: &Client<'_>,
    f: impl FnOnce(&[u8]) -> T,
) -> T {
    if !r.distinct {
        return f(&[]);
    }
    KEY.with(|k| {
        let mut k = k.borrow_mut();
        k.clear();
        r.distinct_key(req, client, &mut k);
        f(&k)
    })
}

impl RuleState {
    fn new(r: &Rule) -> RuleState {
        RuleState {
            fingerprint: r.fingerprint,
            rate: Rate::new(r.requests, r.unit_secs),
            bucket: Bucket::default(),
            values: Distinct::default(),
            stats: Stats::default(),
        }
    }

    /// Local: takes a token from the rule's bucket (or the client value's).
    fn take_local(&self, r: &Rule, req: &RequestView<'_>, client: &Client<'_>) -> Quota {
        let now = bucket::now_nanos();
        if !r.distinct {
            return self.bucket.take(&self.rate, now);
        }
        with_key(r, req, client, |key| {
            self.values.update(key, |tat| self.rate.take(tat, now))
        })
    }

    /// Global: the key was seen over its limit in this window, so it is refused without
    /// asking Redis (shadow rules are always counted).
    fn known_over(&self, r: &Rule, key: &[u8], start: u64, left: u64) -> Option<Quota> {
        if r.shadow {
            return None;
        }
        let over = self.values.update(key, |w| (None, w == start + 1));
        if !over {
            return None;
        }
        self.stats.limited_locally();
        Some(Quota {
            allowed: false,
            limit: r.requests,
            window_secs: r.unit_secs,
            remaining: 0,
            reset_secs: left,
        })
    }

    /// Distinct values (Local) or over-limit keys (Global) held now.
    pub fn values_held(&self) -> usize {
        self.values.len()
    }
}
