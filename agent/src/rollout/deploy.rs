//! Rollout of a release on this host (`full`, or `prepare` then `switch` when
//! the deployment spans several hosts), and the retire of the old containers
//! once the new ones serve. How a (possibly resent) request starts is
//! [`start`], what a phase does under a strategy is [`work`]: plain functions.
//!
//! ```text
//!  start-first: create + start new → healthy → routes → Switched → drain → answer → retire (stop old)
//!  stop-first:  create new → stop old (each with its grace) → start new → healthy → routes → Switched → answer
//!               └ failed (crash, unhealthy, cancel): remove new → start the same old containers → healthy → routes back
//! ```
//!
//! Stop-first across several hosts: `prepare` only makes sure the image is
//! there (nothing may start while the old release runs on its volumes) and
//! `switch` does the whole recreate, host by host.
use super::routes::RouteSet;
use super::{cancelled, docker_err, err, or_cancel, Engine, Progress, LOG_LINES_ON_FAILURE};
use crate::docker::{CreateSpec, DockerError, ManagedContainer};
use crate::spec;
use slipway_proxy::RouteStatus;
use slipway_types::agent::{
    AgentError, AgentErrorCode, AgentResponse, ContainerState, RolloutPhase, RolloutPlan,
};
use slipway_types::api::RolloutStrategy;
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

/// The answer of a rollout whose new containers (`created`) serve, and
/// the retire of the service's `old` containers it leaves to do.
fn serving(
    plan: &RolloutPlan,
    created: Vec<String>,
    old: Vec<ManagedContainer>,
) -> (AgentResponse, Option<Retire>) {
    let previous = spec::previous_serving(&deployment_infos(&old), plan.deployment_id);
    let answer = AgentResponse::RolledOut {
        containers: created,
        previous_deployment_id: previous,
    };
    let retire = Retire {
        old,
        deployment_id: plan.deployment_id,
        keep_previous: plan.keep_previous as usize,
    };
    (answer, Some(retire))
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

/// What a rollout request does on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Work {
    /// Start-first: `Full` and `Prepare` start the new containers next to
    /// the old ones, `Full` and `Switch` switch the routes to them.
    StartFirst(RolloutPhase),
    /// Stop-first `prepare`: only the image; nothing starts while the old
    /// release runs.
    PullOnly,
    /// Stop-first `full` or `switch`: stop the old, start the new.
    Recreate,
}

fn work(strategy: RolloutStrategy, phase: RolloutPhase) -> Work {
    match (strategy, phase) {
        (RolloutStrategy::StartFirst, phase) => Work::StartFirst(phase),
        (RolloutStrategy::StopFirst, RolloutPhase::Prepare) => Work::PullOnly,
        (RolloutStrategy::StopFirst, RolloutPhase::Full | RolloutPhase::Switch) => Work::Recreate,
    }
}

/// The message of a failed stop-first rollout, after the previous
/// containers were (`restored: Ok`) or could not be (`Err`) brought back.
fn recreate_failure(failure: &str, previous: usize, restored: Result<(), &str>) -> String {
    match (previous, restored) {
        (0, _) => format!("{failure}; no earlier container ran on this host"),
        (_, Ok(())) => {
            format!("{failure}; the previous container(s) were started again and serve")
        }
        (_, Err(e)) => format!("{failure}; bringing the previous container(s) back failed: {e}"),
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
        let work = work(plan.strategy, plan.phase);

        let switch_only = work == Work::StartFirst(RolloutPhase::Switch);
        // (a) image
        if !switch_only {
            or_cancel(
                cancel,
                self.ensure_image(image, plan.registry_auth.as_ref(), progress),
            )
            .await?;
        }
        if work == Work::PullOnly {
            progress.step("prepared: image ready; stop-first starts the new release at the switch");
            let answer = AgentResponse::Prepared {
                containers: Vec::new(),
            };
            return Ok((answer, None));
        }

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
        // A stop-first switch is a whole recreate.
        let phase = match work {
            Work::Recreate => RolloutPhase::Full,
            _ => plan.phase,
        };
        let prepared = match start(phase, same.len(), ready, routed) {
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
                // The control plane that resent the request may not have
                // heard it the first time.
                progress.switched();
                // The old containers are retired here too (idempotent when a
                // resent request finds them stopped already): a service without
                // published ports is switched by this very answer.
                return Ok(serving(plan, same_ids, old));
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
        if work == Work::Recreate {
            return self
                .recreate(plan, &specs, old, &routes_before, progress, cancel)
                .await;
        }

        // (b) create + start (a `switch` uses the prepared containers)
        let (mut created, names) = match prepared {
            Some(ids) => (ids, Vec::new()),
            None => self.create_all(&specs, progress, cancel).await?,
        };
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
        if cancel.is_cancelled() {
            return Err(self.abort_rollout(&created, cancelled(), None).await);
        }
        let routes = match self.route_new(service_id, &created, &routes_before).await {
            Ok(r) => r,
            Err(e) => {
                progress.step(format!("switching traffic failed: {}", e.message));
                return Err(self.abort_rollout(&created, e, None).await);
            }
        };
        // From here on the new deployment serves: no more aborts.
        self.announce_switch(&routes, &routes_before, progress)
            .await;

        // (e) drain + stop old
        let drain = Duration::from_secs(u64::from(plan.drain_timeout_secs));
        self.drain_old(&routes, &routes_before, drain, progress)
            .await;
        Ok(serving(plan, std::mem::take(&mut created), old))
    }

    /// Creates the containers of `specs` (not started): their ids, and
    /// `(id, name)` of each. On failure removes those it created.
    async fn create_all(
        &self,
        specs: &[CreateSpec],
        progress: &Progress,
        cancel: &CancellationToken,
    ) -> Result<(Vec<String>, Vec<(String, String)>), AgentError> {
        let mut created: Vec<String> = Vec::new();
        let mut names: Vec<(String, String)> = Vec::new();
        for s in specs {
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
        Ok((created, names))
    }

    /// Puts the routes that make the containers `ids` serve (the previous
    /// routes stay when this fails); the routes put.
    pub(super) async fn route_new(
        &self,
        service_id: Uuid,
        ids: &[String],
        before: &[RouteStatus],
    ) -> Result<RouteSet, AgentError> {
        let mut containers = Vec::new();
        for id in ids {
            containers.push(self.docker.inspect(id).await.map_err(docker_err)?);
        }
        let routes = self.desired_routes(service_id, &containers)?;
        self.switch_routes(&routes, before).await?;
        Ok(routes)
    }

    /// The new containers serve now: says so (step and [`Progress::switched`])
    /// and removes the routes of ports no longer published.
    async fn announce_switch(
        &self,
        routes: &RouteSet,
        before: &[RouteStatus],
        progress: &Progress,
    ) {
        if !routes.is_empty() {
            progress.step(format!(
                "traffic switched to the new containers ({})",
                routes.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        progress.switched();
        let mut ignored = Vec::new();
        self.delete_stale_routes(routes, before, &mut ignored).await;
    }

    /// Stops `containers` all at once, each with its own stop grace period,
    /// and checks that no container of the service but `except` still runs.
    async fn stop_for_recreate(
        &self,
        service_id: Uuid,
        containers: &[&ManagedContainer],
        except: &[String],
        progress: &Progress,
    ) -> Result<(), AgentError> {
        let stops = containers.iter().map(|c| async move {
            self.docker.stop(&c.id).await.map_err(|e| {
                err(
                    AgentErrorCode::Docker,
                    format!("cannot stop {}: {e}", c.name),
                )
            })?;
            progress.step(format!("stopped old container {}", c.name));
            Ok::<(), AgentError>(())
        });
        futures_util::future::try_join_all(stops).await?;
        let still: Vec<String> = self
            .service_containers(service_id)
            .await?
            .into_iter()
            .filter(|c| c.is_up() && !except.contains(&c.id))
            .map(|c| c.name)
            .collect();
        if !still.is_empty() {
            return Err(err(
                AgentErrorCode::Docker,
                format!("still running after stop: {}", still.join(", ")),
            ));
        }
        Ok(())
    }

    /// Stop-first: the old containers stop (each with its grace period)
    /// before the new ones start, so two never run at once on a volume. A
    /// failure removes the new containers and starts the same old ones again.
    async fn recreate(
        &self,
        plan: &RolloutPlan,
        specs: &[CreateSpec],
        old: Vec<ManagedContainer>,
        routes_before: &[RouteStatus],
        progress: &Progress,
        cancel: &CancellationToken,
    ) -> Result<(AgentResponse, Option<Retire>), AgentError> {
        let service_id = plan.service.service_id;
        // (b) create (the old release still serves meanwhile)
        let (created, names) = self.create_all(specs, progress, cancel).await?;
        if cancel.is_cancelled() {
            return Err(self.abort_rollout(&created, cancelled(), None).await);
        }
        // (c) stop the old
        let previous: Vec<ManagedContainer> = old.iter().filter(|c| c.is_up()).cloned().collect();
        if !previous.is_empty() {
            progress.step(format!(
                "stop-first: stopping {} old container(s) before starting the new",
                previous.len()
            ));
        }
        let refs: Vec<&ManagedContainer> = previous.iter().collect();
        if let Err(e) = self
            .stop_for_recreate(service_id, &refs, &created, progress)
            .await
        {
            return Err(self
                .recreate_failed(service_id, &created, &previous, e, None, progress)
                .await);
        }
        // (d) start the new
        for (id, name) in &names {
            if cancel.is_cancelled() {
                return Err(self
                    .recreate_failed(service_id, &created, &previous, cancelled(), None, progress)
                    .await);
            }
            if let Err(e) = self.docker.start(id).await {
                let e = err(AgentErrorCode::Crashed, format!("cannot start {name}: {e}"));
                return Err(self
                    .recreate_failed(service_id, &created, &previous, e, Some(id), progress)
                    .await);
            }
            progress.step(format!("started container {name}"));
        }
        // (e) wait healthy
        let timeout = Duration::from_secs(u64::from(plan.health_timeout_secs.max(1)));
        if let Err((e, failed)) = self
            .wait_all_healthy(&names, timeout, progress, cancel)
            .await
        {
            return Err(self
                .recreate_failed(
                    service_id,
                    &created,
                    &previous,
                    e,
                    failed.as_deref(),
                    progress,
                )
                .await);
        }
        // (f) routes
        let before = self.current_routes(service_id).await?;
        let routes = match self.route_new(service_id, &created, &before).await {
            Ok(r) => r,
            Err(e) => {
                return Err(self
                    .recreate_failed(service_id, &created, &previous, e, None, progress)
                    .await)
            }
        };
        self.announce_switch(&routes, routes_before, progress).await;

        // The previous deployment is read from the old containers as they
        // were; they are stopped already, so the retire only prunes.
        let (answer, mut retire) = serving(plan, created, old);
        for c in retire
            .iter_mut()
            .flat_map(|r| r.old.iter_mut())
            .filter(|c| c.is_up())
        {
            c.state = ContainerState::Exited;
        }
        Ok((answer, retire))
    }

    /// A stop-first rollout failed with `e`: removes the new containers
    /// (`failed` gets its logs read first), starts the `previous` ones
    /// again, waits for them and routes to them. Cannot be cancelled.
    async fn recreate_failed(
        &self,
        service_id: Uuid,
        created: &[String],
        previous: &[ManagedContainer],
        e: AgentError,
        failed: Option<&str>,
        progress: &Progress,
    ) -> AgentError {
        progress.step(format!(
            "rollout failed: {}; removing the new containers",
            e.message
        ));
        // Removed (killed) before an old one starts: one at a time on the volumes.
        let mut e = self.abort_rollout(created, e, failed).await;
        if previous.is_empty() {
            e.message = recreate_failure(&e.message, 0, Ok(()));
            return e;
        }
        progress.step(format!(
            "starting the {} previous container(s) again",
            previous.len()
        ));
        let restored = self.restore_previous(service_id, previous, progress).await;
        if restored.is_ok() {
            progress.step("the previous containers serve again");
        }
        e.message = recreate_failure(
            &e.message,
            previous.len(),
            restored
                .as_ref()
                .map(|_| ())
                .map_err(|r| r.message.as_str()),
        );
        e
    }

    /// Starts the same old containers again, waits for them, routes to them.
    async fn restore_previous(
        &self,
        service_id: Uuid,
        previous: &[ManagedContainer],
        progress: &Progress,
    ) -> Result<(), AgentError> {
        let mut ids = Vec::new();
        for c in previous {
            self.docker.start(&c.id).await.map_err(docker_err)?;
            progress.step(format!("started previous container {}", c.name));
            ids.push((c.id.clone(), c.name.clone()));
        }
        self.wait_all_healthy(
            &ids,
            super::health::DEFAULT_HEALTH_TIMEOUT,
            progress,
            &CancellationToken::new(),
        )
        .await
        .map_err(|(e, _)| e)?;
        let before = self.current_routes(service_id).await?;
        let ids: Vec<String> = ids.into_iter().map(|(id, _)| id).collect();
        self.route_new(service_id, &ids, &before).await?;
        Ok(())
    }

    /// Stops the old containers (kept for rollback) and removes those beyond
    /// the newest `keep_previous` earlier deployments.
    pub async fn retire(&self, r: Retire, progress: &Progress) {
        let deps = deployment_infos(&r.old);
        // Concurrently (and concurrently with the retires of other rollouts),
        // each with the container's own stop grace period.
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
    fn stop_first_prepares_only_the_image_and_recreates_at_the_switch() {
        use RolloutPhase::{Full, Prepare, Switch};
        let stop = RolloutStrategy::StopFirst;
        assert_eq!(work(stop, Prepare), Work::PullOnly);
        assert_eq!(work(stop, Switch), Work::Recreate);
        assert_eq!(work(stop, Full), Work::Recreate);
        for phase in [Full, Prepare, Switch] {
            assert_eq!(
                work(RolloutStrategy::StartFirst, phase),
                Work::StartFirst(phase)
            );
        }
    }

    #[test]
    fn a_failed_recreate_says_what_became_of_the_previous_release() {
        assert_eq!(
            recreate_failure("container db exited with code 1 while starting", 1, Ok(())),
            "container db exited with code 1 while starting; the previous container(s) were started again and serve"
        );
        assert_eq!(
            recreate_failure("cancelled", 2, Err("container db-old not healthy after 60 s")),
            "cancelled; bringing the previous container(s) back failed: container db-old not healthy after 60 s"
        );
        assert_eq!(
            recreate_failure("cancelled", 0, Ok(())),
            "cancelled; no earlier container ran on this host"
        );
    }

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
