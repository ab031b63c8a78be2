//! The command's HTTP client (Prometheus's API, the proxies' `/metrics`, webhooks):
//! hyper's pooled client over plain TCP, every call bounded by a timeout.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// A shared client.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
}

/// A response's status and body.
pub struct Answer {
    /// The status.
    pub status: http::StatusCode,
    /// The whole body.
    pub body: Bytes,
}

impl Default for Http {
    fn default() -> Self {
        Http {
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }
}

impl Http {
    /// `GET url`.
    pub async fn get(&self, url: &str, timeout: Duration) -> Result<Answer, String> {
        self.call(http::Method::GET, url, None, timeout).await
    }

    /// `POST url` with a JSON body.
    pub async fn post_json(
        &self,
        url: &str,
        body: &serde_json::Value,
        timeout: Duration,
    ) -> Result<Answer, String> {
        self.call(http::Method::POST, url, Some(body.to_string()), timeout)
            .await
    }

    async fn call(
        &self,
        method: http::Method,
        url: &str,
        body: Option<String>,
        timeout: Duration,
    ) -> Result<Answer, String> {
        let mut req = http::Request::builder().method(method).uri(url);
        if body.is_some() {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| format!("{url}: {e}"))?;
        let call = async {
            let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok(Answer { status, body })
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(r) => r.map_err(|e: String| format!("{url}: {e}")),
            Err(_) => Err(format!("{url}: no answer within {timeout:?}")),
        }
    }
}
