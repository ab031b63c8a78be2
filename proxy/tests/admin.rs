//! End to end: the admin endpoints of `meshproxy run` (docs/contract.md §4) and their JSON shapes.

mod binary;
mod common;

async fn admin_get(addr: std::net::SocketAddr, path: &str) -> common::Reply {
    common::send(addr, "GET", "admin", path, &[], bytes::Bytes::new(), false).await
}

fn config(ok_port: u16, bad_port: u16) -> String {
    format!(
        "apiVersion: meshproxy.io/v1alpha1
kind: Proxy
metadata: {{name: adm}}
spec:
  admin: {{address: \"127.0.0.1:0\"}}
  listeners:
  - {{name: outbound, address: \"127.0.0.1:0\", direction: OUTBOUND}}
---
{}apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: web}}
spec:
  host: web
  trafficPolicy:
    loadBalancer: {{simple: ROUND_ROBIN}}
    connectionPool: {{tcp: {{maxConnections: 7}}}}
    outlierDetection: {{consecutive5xxErrors: 2, baseEjectionTime: 60s, maxEjectionPercent: 100}}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
",
        common::service(
            "web.default.svc.cluster.local",
            &[(ok_port, "version: v1"), (bad_port, "version: v2")]
        )
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_clusters_and_config_dump() {
    let ok = common::upstream("ok").await;
    let bad = common::upstream("bad").await;
    let p = binary::run(
        &config(ok.addr.port(), bad.addr.port()),
        &["--workers", "1", "--access-log", "off"],
    );
    let admin = p.addr("admin");
    let outbound = p.addr("outbound");

    let r = admin_get(admin, "/ready").await;
    assert_eq!(r.status, 200);

    // Eject the failing endpoint: round robin alternates, 2 failures each.
    for _ in 0..4 {
        common::send(
            outbound,
            "GET",
            "web",
            "/",
            &[("x-test-status", "500")],
            bytes::Bytes::new(),
            false,
        )
        .await;
    }
    let r = admin_get(admin, "/clusters").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), "application/json");
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("valid JSON");
    assert!(v["version"].as_str().is_some_and(|s| s.len() == 16), "{v}");
    let clusters = v["clusters"].as_array().expect("clusters array");
    let all = clusters
        .iter()
        .find(|c| c["name"] == "outbound|80||web.default.svc.cluster.local")
        .expect("the whole-service cluster");
    assert_eq!(all["service"], "web.default.svc.cluster.local");
    assert_eq!(all["port"], 80);
    assert_eq!(all["load_balancer"], "ROUND_ROBIN");
    assert_eq!(all["circuit_breakers"]["max_connections"], 7);
    assert_eq!(all["outlier_detection"]["consecutive_5xx"], 2);
    for key in [
        "open_connections",
        "pending_requests",
        "active_requests",
        "overflows",
    ] {
        assert!(
            all["stats"].get(key).is_some(),
            "stats.{key} missing: {all}"
        );
    }
    let eps = all["endpoints"].as_array().unwrap();
    assert_eq!(eps.len(), 2);
    let ejected: Vec<_> = eps.iter().filter(|e| e["health"] == "ejected").collect();
    assert_eq!(
        ejected.len(),
        2,
        "both endpoints answered 500 twice: {eps:?}"
    );
    for e in &ejected {
        assert!(
            e["ejected_until"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z')),
            "{e}"
        );
        assert_eq!(e["times_ejected"], 1);
        for key in [
            "address",
            "labels",
            "active_requests",
            "idle_connections",
            "weight",
        ] {
            assert!(e.get(key).is_some(), "endpoint.{key} missing: {e}");
        }
    }
    let subset = clusters
        .iter()
        .find(|c| c["subset"] == "v1")
        .expect("the v1 subset cluster");
    assert_eq!(subset["endpoints"].as_array().unwrap().len(), 1);
    // Nothing used the subset (requests went to the whole service), so it has no live
    // state: it is listed from the snapshot, its endpoint healthy and nothing counted.
    let e = &subset["endpoints"][0];
    assert_eq!(e["health"], "healthy", "{subset}");
    assert_eq!(e["labels"]["version"], "v1", "{subset}");
    assert_eq!(e["address"], format!("127.0.0.1:{}", ok.addr.port()));
    assert_eq!(e["active_requests"], 0);
    assert_eq!(subset["stats"]["open_connections"], 0);
    let m = admin_get(admin, "/metrics").await.body;
    let v1 = "outbound|80|v1|web.default.svc.cluster.local";
    for line in [
        format!("meshproxy_cluster_connections_active{{cluster=\"{v1}\"}} 0"),
        format!("meshproxy_cluster_overflows_total{{cluster=\"{v1}\",limit=\"max_retries\"}} 0"),
        format!(
            "meshproxy_outlier_ejected{{cluster=\"{v1}\",endpoint=\"127.0.0.1:{}\"}} 0",
            ok.addr.port()
        ),
    ] {
        assert!(m.lines().any(|l| l == line), "no {line:?} in\n{m}");
    }

    let r = admin_get(admin, "/config_dump").await;
    assert_eq!(r.status, 200);
    let d: serde_json::Value = serde_json::from_str(&r.body).expect("valid JSON");
    assert_eq!(d["version"], v["version"]);
    assert!(d["loaded_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    let kinds: Vec<&str> = d["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["Proxy", "ServiceEntry", "DestinationRule"]);
    assert_eq!(d["resources"][2]["document"]["spec"]["host"], "web");
    assert_eq!(d["listeners"][0]["role"], "OUTBOUND");

    let set = common::send(
        admin,
        "POST",
        "admin",
        "/logging?level=debug",
        &[],
        bytes::Bytes::new(),
        false,
    )
    .await;
    assert_eq!(set.status, 200, "{}", set.body);
    let bad = common::send(
        admin,
        "POST",
        "admin",
        "/logging?level=%25%25",
        &[],
        bytes::Bytes::new(),
        false,
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    let metrics = admin_get(admin, "/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.header("content-type").starts_with("text/plain"));

    assert_eq!(admin_get(admin, "/nope").await.status, 404);
    let post = common::send(
        admin,
        "POST",
        "admin",
        "/clusters",
        &[],
        bytes::Bytes::new(),
        false,
    )
    .await;
    assert_eq!(post.status, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_follows_the_listeners_state() {
    // `meshproxy run` starts the admin server only once every listener is bound; the
    // flag behind /ready is what a drain clears too.
    let p = common::proxy("");
    let admin =
        meshproxy::admin::Admin::start(p.server.shared.clone(), "127.0.0.1:0".parse().unwrap())
            .unwrap();
    assert_eq!(admin_get(admin.addr, "/ready").await.status, 200);
    p.server
        .shared
        .ready
        .store(false, std::sync::atomic::Ordering::Release);
    let r = admin_get(admin.addr, "/ready").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body, "NOT READY\n");
}
