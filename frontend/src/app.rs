//! Router, session context and top navigation.
use crate::{
    api,
    components::Loading,
    pages::{
        audit::AuditPage, environment::EnvironmentPage, hosts::HostsPage, login::LoginPage,
        not_found::NotFound, overview::OverviewPage, project::ProjectPage, service::ServicePage,
        setup::SetupPage, tokens::TokensPage,
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
                        <Route path=path!("/hosts") view=HostsPage />
                        <Route path=path!("/tokens") view=TokensPage />
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
    let navigate = use_navigate();
    let location = use_location();
    let logout = move |_| {
        let navigate = navigate.clone();
        spawn_local(async move {
            let _ = api::logout().await;
            session.me.set(None);
            navigate("/login", NavigateOptions::default());
        });
    };
    let section = move |prefix: &'static str| {
        let p = location.pathname.get();
        if prefix == "/" {
            p == "/"
                || p.starts_with("/projects")
                || p.starts_with("/environments")
                || p.starts_with("/services")
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
                        </Show>
                    </nav>
                </Show>
                <div class="spacer"></div>
                {move || {
                    session
                        .me
                        .get()
                        .map(|me| {
                            view! {
                                <div class="userbox" data-test="user">
                                    <span class="avatar">
                                        {me.username.chars().next().unwrap_or('?').to_ascii_uppercase().to_string()}
                                    </span>
                                    <span class="username" data-test="username">{me.username.clone()}</span>
                                    <span class="role-badge">{me.role.as_str()}</span>
                                    <button class="btn btn-ghost btn-sm" data-test="logout" on:click=logout.clone()>
                                        "Log out"
                                    </button>
                                </div>
                            }
                        })
                }}
            </div>
        </header>
    }
}
