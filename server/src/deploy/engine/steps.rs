//! The step log's writer: the engine appends lines without waiting for the
//! store; one task stores them in order (batched) and streams each once
//! stored, and a flush waits until everything appended before is stored.
use super::Engine;
use crate::{
    live::{Live, LiveBus},
    store::entities::deployment_step,
};
use chrono::{SubsecRound, Utc};
use sea_orm::{ActiveValue::Set, DatabaseConnection, EntityTrait};
use slipway_types::api::DeploymentStep;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

impl Engine {
    /// Appends one line to the deployment's step log. It is stored and then
    /// streamed by the [`StepWriter`], in order, without the caller waiting
    /// for the store (steps are not state: nothing acts on them).
    pub(super) async fn step(&self, deployment_id: Uuid, message: String) {
        tracing::info!(deployment = %deployment_id, "{message}");
        // One timestamp, at the store's precision, so a stream that replays
        // stored steps can recognise the same line arriving live.
        let at = Utc::now().trunc_subsecs(6);
        let _ = self.steps.send(StepMsg::Step {
            deployment_id,
            step: DeploymentStep { at, message },
        });
    }

    /// Waits until every step appended so far is stored (and streamed).
    pub(super) async fn flush_steps(&self) {
        let (tx, rx) = oneshot::channel();
        if self.steps.send(StepMsg::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

pub(super) enum StepMsg {
    Step {
        deployment_id: Uuid,
        step: DeploymentStep,
    },
    /// Answered once everything sent before is stored.
    Flush(oneshot::Sender<()>),
}

/// Most steps stored by one statement.
const STEP_BATCH: usize = 256;

/// Stores step-log lines in the order they were appended, several per
/// statement when they arrive together (a fan-out's hosts report at once),
/// and streams each one once stored: an SSE client subscribes before it
/// reads the stored steps, so it sees every line one way or the other.
pub(super) struct StepWriter {
    db: DatabaseConnection,
    live: LiveBus,
}

impl StepWriter {
    /// Starts the writer; the sender is the engine's end of the log.
    pub(super) fn spawn(db: DatabaseConnection, live: LiveBus) -> mpsc::UnboundedSender<StepMsg> {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(StepWriter { db, live }.run(rx));
        tx
    }

    async fn run(self, mut rx: mpsc::UnboundedReceiver<StepMsg>) {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < STEP_BATCH {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            let mut steps = Vec::new();
            let mut flushes = Vec::new();
            for m in batch {
                match m {
                    StepMsg::Step {
                        deployment_id,
                        step,
                    } => steps.push((deployment_id, step)),
                    StepMsg::Flush(tx) => flushes.push(tx),
                }
            }
            if !steps.is_empty() {
                let rows = steps.iter().map(|(d, s)| deployment_step::ActiveModel {
                    deployment_id: Set(*d),
                    at: Set(s.at),
                    message: Set(s.message.clone()),
                    ..Default::default()
                });
                if let Err(e) = deployment_step::Entity::insert_many(rows)
                    .exec_without_returning(&self.db)
                    .await
                {
                    tracing::warn!(error = %e, lines = steps.len(), "could not store steps");
                }
                for (deployment_id, step) in steps {
                    self.live.publish(Live::Step {
                        deployment_id,
                        step,
                    });
                }
            }
            for tx in flushes {
                let _ = tx.send(());
            }
        }
    }
}
