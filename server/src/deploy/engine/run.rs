//! One-off runs of a release: its `release_command` (migrations) before any
//! host rolls out, and the whole deployment of a `job` service. Either is
//! one [`AgentRequest::RunOnce`] on one online host of the environment (the
//! first by name): the new release's container with its variables and
//! secrets, on the environment network, without ports or aliases
//! ([`plan::one_off_container`]). Its output streams into the step log as it
//! arrives; exit 0 goes on, anything else fails the deployment with its last
//! lines, before anything was rolled out (the old release keeps serving).
//!
//! ```text
//! release command: RunOnce(host 1) ─exit 0─▶ rollout (rollout.rs)
//!                                   └─exit N / timeout─▶ failed, nothing switched
//! job:             target(host 1) → RunOnce(host 1) ─exit 0─▶ succeeded | failed
//! ```
use super::{
    rollout::{describe_call_error, Context},
    Engine, EngineError, Outcome,
};
use crate::{
    agents::CallError,
    deploy::plan,
    store::entities::{deployment_target, host},
};
use chrono::Utc;
use sea_orm::{ActiveValue::Set, EntityTrait};
use slipway_types::{
    agent::{
        AgentErrorCode, AgentEvent, AgentRequest, AgentResponse, ContainerSpec, RegistryAuth,
        RunOncePlan, RunPurpose,
    },
    api::ReleaseCommand,
    target::TargetState,
};
use std::collections::VecDeque;
use tokio::sync::mpsc;

/// How a one-off run ended.
pub(super) enum RunEnd {
    /// Exit 0.
    Done,
    /// The deployment fails with this reason.
    Failed(String),
    /// Cancelled through the API meanwhile.
    Cancelled,
}

/// The container, command and label of one run.
pub(super) struct OneOff<'a> {
    pub purpose: RunPurpose,
    pub container: &'a ContainerSpec,
    pub command: Option<Vec<String>>,
    pub timeout_secs: u32,
    pub registry_auth: Option<RegistryAuth>,
}

impl OneOff<'_> {
    /// How its lines are prefixed in the step log.
    fn label(&self) -> &'static str {
        match self.purpose {
            RunPurpose::ReleaseCommand => "release command",
            RunPurpose::Job => "job",
        }
    }
}

impl Engine {
    /// Runs the release command of the new release on `h` before any host
    /// rolls out.
    pub(super) async fn release_command(
        &self,
        ctx: &Context,
        rc: &ReleaseCommand,
        container: &ContainerSpec,
        registry_auth: Option<RegistryAuth>,
        h: &host::Model,
    ) -> Result<RunEnd, EngineError> {
        self.step(
            ctx.deployment.id,
            format!(
                "{}: running the release command `{}` (timeout {} s)",
                h.name,
                rc.command.join(" "),
                rc.timeout_secs
            ),
        )
        .await;
        let run = OneOff {
            purpose: RunPurpose::ReleaseCommand,
            container,
            command: Some(rc.command.clone()),
            timeout_secs: rc.timeout_secs,
            registry_auth,
        };
        self.run_once(ctx, h, run).await
    }

    /// A job service's deployment: one run on the first online host,
    /// recorded as that host's target (so recovery and reconcile see where
    /// it ran): `switched` once it exited 0, `failed` otherwise.
    pub(super) async fn run_job(
        &self,
        ctx: &Context,
        container: &ContainerSpec,
        registry_auth: Option<RegistryAuth>,
        h: &host::Model,
    ) -> Result<Outcome, EngineError> {
        let id = ctx.deployment.id;
        deployment_target::Entity::insert(deployment_target::ActiveModel {
            deployment_id: Set(id),
            host_id: Set(h.id),
            replicas: Set(1),
            state: Set(TargetState::Running.as_str().into()),
            updated_at: Set(Utc::now()),
        })
        .exec_without_returning(&self.db)
        .await?;
        self.step(
            id,
            format!(
                "release #{} ({}) → job on {}",
                ctx.release.number, ctx.release.image, h.name
            ),
        )
        .await;
        let run = OneOff {
            purpose: RunPurpose::Job,
            container,
            command: None,
            timeout_secs: plan::JOB_TIMEOUT_SECS,
            registry_auth,
        };
        let end = self.run_once(ctx, h, run).await?;
        let (state, outcome) = match end {
            RunEnd::Done => (TargetState::Switched, Outcome::Succeeded),
            RunEnd::Failed(r) => (TargetState::Failed, Outcome::Failed(r)),
            RunEnd::Cancelled => (TargetState::Failed, Outcome::Cancelled),
        };
        self.set_target(id, h.id, state).await?;
        Ok(outcome)
    }

    /// Sends one `RunOnce` to `h`, storing its output lines as steps as they
    /// arrive (`<label>: <line>`), until it ends or the deployment is
    /// cancelled (dropping the call cancels it on the agent, which kills and
    /// removes the container).
    async fn run_once(
        &self,
        ctx: &Context,
        h: &host::Model,
        run: OneOff<'_>,
    ) -> Result<RunEnd, EngineError> {
        let id = ctx.deployment.id;
        let label = run.label();
        let request = AgentRequest::RunOnce(RunOncePlan {
            deployment_id: id,
            release_number: ctx.release.number,
            service: ctx.key.clone(),
            purpose: run.purpose,
            container: plan::one_off_container(run.container),
            command: run.command,
            timeout_secs: run.timeout_secs,
            registry_auth: run.registry_auth,
        });
        let (tx, mut rx) = mpsc::unbounded_channel();
        // Covers the pull, the command's own timeout and its kill.
        let timeout = plan::run_once_timeout(run.timeout_secs);
        let call = self.hub.call(h.id, request, Some(tx), timeout);
        tokio::pin!(call);
        let cancelled = self.cancelled(id);
        tokio::pin!(cancelled);
        // The last lines, in case the agent's answer carries none.
        let mut last: VecDeque<String> = VecDeque::with_capacity(plan::REASON_TAIL_LINES);
        let result = loop {
            tokio::select! {
                r = &mut call => {
                    while let Ok(ev) = rx.try_recv() {
                        self.run_event(id, h, label, ev, &mut last).await;
                    }
                    break Some(r);
                }
                Some(ev) = rx.recv() => self.run_event(id, h, label, ev, &mut last).await,
                _ = &mut cancelled => break None,
            }
        };
        let last: Vec<String> = last.into();
        let Some(result) = result else {
            // The dropped call is cancelled on the agent; make sure nothing
            // of this run is left.
            self.reconcile_later(h.id);
            return Ok(RunEnd::Cancelled);
        };
        let or_last = |tail: Vec<String>| if tail.is_empty() { last.clone() } else { tail };
        Ok(match result {
            Ok(AgentResponse::Completed {
                exit_code: 0,
                duration_ms,
                ..
            }) => {
                self.step(
                    id,
                    format!(
                        "{label} exited with 0 after {:.1} s",
                        duration_ms as f64 / 1000.0
                    ),
                )
                .await;
                RunEnd::Done
            }
            Ok(AgentResponse::Completed {
                exit_code, tail, ..
            }) => RunEnd::Failed(plan::with_tail(
                format!("{label} exited with {exit_code}"),
                &or_last(tail),
            )),
            Ok(other) => RunEnd::Failed(format!(
                "{}: unexpected answer from the agent to the {label}: {other:?}",
                h.name
            )),
            Err(CallError::Agent(e)) if e.code == AgentErrorCode::Timeout => {
                RunEnd::Failed(plan::with_tail(
                    format!("{label} timed out after {} s (killed)", run.timeout_secs),
                    &or_last(e.logs),
                ))
            }
            Err(e) => {
                // An agent's error carries the container's lines itself.
                let tail = match e {
                    CallError::Agent(_) => Vec::new(),
                    _ => {
                        // What the host did is unknown: reconcile it when back.
                        self.reconcile_later(h.id);
                        last.clone()
                    }
                };
                RunEnd::Failed(plan::with_tail(
                    format!("{}: {label} failed: {}", h.name, describe_call_error(&e)),
                    &tail,
                ))
            }
        })
    }

    async fn run_event(
        &self,
        id: uuid::Uuid,
        h: &host::Model,
        label: &str,
        ev: AgentEvent,
        last: &mut VecDeque<String>,
    ) {
        let line = match ev {
            AgentEvent::Log { line, .. } => {
                if last.len() == plan::REASON_TAIL_LINES {
                    last.pop_front();
                }
                last.push_back(line.clone());
                format!("{label}: {line}")
            }
            AgentEvent::Step { message } => format!("{}: {message}", h.name),
            // Nothing is switched by a one-off run.
            AgentEvent::Switched => return,
        };
        self.step(id, line).await;
    }
}
