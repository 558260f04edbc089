//! The WebSocket to the control plane: handshake, heartbeats, reconnects with
//! backoff, and dispatch of requests (one task each, serialized per service).
use crate::identity::Identity;
use crate::rollout::{Engine, Progress};
use futures_util::future::{BoxFuture, FutureExt, Shared};
use futures_util::{SinkExt, StreamExt};
use slipway_types::agent::{
    challenge_message, AgentError, AgentErrorCode, AgentEvent, AgentMessage, AgentRequest,
    AgentResponse, HostFacts, ProtocolErrorCode, ServerMessage, DEAD_AFTER_SECS, HEARTBEAT_SECS,
    PROTOCOL_VERSION,
};
use slipway_types::api::RolloutStrategy;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const STATUS_EVERY: Duration = Duration::from_secs(5);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// How a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// The server refused this agent for good.
    #[error("the server refused this agent ({code:?}): {message}")]
    Fatal {
        code: ProtocolErrorCode,
        message: String,
    },
    #[error("{0}")]
    Transient(String),
}

/// A future that resolves once the retires queued for a service so far are done.
type Retired = Shared<BoxFuture<'static, ()>>;

#[derive(Default)]
struct ServiceSlot {
    lock: Arc<tokio::sync::Mutex<()>>,
    /// Resolves once every retire queued for this service so far is done.
    retired: Option<Retired>,
}

/// One lock per service: requests for the same service queue behind each other.
/// A rollout's retire (stopping and pruning the old containers once the new
/// release serves) runs after the lock is released, at once — the retires of
/// back-to-back rollouts stop their containers in parallel, each with its own
/// stop grace period. The next start-first rollout does not wait for them; a
/// revert, a reconcile or a stop-first rollout waits for every one queued.
#[derive(Default, Clone)]
pub struct ServiceLocks {
    inner: Arc<Mutex<HashMap<Uuid, ServiceSlot>>>,
}

impl ServiceLocks {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, ServiceSlot>> {
        match self.inner.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn get(&self, id: Uuid) -> Arc<tokio::sync::Mutex<()>> {
        self.map().entry(id).or_default().lock.clone()
    }

    /// Locks every service in `ids` (sorted, so two requests never deadlock),
    /// or `None` if cancelled while waiting.
    pub async fn lock_all(
        &self,
        mut ids: Vec<Uuid>,
        cancel: &CancellationToken,
    ) -> Option<Vec<tokio::sync::OwnedMutexGuard<()>>> {
        ids.sort();
        ids.dedup();
        let mut guards = Vec::with_capacity(ids.len());
        for id in ids {
            let lock = self.get(id);
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return None,
                g = lock.lock_owned() => guards.push(g),
            }
        }
        Some(guards)
    }

    /// Registers a retire of `id` (call it holding the service's lock, so a
    /// request that locks the service next sees it). Returns the token whose
    /// drop marks it done; the retire itself need not wait for anything.
    pub fn queue_retire(&self, id: Uuid) -> oneshot::Sender<()> {
        let (tx, rx) = oneshot::channel::<()>();
        let mut map = self.map();
        let slot = map.entry(id).or_default();
        // Only retires still running are kept (the chain stays short).
        let before = slot
            .retired
            .take()
            .filter(|b| b.clone().now_or_never().is_none());
        // Done when this one and all before it are.
        let all: Retired = async move {
            let _ = rx.await;
            if let Some(before) = before {
                before.await;
            }
        }
        .boxed()
        .shared();
        slot.retired = Some(all);
        tx
    }

    /// Waits until every retire of `id` queued so far is done.
    pub async fn retired(&self, id: Uuid) {
        let last = self.map().get(&id).and_then(|s| s.retired.clone());
        if let Some(last) = last {
            last.await;
        }
    }
}

/// Runs one request and hands its result to `answer`. A rollout answers
/// as soon as the new release serves; the old containers are retired
/// afterwards, after the service's lock is released, in the order of the
/// rollouts, and before any later revert or reconcile of the service acts.
/// `progress` is dropped before `answer` runs, so every event of the
/// request precedes its answer.
pub async fn execute(
    engine: &Engine,
    locks: &ServiceLocks,
    request: &AgentRequest,
    progress: Progress,
    cancel: &CancellationToken,
    answer: impl FnOnce(Result<AgentResponse, AgentError>),
) {
    let services = match request {
        AgentRequest::Rollout(p) => vec![p.service.service_id],
        AgentRequest::RunOnce(p) => vec![p.service.service_id],
        AgentRequest::Revert(p) => vec![p.service.service_id],
        AgentRequest::Reconcile(p) => p.services.iter().map(|s| s.service.service_id).collect(),
        AgentRequest::ContainerLogs { .. } => Vec::new(),
    };
    let Some(guards) = locks.lock_all(services.clone(), cancel).await else {
        drop(progress);
        answer(Err(AgentError::new(
            AgentErrorCode::Cancelled,
            "cancelled while queued",
        )));
        return;
    };
    let start_first =
        matches!(request, AgentRequest::Rollout(p) if p.strategy == RolloutStrategy::StartFirst);
    if !start_first {
        // A revert, reconcile or stop-first rollout sees the containers as
        // the earlier rollouts left them (e.g. restores one only after it was
        // stopped; stops, and on failure restarts, only the serving ones).
        for id in &services {
            locks.retired(*id).await;
        }
    }
    let result = match request {
        AgentRequest::Rollout(p) => match engine.rollout_serving(p, &progress, cancel).await {
            Ok((response, retire)) => {
                drop(progress);
                answer(Ok(response));
                if let Some(r) = retire {
                    let done = locks.queue_retire(p.service.service_id);
                    drop(guards);
                    engine.retire(r, &Progress::discard()).await;
                    drop(done);
                }
                return;
            }
            Err(e) => Err(e),
        },
        AgentRequest::RunOnce(p) => engine.run_once(p, &progress, cancel).await,
        AgentRequest::Revert(p) => engine.revert(p, &progress, cancel).await,
        AgentRequest::Reconcile(p) => engine.reconcile(p, &progress, cancel).await,
        AgentRequest::ContainerLogs {
            container_id,
            tail,
            follow,
        } => {
            engine
                .logs(container_id, *tail, *follow, &progress, cancel)
                .await
        }
    };
    drop(progress);
    answer(result);
    drop(guards);
}

/// The WebSocket to the control plane, over TLS for `wss://`.
pub type ServerSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the WebSocket at `url` (`ws://` or `wss://`, trusting the roots of
/// `tls`, see [`crate::tls`]), within the handshake timeout.
pub async fn dial(url: &str, tls: &Arc<rustls::ClientConfig>) -> Result<ServerSocket, ConnError> {
    let connector = tokio_tungstenite::Connector::Rustls(tls.clone());
    let (ws, _) = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        tokio_tungstenite::connect_async_tls_with_config(url, None, false, Some(connector)),
    )
    .await
    .map_err(|_| ConnError::Transient(format!("connecting to {url} timed out")))?
    .map_err(|e| {
        ConnError::Transient(format!(
            "cannot connect to {url}: {}",
            crate::tls::describe(&e)
        ))
    })?;
    Ok(ws)
}

pub struct Connector {
    pub engine: Engine,
    pub identity: Arc<Identity>,
    pub connect_url: String,
    /// Trusted roots for `wss://` ([`crate::tls::client_config`]).
    pub tls: Arc<rustls::ClientConfig>,
    pub data_dir: std::path::PathBuf,
    pub locks: ServiceLocks,
}

impl Connector {
    /// Connects, serves, reconnects with backoff; returns only on a fatal refusal.
    pub async fn run_forever(&self) -> ConnError {
        let mut attempt: u32 = 0;
        loop {
            let mut welcomed = false;
            match self.connect_once(&mut welcomed).await {
                Err(e @ ConnError::Fatal { .. }) => return e,
                Err(ConnError::Transient(m)) => {
                    tracing::warn!(reason = %m, "connection to the control plane lost")
                }
                Ok(()) => tracing::warn!("connection to the control plane closed"),
            }
            if welcomed {
                attempt = 0;
            }
            let wait = crate::spec::backoff(attempt, rand::random::<f64>());
            attempt = attempt.saturating_add(1);
            tracing::info!(in_ms = wait.as_millis() as u64, "reconnecting");
            tokio::time::sleep(wait).await;
        }
    }

    async fn connect_once(&self, welcomed: &mut bool) -> Result<(), ConnError> {
        let transient = |m: String| ConnError::Transient(m);
        let ws = dial(&self.connect_url, &self.tls).await?;
        let (mut sink, mut stream) = ws.split();

        // Challenge → Hello → Welcome.
        let first = next_server_message(&mut stream).await?;
        let nonce = match first {
            ServerMessage::Challenge {
                nonce,
                protocol_version,
            } => {
                if protocol_version != PROTOCOL_VERSION {
                    return Err(ConnError::Fatal {
                        code: ProtocolErrorCode::VersionMismatch,
                        message: format!(
                            "the server speaks agent protocol v{protocol_version}, this agent v{PROTOCOL_VERSION}; upgrade the agent"
                        ),
                    });
                }
                nonce
            }
            ServerMessage::Error { code, message } => return Err(protocol_error(code, message)),
            other => return Err(transient(format!("expected a challenge, got {other:?}"))),
        };
        let facts: HostFacts = crate::facts::gather(&self.engine.docker, &self.data_dir).await;
        let hello = AgentMessage::Hello {
            host_id: self.identity.host_id,
            protocol_version: PROTOCOL_VERSION,
            signature: self
                .identity
                .sign_b64(&challenge_message(&nonce, self.identity.host_id)),
            facts,
        };
        send(&mut sink, &hello).await?;
        let heartbeat_secs = match next_server_message(&mut stream).await? {
            ServerMessage::Welcome {
                host_id,
                heartbeat_secs,
            } => {
                if host_id != self.identity.host_id {
                    tracing::warn!(%host_id, "welcome names another host id");
                }
                heartbeat_secs
            }
            ServerMessage::Error { code, message } => return Err(protocol_error(code, message)),
            other => return Err(transient(format!("expected welcome, got {other:?}"))),
        };
        *welcomed = true;
        tracing::info!(host_id = %self.identity.host_id, "connected to the control plane");

        let heartbeat = Duration::from_secs(if heartbeat_secs == 0 {
            HEARTBEAT_SECS
        } else {
            heartbeat_secs.min(60)
        });
        let dead_after = Duration::from_secs(DEAD_AFTER_SECS.max(heartbeat.as_secs() * 3));
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<AgentMessage>();
        let conn_cancel = CancellationToken::new();
        // Every request of this connection is cancelled when it ends.
        let _cancel_all = conn_cancel.clone().drop_guard();
        let inflight: Arc<Mutex<HashMap<u64, CancellationToken>>> = Arc::default();
        let status_busy = Arc::new(AtomicBool::new(false));
        let mut hb = tokio::time::interval(heartbeat);
        hb.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut status_iv = tokio::time::interval(STATUS_EVERY);
        status_iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_seen = Instant::now();

        loop {
            tokio::select! {
                frame = stream.next() => {
                    let msg = match frame {
                        None => return Err(transient("the server closed the connection".into())),
                        Some(Err(e)) => return Err(transient(format!("connection error: {e}"))),
                        Some(Ok(m)) => m,
                    };
                    last_seen = Instant::now();
                    match msg {
                        Message::Text(t) => match serde_json::from_str::<ServerMessage>(t.as_str()) {
                            Ok(m) => self.handle(m, &out_tx, &conn_cancel, &inflight)?,
                            Err(e) => tracing::warn!(error = %e, "ignoring a malformed frame from the server"),
                        },
                        Message::Close(_) => return Err(transient("the server closed the connection".into())),
                        _ => {}
                    }
                }
                Some(msg) = out_rx.recv() => send(&mut sink, &msg).await?,
                _ = hb.tick() => send(&mut sink, &AgentMessage::Heartbeat).await?,
                _ = status_iv.tick() => {
                    if !status_busy.swap(true, Ordering::SeqCst) {
                        let engine = self.engine.clone();
                        let tx = out_tx.clone();
                        let busy = status_busy.clone();
                        tokio::spawn(async move {
                            match engine.status().await {
                                Ok((containers, stats)) => {
                                    let _ = tx.send(AgentMessage::Status { containers, stats });
                                }
                                Err(e) => tracing::warn!(error = %e, "cannot collect status"),
                            }
                            busy.store(false, Ordering::SeqCst);
                        });
                    }
                }
                _ = tokio::time::sleep_until(last_seen + dead_after) => {
                    return Err(transient(format!("nothing heard from the server for {} s", dead_after.as_secs())));
                }
            }
        }
    }

    fn handle(
        &self,
        msg: ServerMessage,
        out: &mpsc::UnboundedSender<AgentMessage>,
        conn_cancel: &CancellationToken,
        inflight: &Arc<Mutex<HashMap<u64, CancellationToken>>>,
    ) -> Result<(), ConnError> {
        match msg {
            ServerMessage::Heartbeat => {}
            ServerMessage::Request { id, request } => {
                let cancel = conn_cancel.child_token();
                lock(inflight).insert(id, cancel.clone());
                let engine = self.engine.clone();
                let locks = self.locks.clone();
                let out = out.clone();
                let inflight = inflight.clone();
                tokio::spawn(async move {
                    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<AgentEvent>();
                    let fwd_out = out.clone();
                    let forward = tokio::spawn(async move {
                        while let Some(event) = ev_rx.recv().await {
                            let _ = fwd_out.send(AgentMessage::Event { id, event });
                        }
                    });
                    let progress = Progress::new(ev_tx);
                    let answer = |result: Result<AgentResponse, AgentError>| {
                        let msg = match result {
                            Ok(response) => AgentMessage::Response { id, response },
                            Err(error) => {
                                tracing::warn!(request = id, error = %error, "request failed");
                                AgentMessage::Failure { id, error }
                            }
                        };
                        lock(&inflight).remove(&id);
                        // After the request's events: the forwarder ends once
                        // `progress` (dropped before this runs) is gone.
                        tokio::spawn(async move {
                            let _ = forward.await;
                            let _ = out.send(msg);
                        });
                    };
                    execute(&engine, &locks, &request, progress, &cancel, answer).await;
                });
            }
            ServerMessage::Cancel { id } => {
                if let Some(token) = lock(inflight).get(&id) {
                    tracing::info!(request = id, "cancelling");
                    token.cancel();
                }
            }
            ServerMessage::Error { code, message } => return Err(protocol_error(code, message)),
            ServerMessage::Challenge { .. } | ServerMessage::Welcome { .. } => {
                tracing::warn!("unexpected handshake frame after welcome; ignored");
            }
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

fn protocol_error(code: ProtocolErrorCode, message: String) -> ConnError {
    tracing::error!(?code, %message, "the server reported a protocol error");
    match code {
        ProtocolErrorCode::VersionMismatch
        | ProtocolErrorCode::Revoked
        | ProtocolErrorCode::UnknownHost => ConnError::Fatal { code, message },
        _ => ConnError::Transient(format!("server error {code:?}: {message}")),
    }
}

async fn send<S>(sink: &mut S, msg: &AgentMessage) -> Result<(), ConnError>
where
    S: futures_util::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
{
    let text = serde_json::to_string(msg)
        .map_err(|e| ConnError::Transient(format!("cannot encode a frame: {e}")))?;
    sink.send(Message::text(text))
        .await
        .map_err(|e| ConnError::Transient(format!("cannot send: {e}")))
}

/// The next JSON frame during the handshake (with a timeout).
async fn next_server_message<S>(stream: &mut S) -> Result<ServerMessage, ConnError>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    loop {
        let frame = tokio::time::timeout_at(deadline, stream.next())
            .await
            .map_err(|_| ConnError::Transient("the server did not answer the handshake".into()))?;
        match frame {
            None | Some(Ok(Message::Close(_))) => {
                return Err(ConnError::Transient(
                    "the server closed the connection during the handshake".into(),
                ))
            }
            Some(Err(e)) => return Err(ConnError::Transient(format!("connection error: {e}"))),
            Some(Ok(Message::Text(t))) => {
                return serde_json::from_str(t.as_str()).map_err(|e| {
                    ConnError::Transient(format!("malformed frame from the server: {e}"))
                })
            }
            Some(Ok(_)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn retires_run_at_once_and_reverts_wait_for_all_of_them() {
        let locks = ServiceLocks::default();
        let svc = Uuid::new_v4();
        // Nothing queued: nothing to wait for.
        assert!(locks.retired(svc).now_or_never().is_some());

        let first_done = locks.queue_retire(svc);
        let second_done = locks.queue_retire(svc);
        // Both run at once; a revert (which waits for every retire queued so
        // far) may not act while either runs, whichever ends first.
        assert!(
            locks.retired(svc).now_or_never().is_none(),
            "a revert did not wait for the retires"
        );
        drop(second_done);
        assert!(
            locks.retired(svc).now_or_never().is_none(),
            "a revert waits for the first too"
        );
        let third_done = locks.queue_retire(svc);
        drop(first_done);
        assert!(
            locks.retired(svc).now_or_never().is_none(),
            "a revert waits for the third"
        );
        drop(third_done);
        assert!(locks.retired(svc).now_or_never().is_some());
        // Another service is independent.
        assert!(locks.retired(Uuid::new_v4()).now_or_never().is_some());
    }

    #[tokio::test]
    async fn the_service_lock_is_free_while_a_retire_is_queued() {
        let locks = ServiceLocks::default();
        let svc = Uuid::new_v4();
        let cancel = CancellationToken::new();
        let guards = locks.lock_all(vec![svc], &cancel).await.unwrap();
        let _done = locks.queue_retire(svc);
        drop(guards);
        // The next rollout gets the lock at once although the retire is pending.
        let next = tokio::time::timeout(Duration::from_secs(1), locks.lock_all(vec![svc], &cancel));
        assert!(next.await.unwrap().is_some());
    }
}
