//! Webhook endpoints of a project (config API), the public receivers
//! (`/hooks/{provider}/{project}`), trigger rules, and the delivery log.
//!
//! A delivery is verified first (HMAC or token, constant time), then parsed
//! into a [`CiEvent`]; matching trigger rules cut releases and, with
//! `auto_deploy`, create deployments through [`policy::enqueue`]. The
//! delivery row is inserted in the same transaction as those releases, and
//! `(project_id, delivery_id)` is unique: one delivery id never creates a
//! second release, however often or concurrently it arrives.
use super::{
    glob,
    payload::{self, CiEvent, Malformed, Parsed},
    policy, webhook_aad, RawBody,
};
use crate::{
    api::{
        deployments::{insert_release, NewRelease},
        extract::{PageQuery, ValidJson},
        projects, services,
    },
    audit::{ActorInfo, AuditTx, Event},
    auth::{self, Admin, Auth, Viewer},
    error::{ApiError, ApiResult},
    startup::AppState,
    store::{
        entities::{service, trigger_rule, webhook, webhook_delivery},
        is_unique_violation,
    },
};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde_json::json;
use slipway_types::{
    api::{
        CreatedWebhook, HookResponse, NewTriggerRule, NewWebhook, Page, TriggerEvent, TriggerRule,
        Webhook, WebhookDelivery, WebhookProvider,
    },
    ImageRef,
};
use uuid::Uuid;

fn internal(msg: String) -> ApiError {
    ApiError::Internal(anyhow::anyhow!(msg))
}

fn provider_of(s: &str) -> ApiResult<WebhookProvider> {
    WebhookProvider::parse(s).ok_or_else(|| internal(format!("stored provider {s} unknown")))
}

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

fn ids(s: &str) -> Vec<Uuid> {
    serde_json::from_str(s).unwrap_or_default()
}

fn delivery_to_api(m: webhook_delivery::Model) -> ApiResult<WebhookDelivery> {
    Ok(WebhookDelivery {
        id: m.id,
        project_id: m.project_id,
        webhook_id: m.webhook_id,
        provider: provider_of(&m.provider)?,
        event: m.event,
        delivery_id: m.external_id,
        received_at: m.received_at,
        verified: m.verified,
        status: m.status,
        outcome: m.outcome,
        release_ids: ids(&m.release_ids),
        deployment_ids: ids(&m.deployment_ids),
        redelivery_of: m.redelivery_of,
    })
}

// ------------------------------------------------------------ config API

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

fn secret_of(state: &AppState, h: &webhook::Model) -> ApiResult<String> {
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
    let p = projects::find(&tx.txn, id.into_inner()).await?;
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
    .exec_without_returning(&tx.txn)
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
    let m = find_webhook(&tx.txn, hook_id).await?;
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
    let h = find_webhook(&tx.txn, id.into_inner()).await?;
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
    .exec(&tx.txn)
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
    let m = find_webhook(&tx.txn, h.id).await?;
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
    let h = find_webhook(&tx.txn, id.into_inner()).await?;
    webhook::Entity::delete_by_id(h.id).exec(&tx.txn).await?;
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

// ------------------------------------------------------------ trigger rules

fn rule_to_api(m: trigger_rule::Model) -> ApiResult<TriggerRule> {
    Ok(TriggerRule {
        id: m.id,
        service_id: m.service_id,
        event: TriggerEvent::parse(&m.event)
            .ok_or_else(|| internal(format!("trigger {} has unknown event", m.id)))?,
        pattern: m.pattern,
        image_template: m.image_template,
        auto_deploy: m.auto_deploy,
        created_by: m.created_by,
        created_at: m.created_at,
    })
}

pub async fn list_triggers(
    auth: Auth<Admin>,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> ApiResult<web::Json<Vec<TriggerRule>>> {
    let svc = services::find(&state.db, id.into_inner()).await?;
    auth.scope(Some(svc.environment_id))?;
    let rows = trigger_rule::Entity::find()
        .filter(trigger_rule::Column::ServiceId.eq(svc.id))
        .order_by_asc(trigger_rule::Column::CreatedAt)
        .all(&state.db)
        .await?;
    Ok(web::Json(
        rows.into_iter()
            .map(rule_to_api)
            .collect::<Result<_, _>>()?,
    ))
}

pub async fn create_trigger(
    auth: Auth<Admin>,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: ValidJson<NewTriggerRule>,
) -> ApiResult<HttpResponse> {
    let body = body.0;
    let mut tx = AuditTx::begin(&state.db).await?;
    let svc = services::find(&tx.txn, id.into_inner()).await?;
    let actor = auth.scope(Some(svc.environment_id))?;
    let m = trigger_rule::Model {
        id: Uuid::new_v4(),
        service_id: svc.id,
        project_id: svc.project_id,
        event: body.event.as_str().into(),
        pattern: body.pattern.clone(),
        image_template: body.image_template.clone(),
        auto_deploy: body.auto_deploy,
        created_by: actor.name.clone(),
        created_at: Utc::now(),
    };
    trigger_rule::Entity::insert(trigger_rule::ActiveModel {
        id: Set(m.id),
        service_id: Set(m.service_id),
        project_id: Set(m.project_id),
        event: Set(m.event.clone()),
        pattern: Set(m.pattern.clone()),
        image_template: Set(m.image_template.clone()),
        auto_deploy: Set(m.auto_deploy),
        created_by: Set(m.created_by.clone()),
        created_at: Set(m.created_at),
    })
    .exec_without_returning(&tx.txn)
    .await?;
    tx.record(
        &actor,
        Event::new(
            "trigger.create",
            "service",
            svc.id,
            json!({"service": svc.name, "trigger": m.id, "event": m.event, "pattern": m.pattern, "image_template": m.image_template, "auto_deploy": m.auto_deploy}),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(rule_to_api(m)?))
}

pub async fn delete_trigger(
    auth: Auth<Admin>,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let mut tx = AuditTx::begin(&state.db).await?;
    let r = trigger_rule::Entity::find_by_id(id.into_inner())
        .one(&tx.txn)
        .await?
        .ok_or(ApiError::NotFound("trigger"))?;
    let svc = services::find(&tx.txn, r.service_id).await?;
    let actor = auth.scope(Some(svc.environment_id))?;
    trigger_rule::Entity::delete_by_id(r.id)
        .exec(&tx.txn)
        .await?;
    tx.record(
        &actor,
        Event::new(
            "trigger.delete",
            "service",
            svc.id,
            json!({"service": svc.name, "trigger": r.id, "event": r.event, "pattern": r.pattern}),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}

// ------------------------------------------------------------ deliveries

pub async fn list_deliveries(
    _auth: Auth<Viewer>,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    q: web::Query<PageQuery>,
) -> ApiResult<web::Json<Page<WebhookDelivery>>> {
    let (limit, offset) = q.resolve()?;
    let p = projects::find(&state.db, id.into_inner()).await?;
    let base = webhook_delivery::Entity::find()
        .filter(webhook_delivery::Column::ProjectId.eq(p.id))
        .order_by_desc(webhook_delivery::Column::ReceivedAt);
    let total = base.clone().count(&state.db).await?;
    let rows = base.limit(limit).offset(offset).all(&state.db).await?;
    Ok(web::Json(Page {
        items: rows
            .into_iter()
            .map(delivery_to_api)
            .collect::<Result<_, _>>()?,
        total,
        limit,
        offset,
    }))
}

/// `POST /deliveries/{id}/redeliver`: the stored body again, through the
/// same rules, recorded as a new delivery (`redelivery_of`).
pub async fn redeliver(
    auth: Auth<Admin>,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let actor = auth.scope(None)?;
    let d = webhook_delivery::Entity::find_by_id(id.into_inner())
        .one(&state.db)
        .await?
        .ok_or(ApiError::NotFound("delivery"))?;
    let body = match (&d.body, d.verified) {
        (Some(b), true) => b.clone(),
        _ => {
            return Err(ApiError::InvalidTransition(
                "only verified deliveries can be redelivered".into(),
            ))
        }
    };
    let provider = provider_of(&d.provider)?;
    let parsed = match provider {
        WebhookProvider::Github => payload::parse_github(&d.event, body.as_bytes()),
        WebhookProvider::Gitlab => payload::parse_gitlab(&d.event, body.as_bytes()),
        WebhookProvider::Generic => {
            payload::parse_generic(body.as_bytes()).map(|(_, e)| Parsed::Event(e))
        }
    }
    .map_err(|Malformed(m)| ApiError::MalformedJson(m))?;
    let incoming = Incoming {
        project_id: d.project_id,
        webhook_id: d.webhook_id,
        provider,
        event: d.event.clone(),
        delivery_id: None,
        external_id: d.external_id.clone(),
        body,
        redelivery_of: Some(d.id),
    };
    process(&state, &actor, incoming, parsed).await
}

// ------------------------------------------------------------ receivers

struct Incoming {
    project_id: Uuid,
    webhook_id: Option<Uuid>,
    provider: WebhookProvider,
    event: String,
    /// The idempotency key (None: redelivery, always processed).
    delivery_id: Option<String>,
    external_id: Option<String>,
    body: String,
    redelivery_of: Option<Uuid>,
}

fn header(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn hook_actor(req: &HttpRequest, provider: WebhookProvider) -> ActorInfo {
    let (source_ip, request_id) = auth::request_context(req);
    ActorInfo {
        name: format!("webhook:{}", provider.as_str()),
        source_ip,
        request_id,
    }
}

/// Rejected deliveries recorded per project and client address per minute;
/// beyond that the receiver answers 429 and records nothing.
pub const BAD_SIGNATURES_PER_MINUTE: u32 = 30;

/// Records a delivery whose signature failed, then answers 401 — or 429
/// without a record once the sender has failed too often.
async fn reject(
    state: &AppState,
    actor: &ActorInfo,
    project_id: Uuid,
    provider: WebhookProvider,
    event: &str,
    external_id: Option<String>,
    why: &str,
) -> ApiResult<HttpResponse> {
    let key = format!(
        "{project_id}|{}",
        actor.source_ip.as_deref().unwrap_or("unknown")
    );
    state
        .hook_limiter
        .check(&key)
        .map_err(ApiError::RateLimited)?;
    state.hook_limiter.fail(&key);
    let mut tx = AuditTx::begin(&state.db).await?;
    let id = Uuid::new_v4();
    webhook_delivery::Entity::insert(webhook_delivery::ActiveModel {
        id: Set(id),
        project_id: Set(project_id),
        webhook_id: Set(None),
        provider: Set(provider.as_str().into()),
        event: Set(clip(event)),
        delivery_id: Set(None),
        external_id: Set(external_id.as_deref().map(clip)),
        received_at: Set(Utc::now()),
        verified: Set(false),
        status: Set("rejected".into()),
        outcome: Set(why.into()),
        release_ids: Set("[]".into()),
        deployment_ids: Set("[]".into()),
        body: Set(None),
        redelivery_of: Set(None),
    })
    .exec_without_returning(&tx.txn)
    .await?;
    tx.record(
        actor,
        Event::new(
            "webhook.rejected",
            "project",
            project_id,
            json!({"provider": provider.as_str(), "event": clip(event), "delivery_id": external_id, "verified": false, "reason": why, "delivery": id}),
        ),
    )
    .await?;
    tx.commit().await?;
    Err(ApiError::InvalidSignature(format!(
        "webhook signature rejected: {why}"
    )))
}

/// The unique key of a delivery within its project: provider and the
/// sender's id, so providers cannot collide.
fn idempotency_key(provider: WebhookProvider, delivery: &str) -> String {
    format!("{}:{}", provider.as_str(), clip(delivery))
}

fn clip(s: &str) -> String {
    s.chars().take(200).collect()
}

/// The project's webhooks of `provider` and their secrets.
async fn secrets(
    state: &AppState,
    project_id: Uuid,
    provider: WebhookProvider,
) -> ApiResult<Vec<(Uuid, String)>> {
    projects::find(&state.db, project_id).await?;
    let hooks = webhook::Entity::find()
        .filter(webhook::Column::ProjectId.eq(project_id))
        .filter(webhook::Column::Provider.eq(provider.as_str()))
        .all(&state.db)
        .await?;
    hooks
        .iter()
        .map(|h| secret_of(state, h).map(|s| (h.id, s)))
        .collect()
}

fn body_text(body: &web::Bytes) -> ApiResult<String> {
    String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::MalformedJson("body is not UTF-8 JSON".into()))
}

/// How one git host signs and shapes its deliveries.
struct HostHook {
    provider: WebhookProvider,
    event_header: &'static str,
    /// Delivery-id headers, first present wins.
    delivery_headers: &'static [&'static str],
    credential_header: &'static str,
    /// (secret, raw body, credential header value) → genuine?
    verify: fn(&str, &[u8], &str) -> bool,
    parse: fn(&str, &[u8]) -> Result<payload::Parsed, Malformed>,
    mismatch: &'static str,
}

const GITHUB: HostHook = HostHook {
    provider: WebhookProvider::Github,
    event_header: "x-github-event",
    delivery_headers: &["x-github-delivery"],
    credential_header: "x-hub-signature-256",
    verify: payload::verify_github,
    parse: payload::parse_github,
    mismatch: "signature does not match",
};

const GITLAB: HostHook = HostHook {
    provider: WebhookProvider::Gitlab,
    event_header: "x-gitlab-event",
    delivery_headers: &["x-gitlab-event-uuid", "idempotency-key"],
    credential_header: "x-gitlab-token",
    verify: |secret, _body, token| payload::verify_gitlab(secret, token),
    parse: payload::parse_gitlab,
    mismatch: "token does not match",
};

/// `POST /hooks/github/{project_id}`.
pub async fn github(
    req: HttpRequest,
    state: web::Data<AppState>,
    project_id: web::Path<Uuid>,
    body: RawBody,
) -> ApiResult<HttpResponse> {
    host_hook(&GITHUB, req, state, project_id.into_inner(), body).await
}

/// `POST /hooks/gitlab/{project_id}`.
pub async fn gitlab(
    req: HttpRequest,
    state: web::Data<AppState>,
    project_id: web::Path<Uuid>,
    body: RawBody,
) -> ApiResult<HttpResponse> {
    host_hook(&GITLAB, req, state, project_id.into_inner(), body).await
}

async fn host_hook(
    host: &HostHook,
    req: HttpRequest,
    state: web::Data<AppState>,
    project_id: Uuid,
    body: RawBody,
) -> ApiResult<HttpResponse> {
    let provider = host.provider;
    let actor = hook_actor(&req, provider);
    let event = header(&req, host.event_header).unwrap_or_default();
    let delivery = host.delivery_headers.iter().find_map(|h| header(&req, h));
    let hooks = secrets(&state, project_id, provider).await?;
    let Some(credential) = header(&req, host.credential_header) else {
        let why = format!("missing {} header", host.credential_header);
        return reject(&state, &actor, project_id, provider, &event, delivery, &why).await;
    };
    let verified = hooks.iter().fold(None, |acc, (id, s)| {
        let ok = (host.verify)(s, &body.0, &credential);
        acc.or(ok.then_some(*id))
    });
    let Some(webhook_id) = verified else {
        return reject(
            &state,
            &actor,
            project_id,
            provider,
            &event,
            delivery,
            host.mismatch,
        )
        .await;
    };
    let Some(delivery) = delivery else {
        return Err(ApiError::MalformedJson(format!(
            "missing {} header",
            host.delivery_headers.join(" or ")
        )));
    };
    if event.is_empty() {
        return Err(ApiError::MalformedJson(format!(
            "missing {} header",
            host.event_header
        )));
    }
    let parsed =
        (host.parse)(&event, &body.0).map_err(|Malformed(m)| ApiError::MalformedJson(m))?;
    let incoming = Incoming {
        project_id,
        webhook_id: Some(webhook_id),
        provider,
        event,
        delivery_id: Some(idempotency_key(provider, &delivery)),
        external_id: Some(clip(&delivery)),
        body: body_text(&body.0)?,
        redelivery_of: None,
    };
    process(&state, &actor, incoming, parsed).await
}

/// `POST /hooks/generic/{project_id}`.
pub async fn generic(
    req: HttpRequest,
    state: web::Data<AppState>,
    project_id: web::Path<Uuid>,
    body: RawBody,
) -> ApiResult<HttpResponse> {
    let project_id = project_id.into_inner();
    let provider = WebhookProvider::Generic;
    let actor = hook_actor(&req, provider);
    let event = "generic".to_owned();
    let hooks = secrets(&state, project_id, provider).await?;
    let Some(sig) = header(&req, "x-slipway-signature") else {
        return reject(
            &state,
            &actor,
            project_id,
            provider,
            &event,
            None,
            "missing X-Slipway-Signature",
        )
        .await;
    };
    let now = Utc::now().timestamp();
    let mut why = "no generic webhook configured";
    let mut verified = None;
    for (id, s) in &hooks {
        match payload::verify_generic(s, &body.0, &sig, now) {
            Ok(()) => verified = verified.or(Some(*id)),
            Err(e) => why = e,
        }
    }
    let Some(webhook_id) = verified else {
        return reject(&state, &actor, project_id, provider, &event, None, why).await;
    };
    let (delivery, ev) =
        payload::parse_generic(&body.0).map_err(|Malformed(m)| ApiError::MalformedJson(m))?;
    let incoming = Incoming {
        project_id,
        webhook_id: Some(webhook_id),
        provider,
        event,
        delivery_id: Some(idempotency_key(provider, &delivery)),
        external_id: Some(clip(&delivery)),
        body: body_text(&body.0)?,
        redelivery_of: None,
    };
    process(&state, &actor, incoming, Parsed::Event(ev)).await
}

async fn duplicate_of(
    db: &impl ConnectionTrait,
    project_id: Uuid,
    delivery_id: &str,
) -> ApiResult<Option<webhook_delivery::Model>> {
    Ok(webhook_delivery::Entity::find()
        .filter(webhook_delivery::Column::ProjectId.eq(project_id))
        .filter(webhook_delivery::Column::DeliveryId.eq(delivery_id))
        .one(db)
        .await?)
}

fn duplicate_response(m: webhook_delivery::Model) -> HttpResponse {
    HttpResponse::Ok().json(HookResponse {
        status: "duplicate".into(),
        delivery: m.id,
        reason: format!("already received ({}): {}", m.status, m.outcome),
        release_ids: ids(&m.release_ids),
        deployment_ids: ids(&m.deployment_ids),
    })
}

/// Applies a verified delivery: releases, deployments, the delivery row and
/// its audit entry, all in one transaction.
async fn process(
    state: &AppState,
    actor: &ActorInfo,
    inc: Incoming,
    parsed: Parsed,
) -> ApiResult<HttpResponse> {
    let mut tx = AuditTx::begin(&state.db).await?;
    if let Some(did) = &inc.delivery_id {
        if let Some(prev) = duplicate_of(&tx.txn, inc.project_id, did).await? {
            return Ok(duplicate_response(prev));
        }
    }
    let (status, outcome, releases, deployments) = match parsed {
        Parsed::Ignored(reason) => ("ignored", reason, Vec::new(), Vec::new()),
        Parsed::Event(e) => apply_rules(&mut tx, actor, inc.project_id, &e).await?,
    };
    let id = Uuid::new_v4();
    let ids_json = |v: &Vec<Uuid>| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
    let inserted = webhook_delivery::Entity::insert(webhook_delivery::ActiveModel {
        id: Set(id),
        project_id: Set(inc.project_id),
        webhook_id: Set(inc.webhook_id),
        provider: Set(inc.provider.as_str().into()),
        event: Set(clip(&inc.event)),
        delivery_id: Set(inc.delivery_id.clone()),
        external_id: Set(inc.external_id.clone()),
        received_at: Set(Utc::now()),
        verified: Set(true),
        status: Set(status.into()),
        outcome: Set(outcome.clone()),
        release_ids: Set(ids_json(&releases)),
        deployment_ids: Set(ids_json(&deployments)),
        body: Set(Some(inc.body)),
        redelivery_of: Set(inc.redelivery_of),
    })
    .exec_without_returning(&tx.txn)
    .await;
    if let Err(e) = inserted {
        if is_unique_violation(&e) {
            // A concurrent copy won the race: answer with its outcome.
            drop(tx);
            if let Some(did) = &inc.delivery_id {
                if let Some(prev) = duplicate_of(&state.db, inc.project_id, did).await? {
                    return Ok(duplicate_response(prev));
                }
            }
        }
        return Err(e.into());
    }
    tx.record(
        actor,
        Event::new(
            "webhook.delivery",
            "project",
            inc.project_id,
            json!({"delivery": id, "provider": inc.provider.as_str(), "event": clip(&inc.event), "delivery_id": inc.external_id, "verified": true, "status": status, "outcome": outcome, "releases": releases, "deployments": deployments, "redelivery_of": inc.redelivery_of}),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::Accepted().json(HookResponse {
        status: status.into(),
        delivery: id,
        reason: outcome,
        release_ids: releases,
        deployment_ids: deployments,
    }))
}

fn rule_matches(rule: &trigger_rule::Model, e: &CiEvent) -> bool {
    match &e.name {
        Some(name) => glob::matches(&rule.pattern, name),
        None => rule.pattern == "*" || rule.pattern == "**",
    }
}

fn valid_ref(r: &Option<String>) -> Option<String> {
    r.clone().filter(|r| {
        !r.is_empty() && r.len() <= 255 && !r.chars().any(|c| c.is_whitespace() || c.is_control())
    })
}

type Applied = (&'static str, String, Vec<Uuid>, Vec<Uuid>);

/// Runs the project's matching trigger rules for `e`.
async fn apply_rules(
    tx: &mut AuditTx,
    actor: &ActorInfo,
    project_id: Uuid,
    e: &CiEvent,
) -> ApiResult<Applied> {
    let rules = trigger_rule::Entity::find()
        .filter(trigger_rule::Column::ProjectId.eq(project_id))
        .filter(trigger_rule::Column::Event.eq(e.kind.as_str()))
        .order_by_asc(trigger_rule::Column::CreatedAt)
        .all(&tx.txn)
        .await?;
    let (mut notes, mut releases, mut deployments) = (Vec::new(), Vec::new(), Vec::new());
    let mut matched = false;
    for rule in rules {
        let svc: service::Model = services::find(&tx.txn, rule.service_id).await?;
        if let Some(want) = &e.service {
            if svc.name != *want && svc.id.to_string() != *want {
                continue;
            }
        }
        if !rule_matches(&rule, e) {
            continue;
        }
        matched = true;
        let image = e.image.clone().or_else(|| {
            rule.image_template
                .as_deref()
                .and_then(|t| payload::render_template(t, e))
        });
        let Some(image) = image else {
            notes.push(format!(
                "{}: no image (the payload names none and the rule's image_template cannot be filled)",
                svc.name
            ));
            continue;
        };
        let image = match ImageRef::try_from(image.clone()) {
            Ok(i) => i,
            Err(m) => {
                notes.push(format!("{}: image `{image}` is invalid: {m}", svc.name));
                continue;
            }
        };
        let mut spec = services::spec_of(&svc)?;
        spec.image = image;
        let rel = insert_release(
            tx,
            actor,
            &svc,
            &spec,
            NewRelease {
                git_sha: e.sha.clone(),
                git_ref: valid_ref(&e.git_ref),
                trigger: "webhook",
            },
        )
        .await?;
        releases.push(rel.id);
        let mut note = format!("{}: release #{} ({})", svc.name, rel.number, rel.image);
        if rule.auto_deploy {
            let gate = policy::Gate {
                is_admin: false,
                override_reason: None,
                redeploy: false,
            };
            match policy::enqueue(tx, actor, &svc, &rel, gate).await {
                Ok(id) => {
                    deployments.push(id);
                    note.push_str(", deployment created");
                }
                Err(ApiError::DeployFrozen(m)) => {
                    note.push_str(&format!(", deployment refused: {m}"));
                }
                Err(other) => return Err(other),
            }
        }
        notes.push(note);
    }
    let label = e.name.as_deref().unwrap_or("(no ref)");
    if !matched {
        return Ok((
            "ignored",
            format!("no trigger rule matches {} {label}", e.kind.as_str()),
            releases,
            deployments,
        ));
    }
    Ok(("processed", notes.join("; "), releases, deployments))
}
