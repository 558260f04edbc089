//! Badges, loading and error placeholders.
use leptos::prelude::*;
use slipway_types::{api::DeploymentState, ApiErrorBody};

#[component]
pub fn StateBadge(state: DeploymentState) -> impl IntoView {
    let label = state.as_str().replace('_', " ");
    view! {
        <span class=format!("badge badge-{}", state.as_str()) data-test="state-badge">
            {label}
        </span>
    }
}

#[component]
pub fn Loading() -> impl IntoView {
    view! { <div class="loading" aria-busy="true"><span class="spinner"></span>"Loading…"</div> }
}

#[component]
pub fn ErrorBox(error: ApiErrorBody) -> impl IntoView {
    view! {
        <div class="alert alert-error" data-test="load-error">
            <strong>{error.error.as_str().replace('_', " ")}</strong>
            ": "
            {error.message}
        </div>
    }
}

/// `2026-11-23 19:27 UTC`
pub fn fmt_time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

pub fn fmt_opt_time(t: &Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.as_ref().map(fmt_time).unwrap_or_else(|| "—".into())
}
