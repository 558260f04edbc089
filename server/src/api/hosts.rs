//! Docker hosts served by agents, and the environments they serve. A host is
//! registered here (status `pending`) and assigned; enrollment, revocation
//! and the agent connection live in `crate::agents`.
use super::{
    conflict_on_duplicate, environments,
    extract::{PageQuery, ValidJson},
};
use crate::{
    audit::{AuditTx, Event},
    auth::{Admin, Auth, Viewer},
    error::{ApiError, ApiResult},
    state::AppState,
    store::entities::{host, host_environment},
};
use actix_web::{web, HttpResponse};
use chrono::Utc;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde_json::json;
use slipway_types::{
    agent::ProtocolErrorCode,
    api::{Host, HostStatus, NewHost, Page, UpdateHost},
};
use std::collections::BTreeMap;
use uuid::Uuid;

/// The stored status of a host; an unknown spelling is an error, not a
/// silent `pending`.
pub(crate) fn status(m: &host::Model) -> ApiResult<HostStatus> {
    HostStatus::parse(&m.status).ok_or_else(|| {
        ApiError::Internal(anyhow::anyhow!(
            "host {} has an unknown stored status {:?}",
            m.id,
            m.status
        ))
    })
}

pub(crate) async fn to_api<C: ConnectionTrait>(db: &C, m: host::Model) -> ApiResult<Host> {
    let environments = host_environment::Entity::find()
        .filter(host_environment::Column::HostId.eq(m.id))
        .all(db)
        .await?
        .into_iter()
        .map(|r| r.environment_id)
        .collect();
    let labels: BTreeMap<String, String> = serde_json::from_str(&m.labels).unwrap_or_default();
    let status = status(&m)?;
    Ok(Host {
        id: m.id,
        name: super::stored_name(m.name)?,
        status,
        environments,
        labels,
        last_seen_at: m.last_seen_at,
        created_at: m.created_at,
        facts: m
            .facts
            .as_deref()
            .and_then(|f| serde_json::from_str(f).ok()),
        containers: Vec::new(),
        stats: Vec::new(),
    })
}

pub(crate) async fn find<C: ConnectionTrait>(db: &C, id: Uuid) -> ApiResult<host::Model> {
    host::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(ApiError::NotFound("host"))
}

async fn assign<C: ConnectionTrait>(db: &C, host_id: Uuid, envs: &[Uuid]) -> ApiResult<()> {
    host_environment::Entity::delete_many()
        .filter(host_environment::Column::HostId.eq(host_id))
        .exec(db)
        .await?;
    let mut seen = std::collections::BTreeSet::new();
    for (i, e) in envs.iter().enumerate() {
        environments::find(db, *e)
            .await
            .map_err(|_| ApiError::invalid(format!("environments[{i}]"), "no such environment"))?;
        if seen.insert(*e) {
            host_environment::Entity::insert(host_environment::ActiveModel {
                host_id: Set(host_id),
                environment_id: Set(*e),
            })
            .exec_without_returning(db)
            .await?;
        }
    }
    Ok(())
}

pub async fn list(
    _auth: Auth<Viewer>,
    state: web::Data<AppState>,
    q: web::Query<PageQuery>,
) -> ApiResult<web::Json<Page<Host>>> {
    let (limit, offset) = q.resolve()?;
    let base = host::Entity::find().order_by_asc(host::Column::Name);
    let total = base.clone().count(&state.db).await?;
    let mut items = Vec::new();
    for m in base.limit(limit).offset(offset).all(&state.db).await? {
        items.push(to_api(&state.db, m).await?);
    }
    Ok(web::Json(Page {
        items,
        total,
        limit,
        offset,
    }))
}

pub async fn create(
    auth: Auth<Admin>,
    state: web::Data<AppState>,
    body: ValidJson<NewHost>,
) -> ApiResult<HttpResponse> {
    let actor = auth.scope(None)?;
    let body = body.0;
    let mut tx = AuditTx::begin(&state.db).await?;
    let id = Uuid::new_v4();
    host::Entity::insert(host::ActiveModel {
        id: Set(id),
        name: Set(body.name.to_string()),
        status: Set(HostStatus::Pending.as_str().into()),
        labels: Set(serde_json::to_string(&body.labels).map_err(|e| ApiError::Internal(e.into()))?),
        last_seen_at: Set(None),
        created_at: Set(Utc::now()),
        public_key: Set(None),
        enroll_token_hash: Set(None),
        enroll_expires_at: Set(None),
        facts: Set(None),
    })
    .exec_without_returning(tx.conn())
    .await
    .map_err(|e| conflict_on_duplicate(e, format!("a host named {} already exists", body.name)))?;
    assign(tx.conn(), id, &body.environments).await?;
    tx.record(
        &actor,
        Event::new(
            "host.create",
            "host",
            id,
            json!({"name": body.name, "environments": body.environments, "labels": body.labels}),
        ),
    )
    .await?;
    let h = to_api(tx.conn(), find(tx.conn(), id).await?).await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(h))
}

pub async fn get(
    _auth: Auth<Viewer>,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> ApiResult<web::Json<Host>> {
    let m = find(&state.db, id.into_inner()).await?;
    let mut h = to_api(&state.db, m).await?;
    // Live data only while the agent is connected (lists stay store-only).
    if let Some(live) = state.hub.live(h.id) {
        h.containers = live.containers;
        h.stats = live.stats;
    }
    Ok(web::Json(h))
}

pub async fn update(
    auth: Auth<Admin>,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: ValidJson<UpdateHost>,
) -> ApiResult<web::Json<Host>> {
    let actor = auth.scope(None)?;
    let body = body.0;
    let mut tx = AuditTx::begin(&state.db).await?;
    let old = find(tx.conn(), id.into_inner()).await?;
    let mut am: host::ActiveModel = old.clone().into();
    if let Some(n) = &body.name {
        am.name = Set(n.to_string());
    }
    if let Some(l) = &body.labels {
        am.labels = Set(serde_json::to_string(l).map_err(|e| ApiError::Internal(e.into()))?);
    }
    host::Entity::update(am)
        .exec(tx.conn())
        .await
        .map_err(|e| conflict_on_duplicate(e, "a host with that name already exists"))?;
    if let Some(envs) = &body.environments {
        assign(tx.conn(), old.id, envs).await?;
    }
    tx.record(
        &actor,
        Event::new(
            "host.update",
            "host",
            old.id,
            json!({"name": body.name, "environments": body.environments, "labels": body.labels}),
        ),
    )
    .await?;
    let h = to_api(tx.conn(), find(tx.conn(), old.id).await?).await?;
    tx.commit().await?;
    Ok(web::Json(h))
}

pub async fn delete(
    auth: Auth<Admin>,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let actor = auth.scope(None)?;
    let mut tx = AuditTx::begin(&state.db).await?;
    let h = find(tx.conn(), id.into_inner()).await?;
    host_environment::Entity::delete_many()
        .filter(host_environment::Column::HostId.eq(h.id))
        .exec(tx.conn())
        .await?;
    host::Entity::delete_by_id(h.id).exec(tx.conn()).await?;
    tx.record(
        &actor,
        Event::new("host.delete", "host", h.id, json!({"name": h.name})),
    )
    .await?;
    tx.commit().await?;
    // Its agent must not stay connected as a host that no longer exists.
    state
        .hub
        .disconnect(h.id, ProtocolErrorCode::Revoked, "host deleted");
    Ok(HttpResponse::NoContent().finish())
}
