//! The deploy engine: turns queued deployments into running containers
//! through the agents, one deployment at a time per service.
//!
//! Durable: every transition is in the store. A running deployment carries a
//! lease (`claimed_by`, `lease_until`) its driver renews; when a control
//! plane dies mid-deploy the lease runs out and the next engine (the same
//! server restarted, or another replica) resolves it: marked `failed` and its
//! hosts reconciled back to the release that served before. Agents are
//! reconciled on every (re)connect, so a host that dropped mid-deploy
//! converges when it returns.
//!
//! ```text
//! claim (queued → running, lease) → per host in order: Rollout ─ok─▶ next host
//!                                        │ error
//!                                        ▼
//!                 Revert the hosts already switched → failed | rolled_back
//! all hosts switched → succeeded
//! ```
use super::plan::{self, DRAIN_TIMEOUT_SECS, KEEP_PREVIOUS};
use crate::{
    agents::{AgentHub, CallError},
    audit::{ActorInfo, AuditTx, Event},
    live::{Live, LiveBus},
    secrets::secret_aad,
    startup::AppState,
    store::entities::{
        deployment, deployment_step, deployment_target, environment, host, host_environment,
        project, release, service, variable,
    },
};
use actix_web::web;
use chrono::{Duration as ChronoDuration, SubsecRound, Utc};
use sea_orm::{
    sea_query::{Expr, Query},
    ActiveValue::Set,
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde_json::json;
use slipway_types::{
    agent::{
        AgentError, AgentErrorCode, AgentEvent, AgentRequest, AgentResponse, ContainerSpec,
        DesiredService, ReconcilePlan, RegistryAuth, RevertPlan, RolloutPhase, RolloutPlan,
        Sensitive, ServiceKey,
    },
    api::{DeploymentState, DeploymentStep, LiveEvent, ServiceSpec},
    ImageRef,
};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Notify};
use uuid::Uuid;

/// A running deployment's lease; renewed every [`LEASE_RENEW`].
const LEASE: Duration = Duration::from_secs(15);
const LEASE_RENEW: Duration = Duration::from_secs(5);
/// How often the engine looks for queued work when nobody woke it.
const POLL: Duration = Duration::from_millis(250);
const RECOVER_EVERY: Duration = Duration::from_secs(5);
/// A host marked online that no control plane has heard from for this long
/// is offline (connections refresh `last_seen_at` about every 30 s).
const HOST_SILENT_SECS: i64 = 90;
const REVERT_TIMEOUT: Duration = Duration::from_secs(120);
const RECONCILE_TIMEOUT: Duration = Duration::from_secs(120);
/// Secrets that, when set in an environment, authenticate image pulls.
pub const REGISTRY_USERNAME: &str = "REGISTRY_USERNAME";
pub const REGISTRY_PASSWORD: &str = "REGISTRY_PASSWORD";
pub const REGISTRY_SERVER: &str = "REGISTRY_SERVER";

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] DbErr),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error("{0}")]
    Api(#[from] crate::error::ApiError),
}

/// Wakes the engine at once instead of at its next poll.
#[derive(Clone, Default)]
pub struct EngineWaker(Arc<Notify>);

impl EngineWaker {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// How a deployment ended, as the engine saw it.
enum Outcome {
    Succeeded,
    Failed(String),
    RolledBack(String),
    /// Cancelled through the API meanwhile (already terminal in the store).
    Cancelled,
}

struct Engine {
    db: DatabaseConnection,
    /// The step log's writer (see [`StepWriter`]).
    steps: mpsc::UnboundedSender<StepMsg>,
    hub: AgentHub,
    live: LiveBus,
    state: web::Data<AppState>,
    /// Identifies this process in leases.
    instance: String,
    /// Deployments this process drives now.
    driving: Mutex<HashSet<Uuid>>,
    /// Queued deployments already told they wait for a host.
    waiting: Mutex<HashSet<Uuid>>,
}

/// Starts the engine on the current runtime.
pub fn spawn(state: web::Data<AppState>) {
    let (steps, rx) = mpsc::unbounded_channel();
    tokio::spawn(
        StepWriter {
            db: state.db.clone(),
            live: state.live.clone(),
        }
        .run(rx),
    );
    let engine = Arc::new(Engine {
        db: state.db.clone(),
        steps,
        hub: state.hub.clone(),
        live: state.live.clone(),
        instance: format!("engine-{}", Uuid::new_v4()),
        driving: Mutex::new(HashSet::new()),
        waiting: Mutex::new(HashSet::new()),
        state,
    });
    tokio::spawn(engine.run());
}

fn engine_actor() -> ActorInfo {
    ActorInfo {
        name: "engine".into(),
        source_ip: None,
        request_id: None,
    }
}

impl Engine {
    async fn run(self: Arc<Self>) {
        let mut connected = self.hub.subscribe_connected();
        let mut poll = tokio::time::interval(POLL);
        let mut recover = tokio::time::interval(RECOVER_EVERY);
        let waker = self.state.engine.0.clone();
        tracing::info!(instance = %self.instance, "deploy engine started");
        loop {
            tokio::select! {
                _ = poll.tick() => {}
                _ = waker.notified() => {}
                _ = recover.tick() => {
                    if let Err(e) = self.recover_stale().await {
                        tracing::warn!(error = %e, "recovering stale deployments failed");
                    }
                    continue;
                }
                host = connected.recv() => {
                    if let Ok(host) = host {
                        let me = self.clone();
                        tokio::spawn(async move { reconcile_host(&me.db, &me.hub, host).await });
                    }
                    continue;
                }
            }
            match self.claim_queued().await {
                Ok(ids) => {
                    for id in ids {
                        let me = self.clone();
                        tokio::spawn(async move { me.drive(id).await });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "claiming queued deployments failed"),
            }
        }
    }

    fn publish_state(&self, d: &deployment::Model, state: DeploymentState, number: i64) {
        self.live.publish(Live::State {
            deployment_id: d.id,
            state,
            reason: d.reason.clone(),
        });
        self.live.publish(Live::Event(LiveEvent::Deployment {
            id: d.id,
            service_id: d.service_id,
            environment_id: d.environment_id,
            state,
            release_number: number,
        }));
    }

    /// Appends one line to the deployment's step log. It is stored and then
    /// streamed by the [`StepWriter`], in order, without the caller waiting
    /// for the store (steps are not state: nothing acts on them).
    async fn step(&self, deployment_id: Uuid, message: String) {
        tracing::info!(deployment = %deployment_id, "{message}");
        // One timestamp, at the store's precision, so a stream that replays
        // stored steps can recognise the same line arriving live.
        let at = Utc::now().trunc_subsecs(6);
        let _ = self.steps.send(StepMsg::Step {
            deployment_id,
            step: DeploymentStep { at, message },
        });
    }

    /// Waits until every step appended so far is stored (and streamed).
    async fn flush_steps(&self) {
        let (tx, rx) = oneshot::channel();
        if self.steps.send(StepMsg::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    // ------------------------------------------------------------ claiming

    /// Claims the oldest queued deployment of every service that has none
    /// running. The audit transaction serialises claims across replicas.
    async fn claim_queued(&self) -> Result<Vec<Uuid>, EngineError> {
        let queued = deployment::Entity::find()
            .filter(deployment::Column::State.eq(DeploymentState::Queued.as_str()))
            .order_by_asc(deployment::Column::CreatedAt)
            .limit(200)
            .all(&self.db)
            .await?;
        let mut seen = HashSet::new();
        let mut claimed = Vec::new();
        for d in queued {
            if !seen.insert(d.service_id) {
                continue;
            }
            // Like a CI job without a runner, a deployment waits (queued,
            // cancellable) until a host of its environment is online.
            let hosts = self.hosts_of(d.environment_id).await?;
            if !hosts.iter().any(|h| self.hub.is_online(h.id)) {
                if !hosts.is_empty() && self.lock_waiting().insert(d.id) {
                    self.step(
                        d.id,
                        "waiting for a host of this environment to come online".into(),
                    )
                    .await;
                }
                continue;
            }
            if self.claim(&d).await? {
                claimed.push(d.id);
            }
        }
        Ok(claimed)
    }

    async fn claim(&self, d: &deployment::Model) -> Result<bool, EngineError> {
        let mut tx = AuditTx::begin(&self.db).await?;
        let busy = deployment::Entity::find()
            .filter(deployment::Column::ServiceId.eq(d.service_id))
            .filter(deployment::Column::State.eq(DeploymentState::Running.as_str()))
            .one(&tx.txn)
            .await?
            .is_some();
        if busy {
            return Ok(false);
        }
        let now = Utc::now();
        let res = deployment::Entity::update_many()
            .col_expr(
                deployment::Column::State,
                Expr::value(DeploymentState::Running.as_str()),
            )
            .col_expr(deployment::Column::StartedAt, Expr::value(now))
            .col_expr(
                deployment::Column::ClaimedBy,
                Expr::value(self.instance.clone()),
            )
            .col_expr(deployment::Column::LeaseUntil, Expr::value(lease_end()))
            .filter(deployment::Column::Id.eq(d.id))
            .filter(deployment::Column::State.eq(DeploymentState::Queued.as_str()))
            .exec(&tx.txn)
            .await?;
        if res.rows_affected != 1 {
            return Ok(false);
        }
        tx.record(
            &engine_actor(),
            Event::new(
                "deployment.start",
                "deployment",
                d.id,
                json!({"service_id": d.service_id, "release_id": d.release_id}),
            ),
        )
        .await?;
        tx.commit().await?;
        self.lock_driving().insert(d.id);
        self.lock_waiting().remove(&d.id);
        let number = release_number(&self.db, d.release_id).await;
        self.publish_state(d, DeploymentState::Running, number);
        Ok(true)
    }

    fn lock_waiting(&self) -> std::sync::MutexGuard<'_, HashSet<Uuid>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_driving(&self) -> std::sync::MutexGuard<'_, HashSet<Uuid>> {
        self.driving.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ------------------------------------------------------------ driving

    async fn drive(self: Arc<Self>, id: Uuid) {
        let renew = {
            let me = self.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(LEASE_RENEW);
                loop {
                    every.tick().await;
                    if let Err(e) = me.renew_lease(id).await {
                        tracing::warn!(deployment = %id, error = %e, "lease renewal failed");
                    }
                }
            })
        };
        let outcome = match self.execute(id).await {
            Ok(o) => o,
            Err(e) => Outcome::Failed(format!("internal error: {e}")),
        };
        renew.abort();
        if let Err(e) = self.finish(id, outcome).await {
            tracing::error!(deployment = %id, error = %e, "could not record the outcome");
        }
        self.lock_driving().remove(&id);
    }

    async fn renew_lease(&self, id: Uuid) -> Result<(), DbErr> {
        deployment::Entity::update_many()
            .col_expr(deployment::Column::LeaseUntil, Expr::value(lease_end()))
            .filter(deployment::Column::Id.eq(id))
            .filter(deployment::Column::ClaimedBy.eq(self.instance.clone()))
            .filter(deployment::Column::State.eq(DeploymentState::Running.as_str()))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    async fn execute(&self, id: Uuid) -> Result<Outcome, EngineError> {
        let ctx = match Context::load(&self.db, id).await? {
            Ok(ctx) => ctx,
            Err(reason) => return Ok(Outcome::Failed(reason)),
        };
        let (container, registry_auth) = match self.resolve_container(&ctx).await? {
            Ok(c) => c,
            Err(reason) => return Ok(Outcome::Failed(reason)),
        };
        let hosts = self.hosts_of(ctx.service.environment_id).await?;
        if hosts.is_empty() {
            return Ok(Outcome::Failed(format!(
                "no host is assigned to environment {}: enroll a host and assign it on the Hosts page",
                ctx.environment.name
            )));
        }
        let (online, offline): (Vec<_>, Vec<_>) =
            hosts.into_iter().partition(|h| self.hub.is_online(h.id));
        for h in &offline {
            self.step(id, format!("host {} is offline: skipped", h.name))
                .await;
        }
        if online.is_empty() {
            return Ok(Outcome::Failed(format!(
                "every host of environment {} is offline",
                ctx.environment.name
            )));
        }
        let targets = plan::spread(ctx.spec.replicas.max(1), &online);
        // One statement for all hosts.
        let now = Utc::now();
        let rows = targets.iter().map(|(h, n)| deployment_target::ActiveModel {
            deployment_id: Set(id),
            host_id: Set(h.id),
            replicas: Set(i32::try_from(*n).unwrap_or(i32::MAX)),
            state: Set("pending".into()),
            updated_at: Set(now),
        });
        if !targets.is_empty() {
            deployment_target::Entity::insert_many(rows)
                .exec_without_returning(&self.db)
                .await?;
        }
        self.step(
            id,
            format!(
                "release #{} ({}) → {} replica(s) on {}",
                ctx.release.number,
                ctx.release.image,
                ctx.spec.replicas.max(1),
                targets
                    .iter()
                    .map(|(h, n)| format!("{} ×{n}", h.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .await;

        let health_timeout = plan::health_timeout_secs(&ctx.spec);
        let rollout = |replicas: u32, phase: RolloutPhase| {
            AgentRequest::Rollout(RolloutPlan {
                deployment_id: id,
                release_id: ctx.release.id,
                release_number: ctx.release.number,
                service: ctx.key.clone(),
                container: container.clone(),
                replicas,
                keep_previous: KEEP_PREVIOUS,
                health_timeout_secs: health_timeout,
                drain_timeout_secs: DRAIN_TIMEOUT_SECS,
                registry_auth: registry_auth.clone(),
                phase,
            })
        };
        let timeout = plan::rollout_timeout(health_timeout);

        // Several hosts: prepare them all at once, then switch one by one.
        let phased = targets.len() > 1;
        let mut prepared: Vec<&host::Model> = Vec::new();
        if phased {
            self.step(id, format!("preparing {} hosts in parallel", targets.len()))
                .await;
            let calls = targets.iter().map(|(h, n)| {
                let request = rollout(*n, RolloutPhase::Prepare);
                async move { (h, self.call_with_steps(id, h, request, timeout).await) }
            });
            let results = tokio::select! {
                r = futures_util::future::join_all(calls) => Some(r),
                _ = self.cancelled(id) => None,
            };
            let Some(results) = results else {
                // Dropped calls are cancelled on the agents, which remove
                // what they started; reconcile to be sure.
                for (h, _) in &targets {
                    self.reconcile_later(h.id);
                }
                return Ok(Outcome::Cancelled);
            };
            let mut failures = Vec::new();
            for (h, r) in results {
                match r {
                    Ok(AgentResponse::Prepared { .. }) => prepared.push(h),
                    Ok(other) => failures.push(format!(
                        "{}: unexpected answer from the agent: {other:?}",
                        h.name
                    )),
                    Err(e) => {
                        self.set_target(id, h.id, "failed").await?;
                        if !matches!(e, CallError::Agent(_)) {
                            self.reconcile_later(h.id);
                        }
                        failures.push(format!("{}: {}", h.name, describe_call_error(&e)));
                    }
                }
            }
            if !failures.is_empty() {
                let reason = failures.join("; ");
                self.step(id, reason.clone()).await;
                self.revert_hosts(&ctx, &prepared).await;
                return Ok(Outcome::Failed(reason));
            }
        }

        let mut switched: Vec<&host::Model> = Vec::new();
        for (h, n) in &targets {
            let phase = if phased {
                RolloutPhase::Switch
            } else {
                RolloutPhase::Full
            };
            self.set_target(id, h.id, "running").await?;
            let what = if phased {
                "switching traffic"
            } else {
                "rolling out"
            };
            self.step(id, format!("{}: {what} ({n} replica(s))", h.name))
                .await;
            let call = self.call_with_steps(id, h, rollout(*n, phase), timeout);
            let result = tokio::select! {
                r = call => Some(r),
                _ = self.cancelled(id) => None,
            };
            let failure = match result {
                None => {
                    self.set_target(id, h.id, "failed").await?;
                    self.step(id, format!("{}: cancelled; putting hosts back", h.name))
                        .await;
                    self.revert_hosts(&ctx, &switched).await;
                    self.revert_hosts(&ctx, &not_switched(&prepared, &switched, h))
                        .await;
                    if !self.hub.is_online(h.id) {
                        return Ok(Outcome::Cancelled);
                    }
                    // The agent cleans up what it started on its own; make sure.
                    self.reconcile_later(h.id);
                    return Ok(Outcome::Cancelled);
                }
                Some(Ok(AgentResponse::RolledOut { containers, .. })) => {
                    self.set_target(id, h.id, "switched").await?;
                    self.step(
                        id,
                        format!(
                            "{}: serving release #{} ({} container(s))",
                            h.name,
                            ctx.release.number,
                            containers.len()
                        ),
                    )
                    .await;
                    switched.push(h);
                    continue;
                }
                Some(Ok(other)) => format!("unexpected answer from the agent: {other:?}"),
                Some(Err(e)) => {
                    if !matches!(e, CallError::Agent(_)) {
                        // The host's state is unknown: reconcile it once it is back.
                        self.reconcile_later(h.id);
                    }
                    describe_call_error(&e)
                }
            };
            self.set_target(id, h.id, "failed").await?;
            let reason = format!("{}: {failure}", h.name);
            self.step(id, reason.clone()).await;
            self.revert_hosts(&ctx, &not_switched(&prepared, &switched, h))
                .await;
            if switched.is_empty() {
                return Ok(Outcome::Failed(reason));
            }
            self.revert_hosts(&ctx, &switched).await;
            return Ok(Outcome::RolledBack(format!(
                "{reason}; rolled back {} host(s) already switched",
                switched.len()
            )));
        }
        Ok(Outcome::Succeeded)
    }

    /// Resolves when the deployment was cancelled through the API.
    async fn cancelled(&self, id: Uuid) {
        let mut rx = self.live.subscribe();
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                ev = rx.recv() => {
                    if let Ok(Live::State { deployment_id, state: DeploymentState::Cancelled, .. }) = ev {
                        if deployment_id == id {
                            return;
                        }
                    }
                }
                _ = every.tick() => {
                    // Another replica may have taken the cancel request.
                    let st = deployment::Entity::find_by_id(id).one(&self.db).await;
                    if let Ok(Some(d)) = st {
                        if d.state == DeploymentState::Cancelled.as_str() {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Calls the agent of `h`, storing its progress events as steps.
    async fn call_with_steps(
        &self,
        id: Uuid,
        h: &host::Model,
        request: AgentRequest,
        timeout: Duration,
    ) -> Result<AgentResponse, CallError> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let call = self.hub.call(h.id, request, Some(tx), timeout);
        tokio::pin!(call);
        loop {
            tokio::select! {
                r = &mut call => {
                    while let Ok(ev) = rx.try_recv() {
                        self.event_step(id, h, ev).await;
                    }
                    return r;
                }
                Some(ev) = rx.recv() => self.event_step(id, h, ev).await,
            }
        }
    }

    async fn event_step(&self, id: Uuid, h: &host::Model, ev: AgentEvent) {
        let line = match ev {
            AgentEvent::Step { message } => message,
            AgentEvent::Log { line, .. } => line,
        };
        self.step(id, format!("{}: {line}", h.name)).await;
    }

    /// Puts hosts that already serve the new release back on the previous
    /// one, last switched first.
    async fn revert_hosts(&self, ctx: &Context, switched: &[&host::Model]) {
        for h in switched.iter().rev() {
            let restore = match self.serving_before(ctx, h.id).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the deployment history failed");
                    None
                }
            };
            let request = AgentRequest::Revert(RevertPlan {
                service: ctx.key.clone(),
                failed_deployment_id: ctx.deployment.id,
                restore_deployment_id: restore,
                drain_timeout_secs: DRAIN_TIMEOUT_SECS,
            });
            let r = self
                .call_with_steps(ctx.deployment.id, h, request, REVERT_TIMEOUT)
                .await;
            let msg = match r {
                Ok(_) => {
                    let _ = self.set_target(ctx.deployment.id, h.id, "reverted").await;
                    format!("{}: reverted to the previous release", h.name)
                }
                Err(e) => {
                    self.reconcile_later(h.id);
                    format!(
                        "{}: revert failed ({e}); the host is reconciled when reachable",
                        h.name
                    )
                }
            };
            self.step(ctx.deployment.id, msg).await;
        }
    }

    /// The newest succeeded deployment of the service on `host_id` before
    /// this one.
    async fn serving_before(&self, ctx: &Context, host_id: Uuid) -> Result<Option<Uuid>, DbErr> {
        let history = history_on_host(&self.db, ctx.service.id, host_id).await?;
        let history: Vec<_> = history
            .into_iter()
            .filter(|(id, _)| *id != ctx.deployment.id)
            .collect();
        Ok(plan::desired(&history).0)
    }

    async fn set_target(&self, id: Uuid, host_id: Uuid, state: &str) -> Result<(), DbErr> {
        deployment_target::Entity::update_many()
            .col_expr(deployment_target::Column::State, Expr::value(state))
            .col_expr(
                deployment_target::Column::UpdatedAt,
                Expr::value(Utc::now()),
            )
            .filter(deployment_target::Column::DeploymentId.eq(id))
            .filter(deployment_target::Column::HostId.eq(host_id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    async fn finish(&self, id: Uuid, outcome: Outcome) -> Result<(), EngineError> {
        let (state, reason, action) = match outcome {
            Outcome::Succeeded => (DeploymentState::Succeeded, None, "deployment.succeed"),
            Outcome::Failed(r) => (DeploymentState::Failed, Some(r), "deployment.fail"),
            Outcome::RolledBack(r) => (
                DeploymentState::RolledBack,
                Some(r),
                "deployment.rolled_back",
            ),
            Outcome::Cancelled => {
                self.step(id, "stopped after cancellation".into()).await;
                self.flush_steps().await;
                return Ok(());
            }
        };
        self.resolve(id, state, reason, action, |_| true).await?;
        Ok(())
    }

    /// running → `state`, conditionally, with its audit entry and events.
    /// `still_ours` decides on the re-read row whether to go ahead.
    async fn resolve(
        &self,
        id: Uuid,
        state: DeploymentState,
        reason: Option<String>,
        action: &'static str,
        still_ours: impl Fn(&deployment::Model) -> bool,
    ) -> Result<bool, EngineError> {
        // The step log is complete in the store before the state is final.
        self.flush_steps().await;
        let mut tx = AuditTx::begin(&self.db).await?;
        let Some(d) = deployment::Entity::find_by_id(id).one(&tx.txn).await? else {
            return Ok(false);
        };
        if d.state != DeploymentState::Running.as_str() || !still_ours(&d) {
            return Ok(false);
        }
        let now = Utc::now();
        deployment::Entity::update_many()
            .col_expr(deployment::Column::State, Expr::value(state.as_str()))
            .col_expr(deployment::Column::Reason, Expr::value(reason.clone()))
            .col_expr(deployment::Column::FinishedAt, Expr::value(now))
            .col_expr(
                deployment::Column::LeaseUntil,
                Expr::value(None::<chrono::DateTime<Utc>>),
            )
            .filter(deployment::Column::Id.eq(id))
            .filter(deployment::Column::State.eq(DeploymentState::Running.as_str()))
            .exec(&tx.txn)
            .await?;
        tx.record(
            &engine_actor(),
            Event::new(
                action,
                "deployment",
                id,
                json!({"service_id": d.service_id, "release_id": d.release_id, "reason": reason}),
            ),
        )
        .await?;
        tx.commit().await?;
        let number = release_number(&self.db, d.release_id).await;
        let d = deployment::Model {
            reason: reason.clone(),
            ..d
        };
        let line = match &reason {
            Some(r) => format!("{}: {r}", state.as_str()),
            None => state.as_str().to_string(),
        };
        self.step(id, line).await;
        // Streams see the last line before the final state.
        self.flush_steps().await;
        self.publish_state(&d, state, number);
        Ok(true)
    }

    // ------------------------------------------------------------ recovery

    /// Running deployments whose driver stopped renewing its lease (the
    /// control plane died): mark them failed and put their hosts back.
    async fn recover_stale(&self) -> Result<(), EngineError> {
        self.mark_silent_hosts_offline().await?;
        let stale = deployment::Entity::find()
            .filter(deployment::Column::State.eq(DeploymentState::Running.as_str()))
            .filter(
                sea_orm::Condition::any()
                    .add(deployment::Column::LeaseUntil.is_null())
                    .add(deployment::Column::LeaseUntil.lt(Utc::now())),
            )
            .all(&self.db)
            .await?;
        for d in stale {
            if self.lock_driving().contains(&d.id) {
                continue;
            }
            let resolved = self
                .resolve(
                    d.id,
                    DeploymentState::Failed,
                    Some(
                        "the control plane stopped during this deployment; its hosts are put back on the previous release"
                            .into(),
                    ),
                    "deployment.fail",
                    |row| {
                        row.lease_until.is_none_or(|t| t < Utc::now())
                    },
                )
                .await?;
            if !resolved {
                continue;
            }
            let hosts = deployment_target::Entity::find()
                .filter(deployment_target::Column::DeploymentId.eq(d.id))
                .all(&self.db)
                .await?;
            for t in hosts {
                self.reconcile_later(t.host_id);
            }
        }
        Ok(())
    }

    /// Hosts still marked online whose agent is connected to no control
    /// plane (this one crashed, or the replica holding it did): a live
    /// connection refreshes `last_seen_at` every ~30 s.
    async fn mark_silent_hosts_offline(&self) -> Result<(), DbErr> {
        let cutoff = Utc::now() - ChronoDuration::seconds(HOST_SILENT_SECS);
        let silent = host::Entity::find()
            .filter(host::Column::Status.eq("online"))
            .filter(
                sea_orm::Condition::any()
                    .add(host::Column::LastSeenAt.is_null())
                    .add(host::Column::LastSeenAt.lt(cutoff)),
            )
            .all(&self.db)
            .await?;
        for h in silent.into_iter().filter(|h| !self.hub.is_online(h.id)) {
            let res = host::Entity::update_many()
                .col_expr(host::Column::Status, Expr::value("offline"))
                .filter(host::Column::Id.eq(h.id))
                .filter(host::Column::Status.eq("online"))
                .exec(&self.db)
                .await?;
            if res.rows_affected == 1 {
                tracing::info!(host = %h.name, "no agent heard from: offline");
                self.live.publish(Live::Event(LiveEvent::Host {
                    id: h.id,
                    status: slipway_types::api::HostStatus::Offline,
                }));
            }
        }
        Ok(())
    }

    /// Reconciles `host_id` now when its agent is connected; otherwise that
    /// happens when it reconnects.
    fn reconcile_later(&self, host_id: Uuid) {
        if self.hub.is_online(host_id) {
            let (db, hub) = (self.db.clone(), self.hub.clone());
            tokio::spawn(async move { reconcile_host(&db, &hub, host_id).await });
        }
    }

    // ------------------------------------------------------------ inputs

    async fn hosts_of(&self, environment_id: Uuid) -> Result<Vec<host::Model>, DbErr> {
        host::Entity::find()
            .filter(
                host::Column::Id.in_subquery(
                    Query::select()
                        .column(host_environment::Column::HostId)
                        .from(host_environment::Entity)
                        .and_where(host_environment::Column::EnvironmentId.eq(environment_id))
                        .to_owned(),
                ),
            )
            .filter(host::Column::Status.ne("revoked"))
            .order_by_asc(host::Column::Name)
            .all(&self.db)
            .await
    }

    /// The container spec with the environment's variables and decrypted
    /// secrets, and the registry credentials when the environment has them;
    /// `Err(reason)` when a referenced secret is missing.
    async fn resolve_container(
        &self,
        ctx: &Context,
    ) -> Result<Result<(ContainerSpec, Option<RegistryAuth>), String>, EngineError> {
        let rows = variable::Entity::find()
            .filter(variable::Column::EnvironmentId.eq(ctx.service.environment_id))
            .all(&self.db)
            .await?;
        let mut vars = BTreeMap::new();
        let mut secrets = BTreeMap::new();
        for v in rows {
            if v.secret {
                let (Some(ct), Some(nonce)) = (&v.ciphertext, &v.nonce) else {
                    continue;
                };
                let aad = secret_aad(v.environment_id, &v.name, v.version);
                match self.state.key.open(ct, nonce, &aad) {
                    Ok(plain) => {
                        secrets.insert(v.name, String::from_utf8_lossy(&plain).into_owned());
                    }
                    Err(_) => {
                        return Ok(Err(format!(
                            "secret {} cannot be decrypted with this server's master key",
                            v.name
                        )))
                    }
                }
            } else if let Some(value) = v.value {
                vars.insert(v.name, value);
            }
        }
        let auth = match (
            vars.get(REGISTRY_USERNAME)
                .or(secrets.get(REGISTRY_USERNAME)),
            secrets.get(REGISTRY_PASSWORD),
        ) {
            (Some(user), Some(password)) => Some(RegistryAuth {
                username: user.clone(),
                password: Sensitive(password.clone()),
                server: vars.get(REGISTRY_SERVER).cloned(),
            }),
            _ => None,
        };
        let env = match plan::container_env(&ctx.spec, &vars, &secrets) {
            Ok(env) => env,
            Err(e) => return Ok(Err(e.to_string())),
        };
        Ok(Ok((plan::container_spec(&ctx.spec, env, &ctx.key), auth)))
    }
}

/// Converges a host to what the store says must run there: for each
/// service with history on the host and no deployment in progress, the
/// newest succeeded deployment serves and a few earlier ones are kept.
async fn reconcile_host(db: &DatabaseConnection, hub: &AgentHub, host_id: Uuid) {
    match reconcile_plan(db, host_id).await {
        Ok(Some((name, plan))) => {
            let r = hub
                .call(
                    host_id,
                    AgentRequest::Reconcile(plan),
                    None,
                    RECONCILE_TIMEOUT,
                )
                .await;
            match r {
                Ok(AgentResponse::Reconciled { actions }) if !actions.is_empty() => {
                    tracing::info!(host = %name, ?actions, "host reconciled");
                    let event = Event::new(
                        "host.reconcile",
                        "host",
                        host_id,
                        json!({"host": name, "actions": actions}),
                    );
                    if let Err(e) = crate::audit::record_alone(db, &engine_actor(), event).await {
                        tracing::warn!(error = %e, "could not audit a reconcile");
                    }
                }
                Ok(_) => tracing::debug!(host = %name, "host already converged"),
                Err(e) => tracing::warn!(host = %name, error = %e, "reconcile failed"),
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(host = %host_id, error = %e, "reconcile plan failed"),
    }
}

async fn reconcile_plan(
    db: &DatabaseConnection,
    host_id: Uuid,
) -> Result<Option<(String, ReconcilePlan)>, DbErr> {
    let Some(h) = host::Entity::find_by_id(host_id).one(db).await? else {
        return Ok(None);
    };
    let service_ids: Vec<Uuid> = deployment::Entity::find()
        .select_only()
        .column(deployment::Column::ServiceId)
        .distinct()
        .filter(deployment::Column::Id.in_subquery(targets_on(host_id)))
        .into_tuple()
        .all(db)
        .await?;
    let mut services = Vec::new();
    for sid in service_ids {
        let running = deployment::Entity::find()
            .filter(deployment::Column::ServiceId.eq(sid))
            .filter(deployment::Column::State.eq(DeploymentState::Running.as_str()))
            .one(db)
            .await?
            .is_some();
        if running {
            continue;
        }
        let Some(svc) = service::Entity::find_by_id(sid).one(db).await? else {
            continue;
        };
        let key = service_key(db, &svc).await?;
        let history = history_on_host(db, sid, host_id).await?;
        let (serving, keep) = plan::desired(&history);
        services.push(DesiredService {
            service: key,
            serving,
            keep,
            drain_timeout_secs: DRAIN_TIMEOUT_SECS,
        });
    }
    if services.is_empty() {
        return Ok(None);
    }
    Ok(Some((h.name, ReconcilePlan { services })))
}

/// Everything a deployment needs, read once.
struct Context {
    deployment: deployment::Model,
    release: release::Model,
    service: service::Model,
    environment: environment::Model,
    spec: ServiceSpec,
    key: ServiceKey,
}

impl Context {
    /// `Ok(Err(reason))` when the deployment cannot run (its rows are gone
    /// or unreadable).
    async fn load(db: &DatabaseConnection, id: Uuid) -> Result<Result<Self, String>, EngineError> {
        let Some(deployment) = deployment::Entity::find_by_id(id).one(db).await? else {
            return Ok(Err("the deployment disappeared".into()));
        };
        let Some(release) = release::Entity::find_by_id(deployment.release_id)
            .one(db)
            .await?
        else {
            return Ok(Err("its release disappeared".into()));
        };
        let Some(service) = service::Entity::find_by_id(deployment.service_id)
            .one(db)
            .await?
        else {
            return Ok(Err("its service was deleted".into()));
        };
        let Some(environment) = environment::Entity::find_by_id(service.environment_id)
            .one(db)
            .await?
        else {
            return Ok(Err("its environment was deleted".into()));
        };
        let mut spec: ServiceSpec = match serde_json::from_str(&release.config) {
            Ok(s) => s,
            Err(e) => return Ok(Err(format!("the release's config is unreadable: {e}"))),
        };
        match ImageRef::try_from(release.image.clone()) {
            Ok(img) => spec.image = img,
            Err(e) => return Ok(Err(format!("the release's image is invalid: {e}"))),
        }
        let key = service_key(db, &service).await?;
        Ok(Ok(Context {
            deployment,
            release,
            service,
            environment,
            spec,
            key,
        }))
    }
}

async fn service_key(db: &DatabaseConnection, svc: &service::Model) -> Result<ServiceKey, DbErr> {
    let env = environment::Entity::find_by_id(svc.environment_id)
        .one(db)
        .await?
        .map(|e| e.name)
        .unwrap_or_default();
    let proj = project::Entity::find_by_id(svc.project_id)
        .one(db)
        .await?
        .map(|p| p.name)
        .unwrap_or_default();
    Ok(ServiceKey {
        project: proj,
        environment: env,
        service: svc.name.clone(),
        service_id: svc.id,
        environment_id: svc.environment_id,
    })
}

fn targets_on(host_id: Uuid) -> sea_orm::sea_query::SelectStatement {
    Query::select()
        .column(deployment_target::Column::DeploymentId)
        .from(deployment_target::Entity)
        .and_where(deployment_target::Column::HostId.eq(host_id))
        .to_owned()
}

/// The service's deployments that targeted `host_id`, newest first, as
/// (id, succeeded).
async fn history_on_host(
    db: &DatabaseConnection,
    service_id: Uuid,
    host_id: Uuid,
) -> Result<Vec<(Uuid, bool)>, DbErr> {
    let rows = deployment::Entity::find()
        .filter(deployment::Column::ServiceId.eq(service_id))
        .filter(deployment::Column::Id.in_subquery(targets_on(host_id)))
        .order_by_desc(deployment::Column::CreatedAt)
        .limit(50)
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|d| (d.id, d.state == DeploymentState::Succeeded.as_str()))
        .collect())
}

async fn release_number(db: &DatabaseConnection, release_id: Uuid) -> i64 {
    release::Entity::find_by_id(release_id)
        .one(db)
        .await
        .ok()
        .flatten()
        .map(|r| r.number)
        .unwrap_or_default()
}

fn lease_end() -> chrono::DateTime<Utc> {
    Utc::now() + ChronoDuration::from_std(LEASE).unwrap_or_else(|_| ChronoDuration::seconds(15))
}

enum StepMsg {
    Step {
        deployment_id: Uuid,
        step: DeploymentStep,
    },
    /// Answered once everything sent before is stored.
    Flush(oneshot::Sender<()>),
}

/// Most steps stored by one statement.
const STEP_BATCH: usize = 256;

/// Stores step-log lines in the order they were appended, several per
/// statement when they arrive together (a fan-out's hosts report at once),
/// and streams each one once stored: an SSE client subscribes before it
/// reads the stored steps, so it sees every line one way or the other.
struct StepWriter {
    db: DatabaseConnection,
    live: LiveBus,
}

impl StepWriter {
    async fn run(self, mut rx: mpsc::UnboundedReceiver<StepMsg>) {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < STEP_BATCH {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            let mut steps = Vec::new();
            let mut flushes = Vec::new();
            for m in batch {
                match m {
                    StepMsg::Step {
                        deployment_id,
                        step,
                    } => steps.push((deployment_id, step)),
                    StepMsg::Flush(tx) => flushes.push(tx),
                }
            }
            if !steps.is_empty() {
                let rows = steps.iter().map(|(d, s)| deployment_step::ActiveModel {
                    deployment_id: Set(*d),
                    at: Set(s.at),
                    message: Set(s.message.clone()),
                    ..Default::default()
                });
                if let Err(e) = deployment_step::Entity::insert_many(rows)
                    .exec_without_returning(&self.db)
                    .await
                {
                    tracing::warn!(error = %e, lines = steps.len(), "could not store steps");
                }
                for (deployment_id, step) in steps {
                    self.live.publish(Live::Step {
                        deployment_id,
                        step,
                    });
                }
            }
            for tx in flushes {
                let _ = tx.send(());
            }
        }
    }
}

/// Prepared hosts that were not switched yet, other than `failed` (which
/// cleaned up after itself).
fn not_switched<'a>(
    prepared: &[&'a host::Model],
    switched: &[&'a host::Model],
    failed: &host::Model,
) -> Vec<&'a host::Model> {
    prepared
        .iter()
        .filter(|p| p.id != failed.id && !switched.iter().any(|s| s.id == p.id))
        .copied()
        .collect()
}

fn describe_call_error(e: &CallError) -> String {
    match e {
        CallError::Agent(e) => describe_agent_error(e),
        other => other.to_string(),
    }
}

/// The agent's error as a deployment reason, with the container's last
/// lines when it printed any.
fn describe_agent_error(e: &AgentError) -> String {
    let what = match e.code {
        AgentErrorCode::ImageMissing => "image missing",
        AgentErrorCode::Unhealthy => "new release unhealthy",
        AgentErrorCode::Crashed => "new release crashed",
        AgentErrorCode::PortConflict => "port conflict",
        AgentErrorCode::InvalidSpec => "invalid container spec",
        AgentErrorCode::NotFound => "not found",
        AgentErrorCode::Cancelled => "cancelled",
        AgentErrorCode::Busy => "host busy",
        AgentErrorCode::Docker => "Docker error",
        AgentErrorCode::Proxy => "ingress proxy error",
    };
    let mut s = format!("{what}: {}", e.message);
    if !e.logs.is_empty() {
        s.push_str("\nlast log lines:\n");
        s.push_str(&e.logs.join("\n"));
    }
    s
}
