//! The Kubernetes manifests in `deploy/kubernetes/` carry meshproxy configs in ConfigMaps:
//! each one must load and validate exactly as `meshproxy run` would read it from the
//! mounted directory.

use std::path::Path;

fn configmaps(manifest: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(manifest) {
        let v = <serde_yaml::Value as serde::Deserialize>::deserialize(doc).expect("manifest YAML");
        if v["kind"].as_str() != Some("ConfigMap") {
            continue;
        }
        let name = v["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let files = v["data"]
            .as_mapping()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        (
                            k.as_str().unwrap_or_default().to_string(),
                            v.as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push((name, files));
    }
    out
}

#[test]
fn every_configmap_is_a_valid_meshproxy_config() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (name, files) in configmaps(&text) {
            let tmp = std::env::temp_dir()
                .join(format!("meshproxy-manifest-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&tmp).unwrap();
            // The identity Secret is mounted at /etc/meshproxy-identity in the pod; here
            // a freshly issued identity stands in for it.
            let identity = tmp.join("identity");
            let ca = meshproxy_certs::Ca::generate("manifest test CA", 1).unwrap();
            ca.issue(
                &meshproxy_certs::spiffe_id("cluster.local", "default", "reviews"),
                &[],
                1,
            )
            .unwrap()
            .write(&identity)
            .unwrap();
            for (file, content) in &files {
                let content =
                    content.replace("/etc/meshproxy-identity", identity.to_str().unwrap());
                std::fs::write(tmp.join(file), content).unwrap();
            }
            let files: Vec<_> = files.iter().map(|(f, _)| tmp.join(f)).collect();
            let result = meshproxy_config::compile::load(&files);
            let _ = std::fs::remove_dir_all(&tmp);
            if let Err(d) = result {
                panic!(
                    "{}: ConfigMap {name} is not a valid config:\n{d}",
                    path.display()
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 2, "sidecar and gateway ConfigMaps checked");
}
