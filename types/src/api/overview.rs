//! The overview page: projects × environments × services.
use super::{DeploymentState, Environment, Project};
use crate::{ImageRef, ResourceName};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Overview {
    pub projects: Vec<ProjectOverview>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ProjectOverview {
    pub project: Project,
    pub environments: Vec<EnvironmentOverview>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct EnvironmentOverview {
    pub environment: Environment,
    pub services: Vec<ServiceOverview>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ServiceOverview {
    pub id: Uuid,
    pub name: ResourceName,
    pub image: ImageRef,
    /// The release of the newest succeeded deployment.
    pub current_release: Option<i64>,
    pub last_deployment: Option<DeploymentSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DeploymentSummary {
    pub id: Uuid,
    pub state: DeploymentState,
    pub release_number: i64,
    #[serde(with = "crate::time::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "DateTime<Utc>"))]
    pub created_at: DateTime<Utc>,
}
