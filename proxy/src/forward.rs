//! HTTP/1.1 forwarding from a route's listener to its current upstreams.
//!
//! WebSocket upgrades (`Connection: upgrade` + `Upgrade: websocket` on HTTP/1.1) are
//! forwarded on a fresh upstream connection; on a `101` both upgraded connections are
//! spliced into a tunnel that counts as one request in flight until it ends (see
//! [`tunnel`]). Every other `Upgrade` (e.g. `h2c`) is stripped like any hop-by-hop
//! header, and both sides speak HTTP/1.x only.

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
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_TYPE, UPGRADE};
use hyper::upgrade::OnUpgrade;
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

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
    let mut sender = match connect(upstream.addr, false).await {
        Ok(sender) => sender,
        Err(why) => return Err(SendError::NotSent(Box::new(req), why)),
    };
    match sender.try_send_request(req).await {
        Ok(resp) => {
            recycle(upstream, sender);
            Ok(resp)
        }
        Err(mut e) => match e.take_message() {
            Some(back) => Err(SendError::NotSent(
                Box::new(back),
                format!("{}: {}", upstream.addr, e.error()),
            )),
            None => Err(SendError::Failed(e.into_error())),
        },
    }
}

/// Opens a new HTTP/1.1 connection to `addr` (its connection task spawned); `upgrades`
/// lets a `101` answer hand the connection over to [`hyper::upgrade::on`].
async fn connect(addr: SocketAddr, upgrades: bool) -> Result<Sender, String> {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(format!("connect to {addr}: {e}")),
        Err(_) => return Err(format!("connect to {addr}: timed out")),
    };
    let _ = stream.set_nodelay(true);
    let (sender, conn) = client_http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake with {addr}: {e}"))?;
    tokio::spawn(async move {
        let ended = if upgrades {
            conn.with_upgrades().await
        } else {
            conn.await
        };
        if let Err(e) = ended {
            tracing::debug!(upstream = %addr, error = %e, "upstream connection ended with error");
        }
    });
    Ok(sender)
}

/// Sends an upgrade request on a connection of its own (never pooled: on a `101` it
/// becomes the tunnel; otherwise it is closed after the answer).
async fn send_upgrade(
    upstream: &Arc<Upstream>,
    req: Request<UpstreamBody>,
) -> Result<Response<Incoming>, SendError> {
    let mut sender = match connect(upstream.addr, true).await {
        Ok(sender) => sender,
        Err(why) => return Err(SendError::NotSent(Box::new(req), why)),
    };
    match sender.try_send_request(req).await {
        Ok(resp) => Ok(resp),
        Err(mut e) => match e.take_message() {
            Some(back) => Err(SendError::NotSent(
                Box::new(back),
                format!("{}: {}", upstream.addr, e.error()),
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

/// The `Upgrade` value of a WebSocket upgrade request (HTTP/1.1, `Connection` naming
/// `upgrade`, `Upgrade` naming `websocket`); `None` for every other request.
pub fn websocket_upgrade<B>(req: &Request<B>) -> Option<HeaderValue> {
    let upgrade = req.headers().get(UPGRADE)?;
    if req.version() != Version::HTTP_11 {
        return None;
    }
    let has_token = |value: &HeaderValue, token: &str| {
        value.to_str().is_ok_and(|v| {
            v.split(',').any(|t| {
                t.trim()
                    .split('/')
                    .next()
                    .is_some_and(|p| p.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    let connection_upgrade = req
        .headers()
        .get_all(CONNECTION)
        .iter()
        .any(|v| has_token(v, "upgrade"));
    (connection_upgrade && has_token(upgrade, "websocket")).then(|| upgrade.clone())
}

/// Relays a WebSocket tunnel between the upgraded client and upstream connections until
/// either side closes its end, the route's listener stops (`shutdown`), or a drain of the
/// upstream times out (`retired`). The tunnel counts as one request in flight (`guard`)
/// to its upstream all along, so a drain waits for it, but only until its timeout.
async fn tunnel(
    route: String,
    client: OnUpgrade,
    upstream: OnUpgrade,
    guard: InFlight,
    mut shutdown: watch::Receiver<bool>,
) {
    let addr = guard.upstream().addr;
    let mut retired = guard.upstream().retired();
    let _open = guard.upstream().tunnel_opened();
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(route = %route, upstream = %addr, error = %e, "WebSocket upgrade failed");
            return;
        }
    };
    // Not `copy_bidirectional`: it keeps a half-closed tunnel open until both sides
    // closed, so a client that keeps its socket after the upstream hung up would pin
    // the tunnel (and the drain). A WebSocket is done once either side is: like nginx,
    // finish the direction that ended (flushed, FIN passed on), then close both.
    let (mut client_rd, mut client_wr) = tokio::io::split(TokioIo::new(client));
    let (mut upstream_rd, mut upstream_wr) = tokio::io::split(TokioIo::new(upstream));
    let up = async {
        let copied = tokio::io::copy(&mut client_rd, &mut upstream_wr).await;
        let _ = upstream_wr.shutdown().await;
        copied
    };
    let down = async {
        let copied = tokio::io::copy(&mut upstream_rd, &mut client_wr).await;
        let _ = client_wr.shutdown().await;
        copied
    };
    tokio::select! {
        copied = up => match copied {
            Ok(bytes) => tracing::debug!(route = %route, upstream = %addr, bytes, "WebSocket closed by the client"),
            Err(e) => tracing::debug!(route = %route, upstream = %addr, error = %e, "WebSocket ended with an error on the client side"),
        },
        copied = down => match copied {
            Ok(bytes) => tracing::debug!(route = %route, upstream = %addr, bytes, "WebSocket closed by the upstream"),
            Err(e) => tracing::debug!(route = %route, upstream = %addr, error = %e, "WebSocket ended with an error on the upstream side"),
        },
        _ = shutdown.wait_for(|stop| *stop) => {
            tracing::info!(route = %route, upstream = %addr, "WebSocket closed: the route's listener stopped");
        }
        _ = retired.wait_for(|retired| *retired) => {
            tracing::info!(route = %route, upstream = %addr, "WebSocket closed: drain of its upstream timed out");
        }
    }
    drop(guard);
}

/// Forwards requests of one route.
#[derive(Debug, Clone)]
pub struct Forwarder {
    pub route: String,
    pub upstreams: Arc<UpstreamSet>,
    pub timeout: Duration,
    /// The route listener's stop signal: closes the route's WebSocket tunnels.
    pub shutdown: watch::Receiver<bool>,
}

impl Forwarder {
    pub async fn handle(
        &self,
        client: SocketAddr,
        req: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, Infallible> {
        let mut req = req;
        let upgrade = websocket_upgrade(&req).map(|p| (p, hyper::upgrade::on(&mut req)));
        let mut req = req.map(UpstreamBody::Client);
        strip_hop_by_hop(req.headers_mut());
        set_forwarded(req.headers_mut(), client);
        *req.version_mut() = Version::HTTP_11;
        if let Some((protocol, _)) = &upgrade {
            let headers = req.headers_mut();
            headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(UPGRADE, protocol.clone());
        }
        let forwarded =
            tokio::time::timeout(self.timeout, self.forward(req, upgrade.is_some())).await;
        match forwarded {
            Ok(Ok((guard, resp))) => match upgrade {
                Some((_, client_io)) if resp.status() == StatusCode::SWITCHING_PROTOCOLS => {
                    Ok(self.splice(guard, resp, client_io))
                }
                _ => {
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
            },
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

    /// Answers the client's upgrade with the upstream's `101` and starts the tunnel.
    fn splice(
        &self,
        guard: InFlight,
        mut resp: Response<Incoming>,
        client_io: OnUpgrade,
    ) -> Response<ProxyBody> {
        let upstream_io = hyper::upgrade::on(&mut resp);
        let (mut parts, _empty) = resp.into_parts();
        let protocol = parts.headers.get(UPGRADE).cloned();
        strip_hop_by_hop(&mut parts.headers);
        parts
            .headers
            .insert(CONNECTION, HeaderValue::from_static("upgrade"));
        if let Some(protocol) = protocol {
            parts.headers.insert(UPGRADE, protocol);
        }
        tokio::spawn(tunnel(
            self.route.clone(),
            client_io,
            upstream_io,
            guard,
            self.shutdown.clone(),
        ));
        Response::from_parts(parts, ProxyBody::Text(None))
    }

    async fn forward(
        &self,
        req: Request<UpstreamBody>,
        upgrade: bool,
    ) -> Result<(InFlight, Response<Incoming>), Response<ProxyBody>> {
        let no_upstream = || error_response(StatusCode::BAD_GATEWAY, "no upstream available\n");
        let mut guard = self.upstreams.acquire(None).ok_or_else(no_upstream)?;
        let upstream = Arc::clone(guard.upstream());
        let sent = if upgrade {
            send_upgrade(&upstream, req).await
        } else {
            send(&upstream, req).await
        };
        let req = match sent {
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
        let sent = if upgrade {
            send_upgrade(&upstream, req).await
        } else {
            send(&upstream, req).await
        };
        match sent {
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
    fn detects_websocket_upgrades_only() {
        let req = |version: Version, headers: &[(&'static str, &'static str)]| {
            let mut r = Request::new(());
            *r.version_mut() = version;
            for (k, v) in headers {
                r.headers_mut().append(*k, HeaderValue::from_static(v));
            }
            r
        };
        let ws = [("connection", "Upgrade"), ("upgrade", "websocket")];
        assert_eq!(
            websocket_upgrade(&req(Version::HTTP_11, &ws)).unwrap(),
            "websocket"
        );
        let mixed = [
            ("connection", "keep-alive"),
            ("connection", "x, UPGRADE"),
            ("upgrade", "WebSocket/13"),
        ];
        assert!(websocket_upgrade(&req(Version::HTTP_11, &mixed)).is_some());
        assert!(websocket_upgrade(&req(Version::HTTP_10, &ws)).is_none());
        assert!(websocket_upgrade(&req(Version::HTTP_11, &[("upgrade", "websocket")])).is_none());
        assert!(websocket_upgrade(&req(Version::HTTP_11, &[("connection", "upgrade")])).is_none());
        let h2c = [
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
        ];
        assert!(websocket_upgrade(&req(Version::HTTP_11, &h2c)).is_none());
        assert!(websocket_upgrade(&req(Version::HTTP_11, &[])).is_none());
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
