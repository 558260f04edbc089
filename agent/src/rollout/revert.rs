//! Revert: a failed deployment hands its traffic back to the kept containers
//! of the one before it (restarted if stopped) and is removed.
use super::health::DEFAULT_HEALTH_TIMEOUT;
use super::{docker_err, or_cancel, Engine, Progress};
use crate::docker::ManagedContainer;
use slipway_types::agent::{AgentError, AgentResponse, RevertPlan};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

impl Engine {
    /// Serves `restore_deployment_id` again (if given and kept on this host)
    /// and removes the containers of `failed_deployment_id`.
    pub async fn revert(
        &self,
        plan: &RevertPlan,
        progress: &Progress,
        cancel: &CancellationToken,
    ) -> Result<AgentResponse, AgentError> {
        let service_id = plan.service.service_id;
        if self.proxy.is_some() {
            self.ensure_proxy().await?;
        }
        let all = self.service_containers(service_id).await?;
        let routes_before = self.current_routes(service_id).await?;
        let failed: Vec<&ManagedContainer> = all
            .iter()
            .filter(|c| c.deployment_id == Some(plan.failed_deployment_id))
            .collect();
        let restore: Vec<&ManagedContainer> = match plan.restore_deployment_id {
            Some(d) => all.iter().filter(|c| c.deployment_id == Some(d)).collect(),
            None => Vec::new(),
        };
        if plan.restore_deployment_id.is_some() && restore.is_empty() {
            progress.step("no kept containers of the deployment to restore on this host");
        }

        let mut restored = Vec::new();
        if !restore.is_empty() {
            let mut ids = Vec::new();
            for c in &restore {
                if !c.is_running() {
                    or_cancel(cancel, async {
                        self.docker.start(&c.id).await.map_err(docker_err)
                    })
                    .await?;
                    progress.step(format!("started kept container {}", c.name));
                }
                ids.push((c.id.clone(), c.name.clone()));
            }
            if let Err((e, _)) = self
                .wait_all_healthy(&ids, DEFAULT_HEALTH_TIMEOUT, progress, cancel)
                .await
            {
                // Leave the failed deployment serving; stop what we started.
                for c in restore.iter().filter(|c| !c.is_running()) {
                    let _ = self.docker.stop(&c.id).await;
                }
                return Err(e);
            }
            for (id, _) in &ids {
                restored.push(self.docker.inspect(id).await.map_err(docker_err)?);
            }
        }
        let routes = self.desired_routes(service_id, &restored)?;
        self.switch_routes(&routes, &routes_before).await?;
        if !routes.is_empty() {
            progress.step("traffic switched back");
        }
        let mut ignored = Vec::new();
        self.delete_stale_routes(&routes, &routes_before, &mut ignored)
            .await;
        let drain = Duration::from_secs(u64::from(plan.drain_timeout_secs));
        self.drain_old(&routes, &routes_before, drain, progress)
            .await;
        for c in failed {
            match self.docker.remove(&c.id).await {
                Ok(()) => progress.step(format!("removed container {}", c.name)),
                Err(e) => progress.step(format!("could not remove container {}: {e}", c.name)),
            }
        }
        progress.step("revert complete");
        Ok(AgentResponse::Reverted {
            containers: restored.into_iter().map(|c| c.id).collect(),
        })
    }
}
