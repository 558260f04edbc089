//! Deployments: the state machine ([`state`]), the lifecycle that creates
//! deployments and changes their state ([`lifecycle`]), pure planning
//! ([`plan`]), the order of an environment's services ([`order`]), the
//! engine that drives queued deployments through the agents ([`engine`]) and
//! the live/rollback/deploy-environment routes ([`routes`]).
pub mod engine;
pub mod lifecycle;
pub mod order;
pub mod plan;
pub mod routes;
pub mod state;

pub use state::{transition, DeployEvent, TransitionError};
