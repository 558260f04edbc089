//! `/hosts`: machines that run services. Adding a host shows its agent's
//! enrollment command once.
use super::confirm;
use crate::components::handler;
use crate::components::Fetch;
use crate::{
    api::{self, invalid},
    app::use_session,
    components::{
        envs::{EnvChips, Envs},
        ui::{fmt_bytes, fmt_opt_time, fmt_time},
        ErrorBox, FieldError, FormAlert, FormErrors, HostStatusBadge, Loading,
    },
    sse::{poll_while, use_live_events},
};
use leptos::{prelude::*, task::spawn_local};
use slipway_types::{
    api::{Host, HostEnrollment, LiveEvent, NewHost},
    ResourceName,
};
use std::time::Duration;

#[component]
pub fn HostsPage() -> impl IntoView {
    let session = use_session();
    let version = RwSignal::new(0u32);
    let hosts = Fetch::new(move || {
        version.track();
        api::hosts()
    });
    let envs = Envs::load();
    let enrollment = RwSignal::new(None::<(String, HostEnrollment)>);
    let refresh = move || version.update(|v| *v += 1);
    let live = use_live_events(move |ev| {
        if ev.is_none_or(|e| matches!(e, LiveEvent::Host { .. })) {
            refresh();
        }
    });
    // Without the live stream, refresh every 10 s.
    poll_while(
        Duration::from_secs(10),
        move || !live.get_untracked(),
        refresh,
    );
    view! {
        <div class="page-header">
            <div>
                <h1>"Hosts"</h1>
                <p class="muted">"Machines whose agent runs your services."</p>
            </div>
        </div>
        {move || enrollment.get().map(|(name, e)| view! {
            <EnrollmentOnce host_name=name enrollment=e on_close=move || enrollment.set(None) />
        })}
        <Show when=move || session.is_admin()>
            <NewHostForm envs on_created=move |name, e| {
                enrollment.set(Some((name, e)));
                refresh();
            } on_failed=refresh />
        </Show>
        <section class="card">
            {move || match hosts.get() {
                None => view! { <Loading /> }.into_any(),
                Some(Err(e)) => view! { <ErrorBox error=e /> }.into_any(),
                Some(Ok(h)) if h.is_empty() => {
                    view! { <p class="muted card-body">"No hosts registered yet."</p> }.into_any()
                }
                Some(Ok(h)) => view! { <HostsTable hosts=h envs refresh /> }.into_any(),
            }}
        </section>
    }
}

#[component]
fn HostsTable(
    hosts: Vec<Host>,
    envs: Envs,
    refresh: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let session = use_session();
    view! {
        <table class="table" data-test="hosts">
            <thead>
                <tr>
                    <th>"Name"</th>
                    <th>"Status"</th>
                    <th>"Environments"</th>
                    <th>"Docker"</th>
                    <th>"CPUs"</th>
                    <th>"Memory"</th>
                    <th>"Last seen"</th>
                    <th></th>
                </tr>
            </thead>
            <tbody>
                {hosts
                    .into_iter()
                    .map(|h| {
                        let id = h.id;
                        let remove = move |_| {
                            if confirm("Remove this host?") {
                                spawn_local(async move {
                                    if api::delete_host(id).await.is_ok() {
                                        refresh();
                                    }
                                });
                            }
                        };
                        let env_ids = h.environments.clone();
                        let facts = h.facts.clone();
                        view! {
                            <tr data-test=format!("host-row-{}", h.name)>
                                <td>
                                    <a href=format!("/hosts/{id}") data-test="host-link">{h.name.to_string()}</a>
                                    <div class="small mono muted">
                                        {h.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")}
                                    </div>
                                </td>
                                <td><HostStatusBadge status=h.status /></td>
                                <td class="small">
                                    {move || {
                                        if env_ids.is_empty() {
                                            "—".to_owned()
                                        } else {
                                            env_ids.iter().map(|e| envs.name(Some(*e))).collect::<Vec<_>>().join(", ")
                                        }
                                    }}
                                </td>
                                <td class="small mono">{facts.as_ref().map(|f| f.docker_version.clone()).unwrap_or_else(|| "—".into())}</td>
                                <td>{facts.as_ref().map(|f| f.cpus.to_string()).unwrap_or_else(|| "—".into())}</td>
                                <td class="small">{facts.as_ref().map(|f| fmt_bytes(f.memory_bytes)).unwrap_or_else(|| "—".into())}</td>
                                <td class="muted small">{fmt_opt_time(&h.last_seen_at)}</td>
                                <td class="right">
                                    <Show when=move || session.is_admin()>
                                        <button class="btn btn-ghost btn-sm" data-test="remove-host" on:click=handler(remove)>"Remove"</button>
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

/// Creates the host, then asks for its enrollment command.
#[component]
fn NewHostForm(
    envs: Envs,
    on_created: impl Fn(String, HostEnrollment) + Copy + 'static,
    on_failed: impl Fn() + Copy + 'static,
) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let chosen = RwSignal::new(Vec::<uuid::Uuid>::new());
    let errors = FormErrors::new(&["name"]);
    let busy = RwSignal::new(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        errors.clear();
        match ResourceName::try_from(name.get_untracked().trim()) {
            Err(m) => errors.set(invalid("name", m)),
            Ok(n) => {
                let body = NewHost {
                    name: n,
                    environments: chosen.get_untracked(),
                    labels: Default::default(),
                };
                busy.set(true);
                spawn_local(async move {
                    match api::create_host(&body).await {
                        Ok(host) => {
                            name.set(String::new());
                            chosen.set(Vec::new());
                            match api::enroll_host(host.id).await {
                                Ok(e) => on_created(host.name.to_string(), e),
                                Err(mut e) => {
                                    e.message = format!(
                                        "The host was added, but no enrollment command could be made: {}. Open the host to try again.",
                                        e.message
                                    );
                                    errors.set(e);
                                    on_failed();
                                }
                            }
                        }
                        Err(e) => errors.set(e),
                    }
                    busy.set(false);
                });
            }
        }
    };
    view! {
        <form class="card inline-form card-body" on:submit=handler(submit) data-test="host-form" novalidate>
            <FormAlert errors />
            <div class="form-row">
                <div class="field grow">
                    <label for="host-name">"New host name"</label>
                    <input id="host-name" name="name" placeholder="worker-1" bind:value=name />
                    <FieldError errors field="name" />
                </div>
                <button class="btn btn-primary align-end" type="submit" data-test="host-submit" disabled=move || busy.get()>
                    "Add host"
                </button>
            </div>
            <div class="field env-picker">
                <label>"Environments it serves"</label>
                <EnvChips envs chosen test="host-form-env" />
            </div>
        </form>
    }
}

/// The enrollment command, shown once with a Copy button (the token in it
/// cannot be read back).
#[component]
pub fn EnrollmentOnce(
    host_name: String,
    enrollment: HostEnrollment,
    on_close: impl Fn() + Copy + 'static,
) -> impl IntoView {
    let copied = RwSignal::new(false);
    let command = enrollment.command.clone();
    let copy = move |_| {
        if let Some(w) = web_sys::window() {
            let _ = w.navigator().clipboard().write_text(&command);
            copied.set(true);
        }
    };
    view! {
        <div class="card secret-once enroll-once" data-test="enroll-command" id="enroll-command">
            <div>
                <strong>{format!("Run this on {host_name} to start its agent.")}</strong>
                " The command holds a one-time token: it is shown only now and expires "
                {fmt_time(&enrollment.expires_at)}
                "."
            </div>
            <div class="secret-row">
                <pre class="secret enroll-command" data-test="enroll-command-value">{enrollment.command}</pre>
                <button class="btn btn-sm" on:click=handler(copy) data-test="copy-enroll-command">
                    {move || if copied.get() { "Copied" } else { "Copy" }}
                </button>
                <button class="btn btn-ghost btn-sm" data-test="enroll-done" on:click=handler(move |_| on_close())>"Done"</button>
            </div>
        </div>
    }
}
