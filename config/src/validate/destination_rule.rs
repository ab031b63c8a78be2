//! DestinationRule rules (istio/istio `pkg/config/validation/validation.go`
//! `ValidateDestinationRule` and friends).

use super::names;
use super::V;
use crate::model::destination_rule::*;
use std::collections::BTreeSet;

pub(crate) fn validate(v: &mut V, dr: &DestinationRule) {
    if dr.host.is_empty() {
        v.err("spec.host", "destination rule must have a host");
    } else if let Err(e) = names::check_wildcard_domain(&dr.host) {
        v.err("spec.host", e);
    }
    if let Some(tp) = &dr.traffic_policy {
        traffic_policy(v, "spec.trafficPolicy", tp);
    }
    let mut seen = BTreeSet::new();
    for (i, s) in dr.subsets.iter().enumerate() {
        let p = format!("spec.subsets[{i}]");
        if s.name.is_empty() {
            v.err(&format!("{p}.name"), "subset name is required");
        } else if !names::is_dns1123_label(&s.name) {
            v.err(
                &format!("{p}.name"),
                format!("subset name {:?} is not a valid DNS-1123 label", s.name),
            );
        } else if !seen.insert(s.name.as_str()) {
            v.err(
                &format!("{p}.name"),
                format!("duplicate subset name {:?}", s.name),
            );
        }
        v.labels(&format!("{p}.labels"), &s.labels);
        if let Some(tp) = &s.traffic_policy {
            traffic_policy(v, &format!("{p}.trafficPolicy"), tp);
        }
    }
    v.export_to("spec.exportTo", &dr.export_to);
    if let Some(ws) = &dr.workload_selector {
        v.labels("spec.workloadSelector.matchLabels", &ws.match_labels);
        if dr
            .export_to
            .iter()
            .any(|e| e != "." && e != &v.res.namespace)
        {
            v.err("spec.exportTo", "a DestinationRule with a workloadSelector may only be exported to its own namespace");
        }
    }
}

fn traffic_policy(v: &mut V, p: &str, tp: &TrafficPolicy) {
    if tp.load_balancer.is_none()
        && tp.connection_pool.is_none()
        && tp.outlier_detection.is_none()
        && tp.tls.is_none()
        && tp.port_level_settings.is_empty()
        && tp.tunnel.is_none()
        && tp.proxy_protocol.is_none()
        && tp.retry_budget.is_none()
    {
        v.err(p, "traffic policy must specify at least one field");
    }
    blocks(
        v,
        p,
        &tp.load_balancer,
        &tp.connection_pool,
        &tp.outlier_detection,
        &tp.tls,
    );
    let mut ports = BTreeSet::new();
    for (i, pl) in tp.port_level_settings.iter().enumerate() {
        let pp = format!("{p}.portLevelSettings[{i}]");
        match &pl.port {
            None => v.err(
                &format!("{pp}.port"),
                "port must be specified for a port level setting",
            ),
            Some(port) => {
                if let Err(e) = names::check_port(port.number as u64) {
                    v.err(&format!("{pp}.port.number"), e);
                } else if !ports.insert(port.number) {
                    v.warn(
                        &format!("{pp}.port.number"),
                        format!(
                            "port {} has several port level settings; the first one is used",
                            port.number
                        ),
                    );
                }
            }
        }
        if pl.load_balancer.is_none()
            && pl.connection_pool.is_none()
            && pl.outlier_detection.is_none()
            && pl.tls.is_none()
        {
            v.err(&pp, "port level setting must specify at least one of loadBalancer, connectionPool, outlierDetection or tls");
        }
        blocks(
            v,
            &pp,
            &pl.load_balancer,
            &pl.connection_pool,
            &pl.outlier_detection,
            &pl.tls,
        );
    }
    if tp.port_level_settings.len() > 4096 {
        v.err(
            &format!("{p}.portLevelSettings"),
            "at most 4096 port level settings are allowed",
        );
    }
    if let Some(t) = &tp.tunnel {
        let tp_ = format!("{p}.tunnel");
        if tp.proxy_protocol.is_some() {
            v.err(p, "tunnel and proxyProtocol cannot be used together");
        }
        if !t.protocol.is_empty() && t.protocol != "CONNECT" && t.protocol != "POST" {
            v.err(
                &format!("{tp_}.protocol"),
                format!("tunnel protocol {:?} must be CONNECT or POST", t.protocol),
            );
        }
        if t.target_host.is_empty() {
            v.err(
                &format!("{tp_}.targetHost"),
                "tunnel targetHost is required",
            );
        } else if t.target_host.parse::<std::net::IpAddr>().is_err() {
            if let Err(e) = names::check_fqdn(&t.target_host) {
                v.err(&format!("{tp_}.targetHost"), e);
            }
        }
        if let Err(e) = names::check_port(t.target_port as u64) {
            v.err(&format!("{tp_}.targetPort"), e);
        }
        v.not_enforced(&tp_, "tunneling TCP over HTTP");
    }
    if tp.proxy_protocol.is_some() {
        v.not_enforced(
            &format!("{p}.proxyProtocol"),
            "PROXY protocol towards upstreams",
        );
    }
    if let Some(rb) = &tp.retry_budget {
        let rp = format!("{p}.retryBudget");
        if let Some(pc) = rb.percent {
            if !(0.0..=100.0).contains(&pc) {
                v.err(
                    &format!("{rp}.percent"),
                    format!("percent {pc} must be in the range 0..100"),
                );
            }
        }
        if let Some(bi) = &rb.budget_interval {
            if bi.is_negative() {
                v.err(
                    &format!("{rp}.budgetInterval"),
                    "budgetInterval must not be negative",
                );
            }
        }
        v.not_enforced(
            &rp,
            "retry budgets (connectionPool.http.maxRetries is enforced)",
        );
    }
}

fn blocks(
    v: &mut V,
    p: &str,
    lb: &Option<LoadBalancerSettings>,
    cp: &Option<ConnectionPoolSettings>,
    od: &Option<OutlierDetection>,
    tls: &Option<ClientTlsSettings>,
) {
    if let Some(lb) = lb {
        load_balancer(v, &format!("{p}.loadBalancer"), lb, od.is_some());
    }
    if let Some(cp) = cp {
        connection_pool(v, &format!("{p}.connectionPool"), cp);
    }
    if let Some(od) = od {
        outlier(v, &format!("{p}.outlierDetection"), od);
    }
    if let Some(tls) = tls {
        client_tls(v, &format!("{p}.tls"), tls);
    }
}

fn load_balancer(v: &mut V, p: &str, lb: &LoadBalancerSettings, has_outlier: bool) {
    let kinds = lb.simple.is_some() as u8
        + lb.consistent_hash.is_some() as u8
        + lb.backend_utilization.is_some() as u8;
    if kinds > 1 {
        v.err(
            p,
            "only one of simple, consistentHash or backendUtilization may be set",
        );
    }
    if lb.simple == Some(SimpleLb::LeastConn) {
        v.deprecated(&format!("{p}.simple"), "LEAST_REQUEST");
    }
    if let Some(ch) = &lb.consistent_hash {
        let cp = format!("{p}.consistentHash");
        let keys = ch.http_header_name.is_some() as u8
            + ch.http_cookie.is_some() as u8
            + ch.use_source_ip.is_some() as u8
            + ch.http_query_parameter_name.is_some() as u8;
        if keys > 1 {
            v.err(&cp, "only one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName may be set");
        }
        if keys == 0 {
            v.err(&cp, "consistentHash must set one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName");
        }
        if ch.http_header_name.as_deref() == Some("") {
            v.err(
                &format!("{cp}.httpHeaderName"),
                "header name must not be empty",
            );
        }
        if ch.http_query_parameter_name.as_deref() == Some("") {
            v.err(
                &format!("{cp}.httpQueryParameterName"),
                "query parameter name must not be empty",
            );
        }
        if let Some(c) = &ch.http_cookie {
            let kp = format!("{cp}.httpCookie");
            if c.name.is_empty() {
                v.err(&format!("{kp}.name"), "name required for HttpCookie");
            }
            if let Some(ttl) = &c.ttl {
                if ttl.is_negative() {
                    v.err(&format!("{kp}.ttl"), "ttl must not be negative");
                }
            }
            let mut seen = BTreeSet::new();
            for (i, a) in c.attributes.iter().enumerate() {
                if a.name.is_empty() {
                    v.err(
                        &format!("{kp}.attributes[{i}].name"),
                        "cookie attribute name must not be empty",
                    );
                } else if !seen.insert(a.name.as_str()) {
                    v.err(
                        &format!("{kp}.attributes[{i}].name"),
                        format!("duplicate cookie attribute {:?}", a.name),
                    );
                }
            }
        }
        if ch.ring_hash.is_some() && ch.maglev.is_some() {
            v.err(&cp, "only one of ringHash or maglev may be set");
        }
        if ch.minimum_ring_size.is_some() {
            v.deprecated(&format!("{cp}.minimumRingSize"), "ringHash.minimumRingSize");
            if ch.ring_hash.is_some() || ch.maglev.is_some() {
                v.err(
                    &format!("{cp}.minimumRingSize"),
                    "minimumRingSize cannot be set together with ringHash or maglev",
                );
            }
        }
        if let Some(m) = &ch.maglev {
            if let Some(ts) = m.table_size {
                if ts == 0 || ts >= 5_000_011 || !is_prime(ts) {
                    v.err(
                        &format!("{cp}.maglev.tableSize"),
                        format!("tableSize {ts} must be a prime number below 5000011"),
                    );
                }
            }
        }
        if let Some(r) = &ch.ring_hash {
            if r.minimum_ring_size == Some(0) {
                v.err(
                    &format!("{cp}.ringHash.minimumRingSize"),
                    "minimumRingSize must be positive",
                );
            }
            if r.minimum_ring_size.is_some_and(|s| s > 8_388_608) {
                v.err(
                    &format!("{cp}.ringHash.minimumRingSize"),
                    "minimumRingSize must be at most 8388608",
                );
            }
        }
    }
    if lb.backend_utilization.is_some() {
        v.not_enforced(
            &format!("{p}.backendUtilization"),
            "ORCA utilization-based load balancing",
        );
        if let Some(b) = &lb.backend_utilization {
            if b.weight_update_period
                .is_some_and(|d| d < crate::Duration::from_millis(100))
            {
                v.err(
                    &format!("{p}.backendUtilization.weightUpdatePeriod"),
                    "weightUpdatePeriod must be at least 100ms",
                );
            }
        }
    }
    if let Some(l) = &lb.locality_lb_setting {
        let lp = format!("{p}.localityLbSetting");
        if lb.zone_aware_lb_setting.is_some() {
            v.err(
                p,
                "only one of localityLbSetting or zoneAwareLbSetting may be set",
            );
        }
        if !l.distribute.is_empty() && !l.failover.is_empty() {
            v.err(
                &lp,
                "can not simultaneously specify 'distribute' and 'failover'",
            );
        }
        for (i, d) in l.distribute.iter().enumerate() {
            let dp = format!("{lp}.distribute[{i}]");
            let mut sum = 0u64;
            for (loc, w) in &d.to {
                if !(1..=100).contains(w) {
                    v.err(
                        &format!("{dp}.to.{loc}"),
                        format!("locality weight {w} must be in the range 1..100"),
                    );
                }
                sum += *w as u64;
            }
            if sum != 100 {
                v.err(
                    &format!("{dp}.to"),
                    format!("locality weights must sum to 100, got {sum}"),
                );
            }
        }
        for (i, f) in l.failover.iter().enumerate() {
            let fp = format!("{lp}.failover[{i}]");
            if f.from == f.to {
                v.err(
                    &fp,
                    "locality lb failover settings must specify different regions",
                );
            }
            if f.from.contains('/') || f.to.contains('/') {
                v.err(&fp, "locality lb failover only specifies region");
            }
            if f.from.contains('*') || f.to.contains('*') {
                v.err(
                    &fp,
                    "locality lb failover region should not contain '*' wildcard",
                );
            }
        }
        if (!l.failover.is_empty() || !l.failover_priority.is_empty()) && !has_outlier {
            v.warn(
                &lp,
                "locality failover has no effect without outlierDetection",
            );
        }
        v.not_enforced(
            &lp,
            "locality-aware load balancing (endpoints have no locality in file mode)",
        );
    }
    if let Some(z) = &lb.zone_aware_lb_setting {
        if z.min_cluster_size == Some(0) {
            v.err(
                &format!("{p}.zoneAwareLbSetting.minClusterSize"),
                "minClusterSize must be at least 1",
            );
        }
        v.not_enforced(
            &format!("{p}.zoneAwareLbSetting"),
            "zone-aware load balancing",
        );
    }
    if lb.warmup.is_some() && lb.warmup_duration_secs.is_some() {
        v.err(p, "only one of warmupDurationSecs or warmup can be set");
    }
    if lb.warmup_duration_secs.is_some() {
        v.deprecated(&format!("{p}.warmupDurationSecs"), "warmup.duration");
        v.duration(&format!("{p}.warmupDurationSecs"), &lb.warmup_duration_secs);
        v.not_enforced(&format!("{p}.warmupDurationSecs"), "slow start");
    }
    if let Some(w) = &lb.warmup {
        let wp = format!("{p}.warmup");
        match &w.duration {
            None => v.err(&format!("{wp}.duration"), "warmup duration is required"),
            Some(_) => v.duration(&format!("{wp}.duration"), &w.duration),
        }
        if let Some(mp) = w.minimum_percent {
            if !(0.0..=100.0).contains(&mp) {
                v.err(
                    &format!("{wp}.minimumPercent"),
                    format!("minimumPercent {mp} must be in the range 0..100"),
                );
            }
        }
        // Istio (`validateLoadBalancer`): at least 1, where 1 is a linear ramp.
        if let Some(a) = w.aggression {
            if a.is_nan() || a < 1.0 {
                v.err(
                    &format!("{wp}.aggression"),
                    format!("aggression {a} should be greater than or equal to 1"),
                );
            }
        }
        v.not_enforced(&wp, "slow start");
    }
}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut i = 2u64;
    while i * i <= n {
        if n.is_multiple_of(i) {
            return false;
        }
        i += 1;
    }
    true
}

fn non_negative(v: &mut V, p: &str, x: Option<i64>) {
    if let Some(x) = x {
        if x < 0 {
            v.err(p, format!("{x} must not be negative"));
        }
        if x > u32::MAX as i64 {
            v.err(p, format!("{x} is larger than 2^32-1"));
        }
    }
}

fn connection_pool(v: &mut V, p: &str, cp: &ConnectionPoolSettings) {
    if cp.tcp.is_none() && cp.http.is_none() {
        v.err(p, "must set connection pool for at least one protocol");
    }
    if let Some(t) = &cp.tcp {
        let tp = format!("{p}.tcp");
        non_negative(v, &format!("{tp}.maxConnections"), t.max_connections);
        v.duration(&format!("{tp}.connectTimeout"), &t.connect_timeout);
        v.duration(
            &format!("{tp}.maxConnectionDuration"),
            &t.max_connection_duration,
        );
        // Istio: tcp.idleTimeout is exempt from the duration rule; `0s` disables it.
        if let Some(it) = &t.idle_timeout {
            if !it.is_zero() {
                v.duration(&format!("{tp}.idleTimeout"), &t.idle_timeout);
            }
        }
        if let Some(k) = &t.tcp_keepalive {
            v.duration(&format!("{tp}.tcpKeepalive.time"), &k.time);
            v.duration(&format!("{tp}.tcpKeepalive.interval"), &k.interval);
        }
    }
    if let Some(h) = &cp.http {
        let hp = format!("{p}.http");
        non_negative(
            v,
            &format!("{hp}.http1MaxPendingRequests"),
            h.http1_max_pending_requests,
        );
        non_negative(v, &format!("{hp}.http2MaxRequests"), h.http2_max_requests);
        non_negative(
            v,
            &format!("{hp}.maxRequestsPerConnection"),
            h.max_requests_per_connection,
        );
        non_negative(v, &format!("{hp}.maxRetries"), h.max_retries);
        non_negative(
            v,
            &format!("{hp}.maxConcurrentStreams"),
            h.max_concurrent_streams,
        );
        if h.max_concurrent_streams
            .is_some_and(|x| x > i32::MAX as i64)
        {
            v.err(
                &format!("{hp}.maxConcurrentStreams"),
                "maxConcurrentStreams must be at most 2^31-1",
            );
        }
        v.duration(&format!("{hp}.idleTimeout"), &h.idle_timeout);
        if h.h2_upgrade_policy == Some(H2UpgradePolicy::Upgrade) && h.use_client_protocol {
            v.err(
                &hp,
                "useClientProtocol cannot be set together with h2UpgradePolicy UPGRADE",
            );
        }
        if let Some(k) = &h.http2_keep_alive {
            let kp = format!("{hp}.http2KeepAlive");
            if k.interval.is_none() || k.timeout.is_none() {
                v.err(&kp, "http2KeepAlive requires both interval and timeout");
            }
            v.duration(&format!("{kp}.interval"), &k.interval);
            v.duration(&format!("{kp}.timeout"), &k.timeout);
        }
    }
}

fn outlier(v: &mut V, p: &str, od: &OutlierDetection) {
    if let Some(ce) = od.consecutive_errors {
        v.deprecated(
            &format!("{p}.consecutiveErrors"),
            "consecutiveGatewayErrors or consecutive5xxErrors",
        );
        if ce < 0 {
            v.err(
                &format!("{p}.consecutiveErrors"),
                "consecutiveErrors must not be negative",
            );
        }
    }
    v.duration(&format!("{p}.interval"), &od.interval);
    v.duration(&format!("{p}.baseEjectionTime"), &od.base_ejection_time);
    for (name, x) in [
        ("maxEjectionPercent", od.max_ejection_percent),
        ("minHealthPercent", od.min_health_percent),
    ] {
        if let Some(x) = x {
            if !(0..=100).contains(&x) {
                v.err(
                    &format!("{p}.{name}"),
                    format!("{name} {x} must be in the range 0..100"),
                );
            }
        }
    }
    if od.consecutive_local_origin_failures.is_some() && !od.split_external_local_origin_errors {
        v.err(
            &format!("{p}.consecutiveLocalOriginFailures"),
            "consecutiveLocalOriginFailures requires splitExternalLocalOriginErrors to be true",
        );
    }
    for (i, c) in od.outlier_detection_http_error_codes.iter().enumerate() {
        if !(100..=599).contains(c) {
            v.err(
                &format!("{p}.outlierDetectionHttpErrorCodes[{i}]"),
                format!("status code {c} must be in the range 100..599"),
            );
        }
    }
    if let Some(f) = od.failure_percentage_threshold {
        if f > 100 {
            v.err(
                &format!("{p}.failurePercentageThreshold"),
                format!("failurePercentageThreshold {f} must be at most 100"),
            );
        }
        v.not_enforced(
            &format!("{p}.failurePercentageThreshold"),
            "failure-percentage ejection",
        );
    }
    if let (Some(g), Some(x)) = (od.consecutive_gateway_errors, od.consecutive_5xx_errors) {
        if g > 0 && x > 0 && g >= x {
            v.warn(
                &format!("{p}.consecutiveGatewayErrors"),
                "has no effect: it is not lower than consecutive5xxErrors, which counts gateway errors too",
            );
        }
    }
}

fn client_tls(v: &mut V, p: &str, t: &ClientTlsSettings) {
    let has_files = !t.client_certificate.is_empty()
        || !t.private_key.is_empty()
        || !t.ca_certificates.is_empty();
    let istio_mutual = t.mode == Some(ClientTlsMode::IstioMutual);
    // Istio checks credentialName against the file fields for SIMPLE and MUTUAL only.
    let simple_or_mutual = matches!(
        t.mode,
        Some(ClientTlsMode::Simple) | Some(ClientTlsMode::Mutual)
    );
    if simple_or_mutual && !t.credential_name.is_empty() && has_files {
        v.err(
            p,
            "cannot specify client certificates or CA certificate if credentialName is set",
        );
    }
    if simple_or_mutual && !t.credential_name.is_empty() && !t.ca_crl.is_empty() {
        v.err(p, "cannot specify caCrl if credentialName is set");
    }
    let skip = t.insecure_skip_verify == Some(true);
    match t.mode {
        Some(ClientTlsMode::Simple) => {
            if skip
                && (!t.ca_certificates.is_empty()
                    || !t.credential_name.is_empty()
                    || !t.subject_alt_names.is_empty())
            {
                v.err(p, "cannot specify caCertificates, credentialName or subjectAltNames when insecureSkipVerify is set true");
            }
        }
        Some(ClientTlsMode::Mutual) => {
            if t.credential_name.is_empty() {
                if t.client_certificate.is_empty() {
                    v.err(
                        &format!("{p}.clientCertificate"),
                        "client certificate required for mutual tls",
                    );
                }
                if t.private_key.is_empty() {
                    v.err(
                        &format!("{p}.privateKey"),
                        "private key required for mutual tls",
                    );
                }
            }
            if skip && (!t.ca_certificates.is_empty() || !t.subject_alt_names.is_empty()) {
                v.err(p, "cannot specify caCertificates or subjectAltNames when insecureSkipVerify is set true");
            }
        }
        Some(ClientTlsMode::IstioMutual) => {
            // Istio accepts these fields with ISTIO_MUTUAL and ignores them.
            for (field, set) in [
                ("clientCertificate", !t.client_certificate.is_empty()),
                ("privateKey", !t.private_key.is_empty()),
                ("caCertificates", !t.ca_certificates.is_empty()),
                ("credentialName", !t.credential_name.is_empty()),
            ] {
                if set {
                    v.warn(
                        &format!("{p}.{field}"),
                        format!("{field} is ignored with ISTIO_MUTUAL: the mesh identity is used"),
                    );
                }
            }
        }
        Some(ClientTlsMode::Disable) | None => {}
    }
    for (field, file) in [
        ("clientCertificate", &t.client_certificate),
        ("privateKey", &t.private_key),
        ("caCertificates", &t.ca_certificates),
    ] {
        // Checked where they are used: only SIMPLE and MUTUAL read them (with ISTIO_MUTUAL
        // they are ignored, warned above; with DISABLE there is no TLS).
        if !file.is_empty() && simple_or_mutual {
            super::files::check(v, &format!("{p}.{field}"), file);
        }
    }
    if !t.ca_cert_credential_name.is_empty()
        && !matches!(
            t.mode,
            Some(ClientTlsMode::Simple) | Some(ClientTlsMode::Mutual)
        )
    {
        v.err(
            &format!("{p}.caCertCredentialName"),
            "caCertCredentialName is only valid with SIMPLE or MUTUAL",
        );
    }
    if !t.credential_name.is_empty() && !istio_mutual {
        v.not_enforced(&format!("{p}.credentialName"), "Kubernetes secrets are not read in file mode; use clientCertificate/privateKey/caCertificates");
    }
    if !t.ca_cert_credential_name.is_empty() {
        v.not_enforced(
            &format!("{p}.caCertCredentialName"),
            "Kubernetes secrets are not read in file mode; use caCertificates",
        );
    }
    if !t.ca_crl.is_empty() {
        v.not_enforced(&format!("{p}.caCrl"), "certificate revocation lists");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn primes() {
        assert!(super::is_prime(65537));
        assert!(!super::is_prime(65536));
        assert!(!super::is_prime(1));
    }
}
