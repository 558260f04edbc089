//! Webhook endpoints of a project (config API, `endpoints`), the public
//! receivers (`/hooks/{provider}/{project}`) and the delivery log
//! (`receive`), and trigger rules (`triggers`).
//!
//! A delivery is verified first (HMAC or token, constant time), then parsed
//! into a [`CiEvent`](super::payload::CiEvent); matching trigger rules cut
//! releases and, with `auto_deploy`, create deployments through
//! [`lifecycle::create`](crate::deploy::lifecycle::create). The delivery row is inserted
//! in the same transaction as those releases, and `(project_id,
//! delivery_id)` is unique: one delivery id never creates a second release,
//! however often or concurrently it arrives.
mod endpoints;
mod receive;
mod triggers;

pub use endpoints::{create_webhook, delete_webhook, list_webhooks, rotate_webhook};
pub use receive::{generic, github, gitlab, list_deliveries, redeliver, BAD_SIGNATURES_PER_MINUTE};
pub use triggers::{create_trigger, delete_trigger, list_triggers};

use crate::error::{ApiError, ApiResult};
use slipway_types::api::WebhookProvider;

pub(super) fn internal(msg: String) -> ApiError {
    ApiError::Internal(anyhow::anyhow!(msg))
}

pub(super) fn provider_of(s: &str) -> ApiResult<WebhookProvider> {
    WebhookProvider::parse(s).ok_or_else(|| internal(format!("stored provider {s} unknown")))
}
