//! Route table, route listeners and the admin HTTP API.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;

use crate::admin::{
    validate_name, DrainRequest, DrainResult, ErrorBody, ErrorKind, Health, RouteSpec, RouteStatus,
};
use crate::error::ProxyError;
use crate::forward::{Forwarder, DEFAULT_UPSTREAM_TIMEOUT};
use crate::state::{self, StateFile, STATE_VERSION};
use crate::upstream::UpstreamSet;

/// After a drain timed out, how long the closed WebSocket tunnels may take to end.
const TUNNEL_CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Largest accepted admin request body.
const MAX_ADMIN_BODY: usize = 64 * 1024;

/// Tunables of a proxy instance.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// Time to wait for an upstream's response head before answering 504.
    pub upstream_timeout: Duration,
    /// On shutdown, how long in-flight requests may take to finish.
    pub shutdown_grace: Duration,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        Self {
            upstream_timeout: DEFAULT_UPSTREAM_TIMEOUT,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// An admin API failure: HTTP status + JSON error body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ApiError {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    fn status(&self) -> StatusCode {
        match self.kind {
            ErrorKind::PortConflict => StatusCode::CONFLICT,
            ErrorKind::Invalid => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

fn bind_error(addr: SocketAddr, e: &std::io::Error) -> ApiError {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => ApiError::new(
            ErrorKind::PortConflict,
            format!(
                "port {} on {} is already in use by another socket",
                addr.port(),
                addr.ip()
            ),
        ),
        std::io::ErrorKind::AddrNotAvailable => ApiError::new(
            ErrorKind::Invalid,
            format!("cannot listen on {addr}: address not available on this host"),
        ),
        _ => ApiError::new(ErrorKind::Internal, format!("cannot listen on {addr}: {e}")),
    }
}

/// The accept loop of one route and the signal that makes its connections shut down.
struct RouteListener {
    accept: JoinHandle<()>,
    shutdown: watch::Sender<bool>,
}

impl RouteListener {
    /// Starts accepting; `fwd.shutdown` must be a receiver of `shutdown`.
    fn start(listener: TcpListener, fwd: Arc<Forwarder>, shutdown: watch::Sender<bool>) -> Self {
        let rx = shutdown.subscribe();
        let accept = tokio::spawn(accept_loop(listener, fwd, rx));
        Self { accept, shutdown }
    }

    /// Closes the listening socket (returns once it is closed) and asks its connections to
    /// finish in-flight requests and close (WebSocket tunnels close at once). The returned
    /// sender's `closed()` resolves once every connection has ended.
    async fn stop(self) -> watch::Sender<bool> {
        let _ = self.shutdown.send(true);
        self.accept.abort();
        let _ = self.accept.await;
        self.shutdown
    }
}

async fn accept_loop(listener: TcpListener, fwd: Arc<Forwarder>, shutdown: watch::Receiver<bool>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve_route_conn(
                    stream,
                    peer,
                    Arc::clone(&fwd),
                    shutdown.clone(),
                ));
            }
            Err(e) => {
                tracing::warn!(route = %fwd.route, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_route_conn(
    stream: TcpStream,
    peer: SocketAddr,
    fwd: Arc<Forwarder>,
    mut shutdown: watch::Receiver<bool>,
) {
    let svc = service_fn(move |req| {
        let fwd = Arc::clone(&fwd);
        async move { fwd.handle(peer, req).await }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(client = %peer, error = %e, "client connection ended with error");
            }
        }
        () = async { drop(shutdown.wait_for(|stop| *stop).await) } => {
            conn.as_mut().graceful_shutdown();
            if let Err(e) = conn.await {
                tracing::debug!(client = %peer, error = %e, "client connection ended with error");
            }
        }
    }
    drop(shutdown);
}

struct RouteEntry {
    listen: SocketAddr,
    upstreams: Arc<UpstreamSet>,
    listener: RouteListener,
}

impl RouteEntry {
    fn status(&self, name: &str) -> RouteStatus {
        let (upstreams, draining) = self.upstreams.status();
        RouteStatus {
            name: name.to_string(),
            listen: self.listen,
            upstreams,
            draining,
        }
    }
}

/// The proxy: its routes, their listeners and the persisted state.
pub(crate) struct Proxy {
    routes: Mutex<BTreeMap<String, RouteEntry>>,
    state_file: Option<PathBuf>,
    options: ProxyOptions,
}

impl Proxy {
    /// Creates the proxy and restores the routes of the state file. A route whose port
    /// cannot be bound is logged and skipped (the file is left as it is).
    async fn start(state_file: Option<PathBuf>, options: ProxyOptions) -> Result<Self, ProxyError> {
        let proxy = Self {
            routes: Mutex::new(BTreeMap::new()),
            state_file,
            options,
        };
        if let Some(path) = &proxy.state_file {
            let saved = state::load(path).await?;
            let mut routes = proxy.routes.lock().await;
            for (name, spec) in saved.routes {
                if let Err(e) = validate_name(&name) {
                    tracing::error!(route = %name, error = %e, "skipping saved route");
                    continue;
                }
                if let Err(e) = spec.validate() {
                    tracing::error!(route = %name, error = %e, "skipping saved route");
                    continue;
                }
                match TcpListener::bind(spec.listen).await {
                    Ok(listener) => {
                        let entry = proxy.new_entry(&name, &spec, listener);
                        tracing::info!(route = %name, listen = %spec.listen, upstreams = ?spec.upstreams, "route restored");
                        routes.insert(name, entry);
                    }
                    Err(e) => {
                        tracing::error!(route = %name, error = %bind_error(spec.listen, &e).message, "cannot restore route");
                    }
                }
            }
        }
        Ok(proxy)
    }

    fn new_entry(&self, name: &str, spec: &RouteSpec, listener: TcpListener) -> RouteEntry {
        let upstreams = Arc::new(UpstreamSet::new(&spec.upstreams));
        let listener = self.start_listener(name, &upstreams, listener);
        RouteEntry {
            listen: spec.listen,
            upstreams,
            listener,
        }
    }

    fn start_listener(
        &self,
        name: &str,
        upstreams: &Arc<UpstreamSet>,
        listener: TcpListener,
    ) -> RouteListener {
        let (shutdown, rx) = watch::channel(false);
        let fwd = Arc::new(Forwarder {
            route: name.to_string(),
            upstreams: Arc::clone(upstreams),
            timeout: self.options.upstream_timeout,
            shutdown: rx,
        });
        RouteListener::start(listener, fwd, shutdown)
    }

    async fn persist(&self, routes: &BTreeMap<String, RouteEntry>) -> Result<(), ApiError> {
        let Some(path) = &self.state_file else {
            return Ok(());
        };
        let state = StateFile {
            version: STATE_VERSION,
            routes: routes
                .iter()
                .map(|(name, e)| {
                    (
                        name.clone(),
                        RouteSpec {
                            listen: e.listen,
                            upstreams: e.upstreams.addrs(),
                        },
                    )
                })
                .collect(),
        };
        state::save(path, &state).await.map_err(|e| {
            tracing::error!(error = %e, "state not persisted");
            ApiError::new(
                ErrorKind::Internal,
                format!("route applied but not persisted: {e}"),
            )
        })
    }

    pub(crate) async fn list(&self) -> Vec<RouteStatus> {
        let routes = self.routes.lock().await;
        routes.iter().map(|(name, e)| e.status(name)).collect()
    }

    pub(crate) async fn put(&self, name: &str, spec: RouteSpec) -> Result<RouteStatus, ApiError> {
        validate_name(name).map_err(|e| ApiError::new(ErrorKind::Invalid, e.to_string()))?;
        spec.validate()
            .map_err(|e| ApiError::new(ErrorKind::Invalid, e.to_string()))?;
        let mut routes = self.routes.lock().await;
        if let Some(entry) = routes.get_mut(name) {
            if entry.listen == spec.listen {
                entry.upstreams.replace(&spec.upstreams);
                tracing::info!(route = %name, upstreams = ?spec.upstreams, "upstreams switched");
            } else {
                // Bind the new port first: on failure nothing changes.
                let listener = TcpListener::bind(spec.listen)
                    .await
                    .map_err(|e| bind_error(spec.listen, &e))?;
                entry.upstreams.replace(&spec.upstreams);
                let new = self.start_listener(name, &entry.upstreams, listener);
                let old = std::mem::replace(&mut entry.listener, new);
                let from = std::mem::replace(&mut entry.listen, spec.listen);
                drop(old.stop().await);
                tracing::info!(route = %name, from = %from, listen = %spec.listen, upstreams = ?spec.upstreams, "route rebound");
            }
        } else {
            let listener = TcpListener::bind(spec.listen)
                .await
                .map_err(|e| bind_error(spec.listen, &e))?;
            let entry = self.new_entry(name, &spec, listener);
            tracing::info!(route = %name, listen = %spec.listen, upstreams = ?spec.upstreams, "route created");
            routes.insert(name.to_string(), entry);
        }
        let status = routes
            .get(name)
            .map(|e| e.status(name))
            .ok_or_else(|| ApiError::new(ErrorKind::Internal, "route vanished"))?;
        self.persist(&routes).await?;
        Ok(status)
    }

    pub(crate) async fn delete(&self, name: &str) -> Result<(), ApiError> {
        let mut routes = self.routes.lock().await;
        let entry = routes.remove(name).ok_or_else(|| {
            ApiError::new(ErrorKind::NotFound, format!("no route named {name:?}"))
        })?;
        drop(entry.listener.stop().await);
        tracing::info!(route = %name, listen = %entry.listen, "route deleted");
        self.persist(&routes).await
    }

    pub(crate) async fn drain(
        &self,
        name: &str,
        req: DrainRequest,
    ) -> Result<DrainResult, ApiError> {
        req.validate()
            .map_err(|e| ApiError::new(ErrorKind::Invalid, e.to_string()))?;
        let (set, upstream) = {
            let routes = self.routes.lock().await;
            let entry = routes.get(name).ok_or_else(|| {
                ApiError::new(ErrorKind::NotFound, format!("no route named {name:?}"))
            })?;
            (
                Arc::clone(&entry.upstreams),
                entry.upstreams.find(req.upstream),
            )
        };
        let Some(upstream) = upstream else {
            // Unknown (or already forgotten) upstream: nothing of this route is in flight to it.
            return Ok(DrainResult {
                drained: true,
                in_flight: 0,
                closed_tunnels: 0,
            });
        };
        let deadline = tokio::time::Instant::now() + Duration::from_millis(req.timeout_ms);
        let mut in_flight = upstream.wait_idle(deadline).await;
        let mut closed_tunnels = 0;
        // Time is up: a former upstream's WebSocket tunnels would hold the drain (and the
        // old container) forever, so they are closed now; plain requests keep running.
        if in_flight > 0 && set.retire(req.upstream) {
            closed_tunnels = upstream.tunnels();
            if closed_tunnels > 0 {
                tracing::info!(route = %name, upstream = %req.upstream, tunnels = closed_tunnels, "drain timed out: closing WebSocket tunnels");
                let grace = tokio::time::Instant::now() + TUNNEL_CLOSE_WAIT;
                in_flight = upstream.wait_idle(grace).await;
            }
        }
        Ok(DrainResult {
            drained: in_flight == 0,
            in_flight,
            closed_tunnels,
        })
    }

    /// Stops every route listener and waits (up to the grace period) for in-flight
    /// requests to finish.
    async fn shutdown(&self) {
        let routes = std::mem::take(&mut *self.routes.lock().await);
        let mut signals = Vec::new();
        for (_, entry) in routes {
            signals.push(entry.listener.stop().await);
        }
        let deadline = tokio::time::Instant::now() + self.options.shutdown_grace;
        for s in &signals {
            if tokio::time::timeout_at(deadline, s.closed()).await.is_err() {
                tracing::warn!("shutdown grace period over with requests still in flight");
                return;
            }
        }
    }
}

fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn error_response(e: &ApiError) -> Response<Full<Bytes>> {
    json_response(
        e.status(),
        &ErrorBody {
            error: e.kind,
            message: e.message.clone(),
        },
    )
}

async fn read_json<T: serde::de::DeserializeOwned>(body: Incoming) -> Result<T, ApiError> {
    let bytes = Limited::new(body, MAX_ADMIN_BODY)
        .collect()
        .await
        .map_err(|e| ApiError::new(ErrorKind::Invalid, format!("cannot read request body: {e}")))?
        .to_bytes();
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new(ErrorKind::Invalid, format!("invalid JSON body: {e}")))
}

async fn admin(proxy: Arc<Proxy>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let result: Result<Response<Full<Bytes>>, ApiError> = match (&method, segments.as_slice()) {
        (&Method::GET, ["health"]) => Ok(json_response(
            StatusCode::OK,
            &Health {
                ok: true,
                version: env!("CARGO_PKG_VERSION").to_string(),
            },
        )),
        (&Method::GET, ["routes"]) => Ok(json_response(StatusCode::OK, &proxy.list().await)),
        (&Method::PUT, ["routes", name]) => match read_json::<RouteSpec>(req.into_body()).await {
            Ok(spec) => proxy
                .put(name, spec)
                .await
                .map(|s| json_response(StatusCode::OK, &s)),
            Err(e) => Err(e),
        },
        (&Method::DELETE, ["routes", name]) => proxy.delete(name).await.map(|()| {
            let mut resp = Response::new(Full::new(Bytes::new()));
            *resp.status_mut() = StatusCode::NO_CONTENT;
            resp
        }),
        (&Method::POST, ["routes", name, "drain"]) => {
            match read_json::<DrainRequest>(req.into_body()).await {
                Ok(d) => proxy
                    .drain(name, d)
                    .await
                    .map(|r| json_response(StatusCode::OK, &r)),
                Err(e) => Err(e),
            }
        }
        (_, ["health"] | ["routes"] | ["routes", _] | ["routes", _, "drain"]) => {
            let e = ApiError::new(
                ErrorKind::Invalid,
                format!("method {method} not allowed on {path}"),
            );
            let mut resp = error_response(&e);
            *resp.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            Ok(resp)
        }
        _ => Err(ApiError::new(
            ErrorKind::NotFound,
            format!("no such path: {path}"),
        )),
    };
    match result {
        Ok(resp) => resp,
        Err(e) => {
            tracing::info!(method = %method, path = %path, error = %e.message, "admin request rejected");
            error_response(&e)
        }
    }
}

/// Serves the admin API on `listener` (and all routes) until `shutdown` resolves, then
/// stops accepting and lets in-flight requests finish within the grace period.
pub async fn serve_until(
    listener: TcpListener,
    state_file: Option<PathBuf>,
    options: ProxyOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProxyError> {
    let proxy = Arc::new(Proxy::start(state_file, options).await?);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(admin = %addr, "slipway-proxy ready");
    }
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let proxy = Arc::clone(&proxy);
                    tokio::spawn(async move {
                        let svc = service_fn(move |req| {
                            let proxy = Arc::clone(&proxy);
                            async move { Ok::<_, std::convert::Infallible>(admin(proxy, req).await) }
                        });
                        if let Err(e) = hyper::server::conn::http1::Builder::new()
                            .timer(TokioTimer::new())
                            .serve_connection(TokioIo::new(stream), svc)
                            .await
                        {
                            tracing::debug!(error = %e, "admin connection ended with error");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: listeners closed, waiting for in-flight requests");
    proxy.shutdown().await;
    tracing::info!("shutdown complete");
    Ok(())
}

/// Serves the admin API on `listener` and all routes until the process ends.
pub async fn serve(listener: TcpListener, state_file: Option<PathBuf>) -> Result<(), ProxyError> {
    serve_until(
        listener,
        state_file,
        ProxyOptions::default(),
        std::future::pending(),
    )
    .await
}
