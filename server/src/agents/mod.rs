//! Agents: enrollment, the authenticated WebSocket each agent dials in on,
//! and the hub that routes requests to them.
pub mod buffer;
pub mod connect;
pub mod enroll;
pub mod hub;
pub mod logs;

pub use hub::{AgentHub, CallError, LiveHost};
