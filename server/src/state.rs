//! What every request handler shares: the store, settings, keys, limiters,
//! the agent hub, the live bus and the engine's waker. Built once by
//! [`crate::startup::Application::build`]; the deploy engine does not see it
//! (it gets its own dependencies, see [`crate::deploy::engine::EngineDeps`]).
use crate::{
    agents::AgentHub,
    auth::{
        oidc::Oidc,
        ratelimit::{AttemptLimiter, RateLimiter},
    },
    config::Settings,
    deploy::{engine::EngineWaker, lifecycle::Announcer},
    live::LiveBus,
    ops::Metrics,
    secrets::MasterKey,
    store::cache::ReadCache,
};
use sea_orm::DatabaseConnection;
use std::sync::Arc;

pub struct AppState {
    pub db: DatabaseConnection,
    pub settings: Settings,
    pub key: MasterKey,
    pub metrics: Metrics,
    /// Password logins per user and per client address (in the store).
    pub login_limiter: AttemptLimiter,
    /// Agent enrollments per client address (in the store).
    pub enroll_limiter: AttemptLimiter,
    /// Bad webhook signatures per project and client: a flood is answered
    /// 429 without writing a delivery or audit row for each request.
    pub hook_limiter: RateLimiter,
    /// Verified against when a login names an unknown user, to equalise timing.
    pub dummy_hash: String,
    pub oidc: Oidc,
    /// Connected agents.
    pub hub: AgentHub,
    /// What the dashboard shows live.
    pub live: LiveBus,
    /// Wakes the deploy engine when a deployment is queued.
    pub engine: EngineWaker,
    /// Token lookups and service pages kept in memory (see `store::cache`).
    pub read_cache: Arc<ReadCache>,
}

impl AppState {
    /// Tells the engine and the dashboards about committed deployment changes.
    pub fn announcer(&self) -> Announcer {
        Announcer::new(self.live.clone(), self.engine.clone())
    }
}
