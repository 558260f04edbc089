//! The registry of connected agents: one live connection per host, request
//! ids, routing of responses and events back to the caller. Transport-free:
//! the WebSocket handler feeds it frames and drains its outbox.
//!
//! [`AgentHub::handle`] runs on the agent's WebSocket reader and never
//! waits: events for a client's stream go into that stream's bounded buffer
//! ([`super::buffer`]), and a client that stopped reading has its request
//! cancelled on the agent instead of holding up the agent's other requests.
use super::buffer::{BoundedTx, Offer};
use slipway_types::agent::{
    AgentError, AgentEvent, AgentMessage, AgentRequest, AgentResponse, ContainerStats,
    ContainerStatus, HostFacts, ProtocolErrorCode, ServerMessage,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};
use uuid::Uuid;

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum CallError {
    #[error("the host's agent is not connected")]
    Offline,
    #[error("the host's agent disconnected before answering")]
    Disconnected,
    #[error("the host's agent did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the client read nothing for {} s: the agent stopped following", .0.as_secs())]
    Stalled(Duration),
    #[error("{0}")]
    Agent(AgentError),
}

/// What a connected agent last told us.
#[derive(Debug, Clone)]
pub struct LiveHost {
    pub facts: HostFacts,
    pub containers: Vec<ContainerStatus>,
    pub stats: Vec<ContainerStats>,
}

type Reply = oneshot::Sender<Result<AgentResponse, CallError>>;

/// Where a call's progress events go.
pub enum Events {
    /// Every event: for the deploy engine, which stores each one as a step
    /// and reads until the call ends (a rollout sends a bounded number).
    All(mpsc::UnboundedSender<AgentEvent>),
    /// An HTTP client's stream: bounded; when the client stops reading the
    /// events are skipped and, after the stall limit, the call is cancelled.
    Bounded(BoundedTx),
}

struct Pending {
    reply: Reply,
    events: Option<Events>,
}

struct Conn {
    conn_id: u64,
    outbox: mpsc::UnboundedSender<ServerMessage>,
    pending: HashMap<u64, Pending>,
    live: LiveHost,
}

#[derive(Default)]
struct Inner {
    conns: HashMap<Uuid, Conn>,
}

/// Cheap to clone; shared by the WebSocket handlers and the deploy engine.
#[derive(Clone)]
pub struct AgentHub {
    inner: Arc<Mutex<Inner>>,
    next_id: Arc<AtomicU64>,
    connected: broadcast::Sender<Uuid>,
}

impl Default for AgentHub {
    fn default() -> Self {
        Self {
            inner: Arc::default(),
            next_id: Arc::new(AtomicU64::new(1)),
            connected: broadcast::channel(256).0,
        }
    }
}

impl AgentHub {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map half-updated
        // in a way that matters more than losing every agent: keep going.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn next(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A verified agent connected. A previous connection of the same host is
    /// told it was replaced and its pending calls fail with `Disconnected`.
    /// Returns the connection id and the outbox the transport must drain.
    pub fn register(
        &self,
        host_id: Uuid,
        facts: HostFacts,
    ) -> (u64, mpsc::UnboundedReceiver<ServerMessage>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let conn_id = self.next();
        let old = self.lock().conns.insert(
            host_id,
            Conn {
                conn_id,
                outbox: tx,
                pending: HashMap::new(),
                live: LiveHost {
                    facts,
                    containers: Vec::new(),
                    stats: Vec::new(),
                },
            },
        );
        if let Some(old) = old {
            let _ = old.outbox.send(ServerMessage::Error {
                code: ProtocolErrorCode::Replaced,
                message: "another connection of this host replaced this one".into(),
            });
            fail_all(old.pending);
        }
        let _ = self.connected.send(host_id);
        (conn_id, rx)
    }

    /// The connection ended. Returns false when a newer connection of the
    /// host had already replaced it (the host is still online).
    pub fn unregister(&self, host_id: Uuid, conn_id: u64) -> bool {
        let mut inner = self.lock();
        match inner.conns.get(&host_id) {
            Some(c) if c.conn_id == conn_id => {
                if let Some(c) = inner.conns.remove(&host_id) {
                    drop(inner);
                    fail_all(c.pending);
                }
                true
            }
            _ => false,
        }
    }

    /// Cut a host off at once (revocation). Pending calls fail.
    pub fn disconnect(&self, host_id: Uuid, code: ProtocolErrorCode, message: &str) {
        if let Some(c) = self.lock().conns.remove(&host_id) {
            let _ = c.outbox.send(ServerMessage::Error {
                code,
                message: message.into(),
            });
            fail_all(c.pending);
        }
    }

    /// A frame from the agent of `host_id` on connection `conn_id`.
    pub fn handle(&self, host_id: Uuid, conn_id: u64, msg: AgentMessage) {
        let mut inner = self.lock();
        let Some(conn) = inner
            .conns
            .get_mut(&host_id)
            .filter(|c| c.conn_id == conn_id)
        else {
            return;
        };
        match msg {
            AgentMessage::Event { id, event } => {
                let offer = match conn.pending.get_mut(&id).and_then(|p| p.events.as_mut()) {
                    Some(Events::All(tx)) => {
                        let _ = tx.send(event);
                        return;
                    }
                    Some(Events::Bounded(tx)) => tx.offer(event, tokio::time::Instant::now()),
                    None => return,
                };
                if offer == Offer::Stalled {
                    // The client stopped reading: stop the agent following
                    // rather than reading lines nobody takes.
                    if let Some(p) = conn.pending.remove(&id) {
                        let limit = match &p.events {
                            Some(Events::Bounded(tx)) => tx.stall_after(),
                            _ => Duration::ZERO,
                        };
                        let _ = conn.outbox.send(ServerMessage::Cancel { id });
                        let _ = p.reply.send(Err(CallError::Stalled(limit)));
                        tracing::info!(host_id = %host_id, request = id, "a log client stopped reading: request cancelled");
                    }
                }
            }
            AgentMessage::Response { id, response } => {
                if let Some(p) = conn.pending.remove(&id) {
                    let _ = p.reply.send(Ok(response));
                }
            }
            AgentMessage::Failure { id, error } => {
                if let Some(p) = conn.pending.remove(&id) {
                    let _ = p.reply.send(Err(CallError::Agent(error)));
                }
            }
            AgentMessage::Status { containers, stats } => {
                conn.live.containers = containers;
                conn.live.stats = stats;
            }
            AgentMessage::Heartbeat | AgentMessage::Hello { .. } => {}
        }
    }

    pub fn is_online(&self, host_id: Uuid) -> bool {
        self.lock().conns.contains_key(&host_id)
    }

    pub fn live(&self, host_id: Uuid) -> Option<LiveHost> {
        self.lock().conns.get(&host_id).map(|c| c.live.clone())
    }

    /// Hosts whose agent is connected now.
    pub fn online(&self) -> Vec<Uuid> {
        self.lock().conns.keys().copied().collect()
    }

    /// Fires with the host id each time an agent (re)connects.
    pub fn subscribe_connected(&self) -> broadcast::Receiver<Uuid> {
        self.connected.subscribe()
    }

    /// Sends `request` and waits for its answer. Progress events go to
    /// `events`, all of them. Dropping the future (or the timeout) cancels
    /// the request on the agent.
    pub async fn call(
        &self,
        host_id: Uuid,
        request: AgentRequest,
        events: Option<mpsc::UnboundedSender<AgentEvent>>,
        timeout: Duration,
    ) -> Result<AgentResponse, CallError> {
        self.call_with(host_id, request, events.map(Events::All), timeout)
            .await
    }

    /// [`AgentHub::call`] with any kind of event sink.
    pub async fn call_with(
        &self,
        host_id: Uuid,
        request: AgentRequest,
        events: Option<Events>,
        timeout: Duration,
    ) -> Result<AgentResponse, CallError> {
        let id = self.next();
        let (reply, rx) = oneshot::channel();
        {
            let mut inner = self.lock();
            let conn = inner.conns.get_mut(&host_id).ok_or(CallError::Offline)?;
            conn.outbox
                .send(ServerMessage::Request { id, request })
                .map_err(|_| CallError::Disconnected)?;
            conn.pending.insert(id, Pending { reply, events });
        }
        let guard = CancelOnDrop {
            hub: self,
            host_id,
            id,
            armed: true,
        };
        let out = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(CallError::Disconnected),
            Err(_) => Err(CallError::Timeout(timeout)),
        };
        let mut guard = guard;
        // Answered (or its connection is gone): nothing left to cancel.
        if !matches!(out, Err(CallError::Timeout(_))) {
            guard.armed = false;
        }
        out
    }
}

struct CancelOnDrop<'a> {
    hub: &'a AgentHub,
    host_id: Uuid,
    id: u64,
    armed: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut inner = self.hub.lock();
        if let Some(conn) = inner.conns.get_mut(&self.host_id) {
            if conn.pending.remove(&self.id).is_some() {
                let _ = conn.outbox.send(ServerMessage::Cancel { id: self.id });
            }
        }
    }
}

fn fail_all(pending: HashMap<u64, Pending>) {
    for (_, p) in pending {
        let _ = p.reply.send(Err(CallError::Disconnected));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agents::buffer::{self, Limits};
    use crate::live::{StreamKind, StreamStats};
    use slipway_types::agent::{AgentErrorCode, LogStream};

    fn logs_request() -> AgentRequest {
        AgentRequest::ContainerLogs {
            container_id: "c1".into(),
            tail: 10,
            follow: false,
        }
    }

    async fn next_request(rx: &mut mpsc::UnboundedReceiver<ServerMessage>) -> u64 {
        match rx.recv().await {
            Some(ServerMessage::Request { id, .. }) => id,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn routes_events_and_the_response_to_the_caller() {
        let hub = AgentHub::default();
        let host = Uuid::new_v4();
        let (conn, mut rx) = hub.register(host, HostFacts::default());
        let (etx, mut erx) = mpsc::unbounded_channel();
        let h = hub.clone();
        let call = tokio::spawn(async move {
            h.call(host, logs_request(), Some(etx), Duration::from_secs(5))
                .await
        });
        let id = next_request(&mut rx).await;
        hub.handle(
            host,
            conn,
            AgentMessage::Event {
                id,
                event: AgentEvent::Step {
                    message: "hello".into(),
                },
            },
        );
        hub.handle(
            host,
            conn,
            AgentMessage::Response {
                id,
                response: AgentResponse::LogsEnded,
            },
        );
        assert_eq!(call.await.unwrap(), Ok(AgentResponse::LogsEnded));
        assert_eq!(
            erx.recv().await,
            Some(AgentEvent::Step {
                message: "hello".into()
            })
        );
    }

    #[tokio::test]
    async fn offline_failures_and_disconnects_are_errors() {
        let hub = AgentHub::default();
        let host = Uuid::new_v4();
        assert_eq!(
            hub.call(host, logs_request(), None, Duration::from_secs(1))
                .await,
            Err(CallError::Offline)
        );
        let (conn, mut rx) = hub.register(host, HostFacts::default());
        let h = hub.clone();
        let call = tokio::spawn(async move {
            h.call(host, logs_request(), None, Duration::from_secs(5))
                .await
        });
        let id = next_request(&mut rx).await;
        let err = AgentError::new(AgentErrorCode::NotFound, "no such container");
        hub.handle(
            host,
            conn,
            AgentMessage::Failure {
                id,
                error: err.clone(),
            },
        );
        assert_eq!(call.await.unwrap(), Err(CallError::Agent(err)));

        let h = hub.clone();
        let call = tokio::spawn(async move {
            h.call(host, logs_request(), None, Duration::from_secs(5))
                .await
        });
        next_request(&mut rx).await;
        assert!(hub.unregister(host, conn));
        assert_eq!(call.await.unwrap(), Err(CallError::Disconnected));
        assert!(!hub.is_online(host));
    }

    #[tokio::test]
    async fn a_timed_out_call_is_cancelled_on_the_agent() {
        let hub = AgentHub::default();
        let host = Uuid::new_v4();
        let (_conn, mut rx) = hub.register(host, HostFacts::default());
        let out = hub
            .call(host, logs_request(), None, Duration::from_millis(20))
            .await;
        assert!(matches!(out, Err(CallError::Timeout(_))));
        let id = next_request(&mut rx).await;
        assert_eq!(rx.recv().await, Some(ServerMessage::Cancel { id }));
    }

    #[tokio::test]
    async fn a_new_connection_replaces_the_old_one() {
        let hub = AgentHub::default();
        let host = Uuid::new_v4();
        let (old, mut old_rx) = hub.register(host, HostFacts::default());
        let (_new, _new_rx) = hub.register(host, HostFacts::default());
        assert!(matches!(
            old_rx.recv().await,
            Some(ServerMessage::Error {
                code: ProtocolErrorCode::Replaced,
                ..
            })
        ));
        // The old connection ending does not take the host offline.
        assert!(!hub.unregister(host, old));
        assert!(hub.is_online(host));
    }

    #[tokio::test]
    async fn a_stream_nobody_reads_never_holds_up_the_agents_other_requests() {
        let hub = AgentHub::default();
        let host = Uuid::new_v4();
        let (conn, mut rx) = hub.register(host, HostFacts::default());
        let stats = StreamStats::default();
        let limits = Limits {
            events: 10,
            bytes: 1 << 20,
            stall_after: Duration::from_secs(3600),
        };
        let (tx, _unread) = buffer::bounded(limits, StreamKind::Logs, stats.clone());
        let h = hub.clone();
        let follow = tokio::spawn(async move {
            h.call_with(
                host,
                logs_request(),
                Some(Events::Bounded(tx)),
                Duration::from_secs(60),
            )
            .await
        });
        let follow_id = next_request(&mut rx).await;
        let h = hub.clone();
        let other = tokio::spawn(async move {
            h.call(host, logs_request(), None, Duration::from_secs(5))
                .await
        });
        let other_id = next_request(&mut rx).await;
        // `handle` is the WebSocket reader: it returns at once for each
        // line, whether or not the stream's client reads.
        for i in 0..50_000 {
            hub.handle(
                host,
                conn,
                AgentMessage::Event {
                    id: follow_id,
                    event: AgentEvent::Log {
                        stream: LogStream::Stdout,
                        line: format!("line {i}"),
                    },
                },
            );
        }
        hub.handle(
            host,
            conn,
            AgentMessage::Response {
                id: other_id,
                response: AgentResponse::LogsEnded,
            },
        );
        assert_eq!(other.await.unwrap(), Ok(AgentResponse::LogsEnded));
        assert_eq!(stats.skipped_total(StreamKind::Logs), 49_990);
        follow.abort();
    }
}
