//! Environments by name (`project / environment`) and the role/environment
//! pickers shared by the users, role-mapping and token pages.
use super::handler;
use crate::api::{self, ApiResult, EnvChoice};
use crate::components::Fetch;
use leptos::prelude::*;
use slipway_types::Role;
use uuid::Uuid;

/// Every environment, loaded once per page, to show names instead of ids.
#[derive(Clone, Copy)]
pub struct Envs(Fetch<ApiResult<Vec<EnvChoice>>>);

impl Envs {
    pub fn load() -> Self {
        Self(Fetch::new(api::environment_choices))
    }

    pub fn list(&self) -> Vec<EnvChoice> {
        self.0.get().and_then(Result::ok).unwrap_or_default()
    }

    /// `shop / staging`; `Everywhere` for none.
    pub fn name(&self, id: Option<Uuid>) -> String {
        let Some(id) = id else {
            return "Everywhere".into();
        };
        self.0
            .with(|r| {
                r.and_then(|r| r.as_ref().ok())
                    .and_then(|l| l.iter().find(|c| c.id == id))
                    .map(|c| c.label.clone())
            })
            .unwrap_or_else(|| format!("environment {}", &id.to_string()[..8]))
    }
}

/// A `<select>` of roles bound to `value`.
#[component]
pub fn RoleSelect(
    #[prop(optional, into)] id: Option<String>,
    value: RwSignal<Role>,
    #[prop(optional)] on_pick: Option<Callback<Role>>,
) -> impl IntoView {
    view! {
        <select
            id=id
            name="role"
            on:change=handler(move |ev| {
                if let Ok(r) = event_target_value(&ev).parse::<Role>() {
                    value.set(r);
                    if let Some(f) = on_pick {
                        f.run(r);
                    }
                }
            })
        >
            {Role::ALL
                .into_iter()
                .map(|r| view! { <option value=r.as_str() selected=move || value.get() == r>{r.as_str()}</option> })
                .collect_view()}
        </select>
    }
}

/// "Everywhere" or one environment, bound to `value`.
#[component]
pub fn EnvSelect(
    #[prop(optional, into)] id: Option<String>,
    envs: Envs,
    value: RwSignal<Option<Uuid>>,
) -> impl IntoView {
    view! {
        <select id=id name="environment" on:change=handler(move |ev| value.set(Uuid::parse_str(&event_target_value(&ev)).ok()))>
            <option value="" selected=move || value.get().is_none()>"Everywhere"</option>
            <For
                each=move || envs.list()
                key=|c| c.id
                children=move |c| {
                    let id = c.id;
                    view! { <option value=id.to_string() selected=move || value.get() == Some(id)>{c.label}</option> }
                }
            />
        </select>
    }
}

/// Toggle chips choosing some environments (`chosen`).
#[component]
pub fn EnvChips(
    envs: Envs,
    chosen: RwSignal<Vec<Uuid>>,
    #[prop(into)] test: String,
) -> impl IntoView {
    let toggle = move |id: Uuid| {
        chosen.update(|c| {
            if let Some(i) = c.iter().position(|x| *x == id) {
                c.remove(i);
            } else {
                c.push(id);
            }
        })
    };
    let prefix = test.clone();
    view! {
        <div class="chips" data-test=test>
            <For
                each=move || envs.list()
                key=|c| c.id
                children=move |c| {
                    let id = c.id;
                    let on = move || chosen.with(|l| l.contains(&id));
                    let test = format!("{prefix}-{}", c.label);
                    view! {
                        <button
                            type="button"
                            class="chip chip-toggle"
                            class:on=on
                            aria-pressed=move || on().to_string()
                            data-test=test
                            on:click=handler(move |_| toggle(id))
                        >
                            {c.label}
                        </button>
                    }
                }
            />
        </div>
    }
}
