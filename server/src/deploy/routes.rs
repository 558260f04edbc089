//! Deployment routes that belong to the engine: rollback, **Deploy
//! environment**, and the live streams (server-sent events) the dashboard
//! follows.
use super::{
    lifecycle::{self, BatchMember, Gate, Origin},
    order,
};
use crate::{
    api::{extract::ValidJson, services::spec_of},
    audit::AuditTx,
    auth::{Auth, Deployer, Viewer},
    error::{ApiError, ApiResult},
    live::{sse_lagged, Live, StreamKind, StreamStats},
    state::AppState,
    store::entities::{environment, release, service},
};
use actix_web::{web, HttpResponse};
use futures_util::stream::{self, Stream};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde::Serialize;
use slipway_types::{
    api::{DeployEnvironment, DeploymentEvent, DeploymentState, EnvironmentDeployment, Trigger},
    Role,
};
use std::collections::{HashMap, HashSet};
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
        .one(tx.conn())
        .await?
        .ok_or(ApiError::NotFound("release"))?;
    let svc = service::Entity::find_by_id(rel.service_id)
        .one(tx.conn())
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

/// `POST /environments/{id}/deployments`: **Deploy environment**. Deploys
/// the changed services (or the chosen ones, or all with `all`) in
/// dependency order, each deployment waiting for its dependencies' to
/// succeed ([`order`] decides, [`lifecycle::create_batch`] creates them).
/// 202 with the batch; 200 with no deployment when nothing changed; 422
/// naming an unknown dependency or a cycle.
pub async fn deploy_environment(
    auth: Auth<Deployer>,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: ValidJson<DeployEnvironment>,
) -> ApiResult<HttpResponse> {
    let body = body.0;
    let mut tx = AuditTx::begin(&state.db).await?;
    let env = environment::Entity::find_by_id(id.into_inner())
        .one(tx.conn())
        .await?
        .ok_or(ApiError::NotFound("environment"))?;
    let actor = auth.scope(Some(env.id))?;
    let services = service::Entity::find()
        .filter(service::Column::EnvironmentId.eq(env.id))
        .order_by_asc(service::Column::Name)
        .all(tx.conn())
        .await?;
    let serving = lifecycle::serving_specs(tx.conn(), env.id).await?;
    let mut candidates = Vec::with_capacity(services.len());
    let mut specs = HashMap::with_capacity(services.len());
    for svc in services {
        let spec = spec_of(&svc)?;
        let now = serving.get(&svc.id);
        candidates.push(order::Candidate {
            name: svc.name.clone(),
            depends_on: spec.depends_on.keys().map(|d| d.to_string()).collect(),
            changed: order::is_changed(&spec, now),
            served: now.is_some(),
        });
        specs.insert(svc.name.clone(), (svc, spec));
    }
    let chosen: Option<Vec<String>> = body
        .services
        .map(|names| names.iter().map(|n| n.to_string()).collect());
    let plan = order::plan(&candidates, chosen.as_deref(), body.all)
        .map_err(|e| ApiError::invalid(e.field(), e.to_string()))?;
    if plan.steps.is_empty() {
        // Nothing to change, nothing to audit.
        return Ok(HttpResponse::Ok().json(EnvironmentDeployment {
            batch_id: Uuid::nil(),
            deployments: Vec::new(),
            unchanged: plan.unchanged,
        }));
    }
    let mut members = Vec::with_capacity(plan.steps.len());
    for step in plan.steps {
        let (service, spec) = specs.remove(&step.name).ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!("planned an unknown service {}", step.name))
        })?;
        members.push(BatchMember {
            service,
            spec,
            waits_for: step.waits_for,
        });
    }
    let trigger = if auth.principal.session.is_some() {
        Trigger::Manual
    } else {
        Trigger::Api
    };
    let is_admin = auth.principal.effective_role(Some(env.id)) >= Role::Admin;
    let batch = lifecycle::create_batch(
        &mut tx,
        &actor,
        &env,
        members,
        &plan.unchanged,
        is_admin,
        trigger,
    )
    .await?;
    let deployments = lifecycle::commit_all(tx, batch.changed, &state.announcer()).await?;
    Ok(HttpResponse::Accepted().json(EnvironmentDeployment {
        batch_id: batch.id,
        deployments,
        unchanged: plan.unchanged,
    }))
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
/// The bus keeps a bounded ring per process, not a queue per client: a
/// client that reads too slowly (or not at all) costs nothing more, it
/// misses events and gets `event: lagged` ([`slipway_types::sse::Lagged`],
/// counted in `/metrics` as `kind`) where they are missing.
fn live_stream<F>(
    first: Vec<web::Bytes>,
    rx: broadcast::Receiver<Live>,
    (kind, stats): (StreamKind, StreamStats),
    pick: F,
) -> impl Stream<Item = Result<web::Bytes, actix_web::Error>>
where
    F: FnMut(Live) -> Option<web::Bytes> + 'static,
{
    let backlog = stream::iter(first.into_iter().map(Ok));
    let live = stream::unfold(
        (rx, pick, stats),
        move |(mut rx, mut pick, stats)| async move {
            loop {
                match tokio::time::timeout(KEEP_ALIVE, rx.recv()).await {
                    Err(_) => {
                        let ping = web::Bytes::from_static(b": ping\n\n");
                        return Some((Ok(ping), (rx, pick, stats)));
                    }
                    Ok(Ok(ev)) => {
                        if let Some(frame) = pick(ev) {
                            return Some((Ok(frame), (rx, pick, stats)));
                        }
                    }
                    // Missed events: the client reloads from the API on `lagged`.
                    Ok(Err(RecvError::Lagged(n))) => {
                        stats.skipped(kind, n);
                        let marker = web::Bytes::from(sse_lagged(n));
                        return Some((Ok(marker), (rx, pick, stats)));
                    }
                    Ok(Err(RecvError::Closed)) => return None,
                }
            }
        },
    );
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
    let stats = (StreamKind::Deployment, state.live.stats().clone());
    let body = live_stream(first, rx, stats, move |ev| match ev {
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
    let stats = (StreamKind::Events, state.live.stats().clone());
    sse_response(live_stream(vec![hello], rx, stats, |ev| match ev {
        Live::Event(e) => Some(sse_data(&e)),
        _ => None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::{LiveBus, BUS_CAPACITY};
    use futures_util::StreamExt;

    fn host_event(n: u128) -> Live {
        Live::Event(slipway_types::api::LiveEvent::Host {
            id: Uuid::from_u128(n),
            status: slipway_types::api::HostStatus::Online,
        })
    }

    /// A client that does not read while 5,000 events pass holds nothing
    /// of its own: it gets the marker with the number it missed, then the
    /// newest events the shared ring still has.
    #[tokio::test]
    async fn a_client_that_falls_behind_gets_a_counted_lagged_marker() {
        let bus = LiveBus::default();
        let stats = bus.stats().clone();
        let rx = bus.subscribe();
        let hello = web::Bytes::from_static(b": connected\n\n");
        let mut s = Box::pin(live_stream(
            vec![hello],
            rx,
            (StreamKind::Events, stats.clone()),
            |ev| match ev {
                Live::Event(e) => Some(sse_data(&e)),
                _ => None,
            },
        ));
        for n in 0..5_000 {
            bus.publish(host_event(n));
        }
        let text = |b: Option<Result<web::Bytes, actix_web::Error>>| {
            String::from_utf8(b.unwrap().unwrap().to_vec()).unwrap()
        };
        assert_eq!(text(s.next().await), ": connected\n\n");
        let skipped = 5_000 - BUS_CAPACITY as u64;
        assert_eq!(
            text(s.next().await),
            format!("event: lagged\ndata: {{\"skipped\":{skipped}}}\n\n")
        );
        assert_eq!(stats.skipped_total(StreamKind::Events), skipped);
        let first_kept = text(s.next().await);
        assert!(
            first_kept.contains(&Uuid::from_u128(u128::from(skipped)).to_string()),
            "{first_kept}"
        );
    }
}
