//! [`handler`]: event handlers as one type per event.
//!
//! `on:click=move |_| …` gives every handler its own closure type, and the
//! event-listener code (attach, detach, share into the element's attribute
//! list) is compiled once per closure. Wrapped in [`handler`], every click
//! handler is the same `Box<dyn FnMut(MouseEvent)>` and that code is compiled
//! once per event type.

/// Type-erases an event handler: `on:click=handler(move |_| …)`.
pub fn handler<E: 'static>(f: impl FnMut(E) + 'static) -> Box<dyn FnMut(E)> {
    Box::new(f)
}
