//! `/users` (admin): local and single sign-on users, their roles and grants,
//! sessions; disable, set a local user's role, grant/revoke roles.
use super::confirm;
use crate::components::handler;
use crate::components::Fetch;
use crate::{
    api,
    components::{
        envs::{EnvSelect, Envs, RoleSelect},
        ui::fmt_time,
        ErrorBox, FormAlert, FormErrors, Loading,
    },
};
use leptos::{prelude::*, task::spawn_local};
use slipway_types::{
    api::{NewRoleGrant, RoleGrant, UpdateUser, User},
    Role,
};
use uuid::Uuid;

#[component]
pub fn UsersPage() -> impl IntoView {
    let version = RwSignal::new(0u32);
    let users = Fetch::new(move || {
        version.track();
        api::users()
    });
    let list = Memo::new(move |_| users.get().and_then(Result::ok).unwrap_or_default());
    let ctx = RowCtx {
        list,
        envs: Envs::load(),
        errors: FormErrors::new(&[]),
        version,
    };
    view! {
        <div class="page-header">
            <div>
                <h1>"Users"</h1>
                <p class="muted">
                    "Everyone who can sign in. Single sign-on users appear after their first login; "
                    "their roles come from the " <a href="/settings/roles">"role mappings"</a> "."
                </p>
            </div>
        </div>
        <FormAlert errors=ctx.errors />
        <section class="card">
            {move || match users.get() {
                None => view! { <Loading /> }.into_any(),
                Some(Err(e)) => view! { <ErrorBox error=e /> }.into_any(),
                Some(Ok(_)) => view! { <UsersTable ctx /> }.into_any(),
            }}
        </section>
    }
}

/// What every row needs: the list it reads itself from, environment names,
/// where to report errors and how to reload.
#[derive(Clone, Copy)]
struct RowCtx {
    list: Memo<Vec<User>>,
    envs: Envs,
    errors: FormErrors,
    version: RwSignal<u32>,
}

impl RowCtx {
    fn refresh(&self) {
        self.version.update(|v| *v += 1);
    }

    /// Runs a call; on success reloads the list, else shows the error.
    fn act<F>(self, call: F)
    where
        F: std::future::Future<Output = api::ApiResult<()>> + 'static,
    {
        self.errors.clear();
        spawn_local(async move {
            match call.await {
                Ok(()) => self.refresh(),
                Err(e) => self.errors.set(e),
            }
        });
    }
}

#[component]
fn UsersTable(ctx: RowCtx) -> impl IntoView {
    view! {
        <table class="table users-table" data-test="users">
            <thead>
                <tr>
                    <th>"User"</th>
                    <th>"Source"</th>
                    <th>"Role"</th>
                    <th>"Grants"</th>
                    <th>"Activity"</th>
                    <th></th>
                </tr>
            </thead>
            <tbody>
                <For each=move || ctx.list.get() key=|u| u.id let:u>
                    <UserRow initial=u ctx />
                </For>
            </tbody>
        </table>
    }
}

/// One user; reads its current state from the list by id, so a reload
/// updates the row in place.
#[component]
fn UserRow(initial: User, ctx: RowCtx) -> impl IntoView {
    let id = initial.id;
    let username = initial.username.clone();
    let user = Memo::new(move |_| {
        ctx.list
            .with(|l| l.iter().find(|u| u.id == id).cloned())
            .unwrap_or_else(|| initial.clone())
    });
    let disabled = move || user.with(|u| u.disabled);
    let toggle = move |_| {
        let now = !disabled();
        if now && !confirm("Disable this user? Their sessions end and they cannot sign in.") {
            return;
        }
        let body = UpdateUser {
            disabled: Some(now),
            role: None,
        };
        ctx.act(async move { api::update_user(id, &body).await.map(drop) });
    };
    let end_sessions = move |_| {
        if confirm("End every session of this user? They will have to sign in again.") {
            ctx.act(api::end_sessions(id));
        }
    };
    view! {
        <tr data-test=format!("user-row-{username}") class:revoked=disabled>
            <td>
                <UserCell user />
            </td>
            <td data-test="user-source">
                <SourceCell source=user.with_untracked(|u| u.source.clone()) />
            </td>
            <td>
                <RoleCell user ctx />
            </td>
            <td class="grants-cell">
                <GrantsCell user ctx />
            </td>
            <td class="activity" data-test="user-sessions">
                <div>
                    {move || match user.with(|u| u.active_sessions) {
                        0 => "No sessions".to_owned(),
                        1 => "1 active session".to_owned(),
                        n => format!("{n} active sessions"),
                    }}
                </div>
                <div class="muted small">
                    {move || user.with(|u| match &u.last_login_at {
                        Some(t) => format!("Last sign-in {}", fmt_time(t)),
                        None => "Never signed in".to_owned(),
                    })}
                </div>
            </td>
            <td class="right">
                <div class="row-actions">
                    <button
                        class="btn btn-ghost btn-sm"
                        data-test="end-sessions"
                        disabled=move || user.with(|u| u.active_sessions == 0)
                        on:click=handler(end_sessions)
                    >
                        "End sessions"
                    </button>
                    <button class="btn btn-sm" class:btn-danger=move || !disabled() data-test="toggle-user" on:click=handler(toggle)>
                        {move || if disabled() { "Enable" } else { "Disable" }}
                    </button>
                </div>
            </td>
        </tr>
    }
}

#[component]
fn UserCell(user: Memo<User>) -> impl IntoView {
    move || {
        user.with(|u| {
            let title = u.display_name.clone().unwrap_or_else(|| u.username.clone());
            let initial = title.chars().next().unwrap_or('?').to_ascii_uppercase().to_string();
            let sub = match &u.email {
                Some(e) if *e != u.username => format!("{} · {e}", u.username),
                _ => u.username.clone(),
            };
            view! {
                <div class="user-cell">
                    <span class="avatar avatar-light">{initial}</span>
                    <div>
                        <div class="user-title">
                            {title}
                            {u.disabled.then(|| view! { <span class="badge badge-cancelled">"disabled"</span> })}
                        </div>
                        <div class="muted small">{sub}</div>
                    </div>
                </div>
            }
        })
    }
}

#[component]
fn SourceCell(source: String) -> impl IntoView {
    if source == "local" {
        view! { <span class="badge badge-none">"local account"</span> }.into_any()
    } else {
        view! {
            <div class="source-sso">
                <span class="tag tag-sso">"SSO"</span>
                <span class="mono small muted" title=source.clone()>{source.clone()}</span>
            </div>
        }
        .into_any()
    }
}

/// Local users: a role picker. SSO users: their mapped role, read-only.
#[component]
fn RoleCell(user: Memo<User>, ctx: RowCtx) -> impl IntoView {
    let (id, local) = user.with_untracked(|u| (u.id, u.source == "local"));
    if !local {
        return view! { <span class="role-badge">{move || user.with(|u| u.role.as_str())}</span> }
            .into_any();
    }
    let role = RwSignal::new(user.with_untracked(|u| u.role));
    Effect::new(move |_| role.set(user.with(|u| u.role)));
    let pick = Callback::new(move |r: Role| {
        let body = UpdateUser {
            disabled: None,
            role: Some(r),
        };
        ctx.act(async move { api::update_user(id, &body).await.map(drop) });
    });
    view! {
        <div class="compact-select">
            <RoleSelect value=role on_pick=pick />
        </div>
    }
    .into_any()
}

#[component]
fn GrantsCell(user: Memo<User>, ctx: RowCtx) -> impl IntoView {
    let id = user.with_untracked(|u| u.id);
    let adding = RwSignal::new(false);
    view! {
        <div class="chips">
            <For each=move || user.with(|u| u.grants.clone()) key=|g| g.id let:g>
                <GrantChip user=id grant=g ctx />
            </For>
            <Show when=move || !adding.get()>
                <button class="chip chip-add" data-test="add-grant" on:click=handler(move |_| adding.set(true))>
                    "+ Grant"
                </button>
            </Show>
        </div>
        <Show when=move || adding.get()>
            <GrantForm user=id ctx on_close=move || adding.set(false) />
        </Show>
    }
}

#[component]
fn GrantChip(user: Uuid, grant: RoleGrant, ctx: RowCtx) -> impl IntoView {
    let gid = grant.id;
    let from_sso = grant.source == "oidc";
    let scope = move || ctx.envs.name(grant.environment_id);
    let remove = move |_| {
        if confirm("Remove this grant?") {
            ctx.act(api::remove_grant(user, gid));
        }
    };
    let title = if from_sso {
        "From the role mappings; recomputed at each sign-in"
    } else {
        "Granted by an administrator"
    };
    view! {
        <span class="chip" title=title data-test="grant">
            <strong>{grant.role.as_str()}</strong>
            <span class="chip-scope">{scope}</span>
            <span class=if from_sso { "tag tag-sso" } else { "tag" }>{if from_sso { "SSO" } else { "manual" }}</span>
            <button class="chip-x" aria-label="Remove grant" data-test="remove-grant" on:click=handler(remove)>"×"</button>
        </span>
    }
}

#[component]
fn GrantForm(user: Uuid, ctx: RowCtx, on_close: impl Fn() + Copy + 'static) -> impl IntoView {
    let role = RwSignal::new(Role::Deployer);
    let environment = RwSignal::new(None::<Uuid>);
    let errors = FormErrors::new(&[]);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        errors.clear();
        let body = NewRoleGrant {
            role: role.get_untracked(),
            environment_id: environment.get_untracked(),
        };
        spawn_local(async move {
            match api::add_grant(user, &body).await {
                Ok(_) => {
                    on_close();
                    ctx.refresh();
                }
                Err(e) => errors.set(e),
            }
        });
    };
    view! {
        <form class="grant-form" on:submit=handler(submit) data-test="grant-form">
            <FormAlert errors />
            <RoleSelect value=role />
            <EnvSelect envs=ctx.envs value=environment />
            <button class="btn btn-primary btn-sm" type="submit" data-test="grant-submit">"Grant"</button>
            <button class="btn btn-ghost btn-sm" type="button" on:click=handler(move |_| on_close())>"Cancel"</button>
        </form>
    }
}
