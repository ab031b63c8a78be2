//! Route tables: request host → virtual host → ordered routes. Exact domains are a hash
//! lookup; wildcard domains are tried most specific first; `*` is the fallback.

use super::matcher::{RequestView, RouteMatch};
use super::route::Route;
use std::collections::HashMap;
use std::sync::Arc;

/// A set of domains sharing one ordered list of routes.
#[derive(Clone, Debug)]
pub struct VirtualHost {
    /// Name (the primary host, or the VirtualService's).
    pub name: String,
    /// Every domain that reaches this virtual host (lower case, no port). Shared with
    /// the table's index: one copy of each name.
    pub domains: Vec<Arc<str>>,
    /// Routes, first match wins.
    pub routes: Vec<Route>,
}

impl VirtualHost {
    /// The first route whose conditions hold, with the condition that matched.
    pub fn find_route(&self, req: &RequestView<'_>) -> Option<(&Route, Option<&RouteMatch>)> {
        self.routes
            .iter()
            .find_map(|r| r.find_match(req).map(|m| (r, m)))
    }
}

/// A route table (one per listener kind: the mesh, or a gateway port).
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    /// Name (`mesh` or `gateway:<port>`).
    pub name: String,
    /// Virtual hosts.
    pub virtual_hosts: Vec<VirtualHost>,
    exact: HashMap<Arc<str>, usize>,
    /// (suffix after `*`, virtual host), longest suffix first.
    wildcards: Vec<(String, usize)>,
    any: Option<usize>,
}

impl RouteTable {
    /// A table with no virtual hosts.
    pub fn new(name: impl Into<String>) -> Self {
        RouteTable {
            name: name.into(),
            ..Default::default()
        }
    }

    /// Adds a virtual host and indexes its domains. A domain already claimed keeps its
    /// first owner; the caller decides precedence by insertion order. Returns the domains
    /// that were already taken.
    pub fn add(&mut self, mut vh: VirtualHost) -> Vec<String> {
        vh.domains.shrink_to_fit();
        let taken = self.index(self.virtual_hosts.len(), &vh);
        self.virtual_hosts.push(vh);
        taken
    }

    /// A table of `virtual_hosts`, added in order ([`RouteTable::add`]), built in place:
    /// the list becomes the table's and the index is sized once, where adding one by one
    /// held the list twice and regrew the index (2 MB at 10,000 services, at the peak of
    /// a reload).
    pub fn from_virtual_hosts(
        name: impl Into<String>,
        mut virtual_hosts: Vec<VirtualHost>,
    ) -> Self {
        virtual_hosts.shrink_to_fit();
        let mut table = RouteTable::new(name);
        let exact = virtual_hosts
            .iter()
            .flat_map(|v| &v.domains)
            .filter(|d| !d.starts_with('*'))
            .count();
        table.exact.reserve(exact);
        for (i, vh) in virtual_hosts.iter_mut().enumerate() {
            vh.domains.shrink_to_fit();
            table.index(i, vh);
        }
        table.virtual_hosts = virtual_hosts;
        table
    }

    /// Indexes the domains of `vh`, virtual host `idx`; returns those already taken.
    fn index(&mut self, idx: usize, vh: &VirtualHost) -> Vec<String> {
        let mut taken = Vec::new();
        for d in &vh.domains {
            if &**d == "*" {
                if self.any.is_none() {
                    self.any = Some(idx);
                } else {
                    taken.push(d.to_string());
                }
            } else if let Some(suffix) = d.strip_prefix('*') {
                if self.wildcards.iter().any(|(s, _)| s == suffix) {
                    taken.push(d.to_string());
                } else {
                    self.wildcards.push((suffix.to_string(), idx));
                }
            } else if self.exact.contains_key(&**d) {
                taken.push(d.to_string());
            } else {
                self.exact.insert(d.clone(), idx);
            }
        }
        self.wildcards.sort_by_key(|w| std::cmp::Reverse(w.0.len()));
        taken
    }

    /// True when `domain` (exact, `*.x` or `*`) is already claimed.
    pub fn claims(&self, domain: &str) -> bool {
        if domain == "*" {
            self.any.is_some()
        } else if let Some(s) = domain.strip_prefix('*') {
            self.wildcards.iter().any(|(w, _)| w == s)
        } else {
            self.exact.contains_key(domain)
        }
    }

    /// Finds the virtual host for a lower-case host without port.
    pub fn find(&self, host: &str) -> Option<&VirtualHost> {
        if let Some(&i) = self.exact.get(host) {
            return Some(&self.virtual_hosts[i]);
        }
        for (suffix, i) in &self.wildcards {
            if host.len() > suffix.len() && host.ends_with(suffix.as_str()) {
                return Some(&self.virtual_hosts[*i]);
            }
        }
        self.any.map(|i| &self.virtual_hosts[i])
    }

    /// Drops the spare room the table grew with (it is read-only from here on).
    pub fn shrink_to_fit(&mut self) {
        self.virtual_hosts.shrink_to_fit();
        self.exact.shrink_to_fit();
        self.wildcards.shrink_to_fit();
    }

    /// Number of domains indexed.
    pub fn domain_count(&self) -> usize {
        self.exact.len() + self.wildcards.len() + self.any.is_some() as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vh(name: &str, domains: &[&str]) -> VirtualHost {
        VirtualHost {
            name: name.into(),
            domains: domains.iter().map(|d| Arc::from(*d)).collect(),
            routes: Vec::new(),
        }
    }

    #[test]
    fn exact_then_most_specific_wildcard_then_any() {
        let mut t = RouteTable::new("mesh");
        t.add(vh("a", &["a.foo.com"]));
        t.add(vh("w1", &["*.foo.com"]));
        t.add(vh("w2", &["*.b.foo.com"]));
        t.add(vh("any", &["*"]));
        assert_eq!(t.find("a.foo.com").unwrap().name, "a");
        assert_eq!(t.find("x.b.foo.com").unwrap().name, "w2");
        assert_eq!(t.find("x.foo.com").unwrap().name, "w1");
        assert_eq!(
            t.find("foo.com").unwrap().name,
            "any",
            "*.foo.com does not match foo.com"
        );
        assert_eq!(t.find("other").unwrap().name, "any");
    }

    #[test]
    fn first_claim_wins() {
        let mut t = RouteTable::new("mesh");
        assert!(t.add(vh("first", &["a"])).is_empty());
        assert_eq!(t.add(vh("second", &["a", "b"])), vec!["a".to_string()]);
        assert_eq!(t.find("a").unwrap().name, "first");
        assert_eq!(t.find("b").unwrap().name, "second");
    }
}
