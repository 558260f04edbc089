//! Releases (immutable snapshots) and deployments (a release going to its
//! environment). Creating a deployment cuts a release and queues it; the
//! deploy engine executes queued deployments. The routes are thin: cutting
//! releases, creating deployments and changing their state is
//! [`crate::deploy::lifecycle`].
use super::{
    extract::{PageQuery, ValidJson},
    services,
};
use crate::{
    audit::AuditTx,
    auth::{Auth, Deployer, Viewer},
    deploy::lifecycle::{self, Gate, NewRelease, Origin},
    error::{ApiError, ApiResult},
    state::AppState,
    store::entities::{deployment, release},
};
use actix_web::{web, HttpResponse};
use sea_orm::{
    ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Select,
};
use serde::Deserialize;
use slipway_types::{
    api::{CreateDeployment, Deployment, DeploymentState, Page, Release, Trigger},
    Role,
};
use uuid::Uuid;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ListFilter {
    pub service: Option<Uuid>,
    pub environment: Option<Uuid>,
    pub project: Option<Uuid>,
    #[schemars(with = "Option<slipway_types::api::DeploymentState>")]
    pub state: Option<String>,
    #[schemars(range(min = 1, max = slipway_types::api::MAX_PAGE_LIMIT))]
    pub limit: Option<u64>,
    #[schemars(range(max = crate::api::extract::MAX_OFFSET))]
    pub offset: Option<u64>,
}

impl ListFilter {
    fn page(&self) -> ApiResult<(u64, u64)> {
        PageQuery {
            limit: self.limit,
            offset: self.offset,
        }
        .resolve()
    }
}

pub async fn list_releases(
    _auth: Auth<Viewer>,
    state: web::Data<AppState>,
    q: web::Query<ListFilter>,
) -> ApiResult<web::Json<Page<Release>>> {
    let (limit, offset) = q.page()?;
    let mut base = release::Entity::find().order_by_desc(release::Column::CreatedAt);
    if let Some(s) = q.service {
        base = base.filter(release::Column::ServiceId.eq(s));
    }
    if let Some(e) = q.environment {
        base = base.filter(release::Column::EnvironmentId.eq(e));
    }
    if let Some(p) = q.project {
        base = base.filter(release::Column::ProjectId.eq(p));
    }
    let total = base.clone().count(&state.db).await?;
    let rows = base.limit(limit).offset(offset).all(&state.db).await?;
    Ok(web::Json(Page {
        items: rows
            .into_iter()
            .map(lifecycle::release_to_api)
            .collect::<Result<_, _>>()?,
        total,
        limit,
        offset,
    }))
}

pub async fn get_release(
    _auth: Auth<Viewer>,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> ApiResult<web::Json<Release>> {
    let r = release::Entity::find_by_id(id.into_inner())
        .one(&state.db)
        .await?
        .ok_or(ApiError::NotFound("release"))?;
    Ok(web::Json(lifecycle::release_to_api(r)?))
}

fn filtered(q: &ListFilter) -> ApiResult<Select<deployment::Entity>> {
    let mut base = deployment::Entity::find().order_by_desc(deployment::Column::CreatedAt);
    if let Some(s) = q.service {
        base = base.filter(deployment::Column::ServiceId.eq(s));
    }
    if let Some(e) = q.environment {
        base = base.filter(deployment::Column::EnvironmentId.eq(e));
    }
    if let Some(p) = q.project {
        base = base.filter(deployment::Column::ProjectId.eq(p));
    }
    if let Some(s) = &q.state {
        let st = DeploymentState::parse(s).ok_or_else(|| {
            ApiError::invalid(
                "state",
                "must be awaiting_approval, queued, running, succeeded, failed, rolled_back, cancelled or rejected",
            )
        })?;
        base = base.filter(deployment::Column::State.eq(st.as_str()));
    }
    Ok(base)
}

pub async fn list(
    _auth: Auth<Viewer>,
    state: web::Data<AppState>,
    q: web::Query<ListFilter>,
) -> ApiResult<web::Json<Page<Deployment>>> {
    let (limit, offset) = q.page()?;
    let base = filtered(&q)?;
    let total = base.clone().count(&state.db).await?;
    let rows = base
        .find_also_related(release::Entity)
        .limit(limit)
        .offset(offset)
        .all(&state.db)
        .await?;
    let mut items = Vec::with_capacity(rows.len());
    for (d, r) in rows {
        let r = r.ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!("deployment {} lost its release", d.id))
        })?;
        items.push(lifecycle::deployment_to_api(d, &r, Vec::new())?);
    }
    Ok(web::Json(Page {
        items,
        total,
        limit,
        offset,
    }))
}

pub async fn get(
    _auth: Auth<Viewer>,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> ApiResult<web::Json<Deployment>> {
    Ok(web::Json(
        lifecycle::load(&state.db, id.into_inner()).await?,
    ))
}

/// `POST /services/{id}/deployments`: cut a release (or reuse an earlier one)
/// and queue its deployment. Answers 202 with the queued deployment.
pub async fn create(
    auth: Auth<Deployer>,
    state: web::Data<AppState>,
    service_id: web::Path<Uuid>,
    body: ValidJson<CreateDeployment>,
) -> ApiResult<HttpResponse> {
    let body = body.0;
    let mut tx = AuditTx::begin(&state.db).await?;
    let svc = services::find(tx.conn(), service_id.into_inner()).await?;
    let actor = auth.scope(Some(svc.environment_id))?;
    let (rel, origin) = match body.release_id {
        Some(rid) => {
            let rel = release::Entity::find_by_id(rid)
                .one(tx.conn())
                .await?
                .filter(|r| r.service_id == svc.id)
                .ok_or_else(|| {
                    ApiError::invalid("release_id", "no such release of this service")
                })?;
            (rel, Origin::Redeploy)
        }
        None => {
            let mut spec = services::spec_of(&svc)?;
            if let Some(img) = &body.image {
                spec.image = img.clone();
            }
            let trigger = if auth.principal.session.is_some() {
                Trigger::Manual
            } else {
                Trigger::Api
            };
            let from = NewRelease {
                git_sha: body.git_sha.clone(),
                git_ref: body.git_ref.clone(),
                trigger,
            };
            let rel = lifecycle::cut_release(&mut tx, &actor, &svc, &spec, from).await?;
            (rel, Origin::NewRelease)
        }
    };
    let gate = Gate {
        is_admin: auth.principal.effective_role(Some(svc.environment_id)) >= Role::Admin,
        override_reason: body.override_reason.clone(),
        origin,
    };
    let changed = lifecycle::create(&mut tx, &actor, &svc, &rel, gate).await?;
    let d = lifecycle::commit(tx, changed, &state.announcer()).await?;
    Ok(HttpResponse::Accepted().json(d))
}

/// `POST /deployments/{id}/cancel`.
pub async fn cancel(
    auth: Auth<Deployer>,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> ApiResult<web::Json<Deployment>> {
    let mut tx = AuditTx::begin(&state.db).await?;
    let d = lifecycle::find(tx.conn(), id.into_inner()).await?;
    let actor = auth.scope(Some(d.environment_id))?;
    let changed = lifecycle::cancel(&mut tx, &actor, d.id).await?;
    Ok(web::Json(
        lifecycle::commit(tx, changed, &state.announcer()).await?,
    ))
}
