//! `GET /hosts/{id}/containers/{container}/logs`: a container's output,
//! streamed from the host's agent as server-sent events.
//!
//! Each line is `data: {LogLine}`; a `: ping` comment keeps proxies from
//! closing an idle stream; `event: lagged` (a [`slipway_types::sse::Lagged`]) stands where lines
//! were skipped because the client read too slowly; `event: end` (a
//! [`LogsEnd`]) says the stream is over (so a browser `EventSource` can stop
//! instead of reconnecting). The agent call lives inside the response body:
//! when the client goes away the body is dropped, and with it the call,
//! which cancels the request on the agent. Between the agent and the body
//! sits a bounded buffer ([`super::buffer`], [`LOG_BUFFER`]): a client that
//! stops reading costs at most that much, and after
//! [`LOG_BUFFER`]`.stall_after` without taking a line its follow is stopped.
use super::{
    buffer::{self, BoundedRx, Delivered, Limits},
    hub::{CallError, Events},
    AgentHub,
};
use crate::{
    api::hosts,
    auth::{Auth, Viewer},
    error::{ApiError, ApiResult},
    live::{sse_event, sse_lagged, StreamKind, StreamStats},
    state::AppState,
};
use actix_web::{
    http::header::{self, ContentEncoding},
    web::{self, Bytes},
    HttpResponse,
};
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use slipway_types::{
    agent::{AgentEvent, AgentRequest, AgentResponse},
    api::LogLine,
    sse::LogsEnd,
};
use std::{future::Future, pin::Pin, time::Duration};
use uuid::Uuid;

pub const DEFAULT_TAIL: u32 = 200;
pub const MAX_TAIL: u32 = 10_000;
/// A comment line is sent this often so idle streams stay open.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Longest a followed stream runs before the client has to reconnect.
const FOLLOW_LIMIT: Duration = Duration::from_secs(12 * 3600);
/// Longest the agent may take to send a tail without following.
const TAIL_LIMIT: Duration = Duration::from_secs(120);
/// What one log client may have waiting: a reading client never gets near
/// it (lines leave as fast as they come); one that stops reading costs at
/// most this, and its follow ends after `stall_after`.
pub const LOG_BUFFER: Limits = Limits {
    events: 4096,
    bytes: 512 * 1024,
    stall_after: Duration::from_secs(20),
};

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

/// One SSE `data:` event.
pub fn sse_data(line: &LogLine) -> Bytes {
    Bytes::from(sse_event(None, line))
}

/// The final `end` event.
pub fn sse_end(result: &Result<AgentResponse, CallError>) -> Bytes {
    let end = match result {
        Ok(_) => LogsEnd::ok(),
        Err(e) => LogsEnd::failed(e.to_string()),
    };
    Bytes::from(sse_event(Some(LogsEnd::EVENT), &end))
}

/// The frame for one delivered event: the gap marker first when lines were
/// skipped just before it. `None`: nothing to send.
fn frame(d: Delivered) -> Option<Bytes> {
    let mut out = sse_lagged(d.skipped_before);
    if let AgentEvent::Log { stream, line } = d.event {
        out.push_str(&sse_event(None, &LogLine { stream, line }));
    }
    (!out.is_empty()).then(|| Bytes::from(out))
}

type Call = Pin<Box<dyn Future<Output = Result<AgentResponse, CallError>>>>;

struct LogState {
    call: Option<Call>,
    result: Option<Result<AgentResponse, CallError>>,
    events: BoundedRx,
    ping: tokio::time::Interval,
}

/// The body: log lines as they come, keep-alives, gap markers, then one
/// `end` event.
fn log_stream(
    hub: AgentHub,
    (limits, stats): (Limits, StreamStats),
    host_id: Uuid,
    request: AgentRequest,
    timeout: Duration,
) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> {
    let (tx, events) = buffer::bounded(limits, StreamKind::Logs, stats);
    let call: Call = Box::pin(async move {
        hub.call_with(host_id, request, Some(Events::Bounded(tx)), timeout)
            .await
    });
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
                    Some(d) => match frame(d) {
                        Some(chunk) => return Some((Ok(chunk), Some(st))),
                        None => continue,
                    },
                    None => {
                        let result = match st.result.take() {
                            Some(r) => r,
                            None => match st.call.take() {
                                Some(c) => c.await,
                                None => Err(CallError::Disconnected),
                            },
                        };
                        let mut out = sse_lagged(st.events.skipped_at_end()).into_bytes();
                        out.extend_from_slice(&sse_end(&result));
                        return Some((Ok(Bytes::from(out)), None));
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
    let body = log_stream(
        state.hub.clone(),
        (LOG_BUFFER, state.live.stats().clone()),
        h.id,
        request,
        timeout,
    );
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
    use tokio::sync::mpsc;

    fn buffer() -> (Limits, StreamStats) {
        (LOG_BUFFER, StreamStats::default())
    }

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
        assert_eq!(
            std::str::from_utf8(&end).unwrap(),
            "event: end\ndata: {\"ok\":false,\"error\":\"the host's agent is not connected\"}\n\n"
        );
        assert_eq!(sse_lagged(0), "");
        assert_eq!(sse_lagged(7), "event: lagged\ndata: {\"skipped\":7}\n\n");
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
            buffer(),
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
        let s = log_stream(hub.clone(), buffer(), host, req, Duration::from_secs(30));
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

    fn text(chunk: Option<Result<Bytes, std::convert::Infallible>>) -> String {
        String::from_utf8(chunk.unwrap().unwrap().to_vec()).unwrap()
    }

    fn data(line: &str) -> String {
        format!("data: {{\"stream\":\"stdout\",\"line\":\"{line}\"}}\n\n")
    }

    /// The defect: a client that stops reading made the server buffer every
    /// line the agent sent. Now at most the limit waits, the WebSocket reader
    /// (`hub.handle`) never waits, and the client sees where lines are missing.
    #[tokio::test]
    async fn a_client_that_stops_reading_costs_a_bounded_buffer_and_sees_the_gap() {
        let hub = AgentHub::default();
        let host = Uuid::new_v4();
        let (conn, mut outbox) = hub.register(host, HostFacts::default());
        let stats = StreamStats::default();
        let limits = Limits {
            events: 100,
            bytes: 1 << 20,
            stall_after: Duration::from_secs(3600),
        };
        let req = AgentRequest::ContainerLogs {
            container_id: "c1".into(),
            tail: 0,
            follow: true,
        };
        let mut s = Box::pin(log_stream(
            hub.clone(),
            (limits, stats.clone()),
            host,
            req.clone(),
            Duration::from_secs(30),
        ));
        // The agent sends 100,000 lines while the body is not polled.
        let agent = async {
            let id = next_request(&mut outbox).await;
            for i in 0..100_000 {
                hub.handle(host, conn, log(id, LogStream::Stdout, &i.to_string()));
            }
            id
        };
        let (first, id) = tokio::join!(s.next(), agent);
        assert_eq!(text(first), data("0"));
        assert_eq!(stats.skipped_total(StreamKind::Logs), 99_900);
        assert!(
            stats.buffered() <= limits.bytes as i64,
            "{}",
            stats.buffered()
        );
        for i in 1..100 {
            assert_eq!(text(s.next().await), data(&i.to_string()));
        }
        // The next line carries the gap before it.
        hub.handle(host, conn, log(id, LogStream::Stdout, "after"));
        assert_eq!(
            text(s.next().await),
            format!(
                "event: lagged\ndata: {{\"skipped\":99900}}\n\n{}",
                data("after")
            )
        );
        hub.handle(
            host,
            conn,
            AgentMessage::Response {
                id,
                response: AgentResponse::LogsEnded,
            },
        );
        assert_eq!(text(s.next().await), "event: end\ndata: {\"ok\":true}\n\n");
        assert!(s.next().await.is_none());
        assert_eq!(stats.buffered(), 0);
    }

    /// A client that takes nothing for the stall limit: the agent is told to
    /// stop following; the client, if it ever reads again, gets what waited,
    /// the gap and why the stream ended.
    #[tokio::test]
    async fn a_stalled_client_stops_the_agent_following() {
        let hub = AgentHub::default();
        let host = Uuid::new_v4();
        let (conn, mut outbox) = hub.register(host, HostFacts::default());
        let stats = StreamStats::default();
        let limits = Limits {
            events: 2,
            bytes: 1 << 20,
            stall_after: Duration::ZERO,
        };
        let req = AgentRequest::ContainerLogs {
            container_id: "c1".into(),
            tail: 0,
            follow: true,
        };
        let mut s = Box::pin(log_stream(
            hub.clone(),
            (limits, stats.clone()),
            host,
            req,
            Duration::from_secs(30),
        ));
        let agent = async {
            let id = next_request(&mut outbox).await;
            for i in 0..5 {
                hub.handle(host, conn, log(id, LogStream::Stdout, &i.to_string()));
            }
            id
        };
        let (first, id) = tokio::join!(s.next(), agent);
        assert_eq!(text(first), data("0"));
        assert_eq!(outbox.recv().await, Some(ServerMessage::Cancel { id }));
        // The third line found the buffer full: skipped, and the request
        // was cancelled at once; the last two belong to no request any more.
        assert_eq!(stats.skipped_total(StreamKind::Logs), 1);
        assert_eq!(text(s.next().await), data("1"));
        assert_eq!(
            text(s.next().await),
            "event: lagged\ndata: {\"skipped\":1}\n\n\
             event: end\ndata: {\"ok\":false,\"error\":\"the client read nothing for 0 s: the agent stopped following\"}\n\n"
        );
        assert!(s.next().await.is_none());
        // Late lines of the cancelled request go nowhere.
        hub.handle(host, conn, log(id, LogStream::Stdout, "late"));
        assert_eq!(stats.skipped_total(StreamKind::Logs), 1);
        assert_eq!(stats.buffered(), 0);
    }
}
