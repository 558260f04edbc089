//! Router, session context and top navigation.
use crate::components::handler;
use crate::{
    api,
    components::Loading,
    pages::{
        approvals::ApprovalsPage, audit::AuditPage, container_logs::ContainerLogsPage,
        deployment::DeploymentPage, environment::EnvironmentPage, host::HostPage, hosts::HostsPage,
        login::LoginPage, not_found::NotFound, overview::OverviewPage, project::ProjectPage,
        roles::RolesPage, service::ServicePage, setup::SetupPage, tokens::TokensPage,
        users::UsersPage,
    },
};
use leptos::{prelude::*, task::spawn_local};
use leptos_router::{
    components::{Route, Router, Routes},
    hooks::{use_location, use_navigate},
    path, NavigateOptions,
};
use slipway_types::{api::Me, ErrorCode, Role};

/// Who is logged in, shared through context.
#[derive(Clone, Copy)]
pub struct Session {
    pub me: RwSignal<Option<Me>>,
    /// False until the first setup/me check has answered.
    pub ready: RwSignal<bool>,
}

impl Session {
    pub fn role(&self) -> Option<Role> {
        self.me.with(|m| m.as_ref().map(|m| m.role))
    }

    pub fn is_admin(&self) -> bool {
        self.role() == Some(Role::Admin)
    }
}

pub fn use_session() -> Session {
    use_context::<Session>().unwrap_or_else(|| Session {
        me: RwSignal::new(None),
        ready: RwSignal::new(true),
    })
}

#[component]
pub fn App() -> impl IntoView {
    provide_context(Session {
        me: RwSignal::new(None),
        ready: RwSignal::new(false),
    });
    view! {
        <Router>
            <Boot />
            <TopNav />
            <main class="page">
                <Show when=move || use_session().ready.get() fallback=Loading>
                    <Routes fallback=NotFound>
                        <Route path=path!("/setup") view=SetupPage />
                        <Route path=path!("/login") view=LoginPage />
                        <Route path=path!("/") view=OverviewPage />
                        <Route path=path!("/projects/:id") view=ProjectPage />
                        <Route path=path!("/environments/:id") view=EnvironmentPage />
                        <Route path=path!("/services/:id") view=ServicePage />
                        <Route path=path!("/audit") view=AuditPage />
                        <Route path=path!("/approvals") view=ApprovalsPage />
                        <Route path=path!("/deployments/:id") view=DeploymentPage />
                        <Route path=path!("/hosts") view=HostsPage />
                        <Route path=path!("/hosts/:id") view=HostPage />
                        <Route path=path!("/hosts/:id/containers/:cid/logs") view=ContainerLogsPage />
                        <Route path=path!("/tokens") view=TokensPage />
                        <Route path=path!("/users") view=UsersPage />
                        <Route path=path!("/settings/roles") view=RolesPage />
                    </Routes>
                </Show>
            </main>
        </Router>
    }
}

fn current_path() -> String {
    web_sys::window()
        .and_then(|w| w.location().pathname().ok())
        .unwrap_or_default()
}

/// Installs the 401 → /login hook, then checks setup and the session once.
#[component]
fn Boot() -> impl IntoView {
    let session = use_session();
    let navigate = use_navigate();
    let nav = navigate.clone();
    api::on_unauthenticated(move || {
        session.me.set(None);
        let path = current_path();
        if path != "/login" && path != "/setup" {
            nav("/login", NavigateOptions::default());
        }
    });
    spawn_local(async move {
        match api::setup_status().await {
            Ok(s) if s.needs_setup => {
                navigate("/setup", NavigateOptions::default());
            }
            _ => match api::me().await {
                Ok(me) => {
                    session.me.set(Some(me));
                    if matches!(current_path().as_str(), "/login" | "/setup") {
                        navigate("/", NavigateOptions::default());
                    }
                }
                Err(e) if e.error == ErrorCode::Unauthenticated => {}
                Err(_) => {}
            },
        }
        session.ready.set(true);
    });
}

#[component]
fn TopNav() -> impl IntoView {
    let session = use_session();
    let location = use_location();
    let section = move |prefix: &'static str| {
        let p = location.pathname.get();
        if prefix == "/" {
            p == "/"
                || p.starts_with("/projects")
                || p.starts_with("/environments")
                || p.starts_with("/services")
                || p.starts_with("/deployments")
        } else {
            p.starts_with(prefix)
        }
    };
    view! {
        <header class="topbar">
            <div class="topbar-inner">
                <a href="/" class="brand">
                    <span class="brand-mark">"◆"</span>
                    "Slipway"
                </a>
                <Show when=move || session.me.with(Option::is_some)>
                    <nav class="mainnav" data-test="nav">
                        <a href="/" class=move || if section("/") { "active" } else { "" }>
                            "Overview"
                        </a>
                        <Show when=move || session.role().is_some_and(|r| r >= Role::Approver)>
                            <a href="/approvals" class=move || if section("/approvals") { "active" } else { "" }>
                                "Approvals"
                            </a>
                            <a href="/audit" class=move || if section("/audit") { "active" } else { "" }>
                                "Audit log"
                            </a>
                        </Show>
                        <a href="/hosts" class=move || if section("/hosts") { "active" } else { "" }>
                            "Hosts"
                        </a>
                        <Show when=move || session.is_admin()>
                            <a href="/tokens" class=move || if section("/tokens") { "active" } else { "" }>
                                "API tokens"
                            </a>
                            <a href="/users" class=move || if section("/users") { "active" } else { "" }>
                                "Users"
                            </a>
                            <a href="/settings/roles" class=move || if section("/settings") { "active" } else { "" }>
                                "Roles"
                            </a>
                        </Show>
                    </nav>
                </Show>
                <div class="spacer"></div>
                {move || session.me.get().map(|me| view! { <UserMenu me /> })}
            </div>
        </header>
    }
}

/// The avatar menu: who is signed in, log out here or everywhere.
#[component]
fn UserMenu(me: Me) -> impl IntoView {
    let session = use_session();
    let navigate = use_navigate();
    let open = RwSignal::new(false);
    let end = move |everywhere: bool| {
        open.set(false);
        let navigate = navigate.clone();
        spawn_local(async move {
            let _ = if everywhere {
                api::logout_everywhere().await
            } else {
                api::logout().await
            };
            session.me.set(None);
            navigate("/login", NavigateOptions::default());
        });
    };
    let initial = me
        .username
        .chars()
        .next()
        .unwrap_or('?')
        .to_ascii_uppercase()
        .to_string();
    let (name, role) = (me.username.clone(), me.role.as_str());
    view! {
        <div class="usermenu" data-test="user">
            <button
                class="usermenu-trigger"
                data-test="user-menu"
                aria-haspopup="menu"
                aria-expanded=move || open.get().to_string()
                on:click=handler(move |_| open.update(|o| *o = !*o))
            >
                <span class="avatar">{initial}</span>
                <span class="username" data-test="username">{me.username}</span>
                <span class="role-badge">{role}</span>
                <span class="caret" aria-hidden="true">"▾"</span>
            </button>
            {move || {
                let (here, everywhere) = (end.clone(), end.clone());
                open.get()
                    .then(|| {
                        view! {
                            <div class="menu-backdrop" on:click=handler(move |_| open.set(false))></div>
                            <div class="menu" role="menu" data-test="user-menu-items">
                                <div class="menu-head">
                                    <div class="menu-name">{name.clone()}</div>
                                    <div class="muted small">{format!("Signed in as {role}")}</div>
                                </div>
                                <button class="menu-item" role="menuitem" data-test="logout" on:click=handler(move |_| here(false))>
                                    "Log out"
                                </button>
                                <button
                                    class="menu-item"
                                    role="menuitem"
                                    data-test="logout-everywhere"
                                    on:click=handler(move |_| everywhere(true))
                                >
                                    "Log out everywhere"
                                    <span class="menu-hint">"Ends your sessions on every device"</span>
                                </button>
                            </div>
                        }
                    })
            }}
        </div>
    }
}
