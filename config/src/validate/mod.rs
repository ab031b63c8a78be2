//! Validation: Istio's rules (what `istioctl validate` rejects is an error) and analyzer
//! checks (what `istioctl analyze` flags is a warning). Every problem is collected; nothing
//! stops at the first.

mod authorization_policy;
mod destination_rule;
mod extension_providers;
mod files;
mod gateway;
mod gateway_api;
pub mod names;
mod peer_authentication;
mod proxy;
mod rate_limit_policy;
mod references;
mod request_authentication;
mod rollout;
pub use files::MissingFiles;
pub use references::DEFAULT_ROOT_NAMESPACE;
pub use telemetry::METRICS as TELEMETRY_METRICS;
pub use virtual_service::{decode_base64, RETRY_ON_TOKENS};
mod service_entry;
mod sidecar;
mod telemetry;
mod virtual_service;

use crate::diag::{Diagnostic, Diagnostics, Severity};
use crate::duration::Duration;
use crate::model::common::{Percent, StringMatch};
use crate::model::map::Map;
use crate::model::{Resource, Spec};

/// Validates every resource and the references between them. `missing_files` says how a
/// certificate, key or CA file that cannot be read is reported (see [`MissingFiles`]).
pub fn validate(resources: &[Resource], missing_files: MissingFiles) -> Diagnostics {
    let mut out = Diagnostics::default();
    for res in resources {
        // A deferred document was validated on its own as it was loaded
        // ([`document`]): parsing it again here would only repeat that.
        if !matches!(res.spec, Spec::Deferred(_)) {
            document(res, missing_files, &mut out);
        }
    }
    references::check(resources, &mut out);
    rate_limit_policy::check_global_backend(resources, &mut out);
    rollout::check_subsets(resources, &mut out);
    out
}

/// Validates one resource on its own (its metadata and spec), adding to `out`.
pub(crate) fn document(res: &Resource, missing_files: MissingFiles, out: &mut Diagnostics) {
    let mut v = V {
        res,
        out,
        missing_files,
    };
    v.metadata();
    match &*res.spec() {
        Spec::VirtualService(s) => virtual_service::validate(&mut v, s),
        Spec::DestinationRule(s) => destination_rule::validate(&mut v, s),
        Spec::ServiceEntry(s) => service_entry::validate(&mut v, s),
        Spec::Gateway(s) => gateway::validate(&mut v, s),
        Spec::PeerAuthentication(s) => peer_authentication::validate(&mut v, s),
        Spec::AuthorizationPolicy(s) => authorization_policy::validate(&mut v, s),
        Spec::Telemetry(s) => telemetry::validate(&mut v, s),
        Spec::WorkloadEntry(s) => service_entry::validate_workload_entry(&mut v, s),
        Spec::Sidecar(s) => sidecar::validate(&mut v, s),
        Spec::RequestAuthentication(s) => request_authentication::validate(&mut v, s),
        Spec::Proxy(s) => proxy::validate(&mut v, s),
        Spec::RateLimitPolicy(s) => rate_limit_policy::validate(&mut v, s),
        Spec::Rollout(s) => rollout::validate(&mut v, s),
        Spec::GatewayApi(s) => gateway_api::validate(&mut v, s),
        // `spec()` never yields it.
        Spec::Deferred(_) => {}
    }
}

/// The validation context of one resource: where diagnostics go and whom they name.
pub(crate) struct V<'a> {
    pub res: &'a Resource,
    pub out: &'a mut Diagnostics,
    /// How files named in the document that cannot be read are reported.
    pub missing_files: MissingFiles,
}

impl V<'_> {
    fn push(&mut self, severity: Severity, path: &str, message: String) {
        self.out.push(diag_for(self.res, severity, path, message));
    }

    /// Records an error at `path`.
    pub fn err(&mut self, path: &str, message: impl Into<String>) {
        self.push(Severity::Error, path, message.into());
    }

    /// Records a warning at `path`.
    pub fn warn(&mut self, path: &str, message: impl Into<String>) {
        self.push(Severity::Warning, path, message.into());
    }

    /// Warns that a field is parsed and validated but not enforced by this version.
    pub fn not_enforced(&mut self, path: &str, why: &str) {
        self.warn(
            path,
            format!("field is accepted but not enforced yet: {why}"),
        );
    }

    /// Warns that a field is deprecated by Istio.
    pub fn deprecated(&mut self, path: &str, instead: &str) {
        self.warn(path, format!("deprecated field; use {instead} instead"));
    }

    fn metadata(&mut self) {
        let res = self.res;
        if res.name.is_empty() {
            self.err("metadata.name", "metadata.name is required");
        } else if !names::is_dns1123_subdomain(&res.name) {
            self.err(
                "metadata.name",
                format!(
                    "invalid name {:?}: must be a lower-case DNS-1123 subdomain",
                    res.name
                ),
            );
        }
        if res.kind != crate::model::Kind::AuthorizationPolicy
            && res.annotations.contains_key("istio.io/dry-run")
        {
            self.err(
                "metadata.annotations.istio.io/dry-run",
                "the istio.io/dry-run annotation is only supported on AuthorizationPolicy",
            );
        }
        if !names::is_lower_dns1123_label(&res.namespace) {
            self.err(
                "metadata.namespace",
                format!(
                    "invalid namespace {:?}: must be a lower-case DNS-1123 label",
                    res.namespace
                ),
            );
        }
    }

    /// Istio's duration rule (≥ 1ms, whole milliseconds).
    pub fn duration(&mut self, path: &str, d: &Option<Duration>) {
        if let Some(d) = d {
            if let Err(e) = d.check_istio() {
                self.err(path, e);
            }
        }
    }

    /// A `Percent` in 0..=100.
    pub fn percent(&mut self, path: &str, p: &Option<Percent>) {
        if let Some(p) = p {
            if !(0.0..=100.0).contains(&p.value) || p.value.is_nan() {
                self.err(
                    &format!("{path}.value"),
                    format!("percentage {} must be in the range 0..100", p.value),
                );
            }
        }
    }

    /// Label selector maps: Kubernetes syntax, no wildcards.
    pub fn labels(&mut self, path: &str, labels: &Map<String, String>) {
        for (k, val) in labels {
            if let Err(e) = names::check_label_key(k) {
                self.err(path, e);
            }
            if let Err(e) = names::check_label_value(k, val) {
                self.err(&format!("{path}.{k}"), e);
            }
        }
    }

    /// `exportTo` lists.
    pub fn export_to(&mut self, path: &str, list: &[String]) {
        let is_se = self.res.kind == crate::model::Kind::ServiceEntry;
        for e in names::check_export_to(list, &self.res.namespace, is_se) {
            self.err(path, e);
        }
    }

    /// A `StringMatch`. `allow_empty_prefix` is true only for `uri` (Istio allows
    /// `prefix: ""` there); `allow_unset` lets `{}` (no matcher) through, which match
    /// conditions accept as "present"; `star_is_presence` accepts `regex: "*"` as a presence
    /// match, which Istio does only for `withoutHeaders` (everywhere else `*` is compiled as
    /// a regex and fails).
    pub fn string_match(
        &mut self,
        path: &str,
        m: &StringMatch,
        allow_empty_prefix: bool,
        allow_unset: bool,
        star_is_presence: bool,
    ) {
        if m.kinds_set() > 1 {
            self.err(path, "only one of exact, prefix or regex may be set");
        }
        if m.is_empty() && !allow_unset {
            self.err(path, "one of exact, prefix or regex must be set");
        }
        if let Some(p) = &m.prefix {
            if p.is_empty() && !allow_empty_prefix {
                self.err(&format!("{path}.prefix"), "prefix must not be empty");
            }
        }
        if let Some(re) = &m.regex {
            if !(star_is_presence && re == "*") {
                self.regex(&format!("{path}.regex"), re);
            }
        }
    }

    /// An RE2 regular expression Envoy would accept.
    pub fn regex(&mut self, path: &str, re: &str) {
        if let Err(e) = check_regex(re) {
            self.err(path, e);
        }
    }
}

/// Builds a diagnostic attributed to `res`.
pub(crate) fn diag_for(
    res: &Resource,
    severity: Severity,
    path: &str,
    message: String,
) -> Diagnostic {
    Diagnostic {
        severity,
        origin: Some(res.origin.clone()),
        resource: Some(res.id()),
        path: path.to_string(),
        line: None,
        message,
    }
}

/// Envoy's `safe_regex` is RE2 with a program-size limit; Istio caps patterns at 1024
/// bytes. Rust's `regex` has RE2's syntax and guarantees (no backreferences, linear time).
pub fn check_regex(re: &str) -> Result<(), String> {
    if re.is_empty() {
        return Err("regex must not be empty".into());
    }
    if re.len() > 1024 {
        return Err(format!(
            "regex is {} bytes long; the limit is 1024",
            re.len()
        ));
    }
    regex::Regex::new(re)
        .map(|_| ())
        .map_err(|e| format!("invalid regex {re:?}: {}", first_line(&e.to_string())))
}

fn first_line(s: &str) -> String {
    // regex errors are multi-line diagrams; keep the last line, which says what is wrong.
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
        .trim_start_matches("error: ")
        .to_string()
}
