//! Reconcile: converge each service on the deployment that must serve (its
//! containers started, routed), keep some stopped for rollback, remove the
//! rest. What becomes of a container is [`fate`], a plain function. Then the
//! host's own leftovers go: one-off containers of an earlier agent process,
//! environment networks nothing uses ([`spec::networks_to_remove`]) and
//! config files no container mounts.
use super::health::DEFAULT_HEALTH_TIMEOUT;
use super::routes::{self, RouteSet};
use super::{cancelled, docker_err, or_cancel, Engine, Progress};
use crate::docker::{DockerError, ManagedContainer};
use crate::spec;
use slipway_types::agent::{AgentError, AgentResponse, DesiredService, ReconcilePlan};
use std::collections::HashSet;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// What reconcile does with a container of the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Of the deployment that serves.
    Serve,
    /// Of a deployment kept for rollback: stopped.
    Keep,
    /// Anything else (other deployments, unlabelled leftovers): removed.
    Remove,
}

fn fate(deployment: Option<Uuid>, serving: Option<Uuid>, keep: &HashSet<Uuid>) -> Fate {
    match deployment {
        Some(d) if Some(d) == serving => Fate::Serve,
        Some(d) if keep.contains(&d) => Fate::Keep,
        _ => Fate::Remove,
    }
}

impl Engine {
    /// Converges one service; `actions` gets one line per change.
    pub async fn reconcile_service(
        &self,
        desired: &DesiredService,
        progress: &Progress,
        cancel: &CancellationToken,
        actions: &mut Vec<String>,
    ) -> Result<(), AgentError> {
        let service_id = desired.service.service_id;
        let all = self.service_containers(service_id).await?;
        let routes_before = self.current_routes(service_id).await?;
        let keep: HashSet<Uuid> = desired.keep.iter().copied().collect();

        let mut serving = Vec::new();
        if let Some(d) = desired.serving {
            let mine: Vec<&ManagedContainer> =
                all.iter().filter(|c| c.deployment_id == Some(d)).collect();
            if mine.is_empty() {
                actions.push(format!(
                    "cannot serve deployment {d}: none of its containers exist on this host"
                ));
            }
            // Stop-first: what must not serve stops before anything starts,
            // so two containers of the service never share its volume.
            if mine.iter().any(|c| !c.is_running()) && all.iter().any(|c| c.agent.stop_first) {
                for c in all
                    .iter()
                    .filter(|c| c.is_up() && c.deployment_id != Some(d))
                {
                    self.docker.stop(&c.id).await.map_err(docker_err)?;
                    actions.push(format!("stopped {}", c.name));
                }
            }
            let mut started = Vec::new();
            for c in &mine {
                if !c.is_running() {
                    or_cancel(cancel, async {
                        self.docker.start(&c.id).await.map_err(docker_err)
                    })
                    .await?;
                    actions.push(format!("started {}", c.name));
                    started.push((c.id.clone(), c.name.clone()));
                }
            }
            if !started.is_empty() {
                self.wait_all_healthy(&started, DEFAULT_HEALTH_TIMEOUT, progress, cancel)
                    .await
                    .map_err(|(e, _)| e)?;
            }
            for c in &mine {
                serving.push(self.docker.inspect(&c.id).await.map_err(docker_err)?);
            }
        }
        let routes = if self.proxy.is_some() {
            self.desired_routes(service_id, &serving)?
        } else {
            RouteSet::new()
        };
        for (name, want) in routes::to_update(&routes, &routes_before) {
            let one: RouteSet = [(name.clone(), want.clone())].into_iter().collect();
            self.switch_routes(&one, &routes_before).await?;
            actions.push(format!(
                "routed {name} to {} container(s)",
                want.upstreams.len()
            ));
        }
        self.delete_stale_routes(&routes, &routes_before, actions)
            .await;
        let drain = Duration::from_secs(u64::from(desired.drain_timeout_secs));
        self.drain_old(&routes, &routes_before, drain, progress)
            .await;

        for c in &all {
            match fate(c.deployment_id, desired.serving, &keep) {
                Fate::Serve => {}
                Fate::Keep => {
                    if c.is_up() {
                        self.docker.stop(&c.id).await.map_err(docker_err)?;
                        actions.push(format!("stopped {}", c.name));
                    }
                }
                Fate::Remove => {
                    self.docker.remove(&c.id).await.map_err(docker_err)?;
                    actions.push(format!("removed {}", c.name));
                }
            }
        }
        Ok(())
    }

    /// Converges every service of the plan; answers with what changed.
    pub async fn reconcile(
        &self,
        plan: &ReconcilePlan,
        progress: &Progress,
        cancel: &CancellationToken,
    ) -> Result<AgentResponse, AgentError> {
        if self.proxy.is_some() {
            self.ensure_proxy().await?;
        }
        let mut actions = Vec::new();
        for s in &plan.services {
            if cancel.is_cancelled() {
                return Err(cancelled());
            }
            self.reconcile_service(s, progress, cancel, &mut actions)
                .await?;
        }
        if cancel.is_cancelled() {
            return Err(cancelled());
        }
        if let Err(e) = self.clean_host(plan, &mut actions).await {
            tracing::warn!(error = %e, "could not remove every leftover of this host");
        }
        for a in &actions {
            progress.step(a.clone());
        }
        Ok(AgentResponse::Reconciled { actions })
    }
}

impl Engine {
    /// Removes one-off containers of earlier agent processes, the networks
    /// of environments with no desired service and no container, and config
    /// files no container mounts.
    async fn clean_host(
        &self,
        plan: &ReconcilePlan,
        actions: &mut Vec<String>,
    ) -> Result<(), DockerError> {
        let session = self.docker.session();
        for run in self.docker.list_runs(self.host_id).await? {
            if run.session != Some(session) {
                self.docker.remove(&run.id).await?;
                actions.push(format!("removed leftover one-off container {}", run.name));
            }
        }
        let desired: HashSet<Uuid> = plan
            .services
            .iter()
            .filter(|s| s.serving.is_some())
            .map(|s| s.service.environment_id)
            .collect();
        // No create may start on a network or file between the check and the removal.
        let _exclusive = self.docker.lock_host_resources().await;
        let mut networks = Vec::new();
        for n in self.docker.list_networks(self.host_id).await? {
            let in_use = self.docker.network_in_use(&n).await?;
            networks.push((n, in_use));
        }
        for n in spec::networks_to_remove(&networks, &desired) {
            match self.docker.remove_network(n).await {
                Ok(()) => actions.push(format!("removed network {}", n.name)),
                Err(e) => {
                    tracing::warn!(network = %n.name, error = %e, "could not remove an unused network")
                }
            }
        }
        if let Some(dir) = self.docker.files_dir().map(std::path::Path::to_path_buf) {
            let in_use = self.docker.files_in_use(self.host_id).await?;
            let removed = tokio::task::spawn_blocking(move || crate::files::prune(&dir, &in_use))
                .await
                .map_err(|e| DockerError::Files(e.to_string()))?
                .map_err(|e| DockerError::Files(e.to_string()))?;
            if !removed.is_empty() {
                actions.push(format!("removed {} unused config file(s)", removed.len()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_keep_or_remove() {
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let keep: HashSet<Uuid> = [b].into();
        assert_eq!(fate(Some(a), Some(a), &keep), Fate::Serve);
        assert_eq!(fate(Some(b), Some(a), &keep), Fate::Keep);
        assert_eq!(fate(Some(c), Some(a), &keep), Fate::Remove);
        // Nothing serves: kept ones stay stopped, the rest goes.
        assert_eq!(fate(Some(b), None, &keep), Fate::Keep);
        assert_eq!(fate(Some(a), None, &keep), Fate::Remove);
        // An unlabelled container is never "the serving one".
        assert_eq!(fate(None, None, &keep), Fate::Remove);
    }
}
