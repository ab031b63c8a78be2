//! Before anything is written: the config at `-c` loaded and validated as `run` loads
//! it, every Rollout resolved into a [`Plan`], and what would make a release unsafe
//! refused with a clear error: a DestinationRule without both subsets, another
//! VirtualService routing the host (the generated file's own document is not "another"),
//! two Rollouts of one host, a PromQL check without `--prometheus`.

use super::analysis::Source;
use super::plan::{Measure, Plan};
use meshproxy_config::host::qualify;
use meshproxy_config::model::{Kind, Resource};
use meshproxy_config::validate::MissingFiles;
use std::path::{Path, PathBuf};

/// The plans of every Rollout at `paths`, or every reason not to start.
pub fn plans(paths: &[PathBuf], source: &Source) -> Result<Vec<Plan>, Vec<String>> {
    let Some(dir) = paths.iter().find(|p| p.is_dir()) else {
        return Err(vec![
            "rollout writes its route into a directory: give one with -c DIR (the proxies watch it)"
                .into(),
        ]);
    };
    let (snap, resources) = meshproxy_config::compile::load_documents(paths, MissingFiles::Warn);
    if let Err(diags) = snap {
        return Err(diags.errors().map(|d| d.to_string()).collect());
    }
    let mut plans = Vec::new();
    let mut errors = Vec::new();
    for res in resources.iter().filter(|r| r.kind == Kind::Rollout) {
        let Some(r) = res.as_rollout() else { continue };
        let plan = Plan::new(res, r, dir);
        errors.extend(check(&plan, res, &resources, source));
        if let Some(other) = plans.iter().find(|p: &&Plan| p.fqdn == plan.fqdn) {
            errors.push(format!(
                "Rollout {} and Rollout {} both release host {}: one at a time",
                other.id(),
                plan.id(),
                plan.fqdn
            ));
        }
        plans.push(plan);
    }
    if plans.is_empty() && errors.is_empty() {
        errors.push(format!(
            "no Rollout document found at {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if errors.is_empty() {
        Ok(plans)
    } else {
        Err(errors)
    }
}

fn check(plan: &Plan, res: &Resource, all: &[Resource], source: &Source) -> Vec<String> {
    let mut errors = Vec::new();
    let at = format!("Rollout {} ({})", plan.id(), res.origin.file.display());
    let subsets: Vec<&str> = all
        .iter()
        .filter_map(|r| r.as_destination_rule().map(|d| (r, d)))
        .filter(|(r, d)| qualify(&d.host, &r.namespace) == plan.fqdn)
        .flat_map(|(_, d)| d.subsets.iter().map(|s| s.name.as_str()))
        .collect();
    for subset in [&plan.stable, &plan.canary] {
        if !subsets.contains(&subset.as_str()) {
            errors.push(format!(
                "{at}: no DestinationRule for host {} defines subset {subset:?} (subsets defined: {:?})",
                plan.fqdn, subsets
            ));
        }
    }
    for r in all.iter().filter(|r| r.kind == Kind::VirtualService) {
        let Some(vs) = r.as_virtual_service() else {
            continue;
        };
        let routes_host = vs
            .hosts
            .iter()
            .any(|h| qualify(h, &r.namespace) == plan.fqdn);
        if routes_host && !same_file(&r.origin.file, &plan.file) {
            errors.push(format!(
                "{at}: VirtualService {}/{} in {} already routes host {}; the rollout writes that host's route itself (into {}): remove the VirtualService or move its rules elsewhere",
                r.namespace,
                r.name,
                r.origin.file.display(),
                plan.fqdn,
                plan.file.display()
            ));
        }
    }
    if matches!(source, Source::Scrape(_)) {
        for m in &plan.metrics {
            if matches!(m.measure, Measure::Query(_)) {
                errors.push(format!(
                    "{at}: metric {:?} is a PromQL query: it needs --prometheus, not --scrape",
                    m.name
                ));
            }
        }
    }
    errors
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
