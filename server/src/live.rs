//! In-process fan-out of what the dashboard shows live: deployment steps and
//! state changes, host status. Producers never block: a slow subscriber just
//! misses events (it re-reads the store, which is the truth).
use slipway_types::api::{DeploymentState, DeploymentStep, LiveEvent};
use tokio::sync::broadcast;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub enum Live {
    Step {
        deployment_id: Uuid,
        step: DeploymentStep,
    },
    State {
        deployment_id: Uuid,
        state: DeploymentState,
        reason: Option<String>,
    },
    Event(LiveEvent),
}

#[derive(Clone)]
pub struct LiveBus(broadcast::Sender<Live>);

impl Default for LiveBus {
    fn default() -> Self {
        Self(broadcast::channel(1024).0)
    }
}

impl LiveBus {
    pub fn publish(&self, event: Live) {
        // No subscribers is fine.
        let _ = self.0.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Live> {
        self.0.subscribe()
    }
}
