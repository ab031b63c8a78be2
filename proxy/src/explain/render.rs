//! `explain`'s text output: the decision path top to bottom, one fact per line.

use super::decision::{Action, Authorization, Decision, Destination, RouteInfo, RuleTrial};
use std::fmt::Write;

/// How many of a virtual host's domains are listed before `...`.
const DOMAINS_SHOWN: usize = 6;

/// The decision as text.
pub fn text(d: &Decision) -> String {
    let mut s = String::new();
    let r = &d.request;
    let _ = writeln!(
        s,
        "request       {} {}://{}{}",
        r.method, r.scheme, r.authority, r.path
    );
    let sender = if r.internal { "internal" } else { "external" };
    let _ = writeln!(
        s,
        "              host {:?}, port {}, from {} ({sender} sender)",
        r.host, r.port, r.source
    );
    let w = &d.workload;
    let labels: Vec<String> = w.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let _ = writeln!(
        s,
        "workload      {}/{} labels {{{}}}",
        w.namespace,
        w.proxy,
        labels.join(",")
    );
    let l = &d.listener;
    let table = l.route_table.as_deref().unwrap_or("none");
    let _ = writeln!(
        s,
        "listener      {} ({}, {}), route table {table}",
        l.name, l.role, l.address
    );
    if let Some(loc) = &d.https_redirect {
        let _ = writeln!(
            s,
            "httpsRedirect every server of the Gateway port redirects to {loc}"
        );
    }
    if let Some(a) = &d.authorization {
        authorization_lines(&mut s, a);
    }
    if let Some(vh) = &d.virtual_host {
        let mut domains = vh
            .domains
            .iter()
            .take(DOMAINS_SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if vh.domains.len() > DOMAINS_SHOWN {
            domains.push_str(", ...");
        }
        let _ = writeln!(s, "virtual host  {} (domains: {domains})", vh.name);
    }
    if !d.rules.is_empty() {
        let _ = writeln!(s, "rules tried:");
        for rule in &d.rules {
            rule_lines(&mut s, rule);
        }
    }
    if let Some(route) = &d.route {
        route_lines(&mut s, route);
    }
    let o = &d.outcome;
    let _ = writeln!(s, "outcome       {}", o.summary);
    if let Some(status) = o.status {
        let flag = o.flag.map(|f| format!(", flag {f}")).unwrap_or_default();
        let _ = writeln!(s, "              local reply {status}{flag}");
    }
    s
}

fn rule_lines(s: &mut String, rule: &RuleTrial) {
    let verdict = if rule.matched { "MATCH" } else { "no match" };
    let name = if rule.name.is_empty() {
        String::new()
    } else {
        format!(" {:?}", rule.name)
    };
    let _ = writeln!(s, "  [{}]{name} {}: {verdict}", rule.index, rule.origin);
    if rule.matches.is_empty() {
        let _ = writeln!(s, "      (no conditions: matches every request)");
    }
    for m in &rule.matches {
        let name = if m.name.is_empty() {
            String::new()
        } else {
            format!(" {:?}", m.name)
        };
        let verdict = if m.matched { "holds" } else { "fails" };
        let _ = writeln!(s, "      match[{}]{name} {verdict}", m.index);
        for c in &m.conditions {
            let mark = if c.ok { "ok  " } else { "FAIL" };
            let _ = writeln!(
                s,
                "        {mark} {} {} (request: {:?})",
                c.field, c.condition, c.actual
            );
        }
    }
}

fn route_lines(s: &mut String, r: &RouteInfo) {
    let name = if r.name.is_empty() {
        String::new()
    } else {
        format!("{:?} ", r.name)
    };
    let _ = writeln!(s, "route         {name}{}", r.origin);
    match &r.action {
        Action::Forward { destinations } => {
            let _ = writeln!(s, "action        forward");
            for d in destinations {
                destination_lines(s, d);
            }
        }
        Action::Redirect { status, location } => {
            let _ = writeln!(s, "action        redirect {status} to {location}");
        }
        Action::DirectResponse { status, body } => {
            let _ = writeln!(s, "action        direct response {status} {body:?}");
        }
    }
    let _ = writeln!(s, "timeout       {}", r.timeout);
    let _ = writeln!(s, "retries       {}", r.retries);
    let _ = writeln!(s, "fault         {}", r.fault.as_deref().unwrap_or("none"));
    let mirrors = if r.mirrors.is_empty() {
        "none".to_string()
    } else {
        r.mirrors.join(", ")
    };
    let _ = writeln!(s, "mirrors       {mirrors}");
    if let Some(rw) = &r.rewrite {
        let _ = writeln!(s, "rewrite       {rw}");
    }
    for op in &r.header_ops {
        let _ = writeln!(s, "headers       {op}");
    }
    if r.cors {
        let _ = writeln!(s, "cors          a CORS policy answers preflights");
    }
}

fn destination_lines(s: &mut String, d: &Destination) {
    let subset = if d.subset.is_empty() {
        String::new()
    } else {
        format!(" subset {}", d.subset)
    };
    let port = d.port.map(|p| format!(" port {p}")).unwrap_or_default();
    let target = match (&d.cluster, &d.missing) {
        (Some(c), _) => c.clone(),
        (None, Some(why)) => format!("no cluster: {why} (503 NC)"),
        (None, None) => "no cluster (503 NC)".into(),
    };
    let _ = writeln!(
        s,
        "  {:>6}%  weight {} {}{subset}{port} -> {target}",
        d.percent, d.weight, d.host
    );
    if let Some(p) = &d.policy {
        let f = &p.from;
        for (name, value, from) in [
            ("loadBalancer", &p.load_balancer, f.load_balancer),
            ("connectionPool", &p.connection_pool, f.connection_pool),
            (
                "outlierDetection",
                &p.outlier_detection,
                f.outlier_detection,
            ),
            ("tls", &p.tls, f.tls),
        ] {
            let _ = writeln!(s, "           {name} {value}  [{from}]");
        }
    }
    for op in &d.header_ops {
        let _ = writeln!(s, "           headers {op}");
    }
    let _ = writeln!(
        s,
        "           upstream request {} (authority {})",
        d.upstream.path, d.upstream.authority
    );
}

fn authorization_lines(s: &mut String, a: &Authorization) {
    let peer = match &a.principal {
        Some(p) => format!("peer {p} (mTLS) from {}", a.source),
        None => format!("plaintext peer from {}", a.source),
    };
    let _ = writeln!(s, "peer          {peer}");
    let why = match (&a.policy, a.no_policies) {
        (Some(p), _) => format!(" ({p})"),
        (None, true) => " (no AuthorizationPolicy applies to this workload)".into(),
        (None, false) => " (no DENY policy matched, an ALLOW policy did or none exists)".into(),
    };
    let _ = writeln!(s, "authorization {}{why}", a.decision.to_uppercase());
    if let Some(audit) = &a.audit {
        let _ = writeln!(
            s,
            "              AUDIT policy {audit} matched (logged only)"
        );
    }
}
