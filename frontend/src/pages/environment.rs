//! `/environments/:id`: services, variables & secrets; edit or delete the
//! environment; import services from a docker-compose file.
use super::{confirm, use_id_param};
use crate::components::handler;
use crate::components::Fetch;
use crate::router::navigate;
use crate::{
    api::{self, invalid},
    app::use_session,
    components::{
        env_deploy::EnvDeployResult,
        policy::PolicySection,
        protect::{TypedConfirm, TypedConfirmDialog},
        service_form::{ServiceFields, ServiceFormState, SERVICE_FIELDS},
        stack::depends_text,
        ui::fmt_time,
        ErrorBox, FieldError, FormAlert, FormErrors, Loading,
    },
};
use leptos::{prelude::*, task::spawn_local};
use slipway_types::{
    api::{
        ComposeImport, ComposeImportResult, DeployEnvironment, Environment, EnvironmentDeployment,
        NewService, PutVariable, Service, UpdateEnvironment, Variable,
    },
    ApiErrorBody, EnvVarName, ResourceName, Role,
};
use uuid::Uuid;

#[component]
pub fn EnvironmentPage() -> impl IntoView {
    let id = use_id_param();
    let version = RwSignal::new(0u32);
    let data = Fetch::new(move || {
        version.track();
        let id = id.get();
        async move {
            let id = id.ok_or_else(|| api::client_error("bad environment id"))?;
            let env = api::environment(id).await?;
            let project = api::project(env.project_id).await?;
            Ok::<_, ApiErrorBody>((project.name.to_string(), env, api::services(id).await?))
        }
    });
    let refresh = move || version.update(|v| *v += 1);
    move || match data.get() {
        None => view! { <Loading /> }.into_any(),
        Some(Err(e)) => view! { <ErrorBox error=e /> }.into_any(),
        Some(Ok((project_name, env, services))) => {
            view! { <EnvironmentView project_name env services refresh /> }.into_any()
        }
    }
}

#[component]
fn EnvironmentView(
    project_name: String,
    env: Environment,
    services: Vec<Service>,
    refresh: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let session = use_session();
    let editing = RwSignal::new(false);
    let adding = RwSignal::new(false);
    let importing = RwSignal::new(false);
    let errors = FormErrors::new(&[]);
    let (eid, pid) = (env.id, env.project_id);
    let guard = TypedConfirm::new(env.protected.then(|| env.name.to_string()));
    let delete = move || {
        spawn_local(async move {
            match api::delete_environment(eid).await {
                Ok(()) => navigate(&format!("/projects/{pid}")),
                Err(e) => errors.set(e),
            }
        });
    };
    let on_delete = move |_| {
        if guard.is_protected() {
            guard.run("delete this environment", delete);
        } else if confirm("Delete this environment, its services and its secrets?") {
            delete();
        }
    };
    let env2 = env.clone();
    // Deploy environment: the batch it started, or why it was refused (a
    // `depends_on` cycle is a 422 naming it).
    let batch = RwSignal::new(None::<EnvironmentDeployment>);
    let deploy_error = RwSignal::new(None::<ApiErrorBody>);
    let busy = RwSignal::new(false);
    let has_services = !services.is_empty();
    let names: Vec<_> = services
        .iter()
        .map(|s| (s.id, s.name.to_string(), depends_text(&s.spec.depends_on)))
        .collect();
    let deploy_env = move |all: bool| {
        guard.run("deploy this environment", move || {
            deploy_error.set(None);
            busy.set(true);
            spawn_local(async move {
                let body = DeployEnvironment {
                    services: None,
                    all,
                };
                match api::deploy_environment(eid, &body).await {
                    Ok(b) => batch.set(Some(b)),
                    Err(e) => {
                        batch.set(None);
                        deploy_error.set(Some(e));
                    }
                }
                busy.set(false);
            });
        })
    };
    view! {
        <nav class="breadcrumbs">
            <a href="/">"Overview"</a>
            <span>"/"</span>
            <a href=format!("/projects/{pid}")>{project_name}</a>
            <span>"/"</span>
            <span>{env.name.to_string()}</span>
        </nav>
        <div class="page-header">
            <div>
                <h1 data-test="environment-name">
                    {env.name.to_string()}
                    {env.protected.then(|| view! { <span class="badge badge-protected">"protected"</span> })}
                </h1>
                <p class="muted">{format!("Created {}", fmt_time(&env.created_at))}</p>
            </div>
            <div class="actions">
                <Show when=move || has_services && session.role().is_some_and(|r| r >= Role::Deployer)>
                    <button
                        class="btn btn-primary"
                        id="deploy-environment"
                        data-test="deploy-environment"
                        disabled=move || busy.get()
                        on:click=handler(move |_| deploy_env(false))
                    >
                        "Deploy environment"
                    </button>
                </Show>
                <Show when=move || session.is_admin()>
                    <button class="btn" data-test="new-service" on:click=handler(move |_| adding.update(|v| *v = !*v))>
                        "New service"
                    </button>
                    <button class="btn" data-test="import-compose" id="import-compose" on:click=handler(move |_| importing.update(|v| *v = !*v))>
                        "Import compose…"
                    </button>
                    <button class="btn" data-test="edit-environment" on:click=handler(move |_| editing.update(|v| *v = !*v))>
                        "Edit"
                    </button>
                    <button class="btn btn-danger" data-test="delete-environment" on:click=handler(on_delete)>
                        "Delete"
                    </button>
                </Show>
            </div>
        </div>
        <FormAlert errors />
        <TypedConfirmDialog confirm=guard />
        {move || deploy_error.get().map(|e| view! {
            <div class="alert alert-error" data-test="env-deploy-error">
                <strong>"The environment was not deployed: "</strong>
                {e.message}
            </div>
        })}
        {move || batch.get().map(|b| view! {
            <EnvDeployResult
                batch=b
                names=names.clone()
                redeploy_all=Callback::new(move |()| deploy_env(true))
                on_close=Callback::new(move |()| batch.set(None))
            />
        })}
        <Show when=move || editing.get()>
            <EditEnvironmentForm env=env2.clone() on_done=move || {
                editing.set(false);
                refresh();
            } />
        </Show>
        <Show when=move || adding.get()>
            <NewServiceForm environment=eid on_done=move || {
                adding.set(false);
                refresh();
            } />
        </Show>
        <Show when=move || importing.get()>
            <ComposeImportForm environment=eid on_close=move || importing.set(false) on_done=refresh />
        </Show>
        <section class="card">
            <div class="card-header">
                <h2>"Services"</h2>
            </div>
            <ServicesTable services />
        </section>
        <VariablesSection environment=eid />
        <PolicySection environment=eid />
    }
}

#[component]
fn ServicesTable(services: Vec<Service>) -> impl IntoView {
    if services.is_empty() {
        return view! { <p class="muted card-body">"No services yet."</p> }.into_any();
    }
    view! {
        <table class="table" data-test="services">
            <thead>
                <tr>
                    <th>"Name"</th>
                    <th>"Image"</th>
                    <th>"Ports"</th>
                    <th>"Replicas"</th>
                    <th>"Depends on"</th>
                    <th>"Updated"</th>
                </tr>
            </thead>
            <tbody>
                {services
                    .into_iter()
                    .map(|s| {
                        view! {
                            <tr data-test=format!("service-row-{}", s.name)>
                                <td>
                                    <a href=format!("/services/{}", s.id)>{s.name.to_string()}</a>
                                </td>
                                <td class="mono small">{s.spec.image.to_string()}</td>
                                <td class="mono small">
                                    {crate::components::service_form::ports_to_text(&s.spec.ports)}
                                </td>
                                <td>{s.spec.replicas}</td>
                                <td class="small">{depends_text(&s.spec.depends_on)}</td>
                                <td class="muted">{fmt_time(&s.updated_at)}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}

#[component]
fn NewServiceForm(
    environment: Uuid,
    on_done: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let state = ServiceFormState::default();
    let errors = FormErrors::new(SERVICE_FIELDS);
    let busy = RwSignal::new(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        errors.clear();
        match state.build() {
            Err(e) => errors.set(e),
            Ok((name, spec)) => {
                busy.set(true);
                spawn_local(async move {
                    match api::create_service(environment, &NewService { name, spec }).await {
                        Ok(_) => on_done(),
                        Err(e) => errors.set(e),
                    }
                    busy.set(false);
                });
            }
        }
    };
    view! {
        <form class="card form-card" on:submit=handler(submit) data-test="service-form" novalidate>
            <h2>"New service"</h2>
            <FormAlert errors />
            <ServiceFields state errors />
            <div class="form-actions">
                <button class="btn btn-primary" type="submit" data-test="service-submit" disabled=move || busy.get()>
                    "Create service"
                </button>
            </div>
        </form>
    }
}

/// Paste a docker-compose file, preview the services it makes (dry run),
/// then import them (all or nothing).
#[component]
fn ComposeImportForm(
    environment: Uuid,
    on_close: impl Fn() + Copy + Send + Sync + 'static,
    on_done: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let compose = RwSignal::new(String::new());
    let errors = FormErrors::new(&["compose"]);
    let preview = RwSignal::new(None::<ComposeImportResult>);
    let busy = RwSignal::new(false);
    let run = move |dry_run: bool| {
        errors.clear();
        let text = compose.get_untracked();
        if text.trim().is_empty() {
            errors.set(invalid("compose", "paste a docker-compose file"));
            return;
        }
        busy.set(true);
        spawn_local(async move {
            let body = ComposeImport {
                compose: text,
                files: Default::default(),
                dry_run,
            };
            match api::compose_import(environment, &body).await {
                Ok(r) => {
                    let done = !r.dry_run;
                    preview.set(Some(r));
                    if done {
                        on_done();
                    }
                }
                Err(e) => {
                    preview.set(None);
                    errors.set(e);
                }
            }
            busy.set(false);
        });
    };
    view! {
        <form
            class="card form-card compose-import"
            data-test="compose-form"
            id="compose-form"
            novalidate
            on:submit=handler(move |ev: leptos::ev::SubmitEvent| {
                ev.prevent_default();
                run(false);
            })
        >
            <div class="card-header-inline">
                <h2>"Import from docker-compose"</h2>
                <button type="button" class="btn btn-ghost btn-sm" on:click=handler(move |_| on_close())>"Close"</button>
            </div>
            <p class="muted small">
                "Each compose service becomes a Slipway service of this environment. Keys Slipway cannot honour are refused; harmless ones are listed as ignored."
            </p>
            <FormAlert errors />
            <div class="field">
                <label for="compose-text">"docker-compose.yml"</label>
                <textarea
                    id="compose-text"
                    name="compose"
                    class="mono"
                    rows="14"
                    spellcheck="false"
                    data-test="compose-text"
                    placeholder="services:\n  web:\n    image: nginx:1.27\n    ports: [\"8080:80\"]"
                    bind:value=compose
                    on:input=handler(move |_| preview.set(None))
                ></textarea>
                <FieldError errors field="compose" />
            </div>
            {move || preview.get().map(|r| view! { <ComposePreview result=r /> })}
            <div class="form-actions">
                <button
                    type="button"
                    class="btn"
                    id="compose-preview"
                    data-test="compose-preview"
                    disabled=move || busy.get()
                    on:click=handler(move |_| run(true))
                >
                    "Preview"
                </button>
                <button
                    type="submit"
                    class="btn btn-primary"
                    id="compose-import"
                    data-test="compose-import"
                    disabled=move || busy.get()
                >
                    "Import"
                </button>
            </div>
        </form>
    }
}

#[component]
fn ComposePreview(result: ComposeImportResult) -> impl IntoView {
    let title = if result.dry_run {
        format!("{} service(s) would be created:", result.services.len())
    } else {
        format!("Imported {} service(s).", result.services.len())
    };
    let class = if result.dry_run {
        "compose-result"
    } else {
        "compose-result alert alert-success"
    };
    view! {
        <div class=class data-test=if result.dry_run { "compose-preview-result" } else { "compose-imported" }>
            <strong>{title}</strong>
            <table class="table compact" data-test="compose-services">
                <thead><tr><th>"Service"</th><th>"Image"</th><th>"Ports"</th><th>"Replicas"</th></tr></thead>
                <tbody>
                    {result
                        .services
                        .into_iter()
                        .map(|s| view! {
                            <tr data-test=format!("compose-service-{}", s.name)>
                                <td>{s.name.to_string()}</td>
                                <td class="mono small">{s.spec.image.to_string()}</td>
                                <td class="mono small">{crate::components::service_form::ports_to_text(&s.spec.ports)}</td>
                                <td>{s.spec.replicas}</td>
                            </tr>
                        })
                        .collect_view()}
                </tbody>
            </table>
            {(!result.ignored.is_empty()).then(|| view! {
                <p class="muted small" data-test="compose-ignored">
                    "Ignored: " <span class="mono">{result.ignored.join(", ")}</span>
                </p>
            })}
        </div>
    }
}

#[component]
fn EditEnvironmentForm(
    env: Environment,
    on_done: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let name = RwSignal::new(env.name.to_string());
    let protected = RwSignal::new(env.protected);
    let errors = FormErrors::new(&["name", "protected"]);
    let id = env.id;
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        errors.clear();
        match ResourceName::try_from(name.get_untracked().trim()) {
            Err(m) => errors.set(invalid("name", m)),
            Ok(n) => {
                let body = UpdateEnvironment {
                    name: Some(n),
                    protected: Some(protected.get_untracked()),
                };
                spawn_local(async move {
                    match api::update_environment(id, &body).await {
                        Ok(_) => on_done(),
                        Err(e) => errors.set(e),
                    }
                });
            }
        }
    };
    view! {
        <form class="card form-card" on:submit=handler(submit) data-test="edit-environment-form" novalidate>
            <h2>"Edit environment"</h2>
            <FormAlert errors />
            <div class="field">
                <label for="edit-env-name">"Name"</label>
                <input id="edit-env-name" name="name" bind:value=name />
                <FieldError errors field="name" />
            </div>
            <label class="toggle">
                <input type="checkbox" name="protected" bind:checked=protected />
                <span>"Protected"</span>
            </label>
            <div class="form-actions">
                <button class="btn btn-primary" type="submit" data-test="edit-environment-submit">"Save"</button>
            </div>
        </form>
    }
}

#[component]
fn VariablesSection(environment: Uuid) -> impl IntoView {
    let session = use_session();
    let version = RwSignal::new(0u32);
    let vars = Fetch::new(move || {
        version.track();
        api::variables(environment)
    });
    let refresh = move || version.update(|v| *v += 1);
    view! {
        <section class="card" data-test="variables">
            <div class="card-header">
                <div>
                    <h2>"Variables & secrets"</h2>
                    <p class="muted small">"Secret values are write-only: nobody can read them back."</p>
                </div>
            </div>
            {move || match vars.get() {
                None => view! { <Loading /> }.into_any(),
                Some(Err(e)) => view! { <ErrorBox error=e /> }.into_any(),
                Some(Ok(v)) if v.is_empty() => {
                    view! { <p class="muted card-body">"No variables or secrets yet."</p> }.into_any()
                }
                Some(Ok(v)) => view! { <VariablesTable vars=v environment refresh /> }.into_any(),
            }}
            <Show when=move || session.is_admin()>
                <PutVariableForm environment on_done=refresh />
            </Show>
        </section>
    }
}

#[component]
fn VariablesTable(
    vars: Vec<Variable>,
    environment: Uuid,
    refresh: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let session = use_session();
    view! {
        <table class="table">
            <thead>
                <tr>
                    <th>"Name"</th>
                    <th>"Kind"</th>
                    <th>"Value"</th>
                    <th>"Version"</th>
                    <th>"Updated"</th>
                    <th></th>
                </tr>
            </thead>
            <tbody>
                {vars
                    .into_iter()
                    .map(|v| {
                        let name = v.name.to_string();
                        let n2 = name.clone();
                        let remove = move |_| {
                            let n = n2.clone();
                            if confirm(&format!("Delete {n}?")) {
                                spawn_local(async move {
                                    if api::delete_variable(environment, &n).await.is_ok() {
                                        refresh();
                                    }
                                });
                            }
                        };
                        view! {
                            <tr data-test=format!("var-row-{name}")>
                                <td class="mono">{name.clone()}</td>
                                <td>
                                    {if v.secret {
                                        view! { <span class="badge badge-secret">"secret"</span> }.into_any()
                                    } else {
                                        view! { <span class="badge badge-none">"plain"</span> }.into_any()
                                    }}
                                </td>
                                <td class="mono small">
                                    {if v.secret { "••••••••".to_owned() } else { v.value.clone().unwrap_or_default() }}
                                </td>
                                <td>{format!("v{}", v.version)}</td>
                                <td class="muted small">{format!("{} by {}", fmt_time(&v.updated_at), v.updated_by)}</td>
                                <td class="right">
                                    <Show when=move || session.is_admin()>
                                        <button class="btn btn-ghost btn-sm" on:click=handler(remove.clone())>"Delete"</button>
                                    </Show>
                                </td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
}

#[component]
fn PutVariableForm(
    environment: Uuid,
    on_done: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let value = RwSignal::new(String::new());
    let secret = RwSignal::new(false);
    let errors = FormErrors::new(&["name", "value"]);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        errors.clear();
        match EnvVarName::try_from(name.get_untracked().trim()) {
            Err(m) => errors.set(invalid("name", m)),
            Ok(n) => {
                let body = PutVariable {
                    value: value.get_untracked(),
                    secret: secret.get_untracked(),
                };
                spawn_local(async move {
                    match api::put_variable(environment, n.as_str(), &body).await {
                        Ok(_) => {
                            name.set(String::new());
                            value.set(String::new());
                            on_done();
                        }
                        Err(e) => errors.set(e),
                    }
                });
            }
        }
    };
    view! {
        <form class="inline-form card-body" on:submit=handler(submit) data-test="variable-form" novalidate>
            <FormAlert errors />
            <div class="form-row">
                <div class="field">
                    <label for="var-name">"Name"</label>
                    <input id="var-name" name="name" class="mono" placeholder="DATABASE_URL" bind:value=name />
                    <FieldError errors field="name" />
                </div>
                <div class="field grow">
                    <label for="var-value">{move || if secret.get() { "Secret value" } else { "Value" }}</label>
                    <input
                        id="var-value"
                        name="value"
                        type=move || if secret.get() { "password" } else { "text" }
                        autocomplete="off"
                        bind:value=value
                    />
                    <FieldError errors field="value" />
                </div>
                <label class="toggle align-end">
                    <input type="checkbox" name="secret" data-test="variable-secret" bind:checked=secret />
                    <span>"Secret"</span>
                </label>
                <button class="btn btn-primary align-end" type="submit" data-test="variable-submit">
                    {move || if secret.get() { "Set secret" } else { "Set variable" }}
                </button>
            </div>
        </form>
    }
}
