//! One file per page.
pub mod approvals;
pub mod audit;
pub mod container_logs;
pub mod deployment;
pub mod environment;
pub mod host;
pub mod hosts;
pub mod login;
pub mod not_found;
pub mod overview;
pub mod project;
pub mod roles;
pub mod service;
pub mod setup;
pub mod tokens;
pub mod users;

use leptos::prelude::*;
use uuid::Uuid;

/// The `:id` of the current route, if it is a UUID.
pub fn use_id_param() -> Memo<Option<Uuid>> {
    let id = crate::router::use_param("id");
    Memo::new(move |_| id.with(|s| s.as_deref().and_then(|s| Uuid::parse_str(s).ok())))
}

/// Asks the browser for a yes/no confirmation.
pub fn confirm(message: &str) -> bool {
    web_sys::window()
        .and_then(|w| w.confirm_with_message(message).ok())
        .unwrap_or(false)
}
