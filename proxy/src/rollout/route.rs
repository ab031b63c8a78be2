//! The generated VirtualService: the service's route for where the rollout stands, with
//! the state in its annotations (`meshproxy.io/rollout-phase`, `meshproxy.io/rollout-weight`
//! and the counts a restarted command resumes from), and the state read back.

use super::plan::{Plan, Strategy};
use super::state::{Phase, State};
use serde_json::{json, Value};

/// The phase annotation.
pub const PHASE: &str = "meshproxy.io/rollout-phase";
/// The canary's weight (%) on the default route.
pub const WEIGHT: &str = "meshproxy.io/rollout-weight";
/// Passed checks so far.
pub const ITERATIONS: &str = "meshproxy.io/rollout-iterations";
/// Failed checks so far.
pub const FAILED_CHECKS: &str = "meshproxy.io/rollout-failed-checks";
/// The spec's revision the state belongs to.
pub const REVISION: &str = "meshproxy.io/rollout-revision";
/// Why the last transition happened.
pub const MESSAGE: &str = "meshproxy.io/rollout-message";

/// The VirtualService document for `plan` in `state`, as YAML text.
pub fn render(plan: &Plan, state: &State) -> String {
    let mut spec = json!({ "hosts": [plan.host], "http": http(plan, state) });
    if !plan.gateways.is_empty() {
        spec["gateways"] = json!(plan.gateways);
    }
    let doc = json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {
            "name": plan.name,
            "namespace": plan.namespace,
            "annotations": {
                PHASE: state.phase.as_str(),
                WEIGHT: state.weight.to_string(),
                ITERATIONS: state.iterations.to_string(),
                FAILED_CHECKS: state.failed_checks.to_string(),
                REVISION: plan.revision,
                MESSAGE: state.message,
            },
        },
        "spec": spec,
    });
    let body = serde_yaml::to_string(&doc).unwrap_or_default();
    format!(
        "# Written by `meshproxy rollout` for Rollout {}: changes here are overwritten.\n{body}",
        plan.id()
    )
}

fn destination(plan: &Plan, subset: &str) -> Value {
    let mut d = json!({ "host": plan.host, "subset": subset });
    if let Some(p) = plan.port {
        d["port"] = json!({ "number": p });
    }
    d
}

fn split(plan: &Plan, canary_weight: u32) -> Value {
    json!({ "route": [
        { "destination": destination(plan, &plan.stable), "weight": 100 - canary_weight },
        { "destination": destination(plan, &plan.canary), "weight": canary_weight },
    ]})
}

fn all_to(plan: &Plan, subset: &str) -> Value {
    json!({ "route": [{ "destination": destination(plan, subset) }] })
}

/// The route rules: the stable subset before and after a failed release, the canary
/// after a promotion, and the strategy's split while progressing.
fn http(plan: &Plan, state: &State) -> Value {
    match state.phase {
        Phase::Initializing | Phase::Failed => json!([all_to(plan, &plan.stable)]),
        Phase::Promoting | Phase::Succeeded => json!([all_to(plan, &plan.canary)]),
        Phase::Progressing => match &plan.strategy {
            Strategy::Canary { .. } => json!([split(plan, state.weight)]),
            Strategy::AB { .. } => {
                let mut to_canary = all_to(plan, &plan.canary);
                to_canary["match"] = plan.matches.clone();
                json!([to_canary, all_to(plan, &plan.stable)])
            }
            Strategy::BlueGreen { mirror, .. } => {
                let mut rule = all_to(plan, &plan.stable);
                if let Some(pct) = mirror {
                    rule["mirror"] = destination(plan, &plan.canary);
                    rule["mirrorPercentage"] = json!({ "value": pct });
                }
                json!([rule])
            }
        },
    }
}

/// The state recorded in a generated file's text, with its revision; `Err` when the
/// text is not a generated document.
pub fn parse(text: &str) -> Result<(State, String), String> {
    let doc: Value = serde_yaml::from_str(text).map_err(|e| format!("not YAML: {e}"))?;
    let ann = &doc["metadata"]["annotations"];
    let get = |k: &str| ann.get(k).and_then(Value::as_str);
    let phase = get(PHASE)
        .ok_or_else(|| format!("no {PHASE} annotation: not written by meshproxy rollout"))?;
    let phase = Phase::parse(phase).ok_or_else(|| format!("unknown phase {phase:?}"))?;
    let num = |k: &str| -> Result<u32, String> {
        get(k)
            .unwrap_or("0")
            .parse()
            .map_err(|_| format!("annotation {k} is not a number"))
    };
    let state = State {
        phase,
        weight: num(WEIGHT)?.min(100),
        iterations: num(ITERATIONS)?,
        failed_checks: num(FAILED_CHECKS)?,
        message: get(MESSAGE).unwrap_or_default().to_string(),
    };
    Ok((state, get(REVISION).unwrap_or_default().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::plan::{Plan, Strategy};

    fn plan(strategy: Strategy) -> Plan {
        Plan {
            name: "reviews".into(),
            namespace: "default".into(),
            host: "reviews".into(),
            fqdn: "reviews.default.svc.cluster.local".into(),
            port: Some(9080),
            stable: "v1".into(),
            canary: "v2".into(),
            gateways: vec![],
            strategy,
            interval: std::time::Duration::from_secs(1),
            threshold: 2,
            metrics: vec![],
            hooks: vec![],
            matches: json!([{ "headers": { "x-user": { "exact": "beta" } } }]),
            revision: "abc".into(),
            file: "rollout-default-reviews.yaml".into(),
        }
    }

    /// The generated text loads as a valid VirtualService and its weights are the state's.
    fn compiles(text: &str) -> meshproxy_config::model::VirtualService {
        let mut out = meshproxy_config::loader::Loaded::default();
        meshproxy_config::loader::load_str(std::path::Path::new("g.yaml"), text, &mut out);
        let diags = meshproxy_config::validate::validate(
            &out.resources,
            meshproxy_config::validate::MissingFiles::Warn,
        );
        assert!(
            out.diagnostics.is_empty() && diags.errors().count() == 0,
            "{diags}\n{text}"
        );
        out.resources[0]
            .as_virtual_service()
            .map(std::borrow::Cow::into_owned)
            .expect("a VirtualService")
    }

    #[test]
    fn a_canary_step_is_a_weighted_split_and_reads_back() {
        let p = plan(Strategy::Canary {
            weights: vec![5, 10],
        });
        let mut st = State::start();
        st.begin(&p.strategy);
        st.failed_checks = 1;
        let text = render(&p, &st);
        let vs = compiles(&text);
        let weights: Vec<_> = vs.http[0].route.iter().map(|r| r.weight).collect();
        assert_eq!(weights, [95, 5]);
        assert_eq!(parse(&text), Ok((st, "abc".to_string())));
    }

    #[test]
    fn a_b_routes_matching_requests_to_the_canary() {
        let p = plan(Strategy::AB { iterations: 2 });
        let mut st = State::start();
        st.begin(&p.strategy);
        let vs = compiles(&render(&p, &st));
        assert_eq!(vs.http.len(), 2);
        assert_eq!(vs.http[0].matches.len(), 1);
        let subset = |i: usize| {
            vs.http[i].route[0]
                .destination
                .as_ref()
                .map(|d| d.subset.clone())
        };
        assert_eq!(
            (subset(0), subset(1)),
            (Some("v2".into()), Some("v1".into()))
        );
    }

    #[test]
    fn blue_green_mirrors_then_switches() {
        let p = plan(Strategy::BlueGreen {
            iterations: 2,
            mirror: Some(50),
        });
        let mut st = State::start();
        st.begin(&p.strategy);
        let vs = compiles(&render(&p, &st));
        assert!(vs.http[0].mirror.is_some());
        st.promote();
        let vs = compiles(&render(&p, &st));
        assert!(vs.http[0].mirror.is_none());
        assert_eq!(parse(&render(&p, &st)).map(|s| s.0.weight), Ok(100));
    }

    #[test]
    fn a_foreign_file_is_refused() {
        let e = parse(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\n",
        );
        assert!(e.is_err_and(|e| e.contains(PHASE)));
    }
}
