//! PeerAuthentication → the inbound mTLS mode of this proxy's workload, per port.
//!
//! Istio (`pilot/pkg/security/authn/policy_applier.go` `ComposePeerAuthentication`, docs
//! `authn-policy` "Policy precedence"): a workload-selector policy in the
//! workload's namespace beats the namespace-wide one (no selector), which beats the
//! mesh-wide one (no selector, root namespace); a `portLevelMtls` entry beats its policy's
//! own mode for that port; `UNSET` inherits from the next level; with nothing set the mode
//! is PERMISSIVE.

use super::proxy_settings::ProxySettings;
use crate::model::common::PortKey;
use crate::model::peer_authentication::{MtlsMode as Mode, PeerAuthentication};
use crate::model::Resource;
use std::collections::BTreeMap;

/// An inbound connection's mTLS requirement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MtlsMode {
    /// mTLS with a client certificate from the mesh CA required.
    Strict,
    /// mTLS or plaintext, told apart per connection.
    Permissive,
    /// Plaintext only.
    Disable,
}

/// The compiled PeerAuthentication of one workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerAuthn {
    /// The mode for ports without a port-level entry.
    default: MtlsMode,
    /// Port-level modes of the workload policy (already resolved, UNSET inherited).
    ports: BTreeMap<u16, MtlsMode>,
}

impl Default for PeerAuthn {
    fn default() -> Self {
        // Istio: no policy at any level ⇒ PERMISSIVE.
        PeerAuthn {
            default: MtlsMode::Permissive,
            ports: BTreeMap::new(),
        }
    }
}

impl PeerAuthn {
    /// The mode for connections to workload port `port`: the container port the inbound
    /// connection is for (the inbound listener's `forwardTo` port, or the original
    /// destination port of an intercepted connection), not the service port; Istio keys
    /// `portLevelMtls` so.
    pub fn mode(&self, port: u16) -> MtlsMode {
        self.ports.get(&port).copied().unwrap_or(self.default)
    }

    /// Resolves the policies that apply to `proxy`'s workload. Several policies at one
    /// level: the first in load order wins (Istio takes the oldest by creation time,
    /// which files do not have). A selector with no labels counts as no selector (Istio:
    /// `Selector == nil || len(MatchLabels) == 0` is namespace- or mesh-level).
    pub fn compile(resources: &[Resource], proxy: &ProxySettings) -> PeerAuthn {
        let policies = || {
            resources
                .iter()
                .filter_map(|r| r.as_peer_authentication().map(|pa| (r, pa)))
        };
        let has_selector = |pa: &PeerAuthentication| {
            pa.selector
                .as_ref()
                .is_some_and(|s| !s.match_labels.is_empty())
        };
        // Istio: no selector in the root namespace = mesh-level (the oldest wins).
        let mesh = policies()
            .find(|(r, pa)| r.namespace == proxy.root_namespace && !has_selector(pa))
            .map(|(_, pa)| pa);
        // Istio: no selector in the workload's own namespace = namespace-level.
        let namespace = policies()
            .find(|(r, pa)| {
                r.namespace == proxy.namespace
                    && r.namespace != proxy.root_namespace
                    && !has_selector(pa)
            })
            .map(|(_, pa)| pa);
        // Istio: "PeerAuthentication policies with workload selectors are ignored when
        // deployed in the root namespace" (peer_authentication.proto header; the docs). The
        // selector field's comment says otherwise, but istiod's `ComposePeerAuthentication`
        // only takes a selector policy as workload-level `else if cfg.Namespace !=
        // rootNamespace`, so such a policy applies to no workload.
        let workload = policies()
            .find(|(r, pa)| {
                r.namespace == proxy.namespace
                    && r.namespace != proxy.root_namespace
                    && has_selector(pa)
                    && pa
                        .selector
                        .as_ref()
                        .is_some_and(|s| proxy.selected_by(&s.match_labels))
            })
            .map(|(_, pa)| pa);
        let own = |pa: Option<&PeerAuthentication>| {
            pa.and_then(|p| p.mtls.as_ref())
                .and_then(|m| m.mode)
                .and_then(set)
        };
        // Istio: "Process in mesh, namespace, workload order to resolve inheritance
        // (UNSET)", starting from PERMISSIVE.
        let mesh_mode = own(mesh).unwrap_or(MtlsMode::Permissive);
        let namespace_mode = own(namespace).unwrap_or(mesh_mode);
        let default = own(workload).unwrap_or(namespace_mode);
        let mut ports = BTreeMap::new();
        // Istio: portLevelMtls needs a selector, so only the workload policy has it.
        if let Some(levels) = workload.and_then(|w| w.port_level_mtls.as_ref()) {
            for (key, m) in levels {
                let PortKey::Number(n) = key else { continue };
                let Ok(port) = u16::try_from(*n) else {
                    continue;
                };
                // Istio: UNSET at port level "Inherit from workload level" (the resolved mode).
                ports.insert(port, m.mode.and_then(set).unwrap_or(default));
            }
        }
        PeerAuthn { default, ports }
    }
}

/// A set mode; `UNSET` is `None` (inherit).
fn set(m: Mode) -> Option<MtlsMode> {
    match m {
        Mode::Unset => None,
        Mode::Disable => Some(MtlsMode::Disable),
        Mode::Permissive => Some(MtlsMode::Permissive),
        Mode::Strict => Some(MtlsMode::Strict),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(yaml: &str, port: u16) -> MtlsMode {
        let proxy = "apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {name: reviews, namespace: default}\nspec:\n  workload: {labels: {app: reviews}}\n---\n";
        let snap = crate::compile::load_str("t.yaml", &format!("{proxy}{yaml}"))
            .unwrap_or_else(|d| panic!("{d}"));
        snap.peer_authn.mode(port)
    }

    const MESH_STRICT: &str = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: STRICT}}\n---\n";

    #[test]
    fn nothing_set_is_permissive() {
        assert_eq!(mode_of("", 9080), MtlsMode::Permissive);
    }

    #[test]
    fn mesh_then_namespace_then_workload_then_port() {
        assert_eq!(mode_of(MESH_STRICT, 9080), MtlsMode::Strict);
        let ns = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: ns, namespace: default}\nspec: {mtls: {mode: PERMISSIVE}}\n---\n";
        assert_eq!(
            mode_of(&format!("{MESH_STRICT}{ns}"), 9080),
            MtlsMode::Permissive
        );
        let wl = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: wl, namespace: default}\nspec:\n  selector: {matchLabels: {app: reviews}}\n  mtls: {mode: DISABLE}\n  portLevelMtls:\n    8080: {mode: STRICT}\n    9090: {mode: UNSET}\n---\n";
        let all = format!("{MESH_STRICT}{ns}{wl}");
        assert_eq!(mode_of(&all, 9080), MtlsMode::Disable);
        assert_eq!(mode_of(&all, 8080), MtlsMode::Strict);
        assert_eq!(
            mode_of(&all, 9090),
            MtlsMode::Disable,
            "UNSET inherits the workload mode"
        );
    }

    #[test]
    fn unset_inherits_and_other_workloads_do_not_apply() {
        let ns_unset = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: ns, namespace: default}\nspec: {mtls: {mode: UNSET}}\n---\n";
        assert_eq!(
            mode_of(&format!("{MESH_STRICT}{ns_unset}"), 1),
            MtlsMode::Strict
        );
        let other = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: other, namespace: default}\nspec:\n  selector: {matchLabels: {app: ratings}}\n  mtls: {mode: DISABLE}\n---\n";
        assert_eq!(
            mode_of(&format!("{MESH_STRICT}{other}"), 1),
            MtlsMode::Strict
        );
        let other_ns = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: ns, namespace: prod}\nspec: {mtls: {mode: DISABLE}}\n---\n";
        assert_eq!(
            mode_of(&format!("{MESH_STRICT}{other_ns}"), 1),
            MtlsMode::Strict
        );
    }
}
