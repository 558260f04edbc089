//! Identity: login options, users, role grants, claim → role mappings.
use super::Validate;
use crate::error::FieldError;
use crate::Role;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What the login page offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LoginOptions {
    /// Whether local (user name + password) login is enabled.
    pub local: bool,
    pub providers: Vec<AuthProvider>,
}

/// An OpenID Connect provider; log in by navigating to `login_url`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AuthProvider {
    pub id: String,
    pub name: String,
    pub login_url: String,
}

/// A role held everywhere (`environment_id` none) or in one environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RoleGrant {
    pub id: Uuid,
    pub role: Role,
    pub environment_id: Option<Uuid>,
    /// `oidc` (from role mappings, recomputed at each login) or `manual`.
    pub source: String,
    pub created_by: String,
    #[serde(with = "crate::time::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "DateTime<Utc>"))]
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NewRoleGrant {
    pub role: Role,
    #[serde(default)]
    pub environment_id: Option<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
    #[cfg_attr(feature = "schema", schemars(with = "Option<DateTime<Utc>>"))]
    pub last_login_at: Option<DateTime<Utc>>,
    #[serde(with = "crate::time::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "DateTime<Utc>"))]
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    pub disabled: Option<bool>,
    /// Role everywhere for local users.
    pub role: Option<Role>,
}

/// Grants `role` (everywhere, or in `environment_id`) to users whose id-token
/// claim `claim` equals `value` or, for list claims such as `groups`, contains it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RoleMapping {
    pub id: Uuid,
    pub claim: String,
    pub value: String,
    pub role: Role,
    pub environment_id: Option<Uuid>,
    pub created_by: String,
    #[serde(with = "crate::time::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "DateTime<Utc>"))]
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NewRoleMapping {
    pub claim: String,
    pub value: String,
    pub role: Role,
    #[serde(default)]
    pub environment_id: Option<Uuid>,
}

impl Validate for NewRoleMapping {
    fn validate(&self) -> Result<(), FieldError> {
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ClaimsPreviewRequest {
    pub claims: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ClaimsPreview {
    /// Role everywhere, if any rule grants one.
    pub role: Option<Role>,
    /// (environment, role) pairs from environment-scoped rules.
    pub environments: Vec<EnvironmentRole>,
    /// Ids of the rules that matched.
    pub matched: Vec<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct EnvironmentRole {
    pub environment_id: Uuid,
    pub role: Role,
}

impl Validate for UpdateUser {}

impl Validate for NewRoleGrant {}

impl Validate for ClaimsPreviewRequest {}
