//! A project's webhook endpoints: create (the secret shown once, stored
//! sealed with the master key), list, rotate, delete.
use super::{internal, provider_of};
use crate::{
    api::{extract::ValidJson, projects},
    audit::{AuditTx, Event},
    auth::{self, Admin, Auth},
    ci::webhook_aad,
    error::{ApiError, ApiResult},
    state::AppState,
    store::entities::webhook,
};
use actix_web::{web, HttpResponse};
use chrono::Utc;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
};
use serde_json::json;
use slipway_types::api::{CreatedWebhook, NewWebhook, Webhook};
use uuid::Uuid;

fn webhook_to_api(m: webhook::Model) -> ApiResult<Webhook> {
    let provider = provider_of(&m.provider)?;
    Ok(Webhook {
        id: m.id,
        project_id: m.project_id,
        path: format!("/api/v1/hooks/{}/{}", provider.as_str(), m.project_id),
        provider,
        secret_version: m.secret_version,
        created_by: m.created_by,
        created_at: m.created_at,
        rotated_at: m.rotated_at,
    })
}

pub async fn list_webhooks(
    auth: Auth<Admin>,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> ApiResult<web::Json<Vec<Webhook>>> {
    auth.scope(None)?;
    let p = projects::find(&state.db, id.into_inner()).await?;
    let rows = webhook::Entity::find()
        .filter(webhook::Column::ProjectId.eq(p.id))
        .order_by_asc(webhook::Column::CreatedAt)
        .all(&state.db)
        .await?;
    Ok(web::Json(
        rows.into_iter()
            .map(webhook_to_api)
            .collect::<Result<_, _>>()?,
    ))
}

fn seal(state: &AppState, id: Uuid, version: i32) -> (String, Vec<u8>, Vec<u8>) {
    let secret = format!("whsec_{}", auth::random_secret());
    let sealed = state.key.seal(secret.as_bytes(), &webhook_aad(id, version));
    (secret, sealed.ciphertext, sealed.nonce)
}

pub(super) fn secret_of(state: &AppState, h: &webhook::Model) -> ApiResult<String> {
    let plain = state
        .key
        .open(
            &h.ciphertext,
            &h.nonce,
            &webhook_aad(h.id, h.secret_version),
        )
        .map_err(|e| internal(format!("webhook {}: {e}", h.id)))?;
    String::from_utf8(plain).map_err(|e| internal(format!("webhook {}: {e}", h.id)))
}

/// `POST /projects/{id}/webhooks` `{provider}` → the secret, once.
pub async fn create_webhook(
    auth: Auth<Admin>,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: ValidJson<NewWebhook>,
) -> ApiResult<HttpResponse> {
    let actor = auth.scope(None)?;
    let mut tx = AuditTx::begin(&state.db).await?;
    let p = projects::find(tx.conn(), id.into_inner()).await?;
    let hook_id = Uuid::new_v4();
    let (secret, ciphertext, nonce) = seal(&state, hook_id, 1);
    let now = Utc::now();
    webhook::Entity::insert(webhook::ActiveModel {
        id: Set(hook_id),
        project_id: Set(p.id),
        provider: Set(body.0.provider.as_str().into()),
        ciphertext: Set(ciphertext),
        nonce: Set(nonce),
        secret_version: Set(1),
        created_by: Set(actor.name.clone()),
        created_at: Set(now),
        rotated_at: Set(None),
    })
    .exec_without_returning(tx.conn())
    .await?;
    tx.record(
        &actor,
        Event::new(
            "webhook.create",
            "webhook",
            hook_id,
            json!({"project": p.name, "provider": body.0.provider.as_str(), "secret": "<redacted>"}),
        ),
    )
    .await?;
    let m = find_webhook(tx.conn(), hook_id).await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(CreatedWebhook {
        webhook: webhook_to_api(m)?,
        secret,
    }))
}

async fn find_webhook<C: ConnectionTrait>(db: &C, id: Uuid) -> ApiResult<webhook::Model> {
    webhook::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(ApiError::NotFound("webhook"))
}

/// `POST /webhooks/{id}/rotate` → the new secret, once; the old one stops working.
pub async fn rotate_webhook(
    auth: Auth<Admin>,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> ApiResult<web::Json<CreatedWebhook>> {
    let actor = auth.scope(None)?;
    let mut tx = AuditTx::begin(&state.db).await?;
    let h = find_webhook(tx.conn(), id.into_inner()).await?;
    let version = h.secret_version + 1;
    let (secret, ciphertext, nonce) = seal(&state, h.id, version);
    webhook::Entity::update(webhook::ActiveModel {
        id: Set(h.id),
        ciphertext: Set(ciphertext),
        nonce: Set(nonce),
        secret_version: Set(version),
        rotated_at: Set(Some(Utc::now())),
        ..Default::default()
    })
    .exec(tx.conn())
    .await?;
    tx.record(
        &actor,
        Event::new(
            "webhook.rotate",
            "webhook",
            h.id,
            json!({"provider": h.provider, "secret_version": version, "secret": "<redacted>"}),
        ),
    )
    .await?;
    let m = find_webhook(tx.conn(), h.id).await?;
    tx.commit().await?;
    Ok(web::Json(CreatedWebhook {
        webhook: webhook_to_api(m)?,
        secret,
    }))
}

pub async fn delete_webhook(
    auth: Auth<Admin>,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let actor = auth.scope(None)?;
    let mut tx = AuditTx::begin(&state.db).await?;
    let h = find_webhook(tx.conn(), id.into_inner()).await?;
    webhook::Entity::delete_by_id(h.id).exec(tx.conn()).await?;
    tx.record(
        &actor,
        Event::new(
            "webhook.delete",
            "webhook",
            h.id,
            json!({"provider": h.provider, "project_id": h.project_id}),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}
