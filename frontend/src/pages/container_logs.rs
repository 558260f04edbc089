//! `/hosts/:id/containers/:cid/logs`: a container's output, live.
use super::use_id_param;
use crate::components::handler;
use crate::components::Fetch;
use crate::{
    api,
    sse::{EventStream, SseMsg, StreamSlot},
};
use leptos::prelude::*;
use slipway_types::{
    agent::LogStream,
    api::{Host, LogLine},
    sse::LogsEnd,
};

/// Lines kept on screen; older ones are dropped.
const MAX_LINES: usize = 2000;
/// Lines asked for before following.
const TAIL: u32 = 200;

#[derive(Debug, Clone, PartialEq)]
enum StreamState {
    Connecting,
    Live,
    /// The stream broke (agent gone, host unreachable, not found…).
    Ended,
    /// The server ended it: the container stopped logging, or this error.
    Finished(Option<String>),
}

/// The `error` of the server's final `end` event (a [`LogsEnd`]).
fn end_error(data: &str) -> Option<String> {
    crate::api::parse_json::<LogsEnd>(data)?.error
}

/// The line shown where the server skipped lines for this page.
fn gap_line(skipped: u64) -> LogLine {
    let line = match skipped {
        0 => "[slipway: some lines were skipped: this page read too slowly]".to_owned(),
        n => format!("[slipway: {n} lines skipped: this page read too slowly]"),
    };
    LogLine {
        stream: LogStream::Stderr,
        line,
    }
}

/// A `data:` payload as a line; anything that is not a `LogLine` is shown as is.
fn parse_line(data: &str) -> LogLine {
    crate::api::parse_json(data).unwrap_or_else(|| LogLine {
        stream: LogStream::Stdout,
        line: data.to_owned(),
    })
}

/// Appends, keeping at most `max` lines (oldest dropped).
fn push_capped<T>(v: &mut Vec<T>, item: T, max: usize) {
    v.push(item);
    if v.len() > max {
        let extra = v.len() - max;
        v.drain(..extra);
    }
}

#[component]
pub fn ContainerLogsPage() -> impl IntoView {
    let host_id = use_id_param();
    let cid = crate::router::use_param("cid");
    let cid = Memo::new(move |_| cid.get().unwrap_or_default());
    let host = Fetch::new(move || {
        let id = host_id.get();
        async move {
            match id {
                Some(id) => api::host(id).await.ok(),
                None => None,
            }
        }
    });
    let lines = RwSignal::new(Vec::<(u64, LogLine)>::new());
    let seq = StoredValue::new(0u64);
    let state = RwSignal::new(StreamState::Connecting);
    let follow = RwSignal::new(true);
    let log_ref = NodeRef::<leptos::html::Div>::new();
    let slot = StreamSlot::new();

    let scroll_to_end = move || {
        if follow.get_untracked() {
            request_animation_frame(move || {
                if let Some(el) = log_ref.get_untracked() {
                    el.set_scroll_top(el.scroll_height());
                }
            });
        }
    };
    let connect = move || {
        let (Some(host), c) = (host_id.get_untracked(), cid.get_untracked()) else {
            state.set(StreamState::Ended);
            return;
        };
        lines.set(Vec::new());
        state.set(StreamState::Connecting);
        let url = api::container_logs_url(host, &c, TAIL);
        let stream = EventStream::open(&url, move |source, msg| match msg {
            SseMsg::Open => state.set(StreamState::Live),
            SseMsg::Message(data) => {
                let n = seq.get_value();
                seq.set_value(n + 1);
                lines.update(|l| push_capped(l, (n, parse_line(&data)), MAX_LINES));
                scroll_to_end();
            }
            SseMsg::Lagged(skipped) => {
                let n = seq.get_value();
                seq.set_value(n + 1);
                lines.update(|l| push_capped(l, (n, gap_line(skipped)), MAX_LINES));
            }
            SseMsg::End(data) => {
                source.close();
                state.set(StreamState::Finished(end_error(&data)));
            }
            SseMsg::Error { .. } => {
                // No automatic reconnect: it would replay the tail.
                source.close();
                state.set(StreamState::Ended);
            }
        });
        if stream.is_err() {
            state.set(StreamState::Ended);
        }
        slot.set(stream.ok());
    };
    Effect::new(move || {
        host_id.track();
        cid.track();
        connect();
    });

    let container_name = move || {
        let c = cid.get();
        host.get()
            .flatten()
            .and_then(|h: Host| h.containers.into_iter().find(|x| x.id == c).map(|x| x.name))
            .unwrap_or_else(|| c.chars().take(12).collect())
    };
    let host_link = move || {
        let name = host
            .get()
            .flatten()
            .map(|h| h.name.to_string())
            .unwrap_or_else(|| "host".into());
        let href = host_id
            .get()
            .map(|h| format!("/hosts/{h}"))
            .unwrap_or_default();
        view! { <a href=href>{name}</a> }
    };
    view! {
        <nav class="breadcrumbs">
            <a href="/hosts">"Hosts"</a>
            <span>"/"</span>
            {host_link}
            <span>"/"</span>
            <span>{container_name}</span>
        </nav>
        <div class="page-header">
            <div>
                <h1>"Logs: " <span class="mono" data-test="logs-container">{container_name}</span></h1>
                <p class="muted small" data-test="logs-status" id="logs-status">
                    {move || match state.get() {
                        StreamState::Connecting => "Connecting…".to_owned(),
                        StreamState::Live => "Live: new lines appear as the container prints them.".to_owned(),
                        StreamState::Ended => "The stream broke (the agent went away or the host is unreachable).".to_owned(),
                        StreamState::Finished(None) => "The log stream ended.".to_owned(),
                        StreamState::Finished(Some(e)) => format!("The log stream ended: {e}"),
                    }}
                </p>
            </div>
            <div class="actions">
                <label class="toggle">
                    <input type="checkbox" data-test="logs-follow" id="logs-follow" bind:checked=follow />
                    <span>"Follow"</span>
                </label>
                <button class="btn" data-test="logs-clear" on:click=handler(move |_| lines.set(Vec::new()))>"Clear"</button>
                <Show when=move || matches!(state.get(), StreamState::Ended | StreamState::Finished(_))>
                    <button class="btn btn-primary" data-test="logs-reconnect" on:click=handler(move |_| connect())>"Reconnect"</button>
                </Show>
            </div>
        </div>
        <div
            class="log-view"
            class:log-live=move || state.get() == StreamState::Live
            id="log-view"
            data-test="log-view"
            node_ref=log_ref
        >
            <Show when=move || lines.with(Vec::is_empty)>
                <div class="log-empty muted">"No output yet."</div>
            </Show>
            <For
                each=move || lines.get()
                key=|(n, _)| *n
                children=move |(_, l)| {
                    let stderr = l.stream == LogStream::Stderr;
                    view! {
                        <div
                            class="log-line"
                            class:log-stderr=stderr
                            data-test=if stderr { "log-line-stderr" } else { "log-line" }
                        >
                            {l.line}
                        </div>
                    }
                }
            />
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_and_raw_text_falls_back_to_stdout() {
        let l = parse_line(r#"{"stream":"stderr","line":"boom"}"#);
        assert_eq!(l.stream, LogStream::Stderr);
        assert_eq!(l.line, "boom");
        let raw = parse_line("plain text");
        assert_eq!(raw.stream, LogStream::Stdout);
        assert_eq!(raw.line, "plain text");
    }

    #[test]
    fn the_end_event_names_its_error() {
        assert_eq!(end_error(r#"{"ok":true}"#), None);
        assert_eq!(
            end_error(r#"{"ok":false,"error":"the host is offline"}"#).as_deref(),
            Some("the host is offline")
        );
        assert_eq!(end_error("garbage"), None);
        assert_eq!(
            gap_line(12).line,
            "[slipway: 12 lines skipped: this page read too slowly]"
        );
    }

    #[test]
    fn the_buffer_keeps_the_newest_lines() {
        let mut v = Vec::new();
        for i in 0..5 {
            push_capped(&mut v, i, 3);
        }
        assert_eq!(v, vec![2, 3, 4]);
    }
}
