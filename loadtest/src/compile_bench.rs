//! Snapshot-compile benchmark: generate N services × R routes of realistic Istio config,
//! then time parsing, validation and compilation separately (best of several rounds).

use meshproxy_config::{compile, loader, validate};
use std::fmt::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// Generates the config text: per service a ServiceEntry (3 endpoints), a DestinationRule
/// (3 subsets, pool and outlier detection) and a VirtualService with `routes` rules mixing
/// header, prefix, regex and weighted routes.
pub fn generate(services: usize, routes: usize) -> String {
    let mut y = String::with_capacity(services * 2048);
    for i in 0..services {
        let name = format!("svc-{i}");
        let _ = write!(
            y,
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: bench}}
spec:
  hosts: [{name}.bench.svc.cluster.local]
  ports: [{{number: 8080, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints:
  - {{address: 10.{a}.{b}.1, labels: {{version: v1}}}}
  - {{address: 10.{a}.{b}.2, labels: {{version: v2}}}}
  - {{address: 10.{a}.{b}.3, labels: {{version: v3}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}, namespace: bench}}
spec:
  host: {name}
  trafficPolicy:
    connectionPool: {{tcp: {{maxConnections: 100}}, http: {{http1MaxPendingRequests: 10}}}}
    outlierDetection: {{consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
  - {{name: v3, labels: {{version: v3}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: bench}}
spec:
  hosts: [{name}]
  http:
",
            a = i / 250,
            b = i % 250
        );
        for r in 0..routes {
            let last = r + 1 == routes;
            if last {
                let _ = write!(
                    y,
                    "  - route:
    - {{destination: {{host: {name}, subset: v1}}, weight: 90}}
    - {{destination: {{host: {name}, subset: v3}}, weight: 10}}
"
                );
                continue;
            }
            let m = match r % 3 {
                0 => format!("headers: {{end-user: {{exact: user{r}}}}}"),
                1 => format!("uri: {{prefix: /api/v{r}}}"),
                _ => format!("uri: {{regex: \"/items/[0-9]+/r{r}\"}}"),
            };
            let _ = write!(
                y,
                "  - match: [{{{m}}}]
    timeout: 5s
    retries: {{attempts: 3, perTryTimeout: 1s, retryOn: \"5xx,connect-failure\"}}
    route: [{{destination: {{host: {name}, subset: v2}}}}]
"
            );
        }
        y.push_str("---\n");
    }
    y
}

/// Runs the benchmark and prints the phases.
pub fn run(services: usize, routes: usize, rounds: usize) -> Result<(), String> {
    let text = generate(services, routes);
    println!(
        "config: {services} services × {routes} routes, {} documents, {:.1} MiB of YAML",
        services * 3,
        text.len() as f64 / (1024.0 * 1024.0)
    );
    let mut best = [Duration::MAX; 4];
    let mut clusters = 0;
    for _ in 0..rounds.max(1) {
        let t0 = Instant::now();
        let mut loaded = loader::Loaded::default();
        loader::load_str(Path::new("bench.yaml"), &text, &mut loaded);
        let t1 = Instant::now();
        if loaded.diagnostics.has_errors() {
            return Err(format!(
                "generated config does not load:\n{}",
                loaded.diagnostics
            ));
        }
        let diags = validate::validate(&loaded.resources, validate::MissingFiles::Refuse);
        let t2 = Instant::now();
        if diags.has_errors() {
            return Err(format!("generated config does not validate:\n{diags}"));
        }
        let snap = compile::compile(&loaded.resources, diags);
        let t3 = Instant::now();
        clusters = snap.clusters.len();
        for (i, d) in [t1 - t0, t2 - t1, t3 - t2, t3 - t0].into_iter().enumerate() {
            best[i] = best[i].min(d);
        }
    }
    println!("clusters compiled: {clusters}");
    for (name, d) in ["parse", "validate", "compile", "total"].iter().zip(best) {
        println!(
            "{name:>9}: {:8.1} ms (best of {rounds})",
            d.as_secs_f64() * 1000.0
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn generated_config_is_valid() {
        let text = super::generate(3, 5);
        let snap = meshproxy_config::compile::load_str("gen.yaml", &text).expect("valid");
        // Three services with three subsets each, plus Istio's catch-all cluster.
        assert_eq!(snap.clusters.len(), 3 * 4 + 1);
    }
}
