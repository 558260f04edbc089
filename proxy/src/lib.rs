//! Slipway ingress proxy.
//!
//! One proxy process runs per Docker host (started detached by the agent, so an agent
//! restart does not drop traffic). For every route it listens on the route's port and
//! forwards HTTP/1.1 requests round-robin to the route's current upstreams (containers
//! publishing on `127.0.0.1:<ephemeral>`). `PUT /routes/{name}` on the admin API switches
//! the upstream set atomically: new requests — also on existing keep-alive connections —
//! go to the new set at once, while requests in flight to old upstreams finish (they are
//! listed as `draining`, and `POST /routes/{name}/drain` waits for them).
//!
//! If connecting to the chosen upstream fails before any byte of the request was sent,
//! the request is retried once on another upstream of the current set; 502 only when
//! that fails too. No response within the upstream timeout (default 60 s) gives 504.
//!
//! WebSocket upgrades pass through: the upgrade request goes to an upstream on a
//! connection of its own and, on a `101`, client and upstream are spliced into a tunnel
//! that counts as one request in flight. A drain waits for tunnels like for requests, but
//! when its timeout passes it closes the tunnels to the former upstream (so an old
//! container never stays pinned by a long-lived socket); stopping a route's listener
//! (delete, new port, proxy shutdown) closes its tunnels at once.
//!
//! Not supported: other protocol upgrades (`h2c`: `Upgrade` is stripped as hop-by-hop),
//! HTTP/2 and TLS.

pub mod admin;
pub mod client;
pub mod error;
mod forward;
mod server;
mod state;
mod upstream;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

pub use admin::{
    DrainRequest, DrainResult, ErrorBody, ErrorKind, Health, RouteSpec, RouteStatus, UpstreamStatus,
};
pub use client::{ProxyClient, ProxyClientError};
pub use error::ProxyError;
pub use forward::DEFAULT_UPSTREAM_TIMEOUT;
pub use server::{serve, serve_until, ProxyOptions};

/// Where the proxy serves its admin API and keeps its route table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Admin API address; bind loopback only (e.g. `127.0.0.1:7901`).
    pub admin: SocketAddr,
    /// Route table persisted here on every change and restored at start.
    pub state_file: Option<PathBuf>,
}

/// Serves the admin API and all routes until the process ends.
pub async fn run(config: ProxyConfig) -> Result<(), ProxyError> {
    run_until(config, ProxyOptions::default(), std::future::pending()).await
}

/// Like [`run`], with options, until `shutdown` resolves (then in-flight requests get
/// the grace period of `options` to finish).
pub async fn run_until(
    config: ProxyConfig,
    options: ProxyOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProxyError> {
    let listener = tokio::net::TcpListener::bind(config.admin)
        .await
        .map_err(|source| ProxyError::AdminBind {
            addr: config.admin,
            source,
        })?;
    serve_until(listener, config.state_file, options, shutdown).await
}
