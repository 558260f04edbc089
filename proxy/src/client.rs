//! Async client of the proxy's admin API (used by the agent).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;

use crate::admin::{
    validate_name, DrainRequest, DrainResult, ErrorBody, ErrorKind, Health, RouteSpec, RouteStatus,
};

/// Default time allowed for one admin call (drain adds its own timeout on top).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum ProxyClientError {
    #[error("cannot connect to proxy admin at {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("proxy admin HTTP error: {0}")]
    Http(#[from] hyper::Error),
    #[error("proxy admin did not answer within {0:?}")]
    Timeout(Duration),
    #[error("port conflict: {0}")]
    PortConflict(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("proxy internal error: {0}")]
    Internal(String),
    #[error("unexpected answer from proxy admin: HTTP {status}: {body}")]
    Unexpected { status: u16, body: String },
    #[error("cannot decode proxy admin answer: {0}")]
    Decode(#[source] serde_json::Error),
    #[error("cannot encode request: {0}")]
    Encode(#[source] serde_json::Error),
}

/// Client of one proxy's admin API.
#[derive(Debug, Clone)]
pub struct ProxyClient {
    admin: SocketAddr,
    timeout: Duration,
}

impl ProxyClient {
    pub fn new(admin: SocketAddr) -> Self {
        Self {
            admin,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Sets the per-call timeout (default 10 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    pub async fn health(&self) -> Result<Health, ProxyClientError> {
        let (status, body) = self
            .call(Method::GET, "/health", None, self.timeout)
            .await?;
        decode(status, &body, StatusCode::OK)
    }

    pub async fn routes(&self) -> Result<Vec<RouteStatus>, ProxyClientError> {
        let (status, body) = self
            .call(Method::GET, "/routes", None, self.timeout)
            .await?;
        decode(status, &body, StatusCode::OK)
    }

    /// Creates the route or switches its upstreams / listen address.
    pub async fn put_route(
        &self,
        name: &str,
        spec: &RouteSpec,
    ) -> Result<RouteStatus, ProxyClientError> {
        validate_name(name).map_err(|e| ProxyClientError::Invalid(e.to_string()))?;
        let body = serde_json::to_vec(spec).map_err(ProxyClientError::Encode)?;
        let (status, resp) = self
            .call(
                Method::PUT,
                &format!("/routes/{name}"),
                Some(body),
                self.timeout,
            )
            .await?;
        decode(status, &resp, StatusCode::OK)
    }

    /// Removes the route; in-flight requests on it still finish.
    pub async fn delete_route(&self, name: &str) -> Result<(), ProxyClientError> {
        validate_name(name).map_err(|e| ProxyClientError::Invalid(e.to_string()))?;
        let (status, body) = self
            .call(
                Method::DELETE,
                &format!("/routes/{name}"),
                None,
                self.timeout,
            )
            .await?;
        if status == StatusCode::NO_CONTENT {
            Ok(())
        } else {
            Err(api_error(status, &body))
        }
    }

    /// Waits until no request of route `name` to `upstream` is in flight, or `timeout`.
    pub async fn drain(
        &self,
        name: &str,
        upstream: SocketAddr,
        timeout: Duration,
    ) -> Result<DrainResult, ProxyClientError> {
        validate_name(name).map_err(|e| ProxyClientError::Invalid(e.to_string()))?;
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let body = serde_json::to_vec(&DrainRequest {
            upstream,
            timeout_ms,
        })
        .map_err(ProxyClientError::Encode)?;
        let (status, resp) = self
            .call(
                Method::POST,
                &format!("/routes/{name}/drain"),
                Some(body),
                timeout + self.timeout,
            )
            .await?;
        decode(status, &resp, StatusCode::OK)
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), ProxyClientError> {
        tokio::time::timeout(timeout, self.call_inner(method, path, body))
            .await
            .map_err(|_| ProxyClientError::Timeout(timeout))?
    }

    async fn call_inner(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), ProxyClientError> {
        let addr = self.admin;
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| ProxyClientError::Connect { addr, source })?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "proxy admin connection ended with error");
            }
        });
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, addr.to_string());
        if body.is_some() {
            builder = builder.header(CONTENT_TYPE, "application/json");
        }
        let req = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ProxyClientError::Invalid(e.to_string()))?;
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }
}

fn decode<T: DeserializeOwned>(
    status: StatusCode,
    body: &[u8],
    want: StatusCode,
) -> Result<T, ProxyClientError> {
    if status == want {
        serde_json::from_slice(body).map_err(ProxyClientError::Decode)
    } else {
        Err(api_error(status, body))
    }
}

fn api_error(status: StatusCode, body: &[u8]) -> ProxyClientError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => match e.error {
            ErrorKind::PortConflict => ProxyClientError::PortConflict(e.message),
            ErrorKind::Invalid => ProxyClientError::Invalid(e.message),
            ErrorKind::NotFound => ProxyClientError::NotFound(e.message),
            ErrorKind::Internal => ProxyClientError::Internal(e.message),
        },
        Err(_) => ProxyClientError::Unexpected {
            status: status.as_u16(),
            body: String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_error_bodies() {
        let e = api_error(
            StatusCode::CONFLICT,
            br#"{"error":"port_conflict","message":"port 80 busy"}"#,
        );
        assert!(matches!(e, ProxyClientError::PortConflict(m) if m == "port 80 busy"));
        let e = api_error(
            StatusCode::NOT_FOUND,
            br#"{"error":"not_found","message":"x"}"#,
        );
        assert!(matches!(e, ProxyClientError::NotFound(_)));
        let e = api_error(StatusCode::BAD_GATEWAY, b"oops");
        assert!(matches!(
            e,
            ProxyClientError::Unexpected { status: 502, .. }
        ));
    }
}
