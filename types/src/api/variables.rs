//! Environment variables and secrets.
use super::Validate;
use crate::EnvVarName;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A variable or secret as the API shows it: never a secret's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Variable {
    pub name: EnvVarName,
    pub secret: bool,
    /// The value of a plain variable; always `None` for secrets.
    pub value: Option<String>,
    pub version: i32,
    #[serde(with = "crate::time::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "DateTime<Utc>"))]
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PutVariable {
    pub value: String,
    #[serde(default)]
    pub secret: bool,
}

impl Validate for PutVariable {}
