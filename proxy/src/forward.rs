//! HTTP/1.1 forwarding from a route's listener to its current upstreams.
//!
//! Upgrades (WebSocket) and HTTP/2 are not supported: `Upgrade` is stripped like every
//! other hop-by-hop header, and both sides speak HTTP/1.x only.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1 as client_http1;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::upstream::{InFlight, Upstream, UpstreamSet};

/// Default time to wait for an upstream's response head.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);
/// Time allowed to open a TCP connection to an upstream.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Idle keep-alive connections kept per upstream.
const MAX_IDLE_PER_UPSTREAM: usize = 32;
/// Idle connections older than this are not reused: shorter than common server keep-alive
/// timeouts (e.g. Node.js: 5 s), so the upstream rarely closes one just as a request is sent.
const MAX_IDLE_TIME: Duration = Duration::from_secs(3);

type Sender = client_http1::SendRequest<UpstreamBody>;

/// Request body sent upstream: the client's streamed body, or empty for a replayed
/// body-less request.
#[derive(Debug)]
pub enum UpstreamBody {
    Client(Incoming),
    Empty,
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            UpstreamBody::Client(b) => Pin::new(b).poll_frame(cx),
            UpstreamBody::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Client(b) => b.is_end_stream(),
            UpstreamBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Client(b) => b.size_hint(),
            UpstreamBody::Empty => SizeHint::with_exact(0),
        }
    }
}

/// For an idempotent request without body: a copy to resend if a reused keep-alive
/// connection turns out to have been closed by the upstream under our feet.
fn replayable(req: &Request<UpstreamBody>) -> Option<Request<UpstreamBody>> {
    let idempotent = matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    );
    if !idempotent || !req.body().is_end_stream() {
        return None;
    }
    let mut copy = Request::new(UpstreamBody::Empty);
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    Some(copy)
}

/// Idle keep-alive connections to one upstream.
#[derive(Debug, Default)]
pub struct Pool {
    idle: Mutex<Vec<(Sender, Instant)>>,
}

impl Pool {
    fn take(&self) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((s, since)) = idle.pop() {
            if !s.is_closed() && s.is_ready() && since.elapsed() < MAX_IDLE_TIME {
                return Some(s);
            }
        }
        None
    }

    fn put(&self, sender: Sender) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|(s, since)| !s.is_closed() && since.elapsed() < MAX_IDLE_TIME);
        if idle.len() < MAX_IDLE_PER_UPSTREAM {
            idle.push((sender, Instant::now()));
        }
    }
}

/// Returns a connection to the pool once its current response has been read.
fn recycle(upstream: &Arc<Upstream>, mut sender: Sender) {
    let upstream = Arc::clone(upstream);
    tokio::spawn(async move {
        if sender.ready().await.is_ok() {
            upstream.pool.put(sender);
        }
    });
}

enum SendError {
    /// Nothing of the request reached the upstream; the request is handed back for a retry.
    NotSent(Box<Request<UpstreamBody>>, String),
    /// The upstream failed after (part of) the request was sent.
    Failed(hyper::Error),
}

async fn send(
    upstream: &Arc<Upstream>,
    req: Request<UpstreamBody>,
) -> Result<Response<Incoming>, SendError> {
    let mut req = req;
    while let Some(mut sender) = upstream.pool.take() {
        let replay = replayable(&req);
        match sender.try_send_request(req).await {
            Ok(resp) => {
                recycle(upstream, sender);
                return Ok(resp);
            }
            Err(mut e) => match e.take_message() {
                // The pooled connection closed before the request went out: use another.
                Some(back) => req = back,
                None => {
                    let err = e.into_error();
                    match replay {
                        Some(copy) if err.is_incomplete_message() || err.is_canceled() => {
                            tracing::debug!(upstream = %upstream.addr, error = %err, "reused connection was closed, resending");
                            req = copy;
                        }
                        _ => return Err(SendError::Failed(err)),
                    }
                }
            },
        }
    }
    let addr = upstream.addr;
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Err(SendError::NotSent(
                Box::new(req),
                format!("connect to {addr}: {e}"),
            ))
        }
        Err(_) => {
            return Err(SendError::NotSent(
                Box::new(req),
                format!("connect to {addr}: timed out"),
            ))
        }
    };
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = match client_http1::handshake(TokioIo::new(stream)).await {
        Ok(pair) => pair,
        Err(e) => {
            return Err(SendError::NotSent(
                Box::new(req),
                format!("handshake with {addr}: {e}"),
            ))
        }
    };
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(upstream = %addr, error = %e, "upstream connection ended with error");
        }
    });
    match sender.try_send_request(req).await {
        Ok(resp) => {
            recycle(upstream, sender);
            Ok(resp)
        }
        Err(mut e) => match e.take_message() {
            Some(back) => Err(SendError::NotSent(
                Box::new(back),
                format!("{addr}: {}", e.error()),
            )),
            None => Err(SendError::Failed(e.into_error())),
        },
    }
}

/// Response body sent to the client: the upstream's streamed body (keeping the request
/// counted in flight until it ends) or a short proxy-generated text.
#[derive(Debug)]
pub enum ProxyBody {
    Upstream {
        inner: Incoming,
        guard: Option<InFlight>,
    },
    Text(Option<Bytes>),
}

impl ProxyBody {
    fn text(s: &'static str) -> Self {
        ProxyBody::Text(Some(Bytes::from_static(s.as_bytes())))
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ProxyBody::Upstream { inner, guard } => {
                let polled = Pin::new(inner).poll_frame(cx);
                if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
                    guard.take();
                }
                polled
            }
            ProxyBody::Text(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream { inner, .. } => inner.is_end_stream(),
            ProxyBody::Text(data) => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream { inner, .. } => inner.size_hint(),
            ProxyBody::Text(Some(d)) => SizeHint::with_exact(d.len() as u64),
            ProxyBody::Text(None) => SizeHint::with_exact(0),
        }
    }
}

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
];

/// Removes hop-by-hop headers, including those named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove("proxy-authenticate");
}

/// Sets `X-Forwarded-For` (appending the client) and `X-Forwarded-Proto: http`.
pub fn set_forwarded(headers: &mut HeaderMap, client: SocketAddr) {
    let ip = client.ip().to_string();
    let prior: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    let xff = if prior.is_empty() {
        ip
    } else {
        format!("{}, {ip}", prior.join(", "))
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert("x-forwarded-for", v);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
}

fn error_response(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::text(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Forwards requests of one route.
#[derive(Debug, Clone)]
pub struct Forwarder {
    pub route: String,
    pub upstreams: Arc<UpstreamSet>,
    pub timeout: Duration,
}

impl Forwarder {
    pub async fn handle(
        &self,
        client: SocketAddr,
        req: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, Infallible> {
        let mut req = req.map(UpstreamBody::Client);
        strip_hop_by_hop(req.headers_mut());
        set_forwarded(req.headers_mut(), client);
        *req.version_mut() = Version::HTTP_11;
        match tokio::time::timeout(self.timeout, self.forward(req)).await {
            Ok(Ok((guard, resp))) => {
                let (mut parts, body) = resp.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                Ok(Response::from_parts(
                    parts,
                    ProxyBody::Upstream {
                        inner: body,
                        guard: Some(guard),
                    },
                ))
            }
            Ok(Err(resp)) => Ok(resp),
            Err(_) => {
                tracing::warn!(route = %self.route, timeout_ms = self.timeout.as_millis() as u64, "upstream timed out");
                Ok(error_response(
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream timed out\n",
                ))
            }
        }
    }

    async fn forward(
        &self,
        req: Request<UpstreamBody>,
    ) -> Result<(InFlight, Response<Incoming>), Response<ProxyBody>> {
        let no_upstream = || error_response(StatusCode::BAD_GATEWAY, "no upstream available\n");
        let mut guard = self.upstreams.acquire(None).ok_or_else(no_upstream)?;
        let upstream = Arc::clone(guard.upstream());
        let req = match send(&upstream, req).await {
            Ok(resp) => {
                guard.answered();
                return Ok((guard, resp));
            }
            Err(SendError::NotSent(req, why)) => {
                tracing::warn!(route = %self.route, upstream = %upstream.addr, error = %why, "upstream unreachable, retrying once");
                *req
            }
            Err(SendError::Failed(e)) => return Err(self.failed(upstream.addr, &e)),
        };
        drop(guard);
        let mut guard = self
            .upstreams
            .acquire(Some(upstream.addr))
            .ok_or_else(no_upstream)?;
        let upstream = Arc::clone(guard.upstream());
        match send(&upstream, req).await {
            Ok(resp) => {
                guard.answered();
                Ok((guard, resp))
            }
            Err(SendError::NotSent(_, why)) => {
                tracing::warn!(route = %self.route, upstream = %upstream.addr, error = %why, "upstream unreachable");
                Err(error_response(
                    StatusCode::BAD_GATEWAY,
                    "upstream unreachable\n",
                ))
            }
            Err(SendError::Failed(e)) => Err(self.failed(upstream.addr, &e)),
        }
    }

    fn failed(&self, addr: SocketAddr, e: &hyper::Error) -> Response<ProxyBody> {
        tracing::warn!(route = %self.route, upstream = %addr, error = %e, "upstream request failed");
        error_response(StatusCode::BAD_GATEWAY, "upstream request failed\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, X-Secret"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("host", HeaderValue::from_static("example.com"));
        h.insert("content-length", HeaderValue::from_static("3"));
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, vec!["content-length", "host"]);
    }

    #[test]
    fn forwarded_headers() {
        let client: SocketAddr = SocketAddr::from(([10, 0, 0, 7], 5555));
        let mut h = HeaderMap::new();
        set_forwarded(&mut h, client);
        assert_eq!(h["x-forwarded-for"], "10.0.0.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", HeaderValue::from_static("1.1.1.1"));
        h.append("x-forwarded-for", HeaderValue::from_static("2.2.2.2"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        set_forwarded(&mut h, client);
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 10.0.0.7");
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-forwarded-proto"], "http");
    }
}
