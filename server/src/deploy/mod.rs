//! Deployments: the state machine ([`state`]), pure planning ([`plan`]), the
//! engine that drives queued deployments through the agents ([`engine`]) and
//! the live/rollback routes ([`routes`]).
pub mod engine;
pub mod plan;
pub mod routes;
pub mod state;

pub use state::{transition, DeployEvent, TransitionError};
