//! The orchestration of Docker and the ingress proxy for one host: what the
//! agent does for each request of the control plane.
//!
//! ```text
//!  Rollout ──▶ deploy:    image → create + start → health ──▶ routes: switch → Switched → drain
//!   start-first             (Prepare stops here)                  │
//!                         answer ◀──────────────────────────────┘
//!                         then retire (in parallel with earlier retires):
//!                         stop old with their grace period, prune beyond keep_previous
//!   stop-first            image (Prepare stops here) → create → stop old → start → health
//!                         → routes → Switched → answer; failed: remove new, start the
//!                         same old containers again → health → routes back
//!  Revert ───▶ revert:    (stop-first: stop failed first) start kept → health → routes back
//!                         → drain → remove failed
//!  Reconcile ▶ reconcile: per service, converge containers and routes on the
//!                         deployment that must serve (keep some stopped, remove the rest)
//!  Logs, status ▶ observe
//! ```
//!
//! `health` (waiting for containers: HTTP, TCP or exec checks, start
//! periods) and `routes` (the proxy's routes of a service) are the parts the
//! others share; the decisions are plain
//! functions, unit-tested beside them.
mod deploy;
mod health;
mod observe;
mod progress;
mod reconcile;
mod revert;
mod routes;
mod run;

pub use deploy::Retire;
pub use progress::Progress;

use crate::docker::{Docker, DockerError, ManagedContainer};
use slipway_proxy::{ProxyClient, ProxyClientError};
use slipway_types::agent::{AgentError, AgentErrorCode};
use std::net::IpAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Log lines of a failed container sent with the error.
const LOG_LINES_ON_FAILURE: u32 = 20;

/// Runs plans on one host.
#[derive(Clone)]
pub struct Engine {
    pub docker: Docker,
    /// `None` = `--no-proxy`.
    pub proxy: Option<ProxyClient>,
    pub host_id: Uuid,
    pub prefix: String,
    pub proxy_bind_ip: IpAddr,
    /// Called before each request that needs the proxy (starts it if it died).
    pub proxy_guard: Option<Arc<crate::proxy::ProxyLauncher>>,
}

fn err(code: AgentErrorCode, message: impl Into<String>) -> AgentError {
    AgentError::new(code, message)
}

fn docker_err(e: DockerError) -> AgentError {
    match e {
        DockerError::NotFound(m) => err(AgentErrorCode::NotFound, m),
        other => err(AgentErrorCode::Docker, other.to_string()),
    }
}

fn proxy_err(e: ProxyClientError) -> AgentError {
    match e {
        ProxyClientError::PortConflict(m) => err(AgentErrorCode::PortConflict, m),
        other => err(AgentErrorCode::Proxy, other.to_string()),
    }
}

fn cancelled() -> AgentError {
    err(AgentErrorCode::Cancelled, "cancelled")
}

/// Runs `fut` unless `cancel` fires first.
async fn or_cancel<T>(
    cancel: &CancellationToken,
    fut: impl std::future::Future<Output = Result<T, AgentError>>,
) -> Result<T, AgentError> {
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(cancelled()),
        r = fut => r,
    }
}

impl Engine {
    fn proxy(&self) -> Result<&ProxyClient, AgentError> {
        self.proxy.as_ref().ok_or_else(|| {
            err(
                AgentErrorCode::InvalidSpec,
                "this agent runs without the ingress proxy (--no-proxy)",
            )
        })
    }

    async fn ensure_proxy(&self) -> Result<(), AgentError> {
        if let Some(g) = &self.proxy_guard {
            g.ensure_running()
                .await
                .map_err(|e| err(AgentErrorCode::Proxy, e.to_string()))?;
        }
        Ok(())
    }

    /// Makes sure `image` is on this host: present, or pulled (with the
    /// plan's registry credentials); each step in the progress log.
    async fn ensure_image(
        &self,
        image: &str,
        auth: Option<&slipway_types::agent::RegistryAuth>,
        progress: &Progress,
    ) -> Result<(), AgentError> {
        if self.docker.image_present(image).await.map_err(docker_err)? {
            progress.step(format!("image {image} present"));
            return Ok(());
        }
        progress.step(format!("pulling image {image}…"));
        self.docker.pull(image, auth).await.map_err(|e| {
            err(
                AgentErrorCode::ImageMissing,
                format!("cannot pull {image}: {e}"),
            )
        })?;
        progress.step(format!("pulled image {image}"));
        Ok(())
    }

    async fn service_containers(
        &self,
        service_id: Uuid,
    ) -> Result<Vec<ManagedContainer>, AgentError> {
        self.docker
            .list_managed(self.host_id, Some(service_id))
            .await
            .map_err(docker_err)
    }

    async fn remove_all(&self, ids: &[String]) {
        for id in ids {
            if let Err(e) = self.docker.remove(id).await {
                tracing::warn!(container = %id, error = %e, "could not remove container");
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    use crate::docker::ManagedContainer;
    use crate::spec::{AgentLabels, PortKey};
    use slipway_types::agent::{ContainerHealth, ContainerState};

    /// A running container `name` with `ports` (container port → host port)
    /// and the published ports `publish` (container port → published port).
    pub fn container(name: &str, ports: &[(u16, u16)], publish: &[(u16, u16)]) -> ManagedContainer {
        ManagedContainer {
            id: format!("id-{name}"),
            name: name.into(),
            image: "img:1".into(),
            service_id: None,
            deployment_id: None,
            release_number: 1,
            replica: 0,
            state: ContainerState::Running,
            health: ContainerHealth::None,
            restart_count: 0,
            exit_code: None,
            host_ports: ports.iter().map(|(c, h)| (PortKey::tcp(*c), *h)).collect(),
            created_at: Default::default(),
            agent: AgentLabels {
                publish: publish.to_vec(),
                ..Default::default()
            },
        }
    }
}
