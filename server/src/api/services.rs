//! Services of an environment: what runs, and how.
use super::{
    conflict_on_duplicate, environments,
    extract::{PageQuery, ValidJson},
};
use crate::{
    audit::{AuditTx, Event},
    auth::{Admin, Auth, Viewer},
    error::{ApiError, ApiResult},
    state::AppState,
    store::entities::{deployment, deployment_step, release, service},
};
use actix_web::{web, HttpResponse};
use chrono::Utc;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde_json::json;
use slipway_types::api::{DeploymentState, NewService, Page, Service, ServiceSpec, UpdateService};
use uuid::Uuid;

pub fn spec_of(m: &service::Model) -> Result<ServiceSpec, ApiError> {
    serde_json::from_str(&m.spec).map_err(|e| {
        ApiError::Internal(anyhow::anyhow!(
            "stored spec of service {} is unreadable: {e}",
            m.id
        ))
    })
}

pub fn to_api(m: service::Model) -> Result<Service, ApiError> {
    Ok(Service {
        id: m.id,
        environment_id: m.environment_id,
        project_id: m.project_id,
        spec: spec_of(&m)?,
        name: super::stored_name(m.name)?,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

pub async fn find<C: ConnectionTrait>(db: &C, id: Uuid) -> ApiResult<service::Model> {
    service::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(ApiError::NotFound("service"))
}

fn spec_json(spec: &ServiceSpec) -> ApiResult<String> {
    serde_json::to_string(spec).map_err(|e| ApiError::Internal(e.into()))
}

/// A page of an environment's services. Pages are served from the read
/// cache (`store::cache`) while nothing has changed; a miss costs two
/// queries, the decode of each stored spec and the encoding of the page.
pub async fn list(
    _auth: Auth<Viewer>,
    state: web::Data<AppState>,
    env_id: web::Path<Uuid>,
    q: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let (limit, offset) = q.resolve()?;
    let key = (env_id.into_inner(), limit, offset);
    let cache = &state.read_cache;
    let generation = cache.generation();
    let body = match generation.and_then(|g| cache.service_pages.get(g, &key)) {
        Some(body) => body,
        None => {
            let page = read_page(&state.db, key.0, limit, offset).await?;
            let body = web::Bytes::from(
                serde_json::to_vec(&page).map_err(|e| ApiError::Internal(e.into()))?,
            );
            if let Some(g) = generation {
                cache.service_pages.put(g, key, body.clone());
            }
            body
        }
    };
    Ok(HttpResponse::Ok()
        .content_type(actix_web::http::header::ContentType::json())
        .body(body))
}

async fn read_page(
    db: &sea_orm::DatabaseConnection,
    env_id: Uuid,
    limit: u64,
    offset: u64,
) -> ApiResult<Page<Service>> {
    let base = service::Entity::find()
        .filter(service::Column::EnvironmentId.eq(env_id))
        .order_by_asc(service::Column::Name);
    let total = base.clone().count(db).await?;
    if total == 0 {
        environments::find(db, env_id).await?;
    }
    let rows = base.limit(limit).offset(offset).all(db).await?;
    Ok(Page {
        items: rows.into_iter().map(to_api).collect::<Result<_, _>>()?,
        total,
        limit,
        offset,
    })
}

pub async fn create(
    auth: Auth<Admin>,
    state: web::Data<AppState>,
    env_id: web::Path<Uuid>,
    body: ValidJson<NewService>,
) -> ApiResult<HttpResponse> {
    let body = body.0;
    let env_id = env_id.into_inner();
    let actor = auth.scope(Some(env_id))?;
    let mut tx = AuditTx::begin(&state.db).await?;
    let env = environments::find(tx.conn(), env_id).await?;
    let now = Utc::now();
    let id = Uuid::new_v4();
    service::Entity::insert(service::ActiveModel {
        id: Set(id),
        environment_id: Set(env.id),
        project_id: Set(env.project_id),
        name: Set(body.name.to_string()),
        spec: Set(spec_json(&body.spec)?),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec_without_returning(tx.conn())
    .await
    .map_err(|e| {
        conflict_on_duplicate(
            e,
            format!(
                "environment {} already has a service named {}",
                env.name, body.name
            ),
        )
    })?;
    tx.record(
        &actor,
        Event::new(
            "service.create",
            "service",
            id,
            json!({"name": body.name, "environment": env.name, "spec": body.spec}),
        ),
    )
    .await?;
    let m = find(tx.conn(), id).await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(to_api(m)?))
}

pub async fn get(
    _auth: Auth<Viewer>,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> ApiResult<web::Json<Service>> {
    Ok(web::Json(to_api(find(&state.db, id.into_inner()).await?)?))
}

pub async fn update(
    auth: Auth<Admin>,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: ValidJson<UpdateService>,
) -> ApiResult<web::Json<Service>> {
    let body = body.0;
    let mut tx = AuditTx::begin(&state.db).await?;
    let old = find(tx.conn(), id.into_inner()).await?;
    let actor = auth.scope(Some(old.environment_id))?;
    let mut am: service::ActiveModel = old.clone().into();
    if let Some(n) = &body.name {
        am.name = Set(n.to_string());
    }
    if let Some(spec) = &body.spec {
        am.spec = Set(spec_json(spec)?);
    }
    am.updated_at = Set(Utc::now());
    service::Entity::update(am)
        .exec(tx.conn())
        .await
        .map_err(|e| {
            conflict_on_duplicate(e, "the environment already has a service with that name")
        })?;
    tx.record(
        &actor,
        Event::new(
            "service.update",
            "service",
            old.id,
            json!({"name": body.name, "spec": body.spec}),
        ),
    )
    .await?;
    let m = find(tx.conn(), old.id).await?;
    tx.commit().await?;
    Ok(web::Json(to_api(m)?))
}

/// Deletes a service with its release and deployment history; refused while
/// a deployment of it awaits approval, is queued or is running, and in a
/// protected environment while the service runs (`environment_protected`).
pub async fn delete(
    auth: Auth<Admin>,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let mut tx = AuditTx::begin(&state.db).await?;
    let svc = find(tx.conn(), id.into_inner()).await?;
    let actor = auth.scope(Some(svc.environment_id))?;
    let active = deployment::Entity::find()
        .filter(deployment::Column::ServiceId.eq(svc.id))
        .filter(deployment::Column::State.is_in([
            DeploymentState::AwaitingApproval.as_str(),
            DeploymentState::Queued.as_str(),
            DeploymentState::Running.as_str(),
        ]))
        .count(tx.conn())
        .await?;
    if active > 0 {
        return Err(ApiError::Conflict(format!(
            "service {} has a deployment in progress: cancel it first",
            svc.name
        )));
    }
    let env = environments::find(tx.conn(), svc.environment_id).await?;
    let what = format!("deleting service {}", svc.name);
    environments::refuse_if_protected(
        tx.conn(),
        &state.hub,
        &env,
        std::slice::from_ref(&svc),
        &what,
    )
    .await?;
    let deployment_ids: Vec<Uuid> = deployment::Entity::find()
        .filter(deployment::Column::ServiceId.eq(svc.id))
        .select_only()
        .column(deployment::Column::Id)
        .into_tuple()
        .all(tx.conn())
        .await?;
    deployment_step::Entity::delete_many()
        .filter(deployment_step::Column::DeploymentId.is_in(deployment_ids))
        .exec(tx.conn())
        .await?;
    deployment::Entity::delete_many()
        .filter(deployment::Column::ServiceId.eq(svc.id))
        .exec(tx.conn())
        .await?;
    release::Entity::delete_many()
        .filter(release::Column::ServiceId.eq(svc.id))
        .exec(tx.conn())
        .await?;
    service::Entity::delete_by_id(svc.id)
        .exec(tx.conn())
        .await?;
    tx.record(
        &actor,
        Event::new(
            "service.delete",
            "service",
            svc.id,
            json!({"name": svc.name}),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}
