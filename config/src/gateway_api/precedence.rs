//! Precedence between the rules of every route on one parent and hostname (Gateway API
//! `httproute_types.go`, `HTTPRouteRule`): an Exact path first, then the longest
//! PathPrefix, a method match, the most header matches, the most query matches, then the
//! oldest route (`creationTimestamp`), `{namespace}/{name}` alphabetically, and rule and
//! match order. Regular-expression paths are implementation-specific: as Istio does, they
//! come after every prefix, longer patterns first (`conversion.go` `sortHTTPRoutes`).

use crate::model::Resource;
use std::cmp::Reverse;

/// The sort key of one match of one rule: smaller sorts first.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SortKey {
    /// 0 Exact, 1 PathPrefix, 2 RegularExpression.
    pub path_rank: u8,
    /// The path value's length, longest first (for gRPC: the service's, then the
    /// method's).
    pub path_len: Reverse<(usize, usize)>,
    /// Has a method match.
    pub method: Reverse<bool>,
    /// Header matches.
    pub headers: Reverse<usize>,
    /// Query parameter matches.
    pub query: Reverse<usize>,
    /// The route's age: documents with a `creationTimestamp` (oldest first) before those
    /// without.
    pub created: (bool, String),
    /// `namespace/name`.
    pub route: String,
    /// Rule index, then match index, then the piece of the match.
    pub order: (usize, usize, usize),
}

/// The route's `metadata.creationTimestamp` (RFC 3339 text compares in time order), read
/// from the document as written: the typed metadata skips it.
pub fn created(res: &Resource) -> (bool, String) {
    let ts = serde_json::from_str::<serde_json::Value>(&res.raw)
        .ok()
        .and_then(|v| {
            v["metadata"]["creationTimestamp"]
                .as_str()
                .map(str::to_string)
        });
    match ts {
        Some(t) => (false, t),
        None => (true, String::new()),
    }
}

/// The route part of the key: its age and name.
pub fn route_key(res: &Resource) -> ((bool, String), String) {
    (created(res), format!("{}/{}", res.namespace, res.name))
}
