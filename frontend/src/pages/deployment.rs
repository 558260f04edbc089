//! `/deployments/:id`: one deployment with its step log, live.
//!
//! The events stream (`GET /deployments/{id}/events`) replays the steps so far
//! and the current state, then follows. Should it break before the deployment
//! is over, the page polls `GET /deployments/{id}` instead; on `lagged`
//! (events were dropped) it reads the deployment again.
use super::use_id_param;
use crate::components::handler;
use crate::components::Fetch;
use crate::{
    api,
    app::use_session,
    components::{
        ui::{fmt_opt_time, fmt_time},
        ErrorBox, FormAlert, FormErrors, Loading, StateBadge,
    },
    sse::{poll_while, EventStream, SseMsg, StreamSlot},
};
use leptos::{prelude::*, task::spawn_local};
use slipway_types::{
    api::{Deployment, DeploymentEvent, DeploymentState, DeploymentStep},
    ApiErrorBody, Role,
};
use std::time::Duration;

/// What the page shows live: fed by stream events or by a fresh read.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveDeployment {
    pub steps: Vec<DeploymentStep>,
    pub state: DeploymentState,
    pub reason: Option<String>,
}

impl LiveDeployment {
    pub fn of(d: &Deployment) -> Self {
        Self {
            steps: d.steps.clone(),
            state: d.state,
            reason: d.reason.clone(),
        }
    }

    /// The stream (re)connected: it replays every step, so start over.
    pub fn restart(&mut self) {
        self.steps.clear();
    }

    pub fn apply(&mut self, ev: DeploymentEvent) {
        match ev {
            // A step seen already (replayed after a reload) is not repeated.
            DeploymentEvent::Step(s) => {
                if !self.steps.contains(&s) {
                    self.steps.push(s);
                }
            }
            DeploymentEvent::State { state, reason } => {
                self.state = state;
                self.reason = reason;
            }
        }
    }

    pub fn is_over(&self) -> bool {
        self.state.is_terminal()
    }
}

/// The class of a step-log line: a release command's output and the traffic
/// switch stand out from the rollout's other steps.
fn step_class(message: &str) -> &'static str {
    if message.contains("release command") {
        "step step-release"
    } else if message.contains("traffic switched") {
        "step step-switch"
    } else {
        "step"
    }
}

/// `(css class, title)` of the outcome box of a finished deployment.
fn outcome(state: DeploymentState) -> (&'static str, &'static str) {
    match state {
        DeploymentState::Succeeded => ("alert alert-success", "Deployed: the new release serves."),
        DeploymentState::Failed => ("alert alert-error", "Failed."),
        DeploymentState::RolledBack => (
            "alert alert-error",
            "Rolled back: the previous release serves again.",
        ),
        DeploymentState::Cancelled => ("alert alert-neutral", "Cancelled."),
        DeploymentState::Rejected => ("alert alert-error", "Rejected by an approver."),
        DeploymentState::Queued | DeploymentState::Running | DeploymentState::AwaitingApproval => {
            ("alert alert-neutral", "")
        }
    }
}

#[component]
pub fn DeploymentPage() -> impl IntoView {
    let id = use_id_param();
    let data = Fetch::new(move || {
        let id = id.get();
        async move {
            let id = id.ok_or_else(|| api::client_error("bad deployment id"))?;
            let d = api::deployment(id).await?;
            let service = api::service(d.service_id)
                .await
                .map(|s| s.name.to_string())
                .unwrap_or_else(|_| "service".into());
            Ok::<_, ApiErrorBody>((service, d))
        }
    });
    move || match data.get() {
        None => view! { <Loading /> }.into_any(),
        Some(Err(e)) => view! { <ErrorBox error=e /> }.into_any(),
        Some(Ok((service_name, d))) => view! { <DeploymentView service_name d /> }.into_any(),
    }
}

#[component]
fn DeploymentView(service_name: String, d: Deployment) -> impl IntoView {
    let session = use_session();
    let id = d.id;
    let header = RwSignal::new(d.clone());
    let live = RwSignal::new(LiveDeployment::of(&d));
    let polling = RwSignal::new(false);
    let errors = FormErrors::new(&[]);
    let slot = StreamSlot::new();

    // A fresh read: header times, and the steps when the stream is down.
    let reload = move || {
        spawn_local(async move {
            if let Ok(d) = api::deployment(id).await {
                live.set(LiveDeployment::of(&d));
                header.set(d);
            }
        });
    };
    if !d.state.is_terminal() {
        let stream = EventStream::open(&api::deployment_events_url(id), move |source, msg| {
            match msg {
                SseMsg::Open => {
                    polling.set(false);
                    live.update(LiveDeployment::restart);
                }
                SseMsg::Message(data) => {
                    let Some(ev) = crate::api::parse_json::<DeploymentEvent>(&data) else {
                        return;
                    };
                    let ended =
                        matches!(&ev, DeploymentEvent::State { state, .. } if state.is_terminal());
                    live.update(|l| l.apply(ev));
                    if ended {
                        source.close();
                        reload();
                    }
                }
                // Missed steps: a fresh read has them all.
                SseMsg::Lagged(_) => reload(),
                SseMsg::Error { .. } | SseMsg::End(_) => {
                    source.close();
                    if !live.with_untracked(LiveDeployment::is_over) {
                        polling.set(true);
                        reload();
                    }
                }
            }
        });
        if stream.is_err() {
            polling.set(true);
        }
        slot.set(stream.ok());
    }
    poll_while(
        Duration::from_secs(2),
        move || polling.get_untracked() && !live.with_untracked(LiveDeployment::is_over),
        reload,
    );

    let cancel = move |_| {
        errors.clear();
        spawn_local(async move {
            match api::cancel_deployment(id).await {
                Ok(d) => {
                    live.update(|l| {
                        l.state = d.state;
                        l.reason = d.reason.clone();
                    });
                    header.set(d);
                }
                Err(e) => errors.set(e),
            }
        });
    };
    let can_cancel = move || {
        !live.with(LiveDeployment::is_over) && session.role().is_some_and(|r| r >= Role::Deployer)
    };
    let (sid, number) = (d.service_id, d.release_number);
    let sname = service_name.clone();
    view! {
        <nav class="breadcrumbs">
            <a href="/">"Overview"</a>
            <span>"/"</span>
            <a href=format!("/services/{sid}")>{service_name.clone()}</a>
            <span>"/"</span>
            <span>{format!("Deployment of release #{number}")}</span>
        </nav>
        <div class="page-header">
            <div>
                <h1 data-test="deployment-title">
                    {format!("{service_name} · release #{number}")}
                    <span id="deployment-state" data-test="deployment-state">
                        {move || view! { <StateBadge state=live.with(|l| l.state) /> }}
                    </span>
                </h1>
                <p class="muted mono">{d.image.to_string()}</p>
            </div>
            <div class="actions">
                <Show when=can_cancel>
                    <button class="btn btn-danger" id="cancel-deployment" data-test="cancel-deployment" on:click=handler(cancel)>
                        "Cancel"
                    </button>
                </Show>
            </div>
        </div>
        <FormAlert errors />
        {move || {
            let (state, reason) = live.with(|l| (l.state, l.reason.clone()));
            state.is_terminal().then(|| {
                let (class, title) = outcome(state);
                view! {
                    <div class=class data-test="deployment-outcome" id="deployment-outcome">
                        <strong>{title}</strong>
                        {reason.map(|r| view! { <pre class="reason" data-test="deployment-reason">{r}</pre> })}
                    </div>
                }
            })
        }}
        <div class="two-col wide-left">
            <section class="card" data-test="steps">
                <div class="card-header">
                    <h2>"Steps"</h2>
                    <span class="muted small" data-test="step-log-mode">
                        {move || {
                            if live.with(LiveDeployment::is_over) {
                                ""
                            } else if polling.get() {
                                "refreshing every 2 s"
                            } else {
                                "live"
                            }
                        }}
                    </span>
                </div>
                <div class="step-log" id="step-log" data-test="step-log">
                    {move || {
                        live.with(|l| {
                            if l.steps.is_empty() {
                                view! { <div class="muted log-empty">"No steps yet."</div> }.into_any()
                            } else {
                                l.steps
                                    .iter()
                                    .map(|s| view! {
                                        <div class=step_class(&s.message) data-test="step">
                                            <span class="step-at">{crate::components::ui::fmt_clock(&s.at)}</span>
                                            <span class="step-msg">{s.message.clone()}</span>
                                        </div>
                                    })
                                    .collect_view()
                                    .into_any()
                            }
                        })
                    }}
                </div>
            </section>
            <section class="card" data-test="deployment-facts">
                <div class="card-header"><h2>"Deployment"</h2></div>
                {move || header.with(|h| view! {
                    <dl class="spec">
                        <dt>"Service"</dt>
                        <dd><a href=format!("/services/{sid}")>{sname.clone()}</a></dd>
                        <dt>"Release"</dt>
                        <dd data-test="deployment-release">{format!("#{}", h.release_number)}</dd>
                        <dt>"Image"</dt>
                        <dd class="mono">{h.image.to_string()}</dd>
                        <dt>"Requested by"</dt>
                        <dd data-test="deployment-requested-by">{h.requested_by.clone()}</dd>
                        <dt>"Created"</dt>
                        <dd>{fmt_time(&h.created_at)}</dd>
                        <dt>"Started"</dt>
                        <dd>{fmt_opt_time(&h.started_at)}</dd>
                        <dt>"Finished"</dt>
                        <dd>{fmt_opt_time(&h.finished_at)}</dd>
                    </dl>
                })}
            </section>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn step(m: &str) -> DeploymentEvent {
        DeploymentEvent::Step(DeploymentStep {
            at: Utc
                .with_ymd_and_hms(2026, 11, 30, 9, 0, 0)
                .single()
                .expect("time"),
            message: m.into(),
        })
    }

    #[test]
    fn events_build_the_log_and_a_reconnect_replays_it() {
        let mut l = LiveDeployment {
            steps: vec![],
            state: DeploymentState::Queued,
            reason: None,
        };
        l.apply(step("pulling"));
        l.apply(DeploymentEvent::State {
            state: DeploymentState::Running,
            reason: None,
        });
        l.apply(step("starting"));
        assert_eq!(l.steps.len(), 2);
        assert!(!l.is_over());
        // A step seen already is not repeated.
        l.apply(step("starting"));
        assert_eq!(l.steps.len(), 2);
        // The stream reconnects and replays: no duplicates.
        l.restart();
        l.apply(step("pulling"));
        l.apply(step("starting"));
        l.apply(DeploymentEvent::State {
            state: DeploymentState::Failed,
            reason: Some("unhealthy\nlast logs: boom".into()),
        });
        assert_eq!(
            l.steps
                .iter()
                .map(|s| s.message.as_str())
                .collect::<Vec<_>>(),
            ["pulling", "starting"]
        );
        assert!(l.is_over());
        assert_eq!(l.reason.as_deref(), Some("unhealthy\nlast logs: boom"));
    }

    #[test]
    fn events_decode_from_the_wire() {
        let s: DeploymentEvent = crate::api::parse_json(
            r#"{"type":"step","at":"2026-11-30T09:00:00Z","message":"pulling image"}"#,
        )
        .unwrap_or(DeploymentEvent::State {
            state: DeploymentState::Queued,
            reason: None,
        });
        assert!(matches!(s, DeploymentEvent::Step(ref st) if st.message == "pulling image"));
    }

    #[test]
    fn release_command_output_and_the_switch_stand_out() {
        assert_eq!(
            step_class("worker-1: release command: alembic upgrade head"),
            "step step-release"
        );
        assert_eq!(step_class("worker-1: traffic switched"), "step step-switch");
        assert_eq!(step_class("worker-1: healthy"), "step");
    }

    #[test]
    fn only_finished_states_have_an_outcome_title() {
        for s in DeploymentState::ALL {
            assert_eq!(outcome(s).1.is_empty(), !s.is_terminal(), "{s:?}");
        }
    }
}
