//! `/hosts`: machines that run services.
use super::confirm;
use crate::{
    api::{self, invalid},
    app::use_session,
    components::{ui::fmt_opt_time, ErrorBox, FieldError, FormAlert, FormErrors, Loading},
};
use leptos::{prelude::*, task::spawn_local};
use slipway_types::{
    api::{Host, HostStatus, NewHost},
    ResourceName,
};

#[component]
pub fn HostsPage() -> impl IntoView {
    let session = use_session();
    let version = RwSignal::new(0u32);
    let hosts = LocalResource::new(move || {
        version.track();
        api::hosts()
    });
    let refresh = move || version.update(|v| *v += 1);
    view! {
        <div class="page-header">
            <div>
                <h1>"Hosts"</h1>
                <p class="muted">"Machines whose agent runs your services."</p>
            </div>
        </div>
        <Show when=move || session.is_admin()>
            <NewHostForm on_done=refresh />
        </Show>
        <section class="card">
            {move || match hosts.get() {
                None => view! { <Loading /> }.into_any(),
                Some(Err(e)) => view! { <ErrorBox error=e /> }.into_any(),
                Some(Ok(h)) if h.is_empty() => {
                    view! { <p class="muted card-body">"No hosts registered yet."</p> }.into_any()
                }
                Some(Ok(h)) => view! { <HostsTable hosts=h refresh /> }.into_any(),
            }}
        </section>
    }
}

fn status_badge(s: HostStatus) -> (&'static str, &'static str) {
    match s {
        HostStatus::Pending => ("pending", "badge-queued"),
        HostStatus::Online => ("online", "badge-succeeded"),
        HostStatus::Offline => ("offline", "badge-failed"),
        HostStatus::Revoked => ("revoked", "badge-cancelled"),
    }
}

#[component]
fn HostsTable(
    hosts: Vec<Host>,
    refresh: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let session = use_session();
    view! {
        <table class="table" data-test="hosts">
            <thead>
                <tr>
                    <th>"Name"</th>
                    <th>"Status"</th>
                    <th>"Labels"</th>
                    <th>"Last seen"</th>
                    <th></th>
                </tr>
            </thead>
            <tbody>
                {hosts
                    .into_iter()
                    .map(|h| {
                        let (label, class) = status_badge(h.status);
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
                        view! {
                            <tr data-test=format!("host-row-{}", h.name)>
                                <td>{h.name.to_string()}</td>
                                <td><span class=format!("badge {class}")>{label}</span></td>
                                <td class="small mono">
                                    {h.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")}
                                </td>
                                <td class="muted small">{fmt_opt_time(&h.last_seen_at)}</td>
                                <td class="right">
                                    <Show when=move || session.is_admin()>
                                        <button class="btn btn-ghost btn-sm" on:click=remove>"Remove"</button>
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
fn NewHostForm(on_done: impl Fn() + Copy + Send + Sync + 'static) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let errors = FormErrors::new(&["name"]);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        errors.clear();
        match ResourceName::try_from(name.get_untracked().trim()) {
            Err(m) => errors.set(invalid("name", m)),
            Ok(n) => {
                let body = NewHost {
                    name: n,
                    environments: Vec::new(),
                    labels: Default::default(),
                };
                spawn_local(async move {
                    match api::create_host(&body).await {
                        Ok(_) => {
                            name.set(String::new());
                            on_done();
                        }
                        Err(e) => errors.set(e),
                    }
                });
            }
        }
    };
    view! {
        <form class="card inline-form card-body" on:submit=submit data-test="host-form" novalidate>
            <FormAlert errors />
            <div class="form-row">
                <div class="field grow">
                    <label for="host-name">"New host name"</label>
                    <input id="host-name" name="name" placeholder="worker-1" bind:value=name />
                    <FieldError errors field="name" />
                </div>
                <button class="btn btn-primary align-end" type="submit" data-test="host-submit">"Add host"</button>
            </div>
        </form>
    }
}
