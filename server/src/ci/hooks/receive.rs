//! The public receivers (`/hooks/{github,gitlab,generic}/{project}`):
//! verify, dedup by delivery id, apply the trigger rules and record the
//! delivery with its audit entry in one transaction; the delivery log and
//! redelivery.
use super::{endpoints::secret_of, provider_of, triggers::apply_rules};
use crate::{
    api::{extract::PageQuery, projects},
    audit::{ActorInfo, AuditTx, Event},
    auth::{self, Admin, Auth, Viewer},
    ci::{
        payload::{self, Malformed, Parsed},
        RawBody,
    },
    error::{ApiError, ApiResult},
    state::AppState,
    store::{
        entities::{webhook, webhook_delivery},
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
use slipway_types::api::{HookResponse, Page, WebhookDelivery, WebhookProvider};
use uuid::Uuid;

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
    .exec_without_returning(tx.conn())
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
        if let Some(prev) = duplicate_of(tx.conn(), inc.project_id, did).await? {
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
    .exec_without_returning(tx.conn())
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
    if !deployments.is_empty() {
        // Start them now rather than at the engine's next poll.
        state.engine.wake();
    }
    Ok(HttpResponse::Accepted().json(HookResponse {
        status: status.into(),
        delivery: id,
        reason: outcome,
        release_ids: releases,
        deployment_ids: deployments,
    }))
}
