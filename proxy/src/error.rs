//! Errors of the proxy process.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the proxy could not start or keep serving.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot listen on admin address {addr}: {source}")]
    AdminBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read state file {path}: {source}")]
    StateRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state file {path} is not valid: {source}")]
    StateDecode {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("admin listener failed: {0}")]
    Admin(std::io::Error),
}
