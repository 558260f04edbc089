//! `POST /api/v1/environments/{id}/compose`: import a compose file as the
//! environment's services, all in one transaction (or nothing).
use super::{convert, ComposeError};
use crate::{
    api::{conflict_on_duplicate, environments, extract::ValidJson},
    audit::{AuditTx, Event},
    auth::{Admin, Auth},
    error::{ApiError, ApiResult},
    state::AppState,
    store::entities::service,
};
use actix_web::web;
use chrono::Utc;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
use serde_json::json;
use slipway_types::api::{ComposeImport, ComposeImportResult};
use uuid::Uuid;

impl From<ComposeError> for ApiError {
    fn from(e: ComposeError) -> Self {
        ApiError::invalid("compose", e.to_string())
    }
}

pub async fn import(
    auth: Auth<Admin>,
    state: web::Data<AppState>,
    env_id: web::Path<Uuid>,
    body: ValidJson<ComposeImport>,
) -> ApiResult<web::Json<ComposeImportResult>> {
    let body = body.0;
    let env_id = env_id.into_inner();
    let actor = auth.scope(Some(env_id))?;
    let converted = convert(&body.compose, &body.files)?;
    let mut tx = AuditTx::begin(&state.db).await?;
    let env = environments::find(tx.conn(), env_id).await?;

    let names: Vec<String> = converted
        .services
        .iter()
        .map(|s| s.name.to_string())
        .collect();
    let mut clashes: Vec<String> = service::Entity::find()
        .filter(service::Column::EnvironmentId.eq(env.id))
        .filter(service::Column::Name.is_in(names))
        .select_only()
        .column(service::Column::Name)
        .into_tuple()
        .all(tx.conn())
        .await?;
    if !clashes.is_empty() {
        clashes.sort();
        return Err(ApiError::Conflict(format!(
            "environment {} already has services named {}: nothing was imported",
            env.name,
            clashes.join(", ")
        )));
    }
    let result = ComposeImportResult {
        services: converted.services,
        ignored: converted.ignored,
        dry_run: body.dry_run,
    };
    if body.dry_run {
        // Dropping the transaction rolls it back: nothing was written.
        return Ok(web::Json(result));
    }

    let now = Utc::now();
    for s in &result.services {
        let id = Uuid::new_v4();
        let spec = serde_json::to_string(&s.spec).map_err(|e| ApiError::Internal(e.into()))?;
        service::Entity::insert(service::ActiveModel {
            id: Set(id),
            environment_id: Set(env.id),
            project_id: Set(env.project_id),
            name: Set(s.name.to_string()),
            spec: Set(spec),
            created_at: Set(now),
            updated_at: Set(now),
        })
        .exec_without_returning(tx.conn())
        .await
        .map_err(|e| {
            conflict_on_duplicate(
                e,
                format!(
                    "environment {} already has a service named {}: nothing was imported",
                    env.name, s.name
                ),
            )
        })?;
        tx.record(
            &actor,
            Event::new(
                "service.create",
                "service",
                id,
                json!({
                    "name": s.name,
                    "environment": env.name,
                    "spec": s.spec,
                    "source": "compose",
                }),
            ),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(web::Json(result))
}
