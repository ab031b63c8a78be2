//! JWT test support: signing keys the tests make (RSA through the `openssl` tool, EC and
//! Ed25519 through rcgen), their public JWKs, tokens minted with them, and a real HTTPS
//! server for a key set that a test can change, fail or stop.
#![allow(dead_code)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// A private key, its algorithm and `kid`, and its public JWK.
pub struct SigningKey {
    pub alg: Algorithm,
    pub kid: String,
    enc: EncodingKey,
    pub jwk: Value,
}

/// True when the `openssl` tool is missing (RSA keys are made with it); says so.
pub fn openssl_missing() -> bool {
    let missing = std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_err();
    if missing {
        eprintln!("SKIP: RSA keys need the `openssl` tool (apt-get install openssl)");
    }
    missing
}

/// A new RSA-2048 key for `alg` (RS256/384/512, PS256) made with `openssl`.
pub fn rsa(alg: Algorithm, kid: &str) -> SigningKey {
    let dir = std::env::temp_dir().join(format!("mp-jwt-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("key.pem");
    let ok = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let m = std::process::Command::new("openssl")
        .args(["rsa", "-noout", "-modulus", "-in"])
        .arg(&key)
        .output()
        .unwrap();
    let text = String::from_utf8(m.stdout).unwrap();
    let hex = text.trim().strip_prefix("Modulus=").unwrap();
    let n: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let pem = std::fs::read(&key).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    SigningKey {
        alg,
        kid: kid.into(),
        enc: EncodingKey::from_rsa_pem(&pem).unwrap(),
        jwk: json!({"kty": "RSA", "kid": kid, "use": "sig", "n": URL_SAFE_NO_PAD.encode(n), "e": "AQAB"}),
    }
}

/// A new EC key: P-256 for ES256, P-384 for ES384.
pub fn ec(alg: Algorithm, kid: &str) -> SigningKey {
    let (curve, crv, len) = match alg {
        Algorithm::ES256 => (&rcgen::PKCS_ECDSA_P256_SHA256, "P-256", 32),
        _ => (&rcgen::PKCS_ECDSA_P384_SHA384, "P-384", 48),
    };
    let kp = rcgen::KeyPair::generate_for(curve).unwrap();
    let raw = kp.public_key_raw();
    let (x, y) = raw[1..].split_at(len);
    SigningKey {
        alg,
        kid: kid.into(),
        enc: EncodingKey::from_ec_pem(kp.serialize_pem().as_bytes()).unwrap(),
        jwk: json!({"kty": "EC", "kid": kid, "crv": crv, "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)}),
    }
}

/// A new Ed25519 key (EdDSA).
pub fn ed(kid: &str) -> SigningKey {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    SigningKey {
        alg: Algorithm::EdDSA,
        kid: kid.into(),
        enc: EncodingKey::from_ed_pem(kp.serialize_pem().as_bytes()).unwrap(),
        jwk: json!({"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(kp.public_key_raw())}),
    }
}

/// A key set of `keys` as JSON text.
pub fn jwks(keys: &[&SigningKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string()
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token with `claims`, signed by `key` (header `kid` = the key's).
pub fn mint(key: &SigningKey, claims: Value) -> String {
    let mut h = Header::new(key.alg);
    h.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&h, &claims, &key.enc).unwrap()
}

/// [`mint`] with `iss`, `sub` and an expiry an hour ahead, plus `extra` claims.
pub fn token(key: &SigningKey, iss: &str, sub: &str, extra: Value) -> String {
    let mut c = json!({"iss": iss, "sub": sub, "exp": now() + 3600});
    if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    mint(key, c)
}

/// The payload section of a token (what `outputPayloadToHeader` forwards).
pub fn payload_of(token: &str) -> &str {
    token.split('.').nth(1).unwrap()
}

/// A real HTTPS server for a key set: `body` is served at any path with `status`.
pub struct JwksServer {
    pub port: u16,
    pub body: Arc<Mutex<String>>,
    pub status: Arc<AtomicU16>,
    pub hits: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    /// Replaces the key set served.
    pub fn set(&self, body: String) {
        *self.body.lock().unwrap() = body;
    }

    /// Stops accepting: new connections are refused.
    pub fn stop(&self) {
        self.task.abort();
    }
}

/// Starts a JWKS server with the certificate in `cert_dir` (`cert.pem`, `key.pem`).
pub async fn jwks_server(cert_dir: &std::path::Path, body: String) -> JwksServer {
    let acceptor = crate::common::tls_acceptor(cert_dir);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let body = Arc::new(Mutex::new(body));
    let status = Arc::new(AtomicU16::new(200));
    let hits = Arc::new(AtomicU64::new(0));
    let (b, s, h) = (body.clone(), status.clone(), hits.clone());
    let task = tokio::spawn(async move {
        while let Ok((sock, _)) = l.accept().await {
            let (acceptor, b, s, h) = (acceptor.clone(), b.clone(), s.clone(), h.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(sock).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |_req: Request<Incoming>| {
                    h.fetch_add(1, Ordering::SeqCst);
                    let text = b.lock().unwrap().clone();
                    let mut resp = Response::new(Full::new(Bytes::from(text)));
                    *resp.status_mut() =
                        http::StatusCode::from_u16(s.load(Ordering::SeqCst)).unwrap();
                    async move { Ok::<_, std::convert::Infallible>(resp) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    JwksServer {
        port,
        body,
        status,
        hits,
        task,
    }
}

/// Sends GETs until one answers `status` (polling, not sleeping for a fixed time) or
/// `within` passes; the last reply.
pub async fn until_status(
    addr: std::net::SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    status: u16,
    within: std::time::Duration,
) -> crate::common::Reply {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let r = crate::common::send(addr, "GET", host, path, headers, Bytes::new(), false).await;
        if r.status == status || tokio::time::Instant::now() >= deadline {
            return r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A RequestAuthentication document.
pub fn ra(ns: &str, name: &str, spec: &str) -> String {
    format!("apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{spec}---\n")
}

/// An AuthorizationPolicy document.
pub fn ap(ns: &str, name: &str, spec: &str) -> String {
    format!("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{spec}---\n")
}

/// The Proxy document of `httpbin`'s sidecar in `foo`, its INBOUND listener forwarding
/// to `app`; `spec_extra` adds lines to its spec (at two spaces).
pub fn httpbin_sidecar(app: std::net::SocketAddr, spec_extra: &str) -> String {
    format!("apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {{name: httpbin, namespace: foo}}\nspec:\n  workload: {{labels: {{app: httpbin}}}}\n{spec_extra}  listeners:\n  - {{name: inbound, address: \"127.0.0.1:0\", direction: INBOUND, forwardTo: \"{app}\"}}\n---\n")
}

/// `yaml` compiled; a refusal fails the test with the diagnostics.
pub fn compile(yaml: &str) -> meshproxy_config::compile::Snapshot {
    meshproxy_config::compile::load_str("t.yaml", yaml)
        .unwrap_or_else(|d| panic!("config refused:\n{d}"))
}

/// An in-process proxy on `snap`, and the address of its `inbound` listener.
pub fn start_inbound(
    snap: meshproxy_config::compile::Snapshot,
) -> (meshproxy::server::Server, std::net::SocketAddr) {
    let server = meshproxy::server::Server::start(
        snap,
        meshproxy::server::Options::default(),
        meshproxy::access_log::AccessLog::disabled(),
    )
    .unwrap();
    let addr = server.addr("inbound").unwrap();
    (server, addr)
}
