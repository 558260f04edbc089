//! The deployment lifecycle, in one place: releases are cut here, every
//! deployment is created here (API, webhook, promotion, rollback, redelivery),
//! and every change of a deployment's state goes through [`transition`].
//!
//! ```text
//! cut_release ──▶ create ── policy: freezes/windows (409 deploy_frozen),
//!                   │        approvals (a protected environment needs ≥ 1)
//!                   ▼
//!   awaiting_approval ──approve/reject/cancel──┐
//!   queued ──engine claims (Start)─▶ running ──┴─▶ transition():
//!     read the row → state::transition(from, event) → UPDATE … WHERE state = from
//!     → append the step → record the audit entry → load
//! then commit() → announce(): wake the engine, stream the step and the state
//! ```
//!
//! Callers hold an [`AuditTx`]; each operation returns the [`Changed`]
//! deployment, and [`commit`] commits the transaction and announces it. The
//! engine writes its progress lines through its own step writer, but its state
//! changes use the same [`transition`].
use super::{
    engine::EngineWaker,
    state::{self, DeployEvent, TransitionError},
};
use crate::{
    audit::{ActorInfo, AuditTx, Event},
    ci::policy,
    error::{ApiError, ApiResult},
    live::{Live, LiveBus},
    store::entities::{
        deployment, deployment_approval, deployment_step, environment, release, service,
    },
};
use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::{
    sea_query::Expr, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect,
};
use serde_json::{json, Value};
use slipway_types::{
    api::{
        Deployment, DeploymentState, DeploymentStep, EnvironmentPolicy, LiveEvent, Release,
        ServiceSpec, Trigger,
    },
    ImageRef,
};
use std::collections::HashMap;
use uuid::Uuid;

/// Why a lifecycle operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("deployment not found")]
    NotFound,
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// Another request or replica moved the deployment between the read and
    /// the guarded update.
    #[error("the deployment changed state meanwhile; reload")]
    Changed,
    /// A stored row the server wrote cannot be read back.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Store(#[from] DbErr),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
}

impl From<LifecycleError> for ApiError {
    fn from(e: LifecycleError) -> Self {
        match e {
            LifecycleError::NotFound => ApiError::NotFound("deployment"),
            LifecycleError::Transition(t) => ApiError::InvalidTransition(t.to_string()),
            LifecycleError::Changed => ApiError::InvalidTransition(e.to_string()),
            LifecycleError::Corrupt(m) => ApiError::Internal(anyhow::anyhow!(m)),
            LifecycleError::Store(s) => ApiError::Store(s),
            LifecycleError::Audit(a) => a.into(),
        }
    }
}

type LcResult<T> = Result<T, LifecycleError>;

/// A deployment as it is after a change (inside the transaction), with the
/// step-log line the change appended.
#[derive(Debug)]
pub struct Changed {
    pub deployment: Deployment,
    pub step: Option<DeploymentStep>,
}

/// Tells the engine and the dashboards about committed changes.
#[derive(Clone)]
pub struct Announcer {
    live: LiveBus,
    waker: EngineWaker,
}

impl Announcer {
    pub fn new(live: LiveBus, waker: EngineWaker) -> Self {
        Self { live, waker }
    }

    /// After the change is committed: wake the engine (a queued deployment,
    /// or a finished one that frees its service), then stream the step line
    /// and the new state.
    pub fn announce(&self, c: &Changed) {
        let d = &c.deployment;
        self.waker.wake();
        if let Some(step) = &c.step {
            self.live.publish(Live::Step {
                deployment_id: d.id,
                step: step.clone(),
            });
        }
        self.live.publish(Live::State {
            deployment_id: d.id,
            state: d.state,
            reason: d.reason.clone(),
        });
        self.live.publish(Live::Event(LiveEvent::Deployment {
            id: d.id,
            service_id: d.service_id,
            environment_id: d.environment_id,
            state: d.state,
            release_number: d.release_number,
        }));
    }
}

/// Commits `tx` and announces `changed`; returns the deployment.
pub async fn commit(tx: AuditTx, changed: Changed, to: &Announcer) -> LcResult<Deployment> {
    tx.commit().await?;
    to.announce(&changed);
    Ok(changed.deployment)
}

// ---------------------------------------------------------------- reading

fn corrupt(msg: String) -> LifecycleError {
    LifecycleError::Corrupt(msg)
}

fn trigger_of(m: &release::Model) -> LcResult<Trigger> {
    serde_json::from_value(Value::String(m.trigger.clone())).map_err(|_| {
        corrupt(format!(
            "release {} has unknown trigger {:?}",
            m.id, m.trigger
        ))
    })
}

pub fn release_to_api(m: release::Model) -> LcResult<Release> {
    let config: ServiceSpec = serde_json::from_str(&m.config)
        .map_err(|e| corrupt(format!("release {} config unreadable: {e}", m.id)))?;
    let trigger = trigger_of(&m)?;
    Ok(Release {
        id: m.id,
        service_id: m.service_id,
        environment_id: m.environment_id,
        project_id: m.project_id,
        number: m.number,
        image: ImageRef::try_from(m.image)
            .map_err(|e| corrupt(format!("release {} image: {e}", m.id)))?,
        config,
        git_sha: m.git_sha,
        git_ref: m.git_ref,
        trigger,
        author: m.author,
        created_at: m.created_at,
    })
}

/// The stored state of `d`.
pub fn state_of(d: &deployment::Model) -> LcResult<DeploymentState> {
    DeploymentState::parse(&d.state)
        .ok_or_else(|| corrupt(format!("deployment {} has unknown state {}", d.id, d.state)))
}

pub fn deployment_to_api(
    d: deployment::Model,
    r: &release::Model,
    steps: Vec<DeploymentStep>,
) -> LcResult<Deployment> {
    Ok(Deployment {
        state: state_of(&d)?,
        id: d.id,
        release_id: d.release_id,
        release_number: r.number,
        image: ImageRef::try_from(r.image.clone())
            .map_err(|e| corrupt(format!("release {} image: {e}", r.id)))?,
        service_id: d.service_id,
        environment_id: d.environment_id,
        project_id: d.project_id,
        reason: d.reason,
        requested_by: d.requested_by,
        created_at: d.created_at,
        started_at: d.started_at,
        finished_at: d.finished_at,
        steps,
        batch_id: d.batch_id,
        waits_for: waits_for_of(&d.waits_for)
            .map_err(|e| corrupt(format!("deployment {} waits_for: {e}", d.id)))?,
    })
}

/// The ids stored in `deployments.waits_for` (a JSON array).
pub fn waits_for_of(stored: &str) -> Result<Vec<Uuid>, serde_json::Error> {
    serde_json::from_str(stored)
}

/// A deployment with its release number, image and step log.
pub async fn load<C: ConnectionTrait>(db: &C, id: Uuid) -> LcResult<Deployment> {
    let (d, r) = deployment::Entity::find_by_id(id)
        .find_also_related(release::Entity)
        .one(db)
        .await?
        .ok_or(LifecycleError::NotFound)?;
    let r = r.ok_or_else(|| corrupt(format!("deployment {id} lost its release")))?;
    let steps = deployment_step::Entity::find()
        .filter(deployment_step::Column::DeploymentId.eq(id))
        .order_by_asc(deployment_step::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(|s| DeploymentStep {
            at: s.at,
            message: s.message,
        })
        .collect();
    deployment_to_api(d, &r, steps)
}

/// The deployment row (for the caller's permission check before a change).
pub async fn find<C: ConnectionTrait>(db: &C, id: Uuid) -> LcResult<deployment::Model> {
    deployment::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(LifecycleError::NotFound)
}

/// The environment a service or deployment belongs to (the foreign key
/// guarantees it; a missing one is corrupt data).
async fn environment_of<C: ConnectionTrait>(db: &C, id: Uuid) -> LcResult<environment::Model> {
    environment::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| corrupt(format!("environment {id} is missing")))
}

/// Appends one line to the step log inside the caller's transaction.
async fn append_step<C: ConnectionTrait>(
    db: &C,
    deployment_id: Uuid,
    message: String,
) -> LcResult<DeploymentStep> {
    // The store's precision, so a stream that replays stored steps
    // recognises the same line arriving live.
    let at = Utc::now().trunc_subsecs(6);
    deployment_step::Entity::insert(deployment_step::ActiveModel {
        deployment_id: Set(deployment_id),
        at: Set(at),
        message: Set(message.clone()),
        ..Default::default()
    })
    .exec_without_returning(db)
    .await?;
    Ok(DeploymentStep { at, message })
}

// ---------------------------------------------------------------- transition

/// One guarded state change.
pub struct Move {
    pub event: DeployEvent,
    /// Why it ended (stored with a terminal state).
    pub reason: Option<String>,
    /// The step-log line, when the change writes one.
    pub step: Option<String>,
    /// The audit action; its summary gets `from` and `to` added.
    pub action: &'static str,
    pub summary: Value,
    /// On `Start`: who drives the deployment and until when its lease runs.
    pub lease: Option<(String, DateTime<Utc>)>,
}

impl Move {
    pub fn new(event: DeployEvent, action: &'static str, summary: Value) -> Self {
        Move {
            event,
            reason: None,
            step: None,
            action,
            summary,
            lease: None,
        }
    }

    pub fn reason(mut self, reason: Option<String>) -> Self {
        self.reason = reason;
        self
    }

    pub fn step(mut self, line: String) -> Self {
        self.step = Some(line);
        self
    }

    pub fn lease(mut self, holder: String, until: DateTime<Utc>) -> Self {
        self.lease = Some((holder, until));
        self
    }
}

/// The one way a deployment changes state: reads it, asks the state machine
/// whether `m.event` is allowed from its state, updates it only if it is
/// still in that state, appends the step, records the audit entry and loads
/// the result. The caller [`commit`]s.
pub async fn transition(
    tx: &mut AuditTx,
    actor: &ActorInfo,
    id: Uuid,
    m: Move,
) -> LcResult<Changed> {
    let row = find(tx.conn(), id).await?;
    let from = state_of(&row)?;
    let to = state::transition(from, m.event)?;
    let now = Utc::now();
    let mut q = deployment::Entity::update_many()
        .col_expr(deployment::Column::State, Expr::value(to.as_str()))
        .filter(deployment::Column::Id.eq(id))
        .filter(deployment::Column::State.eq(from.as_str()));
    if to == DeploymentState::Running {
        q = q.col_expr(deployment::Column::StartedAt, Expr::value(now));
    }
    if let Some((holder, until)) = m.lease {
        q = q
            .col_expr(deployment::Column::ClaimedBy, Expr::value(holder))
            .col_expr(deployment::Column::LeaseUntil, Expr::value(until));
    }
    if to.is_terminal() {
        q = q
            .col_expr(deployment::Column::FinishedAt, Expr::value(now))
            .col_expr(deployment::Column::Reason, Expr::value(m.reason.clone()))
            .col_expr(
                deployment::Column::LeaseUntil,
                Expr::value(None::<DateTime<Utc>>),
            );
    }
    if q.exec(tx.conn()).await?.rows_affected != 1 {
        return Err(LifecycleError::Changed);
    }
    let step = match m.step {
        Some(line) => Some(append_step(tx.conn(), id, line).await?),
        None => None,
    };
    let mut summary = m.summary;
    if let Some(o) = summary.as_object_mut() {
        o.insert("from".into(), json!(from.as_str()));
        o.insert("to".into(), json!(to.as_str()));
    }
    tx.record(actor, Event::new(m.action, "deployment", id, summary))
        .await?;
    Ok(Changed {
        deployment: load(tx.conn(), id).await?,
        step,
    })
}

// ---------------------------------------------------------------- releases

/// Where a new release comes from.
pub struct NewRelease {
    pub git_sha: Option<String>,
    pub git_ref: Option<String>,
    pub trigger: Trigger,
}

/// Cuts release N+1 of `svc` with `spec` as its snapshot and records
/// `release.create`.
pub async fn cut_release(
    tx: &mut AuditTx,
    actor: &ActorInfo,
    svc: &service::Model,
    spec: &ServiceSpec,
    from: NewRelease,
) -> ApiResult<release::Model> {
    let last: Option<i64> = release::Entity::find()
        .filter(release::Column::ServiceId.eq(svc.id))
        .select_only()
        .column_as(release::Column::Number.max(), "n")
        .into_tuple::<Option<i64>>()
        .one(tx.conn())
        .await?
        .flatten();
    let m = release::Model {
        id: Uuid::new_v4(),
        service_id: svc.id,
        environment_id: svc.environment_id,
        project_id: svc.project_id,
        number: last.map_or(1, |n| n + 1),
        image: spec.image.to_string(),
        config: serde_json::to_string(spec).map_err(|e| ApiError::Internal(e.into()))?,
        git_sha: from.git_sha,
        git_ref: from.git_ref,
        trigger: from.trigger.as_str().into(),
        author: actor.name.clone(),
        created_at: Utc::now(),
    };
    release::Entity::insert(release::ActiveModel {
        id: Set(m.id),
        service_id: Set(m.service_id),
        environment_id: Set(m.environment_id),
        project_id: Set(m.project_id),
        number: Set(m.number),
        image: Set(m.image.clone()),
        config: Set(m.config.clone()),
        git_sha: Set(m.git_sha.clone()),
        git_ref: Set(m.git_ref.clone()),
        trigger: Set(m.trigger.clone()),
        author: Set(m.author.clone()),
        created_at: Set(m.created_at),
    })
    .exec_without_returning(tx.conn())
    .await?;
    tx.record(
        actor,
        Event::new(
            "release.create",
            "release",
            m.id,
            json!({"service": svc.name, "number": m.number, "image": m.image, "git_sha": m.git_sha, "git_ref": m.git_ref, "trigger": m.trigger}),
        ),
    )
    .await?;
    Ok(m)
}

// ---------------------------------------------------------------- creation

/// What a new deployment is, for the policy and the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A release cut for this deployment (API, webhook, promotion).
    NewRelease,
    /// An existing release deployed again (`release_id` in the request).
    Redeploy,
    /// `POST /releases/{id}/rollback`.
    Rollback,
}

/// How a new deployment may pass the policy.
pub struct Gate {
    /// The caller is an admin in the environment (may override freezes).
    pub is_admin: bool,
    pub override_reason: Option<String>,
    pub origin: Origin,
}

/// Approvals a deployment needs: the policy's count, and at least one in a
/// protected environment (see docs/environments.md).
pub fn required_approvals(policy: &EnvironmentPolicy, protected: bool) -> u8 {
    if protected {
        policy.required_approvals.max(1)
    } else {
        policy.required_approvals
    }
}

/// Where a deployment stands in a **Deploy environment** batch.
#[derive(Debug, Clone, Default)]
pub struct BatchLink {
    pub batch_id: Option<Uuid>,
    /// The deployments of the batch it waits for, with their services'
    /// names (for its step log).
    pub waits_for: Vec<(Uuid, String)>,
}

/// Creates the deployment of `rel`: `awaiting_approval` when approvals are
/// required, else `queued`; refused with `deploy_frozen` inside a freeze or
/// outside the windows (unless an admin overrides). Every deployment is
/// created here (or by [`create_batch`], through the same path).
pub async fn create(
    tx: &mut AuditTx,
    actor: &ActorInfo,
    svc: &service::Model,
    rel: &release::Model,
    gate: Gate,
) -> ApiResult<Changed> {
    create_linked(tx, actor, svc, rel, gate, BatchLink::default()).await
}

async fn create_linked(
    tx: &mut AuditTx,
    actor: &ActorInfo,
    svc: &service::Model,
    rel: &release::Model,
    gate: Gate,
    link: BatchLink,
) -> ApiResult<Changed> {
    let reason = policy::override_reason(gate.is_admin, gate.override_reason)?;
    let env = environment_of(tx.conn(), svc.environment_id).await?;
    let policy = policy::load_policy(tx.conn(), env.id).await?;
    let required = required_approvals(&policy, env.protected);
    let id = Uuid::new_v4();
    let now = Utc::now();
    policy::check_schedule(tx, actor, &policy, reason.as_deref(), id, now).await?;
    let st = if required > 0 {
        DeploymentState::AwaitingApproval
    } else {
        DeploymentState::Queued
    };
    deployment::Entity::insert(deployment::ActiveModel {
        id: Set(id),
        release_id: Set(rel.id),
        service_id: Set(svc.id),
        environment_id: Set(svc.environment_id),
        project_id: Set(svc.project_id),
        state: Set(st.as_str().into()),
        reason: Set(None),
        requested_by: Set(actor.name.clone()),
        created_at: Set(now),
        started_at: Set(None),
        finished_at: Set(None),
        claimed_by: Set(None),
        lease_until: Set(None),
        batch_id: Set(link.batch_id),
        waits_for: Set(serde_json::to_string(
            &link.waits_for.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        )
        .map_err(|e| ApiError::Internal(e.into()))?),
    })
    .exec_without_returning(tx.conn())
    .await?;
    let what = match gate.origin {
        Origin::Rollback => "rollback to release",
        Origin::NewRelease | Origin::Redeploy => "release",
    };
    let msg = if st == DeploymentState::Queued {
        format!(
            "queued by {}: {what} #{} ({})",
            actor.name, rel.number, rel.image
        )
    } else {
        let why = if env.protected && policy.required_approvals == 0 {
            " (protected environment)"
        } else {
            ""
        };
        format!(
            "requested by {}: {what} #{} ({}); awaiting {required} approval(s){why}",
            actor.name, rel.number, rel.image
        )
    };
    let mut msg = msg;
    if !link.waits_for.is_empty() {
        let names: Vec<&str> = link.waits_for.iter().map(|(_, n)| n.as_str()).collect();
        msg.push_str(&format!(
            "; waits for the deployment of {} to succeed",
            names.join(", ")
        ));
    }
    let step = append_step(tx.conn(), id, msg).await?;
    let mut summary = json!({"service": svc.name, "release": rel.number, "image": rel.image,
        "redeploy": gate.origin != Origin::NewRelease, "rollback": gate.origin == Origin::Rollback,
        "state": st.as_str(), "required_approvals": required, "protected": env.protected});
    if let Some(b) = link.batch_id {
        summary["batch_id"] = json!(b);
        summary["waits_for"] = json!(link.waits_for.iter().map(|(id, _)| id).collect::<Vec<_>>());
    }
    tx.record(
        actor,
        Event::new("deployment.create", "deployment", id, summary),
    )
    .await?;
    if gate.origin == Origin::Rollback {
        tx.record(
            actor,
            Event::new(
                "deployment.rollback",
                "deployment",
                id,
                json!({"service": svc.name, "to_release": rel.number, "image": rel.image}),
            ),
        )
        .await?;
    }
    Ok(Changed {
        deployment: load(tx.conn(), id).await?,
        step: Some(step),
    })
}

// ---------------------------------------------------------------- batches

/// One service of a **Deploy environment** batch.
pub struct BatchMember {
    pub service: service::Model,
    /// Its current spec: the snapshot of the release cut for it.
    pub spec: ServiceSpec,
    /// The services of the batch it waits for (earlier members).
    pub waits_for: Vec<String>,
}

/// The deployments a **Deploy environment** created, in dependency order.
pub struct Batch {
    pub id: Uuid,
    pub changed: Vec<Changed>,
}

/// **Deploy environment**: for each member, in the order given (dependencies
/// first), cuts a release and creates its deployment through the one
/// creation path ([`create`]: policy, approvals and freezes apply to each),
/// tagged with the batch and waiting for its dependencies' deployments; then
/// records the `environment.deploy` summary. All in the caller's
/// transaction: the batch is created whole or not at all.
pub async fn create_batch(
    tx: &mut AuditTx,
    actor: &ActorInfo,
    env: &environment::Model,
    members: Vec<BatchMember>,
    unchanged: &[String],
    is_admin: bool,
    trigger: Trigger,
) -> ApiResult<Batch> {
    let batch_id = Uuid::new_v4();
    let mut created: Vec<(String, Uuid)> = Vec::with_capacity(members.len());
    let mut changed = Vec::with_capacity(members.len());
    for m in members {
        let mut waits_for = Vec::with_capacity(m.waits_for.len());
        for name in &m.waits_for {
            let id = created
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, id)| *id)
                .ok_or_else(|| {
                    ApiError::Internal(anyhow::anyhow!(
                        "batch order: {} comes before its dependency {name}",
                        m.service.name
                    ))
                })?;
            waits_for.push((id, name.clone()));
        }
        let from = NewRelease {
            git_sha: None,
            git_ref: None,
            trigger,
        };
        let rel = cut_release(tx, actor, &m.service, &m.spec, from).await?;
        let gate = Gate {
            is_admin,
            override_reason: None,
            origin: Origin::NewRelease,
        };
        let link = BatchLink {
            batch_id: Some(batch_id),
            waits_for,
        };
        let c = create_linked(tx, actor, &m.service, &rel, gate, link).await?;
        created.push((m.service.name.clone(), c.deployment.id));
        changed.push(c);
    }
    tx.record(
        actor,
        Event::new(
            "environment.deploy",
            "environment",
            env.id,
            json!({"environment": env.name, "batch_id": batch_id,
                "services": created.iter().map(|(n, _)| n).collect::<Vec<_>>(),
                "deployments": created.iter().map(|(_, id)| id).collect::<Vec<_>>(),
                "unchanged": unchanged}),
        ),
    )
    .await?;
    Ok(Batch {
        id: batch_id,
        changed,
    })
}

/// Commits `tx` and announces every change of it; returns the deployments.
pub async fn commit_all(
    tx: AuditTx,
    changed: Vec<Changed>,
    to: &Announcer,
) -> LcResult<Vec<Deployment>> {
    tx.commit().await?;
    Ok(changed
        .into_iter()
        .map(|c| {
            to.announce(&c);
            c.deployment
        })
        .collect())
}

/// What serves of each service of an environment: the spec of the release
/// its newest succeeded deployment deployed (services never deployed
/// successfully are absent).
pub async fn serving_specs<C: ConnectionTrait>(
    db: &C,
    environment_id: Uuid,
) -> LcResult<HashMap<Uuid, ServiceSpec>> {
    let rows = deployment::Entity::find()
        .filter(deployment::Column::EnvironmentId.eq(environment_id))
        .filter(deployment::Column::State.eq(DeploymentState::Succeeded.as_str()))
        .order_by_desc(deployment::Column::CreatedAt)
        .find_also_related(release::Entity)
        .all(db)
        .await?;
    let mut out = HashMap::new();
    for (d, r) in rows {
        if out.contains_key(&d.service_id) {
            continue;
        }
        let r = r.ok_or_else(|| corrupt(format!("deployment {} lost its release", d.id)))?;
        out.insert(d.service_id, release_to_api(r)?.config);
    }
    Ok(out)
}

// ---------------------------------------------------------------- approvals

/// Records `actor`'s approval of a deployment awaiting approval; queues it
/// (a [`transition`]) once enough valid approvals exist and the schedule
/// allows it. `override_reason` is already validated.
pub async fn approve(
    tx: &mut AuditTx,
    actor: &ActorInfo,
    d: &deployment::Model,
    override_reason: Option<&str>,
) -> ApiResult<Changed> {
    let from = state_of(d)?;
    if from != DeploymentState::AwaitingApproval {
        return Err(ApiError::InvalidTransition(format!(
            "the deployment is {}, not awaiting approval",
            from.as_str()
        )));
    }
    if actor.name == d.requested_by {
        return Err(ApiError::Forbidden(
            "you requested this deployment: someone else must approve it".into(),
        ));
    }
    let env = environment_of(tx.conn(), d.environment_id).await?;
    let policy = policy::load_policy(tx.conn(), env.id).await?;
    let now = Utc::now();
    // One row per approver: approving again refreshes the approval.
    deployment_approval::Entity::delete_many()
        .filter(deployment_approval::Column::DeploymentId.eq(d.id))
        .filter(deployment_approval::Column::Approver.eq(actor.name.as_str()))
        .exec(tx.conn())
        .await?;
    deployment_approval::Entity::insert(deployment_approval::ActiveModel {
        id: Set(Uuid::new_v4()),
        deployment_id: Set(d.id),
        approver: Set(actor.name.clone()),
        created_at: Set(now),
    })
    .exec_without_returning(tx.conn())
    .await?;
    let valid = policy::approvals_of(tx.conn(), d.id, policy.approval_ttl_hours, now)
        .await?
        .iter()
        .filter(|a| a.valid)
        .count();
    let required = usize::from(required_approvals(&policy, env.protected));
    let summary = json!({"approvals": valid, "required": required, "requested_by": d.requested_by});
    if valid < required {
        let step = append_step(
            tx.conn(),
            d.id,
            format!("approved by {} ({valid}/{required})", actor.name),
        )
        .await?;
        let mut summary = summary;
        summary["queued"] = json!(false);
        tx.record(
            actor,
            Event::new("deployment.approve", "deployment", d.id, summary),
        )
        .await?;
        return Ok(Changed {
            deployment: load(tx.conn(), d.id).await?,
            step: Some(step),
        });
    }
    policy::check_schedule(tx, actor, &policy, override_reason, d.id, now).await?;
    let mut summary = summary;
    summary["queued"] = json!(true);
    Ok(transition(
        tx,
        actor,
        d.id,
        Move::new(DeployEvent::Approve, "deployment.approve", summary).step(format!(
            "approved by {} ({valid}/{required}); queued",
            actor.name
        )),
    )
    .await?)
}

/// awaiting_approval → rejected, with the approver's reason.
pub async fn reject(
    tx: &mut AuditTx,
    actor: &ActorInfo,
    d: &deployment::Model,
    reason: &str,
) -> LcResult<Changed> {
    let line = format!("rejected by {}: {reason}", actor.name);
    transition(
        tx,
        actor,
        d.id,
        Move::new(
            DeployEvent::Reject,
            "deployment.reject",
            json!({"reason": reason, "requested_by": d.requested_by}),
        )
        .reason(Some(line.clone()))
        .step(line),
    )
    .await
}

/// Awaiting, queued or running → cancelled (the engine stops a running one).
pub async fn cancel(tx: &mut AuditTx, actor: &ActorInfo, id: Uuid) -> LcResult<Changed> {
    let line = format!("cancelled by {}", actor.name);
    transition(
        tx,
        actor,
        id,
        Move::new(DeployEvent::Cancel, "deployment.cancel", json!({}))
            .reason(Some(line.clone()))
            .step(line),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(n: u8) -> EnvironmentPolicy {
        EnvironmentPolicy {
            environment_id: Uuid::nil(),
            required_approvals: n,
            approval_ttl_hours: 24,
            windows: Vec::new(),
            freezes: Vec::new(),
            updated_by: None,
            updated_at: None,
        }
    }

    #[test]
    fn protected_environments_need_one_approval_at_least() {
        assert_eq!(required_approvals(&policy(0), false), 0);
        assert_eq!(required_approvals(&policy(0), true), 1);
        assert_eq!(required_approvals(&policy(2), true), 2);
        assert_eq!(required_approvals(&policy(3), false), 3);
    }

    #[test]
    fn an_unknown_trigger_is_an_error_not_api() {
        let m = release::Model {
            id: Uuid::nil(),
            service_id: Uuid::nil(),
            environment_id: Uuid::nil(),
            project_id: Uuid::nil(),
            number: 1,
            image: "a:1".into(),
            config: "{}".into(),
            git_sha: None,
            git_ref: None,
            trigger: "carrier-pigeon".into(),
            author: "x".into(),
            created_at: Utc::now(),
        };
        let e = trigger_of(&m).map(|_| ()).map_err(|e| e.to_string());
        assert_eq!(
            e,
            Err(format!(
                "stored data is corrupt: release {} has unknown trigger \"carrier-pigeon\"",
                Uuid::nil()
            ))
        );
        let ok = release::Model {
            trigger: "webhook".into(),
            ..m
        };
        assert_eq!(trigger_of(&ok).ok(), Some(Trigger::Webhook));
    }
}
