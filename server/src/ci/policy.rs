//! Per-environment deploy policy: required approvals (with their expiry),
//! maintenance windows and freezes, and the approval routes. The policy is
//! applied by [`crate::deploy::lifecycle`], where every deployment is created
//! and approved, so every path (API, webhooks, promotion, rollback) obeys it.
use super::{schedule, OptionalJson};
use crate::{
    api::{
        environments,
        extract::{PageQuery, ValidJson},
    },
    audit::{ActorInfo, AuditTx, Event},
    auth::{Admin, Approver, Auth, Viewer},
    deploy::lifecycle,
    error::{ApiError, ApiResult},
    state::AppState,
    store::entities::{deployment, deployment_approval, environment_policy},
};
use actix_web::web;
use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
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
    let env = environments::find(tx.conn(), env_id).await?;
    let before = load_policy(tx.conn(), env.id).await?;
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
            .exec_without_returning(tx.conn())
            .await?;
    } else {
        environment_policy::Entity::update(am)
            .exec(tx.conn())
            .await?;
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
    let out = load_policy(tx.conn(), env.id).await?;
    tx.commit().await?;
    Ok(web::Json(out))
}

fn to_json<T: serde::Serialize>(v: &T) -> ApiResult<String> {
    serde_json::to_string(v).map_err(|e| ApiError::Internal(e.into()))
}

/// Validates an override request: admins only, with a non-empty reason.
pub(crate) fn override_reason(is_admin: bool, reason: Option<String>) -> ApiResult<Option<String>> {
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
pub(crate) async fn check_schedule(
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

pub(crate) async fn approvals_of<C: ConnectionTrait>(
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

/// `POST /deployments/{id}/approve`.
pub async fn approve(
    auth: Auth<Approver>,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: OptionalJson<ApproveRequest>,
) -> ApiResult<web::Json<Deployment>> {
    let mut tx = AuditTx::begin(&state.db).await?;
    let d = lifecycle::find(tx.conn(), id.into_inner()).await?;
    let actor = auth.scope(Some(d.environment_id))?;
    let is_admin = auth.principal.effective_role(Some(d.environment_id)) >= Role::Admin;
    let reason = override_reason(is_admin, body.0.override_reason)?;
    let changed = lifecycle::approve(&mut tx, &actor, &d, reason.as_deref()).await?;
    Ok(web::Json(
        lifecycle::commit(tx, changed, &state.announcer()).await?,
    ))
}

/// `POST /deployments/{id}/reject` `{reason}`.
pub async fn reject(
    auth: Auth<Approver>,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: ValidJson<RejectRequest>,
) -> ApiResult<web::Json<Deployment>> {
    let mut tx = AuditTx::begin(&state.db).await?;
    let d = lifecycle::find(tx.conn(), id.into_inner()).await?;
    let actor = auth.scope(Some(d.environment_id))?;
    let reason = body.0.reason.trim().to_owned();
    if reason.is_empty() || reason.len() > 500 {
        return Err(ApiError::invalid("reason", "must be 1–500 characters"));
    }
    let changed = lifecycle::reject(&mut tx, &actor, &d, &reason).await?;
    Ok(web::Json(
        lifecycle::commit(tx, changed, &state.announcer()).await?,
    ))
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
        let env = environments::find(&state.db, d.environment_id).await?;
        let policy = load_policy(&state.db, env.id).await?;
        items.push(ApprovalRequest {
            approvals: approvals_of(&state.db, d.id, policy.approval_ttl_hours, now).await?,
            deployment: lifecycle::load(&state.db, d.id).await?,
            required_approvals: lifecycle::required_approvals(&policy, env.protected),
        });
    }
    Ok(web::Json(Page {
        items,
        total,
        limit,
        offset,
    }))
}
