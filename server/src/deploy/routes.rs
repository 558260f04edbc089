//! Deployment routes that belong to the engine: rollback, and the live
//! streams (server-sent events) the dashboard follows.
use super::lifecycle::{self, Gate, Origin};
use crate::{
    audit::AuditTx,
    auth::{Auth, Deployer, Viewer},
    error::{ApiError, ApiResult},
    live::Live,
    state::AppState,
    store::entities::{release, service},
};
use actix_web::{web, HttpResponse};
use futures_util::stream::{self, Stream};
use sea_orm::EntityTrait;
use serde::Serialize;
use slipway_types::{
    api::{DeploymentEvent, DeploymentState},
    Role,
};
use std::collections::HashSet;
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError};
use uuid::Uuid;

/// Comment line that keeps proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// `POST /releases/{id}/rollback`: redeploy an earlier release of its
/// service through the normal path (policy, approvals, engine).
pub async fn rollback(
    auth: Auth<Deployer>,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let mut tx = AuditTx::begin(&state.db).await?;
    let rel = release::Entity::find_by_id(id.into_inner())
        .one(&tx.txn)
        .await?
        .ok_or(ApiError::NotFound("release"))?;
    let svc = service::Entity::find_by_id(rel.service_id)
        .one(&tx.txn)
        .await?
        .ok_or(ApiError::NotFound("service"))?;
    let actor = auth.scope(Some(svc.environment_id))?;
    let gate = Gate {
        is_admin: auth.principal.effective_role(Some(svc.environment_id)) >= Role::Admin,
        override_reason: None,
        origin: Origin::Rollback,
    };
    let changed = lifecycle::create(&mut tx, &actor, &svc, &rel, gate).await?;
    let d = lifecycle::commit(tx, changed, &state.announcer()).await?;
    Ok(HttpResponse::Accepted().json(d))
}

fn sse_data<T: Serialize>(value: &T) -> web::Bytes {
    let json = serde_json::to_string(value).unwrap_or_else(|_| "null".into());
    web::Bytes::from(format!("data: {json}\n\n"))
}

fn sse_response<S>(body: S) -> HttpResponse
where
    S: Stream<Item = Result<web::Bytes, actix_web::Error>> + 'static,
{
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body)
}

/// Turns bus events into SSE frames with `pick`, with keep-alive comments.
fn live_stream<F>(
    first: Vec<web::Bytes>,
    rx: broadcast::Receiver<Live>,
    pick: F,
) -> impl Stream<Item = Result<web::Bytes, actix_web::Error>>
where
    F: FnMut(Live) -> Option<web::Bytes> + 'static,
{
    let backlog = stream::iter(first.into_iter().map(Ok));
    let live = stream::unfold((rx, pick), |(mut rx, mut pick)| async move {
        loop {
            match tokio::time::timeout(KEEP_ALIVE, rx.recv()).await {
                Err(_) => return Some((Ok(web::Bytes::from_static(b": ping\n\n")), (rx, pick))),
                Ok(Ok(ev)) => {
                    if let Some(frame) = pick(ev) {
                        return Some((Ok(frame), (rx, pick)));
                    }
                }
                // Missed events: the client reloads from the API on `lagged`.
                Ok(Err(RecvError::Lagged(_))) => {
                    return Some((
                        Ok(web::Bytes::from_static(b"event: lagged\ndata: {}\n\n")),
                        (rx, pick),
                    ))
                }
                Ok(Err(RecvError::Closed)) => return None,
            }
        }
    });
    futures_util::StreamExt::chain(backlog, live)
}

/// `GET /deployments/{id}/events`: the steps so far and the state, then
/// every new step and state change as they happen.
pub async fn deployment_events(
    _auth: Auth<Viewer>,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let id = id.into_inner();
    // Subscribe first so nothing falls between the read and the stream.
    let rx = state.live.subscribe();
    let d = lifecycle::load(&state.db, id).await?;
    let mut seen: HashSet<(i64, String)> = HashSet::new();
    let mut first = Vec::with_capacity(d.steps.len() + 1);
    for s in &d.steps {
        seen.insert((s.at.timestamp_micros(), s.message.clone()));
        first.push(sse_data(&DeploymentEvent::Step(s.clone())));
    }
    first.push(sse_data(&DeploymentEvent::State {
        state: d.state,
        reason: d.reason.clone(),
    }));
    let mut last: DeploymentState = d.state;
    let body = live_stream(first, rx, move |ev| match ev {
        Live::Step {
            deployment_id,
            step,
        } if deployment_id == id => {
            if seen.remove(&(step.at.timestamp_micros(), step.message.clone())) {
                return None;
            }
            Some(sse_data(&DeploymentEvent::Step(step)))
        }
        Live::State {
            deployment_id,
            state,
            reason,
        } if deployment_id == id => {
            if state == last && reason.is_none() {
                return None;
            }
            last = state;
            Some(sse_data(&DeploymentEvent::State { state, reason }))
        }
        _ => None,
    });
    Ok(sse_response(body))
}

/// `GET /events`: deployment state changes and host status for dashboards.
pub async fn events(_auth: Auth<Viewer>, state: web::Data<AppState>) -> HttpResponse {
    let rx = state.live.subscribe();
    let hello = web::Bytes::from_static(b": connected\n\n");
    sse_response(live_stream(vec![hello], rx, |ev| match ev {
        Live::Event(e) => Some(sse_data(&e)),
        _ => None,
    }))
}
