//! `/services/:id`: the spec, an edit form, "Deploy" and the deployments.
use super::{confirm, use_id_param};
use crate::{
    api::{self, invalid},
    app::use_session,
    components::{
        releases::{ReleasesList, TriggerRules},
        service_form::{
            env_to_text, ports_to_text, ServiceFields, ServiceFormState, SERVICE_FIELDS,
        },
        ui::{fmt_opt_time, fmt_time},
        ErrorBox, FieldError, FormAlert, FormErrors, Loading, StateBadge,
    },
};
use leptos::{prelude::*, task::spawn_local};
use leptos_router::{hooks::use_navigate, NavigateOptions};
use slipway_types::{
    api::{CreateDeployment, Service, ServiceSpec, UpdateService},
    ApiErrorBody, ImageRef, Role,
};
use uuid::Uuid;

#[component]
pub fn ServicePage() -> impl IntoView {
    let id = use_id_param();
    let version = RwSignal::new(0u32);
    let data = LocalResource::new(move || {
        version.track();
        let id = id.get();
        async move {
            let id = id.ok_or_else(|| api::client_error("bad service id"))?;
            let svc = api::service(id).await?;
            let env = api::environment(svc.environment_id).await?;
            let project = api::project(svc.project_id).await?;
            Ok::<_, ApiErrorBody>((project.name.to_string(), env.name.to_string(), svc))
        }
    });
    let refresh = move || version.update(|v| *v += 1);
    move || match data.get() {
        None => view! { <Loading /> }.into_any(),
        Some(Err(e)) => view! { <ErrorBox error=e /> }.into_any(),
        Some(Ok((project_name, env_name, svc))) => {
            view! { <ServiceView project_name env_name svc refresh /> }.into_any()
        }
    }
}

#[component]
fn ServiceView(
    project_name: String,
    env_name: String,
    svc: Service,
    refresh: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let session = use_session();
    let navigate = use_navigate();
    let editing = RwSignal::new(false);
    let deploys = RwSignal::new(0u32);
    let errors = FormErrors::new(&[]);
    let (sid, eid, pid) = (svc.id, svc.environment_id, svc.project_id);
    let on_delete = move |_| {
        if !confirm("Delete this service?") {
            return;
        }
        let navigate = navigate.clone();
        spawn_local(async move {
            match api::delete_service(sid).await {
                Ok(()) => navigate(&format!("/environments/{eid}"), NavigateOptions::default()),
                Err(e) => errors.set(e),
            }
        });
    };
    let svc2 = svc.clone();
    view! {
        <nav class="breadcrumbs">
            <a href="/">"Overview"</a>
            <span>"/"</span>
            <a href=format!("/projects/{pid}")>{project_name}</a>
            <span>"/"</span>
            <a href=format!("/environments/{eid}")>{env_name}</a>
            <span>"/"</span>
            <span>{svc.name.to_string()}</span>
        </nav>
        <div class="page-header">
            <div>
                <h1 data-test="service-name">{svc.name.to_string()}</h1>
                <p class="muted mono">{svc.spec.image.to_string()}</p>
            </div>
            <div class="actions">
                <Show when={move || session.role().is_some_and(|r| r >= Role::Deployer)}>
                    <DeployButton service=sid on_done=move || deploys.update(|v| *v += 1) />
                </Show>
                <Show when=move || session.is_admin()>
                    <button class="btn" data-test="edit-service" on:click=move |_| editing.update(|v| *v = !*v)>
                        "Edit"
                    </button>
                    <button class="btn btn-danger" data-test="delete-service" on:click=on_delete.clone()>
                        "Delete"
                    </button>
                </Show>
            </div>
        </div>
        <FormAlert errors />
        <Show when=move || editing.get()>
            <EditServiceForm svc=svc2.clone() on_done=move || {
                editing.set(false);
                refresh();
            } />
        </Show>
        <div class="two-col wide-left">
            <div class="stack">
                <DeploymentsList service=sid version=deploys />
                <ReleasesList
                    service=sid
                    project=pid
                    environment=eid
                    can_deploy=Signal::derive(move || session.role().is_some_and(|r| r >= Role::Deployer))
                    version=deploys
                />
            </div>
            <SpecView spec=svc.spec.clone() />
        </div>
        <Show when=move || session.is_admin()>
            <TriggerRules service=sid />
        </Show>
    }
}

#[component]
fn DeployButton(service: Uuid, on_done: impl Fn() + Copy + Send + Sync + 'static) -> impl IntoView {
    let image = RwSignal::new(String::new());
    let errors = FormErrors::new(&["image"]);
    let busy = RwSignal::new(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        errors.clear();
        let img = image.get_untracked();
        let body = match img.trim() {
            "" => Ok(CreateDeployment::default()),
            i => ImageRef::try_from(i)
                .map(|i| CreateDeployment {
                    image: Some(i),
                    ..Default::default()
                })
                .map_err(|m| invalid("image", m)),
        };
        match body {
            Err(e) => errors.set(e),
            Ok(body) => {
                busy.set(true);
                spawn_local(async move {
                    match api::deploy(service, &body).await {
                        Ok(_) => {
                            image.set(String::new());
                            on_done();
                        }
                        Err(e) => errors.set(e),
                    }
                    busy.set(false);
                });
            }
        }
    };
    view! {
        <form class="deploy-form" on:submit=submit data-test="deploy-form" novalidate>
            <div class="field">
                <input name="image" placeholder="image override (optional)" bind:value=image />
                <FieldError errors field="image" />
                <FormAlert errors />
            </div>
            <button class="btn btn-primary" type="submit" data-test="deploy" disabled=move || busy.get()>
                "Deploy"
            </button>
        </form>
    }
}

#[component]
fn DeploymentsList(service: Uuid, version: RwSignal<u32>) -> impl IntoView {
    let list = LocalResource::new(move || {
        version.track();
        api::deployments(service)
    });
    // While a deployment is queued or running, refresh every 3 s.
    let poll = set_interval_with_handle(
        move || {
            let active = list.with_untracked(
                |l| matches!(l, Some(Ok(d)) if d.iter().any(|d| !d.state.is_terminal())),
            );
            if active {
                version.update(|v| *v += 1);
            }
        },
        std::time::Duration::from_secs(3),
    );
    on_cleanup(move || {
        if let Ok(h) = poll {
            h.clear();
        }
    });
    view! {
        <section class="card">
            <div class="card-header">
                <h2>"Deployments"</h2>
                <button class="btn btn-ghost btn-sm" on:click=move |_| version.update(|v| *v += 1)>"Refresh"</button>
            </div>
            {move || match list.get() {
                None => view! { <Loading /> }.into_any(),
                Some(Err(e)) => view! { <ErrorBox error=e /> }.into_any(),
                Some(Ok(d)) if d.is_empty() => {
                    view! { <p class="muted card-body">"Never deployed. Press Deploy to cut release #1."</p> }.into_any()
                }
                Some(Ok(d)) => view! {
                    <table class="table" data-test="deployments">
                        <thead>
                            <tr>
                                <th>"Release"</th>
                                <th>"State"</th>
                                <th>"Image"</th>
                                <th>"By"</th>
                                <th>"Created"</th>
                                <th>"Finished"</th>
                            </tr>
                        </thead>
                        <tbody>
                            {d.into_iter()
                                .map(|d| view! {
                                    <tr data-test=format!("deployment-{}", d.release_number)>
                                        <td>{format!("#{}", d.release_number)}</td>
                                        <td><StateBadge state=d.state /></td>
                                        <td class="mono small">{d.image.to_string()}</td>
                                        <td>{d.requested_by.clone()}</td>
                                        <td class="muted small">{fmt_time(&d.created_at)}</td>
                                        <td class="muted small">{fmt_opt_time(&d.finished_at)}</td>
                                    </tr>
                                })
                                .collect_view()}
                        </tbody>
                    </table>
                }
                    .into_any(),
            }}
        </section>
    }
}

#[component]
fn SpecView(spec: ServiceSpec) -> impl IntoView {
    let row = |k: &'static str, v: String| {
        view! {
            <dt>{k}</dt>
            <dd class="mono" data-test=format!("spec-{}", k.to_lowercase().replace(' ', "-"))>
                {if v.is_empty() { "—".to_owned() } else { v }}
            </dd>
        }
    };
    let h = &spec.hardening;
    let hardening = [
        h.read_only.then_some("read-only rootfs"),
        h.no_new_privileges.then_some("no-new-privileges"),
    ]
    .into_iter()
    .flatten()
    .map(str::to_owned)
    .chain(h.cap_drop.iter().map(|c| format!("drop {c}")))
    .chain(h.cap_add.iter().map(|c| format!("add {c}")))
    .collect::<Vec<_>>()
    .join(", ");
    view! {
        <section class="card" data-test="spec">
            <div class="card-header">
                <h2>"Spec"</h2>
            </div>
            <dl class="spec">
                {row("Image", spec.image.to_string())}
                {row("Ports", ports_to_text(&spec.ports))}
                {row("Replicas", spec.replicas.to_string())}
                {row("CPUs", spec.resources.cpus.map(|c| c.to_string()).unwrap_or_default())}
                {row("Memory", spec.resources.memory_mb.map(|m| format!("{m} MB")).unwrap_or_default())}
                {row(
                    "Health check",
                    spec.health_check.as_ref().map(|h| format!("GET :{}{}", h.port, h.path)).unwrap_or_default(),
                )}
                {row("User", h.user.clone().unwrap_or_default())}
                {row("Hardening", hardening)}
                {row("Environment", env_to_text(&spec.env))}
                {row(
                    "Secrets",
                    spec.secrets.iter().map(|s| format!("{} ← {}", s.env, s.secret)).collect::<Vec<_>>().join("\n"),
                )}
            </dl>
        </section>
    }
}

#[component]
fn EditServiceForm(
    svc: Service,
    on_done: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let state = ServiceFormState::from_service(&svc.name, &svc.spec);
    let errors = FormErrors::new(SERVICE_FIELDS);
    let id = svc.id;
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        errors.clear();
        match state.build() {
            Err(e) => errors.set(e),
            Ok((name, spec)) => spawn_local(async move {
                let body = UpdateService {
                    name: Some(name),
                    spec: Some(spec),
                };
                match api::update_service(id, &body).await {
                    Ok(_) => on_done(),
                    Err(e) => errors.set(e),
                }
            }),
        }
    };
    view! {
        <form class="card form-card" on:submit=submit data-test="edit-service-form" novalidate>
            <h2>"Edit service"</h2>
            <FormAlert errors />
            <ServiceFields state errors />
            <div class="form-actions">
                <button class="btn btn-primary" type="submit" data-test="edit-service-submit">"Save"</button>
            </div>
        </form>
    }
}
