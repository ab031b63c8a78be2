//! The generated Istio documents: typed like loaded ones (through their JSON text, which
//! `/config_dump` shows), annotated with the Gateway API document they come from.

use super::precedence::SortKey;
use super::status::{Condition, ParentStatus};
use super::Conversion;
use crate::diag::{Diagnostic, Diagnostics, Origin, Severity};
use crate::model::gateway_api::routes::ParentRef;
use crate::model::{Gateway, Kind, Resource, Spec, VirtualService};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// The annotation naming the document a generated one comes from.
pub const SOURCE_ANNOTATION: &str = "meshproxy.io/gateway-api-source";

/// Where the rules of one VirtualService come from: its namespace, the gateway it binds
/// (`namespace/name` or `mesh`) and its host.
pub type BucketKey = (String, String, String);

/// HTTP rules or L4 routes gathered for one VirtualService.
#[derive(Default)]
pub struct Bucket {
    /// The first contributing document (for the generated one's origin).
    pub origin: Option<Origin>,
    /// The contributing documents.
    pub sources: BTreeSet<String>,
    /// HTTP rules with their precedence.
    pub http: Vec<(SortKey, Value)>,
    /// `tls` routes.
    pub tls: Vec<Value>,
    /// `tcp` routes.
    pub tcp: Vec<Value>,
}

/// What conversion has produced so far.
#[derive(Default)]
pub struct Output {
    resources: Vec<Resource>,
    buckets: BTreeMap<BucketKey, Bucket>,
    /// Route status.
    pub status: Vec<ParentStatus>,
    diags: Diagnostics,
}

impl Output {
    /// A warning on `res` at `path`.
    pub fn warn(&mut self, res: &Resource, path: &str, message: impl Into<String>) {
        self.diags.push(Diagnostic {
            severity: Severity::Warning,
            origin: Some(res.origin.clone()),
            resource: Some(res.id()),
            path: path.to_string(),
            line: None,
            message: message.into(),
        });
    }

    /// Records the status of `res` for its parentRef `pi` (`p`): `Accepted` from
    /// `refused`, `ResolvedRefs` from the first unresolved reference `issue`; the False
    /// conditions are warnings too.
    pub fn record(
        &mut self,
        res: &Resource,
        pi: usize,
        p: &ParentRef,
        refused: Option<&Condition>,
        issue: &Option<(String, Condition)>,
    ) {
        let st = ParentStatus {
            route: res.id(),
            parent: super::attach::parent_name(res, p),
            accepted: refused
                .cloned()
                .unwrap_or_else(|| Condition::ok("Accepted")),
            resolved_refs: issue
                .as_ref()
                .map(|(_, c)| c.clone())
                .unwrap_or_else(|| Condition::ok("ResolvedRefs")),
        };
        let refs_path = issue.as_ref().map(|(p, _)| p.as_str()).unwrap_or("");
        for d in st.warnings(res, &format!("spec.parentRefs[{pi}]"), refs_path) {
            self.diags.push(d);
        }
        self.status.push(st);
    }

    /// The bucket of `key`, recording `res` as a source.
    pub fn bucket(&mut self, key: BucketKey, res: &Resource) -> &mut Bucket {
        let b = self.buckets.entry(key).or_default();
        b.origin.get_or_insert_with(|| res.origin.clone());
        b.sources.insert(res.id());
        b
    }

    /// Adds a generated document of `kind` (Istio `Gateway` or `VirtualService`).
    pub fn push_doc(&mut self, from: &Resource, kind: Kind, ns: &str, name: &str, spec: Value) {
        let source = from.id();
        if let Some(r) = self.make(&from.origin, &source, kind, ns, name, spec) {
            self.resources.push(r);
        }
    }

    fn make(
        &mut self,
        origin: &Origin,
        source: &str,
        kind: Kind,
        ns: &str,
        name: &str,
        spec: Value,
    ) -> Option<Resource> {
        let doc = json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": kind.as_str(),
            "metadata": {"name": name, "namespace": ns, "annotations": {SOURCE_ANNOTATION: source}},
            "spec": spec,
        });
        let typed = match kind {
            Kind::Gateway => serde_json::from_value::<Gateway>(doc["spec"].clone())
                .map(|g| Spec::Gateway(Box::new(g))),
            _ => serde_json::from_value::<VirtualService>(doc["spec"].clone())
                .map(|v| Spec::VirtualService(Box::new(v))),
        };
        let spec = match typed {
            Ok(s) => s,
            Err(e) => {
                // A conversion bug, not a user error: said, never silently dropped.
                self.diags.push(Diagnostic {
                    severity: Severity::Error,
                    origin: Some(origin.clone()),
                    resource: Some(source.to_string()),
                    path: String::new(),
                    line: None,
                    message: format!("the {kind} generated for this document does not parse: {e}"),
                });
                return None;
            }
        };
        Some(Resource {
            origin: origin.clone(),
            api_version: "networking.istio.io/v1",
            kind,
            name: name.to_string(),
            namespace: ns.to_string(),
            annotations: [(SOURCE_ANNOTATION.to_string(), source.to_string())].into(),
            spec,
            raw: doc.to_string().into(),
        })
    }

    /// The VirtualServices of the buckets, rules sorted by precedence, and everything else.
    pub fn finish(mut self) -> Conversion {
        let buckets = std::mem::take(&mut self.buckets);
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for ((ns, gateway, host), mut b) in buckets {
            b.http.sort_by(|a, b| a.0.cmp(&b.0));
            let stem = match gateway.rsplit_once('/') {
                Some((_, g)) => g.to_string(),
                None => format!("{}-mesh", host.split('.').next().unwrap_or("svc")),
            };
            let n = counts.entry(format!("{ns}/{stem}")).or_default();
            let name = format!("{stem}-{n}");
            *n += 1;
            let hosts: Vec<&str> = host.split(',').collect();
            let mut spec = json!({"hosts": hosts, "gateways": [gateway]});
            if !b.http.is_empty() {
                spec["http"] = Value::Array(b.http.into_iter().map(|(_, v)| v).collect());
            }
            if !b.tls.is_empty() {
                spec["tls"] = Value::Array(b.tls);
            }
            if !b.tcp.is_empty() {
                spec["tcp"] = Value::Array(b.tcp);
            }
            let source = b.sources.into_iter().collect::<Vec<_>>().join(",");
            let origin = b.origin.unwrap_or_else(|| Origin {
                file: Default::default(),
                index: 0,
            });
            if let Some(r) = self.make(&origin, &source, Kind::VirtualService, &ns, &name, spec) {
                self.resources.push(r);
            }
        }
        Conversion {
            resources: self.resources,
            status: self.status,
            diagnostics: self.diags,
        }
    }
}
