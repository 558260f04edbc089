//! Variables and secrets of an environment. Secret values are write-only:
//! encrypted on the way in, never returned, never written to the audit log.
use super::{environments, extract::ValidJson};
use crate::{
    audit::{AuditTx, Event},
    auth::{Admin, Auth, Viewer},
    error::{ApiError, ApiResult},
    secrets::secret_aad,
    state::AppState,
    store::entities::variable,
};
use actix_web::{web, HttpResponse};
use chrono::Utc;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::json;
use slipway_types::{
    api::{PutVariable, Variable, MAX_VALUE_BYTES},
    EnvVarName,
};
use uuid::Uuid;

fn to_api(m: variable::Model) -> Result<Variable, ApiError> {
    Ok(Variable {
        name: EnvVarName::try_from(m.name).map_err(|e| {
            ApiError::Internal(anyhow::anyhow!("stored variable name invalid: {e}"))
        })?,
        secret: m.secret,
        value: if m.secret { None } else { m.value },
        version: m.version,
        updated_at: m.updated_at,
        updated_by: m.updated_by,
    })
}

pub async fn list(
    _auth: Auth<Viewer>,
    state: web::Data<AppState>,
    env_id: web::Path<Uuid>,
) -> ApiResult<web::Json<Vec<Variable>>> {
    let env = environments::find(&state.db, env_id.into_inner()).await?;
    let rows = variable::Entity::find()
        .filter(variable::Column::EnvironmentId.eq(env.id))
        .order_by_asc(variable::Column::Name)
        .all(&state.db)
        .await?;
    Ok(web::Json(
        rows.into_iter().map(to_api).collect::<Result<_, _>>()?,
    ))
}

fn parse_name(raw: String) -> ApiResult<EnvVarName> {
    EnvVarName::try_from(raw).map_err(|m| ApiError::invalid("name", m))
}

pub async fn put(
    auth: Auth<Admin>,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, String)>,
    body: ValidJson<PutVariable>,
) -> ApiResult<HttpResponse> {
    let (env_id, name) = path.into_inner();
    let actor = auth.scope(Some(env_id))?;
    let name = parse_name(name)?;
    let body = body.0;
    if body.value.len() > MAX_VALUE_BYTES {
        return Err(ApiError::invalid(
            "value",
            format!("must be at most {MAX_VALUE_BYTES} bytes"),
        ));
    }
    let mut tx = AuditTx::begin(&state.db).await?;
    let env = environments::find(tx.conn(), env_id).await?;
    let existing = variable::Entity::find()
        .filter(variable::Column::EnvironmentId.eq(env.id))
        .filter(variable::Column::Name.eq(name.as_str()))
        .one(tx.conn())
        .await?;
    let version = existing.as_ref().map_or(1, |v| v.version + 1);
    let (value, ciphertext, nonce) = if body.secret {
        let sealed = state.key.seal(
            body.value.as_bytes(),
            &secret_aad(env.id, name.as_str(), version),
        );
        (None, Some(sealed.ciphertext), Some(sealed.nonce))
    } else {
        (Some(body.value.clone()), None, None)
    };
    let now = Utc::now();
    let am = variable::ActiveModel {
        id: Set(existing.as_ref().map_or_else(Uuid::new_v4, |v| v.id)),
        environment_id: Set(env.id),
        name: Set(name.to_string()),
        secret: Set(body.secret),
        value: Set(value),
        ciphertext: Set(ciphertext),
        nonce: Set(nonce),
        version: Set(version),
        updated_at: Set(now),
        updated_by: Set(actor.name.clone()),
    };
    let created = existing.is_none();
    if created {
        variable::Entity::insert(am)
            .exec_without_returning(tx.conn())
            .await?;
    } else {
        variable::Entity::update(am).exec(tx.conn()).await?;
    }
    let summary = if body.secret {
        json!({"environment": env.name, "name": name, "secret": true, "version": version, "value": "<redacted>"})
    } else {
        json!({"environment": env.name, "name": name, "secret": false, "version": version, "value": body.value})
    };
    let action = match (body.secret, created) {
        (true, true) => "secret.create",
        (true, false) => "secret.update",
        (false, true) => "variable.create",
        (false, false) => "variable.update",
    };
    tx.record(&actor, Event::new(action, "environment", env.id, summary))
        .await?;
    let stored = variable::Entity::find()
        .filter(variable::Column::EnvironmentId.eq(env.id))
        .filter(variable::Column::Name.eq(name.as_str()))
        .one(tx.conn())
        .await?
        .ok_or(ApiError::NotFound("variable"))?;
    tx.commit().await?;
    let status = if created {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    };
    Ok({
        let mut s = status;
        s.json(to_api(stored)?)
    })
}

pub async fn delete(
    auth: Auth<Admin>,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, String)>,
) -> ApiResult<HttpResponse> {
    let (env_id, name) = path.into_inner();
    let actor = auth.scope(Some(env_id))?;
    let name = parse_name(name)?;
    let mut tx = AuditTx::begin(&state.db).await?;
    let env = environments::find(tx.conn(), env_id).await?;
    let v = variable::Entity::find()
        .filter(variable::Column::EnvironmentId.eq(env.id))
        .filter(variable::Column::Name.eq(name.as_str()))
        .one(tx.conn())
        .await?
        .ok_or(ApiError::NotFound("variable"))?;
    variable::Entity::delete_by_id(v.id).exec(tx.conn()).await?;
    let action = if v.secret {
        "secret.delete"
    } else {
        "variable.delete"
    };
    tx.record(
        &actor,
        Event::new(
            action,
            "environment",
            env.id,
            json!({"environment": env.name, "name": name}),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}
