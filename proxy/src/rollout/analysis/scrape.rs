//! `--scrape`: the canary's Istio metrics read straight from the proxies' admin
//! `/metrics`, without Prometheus. Each check scrapes every proxy, sums the canary's
//! series (`reporter="source"`, `destination_service` the rollout's host,
//! `destination_version` the canary subset) and judges the increase since the previous
//! check, as `rate()` over the interval would: the success rate from
//! `istio_requests_total` by `response_code`, the p99 from the
//! `istio_request_duration_milliseconds` buckets (Prometheus's `histogram_quantile`).

use super::exposition;
use super::quantile::histogram_quantile;
use crate::rollout::client::Http;
use crate::rollout::plan::Plan;
use std::time::Duration;

const REQUESTS: &str = "istio_requests_total";
const BUCKETS: &str = "istio_request_duration_milliseconds_bucket";
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// The canary's counters, summed over the proxies, at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counters {
    /// Requests.
    pub requests: f64,
    /// Requests answered with anything but 5xx.
    pub ok: f64,
    /// Cumulative duration buckets `(le, count)`, by increasing `le`.
    pub buckets: Vec<(f64, f64)>,
}

impl Counters {
    /// The increase from `before` to `self`; a counter that went down was reset (a
    /// proxy restarted) and counts from zero, as Prometheus's `rate()` does.
    pub fn since(&self, before: &Counters) -> Counters {
        let d = |now: f64, then: f64| if now >= then { now - then } else { now };
        let buckets = self
            .buckets
            .iter()
            .map(|(le, n)| {
                let then = before
                    .buckets
                    .iter()
                    .find(|(l, _)| l == le)
                    .map(|b| b.1)
                    .unwrap_or(0.0);
                (*le, d(*n, then))
            })
            .collect();
        Counters {
            requests: d(self.requests, before.requests),
            ok: d(self.ok, before.ok),
            buckets,
        }
    }

    /// Non-5xx requests in %; `None` without requests.
    pub fn success_rate(&self) -> Option<f64> {
        (self.requests > 0.0).then(|| self.ok / self.requests * 100.0)
    }

    /// The p99 duration in ms; `None` without requests.
    pub fn p99(&self) -> Option<f64> {
        histogram_quantile(0.99, &self.buckets)
    }
}

/// The canary's counters in one `/metrics` text.
pub fn counters(text: &str, plan: &Plan) -> Counters {
    let mut c = Counters::default();
    for s in exposition::samples(text, &[REQUESTS, BUCKETS]) {
        let canary = s.label("reporter") == Some("source")
            && s.label("destination_service") == Some(plan.fqdn.as_str())
            && s.label("destination_version") == Some(plan.canary.as_str());
        if !canary {
            continue;
        }
        if s.name == REQUESTS {
            c.requests += s.value;
            if !s.label("response_code").unwrap_or("").starts_with('5') {
                c.ok += s.value;
            }
            continue;
        }
        let le = match s.label("le") {
            Some("+Inf") => f64::INFINITY,
            Some(v) => match v.parse::<f64>() {
                Ok(le) => le,
                Err(_) => continue,
            },
            None => continue,
        };
        match c.buckets.iter_mut().find(|(l, _)| *l == le) {
            Some(b) => b.1 += s.value,
            None => c.buckets.push((le, s.value)),
        }
    }
    c.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    c
}

/// Scrapes every proxy: the summed counters, or the first proxy that did not answer.
pub async fn scrape(http: &Http, admins: &[String], plan: &Plan) -> Result<Counters, String> {
    let mut total = Counters::default();
    for admin in admins {
        let url = format!("{}/metrics", admin.trim_end_matches('/'));
        let answer = http.get(&url, SCRAPE_TIMEOUT).await?;
        if !answer.status.is_success() {
            return Err(format!("{url}: status {}", answer.status.as_u16()));
        }
        let c = counters(&String::from_utf8_lossy(&answer.body), plan);
        total.requests += c.requests;
        total.ok += c.ok;
        for (le, n) in c.buckets {
            match total.buckets.iter_mut().find(|(l, _)| *l == le) {
                Some(b) => b.1 += n,
                None => total.buckets.push((le, n)),
            }
        }
    }
    total.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::plan::{Plan, Strategy};

    fn plan() -> Plan {
        Plan {
            name: "reviews".into(),
            namespace: "default".into(),
            host: "reviews".into(),
            fqdn: "reviews.default.svc.cluster.local".into(),
            port: None,
            stable: "v1".into(),
            canary: "v2".into(),
            gateways: vec![],
            strategy: Strategy::Canary { weights: vec![50] },
            interval: Duration::from_secs(1),
            threshold: 1,
            metrics: vec![],
            hooks: vec![],
            matches: serde_json::Value::Null,
            revision: String::new(),
            file: "f.yaml".into(),
        }
    }

    fn text(ok: u32, errors: u32, fast: u32) -> String {
        let sel = "reporter=\"source\",destination_service=\"reviews.default.svc.cluster.local\",destination_version=\"v2\"";
        let total = ok + errors;
        format!(
            "istio_requests_total{{{sel},response_code=\"200\"}} {ok}\n\
             istio_requests_total{{{sel},response_code=\"503\"}} {errors}\n\
             istio_requests_total{{reporter=\"source\",destination_service=\"reviews.default.svc.cluster.local\",destination_version=\"v1\",response_code=\"500\"}} 99\n\
             istio_requests_total{{reporter=\"destination\",destination_service=\"reviews.default.svc.cluster.local\",destination_version=\"v2\",response_code=\"500\"}} 99\n\
             istio_request_duration_milliseconds_bucket{{{sel},response_code=\"200\",le=\"10\"}} {fast}\n\
             istio_request_duration_milliseconds_bucket{{{sel},response_code=\"200\",le=\"100\"}} {total}\n\
             istio_request_duration_milliseconds_bucket{{{sel},response_code=\"200\",le=\"+Inf\"}} {total}\n"
        )
    }

    #[test]
    fn only_the_canary_subset_from_the_source_side_counts() {
        let c = counters(&text(90, 10, 100), &plan());
        assert_eq!((c.requests, c.ok), (100.0, 90.0));
        assert_eq!(c.success_rate(), Some(90.0));
        assert_eq!(c.buckets.len(), 3);
    }

    #[test]
    fn the_window_is_the_increase_and_a_reset_counts_from_zero() {
        let before = counters(&text(90, 10, 100), &plan());
        let now = counters(&text(190, 10, 110), &plan());
        let w = now.since(&before);
        assert_eq!(w.success_rate(), Some(100.0));
        // 10 of the 100 new requests under 10 ms: p99 in the 10..100 bucket.
        assert!(
            w.p99().is_some_and(|p| p > 10.0 && p <= 100.0),
            "{:?}",
            w.p99()
        );
        assert_eq!(now.since(&now).success_rate(), None);
        let restarted = counters(&text(5, 0, 5), &plan());
        assert_eq!(restarted.since(&now).requests, 5.0);
    }
}
