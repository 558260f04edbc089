//! Revert: a failed deployment hands its traffic back to the kept containers
//! of the one before it (restarted if stopped) and is removed. For a
//! stop-first service the failed containers stop before the kept ones start
//! (never two at once on a volume), and start again if the kept ones fail.
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

        let stop_first = all.iter().any(|c| c.agent.stop_first);
        let failed_up: Vec<&ManagedContainer> = if stop_first && !restore.is_empty() {
            failed.iter().copied().filter(|c| c.is_up()).collect()
        } else {
            Vec::new()
        };
        if !failed_up.is_empty() {
            progress.step("stop-first: stopping the failed containers before the kept ones start");
            let stops = failed_up.iter().map(|c| async move {
                self.docker.stop(&c.id).await.map_err(docker_err)?;
                progress.step(format!("stopped container {}", c.name));
                Ok::<(), AgentError>(())
            });
            futures_util::future::try_join_all(stops).await?;
        }
        let switched = async {
            let restored = self.start_kept(&restore, progress, cancel).await?;
            let routes = self.desired_routes(service_id, &restored)?;
            self.switch_routes(&routes, &routes_before).await?;
            Ok::<_, AgentError>((restored, routes))
        }
        .await;
        let (restored, routes) = match switched {
            Ok(r) => r,
            Err(e) => {
                self.keep_failed_serving(service_id, &restore, &failed_up, progress)
                    .await;
                return Err(e);
            }
        };
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

    /// Starts the kept containers that are stopped and waits for all of them.
    async fn start_kept(
        &self,
        restore: &[&ManagedContainer],
        progress: &Progress,
        cancel: &CancellationToken,
    ) -> Result<Vec<ManagedContainer>, AgentError> {
        let mut ids = Vec::new();
        for c in restore {
            if !c.is_running() {
                or_cancel(cancel, async {
                    self.docker.start(&c.id).await.map_err(docker_err)
                })
                .await?;
                progress.step(format!("started kept container {}", c.name));
            }
            ids.push((c.id.clone(), c.name.clone()));
        }
        self.wait_all_healthy(&ids, DEFAULT_HEALTH_TIMEOUT, progress, cancel)
            .await
            .map_err(|(e, _)| e)?;
        let mut restored = Vec::new();
        for (id, _) in &ids {
            restored.push(self.docker.inspect(id).await.map_err(docker_err)?);
        }
        Ok(restored)
    }

    /// The revert failed: the failed deployment keeps serving. Stops the kept
    /// containers this revert started and, for stop-first, starts the failed
    /// ones it stopped again (after those stopped) and routes to them.
    async fn keep_failed_serving(
        &self,
        service_id: uuid::Uuid,
        restore: &[&ManagedContainer],
        failed_up: &[&ManagedContainer],
        progress: &Progress,
    ) {
        let stops = restore
            .iter()
            .filter(|c| !c.is_running())
            .map(|c| self.docker.stop(&c.id));
        for r in futures_util::future::join_all(stops).await {
            if let Err(e) = r {
                tracing::warn!(error = %e, "could not stop a kept container again");
            }
        }
        if failed_up.is_empty() {
            return;
        }
        let mut ids = Vec::new();
        for c in failed_up {
            match self.docker.start(&c.id).await {
                Ok(()) => ids.push(c.id.clone()),
                Err(e) => tracing::warn!(container = %c.name, error = %e, "could not start again"),
            }
        }
        let named: Vec<(String, String)> = failed_up
            .iter()
            .filter(|c| ids.contains(&c.id))
            .map(|c| (c.id.clone(), c.name.clone()))
            .collect();
        let again = async {
            self.wait_all_healthy(
                &named,
                DEFAULT_HEALTH_TIMEOUT,
                progress,
                &CancellationToken::new(),
            )
            .await
            .map_err(|(e, _)| e)?;
            let before = self.current_routes(service_id).await?;
            self.route_new(service_id, &ids, &before).await
        };
        match again.await {
            Ok(_) => progress.step("the failed deployment's containers serve again"),
            Err(e) => progress.step(format!(
                "could not bring the failed deployment's containers back: {}",
                e.message
            )),
        }
    }
}
