//! Releases, deployments and their steps; promotion of a release.
use super::{ServiceSpec, Validate};
use crate::error::FieldError;
use crate::ImageRef;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
    #[cfg_attr(feature = "schema", schemars(with = "DateTime<Utc>"))]
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DeploymentStep {
    #[serde(with = "crate::time::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "DateTime<Utc>"))]
    pub at: DateTime<Utc>,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
    #[cfg_attr(feature = "schema", schemars(with = "DateTime<Utc>"))]
    pub created_at: DateTime<Utc>,
    #[serde(default, with = "crate::time::rfc3339_opt")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<DateTime<Utc>>"))]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, with = "crate::time::rfc3339_opt")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<DateTime<Utc>>"))]
    pub finished_at: Option<DateTime<Utc>>,
    /// Present on single-deployment reads, empty in lists.
    #[serde(default)]
    pub steps: Vec<DeploymentStep>,
    /// The **Deploy environment** batch it belongs to, if any.
    #[serde(default)]
    pub batch_id: Option<Uuid>,
    /// Deployments of the same batch (its dependencies) that must succeed
    /// before this one starts; when one of them does not, this one fails
    /// without starting.
    #[serde(default)]
    pub waits_for: Vec<Uuid>,
}

/// Cut a release of a service and queue its deployment. Without `image` the
/// service's current image is used; `release_id` redeploys an earlier release.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateDeployment {
    #[serde(default)]
    pub image: Option<ImageRef>,
    #[serde(default)]
    pub release_id: Option<Uuid>,
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(regex(pattern = r"^[0-9A-Fa-f]{7,64}$")))]
    pub git_sha: Option<String>,
    #[serde(default)]
    pub git_ref: Option<String>,
    /// Admins only: deploy despite a freeze or outside the maintenance
    /// windows; the reason is audited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_reason: Option<String>,
}

impl Validate for CreateDeployment {
    fn validate(&self) -> Result<(), FieldError> {
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PromoteRequest {
    pub environment_id: Uuid,
    /// Admins only, as for `CreateDeployment`.
    #[serde(default)]
    pub override_reason: Option<String>,
}

/// What promoting a release to an environment would change there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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

impl Validate for PromoteRequest {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_states_round_trip() {
        for s in DeploymentState::ALL {
            assert_eq!(DeploymentState::parse(s.as_str()), Some(s));
        }
    }
}

/// `POST /api/v1/environments/{id}/deployments`: deploy an environment's
/// services in dependency order (`depends_on`), each waiting for its
/// dependencies' deployments.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct DeployEnvironment {
    /// Only these services (and nothing else); default: every service.
    #[serde(default)]
    pub services: Option<Vec<crate::ResourceName>>,
    /// Deploy the chosen services even when what serves already matches
    /// their spec; default: only the changed ones.
    #[serde(default)]
    pub all: bool,
}

impl Validate for DeployEnvironment {
    fn validate(&self) -> Result<(), FieldError> {
        if let Some(s) = &self.services {
            if s.is_empty() || s.len() > 100 {
                return Err(FieldError::new("services", "name 1–100 services"));
            }
        }
        Ok(())
    }
}

/// What **Deploy environment** started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct EnvironmentDeployment {
    /// Shared by the deployments started together.
    pub batch_id: Uuid,
    /// In dependency order (dependencies first).
    pub deployments: Vec<Deployment>,
    /// Services left alone: what serves matches their spec.
    pub unchanged: Vec<String>,
}
