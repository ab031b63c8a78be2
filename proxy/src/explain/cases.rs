//! `meshproxy test`: a YAML file of cases, each a request and what its outcome must be,
//! checked against the compiled config with [`super::decide`]. Unknown fields are errors,
//! so a misspelt expectation can never pass silently.

use super::decision::{Action, Decision, Destination};
use super::request::RequestSpec;
use meshproxy_config::compile::Snapshot;
use serde::Deserialize;
use std::collections::BTreeMap;

/// A test file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// The cases, checked in order.
    pub tests: Vec<Case>,
}

/// One case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// What it checks, in words.
    pub name: String,
    /// The request.
    pub request: RequestSpec,
    /// What must happen.
    pub expect: Expect,
}

/// Expectations; every one given must hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Expect {
    /// The (single) destination the request is forwarded to.
    pub destination: Option<DestinationExpect>,
    /// The configured split: subset (or host) → weight, compared as shares of the total.
    pub weights: Option<BTreeMap<String, u32>>,
    /// The status of a local reply (404, 502, 301, a fault abort...).
    pub status: Option<u16>,
    /// The `Location` of a redirect.
    pub location: Option<String>,
    /// The route: `VIRTUALSERVICE`, `VIRTUALSERVICE#RULE` (rule name or index), or a route
    /// name (`default`, `block_all`).
    pub route: Option<String>,
    /// The upstream path and authority after rewrites.
    pub rewrite: Option<RewriteExpect>,
    /// Upstream request headers after edits: name → value, or `null` for absent.
    pub request_headers: Option<BTreeMap<String, Option<String>>>,
    /// Response headers the route sets: name → value, or `null` for absent/removed.
    pub response_headers: Option<BTreeMap<String, Option<String>>>,
    /// AuthorizationPolicy's decision on an INBOUND listener.
    pub authz: Option<AuthzExpect>,
}

/// `expect.authz`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AuthzExpect {
    /// Allowed.
    Allow,
    /// Denied (403).
    Deny,
}

/// `expect.destination`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationExpect {
    /// Host (a short name matches its qualified form).
    pub host: Option<String>,
    /// Subset (`""` for none).
    pub subset: Option<String>,
    /// Service port.
    pub port: Option<u16>,
}

/// `expect.rewrite`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewriteExpect {
    /// The upstream path (query excluded).
    pub uri: Option<String>,
    /// The upstream authority.
    pub authority: Option<String>,
}

/// A case's result.
#[derive(Debug)]
pub struct CaseResult {
    /// The case's name.
    pub name: String,
    /// What did not hold (empty: passed).
    pub failures: Vec<String>,
}

/// Parses a test file; the error names the field and line.
pub fn parse(text: &str) -> Result<TestFile, String> {
    let file: TestFile = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
    for (i, c) in file.tests.iter().enumerate() {
        let e = &c.expect;
        let none = e.destination.is_none()
            && e.weights.is_none()
            && e.status.is_none()
            && e.location.is_none()
            && e.route.is_none()
            && e.rewrite.is_none()
            && e.request_headers.is_none()
            && e.response_headers.is_none()
            && e.authz.is_none();
        if none {
            return Err(format!("tests[{i}] ({:?}): expect is empty", c.name));
        }
    }
    Ok(file)
}

/// Checks every case.
pub fn run(snap: &Snapshot, file: &TestFile) -> Vec<CaseResult> {
    file.tests
        .iter()
        .map(|c| CaseResult {
            name: c.name.clone(),
            failures: match super::decide(snap, &c.request) {
                Ok(d) => check(&c.expect, &d),
                Err(e) => vec![format!("request: {e}")],
            },
        })
        .collect()
}

/// The expectations that do not hold for `d`, one readable line each.
pub fn check(e: &Expect, d: &Decision) -> Vec<String> {
    let mut out = Vec::new();
    let outcome = &d.outcome;
    let dests = match d.route.as_ref().map(|r| &r.action) {
        Some(Action::Forward { destinations }) if outcome.kind == "forward" => {
            destinations.as_slice()
        }
        _ => &[],
    };
    let not_forwarded = || format!("not forwarded: {}", outcome.summary);
    if let Some(want) = e.status {
        match outcome.status {
            Some(got) if got == want => {}
            Some(got) => out.push(format!(
                "status: expected {want}, got {got} ({})",
                outcome.summary
            )),
            None => out.push(format!(
                "status: expected a local reply {want}, got: {}",
                outcome.summary
            )),
        }
    }
    if let Some(want) = &e.location {
        let got = outcome.location.as_deref().unwrap_or("(none)");
        if got != want {
            out.push(format!("location: expected {want:?}, got {got:?}"));
        }
    }
    if let Some(want) = &e.destination {
        check_destination(want, dests, &mut out, not_forwarded);
    }
    if let Some(want) = &e.weights {
        check_weights(want, dests, &mut out, not_forwarded);
    }
    if let Some(want) = &e.route {
        check_route(want, d, &mut out);
    }
    if let Some(want) = e.authz {
        check_authz(want, d, &mut out);
    }
    check_upstream(e, dests, &mut out, not_forwarded);
    out
}

/// The expectations on the upstream request and the response edits.
fn check_upstream(
    e: &Expect,
    dests: &[Destination],
    out: &mut Vec<String>,
    not_forwarded: impl Fn() -> String,
) {
    if let Some(want) = &e.rewrite {
        match dests.first() {
            None => out.push(format!("rewrite: {}", not_forwarded())),
            Some(dest) => {
                let path = dest.upstream.path.split('?').next().unwrap_or("");
                if let Some(uri) = want.uri.as_deref().filter(|u| *u != path) {
                    out.push(format!("rewrite.uri: expected {uri:?}, got {path:?}"));
                }
                let authority = &dest.upstream.authority;
                if let Some(a) = want.authority.as_deref().filter(|a| a != authority) {
                    out.push(format!(
                        "rewrite.authority: expected {a:?}, got {authority:?}"
                    ));
                }
            }
        }
    }
    if let Some(want) = &e.request_headers {
        if dests.is_empty() {
            out.push(format!("requestHeaders: {}", not_forwarded()));
        }
        for dest in dests {
            let got = |k: &str| dest.upstream.headers.get(k).cloned();
            headers_diff("requestHeaders", want, got, dest, out);
        }
    }
    if let Some(want) = &e.response_headers {
        if dests.is_empty() {
            out.push(format!("responseHeaders: {}", not_forwarded()));
        }
        for dest in dests {
            let got = |k: &str| dest.response_headers.get(k).cloned().flatten();
            headers_diff("responseHeaders", want, got, dest, out);
        }
    }
}

/// A short host (`reviews`) names its qualified form (`reviews.default.svc.cluster.local`).
fn host_is(want: &str, host: &str) -> bool {
    host == want
        || host
            .strip_prefix(want)
            .is_some_and(|rest| rest.starts_with('.'))
}

fn label(d: &Destination) -> String {
    if d.subset.is_empty() {
        d.host.clone()
    } else {
        d.subset.clone()
    }
}

fn check_destination(
    want: &DestinationExpect,
    dests: &[Destination],
    out: &mut Vec<String>,
    not_forwarded: impl Fn() -> String,
) {
    let d = match dests {
        [] => return out.push(format!("destination: {}", not_forwarded())),
        [d] => d,
        many => {
            let split: Vec<String> = many
                .iter()
                .map(|d| format!("{} {}%", label(d), d.percent))
                .collect();
            return out.push(format!(
                "destination: the route splits over {} destinations ({}); check it with expect.weights",
                many.len(),
                split.join(", ")
            ));
        }
    };
    if let Some(h) = want.host.as_deref().filter(|h| !host_is(h, &d.host)) {
        out.push(format!(
            "destination.host: expected {h:?}, got {:?}",
            d.host
        ));
    }
    if let Some(s) = want.subset.as_deref().filter(|s| *s != d.subset) {
        out.push(format!(
            "destination.subset: expected {s:?}, got {:?}",
            d.subset
        ));
    }
    if let Some(p) = want.port.filter(|p| Some(*p) != d.port) {
        let got = d.port.map_or("none".to_string(), |p| p.to_string());
        out.push(format!("destination.port: expected {p}, got {got}"));
    }
}

fn check_weights(
    want: &BTreeMap<String, u32>,
    dests: &[Destination],
    out: &mut Vec<String>,
    not_forwarded: impl Fn() -> String,
) {
    if dests.is_empty() {
        return out.push(format!("weights: {}", not_forwarded()));
    }
    // Shares are compared, so a single destination is `100` whether or not its weight
    // was written, and a `0` names a destination that takes no traffic (Istio drops it).
    let total: u32 = want.values().sum();
    let share = |w: u32| {
        if total == 0 {
            0.0
        } else {
            w as f64 * 100.0 / total as f64
        }
    };
    let is =
        |k: &str, d: &Destination| d.subset == k || (d.subset.is_empty() && host_is(k, &d.host));
    let expected = want.iter().filter(|(_, w)| **w > 0);
    let same = expected.clone().count() == dests.len()
        && expected.into_iter().all(|(k, w)| {
            dests
                .iter()
                .any(|d| is(k, d) && (d.percent - share(*w)).abs() < 0.01)
        });
    if !same {
        let got: Vec<String> = dests
            .iter()
            .map(|d| format!("{}: {}", label(d), d.percent))
            .collect();
        let want: Vec<String> = want
            .iter()
            .map(|(k, w)| format!("{k}: {}", (share(*w) * 100.0).round() / 100.0))
            .collect();
        out.push(format!(
            "weights: expected {{{}}}, got {{{}}} (percent of requests)",
            want.join(", "),
            got.join(", ")
        ));
    }
}

fn check_route(want: &str, d: &Decision, out: &mut Vec<String>) {
    let Some(r) = &d.route else {
        return out.push(format!(
            "route: expected {want:?}, no route matched ({})",
            d.outcome.summary
        ));
    };
    let vs = r.virtual_service.as_deref().unwrap_or("");
    let vs_is =
        |w: &str| !vs.is_empty() && (vs == w || vs.rsplit_once('/').is_some_and(|(_, n)| n == w));
    let ok = match want.split_once('#') {
        None => vs_is(want) || r.name == want,
        Some((v, rule)) => {
            let index = r.rule_index.map(|i| i.to_string()).unwrap_or_default();
            let bracket = format!("http[{index}]");
            vs_is(v)
                && (r.name == rule || (!index.is_empty() && (index == rule || bracket == rule)))
        }
    };
    if !ok {
        let name = if r.name.is_empty() {
            String::new()
        } else {
            format!(" (rule {:?})", r.name)
        };
        out.push(format!("route: expected {want:?}, got {}{name}", r.origin));
    }
}

fn check_authz(want: AuthzExpect, d: &Decision, out: &mut Vec<String>) {
    let want = if want == AuthzExpect::Allow {
        "allow"
    } else {
        "deny"
    };
    match &d.authorization {
        None => out.push(format!(
            "authz: expected {want}, but listener {} is not INBOUND (choose it with request.listener)",
            d.listener.name
        )),
        Some(a) if a.decision != want => {
            let why = a.policy.as_deref().map(|p| format!(" ({p})")).unwrap_or_default();
            out.push(format!("authz: expected {want}, got {}{why}", a.decision));
        }
        Some(_) => {}
    }
}

fn headers_diff(
    what: &str,
    want: &BTreeMap<String, Option<String>>,
    got: impl Fn(&str) -> Option<String>,
    dest: &Destination,
    out: &mut Vec<String>,
) {
    for (k, v) in want {
        let actual = got(&k.to_ascii_lowercase());
        if actual.as_ref() != v.as_ref() {
            let show = |v: &Option<String>| {
                v.as_ref()
                    .map_or("(absent)".to_string(), |s| format!("{s:?}"))
            };
            out.push(format!(
                "{what}[{k}] to {}: expected {}, got {}",
                label(dest),
                show(v),
                show(&actual)
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_and_empty_expectations_are_errors() {
        let e = parse(
            "tests:\n- name: a\n  request: {url: 'http://a/'}\n  expect: {destinaton: {host: a}}\n",
        )
        .unwrap_err();
        assert!(e.contains("unknown field `destinaton`"), "{e}");
        let e =
            parse("tests:\n- name: a\n  request: {url: 'http://a/'}\n  expect: {}\n").unwrap_err();
        assert!(e.contains("expect is empty"), "{e}");
        let e = parse("tests:\n- name: a\n  request: {url: 'http://a/', methd: GET}\n  expect: {status: 404}\n").unwrap_err();
        assert!(e.contains("unknown field `methd`"), "{e}");
    }

    #[test]
    fn short_hosts_name_qualified_ones() {
        assert!(host_is("reviews", "reviews.default.svc.cluster.local"));
        assert!(host_is(
            "reviews.default.svc.cluster.local",
            "reviews.default.svc.cluster.local"
        ));
        assert!(!host_is("review", "reviews.default.svc.cluster.local"));
    }
}
