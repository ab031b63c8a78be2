//! Route status as the Gateway API's `status.parents[]` would carry it: one entry per
//! (route, parentRef) with its `Accepted` and `ResolvedRefs` conditions and their reasons
//! (Gateway API `apis/v1/shared_types.go`, `RouteConditionType` and `RouteConditionReason`).

use crate::diag::{Diagnostic, Severity};
use crate::model::Resource;
use serde::Serialize;

/// One condition: True, or False with the reason and message the API would give.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Condition {
    /// `True` or `False`.
    pub status: bool,
    /// The reason (`Accepted`, `NoMatchingParent`, `RefNotPermitted`, ...).
    pub reason: &'static str,
    /// Why, in words.
    pub message: String,
}

impl Condition {
    /// A True condition whose reason is the condition's own name.
    pub fn ok(reason: &'static str) -> Self {
        Condition {
            status: true,
            reason,
            message: String::new(),
        }
    }

    /// A False condition.
    pub fn fail(reason: &'static str, message: impl Into<String>) -> Self {
        Condition {
            status: false,
            reason,
            message: message.into(),
        }
    }
}

/// The status of a route for one of its parents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ParentStatus {
    /// `Kind/namespace/name` of the route.
    pub route: String,
    /// The parent as referenced: `Gateway ns/name[/section][:port]` or `Service ns/name`.
    pub parent: String,
    /// `Accepted`.
    pub accepted: Condition,
    /// `ResolvedRefs`.
    pub resolved_refs: Condition,
}

impl ParentStatus {
    /// The warnings for this status's False conditions, on `res` at `parent_path` (the
    /// parentRef) and `refs_path` (the first unresolved reference).
    pub fn warnings(&self, res: &Resource, parent_path: &str, refs_path: &str) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        let mut push = |path: &str, kind: &str, c: &Condition, then: &str| {
            out.push(Diagnostic {
                severity: Severity::Warning,
                origin: Some(res.origin.clone()),
                resource: Some(res.id()),
                path: path.to_string(),
                line: None,
                message: format!(
                    "route status for parent {}: {kind}=False, reason {}: {}{then}",
                    self.parent, c.reason, c.message
                ),
            })
        };
        if !self.accepted.status {
            push(
                parent_path,
                "Accepted",
                &self.accepted,
                "; the route is not attached there",
            );
        }
        if !self.resolved_refs.status {
            push(refs_path, "ResolvedRefs", &self.resolved_refs, "");
        }
        out
    }
}
