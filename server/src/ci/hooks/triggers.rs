//! Trigger rules of a service (config API) and how a verified delivery's
//! [`CiEvent`] runs them: matching rules cut releases and, with
//! `auto_deploy`, create deployments through [`lifecycle::create`].
use super::internal;
use crate::{
    api::{extract::ValidJson, services},
    audit::{ActorInfo, AuditTx, Event},
    auth::{Admin, Auth},
    ci::{
        glob,
        payload::{self, CiEvent},
    },
    deploy::lifecycle::{self, Gate, NewRelease, Origin},
    error::{ApiError, ApiResult},
    state::AppState,
    store::entities::{service, trigger_rule},
};
use actix_web::{web, HttpResponse};
use chrono::Utc;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::json;
use slipway_types::{
    api::{NewTriggerRule, Trigger, TriggerEvent, TriggerRule},
    ImageRef,
};
use uuid::Uuid;

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
    let svc = services::find(tx.conn(), id.into_inner()).await?;
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
    .exec_without_returning(tx.conn())
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
        .one(tx.conn())
        .await?
        .ok_or(ApiError::NotFound("trigger"))?;
    let svc = services::find(tx.conn(), r.service_id).await?;
    let actor = auth.scope(Some(svc.environment_id))?;
    trigger_rule::Entity::delete_by_id(r.id)
        .exec(tx.conn())
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

pub(super) type Applied = (&'static str, String, Vec<Uuid>, Vec<Uuid>);

/// Runs the project's matching trigger rules for `e`.
pub(super) async fn apply_rules(
    tx: &mut AuditTx,
    actor: &ActorInfo,
    project_id: Uuid,
    e: &CiEvent,
) -> ApiResult<Applied> {
    let rules = trigger_rule::Entity::find()
        .filter(trigger_rule::Column::ProjectId.eq(project_id))
        .filter(trigger_rule::Column::Event.eq(e.kind.as_str()))
        .order_by_asc(trigger_rule::Column::CreatedAt)
        .all(tx.conn())
        .await?;
    let (mut notes, mut releases, mut deployments) = (Vec::new(), Vec::new(), Vec::new());
    let mut matched = false;
    for rule in rules {
        let svc: service::Model = services::find(tx.conn(), rule.service_id).await?;
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
        let rel = lifecycle::cut_release(
            tx,
            actor,
            &svc,
            &spec,
            NewRelease {
                git_sha: e.sha.clone(),
                git_ref: valid_ref(&e.git_ref),
                trigger: Trigger::Webhook,
            },
        )
        .await?;
        releases.push(rel.id);
        let mut note = format!("{}: release #{} ({})", svc.name, rel.number, rel.image);
        if rule.auto_deploy {
            let gate = Gate {
                is_admin: false,
                override_reason: None,
                origin: Origin::NewRelease,
            };
            match lifecycle::create(tx, actor, &svc, &rel, gate).await {
                Ok(created) => {
                    deployments.push(created.deployment.id);
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
