//! What the server-sent event streams send besides their data: the marker
//! for skipped events and the end of a container-logs stream.
//!
//! Every stream (`/hosts/{id}/containers/{c}/logs`, `/deployments/{id}/events`,
//! `/events`) keeps at most a bounded backlog per client. A client that reads
//! more slowly than events arrive misses some; where they are missing it gets
//! `event: lagged` with a [`Lagged`] as data, then the stream goes on.
use serde::{Deserialize, Serialize};

/// `event: lagged`: `skipped` events (log lines, steps, live events) were
/// dropped here because this client read too slowly. Log viewers show a gap;
/// pages that mirror state reload it from the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lagged {
    pub skipped: u64,
}

impl Lagged {
    /// The SSE event name.
    pub const EVENT: &'static str = "lagged";
}

/// `event: end` of a container-logs stream: the agent finished (`ok`), or
/// the stream ended with `error` (agent gone, container missing, the client
/// stopped reading…). A browser `EventSource` stops instead of reconnecting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsEnd {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl LogsEnd {
    /// The SSE event name.
    pub const EVENT: &'static str = "end";

    pub fn ok() -> Self {
        Self {
            ok: true,
            error: None,
        }
    }

    pub fn failed(error: impl Into<String>) -> Self {
        Self {
            ok: false,
            error: Some(error.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shapes() -> Result<(), serde_json::Error> {
        assert_eq!(serde_json::to_string(&LogsEnd::ok())?, r#"{"ok":true}"#);
        assert_eq!(
            serde_json::to_string(&LogsEnd::failed("gone"))?,
            r#"{"ok":false,"error":"gone"}"#
        );
        assert_eq!(
            serde_json::from_str::<LogsEnd>(r#"{"ok":true}"#)?,
            LogsEnd::ok()
        );
        assert_eq!(
            serde_json::to_string(&Lagged { skipped: 3 })?,
            r#"{"skipped":3}"#
        );
        Ok(())
    }
}
