//! CI webhooks, deliveries, trigger rules.
use super::Validate;
use crate::error::FieldError;
use crate::ImageRef;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum WebhookProvider {
    Github,
    Gitlab,
    Generic,
}

impl WebhookProvider {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookProvider::Github => "github",
            WebhookProvider::Gitlab => "gitlab",
            WebhookProvider::Generic => "generic",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Github, Self::Gitlab, Self::Generic]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// A project's webhook endpoint. The secret is never returned after creation
/// or rotation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Webhook {
    pub id: Uuid,
    pub project_id: Uuid,
    pub provider: WebhookProvider,
    /// Path to configure in the CI system, e.g. `/api/v1/hooks/github/{project}`.
    pub path: String,
    pub secret_version: i32,
    pub created_by: String,
    #[serde(with = "crate::time::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "DateTime<Utc>"))]
    pub created_at: DateTime<Utc>,
    #[serde(default, with = "crate::time::rfc3339_opt")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<DateTime<Utc>>"))]
    pub rotated_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    pub provider: WebhookProvider,
}

/// Answer of webhook creation and rotation: the only time the secret is shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CreatedWebhook {
    pub webhook: Webhook,
    pub secret: String,
}

/// One received webhook call and what it did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct WebhookDelivery {
    pub id: Uuid,
    pub project_id: Uuid,
    pub webhook_id: Option<Uuid>,
    pub provider: WebhookProvider,
    pub event: String,
    /// The sender's delivery id (the idempotency key).
    pub delivery_id: Option<String>,
    #[serde(with = "crate::time::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "DateTime<Utc>"))]
    pub received_at: DateTime<Utc>,
    pub verified: bool,
    /// `processed`, `ignored` or `rejected`.
    pub status: String,
    /// What it triggered, or why not.
    pub outcome: String,
    pub release_ids: Vec<Uuid>,
    pub deployment_ids: Vec<Uuid>,
    pub redelivery_of: Option<Uuid>,
}

/// Answer of the `/hooks/...` endpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct HookResponse {
    /// `processed`, `ignored` or `duplicate`.
    pub status: String,
    pub delivery: Uuid,
    pub reason: String,
    pub release_ids: Vec<Uuid>,
    pub deployment_ids: Vec<Uuid>,
}

/// Body of the generic webhook (`X-Slipway-Signature: t=<unix>,v1=<hex>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct GenericHookPayload {
    /// Event id: the idempotency key.
    pub id: String,
    /// Service name (or id) within the project.
    pub service: String,
    pub image: ImageRef,
    #[serde(default)]
    pub git_sha: Option<String>,
    #[serde(default, rename = "ref")]
    pub git_ref: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum TriggerEvent {
    /// A branch push (pattern on the branch).
    Push,
    /// A tag push (pattern on the tag).
    Tag,
    /// A published GitHub release (pattern on its tag).
    Release,
    /// A published container package (pattern on its tag).
    Package,
    /// A successful GitHub workflow run / GitLab pipeline (pattern on the branch or tag).
    WorkflowRun,
    /// The generic webhook (pattern on `ref`; `*` also matches no ref).
    Generic,
}

impl TriggerEvent {
    pub const ALL: [TriggerEvent; 6] = [
        TriggerEvent::Push,
        TriggerEvent::Tag,
        TriggerEvent::Release,
        TriggerEvent::Package,
        TriggerEvent::WorkflowRun,
        TriggerEvent::Generic,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TriggerEvent::Push => "push",
            TriggerEvent::Tag => "tag",
            TriggerEvent::Release => "release",
            TriggerEvent::Package => "package",
            TriggerEvent::WorkflowRun => "workflow_run",
            TriggerEvent::Generic => "generic",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// Placeholders an `image_template` may use.
pub const IMAGE_TEMPLATE_PLACEHOLDERS: [&str; 5] =
    ["{sha}", "{short_sha}", "{tag}", "{branch}", "{ref}"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TriggerRule {
    pub id: Uuid,
    pub service_id: Uuid,
    pub event: TriggerEvent,
    pub pattern: String,
    pub image_template: Option<String>,
    pub auto_deploy: bool,
    pub created_by: String,
    #[serde(with = "crate::time::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "DateTime<Utc>"))]
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NewTriggerRule {
    pub event: TriggerEvent,
    /// Glob on the branch or tag: `*` within one path segment, `**` across `/`.
    pub pattern: String,
    #[serde(default)]
    pub image_template: Option<String>,
    #[serde(default)]
    pub auto_deploy: bool,
}

impl Validate for NewTriggerRule {
    fn validate(&self) -> Result<(), FieldError> {
        if self.pattern.is_empty()
            || self.pattern.len() > 255
            || self
                .pattern
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(FieldError::new(
                "pattern",
                "must be 1–255 characters without spaces",
            ));
        }
        if let Some(t) = &self.image_template {
            if t.is_empty() || t.len() > 512 {
                return Err(FieldError::new(
                    "image_template",
                    "must be 1–512 characters",
                ));
            }
            let mut rest = t.as_str();
            while let Some(i) = rest.find('{') {
                let tail = &rest[i..];
                let Some(p) = IMAGE_TEMPLATE_PLACEHOLDERS
                    .iter()
                    .find(|p| tail.starts_with(**p))
                else {
                    return Err(FieldError::new(
                        "image_template",
                        "unknown placeholder: use {sha}, {short_sha}, {tag}, {branch} or {ref}",
                    ));
                };
                rest = &tail[p.len()..];
            }
        }
        Ok(())
    }
}

impl Validate for NewWebhook {}
