//! PeerAuthentication rules (the CRD's CEL rules and istio/istio `ValidatePeerAuthentication`).

use super::V;
use crate::model::common::PortKey;
use crate::model::peer_authentication::*;

pub(crate) fn validate(v: &mut V, pa: &PeerAuthentication) {
    let has_selector = pa
        .selector
        .as_ref()
        .is_some_and(|s| !s.match_labels.is_empty());
    if let Some(sel) = &pa.selector {
        super::authorization_policy::selector(v, "spec.selector.matchLabels", &sel.match_labels);
    }
    if let Some(plm) = &pa.port_level_mtls {
        if !has_selector {
            v.err("spec.portLevelMtls", "portLevelMtls requires selector");
        }
        if plm.is_empty() {
            v.err(
                "spec.portLevelMtls",
                "portLevelMtls must have at least one entry",
            );
        }
        for key in plm.keys() {
            let ok = matches!(key, PortKey::Number(n) if (1..=65535).contains(n));
            if !ok {
                v.err(
                    &format!("spec.portLevelMtls.{key}"),
                    format!("port {key} must be between 1-65535"),
                );
            }
        }
    }
}
