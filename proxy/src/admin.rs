//! Admin API wire types (JSON) shared by the proxy's admin server and [`crate::ProxyClient`].

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Longest accepted route name.
pub const MAX_NAME_LEN: usize = 128;
/// Most upstreams one route may have.
pub const MAX_UPSTREAMS: usize = 64;
/// Longest accepted drain wait.
pub const MAX_DRAIN_TIMEOUT_MS: u64 = 10 * 60 * 1000;

/// Desired state of one route: where to listen and where to forward (`PUT /routes/{name}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    pub listen: SocketAddr,
    pub upstreams: Vec<SocketAddr>,
}

/// Live state of one upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamStatus {
    pub addr: SocketAddr,
    /// Requests forwarded to it whose response is not fully sent yet, and open WebSocket
    /// tunnels to it.
    pub in_flight: u64,
    /// Requests it answered (response head received) since the proxy started.
    pub served: u64,
}

/// Live state of one route (`GET /routes`, `PUT /routes/{name}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteStatus {
    pub name: String,
    pub listen: SocketAddr,
    /// Current upstream set: new requests go here (round-robin).
    pub upstreams: Vec<UpstreamStatus>,
    /// Former upstreams that still have requests in flight.
    pub draining: Vec<UpstreamStatus>,
}

/// Body of `POST /routes/{name}/drain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrainRequest {
    pub upstream: SocketAddr,
    pub timeout_ms: u64,
}

/// Answer of `POST /routes/{name}/drain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainResult {
    /// True when no request to the upstream was in flight when the call returned.
    pub drained: bool,
    /// Requests still in flight (0 when `drained`).
    pub in_flight: u64,
    /// WebSocket tunnels to the (former) upstream closed because the timeout passed.
    #[serde(default)]
    pub closed_tunnels: u64,
}

/// Answer of `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub ok: bool,
    pub version: String,
}

/// Machine-readable error kind of an admin API error body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The listen port is in use by another socket (HTTP 409).
    PortConflict,
    /// The request is malformed or fails validation (HTTP 400).
    Invalid,
    /// No such route or path (HTTP 404).
    NotFound,
    /// The proxy failed internally, e.g. it could not write its state file (HTTP 500).
    Internal,
}

/// Error body of every non-2xx admin answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorKind,
    pub message: String,
}

/// Why a route name or spec is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("route name must be 1 to {MAX_NAME_LEN} characters of [a-z0-9-._], got {0:?}")]
    Name(String),
    #[error("a route needs 1 to {MAX_UPSTREAMS} upstreams, got {0}")]
    UpstreamCount(usize),
    #[error("upstream {0} is listed twice")]
    DuplicateUpstream(SocketAddr),
    #[error("listen address {0} has port 0; a route needs a fixed port")]
    ListenPortZero(SocketAddr),
    #[error("upstream {0} has port 0")]
    UpstreamPortZero(SocketAddr),
    #[error("drain timeout_ms {0} exceeds the maximum of {MAX_DRAIN_TIMEOUT_MS}")]
    DrainTimeout(u64),
}

/// Checks a route name: 1–128 characters of `[a-z0-9-._]`.
pub fn validate_name(name: &str) -> Result<(), ValidationError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(ValidationError::Name(
            name.chars().take(MAX_NAME_LEN + 8).collect(),
        ))
    }
}

impl RouteSpec {
    /// Checks upstream count, duplicates and ports.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.listen.port() == 0 {
            return Err(ValidationError::ListenPortZero(self.listen));
        }
        let n = self.upstreams.len();
        if n == 0 || n > MAX_UPSTREAMS {
            return Err(ValidationError::UpstreamCount(n));
        }
        for (i, up) in self.upstreams.iter().enumerate() {
            if up.port() == 0 {
                return Err(ValidationError::UpstreamPortZero(*up));
            }
            if self.upstreams[..i].contains(up) {
                return Err(ValidationError::DuplicateUpstream(*up));
            }
        }
        Ok(())
    }
}

impl DrainRequest {
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.timeout_ms > MAX_DRAIN_TIMEOUT_MS {
            return Err(ValidationError::DrainTimeout(self.timeout_ms));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse()
            .unwrap_or_else(|_| unreachable!("bad test address {s}"))
    }

    #[test]
    fn names() {
        assert!(validate_name("web").is_ok());
        assert!(validate_name("my-app.web_1").is_ok());
        assert!(validate_name(&"a".repeat(128)).is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name(&"a".repeat(129)).is_err());
        assert!(validate_name("Web").is_err());
        assert!(validate_name("a/b").is_err());
        assert!(validate_name("a b").is_err());
        assert!(validate_name("é").is_err());
    }

    #[test]
    fn specs() {
        let ok = RouteSpec {
            listen: addr("0.0.0.0:8080"),
            upstreams: vec![addr("127.0.0.1:1000"), addr("127.0.0.1:1001")],
        };
        assert!(ok.validate().is_ok());
        let none = RouteSpec {
            upstreams: vec![],
            ..ok.clone()
        };
        assert_eq!(none.validate(), Err(ValidationError::UpstreamCount(0)));
        let many = RouteSpec {
            upstreams: (1..=65)
                .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
                .collect(),
            ..ok.clone()
        };
        assert_eq!(many.validate(), Err(ValidationError::UpstreamCount(65)));
        let max = RouteSpec {
            upstreams: (1..=64)
                .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
                .collect(),
            ..ok.clone()
        };
        assert!(max.validate().is_ok());
        let dup = RouteSpec {
            upstreams: vec![addr("127.0.0.1:1000"), addr("127.0.0.1:1000")],
            ..ok.clone()
        };
        assert!(matches!(
            dup.validate(),
            Err(ValidationError::DuplicateUpstream(_))
        ));
        let zero = RouteSpec {
            listen: addr("0.0.0.0:0"),
            ..ok.clone()
        };
        assert!(matches!(
            zero.validate(),
            Err(ValidationError::ListenPortZero(_))
        ));
        let up_zero = RouteSpec {
            upstreams: vec![addr("127.0.0.1:0")],
            ..ok
        };
        assert!(matches!(
            up_zero.validate(),
            Err(ValidationError::UpstreamPortZero(_))
        ));
    }

    #[test]
    fn wire_format() {
        let body = ErrorBody {
            error: ErrorKind::PortConflict,
            message: "port 80 in use".into(),
        };
        let json = serde_json::to_value(&body).unwrap_or_default();
        assert_eq!(json["error"], "port_conflict");
        let spec: Result<RouteSpec, _> =
            serde_json::from_str(r#"{"listen":"0.0.0.0:80","upstreams":["127.0.0.1:3000"]}"#);
        assert!(spec.is_ok());
        let unknown: Result<RouteSpec, _> =
            serde_json::from_str(r#"{"listen":"0.0.0.0:80","upstreams":[],"x":1}"#);
        assert!(unknown.is_err());
    }
}
