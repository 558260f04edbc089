//! One deployment's rollout: read its inputs once ([`Context`], the
//! container with its variables, decrypted secrets and resolved `${NAME}`
//! templates), spread its replicas over the online hosts, run the release
//! command (see [`super::run`]), roll out host by host (prepare all first
//! when there are several and the service starts first), revert the hosts
//! already switched when one fails, and stop when it is cancelled. Each
//! host's progress is a [`TargetState`]; `switched` is written the moment
//! the agent reports it ([`AgentEvent::Switched`]), before its answer, so a
//! control plane that dies after the switch knows (see [`super::recovery`]).
//! A `job` service is not rolled out: its deployment is one run.
use super::{recovery::history_on_host, run::RunEnd, Engine, EngineError, Outcome};
use crate::{
    agents::CallError,
    deploy::plan::{self, DRAIN_TIMEOUT_SECS, KEEP_PREVIOUS},
    live::Live,
    secrets::secret_aad,
    store::entities::{
        deployment, deployment_target, environment, host, project, release, service, variable,
    },
};
use chrono::Utc;
use sea_orm::{
    sea_query::{Expr, Query},
    ActiveValue::Set,
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
};
use slipway_types::{
    agent::{
        AgentError, AgentErrorCode, AgentEvent, AgentRequest, AgentResponse, ContainerSpec,
        RegistryAuth, RevertPlan, RolloutPhase, RolloutPlan, Sensitive, ServiceKey,
    },
    api::{DeploymentState, ServiceKind, ServiceSpec},
    target::TargetState,
    ImageRef,
};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::mpsc;
use uuid::Uuid;

const REVERT_TIMEOUT: Duration = Duration::from_secs(120);
/// Secrets that, when set in an environment, authenticate image pulls.
pub const REGISTRY_USERNAME: &str = "REGISTRY_USERNAME";
pub const REGISTRY_PASSWORD: &str = "REGISTRY_PASSWORD";
pub const REGISTRY_SERVER: &str = "REGISTRY_SERVER";

impl Engine {
    pub(super) async fn execute(&self, id: Uuid) -> Result<Outcome, EngineError> {
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
        if ctx.spec.kind == ServiceKind::Job {
            return self
                .run_job(&ctx, &container, registry_auth, &online[0])
                .await;
        }
        let targets = plan::spread(ctx.spec.replicas.max(1), &online);
        // One statement for all hosts.
        let now = Utc::now();
        let rows = targets.iter().map(|(h, n)| deployment_target::ActiveModel {
            deployment_id: Set(id),
            host_id: Set(h.id),
            replicas: Set(i32::try_from(*n).unwrap_or(i32::MAX)),
            state: Set(TargetState::Pending.as_str().into()),
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

        // Migrations before any host is asked to roll out: on failure
        // nothing was switched and the old release keeps serving.
        let newest = self.newest_succeeded_release(&ctx).await?;
        let rc = ctx.spec.release_command.as_ref();
        if let (Some(_), false) = (rc, plan::runs_release_command(ctx.release.number, newest)) {
            self.step(
                id,
                format!(
                    "release command skipped: rolling back (release #{} already ran its migrations)",
                    newest.unwrap_or_default()
                ),
            )
            .await;
        } else if let Some(rc) = rc {
            let first = &online[0];
            match self
                .release_command(&ctx, rc, &container, registry_auth.clone(), first)
                .await?
            {
                RunEnd::Done => {}
                RunEnd::Failed(reason) => return Ok(Outcome::Failed(reason)),
                RunEnd::Cancelled => return Ok(Outcome::Cancelled),
            }
        }

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
                strategy: ctx.spec.effective_strategy(),
            })
        };
        let timeout = plan::rollout_timeout(health_timeout);

        // Several hosts: prepare them all at once, then switch one by one.
        // Stop-first never prepares (that would start the new containers
        // beside the old ones on the same volume or port): it rolls hosts
        // one by one, each `Full`, and a failure reverts the hosts done.
        let phased = plan::prepare_first(targets.len(), ctx.spec.effective_strategy());
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
                        self.set_target(id, h.id, TargetState::Failed).await?;
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
            self.set_target(id, h.id, TargetState::Running).await?;
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
                    self.set_target(id, h.id, TargetState::Failed).await?;
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
                    self.set_target(id, h.id, TargetState::Switched).await?;
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
            // The agent may have switched this host before failing (it said
            // so with `Switched`): put it back like the others.
            if self.target_state(id, h.id).await? == Some(TargetState::Switched) {
                switched.push(h);
            }
            self.set_target(id, h.id, TargetState::Failed).await?;
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
    pub(super) async fn cancelled(&self, id: Uuid) {
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
            AgentEvent::Switched => {
                // Recorded before anything else happens: a control plane
                // that dies from here on finds this host switched.
                if let Err(e) = self.set_target(id, h.id, TargetState::Switched).await {
                    tracing::warn!(deployment = %id, error = %e, "could not record a switch");
                }
                "traffic switched".to_string()
            }
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
                    let _ = self
                        .set_target(ctx.deployment.id, h.id, TargetState::Reverted)
                        .await;
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

    /// The number of the newest release of the service that succeeded.
    async fn newest_succeeded_release(&self, ctx: &Context) -> Result<Option<i64>, DbErr> {
        let newest = release::Entity::find()
            .filter(release::Column::ServiceId.eq(ctx.service.id))
            .filter(
                release::Column::Id.in_subquery(
                    Query::select()
                        .column(deployment::Column::ReleaseId)
                        .from(deployment::Entity)
                        .and_where(deployment::Column::ServiceId.eq(ctx.service.id))
                        .and_where(
                            deployment::Column::State.eq(DeploymentState::Succeeded.as_str()),
                        )
                        .to_owned(),
                ),
            )
            .order_by_desc(release::Column::Number)
            .one(&self.db)
            .await?;
        Ok(newest.map(|r| r.number))
    }

    /// The recorded state of `host_id`'s part of deployment `id`.
    async fn target_state(&self, id: Uuid, host_id: Uuid) -> Result<Option<TargetState>, DbErr> {
        Ok(deployment_target::Entity::find()
            .filter(deployment_target::Column::DeploymentId.eq(id))
            .filter(deployment_target::Column::HostId.eq(host_id))
            .one(&self.db)
            .await?
            .and_then(|t| TargetState::parse(&t.state)))
    }

    pub(super) async fn set_target(
        &self,
        id: Uuid,
        host_id: Uuid,
        state: TargetState,
    ) -> Result<(), DbErr> {
        deployment_target::Entity::update_many()
            .col_expr(
                deployment_target::Column::State,
                Expr::value(state.as_str()),
            )
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
                match self.key.open(ct, nonce, &aad) {
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
        let env = match plan::container_env(&ctx.spec, &ctx.environment.name, &vars, &secrets) {
            Ok(env) => env,
            Err(e) => return Ok(Err(e.to_string())),
        };
        Ok(Ok((plan::container_spec(&ctx.spec, env, &ctx.key), auth)))
    }
}

/// Everything a deployment needs, read once.
pub(super) struct Context {
    pub deployment: deployment::Model,
    pub release: release::Model,
    pub service: service::Model,
    pub environment: environment::Model,
    pub spec: ServiceSpec,
    pub key: ServiceKey,
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
        let key = match service_key(db, &service).await {
            Ok(key) => key,
            Err(EngineError::Missing(reason)) => return Ok(Err(reason)),
            Err(e) => return Err(e),
        };
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

/// How agents name a service (project / environment / service). Its project
/// or environment missing is an error, never an empty name.
pub(super) async fn service_key(
    db: &DatabaseConnection,
    svc: &service::Model,
) -> Result<ServiceKey, EngineError> {
    let env = environment::Entity::find_by_id(svc.environment_id)
        .one(db)
        .await?
        .map(|e| e.name)
        .ok_or_else(|| {
            EngineError::Missing(format!(
                "environment {} of service {} is missing",
                svc.environment_id, svc.name
            ))
        })?;
    let proj = project::Entity::find_by_id(svc.project_id)
        .one(db)
        .await?
        .map(|p| p.name)
        .ok_or_else(|| {
            EngineError::Missing(format!(
                "project {} of service {} is missing",
                svc.project_id, svc.name
            ))
        })?;
    Ok(ServiceKey {
        project: proj,
        environment: env,
        service: svc.name.clone(),
        service_id: svc.id,
        environment_id: svc.environment_id,
    })
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

pub(super) fn describe_call_error(e: &CallError) -> String {
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
        AgentErrorCode::Timeout => "timed out",
    };
    let mut s = format!("{what}: {}", e.message);
    if !e.logs.is_empty() {
        s.push_str("\nlast log lines:\n");
        s.push_str(&e.logs.join("\n"));
    }
    s
}
