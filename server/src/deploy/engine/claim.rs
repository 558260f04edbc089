//! The engine's loop: wakes on a queued deployment (or its poll), claims the
//! oldest queued deployment of each free service, drives it under a renewed
//! lease and records how it ended.
use super::{
    engine_actor, lease_end, recovery::reconcile_host, Engine, EngineError, Outcome, LEASE_RENEW,
};
use crate::{
    audit::AuditTx,
    deploy::{
        lifecycle::{self, LifecycleError, Move},
        DeployEvent,
    },
    store::entities::{deployment, service},
};
use sea_orm::{
    sea_query::Expr, ColumnTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde_json::json;
use slipway_types::api::DeploymentState;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// How often the engine looks for queued work when nobody woke it.
const POLL: Duration = Duration::from_millis(250);
const RECOVER_EVERY: Duration = Duration::from_secs(5);

impl Engine {
    pub(super) async fn run(self: Arc<Self>) {
        let mut connected = self.hub.subscribe_connected();
        let mut poll = tokio::time::interval(POLL);
        let mut recover = tokio::time::interval(RECOVER_EVERY);
        let waker = self.waker.0.clone();
        tracing::info!(instance = %self.instance, "deploy engine started");
        loop {
            tokio::select! {
                _ = poll.tick() => {}
                _ = waker.notified() => {}
                _ = recover.tick() => {
                    if let Err(e) = self.recover_stale().await {
                        tracing::warn!(error = %e, "recovering stale deployments failed");
                    }
                    continue;
                }
                host = connected.recv() => {
                    if let Ok(host) = host {
                        let me = self.clone();
                        tokio::spawn(async move { reconcile_host(&me.db, &me.hub, host).await });
                    }
                    continue;
                }
            }
            match self.claim_queued().await {
                Ok(ids) => {
                    for id in ids {
                        let me = self.clone();
                        tokio::spawn(async move { me.drive(id).await });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "claiming queued deployments failed"),
            }
        }
    }

    /// Claims the oldest queued deployment of every service that has none
    /// running. The audit transaction serialises claims across replicas.
    async fn claim_queued(&self) -> Result<Vec<Uuid>, EngineError> {
        let queued = deployment::Entity::find()
            .filter(deployment::Column::State.eq(DeploymentState::Queued.as_str()))
            .order_by_asc(deployment::Column::CreatedAt)
            .limit(200)
            .all(&self.db)
            .await?;
        let mut seen = HashSet::new();
        let mut claimed = Vec::new();
        for d in queued {
            if !seen.insert(d.service_id) {
                continue;
            }
            // A deployment of a batch starts once the deployments it waits
            // for succeeded, and fails without starting when one did not.
            match self.dependencies(&d).await? {
                Dependencies::Ready => {}
                Dependencies::Pending => continue,
                Dependencies::Failed { service } => {
                    self.fail_for_dependency(&d, &service).await?;
                    continue;
                }
            }
            // Like a CI job without a runner, a deployment waits (queued,
            // cancellable) until a host of its environment is online.
            let hosts = self.hosts_of(d.environment_id).await?;
            if !hosts.iter().any(|h| self.hub.is_online(h.id)) {
                if !hosts.is_empty() && self.lock_waiting().insert(d.id) {
                    self.step(
                        d.id,
                        "waiting for a host of this environment to come online".into(),
                    )
                    .await;
                }
                continue;
            }
            if self.claim(&d).await? {
                claimed.push(d.id);
            }
        }
        Ok(claimed)
    }

    /// queued → running with this engine's lease, unless the service already
    /// has a running deployment or someone else moved it first.
    async fn claim(&self, d: &deployment::Model) -> Result<bool, EngineError> {
        let mut tx = AuditTx::begin(&self.db).await?;
        let busy = deployment::Entity::find()
            .filter(deployment::Column::ServiceId.eq(d.service_id))
            .filter(deployment::Column::State.eq(DeploymentState::Running.as_str()))
            .one(tx.conn())
            .await?
            .is_some();
        if busy {
            return Ok(false);
        }
        let m = Move::new(
            DeployEvent::Start,
            "deployment.start",
            json!({"service_id": d.service_id, "release_id": d.release_id}),
        )
        .lease(self.instance.clone(), lease_end());
        let changed = match lifecycle::transition(&mut tx, &engine_actor(), d.id, m).await {
            Ok(c) => c,
            // Cancelled, or claimed by another replica, meanwhile.
            Err(LifecycleError::Changed | LifecycleError::Transition(_)) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        lifecycle::commit(tx, changed, &self.announcer).await?;
        self.lock_driving().insert(d.id);
        self.lock_waiting().remove(&d.id);
        Ok(true)
    }

    /// How the deployments `d` waits for stand.
    async fn dependencies(&self, d: &deployment::Model) -> Result<Dependencies, EngineError> {
        let ids = lifecycle::waits_for_of(&d.waits_for)
            .map_err(|e| LifecycleError::Corrupt(format!("deployment {} waits_for: {e}", d.id)))?;
        if ids.is_empty() {
            return Ok(Dependencies::Ready);
        }
        let rows = deployment::Entity::find()
            .filter(deployment::Column::Id.is_in(ids.clone()))
            .all(&self.db)
            .await?;
        let mut states = Vec::with_capacity(ids.len());
        for id in &ids {
            let state = match rows.iter().find(|r| r.id == *id) {
                Some(r) => Some((r.service_id, lifecycle::state_of(r)?)),
                None => None,
            };
            states.push((*id, state));
        }
        match waiting_on(&states) {
            Waiting::Ready => Ok(Dependencies::Ready),
            Waiting::Pending => Ok(Dependencies::Pending),
            Waiting::Failed {
                deployment,
                service,
            } => {
                let name = match service {
                    Some(sid) => service::Entity::find_by_id(sid)
                        .one(&self.db)
                        .await?
                        .map(|s| s.name),
                    None => None,
                };
                Ok(Dependencies::Failed {
                    service: name.unwrap_or_else(|| format!("of deployment {deployment}")),
                })
            }
        }
    }

    /// queued → failed: `dependency <service> failed`, without starting.
    async fn fail_for_dependency(
        &self,
        d: &deployment::Model,
        service: &str,
    ) -> Result<(), EngineError> {
        let reason = format!("dependency {service} failed");
        let mut tx = AuditTx::begin(&self.db).await?;
        let m = Move::new(
            DeployEvent::DependencyFailed,
            "deployment.fail",
            json!({"service_id": d.service_id, "release_id": d.release_id, "reason": reason}),
        )
        .step(format!("failed: {reason}"))
        .reason(Some(reason));
        let changed = match lifecycle::transition(&mut tx, &engine_actor(), d.id, m).await {
            Ok(c) => c,
            // Cancelled, or moved by another replica, meanwhile.
            Err(LifecycleError::Changed | LifecycleError::Transition(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        lifecycle::commit(tx, changed, &self.announcer).await?;
        self.lock_waiting().remove(&d.id);
        Ok(())
    }

    async fn drive(self: Arc<Self>, id: Uuid) {
        let renew = {
            let me = self.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(LEASE_RENEW);
                loop {
                    every.tick().await;
                    if let Err(e) = me.renew_lease(id).await {
                        tracing::warn!(deployment = %id, error = %e, "lease renewal failed");
                    }
                }
            })
        };
        let outcome = match self.execute(id).await {
            Ok(o) => o,
            Err(e) => Outcome::Failed(format!("internal error: {e}")),
        };
        renew.abort();
        if let Err(e) = self.finish(id, outcome).await {
            tracing::error!(deployment = %id, error = %e, "could not record the outcome");
        }
        self.lock_driving().remove(&id);
    }

    async fn renew_lease(&self, id: Uuid) -> Result<(), DbErr> {
        deployment::Entity::update_many()
            .col_expr(deployment::Column::LeaseUntil, Expr::value(lease_end()))
            .filter(deployment::Column::Id.eq(id))
            .filter(deployment::Column::ClaimedBy.eq(self.instance.clone()))
            .filter(deployment::Column::State.eq(DeploymentState::Running.as_str()))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    async fn finish(&self, id: Uuid, outcome: Outcome) -> Result<(), EngineError> {
        let (event, reason, action) = match outcome {
            Outcome::Succeeded => (DeployEvent::Succeed, None, "deployment.succeed"),
            Outcome::Failed(r) => (DeployEvent::Fail, Some(r), "deployment.fail"),
            Outcome::RolledBack(r) => (DeployEvent::RollBack, Some(r), "deployment.rolled_back"),
            Outcome::Cancelled => {
                self.step(id, "stopped after cancellation".into()).await;
                self.flush_steps().await;
                return Ok(());
            }
        };
        self.resolve(id, event, reason, action, |_| true).await?;
        Ok(())
    }
}

/// How the deployments a queued one waits for stand.
enum Dependencies {
    /// All succeeded (or it waits for none).
    Ready,
    /// One is still awaiting approval, queued or running.
    Pending,
    /// One ended without succeeding: this one cannot start.
    Failed { service: String },
}

/// [`waiting_on`]'s answer, before the service's name is looked up.
#[derive(Debug, PartialEq, Eq)]
enum Waiting {
    Ready,
    Pending,
    Failed {
        deployment: Uuid,
        service: Option<Uuid>,
    },
}

/// Pure: from the (service, state) of each deployment waited for (`None`: no
/// such row any more), whether to start, wait or fail. A failure wins over
/// anything still pending (the first one in the order given).
fn waiting_on(states: &[(Uuid, Option<(Uuid, DeploymentState)>)]) -> Waiting {
    let mut pending = false;
    for (id, st) in states {
        match st {
            None => {
                return Waiting::Failed {
                    deployment: *id,
                    service: None,
                }
            }
            Some((_, DeploymentState::Succeeded)) => {}
            Some((service, s)) if s.is_terminal() => {
                return Waiting::Failed {
                    deployment: *id,
                    service: Some(*service),
                }
            }
            Some(_) => pending = true,
        }
    }
    if pending {
        Waiting::Pending
    } else {
        Waiting::Ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeploymentState as S;

    fn dep(n: u128, st: S) -> (Uuid, Option<(Uuid, S)>) {
        (Uuid::from_u128(n), Some((Uuid::from_u128(100 + n), st)))
    }

    #[test]
    fn a_deployment_starts_once_every_dependency_succeeded() {
        assert_eq!(waiting_on(&[]), Waiting::Ready);
        assert_eq!(
            waiting_on(&[dep(1, S::Succeeded), dep(2, S::Succeeded)]),
            Waiting::Ready
        );
        for st in [S::AwaitingApproval, S::Queued, S::Running] {
            assert_eq!(
                waiting_on(&[dep(1, S::Succeeded), dep(2, st)]),
                Waiting::Pending,
                "{st:?}"
            );
        }
    }

    #[test]
    fn any_dependency_that_did_not_succeed_fails_it() {
        for st in [S::Failed, S::RolledBack, S::Cancelled, S::Rejected] {
            assert_eq!(
                waiting_on(&[dep(1, S::Running), dep(2, st)]),
                Waiting::Failed {
                    deployment: Uuid::from_u128(2),
                    service: Some(Uuid::from_u128(102)),
                },
                "{st:?}"
            );
        }
        assert_eq!(
            waiting_on(&[(Uuid::from_u128(7), None)]),
            Waiting::Failed {
                deployment: Uuid::from_u128(7),
                service: None
            }
        );
    }
}
