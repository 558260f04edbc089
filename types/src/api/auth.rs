//! First-run setup, login, the caller, API tokens.
use super::Validate;
use crate::error::FieldError;
use crate::Role;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SetupStatus {
    /// True until the first admin account exists.
    pub needs_setup: bool,
}

/// Creates the first admin. Only accepted while no user exists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SetupRequest {
    #[cfg_attr(
        feature = "schema",
        schemars(length(min = 3, max = 64), regex(pattern = r"^[A-Za-z0-9._@-]+$"))
    )]
    pub username: String,
    #[cfg_attr(feature = "schema", schemars(length(min = MIN_PASSWORD_LEN, max = MAX_PASSWORD_LEN)))]
    pub password: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Me {
    pub user_id: Uuid,
    pub username: String,
    pub role: Role,
    pub csrf_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CreateToken {
    /// 1–100 characters, not only spaces.
    #[cfg_attr(
        feature = "schema",
        schemars(length(min = 1, max = 100), regex(pattern = r"\S"))
    )]
    pub name: String,
    pub role: Role,
    /// Restrict the token's role to these environments (read-only elsewhere).
    #[serde(default)]
    pub environments: Vec<Uuid>,
    /// Lifetime in days; none = never expires.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 3650)))]
    pub expires_in_days: Option<u32>,
    /// Limit the token's changes to these kinds; empty = whatever its role allows.
    #[serde(default)]
    pub actions: Vec<TokenAction>,
}

/// Kinds of change a token may be limited to. Reads are always allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ApiToken {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    pub environments: Vec<Uuid>,
    pub created_by: String,
    #[serde(with = "crate::time::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "DateTime<Utc>"))]
    pub created_at: DateTime<Utc>,
    #[serde(default, with = "crate::time::rfc3339_opt")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<DateTime<Utc>>"))]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default, with = "crate::time::rfc3339_opt")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<DateTime<Utc>>"))]
    pub last_used_at: Option<DateTime<Utc>>,
    #[serde(default, with = "crate::time::rfc3339_opt")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<DateTime<Utc>>"))]
    pub revoked_at: Option<DateTime<Utc>>,
    /// Empty: not limited beyond its role.
    #[serde(default)]
    pub actions: Vec<TokenAction>,
}

/// Returned once, at creation. The secret is never shown again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CreatedToken {
    pub token: ApiToken,
    pub secret: String,
}

impl Validate for SetupRequest {
    fn validate(&self) -> Result<(), FieldError> {
        validate_username(&self.username)?;
        validate_password(&self.password)
    }
}

/// A login checks nothing but the credentials: the password rules apply
/// when one is set.
impl Validate for LoginRequest {}

impl Validate for CreateToken {}
