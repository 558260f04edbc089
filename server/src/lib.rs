//! Slipway control plane. `main.rs` only parses the command line; everything
//! else lives here so tests drive the same code.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod agents;
pub mod api;
pub mod assets;
pub mod audit;
pub mod auth;
pub mod ci;
pub mod cli;
pub mod compose;
pub mod config;
pub mod deploy;
pub mod error;
pub mod live;
pub mod ops;
pub mod secrets;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
