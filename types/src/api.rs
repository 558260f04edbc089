//! Request and response bodies of `/api/v1`.
use crate::agent::{ContainerStats, ContainerStatus, HostFacts, LogStream};
use crate::{error::FieldError, Capability, EnvVarName, ImageRef, Port, ResourceName, Role};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

/// Largest accepted value of a plain variable, secret or service env var (bytes).
pub const MAX_VALUE_BYTES: usize = 32 * 1024;
/// Largest accepted free-text description.
pub const MAX_DESCRIPTION_BYTES: usize = 2 * 1024;

// ---------------------------------------------------------------- pagination

/// One page of a list. `total` counts all items matching the filters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
    pub limit: u64,
    pub offset: u64,
}

pub const DEFAULT_PAGE_LIMIT: u64 = 50;
pub const MAX_PAGE_LIMIT: u64 = 500;

// ---------------------------------------------------------------- setup / auth

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetupStatus {
    /// True until the first admin account exists.
    pub needs_setup: bool,
}

/// Creates the first admin. Only accepted while no user exists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetupRequest {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

pub const MIN_PASSWORD_LEN: usize = 12;
pub const MAX_PASSWORD_LEN: usize = 1024;

pub fn validate_username(s: &str) -> Result<(), FieldError> {
    let ok = (3..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c));
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            "username",
            "3–64 characters: letters, digits and . _ - @",
        ))
    }
}

pub fn validate_password(s: &str) -> Result<(), FieldError> {
    if s.chars().count() < MIN_PASSWORD_LEN {
        return Err(FieldError::new(
            "password",
            format!("must be at least {MIN_PASSWORD_LEN} characters"),
        ));
    }
    if s.len() > MAX_PASSWORD_LEN {
        return Err(FieldError::new("password", "is too long"));
    }
    Ok(())
}

/// Who is calling. `csrf_token` must be sent back as `X-CSRF-Token` on every
/// mutating request authenticated by the session cookie.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Me {
    pub user_id: Uuid,
    pub username: String,
    pub role: Role,
    pub csrf_token: Option<String>,
}

// ---------------------------------------------------------------- tokens

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateToken {
    pub name: String,
    pub role: Role,
    /// Restrict the token's role to these environments (read-only elsewhere).
    #[serde(default)]
    pub environments: Vec<Uuid>,
    /// Lifetime in days; none = never expires.
    #[serde(default)]
    pub expires_in_days: Option<u32>,
    /// Limit the token's changes to these kinds; empty = whatever its role allows.
    #[serde(default)]
    pub actions: Vec<TokenAction>,
}

/// Kinds of change a token may be limited to. Reads are always allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenAction {
    /// Create deployments (deploy, promote, roll back, redeliver a webhook)
    /// and cancel them.
    Deploy,
    /// Approve or reject deployments awaiting approval.
    Approve,
    /// Every other change (projects, services, variables, hosts, users…).
    Configure,
}

impl TokenAction {
    pub const ALL: [TokenAction; 3] = [
        TokenAction::Deploy,
        TokenAction::Approve,
        TokenAction::Configure,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TokenAction::Deploy => "deploy",
            TokenAction::Approve => "approve",
            TokenAction::Configure => "configure",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiToken {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    pub environments: Vec<Uuid>,
    pub created_by: String,
    #[serde(with = "crate::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(default, with = "crate::time::rfc3339_opt")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default, with = "crate::time::rfc3339_opt")]
    pub last_used_at: Option<DateTime<Utc>>,
    #[serde(default, with = "crate::time::rfc3339_opt")]
    pub revoked_at: Option<DateTime<Utc>>,
    /// Empty: not limited beyond its role.
    #[serde(default)]
    pub actions: Vec<TokenAction>,
}

/// Returned once, at creation. The secret is never shown again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedToken {
    pub token: ApiToken,
    pub secret: String,
}

// ---------------------------------------------------------------- projects

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Project {
    pub id: Uuid,
    pub name: ResourceName,
    pub description: String,
    #[serde(with = "crate::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewProject {
    pub name: ResourceName,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateProject {
    pub name: Option<ResourceName>,
    pub description: Option<String>,
}

pub fn validate_description(s: &str) -> Result<(), FieldError> {
    if s.len() > MAX_DESCRIPTION_BYTES {
        Err(FieldError::new(
            "description",
            format!("must be at most {MAX_DESCRIPTION_BYTES} bytes"),
        ))
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------- environments

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    pub id: Uuid,
    pub project_id: Uuid,
    pub name: ResourceName,
    /// Protected environments (production) need stronger roles and, later, approvals.
    pub protected: bool,
    #[serde(with = "crate::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEnvironment {
    pub name: ResourceName,
    #[serde(default)]
    pub protected: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateEnvironment {
    pub name: Option<ResourceName>,
    pub protected: Option<bool>,
}

// ---------------------------------------------------------------- services

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortMapping {
    /// Port the process listens on inside the container.
    pub container: Port,
    /// Port published on the host (served by the ingress proxy).
    #[serde(default)]
    pub published: Option<Port>,
    #[serde(default)]
    pub protocol: Protocol,
}

/// Inject the environment secret `secret` as the container env var `env`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    pub env: EnvVarName,
    pub secret: EnvVarName,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeMount {
    /// A named volume (DNS label) or an absolute host path.
    pub source: String,
    /// Absolute path inside the container.
    pub target: String,
    #[serde(default)]
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// HTTP path probed with GET, e.g. `/health`.
    pub path: String,
    pub port: Port,
    #[serde(default = "HealthCheck::default_interval")]
    pub interval_secs: u32,
    #[serde(default = "HealthCheck::default_timeout")]
    pub timeout_secs: u32,
    #[serde(default = "HealthCheck::default_retries")]
    pub retries: u32,
}

impl HealthCheck {
    fn default_interval() -> u32 {
        10
    }
    fn default_timeout() -> u32 {
        3
    }
    fn default_retries() -> u32 {
        3
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPU cores, e.g. 0.5.
    #[serde(default)]
    pub cpus: Option<f64>,
    #[serde(default)]
    pub memory_mb: Option<u32>,
}

/// Container hardening, as the seeds recommend (non-root user, read-only root
/// filesystem, dropped capabilities, no-new-privileges).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hardening {
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default)]
    pub cap_drop: Vec<Capability>,
    #[serde(default)]
    pub cap_add: Vec<Capability>,
    #[serde(default = "default_true")]
    pub no_new_privileges: bool,
}

impl Default for Hardening {
    fn default() -> Self {
        Self {
            user: None,
            read_only: false,
            cap_drop: Vec::new(),
            cap_add: Vec::new(),
            no_new_privileges: true,
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_replicas() -> u32 {
    1
}

/// Everything needed to run a service; also the config snapshot of a release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub image: ImageRef,
    #[serde(default)]
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub ports: Vec<PortMapping>,
    #[serde(default)]
    pub env: BTreeMap<EnvVarName, String>,
    #[serde(default)]
    pub secrets: Vec<SecretRef>,
    #[serde(default)]
    pub volumes: Vec<VolumeMount>,
    #[serde(default)]
    pub health_check: Option<HealthCheck>,
    #[serde(default = "default_replicas")]
    pub replicas: u32,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default)]
    pub hardening: Hardening,
}

impl ServiceSpec {
    /// Checks that span several fields or bound sizes; single values are
    /// already checked by their types.
    pub fn validate(&self) -> Result<(), FieldError> {
        if let Some(cmd) = &self.command {
            if cmd.is_empty() || cmd.len() > 64 || cmd.iter().any(|a| a.len() > 4096) {
                return Err(FieldError::new(
                    "command",
                    "must have 1–64 arguments of at most 4096 bytes",
                ));
            }
        }
        if self.ports.len() > 32 {
            return Err(FieldError::new("ports", "at most 32 port mappings"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, p) in self.ports.iter().enumerate() {
            if let Some(h) = p.published {
                if !seen.insert((h, p.protocol as u8)) {
                    return Err(FieldError::new(
                        format!("ports[{i}].published"),
                        format!("port {h} is published twice"),
                    ));
                }
            }
        }
        if self.env.len() > 256 {
            return Err(FieldError::new("env", "at most 256 variables"));
        }
        for (k, v) in &self.env {
            if v.len() > MAX_VALUE_BYTES {
                return Err(FieldError::new(
                    format!("env.{k}"),
                    format!("value must be at most {MAX_VALUE_BYTES} bytes"),
                ));
            }
        }
        for (i, s) in self.secrets.iter().enumerate() {
            if self.env.contains_key(&s.env) {
                return Err(FieldError::new(
                    format!("secrets[{i}].env"),
                    format!("{} is also set as a plain env var", s.env),
                ));
            }
        }
        for (i, v) in self.volumes.iter().enumerate() {
            let named = crate::names::check_dns_label(&v.source).is_ok();
            if !named && !is_abs_path(&v.source) {
                return Err(FieldError::new(
                    format!("volumes[{i}].source"),
                    "must be a volume name (DNS label) or an absolute host path",
                ));
            }
            if !is_abs_path(&v.target) {
                return Err(FieldError::new(
                    format!("volumes[{i}].target"),
                    "must be an absolute path",
                ));
            }
        }
        if let Some(h) = &self.health_check {
            if !h.path.starts_with('/')
                || h.path.len() > 512
                || h.path.contains(char::is_whitespace)
            {
                return Err(FieldError::new(
                    "health_check.path",
                    "must start with '/' and contain no spaces",
                ));
            }
            if !(1..=3600).contains(&h.interval_secs) {
                return Err(FieldError::new(
                    "health_check.interval_secs",
                    "must be 1–3600",
                ));
            }
            if !(1..=300).contains(&h.timeout_secs) {
                return Err(FieldError::new(
                    "health_check.timeout_secs",
                    "must be 1–300",
                ));
            }
            if h.timeout_secs > h.interval_secs {
                return Err(FieldError::new(
                    "health_check.timeout_secs",
                    "must not exceed interval_secs",
                ));
            }
            if !(1..=50).contains(&h.retries) {
                return Err(FieldError::new("health_check.retries", "must be 1–50"));
            }
        }
        if !(1..=100).contains(&self.replicas) {
            return Err(FieldError::new("replicas", "must be 1–100"));
        }
        if let Some(c) = self.resources.cpus {
            if !(c.is_finite() && (0.01..=256.0).contains(&c)) {
                return Err(FieldError::new("resources.cpus", "must be 0.01–256"));
            }
        }
        if let Some(m) = self.resources.memory_mb {
            if !(6..=1_048_576).contains(&m) {
                return Err(FieldError::new("resources.memory_mb", "must be 6–1048576"));
            }
        }
        if let Some(u) = &self.hardening.user {
            let ok = !u.is_empty()
                && u.len() <= 64
                && u.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-:".contains(c));
            if !ok {
                return Err(FieldError::new(
                    "hardening.user",
                    "must be a user name or uid[:gid]",
                ));
            }
        }
        Ok(())
    }
}

fn is_abs_path(s: &str) -> bool {
    s.starts_with('/') && s.len() <= 1024 && !s.split('/').any(|c| c == "..") && !s.contains('\0')
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Service {
    pub id: Uuid,
    pub environment_id: Uuid,
    pub project_id: Uuid,
    pub name: ResourceName,
    pub spec: ServiceSpec,
    #[serde(with = "crate::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewService {
    pub name: ResourceName,
    pub spec: ServiceSpec,
}

/// Replace a service's name and/or spec (the spec is replaced whole).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateService {
    #[serde(default)]
    pub name: Option<ResourceName>,
    #[serde(default)]
    pub spec: Option<ServiceSpec>,
}

// ---------------------------------------------------------------- variables & secrets

/// A variable or secret as the API shows it: never a secret's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variable {
    pub name: EnvVarName,
    pub secret: bool,
    /// The value of a plain variable; always `None` for secrets.
    pub value: Option<String>,
    pub version: i32,
    #[serde(with = "crate::time::rfc3339")]
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutVariable {
    pub value: String,
    #[serde(default)]
    pub secret: bool,
}

// ---------------------------------------------------------------- hosts

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostStatus {
    /// Created; no agent has connected yet.
    Pending,
    Online,
    Offline,
    Revoked,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Host {
    pub id: Uuid,
    pub name: ResourceName,
    pub status: HostStatus,
    pub environments: Vec<Uuid>,
    pub labels: BTreeMap<String, String>,
    #[serde(default, with = "crate::time::rfc3339_opt")]
    pub last_seen_at: Option<DateTime<Utc>>,
    #[serde(with = "crate::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    /// What the agent reported when it last connected.
    #[serde(default)]
    pub facts: Option<HostFacts>,
    /// Live, from the connected agent (empty when offline and in lists).
    #[serde(default)]
    pub containers: Vec<ContainerStatus>,
    #[serde(default)]
    pub stats: Vec<ContainerStats>,
}

/// A one-time enrollment token for a host (shown once; expires).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostEnrollment {
    pub host_id: Uuid,
    pub token: String,
    #[serde(with = "crate::time::rfc3339")]
    pub expires_at: DateTime<Utc>,
    /// Copy-paste command that enrolls and starts the agent on the host.
    pub command: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewHost {
    pub name: ResourceName,
    #[serde(default)]
    pub environments: Vec<Uuid>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateHost {
    pub name: Option<ResourceName>,
    pub environments: Option<Vec<Uuid>>,
    pub labels: Option<BTreeMap<String, String>>,
}

pub fn validate_labels(labels: &BTreeMap<String, String>) -> Result<(), FieldError> {
    if labels.len() > 64 {
        return Err(FieldError::new("labels", "at most 64 labels"));
    }
    for (k, v) in labels {
        let ok = !k.is_empty()
            && k.len() <= 63
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c));
        if !ok {
            return Err(FieldError::new(
                format!("labels.{k}"),
                "label keys are 1–63 characters: letters, digits and . _ - /",
            ));
        }
        if v.len() > 255 {
            return Err(FieldError::new(
                format!("labels.{k}"),
                "value too long (max 255)",
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- releases & deployments

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Manual,
    Api,
    Webhook,
    Rollback,
    Promotion,
}

impl Trigger {
    /// The wire name (`manual`, `api`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Api => "api",
            Trigger::Webhook => "webhook",
            Trigger::Rollback => "rollback",
            Trigger::Promotion => "promotion",
        }
    }
}

/// Immutable: what was (or will be) deployed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    pub id: Uuid,
    pub service_id: Uuid,
    pub environment_id: Uuid,
    pub project_id: Uuid,
    /// 1, 2, 3… per service.
    pub number: i64,
    pub image: ImageRef,
    /// The service spec as it was when the release was cut (env var values
    /// included, secret values never).
    pub config: ServiceSpec,
    pub git_sha: Option<String>,
    pub git_ref: Option<String>,
    pub trigger: Trigger,
    pub author: String,
    #[serde(with = "crate::time::rfc3339")]
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentState {
    Queued,
    Running,
    Succeeded,
    Failed,
    RolledBack,
    Cancelled,
    /// Waiting for the environment's required approvals before it is queued.
    AwaitingApproval,
    /// An approver rejected it (the reason is in `Deployment::reason`).
    Rejected,
}

impl DeploymentState {
    pub const ALL: [DeploymentState; 8] = [
        DeploymentState::Queued,
        DeploymentState::Running,
        DeploymentState::Succeeded,
        DeploymentState::Failed,
        DeploymentState::RolledBack,
        DeploymentState::Cancelled,
        DeploymentState::AwaitingApproval,
        DeploymentState::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentState::Queued => "queued",
            DeploymentState::Running => "running",
            DeploymentState::Succeeded => "succeeded",
            DeploymentState::Failed => "failed",
            DeploymentState::RolledBack => "rolled_back",
            DeploymentState::Cancelled => "cancelled",
            DeploymentState::AwaitingApproval => "awaiting_approval",
            DeploymentState::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            DeploymentState::Queued | DeploymentState::Running | DeploymentState::AwaitingApproval
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentStep {
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    pub id: Uuid,
    pub release_id: Uuid,
    pub release_number: i64,
    pub image: ImageRef,
    pub service_id: Uuid,
    pub environment_id: Uuid,
    pub project_id: Uuid,
    pub state: DeploymentState,
    pub reason: Option<String>,
    pub requested_by: String,
    #[serde(with = "crate::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(default, with = "crate::time::rfc3339_opt")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, with = "crate::time::rfc3339_opt")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Present on single-deployment reads, empty in lists.
    #[serde(default)]
    pub steps: Vec<DeploymentStep>,
}

/// Cut a release of a service and queue its deployment. Without `image` the
/// service's current image is used; `release_id` redeploys an earlier release.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateDeployment {
    #[serde(default)]
    pub image: Option<ImageRef>,
    #[serde(default)]
    pub release_id: Option<Uuid>,
    #[serde(default)]
    pub git_sha: Option<String>,
    #[serde(default)]
    pub git_ref: Option<String>,
    /// Admins only: deploy despite a freeze or outside the maintenance
    /// windows; the reason is audited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_reason: Option<String>,
}

impl CreateDeployment {
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.image.is_some() && self.release_id.is_some() {
            return Err(FieldError::new(
                "release_id",
                "give either image or release_id, not both",
            ));
        }
        if let Some(sha) = &self.git_sha {
            let ok = (7..=64).contains(&sha.len()) && sha.chars().all(|c| c.is_ascii_hexdigit());
            if !ok {
                return Err(FieldError::new("git_sha", "must be 7–64 hex digits"));
            }
        }
        if let Some(r) = &self.git_ref {
            if r.is_empty()
                || r.len() > 255
                || r.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(FieldError::new(
                    "git_ref",
                    "must be 1–255 characters without spaces",
                ));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- audit

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: i64,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target_type: String,
    pub target_id: Option<String>,
    /// What changed, with secret values redacted.
    pub summary: serde_json::Value,
    pub source_ip: Option<String>,
    pub request_id: Option<String>,
    pub hash: String,
}

// ---------------------------------------------------------------- overview

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Overview {
    pub projects: Vec<ProjectOverview>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectOverview {
    pub project: Project,
    pub environments: Vec<EnvironmentOverview>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentOverview {
    pub environment: Environment,
    pub services: Vec<ServiceOverview>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceOverview {
    pub id: Uuid,
    pub name: ResourceName,
    pub image: ImageRef,
    /// The release of the newest succeeded deployment.
    pub current_release: Option<i64>,
    pub last_deployment: Option<DeploymentSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentSummary {
    pub id: Uuid,
    pub state: DeploymentState,
    pub release_number: i64,
    #[serde(with = "crate::time::rfc3339")]
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ServiceSpec {
        serde_json::from_value(serde_json::json!({"image": "app:1"})).expect("minimal spec")
    }

    #[test]
    fn minimal_spec_gets_safe_defaults() {
        let s = spec();
        assert_eq!(s.replicas, 1);
        assert!(s.hardening.no_new_privileges);
        assert!(s.validate().is_ok());
    }

    #[test]
    fn spec_rejects_duplicate_published_ports() {
        let mut s = spec();
        let p = PortMapping {
            container: Port::try_from(80).expect("port"),
            published: Some(Port::try_from(8080).expect("port")),
            protocol: Protocol::Tcp,
        };
        s.ports = vec![p.clone(), p];
        assert_eq!(
            s.validate().map_err(|e| e.field),
            Err("ports[1].published".into())
        );
    }

    #[test]
    fn spec_rejects_bad_health_check_and_volumes() {
        let mut s = spec();
        s.health_check = Some(HealthCheck {
            path: "health".into(),
            port: Port::try_from(80).expect("port"),
            interval_secs: 10,
            timeout_secs: 3,
            retries: 3,
        });
        assert_eq!(
            s.validate().map_err(|e| e.field),
            Err("health_check.path".into())
        );
        let mut s = spec();
        s.volumes = vec![VolumeMount {
            source: "../etc".into(),
            target: "/data".into(),
            read_only: false,
        }];
        assert_eq!(
            s.validate().map_err(|e| e.field),
            Err("volumes[0].source".into())
        );
    }

    #[test]
    fn unknown_spec_fields_are_rejected() {
        let r: Result<ServiceSpec, _> =
            serde_json::from_value(serde_json::json!({"image": "app:1", "privileged": true}));
        assert!(r.is_err());
    }

    #[test]
    fn deployment_states_round_trip() {
        for s in DeploymentState::ALL {
            assert_eq!(DeploymentState::parse(s.as_str()), Some(s));
        }
    }
}

// ---------------------------------------------------------------- identity (OIDC, users, RBAC)

/// What the login page offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoginOptions {
    /// Whether local (user name + password) login is enabled.
    pub local: bool,
    pub providers: Vec<AuthProvider>,
}

/// An OpenID Connect provider; log in by navigating to `login_url`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthProvider {
    pub id: String,
    pub name: String,
    pub login_url: String,
}

/// A role held everywhere (`environment_id` none) or in one environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoleGrant {
    pub id: Uuid,
    pub role: Role,
    pub environment_id: Option<Uuid>,
    /// `oidc` (from role mappings, recomputed at each login) or `manual`.
    pub source: String,
    pub created_by: String,
    #[serde(with = "crate::time::rfc3339")]
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRoleGrant {
    pub role: Role,
    #[serde(default)]
    pub environment_id: Option<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub display_name: Option<String>,
    pub email: Option<String>,
    /// `local` or the OIDC issuer URL.
    pub source: String,
    /// Role everywhere (environment-scoped grants are in `grants`).
    pub role: Role,
    pub grants: Vec<RoleGrant>,
    pub disabled: bool,
    pub active_sessions: u64,
    #[serde(default, with = "crate::time::rfc3339_opt")]
    pub last_login_at: Option<DateTime<Utc>>,
    #[serde(with = "crate::time::rfc3339")]
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    pub disabled: Option<bool>,
    /// Role everywhere for local users.
    pub role: Option<Role>,
}

/// Grants `role` (everywhere, or in `environment_id`) to users whose id-token
/// claim `claim` equals `value` or, for list claims such as `groups`, contains it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoleMapping {
    pub id: Uuid,
    pub claim: String,
    pub value: String,
    pub role: Role,
    pub environment_id: Option<Uuid>,
    pub created_by: String,
    #[serde(with = "crate::time::rfc3339")]
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRoleMapping {
    pub claim: String,
    pub value: String,
    pub role: Role,
    #[serde(default)]
    pub environment_id: Option<Uuid>,
}

impl NewRoleMapping {
    pub fn validate(&self) -> Result<(), FieldError> {
        let ok = |s: &str| !s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control);
        if !ok(&self.claim) {
            return Err(FieldError::new(
                "claim",
                "must be 1–256 printable characters",
            ));
        }
        if !ok(&self.value) {
            return Err(FieldError::new(
                "value",
                "must be 1–256 printable characters",
            ));
        }
        Ok(())
    }
}

/// "Test these claims": which grants would a user with these claims get?
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimsPreviewRequest {
    pub claims: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimsPreview {
    /// Role everywhere, if any rule grants one.
    pub role: Option<Role>,
    /// (environment, role) pairs from environment-scoped rules.
    pub environments: Vec<EnvironmentRole>,
    /// Ids of the rules that matched.
    pub matched: Vec<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentRole {
    pub environment_id: Uuid,
    pub role: Role,
}

// ---------------------------------------------------------------- CI webhooks, triggers, promotion, approvals, freezes

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookProvider {
    Github,
    Gitlab,
    Generic,
}

impl WebhookProvider {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookProvider::Github => "github",
            WebhookProvider::Gitlab => "gitlab",
            WebhookProvider::Generic => "generic",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Github, Self::Gitlab, Self::Generic]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// A project's webhook endpoint. The secret is never returned after creation
/// or rotation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Webhook {
    pub id: Uuid,
    pub project_id: Uuid,
    pub provider: WebhookProvider,
    /// Path to configure in the CI system, e.g. `/api/v1/hooks/github/{project}`.
    pub path: String,
    pub secret_version: i32,
    pub created_by: String,
    #[serde(with = "crate::time::rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(default, with = "crate::time::rfc3339_opt")]
    pub rotated_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    pub provider: WebhookProvider,
}

/// Answer of webhook creation and rotation: the only time the secret is shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedWebhook {
    pub webhook: Webhook,
    pub secret: String,
}

/// One received webhook call and what it did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookDelivery {
    pub id: Uuid,
    pub project_id: Uuid,
    pub webhook_id: Option<Uuid>,
    pub provider: WebhookProvider,
    pub event: String,
    /// The sender's delivery id (the idempotency key).
    pub delivery_id: Option<String>,
    #[serde(with = "crate::time::rfc3339")]
    pub received_at: DateTime<Utc>,
    pub verified: bool,
    /// `processed`, `ignored` or `rejected`.
    pub status: String,
    /// What it triggered, or why not.
    pub outcome: String,
    pub release_ids: Vec<Uuid>,
    pub deployment_ids: Vec<Uuid>,
    pub redelivery_of: Option<Uuid>,
}

/// Answer of the `/hooks/...` endpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HookResponse {
    /// `processed`, `ignored` or `duplicate`.
    pub status: String,
    pub delivery: Uuid,
    pub reason: String,
    pub release_ids: Vec<Uuid>,
    pub deployment_ids: Vec<Uuid>,
}

/// Body of the generic webhook (`X-Slipway-Signature: t=<unix>,v1=<hex>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenericHookPayload {
    /// Event id: the idempotency key.
    pub id: String,
    /// Service name (or id) within the project.
    pub service: String,
    pub image: ImageRef,
    #[serde(default)]
    pub git_sha: Option<String>,
    #[serde(default, rename = "ref")]
    pub git_ref: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerEvent {
    /// A branch push (pattern on the branch).
    Push,
    /// A tag push (pattern on the tag).
    Tag,
    /// A published GitHub release (pattern on its tag).
    Release,
    /// A published container package (pattern on its tag).
    Package,
    /// A successful GitHub workflow run / GitLab pipeline (pattern on the branch or tag).
    WorkflowRun,
    /// The generic webhook (pattern on `ref`; `*` also matches no ref).
    Generic,
}

impl TriggerEvent {
    pub const ALL: [TriggerEvent; 6] = [
        TriggerEvent::Push,
        TriggerEvent::Tag,
        TriggerEvent::Release,
        TriggerEvent::Package,
        TriggerEvent::WorkflowRun,
        TriggerEvent::Generic,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TriggerEvent::Push => "push",
            TriggerEvent::Tag => "tag",
            TriggerEvent::Release => "release",
            TriggerEvent::Package => "package",
            TriggerEvent::WorkflowRun => "workflow_run",
            TriggerEvent::Generic => "generic",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// Placeholders an `image_template` may use.
pub const IMAGE_TEMPLATE_PLACEHOLDERS: [&str; 5] =
    ["{sha}", "{short_sha}", "{tag}", "{branch}", "{ref}"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerRule {
    pub id: Uuid,
    pub service_id: Uuid,
    pub event: TriggerEvent,
    pub pattern: String,
    pub image_template: Option<String>,
    pub auto_deploy: bool,
    pub created_by: String,
    #[serde(with = "crate::time::rfc3339")]
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTriggerRule {
    pub event: TriggerEvent,
    /// Glob on the branch or tag: `*` within one path segment, `**` across `/`.
    pub pattern: String,
    #[serde(default)]
    pub image_template: Option<String>,
    #[serde(default)]
    pub auto_deploy: bool,
}

impl NewTriggerRule {
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.pattern.is_empty()
            || self.pattern.len() > 255
            || self
                .pattern
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(FieldError::new(
                "pattern",
                "must be 1–255 characters without spaces",
            ));
        }
        if let Some(t) = &self.image_template {
            if t.is_empty() || t.len() > 512 {
                return Err(FieldError::new(
                    "image_template",
                    "must be 1–512 characters",
                ));
            }
            let mut rest = t.as_str();
            while let Some(i) = rest.find('{') {
                let tail = &rest[i..];
                let Some(p) = IMAGE_TEMPLATE_PLACEHOLDERS
                    .iter()
                    .find(|p| tail.starts_with(**p))
                else {
                    return Err(FieldError::new(
                        "image_template",
                        "unknown placeholder: use {sha}, {short_sha}, {tag}, {branch} or {ref}",
                    ));
                };
                rest = &tail[p.len()..];
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromoteRequest {
    pub environment_id: Uuid,
    /// Admins only, as for `CreateDeployment`.
    #[serde(default)]
    pub override_reason: Option<String>,
}

/// What promoting a release to an environment would change there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromotePreview {
    pub source_release_id: Uuid,
    pub target_service_id: Uuid,
    pub target_environment_id: Uuid,
    pub image_before: ImageRef,
    pub image_after: ImageRef,
    pub env_added: Vec<String>,
    pub env_removed: Vec<String>,
    pub env_changed: Vec<String>,
    /// Other spec fields that differ (`command`, `ports`, `secrets`, ...).
    pub other_changes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    /// Monday = 0.
    pub fn index(self) -> u32 {
        self as u32
    }
}

/// `HH:MM` (UTC), as minutes after midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TimeOfDay(u32);

impl TimeOfDay {
    pub fn minutes(self) -> u32 {
        self.0
    }
}

impl TryFrom<String> for TimeOfDay {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a time HH:MM (00:00–24:00)");
        let (h, m) = s.split_once(':').ok_or_else(bad)?;
        if h.len() != 2 || m.len() != 2 {
            return Err(bad());
        }
        let h: u32 = h.parse().map_err(|_| bad())?;
        let m: u32 = m.parse().map_err(|_| bad())?;
        if m >= 60 || h > 24 || (h == 24 && m != 0) {
            return Err(bad());
        }
        Ok(TimeOfDay(h * 60 + m))
    }
}

impl From<TimeOfDay> for String {
    fn from(t: TimeOfDay) -> String {
        format!("{:02}:{:02}", t.0 / 60, t.0 % 60)
    }
}

/// Deployments are allowed only inside one of the windows (when any exist).
/// A window whose end is not after its start runs past midnight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceWindow {
    pub days: Vec<Weekday>,
    pub start: TimeOfDay,
    pub end: TimeOfDay,
}

/// No deployments from `from` (inclusive) to `to` (exclusive).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployFreeze {
    #[serde(with = "crate::time::rfc3339")]
    pub from: DateTime<Utc>,
    #[serde(with = "crate::time::rfc3339")]
    pub to: DateTime<Utc>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentPolicy {
    pub environment_id: Uuid,
    pub required_approvals: u8,
    pub approval_ttl_hours: u32,
    pub windows: Vec<MaintenanceWindow>,
    pub freezes: Vec<DeployFreeze>,
    pub updated_by: Option<String>,
    #[serde(default, with = "crate::time::rfc3339_opt")]
    pub updated_at: Option<DateTime<Utc>>,
}

pub const MAX_REQUIRED_APPROVALS: u8 = 5;
pub const DEFAULT_APPROVAL_TTL_HOURS: u32 = 24;
pub const MAX_APPROVAL_TTL_HOURS: u32 = 24 * 30;

/// PATCH: absent fields keep their value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdatePolicy {
    #[serde(default)]
    pub required_approvals: Option<u8>,
    #[serde(default)]
    pub approval_ttl_hours: Option<u32>,
    #[serde(default)]
    pub windows: Option<Vec<MaintenanceWindow>>,
    #[serde(default)]
    pub freezes: Option<Vec<DeployFreeze>>,
}

impl UpdatePolicy {
    pub fn validate(&self) -> Result<(), FieldError> {
        if self
            .required_approvals
            .is_some_and(|n| n > MAX_REQUIRED_APPROVALS)
        {
            return Err(FieldError::new(
                "required_approvals",
                format!("must be between 0 and {MAX_REQUIRED_APPROVALS}"),
            ));
        }
        if self
            .approval_ttl_hours
            .is_some_and(|h| h == 0 || h > MAX_APPROVAL_TTL_HOURS)
        {
            return Err(FieldError::new(
                "approval_ttl_hours",
                format!("must be between 1 and {MAX_APPROVAL_TTL_HOURS}"),
            ));
        }
        for (i, w) in self.windows.iter().flatten().enumerate() {
            if w.days.is_empty() {
                return Err(FieldError::new(
                    format!("windows[{i}].days"),
                    "name at least one day",
                ));
            }
            if w.start == w.end {
                return Err(FieldError::new(
                    format!("windows[{i}].end"),
                    "must differ from start",
                ));
            }
        }
        for (i, f) in self.freezes.iter().flatten().enumerate() {
            if f.to <= f.from {
                return Err(FieldError::new(
                    format!("freezes[{i}].to"),
                    "must be after from",
                ));
            }
            if f.reason.trim().is_empty() || f.reason.len() > 500 {
                return Err(FieldError::new(
                    format!("freezes[{i}].reason"),
                    "must be 1–500 characters",
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproveRequest {
    /// Admins only: queue it despite a freeze or outside the windows.
    #[serde(default)]
    pub override_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectRequest {
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    pub approver: String,
    #[serde(with = "crate::time::rfc3339")]
    pub at: DateTime<Utc>,
    #[serde(with = "crate::time::rfc3339")]
    pub expires_at: DateTime<Utc>,
    /// False once `expires_at` has passed: it no longer counts.
    pub valid: bool,
}

/// A deployment awaiting approval, with the approvals it has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRequest {
    pub deployment: Deployment,
    pub required_approvals: u8,
    pub approvals: Vec<Approval>,
}

// ---------------------------------------------------------------- live events (SSE)

/// `GET /api/v1/deployments/{id}/events`: one `data:` JSON per event. The
/// stream starts with the steps so far and the current state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
pub struct LogLine {
    pub stream: LogStream,
    pub line: String,
}

// ---------------------------------------------------------------- compose import

/// `POST /api/v1/environments/{id}/compose`: turn a docker-compose file into
/// the environment's services. All or nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComposeImport {
    /// The compose file, YAML.
    pub compose: String,
    /// Only report what would be created.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComposeImportResult {
    /// The services as imported (or as they would be, on a dry run).
    pub services: Vec<NewService>,
    /// Keys Slipway accepted but ignores, e.g. `container_name` (informational).
    #[serde(default)]
    pub ignored: Vec<String>,
    pub dry_run: bool,
}
