//! Releases (immutable snapshots) and deployments (a release going to its
//! environment). Creating a deployment cuts a release and queues it; the
//! deploy engine executes queued deployments.
use super::{
    extract::{PageQuery, ValidJson},
    services,
};
use crate::{
    audit::{ActorInfo, AuditTx, Event},
    auth::{Auth, Deployer, Viewer},
    ci,
    deploy::{transition, DeployEvent},
    error::{ApiError, ApiResult},
    startup::AppState,
    store::entities::{deployment, deployment_step, release, service},
};
use actix_web::{web, HttpResponse};
use chrono::Utc;
use sea_orm::{
    sea_query::Expr, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Select,
};
use serde::Deserialize;
use serde_json::json;
use slipway_types::{
    api::{
        CreateDeployment, Deployment, DeploymentState, DeploymentStep, Page, Release, ServiceSpec,
        Trigger,
    },
    ImageRef, Role,
};
use uuid::Uuid;

fn internal(msg: String) -> ApiError {
    ApiError::Internal(anyhow::anyhow!(msg))
}

pub fn release_to_api(m: release::Model) -> ApiResult<Release> {
    let config: ServiceSpec = serde_json::from_str(&m.config)
        .map_err(|e| internal(format!("release {} config unreadable: {e}", m.id)))?;
    Ok(Release {
        id: m.id,
        service_id: m.service_id,
        environment_id: m.environment_id,
        project_id: m.project_id,
        number: m.number,
        image: ImageRef::try_from(m.image).map_err(internal)?,
        config,
        git_sha: m.git_sha,
        git_ref: m.git_ref,
        trigger: serde_json::from_value(json!(m.trigger)).unwrap_or(Trigger::Api),
        author: m.author,
        created_at: m.created_at,
    })
}

fn deployment_to_api(
    d: deployment::Model,
    r: &release::Model,
    steps: Vec<DeploymentStep>,
) -> ApiResult<Deployment> {
    Ok(Deployment {
        id: d.id,
        release_id: d.release_id,
        release_number: r.number,
        image: ImageRef::try_from(r.image.clone()).map_err(internal)?,
        service_id: d.service_id,
        environment_id: d.environment_id,
        project_id: d.project_id,
        state: DeploymentState::parse(&d.state).ok_or_else(|| {
            internal(format!("deployment {} has unknown state {}", d.id, d.state))
        })?,
        reason: d.reason,
        requested_by: d.requested_by,
        created_at: d.created_at,
        started_at: d.started_at,
        finished_at: d.finished_at,
        steps,
    })
}

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
            .map(release_to_api)
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
    Ok(web::Json(release_to_api(r)?))
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
        let r = r.ok_or_else(|| internal(format!("deployment {} lost its release", d.id)))?;
        items.push(deployment_to_api(d, &r, Vec::new())?);
    }
    Ok(web::Json(Page {
        items,
        total,
        limit,
        offset,
    }))
}

pub async fn load<C: ConnectionTrait>(db: &C, id: Uuid) -> ApiResult<Deployment> {
    let (d, r) = deployment::Entity::find_by_id(id)
        .find_also_related(release::Entity)
        .one(db)
        .await?
        .ok_or(ApiError::NotFound("deployment"))?;
    let r = r.ok_or_else(|| internal(format!("deployment {id} lost its release")))?;
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

pub async fn get(
    _auth: Auth<Viewer>,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> ApiResult<web::Json<Deployment>> {
    Ok(web::Json(load(&state.db, id.into_inner()).await?))
}

pub async fn add_step<C: ConnectionTrait>(
    db: &C,
    deployment_id: Uuid,
    message: String,
) -> ApiResult<()> {
    deployment_step::Entity::insert(deployment_step::ActiveModel {
        deployment_id: Set(deployment_id),
        at: Set(Utc::now()),
        message: Set(message),
        ..Default::default()
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// Where a new release comes from.
pub struct NewRelease {
    pub git_sha: Option<String>,
    pub git_ref: Option<String>,
    /// `manual`, `api`, `webhook`, `promotion`.
    pub trigger: &'static str,
}

/// Cuts release N+1 of `svc` with `spec` as its snapshot and records
/// `release.create`.
pub async fn insert_release(
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
        .one(&tx.txn)
        .await?
        .flatten();
    let m = release::Model {
        id: Uuid::new_v4(),
        service_id: svc.id,
        environment_id: svc.environment_id,
        project_id: svc.project_id,
        number: last.unwrap_or(0) + 1,
        image: spec.image.to_string(),
        config: serde_json::to_string(spec).map_err(|e| ApiError::Internal(e.into()))?,
        git_sha: from.git_sha,
        git_ref: from.git_ref,
        trigger: from.trigger.into(),
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
    .exec_without_returning(&tx.txn)
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
    let svc = services::find(&tx.txn, service_id.into_inner()).await?;
    let actor = auth.scope(Some(svc.environment_id))?;
    let rel = match body.release_id {
        Some(rid) => release::Entity::find_by_id(rid)
            .one(&tx.txn)
            .await?
            .filter(|r| r.service_id == svc.id)
            .ok_or_else(|| ApiError::invalid("release_id", "no such release of this service"))?,
        None => {
            let mut spec = services::spec_of(&svc)?;
            if let Some(img) = &body.image {
                spec.image = img.clone();
            }
            let trigger = if auth.principal.session.is_some() {
                "manual"
            } else {
                "api"
            };
            insert_release(
                &mut tx,
                &actor,
                &svc,
                &spec,
                NewRelease {
                    git_sha: body.git_sha.clone(),
                    git_ref: body.git_ref.clone(),
                    trigger,
                },
            )
            .await?
        }
    };
    let is_admin = auth.principal.effective_role(Some(svc.environment_id)) >= Role::Admin;
    let id = ci::policy::enqueue(
        &mut tx,
        &actor,
        &svc,
        &rel,
        ci::policy::Gate {
            is_admin,
            override_reason: body.override_reason.clone(),
            redeploy: body.release_id.is_some(),
        },
    )
    .await?;
    let d = load(&tx.txn, id).await?;
    tx.commit().await?;
    crate::deploy::routes::announce(&state, &d);
    Ok(HttpResponse::Accepted().json(d))
}

pub async fn cancel(
    auth: Auth<Deployer>,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> ApiResult<web::Json<Deployment>> {
    let mut tx = AuditTx::begin(&state.db).await?;
    let d = deployment::Entity::find_by_id(id.into_inner())
        .one(&tx.txn)
        .await?
        .ok_or(ApiError::NotFound("deployment"))?;
    let actor = auth.scope(Some(d.environment_id))?;
    let from = DeploymentState::parse(&d.state)
        .ok_or_else(|| internal(format!("deployment {} has unknown state {}", d.id, d.state)))?;
    let to = transition(from, DeployEvent::Cancel)
        .map_err(|e| ApiError::InvalidTransition(e.to_string()))?;
    let now = Utc::now();
    // Conditional on the state read above, so a concurrent transition wins cleanly.
    let res = deployment::Entity::update_many()
        .col_expr(deployment::Column::State, Expr::value(to.as_str()))
        .col_expr(deployment::Column::FinishedAt, Expr::value(now))
        .col_expr(
            deployment::Column::Reason,
            Expr::value(format!("cancelled by {}", actor.name)),
        )
        .filter(deployment::Column::Id.eq(d.id))
        .filter(deployment::Column::State.eq(from.as_str()))
        .exec(&tx.txn)
        .await?;
    if res.rows_affected != 1 {
        return Err(ApiError::InvalidTransition(
            "the deployment changed state meanwhile; reload".into(),
        ));
    }
    add_step(&tx.txn, d.id, format!("cancelled by {}", actor.name)).await?;
    tx.record(
        &actor,
        Event::new(
            "deployment.cancel",
            "deployment",
            d.id,
            json!({"from": from.as_str()}),
        ),
    )
    .await?;
    let out = load(&tx.txn, d.id).await?;
    tx.commit().await?;
    crate::deploy::routes::announce(&state, &out);
    Ok(web::Json(out))
}
