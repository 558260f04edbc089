//! Promotion: the same image (and code-shaped config, see [`super::diff`])
//! of a release, cut as a new release of the same-named service in another
//! environment of the project, and deployed there under that environment's
//! policy.
use super::diff;
use crate::{
    api::{environments, extract::ValidJson, services},
    audit::{AuditTx, Event},
    auth::{Auth, Deployer, Viewer},
    deploy::lifecycle::{self, Gate, NewRelease, Origin},
    error::{ApiError, ApiResult},
    state::AppState,
    store::entities::{environment, release, service},
};
use actix_web::{web, HttpResponse};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use serde::Deserialize;
use serde_json::json;
use slipway_types::{
    api::{PromotePreview, PromoteRequest, ServiceSpec, Trigger},
    Role,
};
use uuid::Uuid;

struct Plan {
    source: release::Model,
    source_spec: ServiceSpec,
    env: environment::Model,
    target: service::Model,
    before: ServiceSpec,
    after: ServiceSpec,
}

async fn plan<C: ConnectionTrait>(db: &C, release_id: Uuid, env_id: Uuid) -> ApiResult<Plan> {
    let source = release::Entity::find_by_id(release_id)
        .one(db)
        .await?
        .ok_or(ApiError::NotFound("release"))?;
    let env = environment::Entity::find_by_id(env_id)
        .one(db)
        .await?
        .ok_or_else(|| ApiError::invalid("environment_id", "no such environment"))?;
    if env.project_id != source.project_id {
        return Err(ApiError::invalid(
            "environment_id",
            "must be an environment of the release's project",
        ));
    }
    if env.id == source.environment_id {
        return Err(ApiError::invalid(
            "environment_id",
            "the release is already in this environment",
        ));
    }
    let from = services::find(db, source.service_id).await?;
    let target = service::Entity::find()
        .filter(service::Column::EnvironmentId.eq(env.id))
        .filter(service::Column::Name.eq(from.name.as_str()))
        .one(db)
        .await?
        .ok_or_else(|| {
            ApiError::invalid(
                "environment_id",
                format!(
                    "environment {} has no service named {}",
                    env.name, from.name
                ),
            )
        })?;
    let source_spec = lifecycle::release_to_api(source.clone())?.config;
    let before = services::spec_of(&target)?;
    let after = diff::promoted_spec(&source_spec, &before);
    Ok(Plan {
        source,
        source_spec,
        env,
        target,
        before,
        after,
    })
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct PreviewQuery {
    #[schemars(required)]
    pub environment_id: Option<Uuid>,
}

/// `GET /releases/{id}/promote-preview?environment_id=`.
pub async fn preview(
    _auth: Auth<Viewer>,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    q: web::Query<PreviewQuery>,
) -> ApiResult<web::Json<PromotePreview>> {
    let env_id = q
        .environment_id
        .ok_or_else(|| ApiError::invalid("environment_id", "required"))?;
    let p = plan(&state.db, id.into_inner(), env_id).await?;
    Ok(web::Json(diff::spec_diff(
        p.source.id,
        p.target.id,
        p.env.id,
        &p.before,
        &p.after,
    )))
}

/// `POST /releases/{id}/promote` `{environment_id}` → 202 with the deployment.
pub async fn promote(
    auth: Auth<Deployer>,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: ValidJson<PromoteRequest>,
) -> ApiResult<HttpResponse> {
    let body = body.0;
    let mut tx = AuditTx::begin(&state.db).await?;
    let env = environments::find(tx.conn(), body.environment_id)
        .await
        .map_err(|_| ApiError::invalid("environment_id", "no such environment"))?;
    let actor = auth.scope(Some(env.id))?;
    let p = plan(tx.conn(), id.into_inner(), env.id).await?;
    let from = NewRelease {
        git_sha: p.source.git_sha.clone(),
        git_ref: p.source.git_ref.clone(),
        trigger: Trigger::Promotion,
    };
    let rel = lifecycle::cut_release(&mut tx, &actor, &p.target, &p.after, from).await?;
    tx.record(
        &actor,
        Event::new(
            "release.promote",
            "release",
            rel.id,
            json!({"from_release": p.source.id, "from_environment": p.source.environment_id, "to_environment": p.env.name, "service": p.target.name, "image": p.source_spec.image}),
        ),
    )
    .await?;
    let gate = Gate {
        is_admin: auth.principal.effective_role(Some(env.id)) >= Role::Admin,
        override_reason: body.override_reason,
        origin: Origin::NewRelease,
    };
    let changed = lifecycle::create(&mut tx, &actor, &p.target, &rel, gate).await?;
    let d = lifecycle::commit(tx, changed, &state.announcer()).await?;
    Ok(HttpResponse::Accepted().json(d))
}
