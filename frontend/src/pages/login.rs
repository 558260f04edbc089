//! `/login`: single sign-on buttons and/or the local password form, and the
//! reason an SSO login came back with (`/login?error=<reason>`).
use crate::components::handler;
use crate::components::Fetch;
use crate::router::{self, navigate};
use crate::{
    api,
    app::use_session,
    components::{FieldError, FormAlert, FormErrors},
};
use leptos::{prelude::*, task::spawn_local};
use slipway_types::api::{AuthProvider, LoginRequest};

/// What to tell the user for each `error` the OIDC callback redirects with.
pub fn sso_error_message(reason: &str) -> String {
    match reason {
        "no_role" => "Your account has no access to Slipway yet: none of your groups is mapped to a role. Ask an administrator to grant you access.",
        "account_disabled" => "Your Slipway account is disabled. Ask an administrator to enable it.",
        "invalid_state" => "The sign-in attempt expired or was started in another tab. Please try again.",
        "invalid_id_token" => "The identity provider's answer could not be verified, so you were not signed in. Please try again; if it keeps failing, tell your administrator.",
        "provider_unavailable" => "The identity provider could not be reached. Try again in a moment.",
        "code_exchange_failed" => "The identity provider did not accept Slipway's sign-in request. Please try again; if it keeps failing, tell your administrator.",
        "provider_error" => "The identity provider refused the sign-in.",
        "unknown_provider" => "This sign-in method is not configured on this Slipway.",
        "invalid_callback" => "The sign-in response from the identity provider was incomplete. Please start again.",
        other => return format!("Single sign-on failed ({other}). Please try again."),
    }
    .to_owned()
}

#[component]
pub fn LoginPage() -> impl IntoView {
    let sso_error = move || router::query_param("error").map(|r| sso_error_message(&r));
    let options = Fetch::new(api::login_options);
    // Until the options answer, assume local login (the common case).
    let local = move || options.get().and_then(Result::ok).is_none_or(|o| o.local);
    let providers = move || {
        options
            .get()
            .and_then(Result::ok)
            .map(|o| o.providers)
            .unwrap_or_default()
    };
    let has_providers = move || !providers().is_empty();
    let nothing = move || {
        options
            .get()
            .and_then(Result::ok)
            .is_some_and(|o| !o.local && o.providers.is_empty())
    };

    view! {
        <div class="auth-card card">
            <h1>"Sign in"</h1>
            <p class="muted">"Sign in to your Slipway control plane."</p>
            {move || sso_error().map(|m| view! { <div class="alert alert-error" data-test="sso-error">{m}</div> })}
            <Show when=has_providers>
                <div class="sso-buttons" data-test="sso-providers">
                    <For each=providers key=|p| p.id.clone() let:p>
                        <ProviderButton p />
                    </For>
                </div>
            </Show>
            <Show when=move || has_providers() && local()>
                <div class="divider"><span>"or with your password"</span></div>
            </Show>
            <Show when=local>
                <PasswordForm />
            </Show>
            <Show when=nothing>
                <p class="muted" data-test="no-login-method">"No sign-in method is enabled. Ask your administrator."</p>
            </Show>
        </div>
    }
}

/// A plain navigation: the server redirects to the provider and back.
#[component]
fn ProviderButton(p: AuthProvider) -> impl IntoView {
    view! {
        <a class="btn btn-sso btn-block" href=p.login_url rel="external" data-test=format!("sso-{}", p.id)>
            <span class="sso-mark" aria-hidden="true">{p.name.chars().next().unwrap_or('?').to_string()}</span>
            {format!("Sign in with {}", p.name)}
        </a>
    }
}

#[component]
fn PasswordForm() -> impl IntoView {
    let session = use_session();
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
        spawn_local(async move {
            match api::login(&req).await {
                Ok(me) => {
                    session.me.set(Some(me));
                    navigate("/");
                }
                Err(e) => errors.set(e),
            }
            busy.set(false);
        });
    };

    view! {
        <form on:submit=handler(submit) data-test="login-form" novalidate>
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
    }
}
