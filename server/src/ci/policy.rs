//! Per-environment deploy policy: required approvals (with their expiry),
//! maintenance windows and freezes. [`enqueue`] is the one way a deployment
//! is created (API, webhooks, promotion), so every path obeys the policy.
use super::{schedule, OptionalJson};
use crate::{
    api::{
        deployments::{add_step, load},
        environments,
        extract::{PageQuery, ValidJson},
    },
    audit::{ActorInfo, AuditTx, Event},
    auth::{Admin, Approver, Auth, Viewer},
    deploy::{transition, DeployEvent},
    error::{ApiError, ApiResult},
    startup::AppState,
    store::entities::{deployment, deployment_approval, environment_policy, release, service},
};
use actix_web::web;
use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    sea_query::Expr, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect,
};
use serde::Deserialize;
use serde_json::json;
use slipway_types::{
    api::{
        Approval, ApprovalRequest, ApproveRequest, Deployment, DeploymentState, EnvironmentPolicy,
        Page, RejectRequest, UpdatePolicy, DEFAULT_APPROVAL_TTL_HOURS,
    },
    Role,
};
use uuid::Uuid;

fn internal(msg: String) -> ApiError {
    ApiError::Internal(anyhow::anyhow!(msg))
}

/// The environment's policy (defaults when none was set).
pub async fn load_policy<C: ConnectionTrait>(db: &C, env_id: Uuid) -> ApiResult<EnvironmentPolicy> {
    let row = environment_policy::Entity::find_by_id(env_id)
        .one(db)
        .await?;
    let Some(m) = row else {
        return Ok(EnvironmentPolicy {
            environment_id: env_id,
            required_approvals: 0,
            approval_ttl_hours: DEFAULT_APPROVAL_TTL_HOURS,
            windows: Vec::new(),
            freezes: Vec::new(),
            updated_by: None,
            updated_at: None,
        });
    };
    Ok(EnvironmentPolicy {
        environment_id: env_id,
        required_approvals: u8::try_from(m.required_approvals)
            .map_err(|e| internal(format!("stored policy of {env_id}: {e}")))?,
        approval_ttl_hours: u32::try_from(m.approval_ttl_hours)
            .map_err(|e| internal(format!("stored policy of {env_id}: {e}")))?,
        windows: serde_json::from_str(&m.windows)
            .map_err(|e| internal(format!("stored windows of {env_id}: {e}")))?,
        freezes: serde_json::from_str(&m.freezes)
            .map_err(|e| internal(format!("stored freezes of {env_id}: {e}")))?,
        updated_by: Some(m.updated_by),
        updated_at: Some(m.updated_at),
    })
}

pub async fn get(
    _auth: Auth<Viewer>,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> ApiResult<web::Json<EnvironmentPolicy>> {
    let env = environments::find(&state.db, id.into_inner()).await?;
    Ok(web::Json(load_policy(&state.db, env.id).await?))
}

/// `PATCH /environments/{id}/policy`.
pub async fn update(
    auth: Auth<Admin>,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: ValidJson<UpdatePolicy>,
) -> ApiResult<web::Json<EnvironmentPolicy>> {
    let env_id = id.into_inner();
    let actor = auth.scope(Some(env_id))?;
    let body = body.0;
    let mut tx = AuditTx::begin(&state.db).await?;
    let env = environments::find(&tx.txn, env_id).await?;
    let before = load_policy(&tx.txn, env.id).await?;
    let mut after = before.clone();
    if let Some(n) = body.required_approvals {
        after.required_approvals = n;
    }
    if let Some(h) = body.approval_ttl_hours {
        after.approval_ttl_hours = h;
    }
    if let Some(w) = body.windows {
        after.windows = w;
    }
    if let Some(f) = body.freezes {
        after.freezes = f;
    }
    let now = Utc::now();
    let am = environment_policy::ActiveModel {
        environment_id: Set(env.id),
        required_approvals: Set(i32::from(after.required_approvals)),
        approval_ttl_hours: Set(
            i32::try_from(after.approval_ttl_hours).map_err(|e| internal(e.to_string()))?
        ),
        windows: Set(to_json(&after.windows)?),
        freezes: Set(to_json(&after.freezes)?),
        updated_by: Set(actor.name.clone()),
        updated_at: Set(now),
    };
    if before.updated_at.is_none() {
        environment_policy::Entity::insert(am)
            .exec_without_returning(&tx.txn)
            .await?;
    } else {
        environment_policy::Entity::update(am).exec(&tx.txn).await?;
    }
    tx.record(
        &actor,
        Event::new(
            "environment.policy.update",
            "environment",
            env.id,
            json!({
                "environment": env.name,
                "before": {"required_approvals": before.required_approvals, "approval_ttl_hours": before.approval_ttl_hours, "windows": before.windows, "freezes": before.freezes},
                "after": {"required_approvals": after.required_approvals, "approval_ttl_hours": after.approval_ttl_hours, "windows": after.windows, "freezes": after.freezes},
            }),
        ),
    )
    .await?;
    let out = load_policy(&tx.txn, env.id).await?;
    tx.commit().await?;
    Ok(web::Json(out))
}

fn to_json<T: serde::Serialize>(v: &T) -> ApiResult<String> {
    serde_json::to_string(v).map_err(|e| ApiError::Internal(e.into()))
}

/// How a new deployment may pass the policy.
pub struct Gate {
    /// The caller is an admin in the environment (may override freezes).
    pub is_admin: bool,
    pub override_reason: Option<String>,
    /// Redeploying an existing release (audit detail only).
    pub redeploy: bool,
}

/// Validates an override request: admins only, with a non-empty reason.
fn override_reason(is_admin: bool, reason: Option<String>) -> ApiResult<Option<String>> {
    let Some(r) = reason else { return Ok(None) };
    let r = r.trim().to_owned();
    if r.is_empty() || r.len() > 500 {
        return Err(ApiError::invalid(
            "override_reason",
            "must be 1–500 characters",
        ));
    }
    if !is_admin {
        return Err(ApiError::Forbidden(
            "only an admin of the environment may override a deploy freeze".into(),
        ));
    }
    Ok(Some(r))
}

/// Checks the freeze/window rules at `now`; an admin's override passes
/// (and is audited).
async fn check_schedule(
    tx: &mut AuditTx,
    actor: &ActorInfo,
    policy: &EnvironmentPolicy,
    reason: Option<&str>,
    deployment_id: Uuid,
    now: DateTime<Utc>,
) -> ApiResult<()> {
    if let Err(frozen) = schedule::check(&policy.windows, &policy.freezes, now) {
        let Some(reason) = reason else {
            return Err(ApiError::DeployFrozen(frozen.message()));
        };
        tx.record(
            actor,
            Event::new(
                "deployment.freeze_override",
                "deployment",
                deployment_id,
                json!({"override_reason": reason, "blocked_by": frozen.reason}),
            ),
        )
        .await?;
    }
    Ok(())
}

/// Creates the deployment of `rel`: `awaiting_approval` when the environment
/// requires approvals, else `queued`; refused with `deploy_frozen` inside a
/// freeze or outside the windows (unless an admin overrides).
pub async fn enqueue(
    tx: &mut AuditTx,
    actor: &ActorInfo,
    svc: &service::Model,
    rel: &release::Model,
    gate: Gate,
) -> ApiResult<Uuid> {
    let reason = override_reason(gate.is_admin, gate.override_reason)?;
    let policy = load_policy(&tx.txn, svc.environment_id).await?;
    let id = Uuid::new_v4();
    let now = Utc::now();
    check_schedule(tx, actor, &policy, reason.as_deref(), id, now).await?;
    let st = if policy.required_approvals > 0 {
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
    })
    .exec_without_returning(&tx.txn)
    .await?;
    let msg = if st == DeploymentState::Queued {
        format!(
            "queued by {}: release #{} ({})",
            actor.name, rel.number, rel.image
        )
    } else {
        format!(
            "requested by {}: release #{} ({}); awaiting {} approval(s)",
            actor.name, rel.number, rel.image, policy.required_approvals
        )
    };
    add_step(&tx.txn, id, msg).await?;
    tx.record(
        actor,
        Event::new(
            "deployment.create",
            "deployment",
            id,
            json!({"service": svc.name, "release": rel.number, "image": rel.image, "redeploy": gate.redeploy, "state": st.as_str()}),
        ),
    )
    .await?;
    Ok(id)
}

async fn approvals_of<C: ConnectionTrait>(
    db: &C,
    deployment_id: Uuid,
    ttl_hours: u32,
    now: DateTime<Utc>,
) -> ApiResult<Vec<Approval>> {
    let ttl = Duration::hours(i64::from(ttl_hours));
    Ok(deployment_approval::Entity::find()
        .filter(deployment_approval::Column::DeploymentId.eq(deployment_id))
        .order_by_asc(deployment_approval::Column::CreatedAt)
        .all(db)
        .await?
        .into_iter()
        .map(|a| Approval {
            valid: a.created_at + ttl > now,
            expires_at: a.created_at + ttl,
            approver: a.approver,
            at: a.created_at,
        })
        .collect())
}

async fn awaiting(tx: &AuditTx, id: Uuid) -> ApiResult<deployment::Model> {
    let d = deployment::Entity::find_by_id(id)
        .one(&tx.txn)
        .await?
        .ok_or(ApiError::NotFound("deployment"))?;
    if d.state != DeploymentState::AwaitingApproval.as_str() {
        return Err(ApiError::InvalidTransition(format!(
            "the deployment is {}, not awaiting approval",
            d.state
        )));
    }
    Ok(d)
}

/// Moves `d` from `awaiting_approval` with `event`, only if nobody did meanwhile.
async fn move_state(
    tx: &AuditTx,
    d: &deployment::Model,
    event: DeployEvent,
    reason: Option<String>,
) -> ApiResult<DeploymentState> {
    let to = transition(DeploymentState::AwaitingApproval, event)
        .map_err(|e| ApiError::InvalidTransition(e.to_string()))?;
    let mut q = deployment::Entity::update_many()
        .col_expr(deployment::Column::State, Expr::value(to.as_str()))
        .filter(deployment::Column::Id.eq(d.id))
        .filter(deployment::Column::State.eq(DeploymentState::AwaitingApproval.as_str()));
    if to.is_terminal() {
        q = q
            .col_expr(deployment::Column::FinishedAt, Expr::value(Utc::now()))
            .col_expr(deployment::Column::Reason, Expr::value(reason));
    }
    if q.exec(&tx.txn).await?.rows_affected != 1 {
        return Err(ApiError::InvalidTransition(
            "the deployment changed state meanwhile; reload".into(),
        ));
    }
    Ok(to)
}

/// `POST /deployments/{id}/approve`.
pub async fn approve(
    auth: Auth<Approver>,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: OptionalJson<ApproveRequest>,
) -> ApiResult<web::Json<Deployment>> {
    let mut tx = AuditTx::begin(&state.db).await?;
    let d = deployment::Entity::find_by_id(id.into_inner())
        .one(&tx.txn)
        .await?
        .ok_or(ApiError::NotFound("deployment"))?;
    let actor = auth.scope(Some(d.environment_id))?;
    let d = awaiting(&tx, d.id).await?;
    if actor.name == d.requested_by {
        return Err(ApiError::Forbidden(
            "you requested this deployment: someone else must approve it".into(),
        ));
    }
    let is_admin = auth.principal.effective_role(Some(d.environment_id)) >= Role::Admin;
    let reason = override_reason(is_admin, body.0.override_reason)?;
    let policy = load_policy(&tx.txn, d.environment_id).await?;
    let now = Utc::now();
    // One row per approver: approving again refreshes the approval.
    deployment_approval::Entity::delete_many()
        .filter(deployment_approval::Column::DeploymentId.eq(d.id))
        .filter(deployment_approval::Column::Approver.eq(actor.name.as_str()))
        .exec(&tx.txn)
        .await?;
    deployment_approval::Entity::insert(deployment_approval::ActiveModel {
        id: Set(Uuid::new_v4()),
        deployment_id: Set(d.id),
        approver: Set(actor.name.clone()),
        created_at: Set(now),
    })
    .exec_without_returning(&tx.txn)
    .await?;
    let valid = approvals_of(&tx.txn, d.id, policy.approval_ttl_hours, now)
        .await?
        .iter()
        .filter(|a| a.valid)
        .count();
    let required = usize::from(policy.required_approvals);
    let queue = valid >= required;
    if queue {
        check_schedule(&mut tx, &actor, &policy, reason.as_deref(), d.id, now).await?;
        move_state(&tx, &d, DeployEvent::Approve, None).await?;
    }
    add_step(
        &tx.txn,
        d.id,
        if queue {
            format!("approved by {} ({valid}/{required}); queued", actor.name)
        } else {
            format!("approved by {} ({valid}/{required})", actor.name)
        },
    )
    .await?;
    tx.record(
        &actor,
        Event::new(
            "deployment.approve",
            "deployment",
            d.id,
            json!({"approvals": valid, "required": required, "queued": queue, "requested_by": d.requested_by}),
        ),
    )
    .await?;
    let out = load(&tx.txn, d.id).await?;
    tx.commit().await?;
    crate::deploy::routes::announce(&state, &out);
    Ok(web::Json(out))
}

/// `POST /deployments/{id}/reject` `{reason}`.
pub async fn reject(
    auth: Auth<Approver>,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: ValidJson<RejectRequest>,
) -> ApiResult<web::Json<Deployment>> {
    let mut tx = AuditTx::begin(&state.db).await?;
    let d = deployment::Entity::find_by_id(id.into_inner())
        .one(&tx.txn)
        .await?
        .ok_or(ApiError::NotFound("deployment"))?;
    let actor = auth.scope(Some(d.environment_id))?;
    let reason = body.0.reason.trim().to_owned();
    if reason.is_empty() || reason.len() > 500 {
        return Err(ApiError::invalid("reason", "must be 1–500 characters"));
    }
    let d = awaiting(&tx, d.id).await?;
    move_state(
        &tx,
        &d,
        DeployEvent::Reject,
        Some(format!("rejected by {}: {reason}", actor.name)),
    )
    .await?;
    add_step(
        &tx.txn,
        d.id,
        format!("rejected by {}: {reason}", actor.name),
    )
    .await?;
    tx.record(
        &actor,
        Event::new(
            "deployment.reject",
            "deployment",
            d.id,
            json!({"reason": reason, "requested_by": d.requested_by}),
        ),
    )
    .await?;
    let out = load(&tx.txn, d.id).await?;
    tx.commit().await?;
    crate::deploy::routes::announce(&state, &out);
    Ok(web::Json(out))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ApprovalFilter {
    #[schemars(extend("enum" = ["pending"]))]
    pub state: Option<String>,
    #[schemars(range(min = 1, max = slipway_types::api::MAX_PAGE_LIMIT))]
    pub limit: Option<u64>,
    #[schemars(range(max = crate::api::extract::MAX_OFFSET))]
    pub offset: Option<u64>,
}

/// `GET /approvals?state=pending`: deployments awaiting approval, oldest first.
pub async fn list(
    _auth: Auth<Viewer>,
    state: web::Data<AppState>,
    q: web::Query<ApprovalFilter>,
) -> ApiResult<web::Json<Page<ApprovalRequest>>> {
    if q.state.as_deref().is_some_and(|s| s != "pending") {
        return Err(ApiError::invalid("state", "only `pending` is supported"));
    }
    let (limit, offset) = PageQuery {
        limit: q.limit,
        offset: q.offset,
    }
    .resolve()?;
    let base = deployment::Entity::find()
        .filter(deployment::Column::State.eq(DeploymentState::AwaitingApproval.as_str()))
        .order_by_asc(deployment::Column::CreatedAt);
    let total = base.clone().count(&state.db).await?;
    let rows = base.limit(limit).offset(offset).all(&state.db).await?;
    let now = Utc::now();
    let mut items = Vec::with_capacity(rows.len());
    for d in rows {
        let policy = load_policy(&state.db, d.environment_id).await?;
        items.push(ApprovalRequest {
            approvals: approvals_of(&state.db, d.id, policy.approval_ttl_hours, now).await?,
            deployment: load(&state.db, d.id).await?,
            required_approvals: policy.required_approvals,
        });
    }
    Ok(web::Json(Page {
        items,
        total,
        limit,
        offset,
    }))
}
