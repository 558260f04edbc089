//! Request and response bodies of `/api/v1`, one module per resource. Every
//! item is re-exported here, so `slipway_types::api::X` is the path to use.
mod audit;
mod auth;
mod compose;
mod deployments;
mod environments;
mod events;
mod hosts;
mod overview;
mod policy;
mod projects;
mod services;
mod users;
mod variables;
mod webhooks;

pub use audit::*;
pub use auth::*;
pub use compose::*;
pub use deployments::*;
pub use environments::*;
pub use events::*;
pub use hosts::*;
pub use overview::*;
pub use policy::*;
pub use projects::*;
pub use services::*;
pub use users::*;
pub use variables::*;
pub use webhooks::*;

use crate::error::FieldError;
use serde::{Deserialize, Serialize};

/// What a request body checks beyond what its types already parse: bounds
/// and rules that span several fields. The server's JSON extractor runs it
/// before a handler sees the body; the dashboard runs it before sending.
/// Every request body implements it, so a new one must decide.
pub trait Validate {
    fn validate(&self) -> Result<(), FieldError> {
        Ok(())
    }
}

/// Largest accepted value of a plain variable, secret or service env var (bytes).
pub const MAX_VALUE_BYTES: usize = 32 * 1024;
/// Largest accepted free-text description.
pub const MAX_DESCRIPTION_BYTES: usize = 2 * 1024;

/// One page of a list. `total` counts all items matching the filters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(rename = "PageOf{T}"))]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
    pub limit: u64,
    pub offset: u64,
}

pub const DEFAULT_PAGE_LIMIT: u64 = 50;
pub const MAX_PAGE_LIMIT: u64 = 500;
