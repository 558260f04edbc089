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
    router::{self, navigate, Page},
};
use leptos::{prelude::*, task::spawn_local};
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
    router::install();
    view! {
        <Boot />
        <TopNav />
        <main class="page">
            <Show when=move || use_session().ready.get() fallback=Loading>
                {router::routes(ROUTES, || view! { <NotFound /> }.into_any())}
            </Show>
        </main>
    }
}

/// The pages, by path (`:name` is a parameter, see [`router::use_param`]).
const ROUTES: &[(&str, Page)] = &[
    ("/setup", || view! { <SetupPage /> }.into_any()),
    ("/login", || view! { <LoginPage /> }.into_any()),
    ("/", || view! { <OverviewPage /> }.into_any()),
    ("/projects/:id", || view! { <ProjectPage /> }.into_any()),
    ("/environments/:id", || {
        view! { <EnvironmentPage /> }.into_any()
    }),
    ("/services/:id", || view! { <ServicePage /> }.into_any()),
    ("/audit", || view! { <AuditPage /> }.into_any()),
    ("/approvals", || view! { <ApprovalsPage /> }.into_any()),
    ("/deployments/:id", || {
        view! { <DeploymentPage /> }.into_any()
    }),
    ("/hosts", || view! { <HostsPage /> }.into_any()),
    ("/hosts/:id", || view! { <HostPage /> }.into_any()),
    ("/hosts/:id/containers/:cid/logs", || {
        view! { <ContainerLogsPage /> }.into_any()
    }),
    ("/tokens", || view! { <TokensPage /> }.into_any()),
    ("/users", || view! { <UsersPage /> }.into_any()),
    ("/settings/roles", || view! { <RolesPage /> }.into_any()),
];

/// Installs the 401 → /login hook, then checks setup and the session once.
#[component]
fn Boot() -> impl IntoView {
    let session = use_session();
    api::on_unauthenticated(move || {
        session.me.set(None);
        let path = router::current_path();
        if path != "/login" && path != "/setup" {
            navigate("/login");
        }
    });
    spawn_local(async move {
        match api::setup_status().await {
            Ok(s) if s.needs_setup => {
                navigate("/setup");
            }
            _ => match api::me().await {
                Ok(me) => {
                    session.me.set(Some(me));
                    if matches!(router::current_path().as_str(), "/login" | "/setup") {
                        navigate("/");
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
    let section = move |prefix: &'static str| {
        let p = router::path();
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
    let open = RwSignal::new(false);
    let end = move |everywhere: bool| {
        open.set(false);
        spawn_local(async move {
            let _ = if everywhere {
                api::logout_everywhere().await
            } else {
                api::logout().await
            };
            session.me.set(None);
            navigate("/login");
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
                open.get()
                    .then(|| {
                        view! {
                            <div class="menu-backdrop" on:click=handler(move |_| open.set(false))></div>
                            <div class="menu" role="menu" data-test="user-menu-items">
                                <div class="menu-head">
                                    <div class="menu-name">{name.clone()}</div>
                                    <div class="muted small">{format!("Signed in as {role}")}</div>
                                </div>
                                <button class="menu-item" role="menuitem" data-test="logout" on:click=handler(move |_| end(false))>
                                    "Log out"
                                </button>
                                <button
                                    class="menu-item"
                                    role="menuitem"
                                    data-test="logout-everywhere"
                                    on:click=handler(move |_| end(true))
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
