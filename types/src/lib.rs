//! The Slipway wire contract.
//!
//! Everything that crosses a process boundary (HTTP API today, the agent
//! protocol next) is declared here once and used by the server, the agent and
//! the wasm dashboard alike. This crate has no IO and must keep building for
//! `wasm32-unknown-unknown`.
//!
//! Stability: types under [`api`] are versioned with the `/api/v1` prefix;
//! adding optional fields is compatible, renaming or removing is not.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod agent;
pub mod api;
pub mod decode;
pub mod error;
mod host_status;
pub mod names;
pub mod role;
pub mod sse;
pub mod target;
pub mod template;
pub mod time;

pub use error::{ApiErrorBody, ErrorCode, FieldError};
pub use names::{Capability, EnvVarName, ImageRef, Port, ResourceName};
pub use role::Role;
