//! Hosts (machines running an agent) and their enrollment.
use super::Validate;
use crate::agent::{ContainerStats, ContainerStatus, HostFacts};
use crate::error::FieldError;
use crate::ResourceName;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum HostStatus {
    /// Created; no agent has connected yet.
    Pending,
    Online,
    Offline,
    Revoked,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Host {
    pub id: Uuid,
    pub name: ResourceName,
    pub status: HostStatus,
    pub environments: Vec<Uuid>,
    pub labels: BTreeMap<String, String>,
    #[serde(default, with = "crate::time::rfc3339_opt")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<DateTime<Utc>>"))]
    pub last_seen_at: Option<DateTime<Utc>>,
    #[serde(with = "crate::time::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "DateTime<Utc>"))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct HostEnrollment {
    pub host_id: Uuid,
    pub token: String,
    #[serde(with = "crate::time::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "DateTime<Utc>"))]
    pub expires_at: DateTime<Utc>,
    /// Copy-paste command that enrolls and starts the agent on the host.
    pub command: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NewHost {
    pub name: ResourceName,
    #[serde(default)]
    pub environments: Vec<Uuid>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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

impl Validate for NewHost {
    fn validate(&self) -> Result<(), FieldError> {
        validate_labels(&self.labels)
    }
}

impl Validate for UpdateHost {
    fn validate(&self) -> Result<(), FieldError> {
        self.labels.as_ref().map_or(Ok(()), validate_labels)
    }
}
