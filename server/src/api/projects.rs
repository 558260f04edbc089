//! Projects: the applications Slipway deploys.
use super::{
    conflict_on_duplicate,
    extract::{PageQuery, ValidJson},
};
use crate::{
    audit::{AuditTx, Event},
    auth::{Admin, Auth, Viewer},
    error::{ApiError, ApiResult},
    state::AppState,
    store::entities::{environment, project},
};
use actix_web::{web, HttpResponse};
use chrono::Utc;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde_json::json;
use slipway_types::api::{NewProject, Page, Project, UpdateProject};
use uuid::Uuid;

pub fn to_api(m: project::Model) -> Result<Project, ApiError> {
    Ok(Project {
        id: m.id,
        name: super::stored_name(m.name)?,
        description: m.description,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

pub async fn find<C: ConnectionTrait>(db: &C, id: Uuid) -> ApiResult<project::Model> {
    project::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(ApiError::NotFound("project"))
}

pub async fn list(
    _auth: Auth<Viewer>,
    state: web::Data<AppState>,
    q: web::Query<PageQuery>,
) -> ApiResult<web::Json<Page<Project>>> {
    let (limit, offset) = q.resolve()?;
    let base = project::Entity::find().order_by_asc(project::Column::Name);
    let total = base.clone().count(&state.db).await?;
    let rows = base.limit(limit).offset(offset).all(&state.db).await?;
    Ok(web::Json(Page {
        items: rows.into_iter().map(to_api).collect::<Result<_, _>>()?,
        total,
        limit,
        offset,
    }))
}

pub async fn create(
    auth: Auth<Admin>,
    state: web::Data<AppState>,
    body: ValidJson<NewProject>,
) -> ApiResult<HttpResponse> {
    let actor = auth.scope(None)?;
    let body = body.0;
    let now = Utc::now();
    let id = Uuid::new_v4();
    let mut tx = AuditTx::begin(&state.db).await?;
    project::Entity::insert(project::ActiveModel {
        id: Set(id),
        name: Set(body.name.to_string()),
        description: Set(body.description.clone()),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec_without_returning(tx.conn())
    .await
    .map_err(|e| {
        conflict_on_duplicate(e, format!("a project named {} already exists", body.name))
    })?;
    tx.record(
        &actor,
        Event::new(
            "project.create",
            "project",
            id,
            json!({"name": body.name, "description": body.description}),
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
) -> ApiResult<web::Json<Project>> {
    Ok(web::Json(to_api(find(&state.db, id.into_inner()).await?)?))
}

pub async fn update(
    auth: Auth<Admin>,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: ValidJson<UpdateProject>,
) -> ApiResult<web::Json<Project>> {
    let actor = auth.scope(None)?;
    let body = body.0;
    let mut tx = AuditTx::begin(&state.db).await?;
    let old = find(tx.conn(), id.into_inner()).await?;
    let mut am: project::ActiveModel = old.clone().into();
    if let Some(n) = &body.name {
        am.name = Set(n.to_string());
    }
    if let Some(d) = &body.description {
        am.description = Set(d.clone());
    }
    am.updated_at = Set(Utc::now());
    project::Entity::update(am)
        .exec(tx.conn())
        .await
        .map_err(|e| conflict_on_duplicate(e, "a project with that name already exists"))?;
    tx.record(
        &actor,
        Event::new(
            "project.update",
            "project",
            old.id,
            json!({"name": body.name, "description": body.description}),
        ),
    )
    .await?;
    let m = find(tx.conn(), old.id).await?;
    tx.commit().await?;
    Ok(web::Json(to_api(m)?))
}

pub async fn delete(
    auth: Auth<Admin>,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let actor = auth.scope(None)?;
    let mut tx = AuditTx::begin(&state.db).await?;
    let p = find(tx.conn(), id.into_inner()).await?;
    let envs = environment::Entity::find()
        .filter(environment::Column::ProjectId.eq(p.id))
        .count(tx.conn())
        .await?;
    if envs > 0 {
        return Err(ApiError::Conflict(format!(
            "project {} still has {envs} environment(s): delete them first",
            p.name
        )));
    }
    project::Entity::delete_by_id(p.id).exec(tx.conn()).await?;
    tx.record(
        &actor,
        Event::new("project.delete", "project", p.id, json!({"name": p.name})),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}
