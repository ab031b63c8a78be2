//! Rules for meshproxy's `Rollout` kind (docs/rollout.md). What Flagger's `Canary` CRD
//! rejects, and what would make the release ambiguous (two strategies at once), is an
//! error here, before `meshproxy rollout` writes any route.

use super::names;
use super::V;
use crate::diag::{Diagnostics, Severity};
use crate::host::qualify;
use crate::model::rollout::*;
use crate::model::{Resource, VirtualService};

/// The metrics `meshproxy rollout` computes itself (Flagger's built-in metric names).
pub const BUILTIN_METRICS: [&str; 2] = ["request-success-rate", "request-duration"];

pub(crate) fn validate(v: &mut V, r: &Rollout) {
    if r.host.is_empty() {
        v.err("spec.host", "host is required");
    } else if r.host.contains('*') {
        v.err(
            "spec.host",
            "a rollout releases one service: no wildcard host",
        );
    } else if let Err(e) = names::check_wildcard_domain(&r.host) {
        v.err("spec.host", e);
    }
    if let Some(p) = r.port {
        if let Err(e) = names::check_port(p.into()) {
            v.err("spec.port", e);
        }
    }
    for (field, subset) in [("stable", &r.stable), ("canary", &r.canary)] {
        if subset.is_empty() {
            v.err(
                &format!("spec.{field}"),
                format!("{field} subset is required"),
            );
        } else if !names::is_lower_dns1123_label(subset) {
            v.err(
                &format!("spec.{field}"),
                format!("invalid subset name {subset:?}: must be a DNS-1123 label"),
            );
        }
    }
    if !r.stable.is_empty() && r.stable == r.canary {
        v.err("spec.canary", "canary must be another subset than stable");
    }
    for (i, g) in r.gateways.iter().enumerate() {
        if g.is_empty() {
            v.err(
                &format!("spec.gateways[{i}]"),
                "gateway name must not be empty",
            );
        }
    }
    match &r.analysis {
        None => v.err("spec.analysis", "analysis is required"),
        Some(a) => analysis(v, a),
    }
}

fn analysis(v: &mut V, a: &Analysis) {
    v.duration("spec.analysis.interval", &a.interval);
    if a.threshold == Some(0) {
        v.err("spec.analysis.threshold", "threshold must be at least 1");
    }
    strategy(v, a);
    for (i, m) in a.metrics.iter().enumerate() {
        metric(v, &format!("spec.analysis.metrics[{i}]"), m);
    }
    for (i, h) in a.webhooks.iter().enumerate() {
        webhook(v, &format!("spec.analysis.webhooks[{i}]"), h);
    }
    let no_vs = VirtualService::default();
    for (i, m) in a.matches.iter().enumerate() {
        super::virtual_service::http_match(v, &format!("spec.analysis.match[{i}]"), m, &no_vs);
    }
}

/// Exactly one strategy: canary weights, A/B (`iterations` + `match`) or blue-green
/// (`iterations` alone).
fn strategy(v: &mut V, a: &Analysis) {
    let p = "spec.analysis";
    let weights = a.step_weight.is_some() || !a.step_weights.is_empty();
    let iterations = a.iterations.unwrap_or(0) > 0;
    if !weights && !iterations {
        v.err(
            p,
            "one of stepWeight, stepWeights (canary) or iterations (A/B with match, blue-green without) is required",
        );
    }
    if weights && iterations {
        v.err(
            &format!("{p}.iterations"),
            "iterations (A/B, blue-green) and stepWeight/stepWeights (canary) exclude each other",
        );
    }
    if a.step_weight.is_some() && !a.step_weights.is_empty() {
        v.err(
            &format!("{p}.stepWeights"),
            "set stepWeight or stepWeights, not both",
        );
    }
    if let Some(w) = a.step_weight {
        weight(v, &format!("{p}.stepWeight"), w);
    }
    if let Some(w) = a.max_weight {
        weight(v, &format!("{p}.maxWeight"), w);
        if a.step_weight.is_none() {
            v.err(&format!("{p}.maxWeight"), "maxWeight needs stepWeight");
        }
    }
    let mut last = 0;
    for (i, w) in a.step_weights.iter().enumerate() {
        let wp = format!("{p}.stepWeights[{i}]");
        weight(v, &wp, *w);
        if *w <= last {
            v.err(&wp, format!("step weights must increase: {w} after {last}"));
        }
        last = *w;
    }
    if !a.matches.is_empty() && !iterations {
        v.err(&format!("{p}.match"), "match (A/B) needs iterations");
    }
    if a.mirror && (weights || !a.matches.is_empty()) {
        v.err(
            &format!("{p}.mirror"),
            "mirror is for blue-green (iterations without match or weights)",
        );
    }
    if let Some(w) = a.mirror_weight {
        weight(v, &format!("{p}.mirrorWeight"), w);
        if !a.mirror {
            v.err(
                &format!("{p}.mirrorWeight"),
                "mirrorWeight needs mirror: true",
            );
        }
    }
}

fn weight(v: &mut V, p: &str, w: u32) {
    if !(1..=100).contains(&w) {
        v.err(p, format!("weight {w} must be in the range 1..100"));
    }
}

fn metric(v: &mut V, p: &str, m: &Metric) {
    let builtin = BUILTIN_METRICS.contains(&m.name.as_str());
    if m.name.is_empty() {
        v.err(&format!("{p}.name"), "metric name is required");
    } else if !builtin && m.query.as_deref().is_none_or(str::is_empty) {
        v.err(
            &format!("{p}.query"),
            format!(
                "metric {:?} is not built in ({}): a PromQL query is required",
                m.name,
                BUILTIN_METRICS.join(", ")
            ),
        );
    }
    v.duration(&format!("{p}.interval"), &m.interval);
    match &m.threshold_range {
        None => v.err(&format!("{p}.thresholdRange"), "thresholdRange is required"),
        Some(ThresholdRange {
            min: None,
            max: None,
        }) => v.err(
            &format!("{p}.thresholdRange"),
            "thresholdRange needs min, max or both",
        ),
        Some(ThresholdRange {
            min: Some(lo),
            max: Some(hi),
        }) if lo > hi => v.err(
            &format!("{p}.thresholdRange"),
            format!("min {lo} is above max {hi}"),
        ),
        Some(_) => {}
    }
}

fn webhook(v: &mut V, p: &str, h: &Webhook) {
    if h.name.is_empty() {
        v.err(&format!("{p}.name"), "webhook name is required");
    }
    match h.url.parse::<http::Uri>() {
        Ok(u) if u.scheme_str() == Some("http") && u.host().is_some() => {}
        Ok(_) => v.err(
            &format!("{p}.url"),
            format!("url {:?} must be an http:// URL with a host", h.url),
        ),
        Err(e) => v.err(&format!("{p}.url"), format!("invalid url {:?}: {e}", h.url)),
    }
    v.duration(&format!("{p}.timeout"), &h.timeout);
}

/// Analyzer warnings across documents: a Rollout whose subsets no DestinationRule for
/// its host defines (`meshproxy rollout` refuses to start it; a proxy loading the same
/// directory is not concerned, so this is a warning, as istioctl analyze's undefined
/// subsets are).
pub(crate) fn check_subsets(resources: &[Resource], out: &mut Diagnostics) {
    for res in resources {
        let Some(r) = res.as_rollout() else { continue };
        if r.host.is_empty() {
            continue;
        }
        let fqdn = qualify(&r.host, &res.namespace);
        let defined = |subset: &str| {
            resources.iter().any(|d| {
                d.as_destination_rule().is_some_and(|dr| {
                    qualify(&dr.host, &d.namespace) == fqdn
                        && dr.subsets.iter().any(|s| s.name == subset)
                })
            })
        };
        for (field, subset) in [("stable", &r.stable), ("canary", &r.canary)] {
            if !subset.is_empty() && !defined(subset) {
                out.push(super::diag_for(
                    res,
                    Severity::Warning,
                    &format!("spec.{field}"),
                    format!("subset {subset:?} of host {fqdn} is not defined by any DestinationRule: meshproxy rollout will not start this release"),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::diag::Severity;

    fn errors(spec: &str) -> Vec<String> {
        let text = format!(
            "apiVersion: meshproxy.io/v1alpha1\nkind: Rollout\nmetadata: {{name: r}}\nspec:\n{spec}"
        );
        let mut out = crate::loader::Loaded::default();
        crate::loader::load_str(std::path::Path::new("r.yaml"), &text, &mut out);
        let mut d = out.diagnostics;
        d.extend(crate::validate::validate(
            &out.resources,
            crate::validate::MissingFiles::Warn,
        ));
        d.0.iter()
            .filter(|d| d.severity == Severity::Error)
            .filter(|d| !d.message.contains("not defined by any DestinationRule"))
            .map(|d| format!("{}: {}", d.path, d.message))
            .collect()
    }

    #[test]
    fn undefined_subsets_are_a_warning() {
        let text = "apiVersion: meshproxy.io/v1alpha1\nkind: Rollout\nmetadata: {name: r}\nspec: {host: reviews, stable: v1, canary: v2, analysis: {stepWeight: 10}}\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews}\nspec: {host: reviews.default.svc.cluster.local, subsets: [{name: v1, labels: {version: v1}}]}\n";
        let mut out = crate::loader::Loaded::default();
        crate::loader::load_str(std::path::Path::new("r.yaml"), text, &mut out);
        let d = crate::validate::validate(&out.resources, crate::validate::MissingFiles::Warn);
        let found: Vec<_> =
            d.0.iter()
                .filter(|d| d.resource.as_deref() == Some("Rollout/default/r"))
                .map(|d| (d.severity, d.path.clone()))
                .collect();
        assert_eq!(found, [(Severity::Warning, "spec.canary".to_string())]);
    }

    const BASE: &str = "  host: reviews\n  stable: v1\n  canary: v2\n";

    #[test]
    fn a_canary_with_step_weights_is_valid() {
        let e = errors(&format!("{BASE}  analysis:\n    interval: 1s\n    threshold: 2\n    stepWeights: [5, 10, 25, 50]\n    metrics:\n    - {{name: request-success-rate, thresholdRange: {{min: 99}}, interval: 10s}}\n    - {{name: request-duration, thresholdRange: {{max: 500}}}}\n    webhooks: [{{name: smoke, type: pre-rollout, url: \"http://127.0.0.1:1/x\", timeout: 5s}}]\n"));
        assert!(e.is_empty(), "{e:?}");
    }

    #[test]
    fn a_b_and_blue_green_are_valid() {
        let ab = errors(&format!("{BASE}  analysis:\n    iterations: 3\n    match: [{{headers: {{x-user: {{exact: beta}}}}}}]\n"));
        assert!(ab.is_empty(), "{ab:?}");
        let bg = errors(&format!(
            "{BASE}  analysis: {{iterations: 3, mirror: true, mirrorWeight: 50}}\n"
        ));
        assert!(bg.is_empty(), "{bg:?}");
    }

    #[test]
    fn each_mistake_names_its_field() {
        let cases = [
            ("  host: reviews\n  stable: v1\n  canary: v1\n  analysis: {stepWeight: 10}\n", "spec.canary"),
            (&format!("{BASE}  analysis: {{}}\n"), "spec.analysis: one of"),
            (&format!("{BASE}  analysis: {{stepWeights: [10, 5]}}\n"), "spec.analysis.stepWeights[1]"),
            (&format!("{BASE}  analysis: {{stepWeight: 10, iterations: 2}}\n"), "spec.analysis.iterations"),
            (&format!("{BASE}  analysis: {{stepWeight: 101}}\n"), "spec.analysis.stepWeight"),
            (&format!("{BASE}  analysis: {{maxWeight: 50, stepWeights: [5]}}\n"), "spec.analysis.maxWeight"),
            (&format!("{BASE}  analysis: {{stepWeight: 5, match: [{{uri: {{prefix: /}}}}]}}\n"), "spec.analysis.match"),
            (&format!("{BASE}  analysis:\n    stepWeight: 5\n    metrics: [{{name: errors, thresholdRange: {{max: 1}}}}]\n"), "spec.analysis.metrics[0].query"),
            (&format!("{BASE}  analysis:\n    stepWeight: 5\n    metrics: [{{name: request-duration}}]\n"), "spec.analysis.metrics[0].thresholdRange"),
            (&format!("{BASE}  analysis:\n    stepWeight: 5\n    webhooks: [{{name: w, url: \"https://x/\"}}]\n"), "spec.analysis.webhooks[0].url"),
            (&format!("{BASE}  analysis:\n    stepWeight: 5\n    webhooks: [{{name: w, type: pre-rollot, url: \"http://x/\"}}]\n"), "spec.analysis.webhooks[0].type"),
            (&format!("{BASE}  analysis: {{stepWeight: 5, threshold: 0}}\n"), "spec.analysis.threshold"),
            ("  host: reviews\n  stable: v1\n  canary: v2\n", "spec.analysis"),
        ];
        for (spec, want) in cases {
            let e = errors(spec);
            assert!(e.iter().any(|m| m.starts_with(want)), "{want}: {e:?}");
        }
    }
}
