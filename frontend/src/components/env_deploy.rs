//! What **Deploy environment** started: the deployments in dependency order
//! with their live state, and the services left alone.
//!
//! States follow the dashboard's live events (`GET /events`); the batch is
//! read again when the panel opens (events before the stream was connected
//! are missed), after `lagged`, and every 2 s while the stream is down.
use super::{handler, StateBadge};
use crate::{
    api,
    sse::{poll_while, use_live_events},
};
use leptos::{prelude::*, task::spawn_local};
use slipway_types::api::{DeploymentState, EnvironmentDeployment, LiveEvent};
use std::time::Duration;

/// One line about the batch: how far it got.
pub fn batch_summary(states: &[DeploymentState]) -> String {
    let n = states.len();
    let count = |s: DeploymentState| states.iter().filter(|x| **x == s).count();
    if states.iter().all(|s| s.is_terminal()) {
        let ok = count(DeploymentState::Succeeded);
        if ok == n {
            format!("Deployed {n} service(s) in dependency order.")
        } else {
            format!("{ok} of {n} deployment(s) succeeded.")
        }
    } else {
        let done = states.iter().filter(|s| s.is_terminal()).count();
        format!("Deploying {n} service(s) in dependency order: {done} done.")
    }
}

#[component]
pub fn EnvDeployResult(
    batch: EnvironmentDeployment,
    /// The environment's services: id, name and `depends_on` in words.
    names: Vec<(uuid::Uuid, String, String)>,
    /// Deploy again with `all: true` (when nothing had changed).
    redeploy_all: Callback<()>,
    on_close: Callback<()>,
) -> impl IntoView {
    let rows = RwSignal::new(batch.deployments);
    let unchanged = batch.unchanged;
    let reload = move || {
        let ids: Vec<_> = rows.with_untracked(|r| {
            r.iter()
                .filter(|d| !d.state.is_terminal())
                .map(|d| d.id)
                .collect()
        });
        spawn_local(async move {
            for id in ids {
                if let Ok(d) = api::deployment(id).await {
                    rows.update(|r| {
                        if let Some(old) = r.iter_mut().find(|o| o.id == id) {
                            *old = d;
                        }
                    });
                }
            }
        });
    };
    let live = use_live_events(move |ev| match ev {
        Some(LiveEvent::Deployment { id, state, .. }) => {
            let ours = rows.with_untracked(|r| r.iter().any(|d| d.id == id && d.state != state));
            if ours {
                rows.update(|r| {
                    r.iter_mut()
                        .filter(|d| d.id == id)
                        .for_each(|d| d.state = state)
                });
            }
        }
        Some(_) => {}
        None => reload(),
    });
    reload();
    poll_while(
        Duration::from_secs(2),
        move || {
            !live.get_untracked()
                && rows.with_untracked(|r| r.iter().any(|d| !d.state.is_terminal()))
        },
        reload,
    );
    let nothing = rows.with_untracked(Vec::is_empty);
    view! {
        <section class="card env-deploy" data-test="env-deploy">
            <div class="card-header">
                <h2>"Deploy environment"</h2>
                <button class="btn btn-ghost btn-sm" data-test="env-deploy-close" on:click=handler(move |_| on_close.run(()))>
                    "Close"
                </button>
            </div>
            {if nothing {
                view! {
                    <p class="card-body" data-test="env-deploy-nothing">
                        "Nothing to deploy: every service matches what serves. "
                        <button class="btn btn-sm" data-test="env-deploy-all" on:click=handler(move |_| redeploy_all.run(()))>
                            "Redeploy all"
                        </button>
                    </p>
                }
                    .into_any()
            } else {
                view! {
                    <p class="card-body" data-test="env-deploy-summary">
                        {move || rows.with(|r| batch_summary(&r.iter().map(|d| d.state).collect::<Vec<_>>()))}
                    </p>
                    <table class="table" data-test="env-deployments">
                        <thead>
                            <tr><th>"#"</th><th>"Service"</th><th>"Release"</th><th>"State"</th><th>"Waits for"</th></tr>
                        </thead>
                        <tbody>
                            {move || rows.with(|r| {
                                r.iter()
                                    .enumerate()
                                    .map(|(i, d)| {
                                        let (name, deps) = names
                                            .iter()
                                            .find(|n| n.0 == d.service_id)
                                            .map(|n| (n.1.clone(), n.2.clone()))
                                            .unwrap_or_default();
                                        view! {
                                            <tr data-test=format!("env-deployment-{name}") data-state=d.state.as_str()>
                                                <td class="muted">{i + 1}</td>
                                                <td><a href=format!("/services/{}", d.service_id)>{name.clone()}</a></td>
                                                <td>
                                                    <a href=format!("/deployments/{}", d.id) data-test="deployment-link">
                                                        {format!("#{}", d.release_number)}
                                                    </a>
                                                </td>
                                                <td><StateBadge state=d.state /></td>
                                                <td class="small">{deps}</td>
                                            </tr>
                                        }
                                    })
                                    .collect_view()
                            })}
                        </tbody>
                    </table>
                }
                    .into_any()
            }}
            {(!unchanged.is_empty()).then(|| view! {
                <p class="card-body muted small" data-test="env-unchanged">
                    "Unchanged: " <span class="mono">{unchanged.join(", ")}</span>
                </p>
            })}
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeploymentState::*;

    #[test]
    fn the_summary_follows_the_states() {
        assert_eq!(
            batch_summary(&[Succeeded, Running]),
            "Deploying 2 service(s) in dependency order: 1 done."
        );
        assert_eq!(
            batch_summary(&[Succeeded, Succeeded]),
            "Deployed 2 service(s) in dependency order."
        );
        assert_eq!(
            batch_summary(&[Failed, Cancelled]),
            "0 of 2 deployment(s) succeeded."
        );
    }
}
