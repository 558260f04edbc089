//! Rollout of a release on this host (`full`, or `prepare` then `switch` when
//! the deployment spans several hosts), and the retire of the old containers
//! once the new ones serve. How a (possibly resent) request starts is
//! [`start`], a plain function.
use super::{cancelled, docker_err, err, or_cancel, Engine, Progress, LOG_LINES_ON_FAILURE};
use crate::docker::{DockerError, ManagedContainer};
use crate::spec;
use slipway_types::agent::{AgentError, AgentErrorCode, AgentResponse, RolloutPhase, RolloutPlan};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// What a rollout leaves to do once the new containers serve.
pub struct Retire {
    old: Vec<ManagedContainer>,
    deployment_id: Uuid,
    keep_previous: usize,
}

fn deployment_infos(containers: &[ManagedContainer]) -> Vec<spec::DeploymentInfo> {
    let items: Vec<(Uuid, i64, i64, bool)> = containers
        .iter()
        .filter_map(|c| {
            c.deployment_id.map(|d| {
                (
                    d,
                    c.release_number,
                    c.created_at.timestamp(),
                    c.is_running(),
                )
            })
        })
        .collect();
    spec::group_deployments(&items)
}

/// How a rollout request starts, given what this host has of its deployment
/// already (a request is resent e.g. after a reconnect).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// A resent `prepare`: the containers are ready; answer `Prepared`.
    AlreadyPrepared,
    /// The deployment serves already; answer `RolledOut` (and retire).
    AlreadyServing,
    /// A `switch` of the prepared containers.
    SwitchPrepared,
    /// A `switch` whose prepared containers are gone (removing what is left
    /// of them when `remove_earlier`): an error.
    PreparedGone { remove_earlier: bool },
    /// Create the containers, after removing those of an earlier attempt.
    Create { remove_earlier: bool },
}

/// `existing`: containers of this deployment found on the host; `ready`: all
/// `wanted` of them exist and run; `routed`: and the proxy sends to them.
fn start(phase: RolloutPhase, existing: usize, ready: bool, routed: bool) -> Start {
    let routed = existing > 0 && ready && routed;
    match phase {
        RolloutPhase::Prepare if routed => Start::AlreadyPrepared,
        _ if routed => Start::AlreadyServing,
        RolloutPhase::Switch if ready => Start::SwitchPrepared,
        RolloutPhase::Switch => Start::PreparedGone {
            remove_earlier: existing > 0,
        },
        RolloutPhase::Full | RolloutPhase::Prepare => Start::Create {
            remove_earlier: existing > 0,
        },
    }
}

impl Engine {
    /// Removes the new containers after a failure; `e` gets the logs of the
    /// container that failed if it has none yet.
    async fn abort_rollout(
        &self,
        created: &[String],
        mut e: AgentError,
        failed: Option<&str>,
    ) -> AgentError {
        if e.logs.is_empty() {
            if let Some(id) = failed {
                e.logs = self.docker.tail_logs(id, LOG_LINES_ON_FAILURE).await;
            }
        }
        self.remove_all(created).await;
        e
    }

    /// The whole rollout, retiring the old containers before it answers.
    pub async fn rollout(
        &self,
        plan: &RolloutPlan,
        progress: &Progress,
        cancel: &CancellationToken,
    ) -> Result<AgentResponse, AgentError> {
        let (answer, retire) = self.rollout_serving(plan, progress, cancel).await?;
        if let Some(r) = retire {
            self.retire(r, progress).await;
        }
        Ok(answer)
    }

    /// Rolls out up to the moment the new containers serve (and the old ones
    /// are drained). What remains — stopping and pruning the old containers —
    /// is returned as a [`Retire`], so the caller can answer first: the
    /// deployment is live, and with several hosts the next one can switch.
    pub async fn rollout_serving(
        &self,
        plan: &RolloutPlan,
        progress: &Progress,
        cancel: &CancellationToken,
    ) -> Result<(AgentResponse, Option<Retire>), AgentError> {
        let specs = spec::create_specs(&self.prefix, self.host_id, plan, self.proxy.is_some())
            .map_err(|e| err(AgentErrorCode::InvalidSpec, e.0))?;
        let service_id = plan.service.service_id;
        let image = plan.container.image.as_str();
        let publishes = plan.container.ports.iter().any(|p| p.published.is_some());
        if publishes {
            self.ensure_proxy().await?;
        }

        let switch_only = plan.phase == RolloutPhase::Switch;
        // (a) image
        or_cancel(cancel, async {
            if switch_only {
                return Ok(());
            }
            if self.docker.image_present(image).await.map_err(docker_err)? {
                progress.step(format!("image {image} present"));
                return Ok(());
            }
            progress.step(format!("pulling image {image}…"));
            self.docker
                .pull(image, plan.registry_auth.as_ref())
                .await
                .map_err(|e| {
                    err(
                        AgentErrorCode::ImageMissing,
                        format!("cannot pull {image}: {e}"),
                    )
                })?;
            progress.step(format!("pulled image {image}"));
            Ok(())
        })
        .await?;

        let existing = self.service_containers(service_id).await?;
        let routes_before = self.current_routes(service_id).await?;

        // The same deployment again (e.g. resent after a reconnect).
        let (same, old): (Vec<ManagedContainer>, Vec<ManagedContainer>) = existing
            .into_iter()
            .partition(|c| c.deployment_id == Some(plan.deployment_id));
        let ready = same.len() == specs.len() && same.iter().all(|c| c.is_running());
        let routed = ready
            && self
                .desired_routes(service_id, &same)
                .is_ok_and(|want| super::routes::all_routed(&want, &routes_before));
        let same_ids: Vec<String> = same.iter().map(|c| c.id.clone()).collect();
        let prepared = match start(plan.phase, same.len(), ready, routed) {
            Start::AlreadyPrepared => {
                // Resent prepare (or a service without published ports, which
                // has no routes to compare): the containers are ready.
                progress.step("prepared: new containers healthy, traffic not switched yet");
                let answer = AgentResponse::Prepared {
                    containers: same_ids,
                };
                return Ok((answer, None));
            }
            Start::AlreadyServing => {
                progress.step("deployment serving on this host");
                let previous = spec::previous_serving(&deployment_infos(&old), plan.deployment_id);
                let answer = AgentResponse::RolledOut {
                    containers: same_ids,
                    previous_deployment_id: previous,
                };
                // The old containers are retired here too (idempotent when a
                // resent request finds them stopped already): a service without
                // published ports is switched by this very answer.
                let retire = Retire {
                    old,
                    deployment_id: plan.deployment_id,
                    keep_previous: plan.keep_previous as usize,
                };
                return Ok((answer, Some(retire)));
            }
            Start::SwitchPrepared => Some(same_ids),
            Start::PreparedGone { remove_earlier } => {
                if remove_earlier {
                    progress.step("removing containers of an earlier attempt of this deployment");
                    self.remove_all(&same_ids).await;
                }
                return Err(err(
                    AgentErrorCode::NotFound,
                    "this deployment's prepared containers are gone from this host",
                ));
            }
            Start::Create { remove_earlier } => {
                if remove_earlier {
                    progress.step("removing containers of an earlier attempt of this deployment");
                    self.remove_all(&same_ids).await;
                }
                None
            }
        };

        // (b) create + start (a `switch` uses the prepared containers)
        let mut created: Vec<String> = prepared.clone().unwrap_or_default();
        let mut names: Vec<(String, String)> = Vec::new();
        for s in specs.iter().filter(|_| prepared.is_none()) {
            if cancel.is_cancelled() {
                return Err(self.abort_rollout(&created, cancelled(), None).await);
            }
            // A leftover with the same name (e.g. from a crash) is replaced:
            // only then is it worth a second round trip.
            let first = match self.docker.create(s).await {
                Err(DockerError::Conflict(m)) => {
                    tracing::info!(container = %s.name, conflict = %m, "replacing a leftover container");
                    if let Err(e) = self.docker.remove(&s.name).await {
                        tracing::warn!(error = %e, "could not remove the leftover container");
                    }
                    None
                }
                other => Some(other),
            };
            let result = match first {
                Some(r) => r,
                None => self.docker.create(s).await,
            };
            match result {
                Ok(id) => {
                    progress.step(format!("created container {}", s.name));
                    created.push(id.clone());
                    names.push((id, s.name.clone()));
                }
                Err(e) => {
                    let e = match e {
                        DockerError::NotFound(m) => err(AgentErrorCode::ImageMissing, m),
                        other => err(
                            AgentErrorCode::Docker,
                            format!("cannot create {}: {other}", s.name),
                        ),
                    };
                    return Err(self.abort_rollout(&created, e, None).await);
                }
            }
        }
        for (id, name) in &names {
            if let Err(e) = self.docker.start(id).await {
                let e = err(AgentErrorCode::Crashed, format!("cannot start {name}: {e}"));
                return Err(self.abort_rollout(&created, e, Some(id)).await);
            }
            progress.step(format!("started container {name}"));
        }

        // (c) wait healthy (nothing to wait for on a switch: `names` is empty)
        let timeout = Duration::from_secs(u64::from(plan.health_timeout_secs.max(1)));
        if let Err((e, failed)) = self
            .wait_all_healthy(&names, timeout, progress, cancel)
            .await
        {
            progress.step(format!(
                "rollout failed: {}; removing new containers",
                e.message
            ));
            return Err(self.abort_rollout(&created, e, failed.as_deref()).await);
        }

        if plan.phase == RolloutPhase::Prepare {
            progress.step("prepared: new containers healthy, traffic not switched yet");
            let answer = AgentResponse::Prepared {
                containers: created,
            };
            return Ok((answer, None));
        }

        // (d) switch traffic
        let mut new_containers = Vec::new();
        for id in &created {
            match self.docker.inspect(id).await {
                Ok(c) => new_containers.push(c),
                Err(e) => return Err(self.abort_rollout(&created, docker_err(e), None).await),
            }
        }
        let routes = match self.desired_routes(service_id, &new_containers) {
            Ok(r) => r,
            Err(e) => return Err(self.abort_rollout(&created, e, None).await),
        };
        if cancel.is_cancelled() {
            return Err(self.abort_rollout(&created, cancelled(), None).await);
        }
        if let Err(e) = self.switch_routes(&routes, &routes_before).await {
            progress.step(format!("switching traffic failed: {}", e.message));
            return Err(self.abort_rollout(&created, e, None).await);
        }
        // From here on the new deployment serves: no more aborts.
        if !routes.is_empty() {
            progress.step(format!(
                "traffic switched to the new containers ({})",
                routes.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        let mut ignored = Vec::new();
        self.delete_stale_routes(&routes, &routes_before, &mut ignored)
            .await;

        // (e) drain + stop old
        let drain = Duration::from_secs(u64::from(plan.drain_timeout_secs));
        self.drain_old(&routes, &routes_before, drain, progress)
            .await;
        let deps = deployment_infos(&old);
        let previous = spec::previous_serving(&deps, plan.deployment_id);
        let answer = AgentResponse::RolledOut {
            containers: created,
            previous_deployment_id: previous,
        };
        let retire = Retire {
            old,
            deployment_id: plan.deployment_id,
            keep_previous: plan.keep_previous as usize,
        };
        Ok((answer, Some(retire)))
    }

    /// Stops the old containers (kept for rollback) and removes those beyond
    /// the newest `keep_previous` earlier deployments.
    pub async fn retire(&self, r: Retire, progress: &Progress) {
        let deps = deployment_infos(&r.old);
        // Concurrently: each stop may take the engine's stop timeout.
        let stops = r.old.iter().filter(|c| c.is_up()).map(|c| async move {
            match self.docker.stop(&c.id).await {
                Ok(()) => progress.step(format!("stopped old container {}", c.name)),
                // Pruned meanwhile by the retire of an earlier rollout
                // (this list was read before that one finished).
                Err(DockerError::NotFound(_)) => {}
                Err(e) => progress.step(format!("could not stop old container {}: {e}", c.name)),
            }
        });
        futures_util::future::join_all(stops).await;
        let prune = spec::deployments_to_prune(&deps, r.deployment_id, r.keep_previous);
        for c in r
            .old
            .iter()
            .filter(|c| c.deployment_id.is_none_or(|d| prune.contains(&d)))
        {
            match self.docker.remove(&c.id).await {
                Ok(()) => progress.step(format!("removed old container {}", c.name)),
                Err(e) => progress.step(format!("could not remove old container {}: {e}", c.name)),
            }
        }
        progress.step("rollout complete");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::fixtures::container;
    use slipway_types::agent::ContainerState;

    #[test]
    fn fresh_requests_create() {
        for phase in [RolloutPhase::Full, RolloutPhase::Prepare] {
            assert_eq!(
                start(phase, 0, false, false),
                Start::Create {
                    remove_earlier: false
                }
            );
        }
        assert_eq!(
            start(RolloutPhase::Switch, 0, false, false),
            Start::PreparedGone {
                remove_earlier: false
            }
        );
    }

    #[test]
    fn resent_requests_answer_from_what_is_there() {
        assert_eq!(
            start(RolloutPhase::Prepare, 2, true, true),
            Start::AlreadyPrepared
        );
        assert_eq!(
            start(RolloutPhase::Full, 2, true, true),
            Start::AlreadyServing
        );
        assert_eq!(
            start(RolloutPhase::Switch, 2, true, true),
            Start::AlreadyServing
        );
        // Ready but not routed: a switch uses them, a full rollout starts over.
        assert_eq!(
            start(RolloutPhase::Switch, 2, true, false),
            Start::SwitchPrepared
        );
        assert_eq!(
            start(RolloutPhase::Full, 2, true, false),
            Start::Create {
                remove_earlier: true
            }
        );
        // Half of an earlier attempt: removed first.
        assert_eq!(
            start(RolloutPhase::Prepare, 1, false, false),
            Start::Create {
                remove_earlier: true
            }
        );
        assert_eq!(
            start(RolloutPhase::Switch, 1, false, false),
            Start::PreparedGone {
                remove_earlier: true
            }
        );
    }

    #[test]
    fn deployments_of_old_containers() {
        let (d1, d2) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let mut a = container("a", &[], &[]);
        a.deployment_id = Some(d1);
        a.release_number = 1;
        let mut b = container("b", &[], &[]);
        b.deployment_id = Some(d2);
        b.release_number = 2;
        b.state = ContainerState::Exited;
        let unlabelled = container("c", &[], &[]);
        let infos = deployment_infos(&[a, b, unlabelled]);
        assert_eq!(
            infos
                .iter()
                .map(|d| (d.deployment_id, d.running))
                .collect::<Vec<_>>(),
            vec![(d2, false), (d1, true)]
        );
    }
}
