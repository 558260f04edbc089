//! Typed-name confirmation in protected environments: deploying, rolling
//! back, promoting into and deleting in one waits until the user has typed
//! the environment's name. (The API on its side refuses deleting what runs
//! there, with `environment_protected`.)
use crate::components::handler;
use leptos::prelude::*;

/// An action waiting for the environment's name.
#[derive(Clone)]
struct Ask {
    env: String,
    what: String,
    action: Callback<()>,
}

/// One page's confirmation slot; shown by [`TypedConfirmDialog`].
#[derive(Clone, Copy)]
pub struct TypedConfirm {
    ask: RwSignal<Option<Ask>>,
    typed: RwSignal<String>,
    /// The page's environment when it is protected.
    protected: StoredValue<Option<String>>,
}

/// Whether `typed` is the environment's name (surrounding spaces ignored).
pub fn names(env: &str, typed: &str) -> bool {
    typed.trim() == env
}

impl TypedConfirm {
    /// For a page about one environment: `Some(name)` when it is protected.
    pub fn new(protected: Option<String>) -> Self {
        Self {
            ask: RwSignal::new(None),
            typed: RwSignal::new(String::new()),
            protected: StoredValue::new(protected),
        }
    }

    /// Whether the page's environment is protected.
    pub fn is_protected(self) -> bool {
        self.protected.with_value(Option::is_some)
    }

    /// Runs `action` now, or after the name is typed when the page's
    /// environment is protected. `what`: "deploy", "delete this service"…
    pub fn run(self, what: &str, action: impl Fn() + Send + Sync + 'static) {
        let env = self.protected.get_value();
        self.run_in(env.as_deref(), what, action);
    }

    /// [`TypedConfirm::run`] for an action in another environment
    /// (`protected`: its name when it is protected).
    pub fn run_in(
        self,
        protected: Option<&str>,
        what: &str,
        action: impl Fn() + Send + Sync + 'static,
    ) {
        match protected {
            None => action(),
            Some(env) => {
                self.typed.set(String::new());
                self.ask.set(Some(Ask {
                    env: env.to_owned(),
                    what: what.to_owned(),
                    action: Callback::new(move |()| action()),
                }));
            }
        }
    }
}

/// The pending confirmation, if any: the name field and the buttons.
#[component]
pub fn TypedConfirmDialog(confirm: TypedConfirm) -> impl IntoView {
    let TypedConfirm { ask, typed, .. } = confirm;
    // Focusing the field also scrolls the dialog into view.
    let input = NodeRef::<leptos::html::Input>::new();
    Effect::new(move || {
        if let Some(el) = input.get() {
            let _ = el.focus();
        }
    });
    move || {
        ask.get().map(|Ask { env, what, action }| {
            let env2 = env.clone();
            let submit = move |ev: leptos::ev::SubmitEvent| {
                ev.prevent_default();
                if names(&env2, &typed.get_untracked()) {
                    ask.set(None);
                    action.run(());
                }
            };
            let env3 = env.clone();
            view! {
                <form class="card form-card confirm-protected" data-test="confirm-protected" on:submit=handler(submit) novalidate>
                    <h2>"Protected environment"</h2>
                    <p>
                        <strong>{env.clone()}</strong>
                        {format!(" is protected. Type its name to {what}.")}
                    </p>
                    <div class="field">
                        <label for="confirm-name">"Environment name"</label>
                        <input id="confirm-name" class="mono" data-test="confirm-name" autocomplete="off" placeholder=env bind:value=typed node_ref=input />
                    </div>
                    <div class="form-actions">
                        <button class="btn btn-danger" type="submit" data-test="confirm-submit" disabled=move || !names(&env3, &typed.get())>
                            {format!("Yes, {what}")}
                        </button>
                        <button class="btn" type="button" data-test="confirm-cancel" on:click=handler(move |_| ask.set(None))>
                            "Cancel"
                        </button>
                    </div>
                </form>
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_name_confirms() {
        assert!(names("production", "production"));
        assert!(names("production", "  production "));
        assert!(!names("production", "Production"));
        assert!(!names("production", "prod"));
        assert!(!names("production", ""));
    }
}
