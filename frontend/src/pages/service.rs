//! `/services/:id`: the spec, an edit form, "Deploy" (a new release from an
//! image, or an earlier release), the deployments and the releases.
use super::{confirm, use_id_param};
use crate::components::handler;
use crate::components::Fetch;
use crate::router::navigate;
use crate::{
    api::{self, invalid},
    app::use_session,
    components::{
        protect::{TypedConfirm, TypedConfirmDialog},
        releases::{ReleasesList, TriggerRules},
        service_form::{
            env_to_text, ports_to_text, ServiceFields, ServiceFormState, SERVICE_FIELDS,
        },
        stack::{argv_text, depends_text, strategy_text, tmpfs_text, ConfigFiles},
        ui::{fmt_cpus, fmt_opt_time, fmt_time},
        ErrorBox, FieldError, FormAlert, FormErrors, Loading, StateBadge,
    },
    sse::{poll_while, use_live_events},
};
use leptos::{prelude::*, task::spawn_local};
use slipway_types::{
    api::{
        CreateDeployment, HealthCheck, LiveEvent, Release, Service, ServiceKind, ServiceSpec,
        UpdateService,
    },
    ApiErrorBody, ImageRef, Role,
};
use std::time::Duration;
use uuid::Uuid;

#[component]
pub fn ServicePage() -> impl IntoView {
    let id = use_id_param();
    let version = RwSignal::new(0u32);
    let data = Fetch::new(move || {
        version.track();
        let id = id.get();
        async move {
            let id = id.ok_or_else(|| api::client_error("bad service id"))?;
            let svc = api::service(id).await?;
            let env = api::environment(svc.environment_id).await?;
            let project = api::project(svc.project_id).await?;
            Ok::<_, ApiErrorBody>((project.name.to_string(), env, svc))
        }
    });
    let refresh = move || version.update(|v| *v += 1);
    move || match data.get() {
        None => view! { <Loading /> }.into_any(),
        Some(Err(e)) => view! { <ErrorBox error=e /> }.into_any(),
        Some(Ok((project_name, env, svc))) => {
            let env_name = env.name.to_string();
            let guard = TypedConfirm::new(env.protected.then(|| env_name.clone()));
            view! { <ServiceView project_name env_name svc guard refresh /> }.into_any()
        }
    }
}

#[component]
fn ServiceView(
    project_name: String,
    env_name: String,
    svc: Service,
    /// Typed-name confirmation when the environment is protected.
    guard: TypedConfirm,
    refresh: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let session = use_session();
    let editing = RwSignal::new(false);
    let deploying = RwSignal::new(false);
    let deploys = RwSignal::new(0u32);
    let errors = FormErrors::new(&[]);
    let (sid, eid, pid) = (svc.id, svc.environment_id, svc.project_id);
    let delete = move || {
        spawn_local(async move {
            match api::delete_service(sid).await {
                Ok(()) => navigate(&format!("/environments/{eid}")),
                Err(e) => errors.set(e),
            }
        });
    };
    let on_delete = move |_| {
        if guard.is_protected() {
            guard.run("delete this service", delete);
        } else if confirm("Delete this service?") {
            delete();
        }
    };
    let svc2 = svc.clone();
    let live = use_live_events(move |ev| {
        if ev.is_none_or(
            |e| matches!(e, LiveEvent::Deployment { service_id, .. } if service_id == sid),
        ) {
            deploys.update(|v| *v += 1);
        }
    });
    let default_image = svc.spec.image.to_string();
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
                    <button
                        class="btn btn-primary"
                        id="deploy-button"
                        data-test="deploy"
                        aria-expanded=move || deploying.get().to_string()
                        on:click=handler(move |_| deploying.update(|v| *v = !*v))
                    >
                        "Deploy…"
                    </button>
                </Show>
                <Show when=move || session.is_admin()>
                    <button class="btn" data-test="edit-service" on:click=handler(move |_| editing.update(|v| *v = !*v))>
                        "Edit"
                    </button>
                    <button class="btn btn-danger" data-test="delete-service" on:click=handler(on_delete)>
                        "Delete"
                    </button>
                </Show>
            </div>
        </div>
        <FormAlert errors />
        <TypedConfirmDialog confirm=guard />
        <Show when=move || deploying.get()>
            <DeployPanel
                service=sid
                guard
                default_image=default_image.clone()
                version=deploys
                on_close=move || deploying.set(false)
            />
        </Show>
        <Show when=move || editing.get()>
            <EditServiceForm svc=svc2.clone() on_done=move || {
                editing.set(false);
                refresh();
            } />
        </Show>
        <div class="two-col wide-left">
            <div class="stack">
                <DeploymentsList service=sid version=deploys live />
                <ReleasesList
                    service=sid
                    project=pid
                    environment=eid
                    can_deploy=Signal::derive(move || session.role().is_some_and(|r| r >= Role::Deployer))
                    version=deploys
                    guard
                />
            </div>
            <SpecView spec=svc.spec.clone() />
        </div>
        <Show when=move || session.is_admin()>
            <TriggerRules service=sid />
        </Show>
    }
}

/// Where a deployment's release comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeploySource {
    /// Cut a new release from an image.
    Image,
    /// Deploy an earlier release again.
    Release,
}

/// The body of `POST /services/{id}/deployments` for what the panel shows.
fn deploy_request(
    source: DeploySource,
    image: &str,
    release: Option<Uuid>,
) -> Result<CreateDeployment, ApiErrorBody> {
    match source {
        DeploySource::Image => match image.trim() {
            "" => Err(invalid("image", "enter the image to deploy")),
            i => ImageRef::try_from(i)
                .map(|i| CreateDeployment {
                    image: Some(i),
                    ..Default::default()
                })
                .map_err(|m| invalid("image", m)),
        },
        DeploySource::Release => match release {
            None => Err(invalid("release", "choose a release")),
            Some(r) => Ok(CreateDeployment {
                release_id: Some(r),
                ..Default::default()
            }),
        },
    }
}

fn release_label(r: &Release) -> String {
    format!("#{} · {} · {}", r.number, r.image, fmt_time(&r.created_at))
}

/// Deploy a new release from an image (prefilled with the service's) or an
/// earlier release, then follow the deployment on its page.
#[component]
fn DeployPanel(
    service: Uuid,
    guard: TypedConfirm,
    default_image: String,
    version: RwSignal<u32>,
    on_close: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let source = RwSignal::new(DeploySource::Image);
    let image = RwSignal::new(default_image);
    let release = RwSignal::new(None::<Uuid>);
    let releases = Fetch::new(move || api::releases(service));
    let errors = FormErrors::new(&["image", "release", "override_reason"]);
    let busy = RwSignal::new(false);
    // Admins may deploy through a freeze with a written (audited) reason;
    // the field appears once the server answered `deploy_frozen`.
    let session = crate::app::use_session();
    let override_reason = RwSignal::new(String::new());
    let show_override = RwSignal::new(false);
    Effect::new(move || {
        if errors
            .current()
            .is_some_and(|e| e.error == slipway_types::ErrorCode::DeployFrozen)
            && session.is_admin()
        {
            show_override.set(true);
        }
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        errors.clear();
        let reason = override_reason.get_untracked().trim().to_owned();
        let body = deploy_request(
            source.get_untracked(),
            &image.get_untracked(),
            release.get_untracked(),
        )
        .map(|b| CreateDeployment {
            override_reason: (!reason.is_empty()).then_some(reason),
            ..b
        });
        match body {
            Err(e) => errors.set(e),
            Ok(body) => guard.run("deploy", move || {
                busy.set(true);
                let body = body.clone();
                spawn_local(async move {
                    match api::deploy(service, &body).await {
                        Ok(d) => {
                            version.update(|v| *v += 1);
                            navigate(&format!("/deployments/{}", d.id));
                        }
                        Err(e) => errors.set(e),
                    }
                    busy.set(false);
                });
            }),
        }
    };
    view! {
        <form class="card form-card deploy-panel" on:submit=handler(submit) data-test="deploy-form" id="deploy-form" novalidate>
            <div class="card-header-inline">
                <h2>"Deploy"</h2>
                <button type="button" class="btn btn-ghost btn-sm" data-test="deploy-close" on:click=handler(move |_| on_close())>
                    "Close"
                </button>
            </div>
            <FormAlert errors />
            <label class="radio-row">
                <input
                    type="radio"
                    name="deploy-source"
                    value="image"
                    id="deploy-source-image"
                    data-test="deploy-source-image"
                    prop:checked=move || source.get() == DeploySource::Image
                    on:change=handler(move |_| source.set(DeploySource::Image))
                />
                <span>"New release from image"</span>
            </label>
            <div class="field indent">
                <input
                    id="deploy-image"
                    name="image"
                    class="mono"
                    data-test="deploy-image"
                    bind:value=image
                    on:focus=handler(move |_| source.set(DeploySource::Image))
                />
                <FieldError errors field="image" />
            </div>
            <label class="radio-row">
                <input
                    type="radio"
                    name="deploy-source"
                    value="release"
                    id="deploy-source-release"
                    data-test="deploy-source-release"
                    prop:checked=move || source.get() == DeploySource::Release
                    on:change=handler(move |_| source.set(DeploySource::Release))
                />
                <span>"An earlier release"</span>
            </label>
            <div class="field indent">
                {move || match releases.get() {
                    None => view! { <Loading /> }.into_any(),
                    Some(Err(e)) => view! { <ErrorBox error=e /> }.into_any(),
                    Some(Ok(l)) if l.is_empty() => {
                        view! { <p class="muted small" data-test="release-picker-empty">"No releases yet."</p> }.into_any()
                    }
                    Some(Ok(l)) => view! {
                        <select
                            id="release-picker"
                            name="release"
                            data-test="release-picker"
                            on:change=handler(move |ev| {
                                release.set(Uuid::parse_str(&event_target_value(&ev)).ok());
                                source.set(DeploySource::Release);
                            })
                        >
                            <option value="" selected=move || release.get().is_none()>"Choose a release…"</option>
                            {l.into_iter()
                                .map(|r| {
                                    let id = r.id;
                                    view! {
                                        <option value=id.to_string() selected=move || release.get() == Some(id)>
                                            {release_label(&r)}
                                        </option>
                                    }
                                })
                                .collect_view()}
                        </select>
                    }
                        .into_any(),
                }}
                <FieldError errors field="release" />
            </div>
            <Show when=move || show_override.get()>
                <div class="field">
                    <label for="deploy-override-reason">"Override the freeze — reason (audited)"</label>
                    <input
                        id="deploy-override-reason"
                        name="override_reason"
                        data-test="deploy-override-reason"
                        placeholder="e.g. hotfix for incident 4711"
                        bind:value=override_reason
                    />
                    <FieldError errors field="override_reason" />
                </div>
            </Show>
            <div class="form-actions">
                <button class="btn btn-primary" type="submit" id="deploy-submit" data-test="deploy-submit" disabled=move || busy.get()>
                    "Deploy"
                </button>
            </div>
        </form>
    }
}

#[component]
fn DeploymentsList(service: Uuid, version: RwSignal<u32>, live: ReadSignal<bool>) -> impl IntoView {
    let list = Fetch::new(move || {
        version.track();
        api::deployments(service)
    });
    // Live events refresh the list; without them, refresh every 3 s while a
    // deployment is queued or running.
    poll_while(
        Duration::from_secs(3),
        move || {
            !live.get_untracked()
                && list.with_untracked(
                    |l| matches!(l, Some(Ok(d)) if d.iter().any(|d| !d.state.is_terminal())),
                )
        },
        move || version.update(|v| *v += 1),
    );
    view! {
        <section class="card">
            <div class="card-header">
                <h2>"Deployments"</h2>
                <button class="btn btn-ghost btn-sm" on:click=handler(move |_| version.update(|v| *v += 1))>"Refresh"</button>
            </div>
            {move || match list.get() {
                None => view! { <Loading /> }.into_any(),
                Some(Err(e)) => view! { <ErrorBox error=e /> }.into_any(),
                Some(Ok(d)) if d.is_empty() => {
                    view! { <p class="muted card-body">"Never deployed. Press Deploy… to cut release #1."</p> }.into_any()
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
                                        <td>
                                            <a href=format!("/deployments/{}", d.id) data-test="deployment-link">
                                                {format!("#{}", d.release_number)}
                                            </a>
                                        </td>
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
            <dd class="mono" data-test=format!("spec-{}", k.to_ascii_lowercase().replace(' ', "-"))>
                {if v.is_empty() { "—".to_owned() } else { v }}
            </dd>
        }
    };
    // Stack fields show only when set.
    let opt = move |k: &'static str, v: String| (!v.is_empty()).then(|| row(k, v));
    let h = &spec.hardening;
    let hardening = [
        h.read_only.then_some("read-only rootfs"),
        h.no_new_privileges.then_some("no-new-privileges"),
        spec.init.then_some("init process"),
    ]
    .into_iter()
    .flatten()
    .map(str::to_owned)
    .chain(h.cap_drop.iter().map(|c| format!("drop {c}")))
    .chain(h.cap_add.iter().map(|c| format!("add {c}")))
    .collect::<Vec<_>>()
    .join(", ");
    let lines = |v: Vec<String>| v.join("\n");
    let argv = |a: &Option<Vec<String>>| a.as_deref().map(argv_text).unwrap_or_default();
    let files = spec.files.clone();
    view! {
        <section class="card" data-test="spec">
            <div class="card-header">
                <h2>"Spec"</h2>
            </div>
            <dl class="spec">
                {row("Image", spec.image.to_string())}
                {(spec.kind == ServiceKind::Job).then(|| row("Kind", "job: runs to completion on each deployment".into()))}
                {row("Strategy", strategy_text(&spec))}
                {opt("Depends on", depends_text(&spec.depends_on))}
                {opt(
                    "Release command",
                    spec.release_command.as_ref().map(|r| format!("{} (timeout {} s)", argv_text(&r.command), r.timeout_secs)).unwrap_or_default(),
                )}
                {opt("Entrypoint", argv(&spec.entrypoint))}
                {opt("Command", argv(&spec.command))}
                {row("Ports", ports_to_text(&spec.ports))}
                {row("Replicas", spec.replicas.to_string())}
                {row("CPUs", spec.resources.cpus.map(fmt_cpus).unwrap_or_default())}
                {row("Memory", spec.resources.memory_mb.map(|m| format!("{m} MB")).unwrap_or_default())}
                {row("Health check", spec.health_check.as_ref().map(describe_check).unwrap_or_default())}
                {opt(
                    "Volumes",
                    lines(spec.volumes.iter().map(|v| format!("{}:{}{}", v.source, v.target, if v.read_only { ":ro" } else { "" })).collect()),
                )}
                {opt("Tmpfs", tmpfs_text(&spec.tmpfs))}
                {(!files.is_empty()).then(|| view! {
                    <dt>"Config files"</dt>
                    <dd data-test="spec-config-files"><ConfigFiles files=files /></dd>
                })}
                {opt("Extra hosts", lines(spec.extra_hosts.iter().map(|e| format!("{} → {}", e.host, e.ip)).collect()))}
                {opt("Aliases", lines(spec.aliases.iter().map(ToString::to_string).collect()))}
                {opt("Stop grace", spec.stop_grace_period_secs.map(|g| format!("{g} s")).unwrap_or_default())}
                {row("User", h.user.clone().unwrap_or_default())}
                {row("Hardening", hardening)}
                {row("Environment", env_to_text(&spec.env))}
                {row(
                    "Secrets",
                    lines(spec.secrets.iter().map(|s| format!("{} ← {}", s.env, s.secret)).collect()),
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
        <form class="card form-card" on:submit=handler(submit) data-test="edit-service-form" novalidate>
            <h2>"Edit service"</h2>
            <FormAlert errors />
            <ServiceFields state errors />
            <div class="form-actions">
                <button class="btn btn-primary" type="submit" data-test="edit-service-submit">"Save"</button>
            </div>
        </form>
    }
}

/// A health check in a few words: `GET :8080/health`, `TCP :5432`, `exec pg_isready`.
fn describe_probe(p: slipway_types::api::Probe<'_>) -> String {
    use slipway_types::api::Probe;
    match p {
        Probe::Http { path, port } => format!("GET :{port}{path}"),
        Probe::Tcp { port } => format!("TCP :{port}"),
        Probe::Exec { command } => format!("exec {}", argv_text(command)),
    }
}

/// The probe and its timings: `exec pg_isready -U app, every 2 s, timeout
/// 1 s, 5 retries, start period 10 s`.
fn describe_check(h: &HealthCheck) -> String {
    let mut s = h.probe().map(describe_probe).unwrap_or_default();
    s.push_str(&format!(
        ", every {} s, timeout {} s, {} retries",
        h.interval_secs, h.timeout_secs, h.retries
    ));
    if h.start_period_secs > 0 {
        s.push_str(&format!(", start period {} s", h.start_period_secs));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_types::ErrorCode;

    #[test]
    fn deploy_requests_from_the_panel() {
        let img = deploy_request(DeploySource::Image, " nginx:1.27 ", None).expect("image");
        assert_eq!(
            img.image.map(|i| i.to_string()).as_deref(),
            Some("nginx:1.27")
        );
        assert_eq!(img.release_id, None);

        let empty = deploy_request(DeploySource::Image, "  ", None).expect_err("empty");
        assert_eq!(empty.field.as_deref(), Some("image"));
        assert_eq!(empty.error, ErrorCode::InvalidInput);

        let r = Uuid::from_u128(7);
        let rel = deploy_request(DeploySource::Release, "ignored", Some(r)).expect("release");
        assert_eq!((rel.release_id, rel.image), (Some(r), None));

        let none = deploy_request(DeploySource::Release, "x", None).expect_err("none");
        assert_eq!(none.field.as_deref(), Some("release"));
    }

    #[test]
    fn health_checks_read_with_their_timings() {
        let mut h = HealthCheck::exec(vec!["pg_isready".into(), "-U".into(), "app".into()]);
        h.start_period_secs = 10;
        assert_eq!(
            describe_check(&h),
            "exec pg_isready -U app, every 10 s, timeout 3 s, 3 retries, start period 10 s"
        );
        let port = slipway_types::Port::try_from(5432).unwrap_or_else(|_| unreachable!());
        assert_eq!(
            describe_check(&HealthCheck::tcp(port)),
            "TCP :5432, every 10 s, timeout 3 s, 3 retries"
        );
    }
}
