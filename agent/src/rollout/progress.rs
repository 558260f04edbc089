//! Where the step events of a request go.
use slipway_types::agent::AgentEvent;
use tokio::sync::mpsc;

/// The events of one request, sent to the control plane (or only logged).
#[derive(Clone, Default)]
pub struct Progress {
    tx: Option<mpsc::UnboundedSender<AgentEvent>>,
}

impl Progress {
    pub fn new(tx: mpsc::UnboundedSender<AgentEvent>) -> Self {
        Self { tx: Some(tx) }
    }

    /// Events are only logged.
    pub fn discard() -> Self {
        Self { tx: None }
    }

    pub fn step(&self, message: impl Into<String>) {
        let message = message.into();
        tracing::info!(step = %message);
        if let Some(tx) = &self.tx {
            let _ = tx.send(AgentEvent::Step { message });
        }
    }

    /// Traffic on this host now goes to the new containers: sent the moment
    /// it happens, before the answer (the control plane records it).
    pub fn switched(&self) {
        tracing::info!("traffic switched");
        if let Some(tx) = &self.tx {
            let _ = tx.send(AgentEvent::Switched);
        }
    }

    /// Sends `event`; `false` once nobody listens any more.
    pub(super) fn event(&self, event: AgentEvent) -> bool {
        match &self.tx {
            Some(tx) => tx.send(event).is_ok(),
            None => true,
        }
    }
}
