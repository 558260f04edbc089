//! docker-compose import.
use super::{NewService, Validate, MAX_CONFIG_FILE_BYTES};
use crate::error::FieldError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most files one import may upload.
pub const MAX_COMPOSE_FILES: usize = 32;

/// `POST /api/v1/environments/{id}/compose`: turn a docker-compose file into
/// the environment's services. All or nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ComposeImport {
    /// The compose file, YAML.
    pub compose: String,
    /// Files the compose file refers to, by their path as written there
    /// (`"./nginx.conf"`, `".env"`) → UTF-8 content: single-file bind mounts
    /// become config files mounted read-only, `env_file`s are read into the
    /// environment. Each at most `MAX_CONFIG_FILE_BYTES`.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
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

impl Validate for ComposeImport {
    fn validate(&self) -> Result<(), FieldError> {
        if self.files.len() > MAX_COMPOSE_FILES {
            return Err(FieldError::new(
                "files",
                format!("at most {MAX_COMPOSE_FILES} files"),
            ));
        }
        for (path, content) in &self.files {
            if path.trim().is_empty() || path.len() > 1024 || path.contains('\0') {
                return Err(FieldError::new(
                    "files",
                    "a file's path must be 1–1024 bytes, as written in the compose file",
                ));
            }
            if content.len() > MAX_CONFIG_FILE_BYTES {
                return Err(FieldError::new(
                    format!("files[{path:?}]"),
                    format!("must be at most {MAX_CONFIG_FILE_BYTES} bytes"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_optional_and_bounded() {
        let c: ComposeImport =
            serde_json::from_value(serde_json::json!({"compose": "services: {}"})).expect("body");
        assert!(c.files.is_empty());
        assert!(c.validate().is_ok());
        let mut big = c.clone();
        big.files
            .insert("./nginx.conf".into(), "x".repeat(MAX_CONFIG_FILE_BYTES + 1));
        assert_eq!(
            big.validate().map_err(|e| e.field),
            Err("files[\"./nginx.conf\"]".into())
        );
        let mut many = c;
        for i in 0..=MAX_COMPOSE_FILES {
            many.files.insert(format!("f{i}"), String::new());
        }
        assert_eq!(many.validate().map_err(|e| e.field), Err("files".into()));
    }
}
