//! `meshproxy demo`: starts the demo services and the proxy from the embedded config.

use crate::cli::{DemoArgs, LogFormat};
use meshproxy::access_log::AccessLog;
use meshproxy::demo;
use meshproxy::server::{Options, Server};
use std::io::Write;

/// Runs the demo until interrupted.
pub fn run(args: DemoArgs) -> i32 {
    super::logging::init(args.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the demo services: {e}");
            return 1;
        }
    };
    let ports = rt.block_on(async {
        let mut out = Vec::new();
        for (key, svc, ver) in [
            ("REVIEWS_V1", "reviews", "v1"),
            ("REVIEWS_V2", "reviews", "v2"),
            ("REVIEWS_V3", "reviews", "v3"),
            ("RATINGS_V1", "ratings", "v1"),
        ] {
            out.push((key, demo::start_service(svc, ver).await?.port()));
        }
        Ok::<_, std::io::Error>(out)
    });
    let ports = match ports {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cannot start the demo services: {e}");
            return 1;
        }
    };
    let text = demo::render(args.port, &ports);
    let snap = match meshproxy_config::compile::load_str("<embedded demo config>", &text) {
        Ok(s) => s,
        Err(d) => {
            eprintln!("the embedded demo config is invalid:\n{d}");
            return 1;
        }
    };
    let server = match Server::start(
        snap,
        Options::default(),
        AccessLog::stdout(true, args.log_format == LogFormat::Json),
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "cannot start the proxy: {e} (is port {} free? try --port 0)",
                args.port
            );
            return 1;
        }
    };
    let Some(addr) = server.addr("outbound") else {
        eprintln!("the demo proxy has no outbound listener");
        return 1;
    };
    let admin_addr = std::net::SocketAddr::from(([127, 0, 0, 1], args.admin_port));
    let admin = match meshproxy::admin::Admin::start(server.shared.clone(), admin_addr) {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "cannot start the admin server: {e} (is port {} free? try --admin-port 0)",
                args.admin_port
            );
            return 1;
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "meshproxy demo: proxy on {addr}, reviews v1/v2/v3 and ratings behind it. Try:\n"
    );
    for line in demo::instructions(addr) {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(
        out,
        "# admin: Istio metrics, clusters and endpoints, the config in force"
    );
    let _ = writeln!(
        out,
        "curl -s http://{}/metrics | grep istio_requests_total",
        admin.addr
    );
    let _ = writeln!(out, "curl -s http://{}/clusters", admin.addr);
    let _ = writeln!(out, "\n(access log below; Ctrl-C to stop)");
    let _ = out.flush();
    drop(out);
    rt.block_on(async {
        let _ = tokio::signal::ctrl_c().await;
    });
    drop(admin);
    server.shutdown();
    0
}
