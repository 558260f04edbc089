//! `/login`.
use crate::{
    api,
    app::use_session,
    components::{FieldError, FormAlert, FormErrors},
};
use leptos::{prelude::*, task::spawn_local};
use leptos_router::{hooks::use_navigate, NavigateOptions};
use slipway_types::api::LoginRequest;

#[component]
pub fn LoginPage() -> impl IntoView {
    let session = use_session();
    let navigate = use_navigate();
    let username = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let errors = FormErrors::new(&["username", "password"]);
    let busy = RwSignal::new(false);

    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        errors.clear();
        let req = LoginRequest {
            username: username.get_untracked().trim().to_owned(),
            password: password.get_untracked(),
        };
        if req.username.is_empty() {
            errors.set(api::invalid("username", "enter your username"));
            return;
        }
        if req.password.is_empty() {
            errors.set(api::invalid("password", "enter your password"));
            return;
        }
        busy.set(true);
        let navigate = navigate.clone();
        spawn_local(async move {
            match api::login(&req).await {
                Ok(me) => {
                    session.me.set(Some(me));
                    navigate("/", NavigateOptions::default());
                }
                Err(e) => errors.set(e),
            }
            busy.set(false);
        });
    };

    view! {
        <div class="auth-card card">
            <h1>"Sign in"</h1>
            <p class="muted">"Sign in to your Slipway control plane."</p>
            <form on:submit=submit data-test="login-form" novalidate>
                <FormAlert errors />
                <div class="field">
                    <label for="login-username">"Username"</label>
                    <input id="login-username" name="username" autocomplete="username" bind:value=username />
                    <FieldError errors field="username" />
                </div>
                <div class="field">
                    <label for="login-password">"Password"</label>
                    <input
                        id="login-password"
                        name="password"
                        type="password"
                        autocomplete="current-password"
                        bind:value=password
                    />
                    <FieldError errors field="password" />
                </div>
                <button class="btn btn-primary btn-block" type="submit" data-test="login-submit" disabled=move || busy.get()>
                    "Sign in"
                </button>
            </form>
        </div>
    }
}
