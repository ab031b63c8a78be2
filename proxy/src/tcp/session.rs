//! What a proxied TCP stream reports: Istio's TCP metrics (`istio_tcp_connections_opened_total`,
//! `..._closed_total`, `istio_tcp_sent_bytes_total`, `istio_tcp_received_bytes_total`) and
//! one access-log line when it ends, in Envoy's format for TCP (`"- - -" 0 <flags>`).

use crate::access_log::Record;
use crate::conn_info::ConnInfo;
use crate::flags::Flags;
use crate::runtime::active::Active;
use crate::runtime::DataPath;
use crate::telemetry::istio::{Reporter, RequestLabels, Security};
use crate::upstream::cluster_state::ClusterState;
use crate::upstream::link::{Link, LinkError};
use meshproxy_config::compile::telemetry::{AccessLogPolicy, LogFilter};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// One proxied TCP stream, from its accept to its end.
pub struct Session {
    shared: Arc<DataPath>,
    labels: Option<RequestLabels>,
    record: Option<Record>,
    /// Telemetry's access-log filter for the stream's side.
    log_filter: Option<Arc<LogFilter>>,
    started: Instant,
    opened: bool,
}

impl Session {
    fn new(
        shared: &Arc<DataPath>,
        log: &AccessLogPolicy,
        labels: impl FnOnce() -> RequestLabels,
    ) -> Session {
        // Telemetry: access logging off for the side keeps no record at all.
        let record = (shared.access_log.enabled() && !log.disabled).then(|| Record {
            start: Some(SystemTime::now()),
            ..Default::default()
        });
        Session {
            shared: shared.clone(),
            labels: shared.metrics.enabled.then(labels),
            record,
            log_filter: log.filter.clone(),
            started: Instant::now(),
            opened: false,
        }
    }

    /// A stream this proxy sends out (outbound listeners, gateways, `CONNECT`), to the
    /// cluster `state` (reporter `source`).
    pub fn outbound(
        shared: &Arc<DataPath>,
        active: &Active,
        state: &ClusterState,
        route: &str,
    ) -> Session {
        let log = &active.snapshot.telemetry.client.access_log;
        let mut s = Session::new(shared, log, || RequestLabels {
            reporter: Reporter::Source,
            source: active.local_peer.clone(),
            destination: active.unknown_peer.clone(),
            service: state.service_labels.clone(),
            grpc: false,
            security: Security::Unknown,
            disabled: active.snapshot.telemetry.client.metrics.disabled,
        });
        if let Some(r) = s.record.as_mut() {
            r.upstream_cluster = state.key.name().into();
            r.route_name = route.into();
        }
        s
    }

    /// A stream from the mesh to the local application (reporter `destination`).
    pub fn inbound(shared: &Arc<DataPath>, active: &Active, conn: &ConnInfo) -> Session {
        let log = &active.snapshot.telemetry.server.access_log;
        let mut s = Session::new(shared, log, || RequestLabels {
            reporter: Reporter::Destination,
            source: conn
                .peer_labels
                .clone()
                .unwrap_or_else(|| active.unknown_peer.clone()),
            destination: active.local_peer.clone(),
            service: active.inbound_service.clone(),
            grpc: false,
            security: if conn.peer_identity.is_some() {
                Security::MutualTls
            } else {
                Security::None
            },
            disabled: active.snapshot.telemetry.server.metrics.disabled,
        });
        if let Some(r) = s.record.as_mut() {
            r.upstream_cluster = active
                .inbound
                .iter()
                .find(|i| *i.listener == *conn.listener)
                .map(|i| i.cluster.name.clone())
                .unwrap_or_default();
        }
        s
    }

    /// The upstream stream is open.
    pub fn opened(&mut self, link: &Link) {
        self.upstream(&link.endpoint.name);
    }

    /// The upstream stream to `host` is open.
    pub fn upstream(&mut self, host: &str) {
        if let Some(r) = self.record.as_mut() {
            r.upstream_host = host.into();
        }
        if let Some(l) = &self.labels {
            self.shared.metrics.record_tcp_open(l);
        }
        self.opened = true;
    }

    /// No upstream stream could be opened: the client's connection is closed.
    pub fn failed(self, e: &LinkError) {
        let flags = match e {
            LinkError::Overflow => Flags::UPSTREAM_OVERFLOW,
            LinkError::NoHealthy => Flags::NO_HEALTHY_UPSTREAM,
            LinkError::Connect(_) => Flags::UPSTREAM_CONNECTION_FAILURE,
        };
        self.closed(flags, 0, 0);
    }

    /// The stream ended: `received` bytes from the client, `sent` to it.
    pub fn closed(mut self, flags: Flags, received: u64, sent: u64) {
        if let Some(l) = &self.labels {
            // A connection that never reached an upstream was still opened by its client.
            if !self.opened {
                self.shared.metrics.record_tcp_open(l);
            }
            self.shared
                .metrics
                .record_tcp_close(l, flags, received, sent);
        }
        if let Some(mut r) = self.record.take() {
            r.flags = flags;
            r.bytes_received = received;
            r.bytes_sent = sent;
            r.duration = self.started.elapsed();
            let filter = self.log_filter.as_deref();
            crate::telemetry::log_filter::log(&self.shared.access_log, filter, &r);
        }
    }
}
