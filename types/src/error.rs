//! The one error body every API failure uses.
use serde::{Deserialize, Serialize};
use std::fmt;

/// Stable, machine-readable error codes. Each maps to one HTTP status in the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidInput,
    MalformedJson,
    PayloadTooLarge,
    Unauthenticated,
    InvalidCredentials,
    CsrfFailed,
    Forbidden,
    NotFound,
    Conflict,
    SetupAlreadyDone,
    SetupRequired,
    RateLimited,
    InvalidStateTransition,
    Internal,
    Unavailable,
    InvalidSignature,
    DeployFrozen,
    MethodNotAllowed,
    /// 401: a single sign-on session reached its maximum age; log in through
    /// the provider again.
    ReauthenticationRequired,
    EnvironmentProtected,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidInput => "invalid_input",
            ErrorCode::MalformedJson => "malformed_json",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::InvalidCredentials => "invalid_credentials",
            ErrorCode::CsrfFailed => "csrf_failed",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::SetupAlreadyDone => "setup_already_done",
            ErrorCode::SetupRequired => "setup_required",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::InvalidStateTransition => "invalid_state_transition",
            ErrorCode::Internal => "internal",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::InvalidSignature => "invalid_signature",
            ErrorCode::DeployFrozen => "deploy_frozen",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::ReauthenticationRequired => "reauthentication_required",
            ErrorCode::EnvironmentProtected => "environment_protected",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `{ "error": "<code>", "message": "...", "field": "ports[0].container" }`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ApiErrorBody {
    pub error: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// A validation failure tied to one input field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same error for a field nested under `parent`:
    /// `ports[0]` under `spec` is `spec.ports[0]`.
    pub fn under(self, parent: &str) -> Self {
        Self {
            field: format!("{parent}.{}", self.field),
            message: self.message,
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for FieldError {}
