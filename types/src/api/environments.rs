//! Environments.
use super::Validate;
use crate::ResourceName;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Environment {
    pub id: Uuid,
    pub project_id: Uuid,
    pub name: ResourceName,
    /// Protected environments (production) need stronger roles and, later, approvals.
    pub protected: bool,
    #[serde(with = "crate::time::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "DateTime<Utc>"))]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::time::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "DateTime<Utc>"))]
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NewEnvironment {
    pub name: ResourceName,
    #[serde(default)]
    pub protected: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateEnvironment {
    pub name: Option<ResourceName>,
    pub protected: Option<bool>,
}

impl Validate for NewEnvironment {}

impl Validate for UpdateEnvironment {}
