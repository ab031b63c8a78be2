//! The command's own metrics, `meshproxy_rollout_*`, served as Prometheus text on
//! `--metrics-address` (`GET /metrics`): per rollout its phase, canary weight, failed
//! checks, checks run and the last value of each metric check.

use super::analysis::Measured;
use super::plan::Plan;
use super::state::{Phase, State};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use metrics::{Key, Label, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

/// The recorder every rollout reports to.
#[derive(Clone)]
pub struct Stats {
    recorder: Arc<PrometheusRecorder>,
}

fn meta() -> Metadata<'static> {
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()))
}

impl Default for Stats {
    fn default() -> Self {
        let recorder = PrometheusBuilder::new().build_recorder();
        for (name, help) in [
            (
                "meshproxy_rollout_phase",
                "1 for the rollout's current phase, 0 for the others",
            ),
            (
                "meshproxy_rollout_weight",
                "The canary's share of the default route, in %",
            ),
            (
                "meshproxy_rollout_failed_checks",
                "Failed checks of the current release",
            ),
            (
                "meshproxy_rollout_metric_value",
                "The last value of each metric check",
            ),
        ] {
            recorder.describe_gauge(name.into(), None, help.into());
        }
        recorder.describe_counter(
            "meshproxy_rollout_checks_total".into(),
            None,
            "Checks run, by result (passed, failed)".into(),
        );
        Stats {
            recorder: Arc::new(recorder),
        }
    }
}

impl Stats {
    fn labels(plan: &Plan, extra: Option<(&'static str, String)>) -> Vec<Label> {
        let mut l = vec![
            Label::new("namespace", plan.namespace.clone()),
            Label::new("name", plan.name.clone()),
        ];
        if let Some((k, v)) = extra {
            l.push(Label::new(k, v));
        }
        l
    }

    fn gauge(&self, name: &'static str, labels: Vec<Label>, v: f64) {
        self.recorder
            .register_gauge(&Key::from_parts(name, labels), &meta())
            .set(v);
    }

    /// Records where `plan` stands.
    pub fn state(&self, plan: &Plan, st: &State) {
        for p in Phase::ALL {
            let labels = Self::labels(plan, Some(("phase", p.as_str().to_string())));
            self.gauge(
                "meshproxy_rollout_phase",
                labels,
                f64::from(u8::from(p == st.phase)),
            );
        }
        self.gauge(
            "meshproxy_rollout_weight",
            Self::labels(plan, None),
            st.weight.into(),
        );
        let failed = Self::labels(plan, None);
        self.gauge(
            "meshproxy_rollout_failed_checks",
            failed,
            st.failed_checks.into(),
        );
    }

    /// Records one check: its result and its values.
    pub fn check(&self, plan: &Plan, passed: bool, measured: &[Measured]) {
        let result = if passed { "passed" } else { "failed" };
        let key = Key::from_parts(
            "meshproxy_rollout_checks_total",
            Self::labels(plan, Some(("result", result.to_string()))),
        );
        self.recorder.register_counter(&key, &meta()).increment(1);
        for m in measured {
            if let Ok(v) = m.value {
                let labels = Self::labels(plan, Some(("metric", m.name.clone())));
                self.gauge("meshproxy_rollout_metric_value", labels, v);
            }
        }
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        self.recorder.handle().render()
    }

    /// Serves `GET /metrics` on `listener` until the process ends.
    pub fn serve(&self, listener: tokio::net::TcpListener) {
        let stats = self.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let stats = stats.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: http::Request<_>| {
                        let stats = stats.clone();
                        async move { Ok::<_, Infallible>(answer(&stats, &req)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
    }
}

fn answer<B>(stats: &Stats, req: &http::Request<B>) -> http::Response<Full<Bytes>> {
    let (status, body) = if req.uri().path() == "/metrics" {
        (http::StatusCode::OK, stats.render())
    } else {
        (
            http::StatusCode::NOT_FOUND,
            "only /metrics here\n".to_string(),
        )
    };
    let mut resp = http::Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp
}

/// Binds `addr` for [`Stats::serve`].
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}
