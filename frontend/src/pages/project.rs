//! `/projects/:id`: environments of a project; edit or delete the project.
use super::{confirm, use_id_param};
use crate::components::handler;
use crate::components::Fetch;
use crate::router::navigate;
use crate::{
    api::{self, invalid},
    app::use_session,
    components::{
        ui::fmt_time,
        webhooks::{DeliveriesSection, WebhooksSection},
        ErrorBox, FieldError, FormAlert, FormErrors, Loading,
    },
};
use leptos::{prelude::*, task::spawn_local};
use slipway_types::{
    api::{validate_description, Environment, NewEnvironment, Project, UpdateProject},
    ResourceName,
};
use uuid::Uuid;

#[component]
pub fn ProjectPage() -> impl IntoView {
    let id = use_id_param();
    let version = RwSignal::new(0u32);
    let data = Fetch::new(move || {
        version.track();
        let id = id.get();
        async move {
            let id = id.ok_or_else(|| api::client_error("bad project id"))?;
            Ok::<_, slipway_types::ApiErrorBody>((
                api::project(id).await?,
                api::environments(id).await?,
            ))
        }
    });
    let refresh = move || version.update(|v| *v += 1);

    move || match data.get() {
        None => view! { <Loading /> }.into_any(),
        Some(Err(e)) => view! { <ErrorBox error=e /> }.into_any(),
        Some(Ok((project, envs))) => view! { <ProjectView project envs refresh /> }.into_any(),
    }
}

#[component]
fn ProjectView(
    project: Project,
    envs: Vec<Environment>,
    refresh: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let session = use_session();
    let editing = RwSignal::new(false);
    let pid = project.id;
    let delete_errors = FormErrors::new(&[]);
    let on_delete = move |_| {
        if !confirm("Delete this project and everything in it?") {
            return;
        }
        spawn_local(async move {
            match api::delete_project(pid).await {
                Ok(()) => navigate("/"),
                Err(e) => delete_errors.set(e),
            }
        });
    };
    let p2 = project.clone();
    view! {
        <nav class="breadcrumbs">
            <a href="/">"Overview"</a>
            <span>"/"</span>
            <span>{project.name.to_string()}</span>
        </nav>
        <div class="page-header">
            <div>
                <h1 data-test="project-name">{project.name.to_string()}</h1>
                <p class="muted">{project.description.clone()}</p>
            </div>
            <Show when=move || session.is_admin()>
                <div class="actions">
                    <button class="btn" data-test="edit-project" on:click=handler(move |_| editing.update(|v| *v = !*v))>
                        "Edit"
                    </button>
                    <button class="btn btn-danger" data-test="delete-project" on:click=handler(on_delete)>
                        "Delete"
                    </button>
                </div>
            </Show>
        </div>
        <FormAlert errors=delete_errors />
        <Show when=move || editing.get()>
            <EditProjectForm project=p2.clone() on_done=move || {
                editing.set(false);
                refresh();
            } />
        </Show>
        <div class="two-col">
            <section class="card">
                <div class="card-header">
                    <h2>"Environments"</h2>
                </div>
                {if envs.is_empty() {
                    view! { <p class="muted card-body">"No environments yet."</p> }.into_any()
                } else {
                    view! {
                        <table class="table" data-test="environments">
                            <thead>
                                <tr>
                                    <th>"Name"</th>
                                    <th>"Protection"</th>
                                    <th>"Created"</th>
                                </tr>
                            </thead>
                            <tbody>
                                {envs
                                    .into_iter()
                                    .map(|e| {
                                        view! {
                                            <tr data-test=format!("env-row-{}", e.name)>
                                                <td>
                                                    <a href=format!("/environments/{}", e.id)>{e.name.to_string()}</a>
                                                </td>
                                                <td>
                                                    {if e.protected {
                                                        view! { <span class="badge badge-protected">"protected"</span> }.into_any()
                                                    } else {
                                                        view! { <span class="muted">"—"</span> }.into_any()
                                                    }}
                                                </td>
                                                <td class="muted">{fmt_time(&e.created_at)}</td>
                                            </tr>
                                        }
                                    })
                                    .collect_view()}
                            </tbody>
                        </table>
                    }
                        .into_any()
                }}
            </section>
            <Show when=move || session.is_admin()>
                <NewEnvironmentForm project=pid on_done=refresh />
            </Show>
        </div>
        <Show when=move || session.is_admin()>
            <WebhooksSection project=pid />
        </Show>
        <DeliveriesSection project=pid />
    }
}

#[component]
fn NewEnvironmentForm(
    project: Uuid,
    on_done: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let protected = RwSignal::new(false);
    let errors = FormErrors::new(&["name", "protected"]);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        errors.clear();
        match ResourceName::try_from(name.get_untracked().trim()) {
            Err(m) => errors.set(invalid("name", m)),
            Ok(n) => {
                let body = NewEnvironment {
                    name: n,
                    protected: protected.get_untracked(),
                };
                spawn_local(async move {
                    match api::create_environment(project, &body).await {
                        Ok(_) => {
                            name.set(String::new());
                            protected.set(false);
                            on_done();
                        }
                        Err(e) => errors.set(e),
                    }
                });
            }
        }
    };
    view! {
        <form class="card form-card" on:submit=handler(submit) data-test="environment-form" novalidate>
            <h2>"New environment"</h2>
            <FormAlert errors />
            <div class="field">
                <label for="env-name">"Name"</label>
                <input id="env-name" name="name" placeholder="staging" bind:value=name />
                <FieldError errors field="name" />
            </div>
            <label class="toggle">
                <input type="checkbox" name="protected" bind:checked=protected />
                <span>"Protected (production: stronger roles needed)"</span>
            </label>
            <div class="form-actions">
                <button class="btn btn-primary" type="submit" data-test="environment-submit">"Create environment"</button>
            </div>
        </form>
    }
}

#[component]
fn EditProjectForm(
    project: Project,
    on_done: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let name = RwSignal::new(project.name.to_string());
    let description = RwSignal::new(project.description.clone());
    let errors = FormErrors::new(&["name", "description"]);
    let id = project.id;
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        errors.clear();
        let parsed = ResourceName::try_from(name.get_untracked().trim())
            .map_err(|m| invalid("name", m))
            .and_then(|n| {
                let d = description.get_untracked();
                validate_description(&d).map_err(|e| invalid(&e.field, e.message))?;
                Ok(UpdateProject {
                    name: Some(n),
                    description: Some(d),
                })
            });
        match parsed {
            Err(e) => errors.set(e),
            Ok(u) => spawn_local(async move {
                match api::update_project(id, &u).await {
                    Ok(_) => on_done(),
                    Err(e) => errors.set(e),
                }
            }),
        }
    };
    view! {
        <form class="card form-card" on:submit=handler(submit) data-test="edit-project-form" novalidate>
            <h2>"Edit project"</h2>
            <FormAlert errors />
            <div class="form-grid">
                <div class="field">
                    <label for="edit-project-name">"Name"</label>
                    <input id="edit-project-name" name="name" bind:value=name />
                    <FieldError errors field="name" />
                </div>
                <div class="field">
                    <label for="edit-project-description">"Description"</label>
                    <input id="edit-project-description" name="description" bind:value=description />
                    <FieldError errors field="description" />
                </div>
            </div>
            <div class="form-actions">
                <button class="btn btn-primary" type="submit" data-test="edit-project-submit">"Save"</button>
            </div>
        </form>
    }
}
