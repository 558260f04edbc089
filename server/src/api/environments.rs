//! Environments of a project (development, staging, production…).
//!
//! A `protected` environment is one whose running services must not be
//! removed by accident: deleting a service of it, or the environment itself,
//! is refused with `environment_protected` while a service there runs (one
//! of its deployments succeeded, or a connected agent reports a running
//! container of it). To delete anyway, unprotect the environment first (an
//! audited change). The dashboard also asks for the environment's name,
//! typed, before it deploys, rolls back or deletes there.
use super::{
    conflict_on_duplicate,
    extract::{PageQuery, ValidJson},
    projects,
};
use crate::{
    agents::AgentHub,
    audit::{AuditTx, Event},
    auth::{Admin, Auth, Viewer},
    error::{ApiError, ApiResult},
    state::AppState,
    store::entities::{deployment, environment, host_environment, service, variable},
};
use actix_web::{web, HttpResponse};
use chrono::Utc;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde_json::json;
use slipway_types::{
    agent::ContainerState,
    api::{DeploymentState, Environment, NewEnvironment, Page, UpdateEnvironment},
};
use std::collections::BTreeSet;
use uuid::Uuid;

pub fn to_api(m: environment::Model) -> Result<Environment, ApiError> {
    Ok(Environment {
        id: m.id,
        project_id: m.project_id,
        name: super::stored_name(m.name)?,
        protected: m.protected,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

pub async fn find<C: ConnectionTrait>(db: &C, id: Uuid) -> ApiResult<environment::Model> {
    environment::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(ApiError::NotFound("environment"))
}

/// Why deleting `what` in the protected environment `env` is refused, given
/// the names of its services that run; `None` when nothing runs. Pure.
pub fn protected_refusal(env: &str, what: &str, running: &[String]) -> Option<String> {
    let (first, rest) = running.split_first()?;
    let services = match rest.len() {
        0 => format!("service {first} runs there"),
        n => format!("services {first} and {n} more run there"),
    };
    Some(format!(
        "environment {env} is protected and {services}: {what} is refused; \
         unprotect the environment first (an audited change)"
    ))
}

/// The services among `services` that run: one of their deployments
/// succeeded (their containers serve until the service is deleted), or a
/// connected agent reports a running container of theirs.
async fn running<C: ConnectionTrait>(
    db: &C,
    hub: &AgentHub,
    services: &[service::Model],
) -> ApiResult<Vec<String>> {
    if services.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = services.iter().map(|s| s.id).collect();
    let mut live: BTreeSet<Uuid> = deployment::Entity::find()
        .filter(deployment::Column::ServiceId.is_in(ids.clone()))
        .filter(deployment::Column::State.eq(DeploymentState::Succeeded.as_str()))
        .select_only()
        .column(deployment::Column::ServiceId)
        .distinct()
        .into_tuple::<Uuid>()
        .all(db)
        .await?
        .into_iter()
        .collect();
    for host in hub.online() {
        for c in hub.live(host).map(|h| h.containers).unwrap_or_default() {
            if c.state == ContainerState::Running && ids.contains(&c.service_id) {
                live.insert(c.service_id);
            }
        }
    }
    Ok(services
        .iter()
        .filter(|s| live.contains(&s.id))
        .map(|s| s.name.clone())
        .collect())
}

/// Refuses (409 `environment_protected`) deleting `what` of `env` while one
/// of `services` runs, when `env` is protected.
pub(crate) async fn refuse_if_protected<C: ConnectionTrait>(
    db: &C,
    hub: &AgentHub,
    env: &environment::Model,
    services: &[service::Model],
    what: &str,
) -> ApiResult<()> {
    if !env.protected {
        return Ok(());
    }
    match protected_refusal(&env.name, what, &running(db, hub, services).await?) {
        Some(why) => Err(ApiError::Protected(why)),
        None => Ok(()),
    }
}

pub async fn list(
    _auth: Auth<Viewer>,
    state: web::Data<AppState>,
    project_id: web::Path<Uuid>,
    q: web::Query<PageQuery>,
) -> ApiResult<web::Json<Page<Environment>>> {
    let (limit, offset) = q.resolve()?;
    let p = projects::find(&state.db, project_id.into_inner()).await?;
    let base = environment::Entity::find()
        .filter(environment::Column::ProjectId.eq(p.id))
        .order_by_asc(environment::Column::CreatedAt);
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
    project_id: web::Path<Uuid>,
    body: ValidJson<NewEnvironment>,
) -> ApiResult<HttpResponse> {
    let actor = auth.scope(None)?;
    let body = body.0;
    let mut tx = AuditTx::begin(&state.db).await?;
    let p = projects::find(tx.conn(), project_id.into_inner()).await?;
    let now = Utc::now();
    let id = Uuid::new_v4();
    environment::Entity::insert(environment::ActiveModel {
        id: Set(id),
        project_id: Set(p.id),
        name: Set(body.name.to_string()),
        protected: Set(body.protected),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec_without_returning(tx.conn())
    .await
    .map_err(|e| {
        conflict_on_duplicate(
            e,
            format!(
                "project {} already has an environment named {}",
                p.name, body.name
            ),
        )
    })?;
    tx.record(
        &actor,
        Event::new(
            "environment.create",
            "environment",
            id,
            json!({"project": p.name, "name": body.name, "protected": body.protected}),
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
) -> ApiResult<web::Json<Environment>> {
    Ok(web::Json(to_api(find(&state.db, id.into_inner()).await?)?))
}

pub async fn update(
    auth: Auth<Admin>,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: ValidJson<UpdateEnvironment>,
) -> ApiResult<web::Json<Environment>> {
    let body = body.0;
    let mut tx = AuditTx::begin(&state.db).await?;
    let old = find(tx.conn(), id.into_inner()).await?;
    let actor = auth.scope(Some(old.id))?;
    let mut am: environment::ActiveModel = old.clone().into();
    if let Some(n) = &body.name {
        am.name = Set(n.to_string());
    }
    if let Some(p) = body.protected {
        am.protected = Set(p);
    }
    am.updated_at = Set(Utc::now());
    environment::Entity::update(am)
        .exec(tx.conn())
        .await
        .map_err(|e| {
            conflict_on_duplicate(e, "the project already has an environment with that name")
        })?;
    tx.record(
        &actor,
        Event::new(
            "environment.update",
            "environment",
            old.id,
            json!({"name": body.name, "protected": body.protected}),
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
    let mut tx = AuditTx::begin(&state.db).await?;
    let env = find(tx.conn(), id.into_inner()).await?;
    let actor = auth.scope(Some(env.id))?;
    let all = service::Entity::find()
        .filter(service::Column::EnvironmentId.eq(env.id))
        .all(tx.conn())
        .await?;
    refuse_if_protected(
        tx.conn(),
        &state.hub,
        &env,
        &all,
        "deleting the environment",
    )
    .await?;
    let services = all.len();
    if services > 0 {
        return Err(ApiError::Conflict(format!(
            "environment {} still has {services} service(s): delete them first",
            env.name
        )));
    }
    variable::Entity::delete_many()
        .filter(variable::Column::EnvironmentId.eq(env.id))
        .exec(tx.conn())
        .await?;
    host_environment::Entity::delete_many()
        .filter(host_environment::Column::EnvironmentId.eq(env.id))
        .exec(tx.conn())
        .await?;
    environment::Entity::delete_by_id(env.id)
        .exec(tx.conn())
        .await?;
    tx.record(
        &actor,
        Event::new(
            "environment.delete",
            "environment",
            env.id,
            json!({"name": env.name}),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_names_what_runs() {
        assert_eq!(protected_refusal("production", "deleting", &[]), None);
        let one = protected_refusal("production", "deleting service web", &["web".into()]);
        assert_eq!(
            one.as_deref(),
            Some(
                "environment production is protected and service web runs there: \
                 deleting service web is refused; unprotect the environment first (an audited change)"
            )
        );
        let many = protected_refusal(
            "prod",
            "deleting the environment",
            &["a".into(), "b".into(), "c".into()],
        );
        assert!(many.unwrap().contains("services a and 2 more run there"));
    }
}
