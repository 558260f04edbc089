//! `/tokens`: API tokens for CI and scripts. The secret is shown once.
use super::confirm;
use crate::components::handler;
use crate::components::Fetch;
use crate::{
    api::{self, invalid},
    components::{
        envs::{Envs, RoleSelect},
        ui::fmt_opt_time,
        ui::fmt_time,
        ErrorBox, FieldError, FormAlert, FormErrors, Loading,
    },
};
use leptos::{prelude::*, task::spawn_local};
use slipway_types::{
    api::{ApiToken, CreateToken, TokenAction},
    Role,
};
use uuid::Uuid;

#[component]
pub fn TokensPage() -> impl IntoView {
    let version = RwSignal::new(0u32);
    let tokens = Fetch::new(move || {
        version.track();
        api::tokens()
    });
    let envs = Envs::load();
    let created = RwSignal::new(None::<String>);
    let refresh = move || version.update(|v| *v += 1);
    view! {
        <div class="page-header">
            <div>
                <h1>"API tokens"</h1>
                <p class="muted">"Tokens authenticate CI pipelines and scripts: " <code>"Authorization: Bearer slp_…"</code></p>
            </div>
        </div>
        {move || created.get().map(|secret| view! { <SecretOnce secret on_close=move || created.set(None) /> })}
        <NewTokenForm envs on_created=move |s| {
            created.set(Some(s));
            refresh();
        } />
        <section class="card">
            {move || match tokens.get() {
                None => view! { <Loading /> }.into_any(),
                Some(Err(e)) => view! { <ErrorBox error=e /> }.into_any(),
                Some(Ok(t)) if t.is_empty() => view! { <p class="muted card-body">"No tokens yet."</p> }.into_any(),
                Some(Ok(t)) => view! { <TokensTable tokens=t envs refresh /> }.into_any(),
            }}
        </section>
    }
}

#[component]
fn SecretOnce(secret: String, on_close: impl Fn() + Copy + 'static) -> impl IntoView {
    let copied = RwSignal::new(false);
    let s2 = secret.clone();
    let copy = move |_| {
        if let Some(w) = web_sys::window() {
            let _ = w.navigator().clipboard().write_text(&s2);
            copied.set(true);
        }
    };
    view! {
        <div class="card secret-once" data-test="token-secret">
            <div>
                <strong>"Copy your new token now."</strong>
                " It will not be shown again."
            </div>
            <div class="secret-row">
                <code class="secret" data-test="token-secret-value">{secret}</code>
                <button class="btn btn-sm" on:click=handler(copy) data-test="copy-token">
                    {move || if copied.get() { "Copied" } else { "Copy" }}
                </button>
                <button class="btn btn-ghost btn-sm" on:click=handler(move |_| on_close())>"Done"</button>
            </div>
        </div>
    }
}

#[component]
fn NewTokenForm(envs: Envs, on_created: impl Fn(String) + Copy + 'static) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let role = RwSignal::new(Role::Deployer);
    let chosen = RwSignal::new(Vec::<Uuid>::new());
    let actions = RwSignal::new(Vec::<TokenAction>::new());
    let days = RwSignal::new("90".to_owned());
    let errors = FormErrors::new(&["name", "role", "expires_in_days"]);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        errors.clear();
        let n = name.get_untracked().trim().to_owned();
        if n.is_empty() || n.len() > 64 {
            errors.set(invalid("name", "give the token a name (1–64 characters)"));
            return;
        }
        let expires_in_days = match days.get_untracked().trim() {
            "" => None,
            d => match d.parse::<u32>() {
                Ok(d) if d > 0 => Some(d),
                _ => {
                    errors.set(invalid(
                        "expires_in_days",
                        "a whole number of days, or empty for never",
                    ));
                    return;
                }
            },
        };
        let body = CreateToken {
            name: n,
            role: role.get_untracked(),
            environments: chosen.get_untracked(),
            expires_in_days,
            actions: actions.get_untracked(),
        };
        spawn_local(async move {
            match api::create_token(&body).await {
                Ok(t) => {
                    name.set(String::new());
                    chosen.set(Vec::new());
                    on_created(t.secret);
                }
                Err(e) => errors.set(e),
            }
        });
    };
    view! {
        <form class="card inline-form card-body" on:submit=handler(submit) data-test="token-form" novalidate>
            <FormAlert errors />
            <div class="form-row">
                <div class="field grow">
                    <label for="token-name">"Name"</label>
                    <input id="token-name" name="name" placeholder="github-actions" bind:value=name />
                    <FieldError errors field="name" />
                </div>
                <div class="field">
                    <label for="token-role">"Role"</label>
                    <RoleSelect id="token-role" value=role />
                </div>
                <div class="field">
                    <label for="token-days">"Expires in (days)"</label>
                    <input id="token-days" name="expires_in_days" placeholder="never" bind:value=days />
                    <FieldError errors field="expires_in_days" />
                </div>
                <button class="btn btn-primary align-end" type="submit" data-test="token-submit">"Create token"</button>
            </div>
            <EnvPicker envs chosen />
            <ActionPicker chosen=actions />
        </form>
    }
}

/// Toggle chips: the environments a token's role is limited to.
#[component]
fn EnvPicker(envs: Envs, chosen: RwSignal<Vec<Uuid>>) -> impl IntoView {
    let toggle = move |id: Uuid| {
        chosen.update(|c| {
            if let Some(i) = c.iter().position(|x| *x == id) {
                c.remove(i);
            } else {
                c.push(id);
            }
        })
    };
    view! {
        <div class="field env-picker">
            <label>"Limit to environments"</label>
            <div class="chips" data-test="token-envs">
                <For
                    each=move || envs.list()
                    key=|c| c.id
                    children=move |c| {
                        let id = c.id;
                        let test = format!("token-env-{}", c.label);
                        let on = move || chosen.with(|l| l.contains(&id));
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
            <p class="hint">
                {move || if chosen.with(Vec::is_empty) {
                    "None chosen: the role applies in every environment."
                } else {
                    "The role applies in the chosen environments; the token is read-only elsewhere."
                }}
            </p>
        </div>
    }
}

/// Toggle chips: the kinds of change a token is limited to.
#[component]
fn ActionPicker(chosen: RwSignal<Vec<TokenAction>>) -> impl IntoView {
    let toggle = move |a: TokenAction| {
        chosen.update(|c| {
            if let Some(i) = c.iter().position(|x| *x == a) {
                c.remove(i);
            } else {
                c.push(a);
            }
        })
    };
    view! {
        <div class="field env-picker">
            <label>"Limit to actions"</label>
            <div class="chips" data-test="token-actions">
                {TokenAction::ALL
                    .into_iter()
                    .map(|a| {
                        let on = move || chosen.with(|l| l.contains(&a));
                        view! {
                            <button
                                type="button"
                                class="chip chip-toggle"
                                class:on=on
                                aria-pressed=move || on().to_string()
                                data-test=format!("token-action-{}", a.as_str())
                                on:click=handler(move |_| toggle(a))
                            >
                                {a.as_str()}
                            </button>
                        }
                    })
                    .collect::<Vec<_>>()}
            </div>
            <p class="hint">
                {move || if chosen.with(Vec::is_empty) {
                    "None chosen: every change its role allows (reads are always allowed)."
                } else {
                    "Only these kinds of change; reads are always allowed."
                }}
            </p>
        </div>
    }
}

#[component]
fn TokensTable(
    envs: Envs,
    tokens: Vec<ApiToken>,
    refresh: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    view! {
        <table class="table" data-test="tokens">
            <thead>
                <tr>
                    <th>"Name"</th>
                    <th>"Role"</th>
                    <th>"Environments"</th>
                    <th>"Created"</th>
                    <th>"Expires"</th>
                    <th>"Last used"</th>
                    <th></th>
                </tr>
            </thead>
            <tbody>
                {tokens
                    .into_iter()
                    .map(|t| {
                        let id = t.id;
                        let revoked = t.revoked_at.is_some();
                        let revoke = move |_| {
                            if confirm("Revoke this token? Anything using it stops working.") {
                                spawn_local(async move {
                                    if api::revoke_token(id).await.is_ok() {
                                        refresh();
                                    }
                                });
                            }
                        };
                        view! {
                            <tr data-test=format!("token-row-{}", t.name) class:revoked=revoked>
                                <td>{t.name.clone()}</td>
                                <td>
                                    <span class="role-badge">{t.role.as_str()}</span>
                                    {(!t.actions.is_empty()).then(|| {
                                        let only = t.actions.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", ");
                                        view! { <span class="muted small">" only " {only}</span> }
                                    })}
                                </td>
                                <td data-test="token-scope">
                                    {if t.environments.is_empty() {
                                        view! { <span class="muted">"All"</span> }.into_any()
                                    } else {
                                        let ids = t.environments.clone();
                                        view! {
                                            <div class="chips">
                                                {ids
                                                    .into_iter()
                                                    .map(|e| view! { <span class="chip">{move || envs.name(Some(e))}</span> })
                                                    .collect_view()}
                                            </div>
                                        }
                                            .into_any()
                                    }}
                                </td>
                                <td class="muted small">{format!("{} by {}", fmt_time(&t.created_at), t.created_by)}</td>
                                <td class="muted small">{fmt_opt_time(&t.expires_at)}</td>
                                <td class="muted small">{fmt_opt_time(&t.last_used_at)}</td>
                                <td class="right">
                                    {if revoked {
                                        view! { <span class="badge badge-cancelled">"revoked"</span> }.into_any()
                                    } else {
                                        view! {
                                            <button class="btn btn-ghost btn-sm" data-test="revoke-token" on:click=handler(revoke)>
                                                "Revoke"
                                            </button>
                                        }
                                            .into_any()
                                    }}
                                </td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
}
