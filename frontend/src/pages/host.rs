//! `/hosts/:id`: what the agent reported (facts), the live containers with
//! their resource use, links to their logs; enroll again or revoke.
use super::{confirm, use_id_param};
use crate::components::handler;
use crate::components::Fetch;
use crate::{
    api,
    app::use_session,
    components::{
        envs::{EnvChips, Envs},
        ui::{fmt_bytes, fmt_opt_time, fmt_percent, fmt_time},
        ErrorBox, FormAlert, FormErrors, HostStatusBadge, Loading,
    },
    pages::hosts::EnrollmentOnce,
    sse::{poll_while, use_live_events},
};
use leptos::{prelude::*, task::spawn_local};
use slipway_types::{
    agent::{ContainerHealth, ContainerState, ContainerStats, ContainerStatus, HostFacts},
    api::{Host, HostEnrollment, HostStatus, LiveEvent, UpdateHost},
};
use std::time::Duration;
use uuid::Uuid;

#[component]
pub fn HostPage() -> impl IntoView {
    let id = use_id_param();
    let version = RwSignal::new(0u32);
    let data = Fetch::new(move || {
        version.track();
        let id = id.get();
        async move {
            let id = id.ok_or_else(|| api::client_error("bad host id"))?;
            api::host(id).await
        }
    });
    let refresh = move || version.update(|v| *v += 1);
    let live = use_live_events(move |ev| {
        let mine = |e: LiveEvent| matches!(e, LiveEvent::Host { id: h, .. } if Some(h) == id.get_untracked());
        if ev.is_none_or(mine) {
            refresh();
        }
    });
    // Containers and their CPU/memory change all the time: refresh every
    // 5 s while the agent is connected (every 10 s when the live stream is down).
    let online =
        move || data.with_untracked(|d| matches!(d, Some(Ok(h)) if h.status == HostStatus::Online));
    let ticks = StoredValue::new(0u32);
    poll_while(
        Duration::from_secs(5),
        move || {
            ticks.update_value(|t| *t = t.wrapping_add(1));
            online() || (!live.get_untracked() && ticks.get_value().is_multiple_of(2))
        },
        refresh,
    );
    // Outside the view, so a refresh keeps them (the command is shown once).
    let envs = Envs::load();
    let errors = FormErrors::new(&[]);
    let enrollment = RwSignal::new(None::<HostEnrollment>);
    // The page is rebuilt only when the host itself changes (status,
    // environments, facts); containers, stats and "last seen" update in place.
    let shell = Memo::new(move |_| {
        data.get().map(|r| {
            r.map(|mut h| {
                h.containers.clear();
                h.stats.clear();
                h.last_seen_at = None;
                h
            })
        })
    });
    let current = Signal::derive(move || data.get().and_then(Result::ok));
    move || match shell.get() {
        None => view! { <Loading /> }.into_any(),
        Some(Err(e)) => view! { <ErrorBox error=e /> }.into_any(),
        Some(Ok(host)) => {
            view! { <HostView host current envs errors enrollment refresh /> }.into_any()
        }
    }
}

#[component]
fn HostView(
    host: Host,
    current: Signal<Option<Host>>,
    envs: Envs,
    errors: FormErrors,
    enrollment: RwSignal<Option<HostEnrollment>>,
    refresh: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let session = use_session();
    let id = host.id;
    let revoke = move |_| {
        if !confirm("Revoke this host? Its agent is disconnected and can never connect again.") {
            return;
        }
        errors.clear();
        spawn_local(async move {
            match api::revoke_host(id).await {
                Ok(_) => refresh(),
                Err(e) => errors.set(e),
            }
        });
    };
    let enroll = move |_| {
        errors.clear();
        spawn_local(async move {
            match api::enroll_host(id).await {
                Ok(e) => enrollment.set(Some(e)),
                Err(e) => errors.set(e),
            }
        });
    };
    let (status, name) = (host.status, host.name.to_string());
    let env_ids = host.environments.clone();
    let labels = host
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ");
    let name2 = name.clone();
    view! {
        <nav class="breadcrumbs">
            <a href="/hosts">"Hosts"</a>
            <span>"/"</span>
            <span>{name.clone()}</span>
        </nav>
        <div class="page-header">
            <div>
                <h1 data-test="host-name">{name.clone()}<HostStatusBadge status /></h1>
                <p class="muted" data-test="host-last-seen">
                    {move || format!("Last seen {}", fmt_opt_time(&current.with(|h| h.as_ref().and_then(|h| h.last_seen_at))))}
                </p>
            </div>
            <Show when=move || session.is_admin() && status != HostStatus::Revoked>
                <div class="actions">
                    <button class="btn" data-test="enroll-host" id="enroll-host" on:click=handler(enroll)>
                        {if status == HostStatus::Pending { "Enrollment command" } else { "Enroll again" }}
                    </button>
                    <button class="btn btn-danger" data-test="revoke-host" id="revoke-host" on:click=handler(revoke)>
                        "Revoke"
                    </button>
                </div>
            </Show>
        </div>
        <FormAlert errors />
        {move || enrollment.get().map(|e| view! {
            <EnrollmentOnce host_name=name2.clone() enrollment=e on_close=move || enrollment.set(None) />
        })}
        <ContainersCard host=id current status />
        <div class="two-col">
            <section class="card" data-test="host-facts">
                <div class="card-header"><h2>"Host"</h2></div>
                <dl class="spec">
                    <dt>"Environments"</dt>
                    <dd data-test="host-environments">
                        {
                            let env_ids = env_ids.clone();
                            move || if env_ids.is_empty() {
                                "—".to_owned()
                            } else {
                                env_ids.iter().map(|e| envs.name(Some(*e))).collect::<Vec<_>>().join(", ")
                            }
                        }
                    </dd>
                    <dt>"Labels"</dt>
                    <dd class="mono">{if labels.is_empty() { "—".to_owned() } else { labels }}</dd>
                    <dt>"Created"</dt>
                    <dd>{fmt_time(&host.created_at)}</dd>
                    {facts_rows(host.facts.clone())}
                </dl>
            </section>
            <Show when=move || session.is_admin() && status != HostStatus::Revoked>
                <HostEnvironments host=id current=env_ids.clone() envs errors refresh />
            </Show>
        </div>
    }
}

/// Which environments deploy to this host (admin).
#[component]
fn HostEnvironments(
    host: Uuid,
    current: Vec<Uuid>,
    envs: Envs,
    errors: FormErrors,
    refresh: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let chosen = RwSignal::new(current.clone());
    let changed = move || {
        chosen.with(|c| {
            let (mut a, mut b) = (c.clone(), current.clone());
            a.sort();
            b.sort();
            a != b
        })
    };
    let save = move |_| {
        errors.clear();
        let body = UpdateHost {
            name: None,
            environments: Some(chosen.get_untracked()),
            labels: None,
        };
        spawn_local(async move {
            match api::update_host(host, &body).await {
                Ok(_) => refresh(),
                Err(e) => errors.set(e),
            }
        });
    };
    view! {
        <section class="card card-body" data-test="host-environments-form">
            <div class="card-header-inline">
                <h2>"Environments served"</h2>
                <button class="btn btn-primary btn-sm" data-test="host-environments-save" disabled=move || !changed() on:click=handler(save)>
                    "Save"
                </button>
            </div>
            <p class="muted small">"Deployments of the chosen environments run on this host."</p>
            <EnvChips envs chosen test="host-env" />
        </section>
    }
}

fn facts_rows(facts: Option<HostFacts>) -> impl IntoView {
    let Some(f) = facts else {
        return view! {
            <dt>"Agent"</dt>
            <dd class="muted" data-test="facts-none">"No agent has connected yet."</dd>
        }
        .into_any();
    };
    let row = |k: &'static str, v: String| {
        view! {
            <dt>{k}</dt>
            <dd class="mono" data-test=format!("fact-{}", k.to_ascii_lowercase().replace(' ', "-"))>{v}</dd>
        }
    };
    view! {
        {row("Hostname", f.hostname)}
        {row("OS", format!("{} ({})", f.os, f.arch))}
        {row("Docker", f.docker_version)}
        {row("CPUs", f.cpus.to_string())}
        {row("Memory", fmt_bytes(f.memory_bytes))}
        {row("Disk free", f.disk_free_bytes.map(fmt_bytes).unwrap_or_else(|| "—".into()))}
        {row("Agent", f.agent_version)}
    }
    .into_any()
}

fn state_class(s: ContainerState) -> &'static str {
    match s {
        ContainerState::Running => "badge-succeeded",
        ContainerState::Created | ContainerState::Restarting | ContainerState::Removing => {
            "badge-running"
        }
        ContainerState::Exited | ContainerState::Dead => "badge-failed",
        ContainerState::Paused | ContainerState::Unknown => "badge-cancelled",
    }
}

fn state_label(s: ContainerState) -> &'static str {
    match s {
        ContainerState::Created => "created",
        ContainerState::Running => "running",
        ContainerState::Restarting => "restarting",
        ContainerState::Exited => "exited",
        ContainerState::Paused => "paused",
        ContainerState::Dead => "dead",
        ContainerState::Removing => "removing",
        ContainerState::Unknown => "unknown",
    }
}

fn health_label(h: ContainerHealth) -> (&'static str, &'static str) {
    match h {
        ContainerHealth::Healthy => ("healthy", "badge-succeeded"),
        ContainerHealth::Unhealthy => ("unhealthy", "badge-failed"),
        ContainerHealth::Starting => ("starting", "badge-running"),
        ContainerHealth::None => ("no check", "badge-none"),
    }
}

/// `12.5 %` of one core; memory with its limit when there is one.
fn usage(stats: Option<&ContainerStats>) -> (String, String) {
    match stats {
        None => ("—".into(), "—".into()),
        Some(s) => (
            fmt_percent(s.cpu_percent),
            match s.memory_limit_bytes {
                Some(l) if l > 0 => format!("{} / {}", fmt_bytes(s.memory_bytes), fmt_bytes(l)),
                _ => fmt_bytes(s.memory_bytes),
            },
        ),
    }
}

#[component]
fn ContainersCard(host: Uuid, current: Signal<Option<Host>>, status: HostStatus) -> impl IntoView {
    view! {
        <section class="card" data-test="host-containers">
            <div class="card-header"><h2>"Containers"</h2></div>
            {move || {
                let (containers, stats) = current
                    .with(|h| h.as_ref().map(|h| (h.containers.clone(), h.stats.clone())))
                    .unwrap_or_default();
                containers_table(host, containers, stats, status)
            }}
        </section>
    }
}

fn containers_table(
    host: Uuid,
    containers: Vec<ContainerStatus>,
    stats: Vec<ContainerStats>,
    status: HostStatus,
) -> AnyView {
    if containers.is_empty() {
        let msg = if status == HostStatus::Online {
            "No Slipway containers on this host."
        } else {
            "Containers are shown while the agent is connected."
        };
        return view! { <p class="muted card-body">{msg}</p> }.into_any();
    }
    view! {
        <div class="table-scroll">
            <table class="table" data-test="containers">
                <thead>
                    <tr>
                        <th>"Container"</th>
                        <th>"Release"</th>
                        <th>"State"</th>
                        <th>"Health"</th>
                        <th>"Serving"</th>
                        <th>"CPU"</th>
                        <th>"Memory"</th>
                        <th></th>
                    </tr>
                </thead>
                <tbody>
                    {containers
                        .into_iter()
                        .map(|c| {
                            let (cpu, mem) = usage(stats.iter().find(|s| s.id == c.id));
                            let (health, health_class) = health_label(c.health);
                            let logs = format!("/hosts/{host}/containers/{}/logs", api::enc(&c.id));
                            view! {
                                <tr data-test=format!("container-{}", c.name)>
                                    <td>
                                        <a href=format!("/services/{}", c.service_id) class="mono small">{c.name.clone()}</a>
                                        <div class="small mono muted">{c.image.clone()}</div>
                                    </td>
                                    <td>
                                        <a href=format!("/deployments/{}", c.deployment_id)>{format!("#{}", c.release_number)}</a>
                                    </td>
                                    <td>
                                        <span class=format!("badge {}", state_class(c.state)) data-test="container-state">
                                            {state_label(c.state)}
                                        </span>
                                    </td>
                                    <td><span class=format!("badge {health_class}")>{health}</span></td>
                                    <td data-test="container-serving">{if c.serving { "yes" } else { "no" }}</td>
                                    <td class="small nowrap" data-test="container-cpu">{cpu}</td>
                                    <td class="small nowrap" data-test="container-memory">{mem}</td>
                                    <td class="right">
                                        <a class="btn btn-sm" href=logs data-test="container-logs">"Logs"</a>
                                    </td>
                                </tr>
                            }
                        })
                        .collect_view()}
                </tbody>
            </table>
        </div>
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_shows_cpu_and_memory_with_limit() {
        let s = ContainerStats {
            id: "c".into(),
            cpu_percent: 12.345,
            memory_bytes: 64 * 1024 * 1024,
            memory_limit_bytes: Some(256 * 1024 * 1024),
        };
        assert_eq!(
            usage(Some(&s)),
            ("12.3 %".to_owned(), "64 MiB / 256 MiB".to_owned())
        );
        let unlimited = ContainerStats {
            memory_limit_bytes: None,
            ..s
        };
        assert_eq!(usage(Some(&unlimited)).1, "64 MiB");
        assert_eq!(usage(None), ("—".to_owned(), "—".to_owned()));
    }
}
