//! Live events (server-sent): deployment steps and states, host status,
//! container log lines.
use super::{DeploymentState, DeploymentStep, HostStatus};
use crate::agent::LogStream;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `GET /api/v1/deployments/{id}/events`: one `data:` JSON per event. The
/// stream starts with the steps so far and the current state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DeploymentEvent {
    Step(DeploymentStep),
    State {
        state: DeploymentState,
        reason: Option<String>,
    },
}

/// `GET /api/v1/events`: changes the dashboard shows without reload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveEvent {
    Deployment {
        id: Uuid,
        service_id: Uuid,
        environment_id: Uuid,
        state: DeploymentState,
        release_number: i64,
    },
    Host {
        id: Uuid,
        status: HostStatus,
    },
}

/// `GET /api/v1/hosts/{id}/containers/{container}/logs`: one per line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LogLine {
    pub stream: LogStream,
    pub line: String,
}
