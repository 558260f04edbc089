//! What the control plane reads of this host: a container's logs, and every
//! managed container's state, health, whether it serves, and resource use.
use super::health::{probe, probe_client};
use super::{docker_err, err, Engine, Progress};
use crate::docker::ManagedContainer;
use crate::spec::PortKey;
use futures_util::StreamExt;
use slipway_types::agent::{
    AgentError, AgentErrorCode, AgentEvent, AgentResponse, ContainerHealth, ContainerStats,
    ContainerStatus,
};
use std::collections::HashSet;
use std::net::SocketAddr;
use tokio_util::sync::CancellationToken;

/// How many one-shot stats samples run at once (each takes about a second
/// on the engine side).
const STATS_AT_ONCE: usize = 8;

/// Whether the proxy sends to one of the container's loopback ports.
fn serving(c: &ManagedContainer, routed: &HashSet<SocketAddr>) -> bool {
    c.is_running()
        && c.host_ports
            .values()
            .any(|p| routed.contains(&SocketAddr::from(([127, 0, 0, 1], *p))))
}

/// The status report of a container; `None` for one without the labels of
/// a deployment.
fn status_of(
    c: &ManagedContainer,
    health: ContainerHealth,
    routed: &HashSet<SocketAddr>,
) -> Option<ContainerStatus> {
    let (Some(service_id), Some(deployment_id)) = (c.service_id, c.deployment_id) else {
        return None;
    };
    Some(ContainerStatus {
        id: c.id.clone(),
        name: c.name.clone(),
        service_id,
        deployment_id,
        release_number: c.release_number,
        image: c.image.clone(),
        state: c.state,
        health,
        serving: serving(c, routed),
        created_at: c.created_at,
    })
}

impl Engine {
    /// Streams a managed container's logs as events until they end, or
    /// until `cancel` (follow).
    pub async fn logs(
        &self,
        container_id: &str,
        tail: u32,
        follow: bool,
        progress: &Progress,
        cancel: &CancellationToken,
    ) -> Result<AgentResponse, AgentError> {
        let c = self
            .docker
            .inspect(container_id)
            .await
            .map_err(docker_err)?;
        let ours = self
            .docker
            .list_managed(self.host_id, c.service_id)
            .await
            .map_err(docker_err)?
            .iter()
            .any(|m| m.id == c.id);
        if !ours {
            return Err(err(
                AgentErrorCode::NotFound,
                format!("container {container_id} is not managed by this host"),
            ));
        }
        let mut stream = Box::pin(self.docker.log_stream(&c.id, tail, follow));
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                item = stream.next() => match item {
                    Some(Ok((stream, line))) => {
                        if !progress.event(AgentEvent::Log { stream, line }) {
                            break;
                        }
                    }
                    Some(Err(e)) => return Err(docker_err(e)),
                    None => break,
                }
            }
        }
        Ok(AgentResponse::LogsEnded)
    }

    /// This host's containers and their resource use.
    pub async fn status(&self) -> Result<(Vec<ContainerStatus>, Vec<ContainerStats>), AgentError> {
        let containers = self
            .docker
            .list_managed(self.host_id, None)
            .await
            .map_err(docker_err)?;
        let routed: HashSet<SocketAddr> = match &self.proxy {
            Some(p) => match p.routes().await {
                Ok(routes) => routes
                    .iter()
                    .filter(|r| r.name.starts_with(&self.prefix))
                    .flat_map(|r| r.upstreams.iter().map(|u| u.addr))
                    .collect(),
                Err(e) => {
                    tracing::debug!(error = %e, "proxy routes unavailable for status");
                    HashSet::new()
                }
            },
            None => HashSet::new(),
        };
        // Containers with Slipway's HTTP check report what one probe says
        // now (Docker knows nothing of that check).
        let http = probe_client().ok();
        let probes = containers.iter().map(|c| {
            let http = http.clone();
            async move {
                let (Some(http), Some((port, path))) = (http, &c.agent.health) else {
                    return c.health;
                };
                let Some(host_port) = c.host_ports.get(&PortKey::tcp(*port)) else {
                    return c.health;
                };
                if !c.is_running() {
                    return c.health;
                }
                match probe(&http, *host_port, path).await {
                    Ok(()) => ContainerHealth::Healthy,
                    Err(_) => ContainerHealth::Unhealthy,
                }
            }
        });
        let health = futures_util::future::join_all(probes).await;
        let statuses = containers
            .iter()
            .zip(health)
            .filter_map(|(c, health)| status_of(c, health, &routed))
            .collect();
        let running: Vec<(String, String)> = containers
            .iter()
            .filter(|c| c.is_running())
            .map(|c| (c.id.clone(), c.name.clone()))
            .collect();
        let mut samples = Vec::new();
        for chunk in running.chunks(STATS_AT_ONCE) {
            let mut set = tokio::task::JoinSet::new();
            for (id, name) in chunk.iter().cloned() {
                let docker = self.docker.clone();
                set.spawn(async move {
                    match docker.stats(&id).await {
                        Ok(Some(s)) => Some(ContainerStats {
                            id,
                            cpu_percent: s.cpu_percent,
                            memory_bytes: s.memory_bytes,
                            memory_limit_bytes: s.memory_limit_bytes,
                        }),
                        Ok(None) => None,
                        Err(e) => {
                            tracing::debug!(container = %name, error = %e, "no stats");
                            None
                        }
                    }
                });
            }
            while let Some(r) = set.join_next().await {
                if let Ok(Some(s)) = r {
                    samples.push(s);
                }
            }
        }
        Ok((statuses, samples))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::fixtures::container;
    use slipway_types::agent::ContainerState;
    use uuid::Uuid;

    #[test]
    fn serving_means_routed_and_running() {
        let c = container("a", &[(8080, 32001)], &[(8080, 80)]);
        let routed: HashSet<SocketAddr> = [SocketAddr::from(([127, 0, 0, 1], 32001))].into();
        assert!(serving(&c, &routed));
        assert!(!serving(&c, &HashSet::new()));
        let mut stopped = c.clone();
        stopped.state = ContainerState::Exited;
        assert!(!serving(&stopped, &routed));
    }

    #[test]
    fn only_containers_of_a_deployment_are_reported() {
        let mut c = container("a", &[(8080, 32001)], &[]);
        assert_eq!(status_of(&c, ContainerHealth::None, &HashSet::new()), None);
        c.service_id = Some(Uuid::from_u128(1));
        c.deployment_id = Some(Uuid::from_u128(2));
        let s = status_of(&c, ContainerHealth::Healthy, &HashSet::new()).unwrap();
        assert_eq!(s.deployment_id, Uuid::from_u128(2));
        assert_eq!(s.health, ContainerHealth::Healthy);
        assert!(!s.serving);
    }
}
