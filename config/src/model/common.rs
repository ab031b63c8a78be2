//! Types shared by several kinds: Kubernetes object metadata, Istio's `StringMatch`,
//! `Percent`, `PortSelector`, workload selectors, and map keys that are ports.

use super::map::Map;
use serde::{de, Deserialize, Deserializer};
use std::fmt;

/// Kubernetes `ObjectMeta`, keeping what the proxy uses and tolerating what `kubectl get -o yaml`
/// adds (uid, resourceVersion, managedFields...) so exported objects load unchanged. The
/// tolerated fields are skipped, not kept: `managedFields` alone can be kilobytes per
/// object, held for every document until the config is compiled.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    /// Resource name.
    #[serde(default)]
    pub name: String,
    /// Namespace; the loader fills in `default` when absent.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Labels.
    #[serde(default)]
    pub labels: Map<String, String>,
    /// Annotations (`istio.io/dry-run` is read from here).
    #[serde(default)]
    pub annotations: Map<String, String>,
    /// Ignored Kubernetes bookkeeping fields.
    #[serde(default, alias = "generate_name")]
    pub generate_name: Option<de::IgnoredAny>,
    /// Ignored.
    #[serde(default)]
    pub uid: Option<de::IgnoredAny>,
    /// Ignored.
    #[serde(default, alias = "resource_version")]
    pub resource_version: Option<de::IgnoredAny>,
    /// Ignored.
    #[serde(default)]
    pub generation: Option<de::IgnoredAny>,
    /// Ignored.
    #[serde(default, alias = "creation_timestamp")]
    pub creation_timestamp: Option<de::IgnoredAny>,
    /// Ignored.
    #[serde(default, alias = "deletion_timestamp")]
    pub deletion_timestamp: Option<de::IgnoredAny>,
    /// Ignored.
    #[serde(default, alias = "deletion_grace_period_seconds")]
    pub deletion_grace_period_seconds: Option<de::IgnoredAny>,
    /// Ignored.
    #[serde(default, alias = "managed_fields")]
    pub managed_fields: Option<de::IgnoredAny>,
    /// Ignored.
    #[serde(default, alias = "owner_references")]
    pub owner_references: Option<de::IgnoredAny>,
    /// Ignored.
    #[serde(default)]
    pub finalizers: Option<de::IgnoredAny>,
    /// Ignored.
    #[serde(default, alias = "self_link")]
    pub self_link: Option<de::IgnoredAny>,
}

/// Istio `StringMatch`: exactly one of `exact`, `prefix`, `regex` (RE2, full-string match).
/// An empty match (`{}`) is valid only where Istio gives it a meaning (header presence).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StringMatch {
    /// Exact string match.
    #[serde(default)]
    pub exact: Option<String>,
    /// Prefix match.
    #[serde(default)]
    pub prefix: Option<String>,
    /// RE2 regular expression, implicitly anchored at both ends.
    #[serde(default)]
    pub regex: Option<String>,
}

impl StringMatch {
    /// Number of match kinds set (valid values have 0 or 1).
    pub fn kinds_set(&self) -> usize {
        self.exact.is_some() as usize
            + self.prefix.is_some() as usize
            + self.regex.is_some() as usize
    }

    /// True when no kind is set (`{}`).
    pub fn is_empty(&self) -> bool {
        self.kinds_set() == 0
    }
}

/// Istio `Percent`: a double in 0..=100.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Percent {
    /// The percentage.
    #[serde(default)]
    pub value: f64,
}

/// Istio `PortSelector`: a port number.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct PortSelector {
    /// Port number; 0 means unset.
    #[serde(default)]
    pub number: u32,
}

/// Istio `WorkloadSelector` as used by `Gateway`-less kinds in `security.istio.io`
/// (`selector.matchLabels`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadSelector {
    /// Labels the workload must carry.
    #[serde(default, alias = "match_labels")]
    pub match_labels: Map<String, String>,
}

/// `networking.istio.io` `WorkloadSelector` (`workloadSelector.labels` on DestinationRule
/// and ServiceEntry).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NetworkingWorkloadSelector {
    /// Labels the workload must carry.
    #[serde(default)]
    pub labels: Map<String, String>,
}

/// Istio `PolicyTargetReference` (`targetRef`/`targetRefs` on security policies).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicyTargetReference {
    /// API group of the target (e.g. `gateway.networking.k8s.io`).
    #[serde(default)]
    pub group: String,
    /// Kind of the target.
    #[serde(default)]
    pub kind: String,
    /// Name of the target.
    #[serde(default)]
    pub name: String,
    /// Namespace; must be empty (Istio rule).
    #[serde(default)]
    pub namespace: String,
}

/// A map key that is a port number, written quoted (`"8080"`) or not (`8080`) in YAML.
/// A key that is not a number is kept so the validator can report it by name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortKey {
    /// A number (range not yet checked).
    Number(u64),
    /// Something that is not a non-negative integer.
    Invalid(String),
}

impl fmt::Display for PortKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortKey::Number(n) => write!(f, "{n}"),
            PortKey::Invalid(s) => write!(f, "{s}"),
        }
    }
}

impl<'de> Deserialize<'de> for PortKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = PortKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortKey, E> {
                Ok(PortKey::Number(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortKey, E> {
                Ok(if v >= 0 {
                    PortKey::Number(v as u64)
                } else {
                    PortKey::Invalid(v.to_string())
                })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortKey, E> {
                Ok(match v.parse::<u64>() {
                    Ok(n) if !v.starts_with('+') => PortKey::Number(n),
                    _ => PortKey::Invalid(v.to_string()),
                })
            }
        }
        d.deserialize_any(V)
    }
}
