//! docker-compose import.
use super::{NewService, Validate};
use serde::{Deserialize, Serialize};

/// `POST /api/v1/environments/{id}/compose`: turn a docker-compose file into
/// the environment's services. All or nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ComposeImport {
    /// The compose file, YAML.
    pub compose: String,
    /// Only report what would be created.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ComposeImportResult {
    /// The services as imported (or as they would be, on a dry run).
    pub services: Vec<NewService>,
    /// Keys Slipway accepted but ignores, e.g. `container_name` (informational).
    #[serde(default)]
    pub ignored: Vec<String>,
    pub dry_run: bool,
}

impl Validate for ComposeImport {}
