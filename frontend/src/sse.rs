//! Server-sent event streams (`text/event-stream`) through the browser's
//! `EventSource`, and the dashboard-wide live events (`GET /api/v1/events`).
//!
//! A stream is closed when its [`EventStream`] is dropped; components keep
//! theirs in a [`StoredValue`] and close it in `on_cleanup`.
use crate::api;
use leptos::prelude::*;
use slipway_types::{
    api::LiveEvent,
    sse::{Lagged, LogsEnd},
    ApiErrorBody,
};
use std::{cell::RefCell, rc::Rc, time::Duration};
use wasm_bindgen::{closure::Closure, JsCast};
use web_sys::{Event, EventSource, MessageEvent};

/// What an open stream reports.
#[derive(Debug, Clone, PartialEq)]
pub enum SseMsg {
    /// Connected (again: the browser reconnects by itself after errors).
    Open,
    /// The `data:` of one event.
    Message(String),
    /// The server skipped this many events for this client (`event:
    /// lagged`, a [`Lagged`]; 0 when it did not say): reload from the API,
    /// or show the gap.
    Lagged(u64),
    /// The server ended the stream on purpose (`event: end`, e.g. the
    /// container's log stream finished); the data says why.
    End(String),
    /// The connection broke. `closed`: the browser gave up (it will not
    /// reconnect, e.g. the server answered an error status).
    Error { closed: bool },
}

/// What a stream calls with each message.
type Handler = dyn FnMut(&EventSource, SseMsg);

/// An open `EventSource`; closed on drop.
pub struct EventStream {
    source: EventSource,
    _on_open: Closure<dyn FnMut(Event)>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_error: Closure<dyn FnMut(Event)>,
    _on_lagged: Closure<dyn FnMut(MessageEvent)>,
    _on_end: Closure<dyn FnMut(MessageEvent)>,
}

impl EventStream {
    /// Opens `url` (same origin, the session cookie goes along). `handler`
    /// gets the `EventSource` too, so it can close the stream itself.
    pub fn open(
        url: &str,
        handler: impl FnMut(&EventSource, SseMsg) + 'static,
    ) -> Result<Self, ApiErrorBody> {
        Self::open_erased(url, Box::new(handler))
    }

    /// [`EventStream::open`] compiled once, not once per handler type.
    #[inline(never)]
    fn open_erased(url: &str, handler: Box<Handler>) -> Result<Self, ApiErrorBody> {
        let source = EventSource::new(url)
            .map_err(|_| api::client_error(format!("could not open the event stream {url}")))?;
        let handler = Rc::new(RefCell::new(handler));
        let dispatch = {
            let source = source.clone();
            move |msg: SseMsg| {
                // A handler that re-enters itself (it cannot, events are
                // queued by the browser) would be skipped, not panic.
                if let Ok(mut h) = handler.try_borrow_mut() {
                    h(&source, msg);
                }
            }
        };
        let d = dispatch.clone();
        let on_open = Closure::<dyn FnMut(Event)>::new(move |_: Event| d(SseMsg::Open));
        let d = dispatch.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
            if let Some(data) = ev.data().as_string() {
                d(SseMsg::Message(data));
            }
        });
        let d = dispatch.clone();
        let on_lagged = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
            d(SseMsg::Lagged(parse_lagged(
                &ev.data().as_string().unwrap_or_default(),
            )))
        });
        let d = dispatch.clone();
        let on_end = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
            d(SseMsg::End(ev.data().as_string().unwrap_or_default()))
        });
        let d = dispatch;
        let watched = source.clone();
        let on_error = Closure::<dyn FnMut(Event)>::new(move |_: Event| {
            d(SseMsg::Error {
                closed: watched.ready_state() == EventSource::CLOSED,
            })
        });
        source.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        source.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        // Named events do not reach `onmessage`.
        let _ = source
            .add_event_listener_with_callback(Lagged::EVENT, on_lagged.as_ref().unchecked_ref());
        let _ = source
            .add_event_listener_with_callback(LogsEnd::EVENT, on_end.as_ref().unchecked_ref());
        Ok(Self {
            source,
            _on_open: on_open,
            _on_message: on_message,
            _on_error: on_error,
            _on_lagged: on_lagged,
            _on_end: on_end,
        })
    }

    pub fn close(&self) {
        self.source.close();
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.source.set_onopen(None);
        self.source.set_onmessage(None);
        self.source.set_onerror(None);
        let _ = self.source.remove_event_listener_with_callback(
            Lagged::EVENT,
            self._on_lagged.as_ref().unchecked_ref(),
        );
        let _ = self.source.remove_event_listener_with_callback(
            LogsEnd::EVENT,
            self._on_end.as_ref().unchecked_ref(),
        );
        self.source.close();
    }
}

/// A slot for the stream of a component, closed when the component unmounts.
#[derive(Clone, Copy)]
pub struct StreamSlot(StoredValue<Option<EventStream>, LocalStorage>);

impl StreamSlot {
    pub fn new() -> Self {
        let slot = StoredValue::new_local(None::<EventStream>);
        on_cleanup(move || {
            slot.try_update_value(|s| s.take());
        });
        Self(slot)
    }

    /// Replaces (and so closes) the current stream.
    pub fn set(&self, stream: Option<EventStream>) {
        self.0.try_update_value(|s| *s = stream);
    }

    pub fn close(&self) {
        self.set(None);
    }
}

impl Default for StreamSlot {
    fn default() -> Self {
        Self::new()
    }
}

/// How many events an `event: lagged` says were skipped (0: it did not say).
pub fn parse_lagged(data: &str) -> u64 {
    api::parse_json::<Lagged>(data).map_or(0, |l| l.skipped)
}

/// Parses the `data:` of a live event; anything else is ignored.
pub fn parse_live(data: &str) -> Option<LiveEvent> {
    api::parse_json(data)
}

/// Calls `on_event` for every [`LiveEvent`] while the component is mounted,
/// and with `None` when the server reports missed events (reload then).
/// Returns whether the stream is connected: pages poll while it is not.
pub fn use_live_events(on_event: impl Fn(Option<LiveEvent>) + 'static) -> ReadSignal<bool> {
    live_events(Box::new(on_event))
}

#[inline(never)]
fn live_events(on_event: Box<dyn Fn(Option<LiveEvent>)>) -> ReadSignal<bool> {
    let (connected, set_connected) = signal(false);
    let slot = StreamSlot::new();
    let stream = EventStream::open(&api::events_url(), move |_, msg| match msg {
        SseMsg::Open => set_connected.set(true),
        SseMsg::Message(data) => {
            if let Some(ev) = parse_live(&data) {
                on_event(Some(ev));
            }
        }
        SseMsg::Lagged(_) => on_event(None),
        SseMsg::Error { .. } | SseMsg::End(_) => set_connected.set(false),
    });
    slot.set(stream.ok());
    connected
}

/// Calls `tick` every `period` while `when()` holds; stops on unmount.
pub fn poll_while(period: Duration, when: impl Fn() -> bool + 'static, tick: impl Fn() + 'static) {
    poll_erased(period, Box::new(when), Box::new(tick));
}

#[inline(never)]
fn poll_erased(period: Duration, when: Box<dyn Fn() -> bool>, tick: Box<dyn Fn()>) {
    let handle = set_interval_with_handle(
        move || {
            if when() {
                tick();
            }
        },
        period,
    );
    on_cleanup(move || {
        if let Ok(h) = handle {
            h.clear();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_types::api::{DeploymentState, HostStatus};

    #[test]
    fn live_events_parse_and_junk_is_ignored() {
        let d = parse_live(
            r#"{"type":"deployment","id":"6f0b3f5e-2b1c-4d7e-9a51-0c8a1f3e7b20","service_id":"6f0b3f5e-2b1c-4d7e-9a51-0c8a1f3e7b21","environment_id":"6f0b3f5e-2b1c-4d7e-9a51-0c8a1f3e7b22","state":"running","release_number":3}"#,
        );
        assert!(matches!(
            d,
            Some(LiveEvent::Deployment {
                state: DeploymentState::Running,
                release_number: 3,
                ..
            })
        ));
        let h = parse_live(
            r#"{"type":"host","id":"6f0b3f5e-2b1c-4d7e-9a51-0c8a1f3e7b20","status":"offline"}"#,
        );
        assert!(matches!(
            h,
            Some(LiveEvent::Host {
                status: HostStatus::Offline,
                ..
            })
        ));
        assert_eq!(parse_live("ping"), None);
        assert_eq!(parse_lagged(r#"{"skipped":42}"#), 42);
        assert_eq!(parse_lagged("{}"), 0);
        assert_eq!(parse_live(r#"{"type":"nope"}"#), None);
    }
}
