//! The agent protocol: what the control plane and `slipway-agent` say to each
//! other. Versioned by [`PROTOCOL_VERSION`]; both sides refuse a peer that
//! speaks another version with a clear message.
//!
//! ```text
//! agent                                   server
//!   POST /api/v1/agent/enroll  {token, public_key, facts}  ──▶  host_id   (once)
//!   GET  /api/v1/agent/connect (WebSocket upgrade)
//!                               ◀── Challenge {nonce, protocol_version}
//!   Hello {host_id, signature(challenge_message), facts} ──▶
//!                               ◀── Welcome {heartbeat_secs}  | Error + close
//!   … Request{id, …} ◀──  ──▶ Event{id, …}* then Response{id, …} | Failure{id, …}
//!   … Heartbeat both ways every heartbeat_secs; silence for DEAD_AFTER_SECS = dead
//!   … Status {containers, stats} every few seconds
//! ```
//!
//! Every frame is one JSON text message. Secret values travel only inside
//! [`ContainerSpec::env`] as [`Sensitive`], whose `Debug` is redacted.
use crate::api::{
    ConfigFile, ExtraHost, HealthCheck, PortMode, Protocol, Resources, RolloutStrategy, Tmpfs,
    Validate, VolumeMount,
};
use crate::{Capability, ImageRef, Port};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

/// 2: environment networks, stop-first rollouts, exec/TCP health checks,
/// one-off runs (release commands, jobs), the `switched` event.
pub const PROTOCOL_VERSION: u32 = 2;
/// A peer silent for this long is considered gone.
pub const DEAD_AFTER_SECS: u64 = 15;
/// How often each side sends [`ServerMessage::Heartbeat`]/[`AgentMessage::Heartbeat`].
pub const HEARTBEAT_SECS: u64 = 5;

/// The bytes an agent signs with its Ed25519 key to answer a challenge. The
/// host id binds the signature to one host; the nonce is fresh per connection
/// and used once.
pub fn challenge_message(nonce: &str, host_id: Uuid) -> Vec<u8> {
    format!("slipway-agent-challenge:v{PROTOCOL_VERSION}:{host_id}:{nonce}").into_bytes()
}

/// A value that must never be printed: `Debug` shows `***`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(transparent)]
pub struct Sensitive(pub String);

impl std::fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

// ---------------------------------------------------------------- enrollment (HTTP)

/// `POST /api/v1/agent/enroll` (public; the one-time token authenticates).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The one-time enrollment token shown when the host was created.
    pub token: Sensitive,
    /// Ed25519 public key, 32 bytes, standard base64.
    pub public_key: String,
    pub facts: HostFacts,
}

impl Validate for EnrollRequest {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct EnrollResponse {
    pub host_id: Uuid,
    pub host_name: String,
}

// ---------------------------------------------------------------- facts & status

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct HostFacts {
    pub hostname: String,
    pub os: String,
    pub arch: String,
    pub docker_version: String,
    pub cpus: u32,
    pub memory_bytes: u64,
    /// Free bytes on the filesystem of the agent's data directory, when known.
    #[serde(default)]
    pub disk_free_bytes: Option<u64>,
    pub agent_version: String,
}

/// Which service a container belongs to. Carried in container labels
/// (`slipway.project`, `slipway.environment`, `slipway.service`, …).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ServiceKey {
    pub project: String,
    pub environment: String,
    pub service: String,
    pub service_id: Uuid,
    pub environment_id: Uuid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ContainerState {
    Created,
    Running,
    Restarting,
    Exited,
    Paused,
    Dead,
    Removing,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ContainerHealth {
    Healthy,
    Unhealthy,
    Starting,
    /// No health check configured.
    None,
}

/// A Slipway-labelled container as the agent sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ContainerStatus {
    pub id: String,
    pub name: String,
    pub service_id: Uuid,
    pub deployment_id: Uuid,
    pub release_number: i64,
    pub image: String,
    pub state: ContainerState,
    pub health: ContainerHealth,
    /// True when the host's ingress proxy routes traffic to it.
    pub serving: bool,
    #[serde(with = "crate::time::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "DateTime<Utc>"))]
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ContainerStats {
    pub id: String,
    /// Percent of one core (200.0 = two cores busy).
    pub cpu_percent: f64,
    pub memory_bytes: u64,
    #[serde(default)]
    pub memory_limit_bytes: Option<u64>,
}

// ---------------------------------------------------------------- frames

// Frames are built once and sent; boxing the large variant buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// First frame of every connection.
    Challenge {
        nonce: String,
        protocol_version: u32,
    },
    /// The Hello was verified; the connection is live.
    Welcome {
        host_id: Uuid,
        heartbeat_secs: u64,
    },
    Request {
        id: u64,
        request: AgentRequest,
    },
    /// Stop the request `id` (e.g. the deployment was cancelled).
    Cancel {
        id: u64,
    },
    Heartbeat,
    /// Fatal; the server closes the connection after it.
    Error {
        code: ProtocolErrorCode,
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentMessage {
    Hello {
        host_id: Uuid,
        protocol_version: u32,
        /// Base64 Ed25519 signature of [`challenge_message`].
        signature: String,
        facts: HostFacts,
    },
    /// Progress of request `id`: deployment steps, log lines.
    Event {
        id: u64,
        event: AgentEvent,
    },
    Response {
        id: u64,
        response: AgentResponse,
    },
    Failure {
        id: u64,
        error: AgentError,
    },
    Heartbeat,
    Status {
        containers: Vec<ContainerStatus>,
        #[serde(default)]
        stats: Vec<ContainerStats>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ProtocolErrorCode {
    VersionMismatch,
    UnknownHost,
    Revoked,
    BadSignature,
    Malformed,
    /// Another connection of the same host replaced this one.
    Replaced,
}

// ---------------------------------------------------------------- requests

#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AgentRequest {
    /// Run a release on this host and switch its traffic to it.
    Rollout(RolloutPlan),
    /// Put a host back on an earlier deployment (after a later host failed).
    Revert(RevertPlan),
    /// Converge this host's containers and proxy routes to the desired state.
    Reconcile(ReconcilePlan),
    /// Run a one-off container of a release to completion (a release command
    /// or a job), streaming its output as [`AgentEvent::Log`]; answers
    /// [`AgentResponse::Completed`].
    RunOnce(RunOncePlan),
    /// Stream a container's logs as [`AgentEvent::Log`] until `follow` ends.
    ContainerLogs {
        container_id: String,
        tail: u32,
        follow: bool,
    },
}

/// How one host runs one release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RolloutPlan {
    pub deployment_id: Uuid,
    pub release_id: Uuid,
    pub release_number: i64,
    pub service: ServiceKey,
    pub container: ContainerSpec,
    /// Replicas of the service on this host (≥ 1).
    pub replicas: u32,
    /// Stopped containers of earlier deployments kept for rollback.
    pub keep_previous: u32,
    /// Give up waiting for healthy after this long.
    pub health_timeout_secs: u32,
    /// In-flight requests to the old containers get this long to finish.
    pub drain_timeout_secs: u32,
    #[serde(default)]
    pub registry_auth: Option<RegistryAuth>,
    #[serde(default)]
    pub phase: RolloutPhase,
    /// `start-first` (zero downtime) or `stop-first` (recreate: the old
    /// containers stop before the new ones start; a failed start restarts
    /// them on the same volumes).
    #[serde(default = "default_strategy")]
    pub strategy: RolloutStrategy,
}

fn default_strategy() -> RolloutStrategy {
    RolloutStrategy::StartFirst
}

/// Why a one-off container runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum RunPurpose {
    /// The service's `release_command`, before the new release takes traffic.
    ReleaseCommand,
    /// A `job` service's deployment.
    Job,
}

/// A one-off container: created from `container` (with `command` as its
/// command when set), on the environment network, run until it exits or
/// `timeout_secs` pass (then killed), then removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RunOncePlan {
    pub deployment_id: Uuid,
    pub release_number: i64,
    pub service: ServiceKey,
    pub purpose: RunPurpose,
    pub container: ContainerSpec,
    #[serde(default)]
    pub command: Option<Vec<String>>,
    pub timeout_secs: u32,
    #[serde(default)]
    pub registry_auth: Option<RegistryAuth>,
}

/// A single-host rollout runs `full`. Across several hosts the control
/// plane first `prepare`s every host at once (image, containers, health;
/// nothing routed yet), then `switch`es them one by one, so a fleet deploys
/// in about the time of one host and still switches host by host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum RolloutPhase {
    #[default]
    Full,
    Prepare,
    Switch,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RegistryAuth {
    pub username: String,
    pub password: Sensitive,
    #[serde(default)]
    pub server: Option<String>,
}

/// A container to create, fully resolved (secrets decrypted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ContainerSpec {
    pub image: ImageRef,
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Plain variables and decrypted secrets alike.
    pub env: BTreeMap<String, Sensitive>,
    #[serde(default)]
    pub ports: Vec<ContainerPort>,
    #[serde(default)]
    pub volumes: Vec<VolumeMount>,
    #[serde(default)]
    pub health_check: Option<HealthCheck>,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default)]
    pub cap_drop: Vec<Capability>,
    #[serde(default)]
    pub cap_add: Vec<Capability>,
    #[serde(default)]
    pub no_new_privileges: bool,
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub tmpfs: Vec<Tmpfs>,
    /// SIGTERM → SIGKILL delay when stopping (Docker's default 10 s when `None`).
    #[serde(default)]
    pub stop_grace_period_secs: Option<u32>,
    #[serde(default)]
    pub init: bool,
    #[serde(default)]
    pub extra_hosts: Vec<ExtraHost>,
    /// Config files mounted read-only.
    #[serde(default)]
    pub files: Vec<ConfigFile>,
    /// DNS names of the container on its environment network: the service
    /// name first, then the service's aliases. The agent creates the
    /// network (one per environment and host) and removes it when unused.
    #[serde(default)]
    pub aliases: Vec<String>,
}

impl ContainerSpec {
    /// A container of `image` with every default (tests, one-off runs).
    pub fn of_image(image: ImageRef) -> Self {
        Self {
            image,
            command: None,
            env: BTreeMap::new(),
            ports: Vec::new(),
            volumes: Vec::new(),
            health_check: None,
            resources: Resources::default(),
            user: None,
            read_only: false,
            cap_drop: Vec::new(),
            cap_add: Vec::new(),
            no_new_privileges: true,
            entrypoint: None,
            tmpfs: Vec::new(),
            stop_grace_period_secs: None,
            init: false,
            extra_hosts: Vec::new(),
            files: Vec::new(),
            aliases: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ContainerPort {
    pub container: Port,
    /// Served on the host by the ingress proxy; `None` = not published.
    #[serde(default)]
    pub published: Option<Port>,
    #[serde(default)]
    pub protocol: Protocol,
    #[serde(default)]
    pub mode: PortMode,
    /// For `mode: tcp`: the address Docker binds (default 127.0.0.1).
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub host_ip: Option<std::net::IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RevertPlan {
    pub service: ServiceKey,
    /// The deployment whose containers are removed.
    pub failed_deployment_id: Uuid,
    /// The deployment that serves again (its kept containers are restarted);
    /// `None` = the service had nothing before: just remove.
    pub restore_deployment_id: Option<Uuid>,
    pub drain_timeout_secs: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ReconcilePlan {
    pub services: Vec<DesiredService>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DesiredService {
    pub service: ServiceKey,
    /// The deployment that must serve; `None` = nothing serves.
    pub serving: Option<Uuid>,
    /// Earlier deployments whose stopped containers are kept for rollback;
    /// containers of any other deployment of this service are removed.
    pub keep: Vec<Uuid>,
    pub drain_timeout_secs: u32,
}

// ---------------------------------------------------------------- answers

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AgentEvent {
    /// One line of a deployment's step log.
    Step { message: String },
    /// One line of container output.
    Log { stream: LogStream, line: String },
    /// The rollout switched this host's traffic to the new containers (sent
    /// the moment it happens, so a control plane that dies afterwards knows).
    Switched,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AgentResponse {
    /// `prepare` finished: the new containers run healthy, not routed.
    Prepared {
        containers: Vec<String>,
    },
    RolledOut {
        /// The new containers, now serving.
        containers: Vec<String>,
        /// Deployment whose containers served before (kept stopped).
        previous_deployment_id: Option<Uuid>,
    },
    Reverted {
        containers: Vec<String>,
    },
    Reconciled {
        /// What was changed, one line each (empty = already converged).
        actions: Vec<String>,
    },
    /// A log stream ended.
    LogsEnded,
    /// A one-off container exited.
    Completed {
        exit_code: i64,
        /// Its last output lines.
        #[serde(default)]
        tail: Vec<String>,
        duration_ms: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum AgentErrorCode {
    /// Not present locally and cannot be pulled.
    ImageMissing,
    /// Did not become healthy in time.
    Unhealthy,
    /// Exited while starting.
    Crashed,
    /// A published port is taken by something else on the host.
    PortConflict,
    InvalidSpec,
    NotFound,
    Cancelled,
    /// Another request for the same service is in progress.
    Busy,
    Docker,
    Proxy,
    /// A one-off container ran longer than its timeout (it was killed).
    Timeout,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AgentError {
    pub code: AgentErrorCode,
    pub message: String,
    /// Last lines the failed container printed, when there was one.
    #[serde(default)]
    pub logs: Vec<String>,
}

impl AgentError {
    pub fn new(code: AgentErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            logs: Vec::new(),
        }
    }
}

impl std::fmt::Display for AgentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

impl std::error::Error for AgentError {}

/// Labels on every container the agent creates, so it finds its own
/// containers again after a restart.
pub mod labels {
    pub const MANAGED: &str = "slipway.managed";
    pub const HOST: &str = "slipway.host";
    pub const PROJECT: &str = "slipway.project";
    pub const ENVIRONMENT: &str = "slipway.environment";
    pub const SERVICE: &str = "slipway.service";
    pub const SERVICE_ID: &str = "slipway.service_id";
    pub const ENVIRONMENT_ID: &str = "slipway.environment_id";
    pub const RELEASE: &str = "slipway.release";
    pub const DEPLOYMENT: &str = "slipway.deployment";
    pub const REPLICA: &str = "slipway.replica";
    /// On one-off containers: `release_command` or `job`.
    pub const RUN: &str = "slipway.run";
    /// On environment networks.
    pub const NETWORK: &str = "slipway.network";
}
