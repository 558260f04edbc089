//! `/setup`: create the first admin account.
use crate::components::handler;
use crate::router::navigate;
use crate::{
    api::{self, invalid},
    app::use_session,
    components::{FieldError, FormAlert, FormErrors},
};
use leptos::{prelude::*, task::spawn_local};
use slipway_types::api::{validate_password, validate_username, SetupRequest};

#[component]
pub fn SetupPage() -> impl IntoView {
    let session = use_session();
    let username = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let confirm = RwSignal::new(String::new());
    let errors = FormErrors::new(&["username", "password", "confirm"]);
    let busy = RwSignal::new(false);

    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        errors.clear();
        let req = SetupRequest {
            username: username.get_untracked().trim().to_owned(),
            password: password.get_untracked(),
        };
        let checked = validate_username(&req.username)
            .and_then(|_| validate_password(&req.password))
            .map_err(|e| invalid(&e.field, e.message));
        if let Err(e) = checked {
            errors.set(e);
            return;
        }
        if confirm.get_untracked() != req.password {
            errors.set(invalid("confirm", "the two passwords differ"));
            return;
        }
        busy.set(true);
        spawn_local(async move {
            match api::setup(&req).await {
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
        <div class="auth-card card">
            <h1>"Welcome to Slipway"</h1>
            <p class="muted">"Create the first administrator account to get started."</p>
            <form on:submit=handler(submit) data-test="setup-form" novalidate>
                <FormAlert errors />
                <div class="field">
                    <label for="setup-username">"Username"</label>
                    <input id="setup-username" name="username" autocomplete="username" bind:value=username />
                    <FieldError errors field="username" />
                </div>
                <div class="field">
                    <label for="setup-password">"Password"</label>
                    <input
                        id="setup-password"
                        name="password"
                        type="password"
                        autocomplete="new-password"
                        bind:value=password
                    />
                    <p class="hint">"At least 12 characters."</p>
                    <FieldError errors field="password" />
                </div>
                <div class="field">
                    <label for="setup-confirm">"Confirm password"</label>
                    <input
                        id="setup-confirm"
                        name="confirm"
                        type="password"
                        autocomplete="new-password"
                        bind:value=confirm
                    />
                    <FieldError errors field="confirm" />
                </div>
                <button class="btn btn-primary btn-block" type="submit" data-test="setup-submit" disabled=move || busy.get()>
                    "Create admin account"
                </button>
            </form>
        </div>
    }
}
