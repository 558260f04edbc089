//! `GET /hosts/{id}/containers/{container}/logs`: a container's output,
//! streamed from the host's agent as server-sent events.
//!
//! Each line is `data: {LogLine}`; a `: ping` comment keeps proxies from
//! closing an idle stream; an `end` event says the agent finished (so a
//! browser `EventSource` can stop instead of reconnecting). The agent call
//! lives inside the response body: when the client goes away the body is
//! dropped, and with it the call, which cancels the request on the agent.
use super::{hub::CallError, AgentHub};
use crate::{
    api::hosts,
    auth::{Auth, Viewer},
    error::{ApiError, ApiResult},
    startup::AppState,
};
use actix_web::{
    http::header::{self, ContentEncoding},
    web::{self, Bytes},
    HttpResponse,
};
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use serde_json::json;
use slipway_types::{
    agent::{AgentEvent, AgentRequest, AgentResponse},
    api::LogLine,
};
use std::{future::Future, pin::Pin, time::Duration};
use tokio::sync::mpsc;
use uuid::Uuid;

pub const DEFAULT_TAIL: u32 = 200;
pub const MAX_TAIL: u32 = 10_000;
/// A comment line is sent this often so idle streams stay open.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Longest a followed stream runs before the client has to reconnect.
const FOLLOW_LIMIT: Duration = Duration::from_secs(12 * 3600);
/// Longest the agent may take to send a tail without following.
const TAIL_LIMIT: Duration = Duration::from_secs(120);

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct LogsQuery {
    pub tail: Option<u32>,
    pub follow: Option<bool>,
}

impl LogsQuery {
    /// `(tail, follow)`; following is the default, as for `docker logs -f`.
    pub fn resolve(&self) -> ApiResult<(u32, bool)> {
        let tail = self.tail.unwrap_or(DEFAULT_TAIL);
        if tail > MAX_TAIL {
            return Err(ApiError::invalid(
                "tail",
                format!("at most {MAX_TAIL} lines"),
            ));
        }
        Ok((tail, self.follow.unwrap_or(true)))
    }
}

/// One SSE `data:` event. JSON never contains a raw newline, so one line.
pub fn sse_data(line: &LogLine) -> Bytes {
    let json = serde_json::to_string(line).unwrap_or_else(|_| "{}".into());
    Bytes::from(format!("data: {json}\n\n"))
}

/// The final `end` event: `{"ok":true}` or `{"ok":false,"error":"…"}`.
pub fn sse_end(result: &Result<AgentResponse, CallError>) -> Bytes {
    let body = match result {
        Ok(_) => json!({"ok": true}),
        Err(e) => json!({"ok": false, "error": e.to_string()}),
    };
    Bytes::from(format!("event: end\ndata: {body}\n\n"))
}

type Call = Pin<Box<dyn Future<Output = Result<AgentResponse, CallError>>>>;

struct LogState {
    call: Option<Call>,
    result: Option<Result<AgentResponse, CallError>>,
    events: mpsc::UnboundedReceiver<AgentEvent>,
    ping: tokio::time::Interval,
}

/// The body: log lines as they come, keep-alives, then one `end` event.
fn log_stream(
    hub: AgentHub,
    host_id: Uuid,
    request: AgentRequest,
    timeout: Duration,
) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> {
    let (tx, events) = mpsc::unbounded_channel();
    let call: Call = Box::pin(async move { hub.call(host_id, request, Some(tx), timeout).await });
    let start = tokio::time::Instant::now() + KEEP_ALIVE;
    let st = LogState {
        call: Some(call),
        result: None,
        events,
        ping: tokio::time::interval_at(start, KEEP_ALIVE),
    };
    stream::unfold(Some(st), |st| async move {
        let mut st = st?;
        loop {
            // The events channel closes once the call is answered (or gone):
            // every line the agent sent before its answer is delivered first.
            tokio::select! {
                biased;
                ev = st.events.recv() => match ev {
                    Some(AgentEvent::Log { stream, line }) => {
                        let chunk = sse_data(&LogLine { stream, line });
                        return Some((Ok(chunk), Some(st)));
                    }
                    Some(AgentEvent::Step { .. }) => continue,
                    None => {
                        let result = match st.result.take() {
                            Some(r) => r,
                            None => match st.call.take() {
                                Some(c) => c.await,
                                None => Err(CallError::Disconnected),
                            },
                        };
                        return Some((Ok(sse_end(&result)), None));
                    }
                },
                r = async { match st.call.as_mut() { Some(c) => c.await, None => std::future::pending().await } } => {
                    st.call = None;
                    st.result = Some(r);
                    continue;
                }
                _ = st.ping.tick() => {
                    return Some((Ok(Bytes::from_static(b": ping\n\n")), Some(st)));
                }
            }
        }
    })
}

/// `GET /hosts/{id}/containers/{container}/logs?tail=&follow=`
pub async fn container_logs(
    auth: Auth<Viewer>,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, String)>,
    q: web::Query<LogsQuery>,
) -> ApiResult<HttpResponse> {
    auth.scope(None)?;
    let (host_id, container) = path.into_inner();
    let (tail, follow) = q.resolve()?;
    let h = hosts::find(&state.db, host_id).await?;
    let live = state.hub.live(h.id).ok_or_else(|| {
        ApiError::Conflict(format!(
            "host {} is offline: its agent is not connected",
            h.name
        ))
    })?;
    let c = live
        .containers
        .iter()
        .find(|c| c.id == container || c.name == container)
        .ok_or(ApiError::NotFound("container"))?;
    let request = AgentRequest::ContainerLogs {
        container_id: c.id.clone(),
        tail,
        follow,
    };
    let timeout = if follow { FOLLOW_LIMIT } else { TAIL_LIMIT };
    let body = log_stream(state.hub.clone(), h.id, request, timeout);
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // Compression would hold lines back until a buffer fills.
        .insert_header(ContentEncoding::Identity)
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use slipway_types::agent::{AgentMessage, HostFacts, LogStream, ServerMessage};

    #[test]
    fn events_are_single_data_lines() {
        let b = sse_data(&LogLine {
            stream: LogStream::Stderr,
            line: "two\nlines".into(),
        });
        assert_eq!(
            std::str::from_utf8(&b).unwrap(),
            "data: {\"stream\":\"stderr\",\"line\":\"two\\nlines\"}\n\n"
        );
        let end = sse_end(&Err(CallError::Offline));
        assert!(std::str::from_utf8(&end)
            .unwrap()
            .starts_with("event: end\ndata: {\"error\":"));
    }

    #[test]
    fn tail_is_bounded() {
        let q = LogsQuery {
            tail: None,
            follow: None,
        };
        assert_eq!(q.resolve().unwrap(), (DEFAULT_TAIL, true));
        let q = LogsQuery {
            tail: Some(MAX_TAIL + 1),
            follow: Some(false),
        };
        assert!(q.resolve().is_err());
    }

    async fn next_request(outbox: &mut mpsc::UnboundedReceiver<ServerMessage>) -> u64 {
        match outbox.recv().await {
            Some(ServerMessage::Request { id, .. }) => id,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    fn log(id: u64, stream: LogStream, line: &str) -> AgentMessage {
        AgentMessage::Event {
            id,
            event: AgentEvent::Log {
                stream,
                line: line.into(),
            },
        }
    }

    #[tokio::test]
    async fn streams_lines_then_end_and_cancels_when_dropped() {
        let hub = AgentHub::default();
        let host = Uuid::new_v4();
        let (conn, mut outbox) = hub.register(host, HostFacts::default());
        let req = AgentRequest::ContainerLogs {
            container_id: "c1".into(),
            tail: 1,
            follow: true,
        };
        let mut s = Box::pin(log_stream(
            hub.clone(),
            host,
            req.clone(),
            Duration::from_secs(30),
        ));
        // Polling the body sends the request; the agent answers with a line.
        let agent = async {
            let id = next_request(&mut outbox).await;
            hub.handle(host, conn, log(id, LogStream::Stdout, "hello"));
            id
        };
        let (chunk, id) = tokio::join!(s.next(), agent);
        let chunk = chunk.unwrap().unwrap();
        assert_eq!(
            std::str::from_utf8(&chunk).unwrap(),
            "data: {\"stream\":\"stdout\",\"line\":\"hello\"}\n\n"
        );
        // The client went away: dropping the body cancels the request.
        drop(s);
        assert_eq!(outbox.recv().await, Some(ServerMessage::Cancel { id }));

        // An answered call ends with the `end` event, after its lines.
        let s = log_stream(hub.clone(), host, req, Duration::from_secs(30));
        let agent = async {
            let id = next_request(&mut outbox).await;
            hub.handle(host, conn, log(id, LogStream::Stderr, "last"));
            hub.handle(
                host,
                conn,
                AgentMessage::Response {
                    id,
                    response: AgentResponse::LogsEnded,
                },
            );
        };
        let (chunks, ()) = tokio::join!(s.collect::<Vec<_>>(), agent);
        let out: String = chunks
            .into_iter()
            .map(|c| String::from_utf8(c.unwrap().to_vec()).unwrap())
            .collect();
        assert_eq!(
            out,
            "data: {\"stream\":\"stderr\",\"line\":\"last\"}\n\nevent: end\ndata: {\"ok\":true}\n\n"
        );
    }
}
