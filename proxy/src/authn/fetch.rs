//! One fetch of a remote key set: a GET over HTTPS (or plain HTTP when the URI says so)
//! to the address the registry gives the host (a ServiceEntry may point it anywhere), or
//! to what DNS answers for it when the registry does not know it, with the certificate
//! checked against a DestinationRule `SIMPLE` `caCertificates` for the host or the
//! system roots. istiod's resolver (`jwks_resolver.go`) refuses a non-2xx answer.

use super::keys::KeySet;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use meshproxy_config::compile::jwt::RemoteJwks;
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A key set larger than this is refused (istiod reads whole bodies; a bound keeps a
/// broken server from filling memory).
const MAX_JWKS_BYTES: usize = 1 << 20;

/// Where and how a remote key set is fetched, decided from the config in force.
pub struct Target {
    /// The rule's URL, timeout and refresh interval.
    pub remote: RemoteJwks,
    /// Where to connect.
    pub dial: Dial,
    /// TLS for an `https` URL (`Err`: the DestinationRule's files could not be used).
    pub tls: Option<Result<Arc<rustls::ClientConfig>, String>>,
    /// The TLS server name (the host, or the DestinationRule's `sni`).
    pub server_name: String,
}

/// Where a key set's server is.
pub enum Dial {
    /// Addresses from the registry.
    Addrs(Vec<SocketAddr>),
    /// A name resolved through DNS when fetching, and its port.
    Name(String, u16),
}

/// Fetches and parses the key set, within the rule's timeout.
pub async fn fetch(t: &Target) -> Result<KeySet, String> {
    let body = tokio::time::timeout(t.remote.timeout, get(t))
        .await
        .map_err(|_| format!("timed out after {:?}", t.remote.timeout))??;
    let text = std::str::from_utf8(&body).map_err(|_| "the body is not UTF-8".to_string())?;
    KeySet::parse(text)
}

async fn connect(dial: &Dial) -> Result<TcpStream, String> {
    let addrs: Vec<SocketAddr> = match dial {
        Dial::Addrs(a) => a.clone(),
        Dial::Name(host, port) => tokio::net::lookup_host((host.as_str(), *port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect(),
    };
    let mut last = "no address".to_string();
    for a in addrs {
        match TcpStream::connect(a).await {
            Ok(s) => return Ok(s),
            Err(e) => last = format!("connect {a}: {e}"),
        }
    }
    Err(last)
}

async fn get(t: &Target) -> Result<Bytes, String> {
    let tcp = connect(&t.dial).await?;
    match &t.tls {
        None => request(tcp, t).await,
        Some(Err(e)) => Err(e.clone()),
        Some(Ok(config)) => {
            let name = ServerName::try_from(t.server_name.clone())
                .map_err(|_| format!("invalid server name {:?}", t.server_name))?;
            let tls = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS handshake: {e}"))?;
            request(tls, t).await
        }
    }
}

async fn request<IO>(io: IO, t: &Target) -> Result<Bytes, String>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let r = &t.remote;
    let default_port = if r.https { 443 } else { 80 };
    let host = if r.port == default_port {
        r.host.clone()
    } else {
        format!("{}:{}", r.host, r.port)
    };
    let req = http::Request::get(r.path.as_str())
        .header(http::header::HOST, host)
        .header(http::header::ACCEPT, "application/json")
        .header(http::header::USER_AGENT, "meshproxy")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("status {}", resp.status()));
    }
    Limited::new(resp.into_body(), MAX_JWKS_BYTES)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| format!("body: {e}"))
}
