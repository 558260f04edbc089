//! Projects.
use super::{Validate, MAX_DESCRIPTION_BYTES};
use crate::error::FieldError;
use crate::ResourceName;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Project {
    pub id: Uuid,
    pub name: ResourceName,
    pub description: String,
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
pub struct NewProject {
    pub name: ResourceName,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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

impl Validate for NewProject {
    fn validate(&self) -> Result<(), FieldError> {
        validate_description(&self.description)
    }
}

impl Validate for UpdateProject {
    fn validate(&self) -> Result<(), FieldError> {
        self.description
            .as_deref()
            .map_or(Ok(()), validate_description)
    }
}
