//! `/settings/roles` (admin): claim → role mapping rules for single sign-on,
//! and "Test these claims" to see what a user would get.
use super::confirm;
use crate::components::handler;
use crate::components::Fetch;
use crate::{
    api::{self, invalid},
    components::{
        envs::{EnvSelect, Envs, RoleSelect},
        ui::fmt_time,
        ErrorBox, FieldError, FormAlert, FormErrors, Loading,
    },
};
use leptos::{prelude::*, task::spawn_local};
use slipway_types::{
    api::{ClaimsPreview, NewRoleMapping, RoleMapping, Validate},
    Role,
};
use uuid::Uuid;

const EXAMPLE_CLAIMS: &str = "{\n  \"groups\": [\"eng\", \"payments-oncall\"]\n}";

#[component]
pub fn RolesPage() -> impl IntoView {
    let version = RwSignal::new(0u32);
    let mappings = Fetch::new(move || {
        version.track();
        api::role_mappings()
    });
    let list = Memo::new(move |_| mappings.get().and_then(Result::ok).unwrap_or_default());
    let envs = Envs::load();
    // Rules the last claims test matched, highlighted in the table.
    let matched = RwSignal::new(Vec::<Uuid>::new());
    let refresh = move || version.update(|v| *v += 1);
    view! {
        <div class="page-header">
            <div>
                <h1>"Role mappings"</h1>
                <p class="muted">
                    "Single sign-on users get their roles from their identity provider's claims. "
                    "A rule grants its role when the claim equals the value or, for lists such as "
                    <code>"groups"</code> ", contains it. Roles are recomputed at every sign-in."
                </p>
            </div>
        </div>
        <section class="card">
                <div class="card-header">
                    <h2>"Rules"</h2>
                    <span class="muted small">{move || format!("{} rules", list.with(Vec::len))}</span>
                </div>
                {move || match mappings.get() {
                    None => view! { <Loading /> }.into_any(),
                    Some(Err(e)) => view! { <ErrorBox error=e /> }.into_any(),
                    Some(Ok(m)) if m.is_empty() => {
                        view! {
                            <p class="muted card-body" data-test="mappings-empty">
                                "No rules yet: nobody can sign in with single sign-on until a rule grants them a role."
                            </p>
                        }
                            .into_any()
                    }
                    Some(Ok(_)) => view! { <MappingsTable list envs matched refresh /> }.into_any(),
                }}
            <NewMappingForm envs on_done=refresh />
        </section>
        <ClaimsTester envs matched />
    }
}

#[component]
fn MappingsTable(
    list: Memo<Vec<RoleMapping>>,
    envs: Envs,
    matched: RwSignal<Vec<Uuid>>,
    refresh: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    view! {
        <table class="table" data-test="mappings">
            <thead>
                <tr>
                    <th>"Claim"</th>
                    <th>"Value"</th>
                    <th>"Role"</th>
                    <th>"Where"</th>
                    <th>"Added"</th>
                    <th></th>
                </tr>
            </thead>
            <tbody>
                <For each=move || list.get() key=|m| m.id let:m>
                    <MappingRow m envs matched refresh />
                </For>
            </tbody>
        </table>
    }
}

#[component]
fn MappingRow(
    m: RoleMapping,
    envs: Envs,
    matched: RwSignal<Vec<Uuid>>,
    refresh: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let id = m.id;
    let row = format!("mapping-row-{}", m.value);
    let is_matched = move || matched.with(|l| l.contains(&id));
    let remove = move |_| {
        if confirm("Delete this rule? Users keep their roles until their next sign-in.") {
            spawn_local(async move {
                if api::delete_role_mapping(id).await.is_ok() {
                    matched.update(|l| l.retain(|x| *x != id));
                    refresh();
                }
            });
        }
    };
    view! {
        <tr data-test=row class:matched=is_matched>
            <td class="mono">{m.claim}</td>
            <td class="mono">
                {m.value}
                <Show when=is_matched>
                    <span class="tag tag-match" data-test="matched">"matches"</span>
                </Show>
            </td>
            <td><span class="role-badge">{m.role.as_str()}</span></td>
            <td>{move || envs.name(m.environment_id)}</td>
            <td class="muted small">{format!("{} by {}", fmt_time(&m.created_at), m.created_by)}</td>
            <td class="right">
                <button class="btn btn-ghost btn-sm" data-test="delete-mapping" on:click=handler(remove)>"Delete"</button>
            </td>
        </tr>
    }
}

#[component]
fn NewMappingForm(envs: Envs, on_done: impl Fn() + Copy + Send + Sync + 'static) -> impl IntoView {
    let claim = RwSignal::new("groups".to_owned());
    let value = RwSignal::new(String::new());
    let role = RwSignal::new(Role::Viewer);
    let environment = RwSignal::new(None::<Uuid>);
    let errors = FormErrors::new(&["claim", "value", "role", "environment_id"]);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        errors.clear();
        let body = NewRoleMapping {
            claim: claim.get_untracked().trim().to_owned(),
            value: value.get_untracked().trim().to_owned(),
            role: role.get_untracked(),
            environment_id: environment.get_untracked(),
        };
        if let Err(e) = body.validate() {
            errors.set(invalid(&e.field, e.message));
            return;
        }
        spawn_local(async move {
            match api::create_role_mapping(&body).await {
                Ok(_) => {
                    value.set(String::new());
                    on_done();
                }
                Err(e) => errors.set(e),
            }
        });
    };
    view! {
        <form class="inline-form card-body" on:submit=handler(submit) data-test="mapping-form" novalidate>
            <h3 class="form-title">"Add a rule"</h3>
            <FormAlert errors />
            <div class="form-row">
                <div class="field">
                    <label for="mapping-claim">"Claim"</label>
                    <input id="mapping-claim" class="mono" placeholder="groups" bind:value=claim />
                    <FieldError errors field="claim" />
                </div>
                <div class="field grow">
                    <label for="mapping-value">"Value"</label>
                    <input id="mapping-value" class="mono" placeholder="slipway-admins" bind:value=value />
                    <FieldError errors field="value" />
                </div>
                <div class="field">
                    <label for="mapping-role">"Role"</label>
                    <RoleSelect id="mapping-role" value=role />
                </div>
                <div class="field">
                    <label for="mapping-env">"Where"</label>
                    <EnvSelect id="mapping-env" envs value=environment />
                    <FieldError errors field="environment_id" />
                </div>
                <button class="btn btn-primary align-end" type="submit" data-test="mapping-submit">"Add rule"</button>
            </div>
        </form>
    }
}

/// A JSON object of claims → the roles a user with them would get.
#[component]
fn ClaimsTester(envs: Envs, matched: RwSignal<Vec<Uuid>>) -> impl IntoView {
    let text = RwSignal::new(EXAMPLE_CLAIMS.to_owned());
    let result = RwSignal::new(None::<ClaimsPreview>);
    let errors = FormErrors::new(&["claims"]);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        errors.clear();
        let claims = match serde_json::from_str::<serde_json::Value>(&text.get_untracked()) {
            Ok(v) if v.is_object() => v,
            Ok(_) => {
                errors.set(invalid(
                    "claims",
                    "give a JSON object, e.g. {\"groups\": [\"eng\"]}",
                ));
                return;
            }
            Err(e) => {
                errors.set(invalid(
                    "claims",
                    format!("not valid JSON (line {}, column {})", e.line(), e.column()),
                ));
                return;
            }
        };
        spawn_local(async move {
            match api::preview_claims(claims).await {
                Ok(p) => {
                    matched.set(p.matched.clone());
                    result.set(Some(p));
                }
                Err(e) => {
                    result.set(None);
                    errors.set(e);
                }
            }
        });
    };
    view! {
        <section class="card">
            <div class="card-header">
                <h2>"Test these claims"</h2>
            </div>
            <div class="tester">
            <form class="card-body" on:submit=handler(submit) data-test="claims-form" novalidate>
                <FormAlert errors />
                <div class="field">
                    <label for="claims-json">"Claims of an id_token (JSON)"</label>
                    <textarea id="claims-json" rows="6" spellcheck="false" bind:value=text></textarea>
                    <FieldError errors field="claims" />
                </div>
                <div class="form-actions">
                    <button class="btn btn-primary" type="submit" data-test="claims-test">"Test claims"</button>
                </div>
            </form>
            <div class="tester-result">
                {move || match result.get() {
                    Some(p) => view! { <PreviewResult p envs /> }.into_any(),
                    None => view! { <p class="muted card-body">"The roles a user with these claims would get show here."</p> }.into_any(),
                }}
            </div>
            </div>
        </section>
    }
}

#[component]
fn PreviewResult(p: ClaimsPreview, envs: Envs) -> impl IntoView {
    let nothing = p.role.is_none() && p.environments.is_empty();
    let rules = match p.matched.len() {
        1 => "1 rule matches".to_owned(),
        n => format!("{n} rules match"),
    };
    view! {
        <div class="preview" class:preview-none=nothing data-test="claims-result">
            {if nothing {
                view! {
                    <p class="preview-verdict" data-test="claims-verdict">
                        "No rule matches: this user would be refused at sign-in."
                    </p>
                }
                    .into_any()
            } else {
                view! {
                    <dl class="spec">
                        <dt>"Everywhere"</dt>
                        <dd data-test="claims-role">
                            {match p.role {
                                Some(r) => view! { <span class="role-badge">{r.as_str()}</span> }.into_any(),
                                None => view! { <span class="muted">"no role"</span> }.into_any(),
                            }}
                        </dd>
                        {p
                            .environments
                            .into_iter()
                            .map(|e| {
                                view! {
                                    <dt>{move || envs.name(Some(e.environment_id))}</dt>
                                    <dd><span class="role-badge">{e.role.as_str()}</span></dd>
                                }
                            })
                            .collect_view()}
                    </dl>
                }
                    .into_any()
            }}
            <p class="muted small preview-foot">{rules} ", highlighted in the rules."</p>
        </div>
    }
}
