//! The loader: `-c` paths → files → YAML documents → typed [`Resource`]s, with every problem
//! reported as a [`Diagnostic`] naming the file, document index, resource, field path and line.
//!
//! Each document is first read as a generic YAML value: that finds syntax errors (after
//! which the parser cannot resynchronise, so the rest of the file is skipped), empty
//! documents, and the `kind`. The typed model is then converted from that value. Only a
//! document whose conversion fails is parsed a second time, from its text, into the typed
//! model: that error is the one reported, with the parser's line numbers, which the
//! conversion from a value does not know. (Parsing every document twice was half of the
//! start-up time of a 10,000-service config.)

use crate::diag::{Diagnostic, Diagnostics, Origin, Severity};
use crate::model::{
    AuthorizationPolicy, DestinationRule, Gateway, Kind, ObjectMeta, PeerAuthentication, Proxy,
    RateLimitPolicy, RequestAuthentication, Resource, Rollout, ServiceEntry, Sidecar, Spec,
    Telemetry, VirtualService, WorkloadEntry, DEFAULT_NAMESPACE,
};
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Deserialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What loading produced: the documents that parsed, and every problem found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Documents that parsed, in load order (paths in the order given, files in name order).
    pub resources: Vec<Resource>,
    /// Parse errors (and unreadable paths).
    pub diagnostics: Diagnostics,
    /// Every file read, in order.
    pub files: Vec<PathBuf>,
}

/// Loads every document found at `paths` (files, or directories read recursively in name order).
pub fn load_paths<P: AsRef<Path>>(paths: &[P]) -> Loaded {
    load_paths_sharing(paths, &HashSet::new(), false)
}

/// Like [`load_paths`]; a document whose compact text is in `known` (the texts of the
/// config in force) gets that text instead of a copy, so a reload holds the texts of the
/// documents it did not change once. With `defer`, VirtualServices and ServiceEntries
/// keep no typed spec ([`Spec::Deferred`]): they are parsed again from their text where
/// they are read, one at a time.
pub fn load_paths_sharing<P: AsRef<Path>>(
    paths: &[P],
    known: &HashSet<Arc<str>>,
    defer: bool,
) -> Loaded {
    let sharing = Sharing { known, defer };
    let mut out = Loaded::default();
    let mut files = Vec::new();
    for p in paths {
        collect_files(p.as_ref(), true, &mut files, &mut out.diagnostics);
    }
    if paths.is_empty() {
        out.diagnostics.push(Diagnostic::global(
            Severity::Error,
            "no configuration path given (use -c PATH)",
        ));
    }
    for file in files {
        match std::fs::read_to_string(&file) {
            Ok(text) => load_text(&file, &text, &sharing, &mut out),
            Err(e) => out.diagnostics.push(Diagnostic::global(
                Severity::Error,
                format!("{}: cannot read: {e}", file.display()),
            )),
        }
        out.files.push(file);
    }
    crate::gateway_api::expand(&mut out.resources, &mut out.diagnostics);
    out
}

/// Collects the config files under `path`. Names starting with `.` are skipped in
/// directories: a Kubernetes ConfigMap volume holds `..data` and `..<timestamp>` entries
/// that mirror the visible files, and reading them would load every document twice.
fn collect_files(path: &Path, explicit: bool, files: &mut Vec<PathBuf>, diags: &mut Diagnostics) {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            diags.push(Diagnostic::global(
                Severity::Error,
                format!("{}: cannot read: {e}", path.display()),
            ));
            return;
        }
    };
    if meta.is_dir() {
        let entries = match std::fs::read_dir(path) {
            Ok(rd) => rd,
            Err(e) => {
                diags.push(Diagnostic::global(
                    Severity::Error,
                    format!("{}: cannot list directory: {e}", path.display()),
                ));
                return;
            }
        };
        let mut children: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter(|e| !is_policy_tests(&e.path()))
            .map(|e| e.path())
            .collect();
        children.sort();
        for child in children {
            collect_files(&child, false, files, diags);
        }
    } else if explicit || is_yaml(path) {
        files.push(path.to_path_buf());
    }
}

/// A `meshproxy test` file (`tests.yaml`, `NAME.tests.yaml`, or `.yml`): the cases that
/// check a policy live beside it, so a directory's listing leaves them out (named
/// explicitly, a file is always read).
pub fn is_policy_tests(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    ["tests.yaml", "tests.yml"]
        .iter()
        .any(|t| name == *t || name.strip_suffix(t).is_some_and(|p| p.ends_with('.')))
}

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml") | Some("yml")
    )
}

/// The envelope every document has; `spec` is typed per kind.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Document<S> {
    #[allow(dead_code)]
    api_version: IgnoredAny,
    #[allow(dead_code)]
    kind: IgnoredAny,
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default = "Option::default")]
    spec: Option<S>,
    #[allow(dead_code)]
    #[serde(default)]
    status: Option<IgnoredAny>,
}

/// Parses every document of one file's text and appends the results to `out`.
pub fn load_str(file: &Path, text: &str, out: &mut Loaded) {
    let known = HashSet::new();
    let sharing = Sharing {
        known: &known,
        defer: false,
    };
    load_text(file, text, &sharing, out)
}

/// What a load shares with the config in force ([`load_paths_sharing`]).
struct Sharing<'a> {
    /// The texts of the documents in force.
    known: &'a HashSet<Arc<str>>,
    /// Keep VirtualServices and ServiceEntries as text only.
    defer: bool,
}

/// [`load_str`], sharing as `sharing` says ([`load_paths_sharing`]).
fn load_text(file: &Path, text: &str, sharing: &Sharing<'_>, out: &mut Loaded) {
    let file = Arc::new(file.to_path_buf());
    // One document at a time: holding every document's generic value until a typed pass
    // ran made a 10,000-service file peak at hundreds of MB (docs/performance.md).
    let mut texts = DocumentTexts { text, docs: None };
    // Room for the file's documents at once (separators counted: at most one more than
    // there are), not by doubling: for 20,000 documents (7.5 MB) the last doubling step
    // allocated 12.3 MB while the 6.2 MB it copied from was still held.
    out.resources
        .reserve_exact(text.matches("\n---").count() + 1);
    for (index, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let origin = Origin {
            file: file.clone(),
            index,
        };
        let value = match serde_yaml::Value::deserialize(doc) {
            Ok(v) => v,
            Err(e) => {
                out.diagnostics.push(yaml_error(
                    origin,
                    None,
                    String::new(),
                    &e,
                    "YAML syntax error: ",
                ));
                break;
            }
        };
        let doc = || texts.document(index);
        if let Some(res) = load_document(origin, doc, value, sharing, &mut out.diagnostics) {
            out.resources.push(res);
        }
    }
    out.resources.shrink_to_fit();
}

/// The documents of a file's text for the typed parse of the ones whose conversion from a
/// value failed: one parser, made on the first failure and moved forward only (failures
/// come in document order), so even a file of broken documents is parsed twice at most.
struct DocumentTexts<'a> {
    text: &'a str,
    docs: Option<(serde_yaml::Deserializer<'a>, usize)>,
}

impl<'a> DocumentTexts<'a> {
    /// Document `index`; `None` when the parser is already past it.
    fn document(&mut self, index: usize) -> Option<serde_yaml::Deserializer<'a>> {
        let text = self.text;
        let (docs, next) = self
            .docs
            .get_or_insert_with(|| (serde_yaml::Deserializer::from_str(text), 0));
        while *next < index {
            docs.next()?;
            *next += 1;
        }
        if *next > index {
            return None;
        }
        *next += 1;
        docs.next()
    }
}

fn load_document<'a>(
    origin: Origin,
    doc: impl FnOnce() -> Option<serde_yaml::Deserializer<'a>>,
    value: serde_yaml::Value,
    sharing: &Sharing<'_>,
    diags: &mut Diagnostics,
) -> Option<Resource> {
    if value.is_null() {
        return None; // empty document, e.g. a trailing `---`
    }
    let err = |diags: &mut Diagnostics, resource: Option<String>, path: &str, msg: String| {
        diags.push(Diagnostic {
            severity: Severity::Error,
            origin: Some(origin.clone()),
            resource,
            path: path.to_string(),
            line: None,
            message: msg,
        })
    };
    let Some(map) = value.as_mapping() else {
        err(
            diags,
            None,
            "",
            "a document must be a mapping with apiVersion, kind, metadata and spec".into(),
        );
        return None;
    };
    let str_field = |m: &serde_yaml::Mapping, k: &str| -> Option<String> {
        m.get(k).and_then(|v| v.as_str()).map(str::to_string)
    };
    let kind_str = str_field(map, "kind");
    let meta = map.get("metadata").and_then(|m| m.as_mapping());
    let name = meta.and_then(|m| str_field(m, "name")).unwrap_or_default();
    let namespace = meta
        .and_then(|m| str_field(m, "namespace"))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
    let id = |kind: &str| Some(format!("{kind}/{namespace}/{name}"));

    let Some(kind_str) = kind_str else {
        err(diags, None, "kind", "missing field `kind`".into());
        return None;
    };
    let api_version = str_field(map, "apiVersion").unwrap_or_default();
    if let Some(why) = ignored_kind(&kind_str, &api_version) {
        diags.push(Diagnostic {
            severity: Severity::Warning,
            origin: Some(origin.clone()),
            resource: id(&kind_str),
            path: "kind".into(),
            line: None,
            message: format!("kind {kind_str:?} is not supported by meshproxy: ignored ({why})"),
        });
        return None;
    }
    let Some(kind) = Kind::from_document(&kind_str, &api_version) else {
        err(diags, id(&kind_str), "kind", unknown_kind(&kind_str));
        return None;
    };
    let Some(api_version) = kind.api_versions().iter().find(|v| **v == api_version) else {
        let msg = bad_api_version(kind, &api_version);
        err(diags, id(kind.as_str()), "apiVersion", msg);
        return None;
    };

    let raw = compact_text(&value, sharing.known);
    // A deferred spec is parsed from the text it will be parsed from again, so every
    // reading of it is the one checked here; a document that does not parse that way
    // takes the usual path (and its errors, with lines).
    let deferred = sharing.defer.then(|| typed_from_text(kind, &raw)).flatten();
    let defer = deferred.is_some();
    let (mut meta, spec) = match deferred {
        Some(v) => v,
        None => match typed_spec(kind, (&value, doc)) {
            Ok(v) => v,
            Err(e) => {
                let path = e.path().to_string();
                let path = if path == "." { String::new() } else { path };
                diags.push(yaml_error(origin, id(kind.as_str()), path, e.inner(), ""));
                return None;
            }
        },
    };
    let mut res = Resource {
        origin,
        api_version,
        kind,
        name: std::mem::take(&mut meta.name),
        namespace,
        annotations: std::mem::take(&mut meta.annotations),
        spec,
        raw,
    };
    if defer {
        // Validated now, while the spec is at hand, then dropped (`Spec::Deferred`). The
        // file mode does not matter: VirtualServices and ServiceEntries name no files.
        crate::validate::document(&res, crate::validate::MissingFiles::Refuse, diags);
        let vs = res.as_virtual_service();
        let summary = crate::model::Deferred {
            l4_rules: vs
                .as_ref()
                .is_some_and(|v| !v.tcp.is_empty() || !v.tls.is_empty()),
            delegates: vs
                .as_ref()
                .is_some_and(|v| v.http.iter().any(|h| h.delegate.is_some())),
            on_mesh: vs
                .as_ref()
                .is_some_and(|v| v.gateways.is_empty() || v.gateways.iter().any(|g| g == "mesh")),
            on_gateways: vs
                .as_ref()
                .is_some_and(|v| v.gateways.iter().any(|g| g != "mesh")),
        };
        drop(vs);
        res.spec = Spec::Deferred(summary);
    }
    Some(res)
}

/// Istio kinds a real Istio config directory holds that have no meaning without Envoy or
/// istiod: each loads as a warning saying so, never silently and never as an error (a
/// directory of real Istio config loads). `(kind, API group, why)`.
const IGNORED_ISTIO_KINDS: &[(&str, &str, &str)] = &[
    (
        "EnvoyFilter",
        "networking.istio.io",
        "it patches Envoy's generated configuration, which meshproxy does not have",
    ),
    (
        "WasmPlugin",
        "extensions.istio.io",
        "meshproxy has no Wasm runtime",
    ),
    (
        "ProxyConfig",
        "networking.istio.io",
        "Envoy bootstrap settings; the Proxy kind and `meshproxy run` flags configure meshproxy",
    ),
    (
        "WorkloadGroup",
        "networking.istio.io",
        "a template istiod turns into WorkloadEntries as VMs join; list WorkloadEntries instead",
    ),
];

/// Why a document of `kind` under `api_version` is ignored, if it is one of
/// [`IGNORED_ISTIO_KINDS`] in Istio's own API group (the same kind name elsewhere is an
/// unknown kind).
fn ignored_kind(kind: &str, api_version: &str) -> Option<&'static str> {
    let group = api_version.split('/').next().unwrap_or("");
    IGNORED_ISTIO_KINDS
        .iter()
        .find(|(k, g, _)| *k == kind && *g == group)
        .map(|(_, _, why)| *why)
}

/// The error for a `kind` meshproxy does not read.
fn unknown_kind(kind: &str) -> String {
    format!(
        "unknown kind {kind:?} (expected one of {})",
        Kind::ALL
            .into_iter()
            .filter(|k| *k != Kind::KubeGateway)
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The error for an `apiVersion` that `kind` is not served under.
fn bad_api_version(kind: Kind, api_version: &str) -> String {
    if api_version.is_empty() {
        "missing field `apiVersion`".to_string()
    } else {
        format!(
            "apiVersion {api_version:?} is not valid for {kind} (expected one of {})",
            kind.api_versions().join(", ")
        )
    }
}

/// The document as compact JSON text: the one in `known` when it is there.
fn compact_text(value: &serde_yaml::Value, known: &HashSet<Arc<str>>) -> Arc<str> {
    let raw = serde_json::to_string(value).unwrap_or_else(|_| "null".to_string());
    match known.get(raw.as_str()) {
        Some(same) => same.clone(),
        None => raw.into(),
    }
}

/// The metadata and spec of a document of a kind that may be deferred, parsed from its
/// compact text (as [`reparse`] will parse it again), when it parses.
fn typed_from_text(kind: Kind, raw: &str) -> Option<(ObjectMeta, Spec)> {
    fn parse<S: DeserializeOwned + Default>(raw: &str) -> Option<(ObjectMeta, S)> {
        let d = serde_json::from_str::<Document<S>>(raw).ok()?;
        Some((d.metadata, d.spec.unwrap_or_default()))
    }
    match kind {
        Kind::VirtualService => parse(raw).map(|(m, s)| (m, Spec::VirtualService(Box::new(s)))),
        Kind::ServiceEntry => parse(raw).map(|(m, s)| (m, Spec::ServiceEntry(Box::new(s)))),
        _ => None,
    }
}

/// The spec of a [`Spec::Deferred`] document of `kind`, parsed from its compact text
/// (which [`typed_from_text`] parsed when it was loaded). An empty spec of the kind if
/// that somehow fails.
pub(crate) fn reparse(kind: Kind, raw: &str) -> Spec {
    fn spec<S: DeserializeOwned + Default>(raw: &str) -> S {
        serde_json::from_str::<Document<S>>(raw)
            .ok()
            .and_then(|d| d.spec)
            .unwrap_or_default()
    }
    // Only the kinds `typed_from_text` defers are ever deferred.
    match kind {
        Kind::ServiceEntry => Spec::ServiceEntry(Box::new(spec(raw))),
        _ => Spec::VirtualService(Box::new(spec(raw))),
    }
}

pub(crate) type TypedError = serde_path_to_error::Error<serde_yaml::Error>;

/// The metadata and typed spec of a document of `kind` ([`typed`]).
fn typed_spec<'a>(
    kind: Kind,
    doc: (
        &serde_yaml::Value,
        impl FnOnce() -> Option<serde_yaml::Deserializer<'a>>,
    ),
) -> Result<(ObjectMeta, Spec), TypedError> {
    match kind {
        Kind::VirtualService => typed::<VirtualService>(doc, |s| Spec::VirtualService(Box::new(s))),
        Kind::DestinationRule => {
            typed::<DestinationRule>(doc, |s| Spec::DestinationRule(Box::new(s)))
        }
        Kind::ServiceEntry => typed::<ServiceEntry>(doc, |s| Spec::ServiceEntry(Box::new(s))),
        Kind::Gateway => typed::<Gateway>(doc, |s| Spec::Gateway(Box::new(s))),
        Kind::PeerAuthentication => {
            typed::<PeerAuthentication>(doc, |s| Spec::PeerAuthentication(Box::new(s)))
        }
        Kind::AuthorizationPolicy => {
            typed::<AuthorizationPolicy>(doc, |s| Spec::AuthorizationPolicy(Box::new(s)))
        }
        Kind::Telemetry => typed::<Telemetry>(doc, |s| Spec::Telemetry(Box::new(s))),
        Kind::WorkloadEntry => typed::<WorkloadEntry>(doc, |s| Spec::WorkloadEntry(Box::new(s))),
        Kind::Sidecar => typed::<Sidecar>(doc, |s| Spec::Sidecar(Box::new(s))),
        Kind::RequestAuthentication => {
            typed::<RequestAuthentication>(doc, |s| Spec::RequestAuthentication(Box::new(s)))
        }
        Kind::Proxy => typed::<Proxy>(doc, |s| Spec::Proxy(Box::new(s))),
        Kind::RateLimitPolicy => {
            typed::<RateLimitPolicy>(doc, |s| Spec::RateLimitPolicy(Box::new(s)))
        }
        Kind::Rollout => typed::<Rollout>(doc, |s| Spec::Rollout(Box::new(s))),
        k if k.is_gateway_api() => crate::gateway_api::typed_spec(k, doc),
        _ => unreachable!("every kind is listed above"),
    }
}

/// The typed document, converted from its value; when that fails, parsed from its text
/// for the error (path and line) of the parser.
pub(crate) fn typed<'a, S: DeserializeOwned + Default>(
    (value, text): (
        &serde_yaml::Value,
        impl FnOnce() -> Option<serde_yaml::Deserializer<'a>>,
    ),
    wrap: fn(S) -> Spec,
) -> Result<(ObjectMeta, Spec), TypedError> {
    let d: Document<S> = match Document::deserialize(value) {
        Ok(d) => d,
        Err(_) => match text() {
            Some(doc) => serde_path_to_error::deserialize(doc)?,
            None => serde_path_to_error::deserialize(value)?,
        },
    };
    Ok((d.metadata, wrap(d.spec.unwrap_or_default())))
}

/// Turns a serde_yaml error into a diagnostic, moving the location out of the message text.
fn yaml_error(
    origin: Origin,
    resource: Option<String>,
    path: String,
    e: &serde_yaml::Error,
    prefix: &str,
) -> Diagnostic {
    let line = e.location().map(|l| (l.line(), l.column()));
    let mut msg = e.to_string();
    if let Some((l, c)) = line {
        let suffix = format!(" at line {l} column {c}");
        if let Some(stripped) = msg.strip_suffix(&suffix) {
            msg = stripped.to_string();
        }
    }
    // serde_yaml prefixes its own copy of the field path ("spec.http[0]: unknown field").
    if let Some((head, rest)) = msg.split_once(": ") {
        if !head.is_empty() && !head.contains(char::is_whitespace) {
            msg = rest.to_string();
        }
    }
    Diagnostic {
        severity: Severity::Error,
        origin: Some(origin),
        resource,
        path,
        line,
        message: format!("{prefix}{msg}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Loaded {
        let mut out = Loaded::default();
        load_str(Path::new("t.yaml"), text, &mut out);
        out
    }

    #[test]
    fn policy_test_files_are_named_tests_yaml() {
        for yes in [
            "tests.yaml",
            "a/tests.yml",
            "bookinfo.tests.yaml",
            "x.y.tests.yml",
        ] {
            assert!(is_policy_tests(Path::new(yes)), "{yes}");
        }
        for no in [
            "mytests.yaml",
            "tests.json",
            "tests.yaml.bak",
            "reviews.yaml",
        ] {
            assert!(!is_policy_tests(Path::new(no)), "{no}");
        }
    }

    #[test]
    fn a_directory_leaves_its_test_files_out() {
        let dir = std::env::temp_dir().join(format!("mp-loader-tests-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("a.yaml"), "x: 1\n").expect("write");
        std::fs::write(dir.join("tests.yaml"), "tests: []\n").expect("write");
        let (mut files, mut diags) = (Vec::new(), Diagnostics::default());
        collect_files(&dir, true, &mut files, &mut diags);
        assert_eq!(files, vec![dir.join("a.yaml")]);
        // Named explicitly, a test file is read like any other.
        let mut files = Vec::new();
        collect_files(&dir.join("tests.yaml"), true, &mut files, &mut diags);
        assert_eq!(files, vec![dir.join("tests.yaml")]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn multi_document_with_empty_and_trailing_separators() {
        let out = load(
            "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\nspec: {hosts: [a], http: [{route: [{destination: {host: a}}]}]}\n---\n---\napiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\nmetadata: {name: b, namespace: x}\nspec: {host: b}\n---\n",
        );
        assert!(out.diagnostics.is_empty(), "{}", out.diagnostics);
        assert_eq!(out.resources.len(), 2);
        assert_eq!(out.resources[0].id(), "VirtualService/default/a");
        assert_eq!(out.resources[1].id(), "DestinationRule/x/b");
        assert_eq!(out.resources[1].origin.index, 2);
    }

    #[test]
    fn unknown_field_names_path_and_line() {
        let out = load(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  hosts: [r]\n  http:\n  - route:\n    - destination: {host: r}\n      weigth: 3\n",
        );
        let d = &out.diagnostics.0[0];
        assert_eq!(d.path, "spec.http[0].route[0].weigth");
        assert!(
            d.message.starts_with("unknown field `weigth`"),
            "{}",
            d.message
        );
        assert_eq!(d.line.map(|l| l.0), Some(9));
        assert_eq!(d.resource.as_deref(), Some("VirtualService/default/r"));
    }

    #[test]
    fn errors_in_several_documents_each_name_their_line() {
        // Good, broken, good, broken: the broken ones are parsed again from their text,
        // by one parser moving forward, and each error keeps its own line.
        let vs = |name: &str, field: &str| {
            format!(
                "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}}}\nspec:\n  hosts: [{name}]\n  http:\n  - route:\n    - destination: {{host: {name}}}\n      {field}: 3\n"
            )
        };
        let text = [
            vs("a", "weight"),
            vs("b", "weigth"),
            vs("c", "weight"),
            vs("d", "wieght"),
        ]
        .join("---\n");
        let out = load(&text);
        assert_eq!(out.resources.len(), 2, "{:?}", out.diagnostics);
        let lines: Vec<_> = out
            .diagnostics
            .0
            .iter()
            .map(|d| (d.resource.clone().unwrap_or_default(), d.line.map(|l| l.0)))
            .collect();
        assert_eq!(
            lines,
            [
                ("VirtualService/default/b".to_string(), Some(19)),
                ("VirtualService/default/d".to_string(), Some(39)),
            ]
        );
        // A value the generic form types differently (a number for a string) still loads:
        // the text parse decides.
        let out = load("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: 123}\nspec: {hosts: [r]}\n");
        assert!(out.diagnostics.0.is_empty(), "{:?}", out.diagnostics);
        assert_eq!(out.resources[0].name, "123");
    }

    #[test]
    fn snake_case_spellings_are_accepted() {
        let out = load(
            "apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  hosts: [r]\n  http:\n  - route: [{destination: {host: r}}]\n    retries: {attempts: 3, per_try_timeout: 2s, retry_on: 5xx}\n",
        );
        assert!(out.diagnostics.is_empty(), "{}", out.diagnostics);
        let vs = out.resources[0].as_virtual_service().unwrap();
        let r = vs.http[0].retries.as_ref().unwrap();
        assert_eq!(r.retry_on.as_deref(), Some("5xx"));
        assert_eq!(
            r.per_try_timeout,
            Some(crate::duration::Duration::from_secs(2))
        );
    }

    #[test]
    fn syntax_error_stops_the_file_with_a_line() {
        let out = load("kind: Gateway\n---\nspec: [\n");
        assert_eq!(out.diagnostics.len(), 2, "{}", out.diagnostics);
        let syntax = out
            .diagnostics
            .0
            .iter()
            .find(|d| d.message.starts_with("YAML syntax error"))
            .unwrap();
        assert!(syntax.line.is_some());
    }

    #[test]
    fn unknown_and_unsupported_kinds() {
        let out = load("apiVersion: v1\nkind: Foo\nmetadata: {name: x}\n---\napiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {name: y}\n");
        let msgs: Vec<_> = out
            .diagnostics
            .0
            .iter()
            .map(|d| d.message.clone())
            .collect();
        assert!(msgs[0].contains("unknown kind \"Foo\""), "{msgs:?}");
        assert!(msgs[1].contains("not supported"), "{msgs:?}");
        assert_eq!(out.diagnostics.0[1].severity, Severity::Warning);
    }

    #[test]
    fn wrong_api_version() {
        let out = load("apiVersion: security.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\nspec: {}\n");
        assert!(out.diagnostics.0[0]
            .message
            .contains("not valid for VirtualService"));
    }

    #[test]
    fn integer_map_keys_quoted_or_not() {
        let out = load("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: p}\nspec:\n  selector: {matchLabels: {app: a}}\n  portLevelMtls:\n    8080: {mode: STRICT}\n    \"9090\": {mode: DISABLE}\n");
        assert!(out.diagnostics.is_empty(), "{}", out.diagnostics);
        let pa = out.resources[0].as_peer_authentication().unwrap();
        assert_eq!(pa.port_level_mtls.as_ref().unwrap().len(), 2);
    }

    #[test]
    fn unknown_enum_value_is_an_error() {
        let out = load("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: p}\nspec: {mtls: {mode: BLAH}}\n");
        let d = &out.diagnostics.0[0];
        assert_eq!(d.path, "spec.mtls.mode");
        assert!(
            d.message.contains("unknown variant `BLAH`"),
            "{}",
            d.message
        );
    }

    #[test]
    fn configmap_hidden_entries_are_skipped() {
        let dir = std::env::temp_dir().join(format!("mp-loader-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("..2026_01_01")).unwrap();
        let doc = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: a}\nspec: {host: a}\n";
        std::fs::write(dir.join("..2026_01_01/a.yaml"), doc).unwrap();
        std::fs::write(dir.join("a.yaml"), doc).unwrap();
        std::fs::write(dir.join("notes.txt"), "ignored").unwrap();
        let out = load_paths(&[&dir]);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(out.diagnostics.is_empty(), "{}", out.diagnostics);
        assert_eq!(out.resources.len(), 1);
    }
}
