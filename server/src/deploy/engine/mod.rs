//! The deploy engine: turns queued deployments into running containers
//! through the agents, one deployment at a time per service.
//!
//! Durable: every transition is in the store, made by
//! [`lifecycle::transition`] like the API's. A running deployment carries a
//! lease (`claimed_by`, `lease_until`) its driver renews; when a control
//! plane dies mid-deploy the lease runs out and the next engine (the same
//! server restarted, or another replica) resolves it: `succeeded` when every
//! host had switched and its agent reports the new containers running,
//! healthy and routed; otherwise marked `failed` and its hosts reconciled
//! back to the release that served before. Agents are reconciled on every
//! (re)connect, so a host that dropped mid-deploy converges when it returns.
//!
//! ```text
//! claim (queued → running, lease)
//!   → job service: RunOnce on one host ─exit 0─▶ succeeded | failed
//!   → release command: RunOnce on one host ─exit ≠ 0 / timeout─▶ failed (nothing switched)
//!   → per host in order: Rollout ─ok─▶ next host   (Switched event → target `switched`)
//!                             │ error
//!                             ▼
//!          Revert the hosts already switched → failed | rolled_back
//! all hosts switched → succeeded
//! ```
//!
//! Modules: [`claim`] (the loop, claiming, driving one deployment and
//! recording its outcome), [`rollout`] (inputs and the per-host rollout),
//! [`run`] (one-off runs: release commands and jobs), [`recovery`] (expired
//! leases, silent hosts, reconciling hosts) and [`steps`] (the ordered,
//! batched step-log writer).
mod claim;
mod recovery;
mod rollout;
mod run;
mod steps;

use super::lifecycle::{self, Announcer, LifecycleError, Move};
use super::DeployEvent;
use crate::{
    agents::AgentHub,
    audit::{ActorInfo, AuditTx},
    live::LiveBus,
    secrets::MasterKey,
    store::entities::{deployment, host, host_environment},
};
use chrono::{Duration as ChronoDuration, Utc};
use sea_orm::{
    sea_query::Query, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
};
use serde_json::json;
use slipway_types::api::DeploymentState;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use uuid::Uuid;

pub use rollout::{REGISTRY_PASSWORD, REGISTRY_SERVER, REGISTRY_USERNAME};

/// A running deployment's lease; renewed every [`LEASE_RENEW`].
const LEASE: Duration = Duration::from_secs(15);
const LEASE_RENEW: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] DbErr),
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// A row the deployment needs is missing although the schema's foreign
    /// keys should keep it (the name would otherwise be sent empty).
    #[error("{0}")]
    Missing(String),
}

/// Wakes the engine at once instead of at its next poll.
#[derive(Clone, Default)]
pub struct EngineWaker(Arc<Notify>);

impl EngineWaker {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// What the engine needs, and nothing else of the web application.
pub struct EngineDeps {
    pub db: DatabaseConnection,
    pub hub: AgentHub,
    pub live: LiveBus,
    /// Decrypts the environment's secrets for the container.
    pub key: MasterKey,
    pub waker: EngineWaker,
}

/// How a deployment ended, as the engine saw it.
enum Outcome {
    Succeeded,
    Failed(String),
    RolledBack(String),
    /// Cancelled through the API meanwhile (already terminal in the store).
    Cancelled,
}

struct Engine {
    db: DatabaseConnection,
    /// The step log's writer (see [`steps::StepWriter`]).
    steps: mpsc::UnboundedSender<steps::StepMsg>,
    hub: AgentHub,
    live: LiveBus,
    key: MasterKey,
    waker: EngineWaker,
    announcer: Announcer,
    /// Identifies this process in leases.
    instance: String,
    /// Deployments this process drives now.
    driving: Mutex<HashSet<Uuid>>,
    /// Queued deployments already told they wait for a host.
    waiting: Mutex<HashSet<Uuid>>,
}

/// Starts the engine on the current runtime.
pub fn spawn(deps: EngineDeps) {
    let steps = steps::StepWriter::spawn(deps.db.clone(), deps.live.clone());
    let engine = Arc::new(Engine {
        announcer: Announcer::new(deps.live.clone(), deps.waker.clone()),
        db: deps.db,
        steps,
        hub: deps.hub,
        live: deps.live,
        key: deps.key,
        waker: deps.waker,
        instance: format!("engine-{}", Uuid::new_v4()),
        driving: Mutex::new(HashSet::new()),
        waiting: Mutex::new(HashSet::new()),
    });
    tokio::spawn(engine.run());
}

fn engine_actor() -> ActorInfo {
    ActorInfo {
        name: "engine".into(),
        source_ip: None,
        request_id: None,
    }
}

fn lease_end() -> chrono::DateTime<Utc> {
    Utc::now() + ChronoDuration::from_std(LEASE).unwrap_or_else(|_| ChronoDuration::seconds(15))
}

impl Engine {
    fn lock_waiting(&self) -> std::sync::MutexGuard<'_, HashSet<Uuid>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_driving(&self) -> std::sync::MutexGuard<'_, HashSet<Uuid>> {
        self.driving.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The hosts assigned to an environment (revoked ones left out).
    async fn hosts_of(&self, environment_id: Uuid) -> Result<Vec<host::Model>, DbErr> {
        host::Entity::find()
            .filter(
                host::Column::Id.in_subquery(
                    Query::select()
                        .column(host_environment::Column::HostId)
                        .from(host_environment::Entity)
                        .and_where(host_environment::Column::EnvironmentId.eq(environment_id))
                        .to_owned(),
                ),
            )
            .filter(host::Column::Status.ne("revoked"))
            .order_by_asc(host::Column::Name)
            .all(&self.db)
            .await
    }

    /// running → `event`'s state through [`lifecycle::transition`], with its
    /// audit entry, its last step line and the announcement. `still_ours`
    /// decides on the re-read row whether to go ahead; `false` when it did
    /// not (the deployment was cancelled or resolved meanwhile).
    async fn resolve(
        &self,
        id: Uuid,
        event: DeployEvent,
        reason: Option<String>,
        action: &'static str,
        still_ours: impl Fn(&deployment::Model) -> bool,
    ) -> Result<bool, EngineError> {
        self.resolve_line(id, event, reason, None, action, still_ours)
            .await
    }

    /// [`Engine::resolve`] with the last step line `line` instead of the
    /// state (and reason).
    async fn resolve_line(
        &self,
        id: Uuid,
        event: DeployEvent,
        reason: Option<String>,
        line: Option<String>,
        action: &'static str,
        still_ours: impl Fn(&deployment::Model) -> bool,
    ) -> Result<bool, EngineError> {
        // The step log is complete in the store before the state is final.
        self.flush_steps().await;
        let mut tx = AuditTx::begin(&self.db).await?;
        let Some(d) = deployment::Entity::find_by_id(id).one(tx.conn()).await? else {
            return Ok(false);
        };
        if d.state != DeploymentState::Running.as_str() || !still_ours(&d) {
            return Ok(false);
        }
        let to =
            super::transition(DeploymentState::Running, event).map_err(LifecycleError::from)?;
        let line = match (line, &reason) {
            (Some(line), _) => line,
            (None, Some(r)) => format!("{}: {r}", to.as_str()),
            (None, None) => to.as_str().to_string(),
        };
        let m = Move::new(
            event,
            action,
            json!({"service_id": d.service_id, "release_id": d.release_id, "reason": reason}),
        )
        .reason(reason)
        .step(line);
        let changed = match lifecycle::transition(&mut tx, &engine_actor(), id, m).await {
            Ok(c) => c,
            Err(LifecycleError::Changed | LifecycleError::Transition(_)) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        lifecycle::commit(tx, changed, &self.announcer).await?;
        Ok(true)
    }
}
