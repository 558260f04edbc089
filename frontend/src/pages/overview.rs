//! `/`: every project × environment × service with its current release and
//! the state of its last deployment.
use crate::components::handler;
use crate::components::Fetch;
use crate::{
    api::{self, invalid},
    app::use_session,
    components::{ErrorBox, FieldError, FormAlert, FormErrors, Loading, StateBadge},
    sse::use_live_events,
};
use leptos::{prelude::*, task::spawn_local};
use slipway_types::{
    api::{
        validate_description, EnvironmentOverview, LiveEvent, NewProject, ProjectOverview,
        ServiceOverview,
    },
    ResourceName,
};

#[component]
pub fn OverviewPage() -> impl IntoView {
    let version = RwSignal::new(0u32);
    let overview = Fetch::new(move || {
        version.track();
        api::overview()
    });
    let show_form = RwSignal::new(false);
    let session = use_session();
    // A deployment changed state somewhere: show it without a reload.
    let _live = use_live_events(move |ev| {
        if ev.is_none_or(|e| matches!(e, LiveEvent::Deployment { .. })) {
            version.update(|v| *v += 1);
        }
    });

    view! {
        <div class="page-header">
            <div>
                <h1>"Overview"</h1>
                <p class="muted">"Projects, their environments and what runs in them."</p>
            </div>
            <Show when=move || session.is_admin()>
                <button class="btn btn-primary" data-test="new-project" on:click=handler(move |_| show_form.update(|v| *v = !*v))>
                    "New project"
                </button>
            </Show>
        </div>
        <Show when=move || show_form.get()>
            <NewProjectForm on_done=move || {
                show_form.set(false);
                version.update(|v| *v += 1);
            } />
        </Show>
        {move || match overview.get() {
            None => view! { <Loading /> }.into_any(),
            Some(Err(e)) => view! { <ErrorBox error=e /> }.into_any(),
            Some(Ok(o)) if o.projects.is_empty() => view! {
                <div class="empty-state card" data-test="overview-empty">
                    <h2>"No projects yet"</h2>
                    <p class="muted">"Create a project, give it environments such as staging and production, then add services."</p>
                </div>
            }.into_any(),
            Some(Ok(o)) => view! {
                <div class="stack" data-test="overview">
                    {o.projects.into_iter().map(|p| view! { <ProjectCard p /> }).collect_view()}
                </div>
            }.into_any(),
        }}
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

#[component]
fn ProjectCard(p: ProjectOverview) -> impl IntoView {
    let name = p.project.name.to_string();
    let count: usize = p.environments.iter().map(|e| e.services.len()).sum();
    view! {
        <section class="card project-card" data-test=format!("project-{name}")>
            <div class="card-header">
                <div>
                    <a class="card-title" href=format!("/projects/{}", p.project.id)>{name.clone()}</a>
                    <p class="muted small">{p.project.description.clone()}</p>
                </div>
                <span class="muted small">
                    {format!(
                        "{} · {}",
                        plural(p.environments.len(), "environment"),
                        plural(count, "service"),
                    )}
                </span>
            </div>
            {if p.environments.is_empty() {
                view! {
                    <p class="muted card-body">
                        "No environments. "
                        <a href=format!("/projects/{}", p.project.id)>"Add one"</a>
                    </p>
                }
                    .into_any()
            } else {
                view! {
                    <div class="env-grid">
                        {p.environments.into_iter().map(|e| view! { <EnvColumn e /> }).collect_view()}
                    </div>
                }
                    .into_any()
            }}
        </section>
    }
}

#[component]
fn EnvColumn(e: EnvironmentOverview) -> impl IntoView {
    let name = e.environment.name.to_string();
    view! {
        <div class="env-block" data-test=format!("env-{name}")>
            <div class="env-head">
                <a href=format!("/environments/{}", e.environment.id)>{name.clone()}</a>
                {e.environment.protected.then(|| view! { <span class="badge badge-protected">"protected"</span> })}
            </div>
            {if e.services.is_empty() {
                view! { <p class="muted small">"No services"</p> }.into_any()
            } else {
                view! {
                    <table class="table compact">
                        <thead>
                            <tr>
                                <th>"Service"</th>
                                <th>"Image"</th>
                                <th>"Release"</th>
                                <th>"Last deploy"</th>
                            </tr>
                        </thead>
                        <tbody>
                            {e.services.into_iter().map(|s| view! { <ServiceRow s /> }).collect_view()}
                        </tbody>
                    </table>
                }
                    .into_any()
            }}
        </div>
    }
}

#[component]
fn ServiceRow(s: ServiceOverview) -> impl IntoView {
    let name = s.name.to_string();
    view! {
        <tr data-test=format!("service-{name}")>
            <td>
                <a href=format!("/services/{}", s.id)>{name.clone()}</a>
            </td>
            <td class="mono small">{s.image.to_string()}</td>
            <td>{s.current_release.map(|r| format!("#{r}")).unwrap_or_else(|| "—".into())}</td>
            <td>
                {match s.last_deployment {
                    Some(d) => view! { <StateBadge state=d.state /> }.into_any(),
                    None => view! { <span class="badge badge-none">"never deployed"</span> }.into_any(),
                }}
            </td>
        </tr>
    }
}

#[component]
fn NewProjectForm(on_done: impl Fn() + Copy + 'static) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let description = RwSignal::new(String::new());
    let errors = FormErrors::new(&["name", "description"]);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        errors.clear();
        let parsed = ResourceName::try_from(name.get_untracked().trim())
            .map_err(|m| invalid("name", m))
            .and_then(|n| {
                let d = description.get_untracked();
                validate_description(&d).map_err(|e| invalid(&e.field, e.message))?;
                Ok(NewProject {
                    name: n,
                    description: d,
                })
            });
        match parsed {
            Err(e) => errors.set(e),
            Ok(p) => spawn_local(async move {
                match api::create_project(&p).await {
                    Ok(_) => on_done(),
                    Err(e) => errors.set(e),
                }
            }),
        }
    };
    view! {
        <form class="card form-card" on:submit=handler(submit) data-test="project-form" novalidate>
            <h2>"New project"</h2>
            <FormAlert errors />
            <div class="form-grid">
                <div class="field">
                    <label for="project-name">"Name"</label>
                    <input id="project-name" name="name" placeholder="shop" bind:value=name />
                    <p class="hint">"Lowercase letters, digits and '-' (a DNS label)."</p>
                    <FieldError errors field="name" />
                </div>
                <div class="field">
                    <label for="project-description">"Description"</label>
                    <input id="project-description" name="description" bind:value=description />
                    <FieldError errors field="description" />
                </div>
            </div>
            <div class="form-actions">
                <button class="btn btn-primary" type="submit" data-test="project-submit">"Create project"</button>
            </div>
        </form>
    }
}
