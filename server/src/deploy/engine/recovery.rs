//! Recovery: running deployments whose driver died (lease expired) are
//! kept when every host had switched to them and its agent reports them
//! serving healthy ([`plan::recovery`]), else failed and their hosts
//! reconciled; hosts no control plane hears from are marked offline; a host
//! is reconciled to the newest succeeded deployment of each of its services
//! when its agent (re)connects (a job's runs leave nothing to serve).
use super::{engine_actor, rollout::service_key, Engine, EngineError};
use crate::{
    agents::AgentHub,
    audit::Event,
    deploy::{
        plan::{self, HostReport, Recovery, DRAIN_TIMEOUT_SECS},
        DeployEvent,
    },
    live::Live,
    store::entities::{deployment, deployment_target, host, release, service},
};
use chrono::{Duration as ChronoDuration, Utc};
use sea_orm::{
    sea_query::{Expr, Query},
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde_json::json;
use slipway_types::{
    agent::{AgentRequest, AgentResponse, ContainerStatus, DesiredService, ReconcilePlan},
    api::{DeploymentState, HostStatus, LiveEvent, ServiceKind, ServiceSpec},
    target::TargetState,
};
use std::time::Duration;
use uuid::Uuid;

/// A host marked online that no control plane has heard from for this long
/// is offline (connections refresh `last_seen_at` about every 30 s).
const HOST_SILENT_SECS: i64 = 90;
const RECONCILE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long after its lease expired a deployment every host switched to
/// waits for the hosts' agents to reconnect and report, before it is
/// reverted like any other.
const RECOVERY_GRACE_SECS: i64 = 30;
/// The last step of a deployment kept by recovery.
pub const RECOVERED: &str =
    "recovered after a control-plane restart: switched and healthy on every host";

impl Engine {
    /// Running deployments whose driver stopped renewing its lease (the
    /// control plane died): mark them failed and put their hosts back.
    pub(super) async fn recover_stale(&self) -> Result<(), EngineError> {
        self.mark_silent_hosts_offline().await?;
        let stale = deployment::Entity::find()
            .filter(deployment::Column::State.eq(DeploymentState::Running.as_str()))
            .filter(
                sea_orm::Condition::any()
                    .add(deployment::Column::LeaseUntil.is_null())
                    .add(deployment::Column::LeaseUntil.lt(Utc::now())),
            )
            .all(&self.db)
            .await?;
        for d in stale {
            if self.lock_driving().contains(&d.id) {
                continue;
            }
            let expired = |row: &deployment::Model| row.lease_until.is_none_or(|t| t < Utc::now());
            match self.recovery_of(&d).await? {
                Recovery::Wait => {
                    tracing::info!(deployment = %d.id, "every host switched: waiting for their agents to report");
                    continue;
                }
                Recovery::Keep => {
                    let resolved = self
                        .resolve_line(
                            d.id,
                            DeployEvent::Succeed,
                            None,
                            Some(RECOVERED.into()),
                            "deployment.succeed",
                            expired,
                        )
                        .await?;
                    if resolved {
                        // Converge the hosts on it (prune what the dead
                        // driver's rollout would have).
                        for t in self.targets_of(d.id).await? {
                            self.reconcile_later(t.host_id);
                        }
                    }
                    continue;
                }
                Recovery::Revert => {}
            }
            let resolved = self
                .resolve(
                    d.id,
                    DeployEvent::Fail,
                    Some(
                        "the control plane stopped during this deployment; its hosts are put back on the previous release"
                            .into(),
                    ),
                    "deployment.fail",
                    expired,
                )
                .await?;
            if !resolved {
                continue;
            }
            for t in self.targets_of(d.id).await? {
                self.reconcile_later(t.host_id);
            }
        }
        Ok(())
    }

    async fn targets_of(&self, id: Uuid) -> Result<Vec<deployment_target::Model>, DbErr> {
        deployment_target::Entity::find()
            .filter(deployment_target::Column::DeploymentId.eq(id))
            .all(&self.db)
            .await
    }

    /// Whether a deployment whose driver died is kept (every host switched
    /// and its agent reports the new containers serving healthy), reverted,
    /// or waits for agents still reconnecting. What the agents report is
    /// their last status frame, held by the hub.
    async fn recovery_of(&self, d: &deployment::Model) -> Result<Recovery, EngineError> {
        let targets = self.targets_of(d.id).await?;
        if targets.is_empty()
            || targets
                .iter()
                .any(|t| TargetState::parse(&t.state) != Some(TargetState::Switched))
        {
            return Ok(Recovery::Revert);
        }
        let Some(rel) = release::Entity::find_by_id(d.release_id)
            .one(&self.db)
            .await?
        else {
            return Ok(Recovery::Revert);
        };
        let Ok(spec) = serde_json::from_str::<ServiceSpec>(&rel.config) else {
            return Ok(Recovery::Revert);
        };
        // A job's run leaves nothing serving to check: run it again.
        if spec.kind == ServiceKind::Job {
            return Ok(Recovery::Revert);
        }
        let reported: Vec<Option<Vec<ContainerStatus>>> = targets
            .iter()
            .map(|t| {
                self.hub.live(t.host_id).map(|l| {
                    l.containers
                        .into_iter()
                        .filter(|c| c.deployment_id == d.id)
                        .collect()
                })
            })
            .collect();
        let reports: Vec<HostReport<'_>> = targets
            .iter()
            .zip(&reported)
            .map(|(t, cs)| HostReport {
                state: TargetState::parse(&t.state).unwrap_or(TargetState::Pending),
                replicas: u32::try_from(t.replicas).unwrap_or(0),
                containers: cs.as_ref().map(|cs| cs.iter().collect()),
            })
            .collect();
        let grace_over = d
            .lease_until
            .is_none_or(|t| t + ChronoDuration::seconds(RECOVERY_GRACE_SECS) < Utc::now());
        Ok(plan::recovery(&reports, plan::routed(&spec), grace_over))
    }

    /// Hosts still marked online whose agent is connected to no control
    /// plane (this one crashed, or the replica holding it did): a live
    /// connection refreshes `last_seen_at` every ~30 s.
    async fn mark_silent_hosts_offline(&self) -> Result<(), DbErr> {
        let cutoff = Utc::now() - ChronoDuration::seconds(HOST_SILENT_SECS);
        let silent = host::Entity::find()
            .filter(host::Column::Status.eq(HostStatus::Online.as_str()))
            .filter(
                sea_orm::Condition::any()
                    .add(host::Column::LastSeenAt.is_null())
                    .add(host::Column::LastSeenAt.lt(cutoff)),
            )
            .all(&self.db)
            .await?;
        for h in silent.into_iter().filter(|h| !self.hub.is_online(h.id)) {
            let res = host::Entity::update_many()
                .col_expr(
                    host::Column::Status,
                    Expr::value(HostStatus::Offline.as_str()),
                )
                .filter(host::Column::Id.eq(h.id))
                .filter(host::Column::Status.eq(HostStatus::Online.as_str()))
                .exec(&self.db)
                .await?;
            if res.rows_affected == 1 {
                tracing::info!(host = %h.name, "no agent heard from: offline");
                self.live.publish(Live::Event(LiveEvent::Host {
                    id: h.id,
                    status: HostStatus::Offline,
                }));
            }
        }
        Ok(())
    }

    /// Reconciles `host_id` now when its agent is connected; otherwise that
    /// happens when it reconnects.
    pub(super) fn reconcile_later(&self, host_id: Uuid) {
        if self.hub.is_online(host_id) {
            let (db, hub) = (self.db.clone(), self.hub.clone());
            tokio::spawn(async move { reconcile_host(&db, &hub, host_id).await });
        }
    }
}

/// Converges a host to what the store says must run there: for each
/// service with history on the host and no deployment in progress, the
/// newest succeeded deployment serves and a few earlier ones are kept.
pub(super) async fn reconcile_host(db: &DatabaseConnection, hub: &AgentHub, host_id: Uuid) {
    match reconcile_plan(db, host_id).await {
        Ok(Some((name, plan))) => {
            let r = hub
                .call(
                    host_id,
                    AgentRequest::Reconcile(plan),
                    None,
                    RECONCILE_TIMEOUT,
                )
                .await;
            match r {
                Ok(AgentResponse::Reconciled { actions }) if !actions.is_empty() => {
                    tracing::info!(host = %name, ?actions, "host reconciled");
                    let event = Event::new(
                        "host.reconcile",
                        "host",
                        host_id,
                        json!({"host": name, "actions": actions}),
                    );
                    if let Err(e) = crate::audit::record_alone(db, &engine_actor(), event).await {
                        tracing::warn!(error = %e, "could not audit a reconcile");
                    }
                }
                Ok(_) => tracing::debug!(host = %name, "host already converged"),
                Err(e) => tracing::warn!(host = %name, error = %e, "reconcile failed"),
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(host = %host_id, error = %e, "reconcile plan failed"),
    }
}

async fn reconcile_plan(
    db: &DatabaseConnection,
    host_id: Uuid,
) -> Result<Option<(String, ReconcilePlan)>, EngineError> {
    let Some(h) = host::Entity::find_by_id(host_id).one(db).await? else {
        return Ok(None);
    };
    let service_ids: Vec<Uuid> = deployment::Entity::find()
        .select_only()
        .column(deployment::Column::ServiceId)
        .distinct()
        .filter(deployment::Column::Id.in_subquery(targets_on(host_id)))
        .into_tuple()
        .all(db)
        .await?;
    let mut services = Vec::new();
    for sid in service_ids {
        let running = deployment::Entity::find()
            .filter(deployment::Column::ServiceId.eq(sid))
            .filter(deployment::Column::State.eq(DeploymentState::Running.as_str()))
            .one(db)
            .await?
            .is_some();
        if running {
            continue;
        }
        let Some(svc) = service::Entity::find_by_id(sid).one(db).await? else {
            continue;
        };
        let key = match service_key(db, &svc).await {
            Ok(key) => key,
            // Never an empty name sent to the agent: leave this service out
            // (the other services of the host still converge) and say why.
            Err(EngineError::Missing(why)) => {
                tracing::error!(host = %h.name, "cannot reconcile a service: {why}");
                continue;
            }
            Err(e) => return Err(e),
        };
        let history = history_on_host(db, sid, host_id).await?;
        let (mut serving, mut keep) = plan::desired(&history);
        // A job's succeeded run left nothing to serve or keep: its one-off
        // containers are gone, and anything of it left over goes.
        if let Some(d) = serving {
            if is_job_run(db, d).await? {
                (serving, keep) = (None, Vec::new());
            }
        }
        services.push(DesiredService {
            service: key,
            serving,
            keep,
            drain_timeout_secs: DRAIN_TIMEOUT_SECS,
        });
    }
    if services.is_empty() {
        return Ok(None);
    }
    Ok(Some((h.name, ReconcilePlan { services })))
}

/// Whether deployment `id` ran a release of kind `job`.
async fn is_job_run(db: &DatabaseConnection, id: Uuid) -> Result<bool, DbErr> {
    let rel = release::Entity::find()
        .filter(
            release::Column::Id.in_subquery(
                Query::select()
                    .column(deployment::Column::ReleaseId)
                    .from(deployment::Entity)
                    .and_where(deployment::Column::Id.eq(id))
                    .to_owned(),
            ),
        )
        .one(db)
        .await?;
    Ok(rel
        .and_then(|r| serde_json::from_str::<ServiceSpec>(&r.config).ok())
        .is_some_and(|s| s.kind == ServiceKind::Job))
}

pub(super) fn targets_on(host_id: Uuid) -> sea_orm::sea_query::SelectStatement {
    Query::select()
        .column(deployment_target::Column::DeploymentId)
        .from(deployment_target::Entity)
        .and_where(deployment_target::Column::HostId.eq(host_id))
        .to_owned()
}

/// The service's deployments that targeted `host_id`, newest first, as
/// (id, succeeded).
pub(super) async fn history_on_host(
    db: &DatabaseConnection,
    service_id: Uuid,
    host_id: Uuid,
) -> Result<Vec<(Uuid, bool)>, DbErr> {
    let rows = deployment::Entity::find()
        .filter(deployment::Column::ServiceId.eq(service_id))
        .filter(deployment::Column::Id.in_subquery(targets_on(host_id)))
        .order_by_desc(deployment::Column::CreatedAt)
        .limit(50)
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|d| (d.id, d.state == DeploymentState::Succeeded.as_str()))
        .collect())
}
