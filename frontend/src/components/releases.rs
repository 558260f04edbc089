//! The service page's CI sections: trigger rules, releases (rollback) and
//! promotion.
use super::handler;
use crate::components::Fetch;
use crate::router::navigate;
use crate::{
    api::{self, invalid},
    components::{
        protect::TypedConfirm, ui::fmt_time, ErrorBox, FieldError, FormAlert, FormErrors, Loading,
    },
    pages::confirm,
};
use leptos::{prelude::*, task::spawn_local};
use slipway_types::{
    api::{
        CreateDeployment, Deployment, DeploymentState, Environment, NewTriggerRule, PromoteRequest,
        Release, TriggerEvent, TriggerRule, Validate,
    },
    ApiErrorBody, ErrorCode,
};
use uuid::Uuid;

/// Trigger rules of a service (admin).
#[component]
pub fn TriggerRules(service: Uuid) -> impl IntoView {
    let version = RwSignal::new(0u32);
    let list = Fetch::new(move || {
        version.track();
        api::triggers(service)
    });
    let errors = FormErrors::new(&[]);
    view! {
        <section class="card" data-test="triggers">
            <div class="card-header">
                <h2>"Trigger rules"</h2>
                <span class="muted small">"which webhook events cut a release"</span>
            </div>
            <FormAlert errors />
            {move || match list.get() {
                None => view! { <Loading /> }.into_any(),
                Some(Err(e)) => view! { <ErrorBox error=e /> }.into_any(),
                Some(Ok(l)) if l.is_empty() => view! { <p class="muted card-body">"No rules: webhooks cut nothing for this service."</p> }.into_any(),
                Some(Ok(l)) => view! {
                    <table class="table" data-test="triggers-table">
                        <thead><tr><th>"Event"</th><th>"Pattern"</th><th>"Image"</th><th>"Auto-deploy"</th><th></th></tr></thead>
                        <tbody>
                            {l.into_iter().map(|t| view! { <TriggerRow t errors on_deleted=move || version.update(|v| *v += 1) /> }).collect_view()}
                        </tbody>
                    </table>
                }.into_any(),
            }}
            <NewTriggerForm service on_done=move || version.update(|v| *v += 1) />
        </section>
    }
}

#[component]
fn TriggerRow(
    t: TriggerRule,
    errors: FormErrors,
    on_deleted: impl Fn() + Copy + 'static,
) -> impl IntoView {
    let id = t.id;
    let remove = move |_| {
        if !confirm("Delete this trigger rule?") {
            return;
        }
        spawn_local(async move {
            match api::delete_trigger(id).await {
                Ok(()) => on_deleted(),
                Err(e) => errors.set(e),
            }
        });
    };
    view! {
        <tr data-test=format!("trigger-{}", t.event.as_str())>
            <td><span class="badge badge-action">{t.event.as_str()}</span></td>
            <td class="mono small">{t.pattern.clone()}</td>
            <td class="mono small">{t.image_template.clone().unwrap_or_else(|| "from payload".into())}</td>
            <td>{if t.auto_deploy { "yes" } else { "no" }}</td>
            <td class="row-actions">
                <button class="btn btn-sm btn-danger" on:click=handler(remove) data-test="delete-trigger">"Delete"</button>
            </td>
        </tr>
    }
}

#[component]
fn NewTriggerForm(service: Uuid, on_done: impl Fn() + Copy + 'static) -> impl IntoView {
    let event = RwSignal::new("push".to_owned());
    let pattern = RwSignal::new(String::new());
    let template = RwSignal::new(String::new());
    let auto = RwSignal::new(false);
    let errors = FormErrors::new(&["pattern", "image_template"]);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        errors.clear();
        let Some(event) = TriggerEvent::parse(&event.get_untracked()) else {
            return;
        };
        let t = template.get_untracked().trim().to_owned();
        let body = NewTriggerRule {
            event,
            pattern: pattern.get_untracked().trim().to_owned(),
            image_template: (!t.is_empty()).then_some(t),
            auto_deploy: auto.get_untracked(),
        };
        if let Err(e) = body.validate() {
            errors.set(invalid(&e.field, e.message));
            return;
        }
        spawn_local(async move {
            match api::create_trigger(service, &body).await {
                Ok(_) => {
                    pattern.set(String::new());
                    template.set(String::new());
                    on_done();
                }
                Err(e) => errors.set(e),
            }
        });
    };
    view! {
        <form class="inline-form card-body" on:submit=handler(submit) data-test="trigger-form" novalidate>
            <FormAlert errors />
            <div class="form-row">
                <div class="field">
                    <label for="trigger-event">"Event"</label>
                    <select id="trigger-event" on:change=handler(move |ev| event.set(event_target_value(&ev)))>
                        {TriggerEvent::ALL.into_iter().map(|e| view! { <option value=e.as_str()>{e.as_str()}</option> }).collect_view()}
                    </select>
                </div>
                <div class="field">
                    <label for="trigger-pattern">"Pattern"</label>
                    <input id="trigger-pattern" placeholder="main, v*, release/**" bind:value=pattern />
                    <FieldError errors field="pattern" />
                </div>
                <div class="field grow">
                    <label for="trigger-template">"Image template"</label>
                    <input id="trigger-template" placeholder="ghcr.io/acme/api:{short_sha} (empty: from payload)" bind:value=template />
                    <FieldError errors field="image_template" />
                </div>
                <label class="toggle align-end">
                    <input type="checkbox" id="trigger-auto" bind:checked=auto />
                    <span>"Auto-deploy"</span>
                </label>
                <button class="btn btn-primary align-end" type="submit" data-test="trigger-submit">"Add rule"</button>
            </div>
        </form>
    }
}

/// The release that serves now: the one of the newest succeeded deployment.
pub fn current_release(deployments: &[Deployment]) -> Option<Uuid> {
    deployments
        .iter()
        .filter(|d| d.state == DeploymentState::Succeeded)
        .max_by_key(|d| (d.finished_at.unwrap_or(d.created_at), d.release_number))
        .map(|d| d.release_id)
}

/// What a release row offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseAction {
    /// It is the current release.
    None,
    /// Older than the current one: roll back to it.
    Rollback,
    /// Newer than the current one, or nothing serves yet: deploy it.
    Deploy,
}

pub fn release_action(number: i64, current: Option<i64>) -> ReleaseAction {
    match current {
        Some(c) if number == c => ReleaseAction::None,
        Some(c) if number < c => ReleaseAction::Rollback,
        _ => ReleaseAction::Deploy,
    }
}

/// Releases of a service with the current one marked; roll back to an earlier
/// one, deploy a newer one, or promote one to another environment.
#[component]
pub fn ReleasesList(
    service: Uuid,
    project: Uuid,
    environment: Uuid,
    can_deploy: Signal<bool>,
    version: RwSignal<u32>,
    /// Typed-name confirmation when the environment is protected.
    guard: TypedConfirm,
) -> impl IntoView {
    let list = Fetch::new(move || {
        version.track();
        async move {
            let releases = api::releases(service).await?;
            let current = api::deployments(service)
                .await
                .map(|d| current_release(&d))
                .unwrap_or(None);
            Ok::<_, ApiErrorBody>((releases, current))
        }
    });
    let targets = Fetch::new(move || async move {
        api::environments(project).await.map(|l| {
            l.into_iter()
                .filter(|e| e.id != environment)
                .collect::<Vec<_>>()
        })
    });
    let promoting = RwSignal::new(None::<Release>);
    let errors = FormErrors::new(&[]);
    let busy = RwSignal::new(false);
    // Deploy (`rollback == false`) or roll back to a release, then follow the
    // new deployment on its page.
    let act = move |release: Uuid, rollback: bool| {
        errors.clear();
        busy.set(true);
        spawn_local(async move {
            let r = if rollback {
                api::rollback(release).await
            } else {
                let body = CreateDeployment {
                    release_id: Some(release),
                    ..Default::default()
                };
                api::deploy(service, &body).await
            };
            busy.set(false);
            match r {
                Ok(d) => {
                    version.update(|v| *v += 1);
                    navigate(&format!("/deployments/{}", d.id));
                }
                Err(e) => errors.set(e),
            }
        });
    };
    view! {
        <section class="card" data-test="releases">
            <div class="card-header">
                <h2>"Releases"</h2>
                <button class="btn btn-ghost btn-sm" on:click=handler(move |_| version.update(|v| *v += 1))>"Refresh"</button>
            </div>
            <FrozenAlert errors />
            {move || promoting.get().map(|r| {
                let t = targets.get().and_then(Result::ok).unwrap_or_default();
                view! { <PromotePanel release=r targets=t guard on_close=move || promoting.set(None) /> }
            })}
            {move || match list.get() {
                None => view! { <Loading /> }.into_any(),
                Some(Err(e)) => view! { <ErrorBox error=e /> }.into_any(),
                Some(Ok((l, _))) if l.is_empty() => view! { <p class="muted card-body">"No releases yet."</p> }.into_any(),
                Some(Ok((l, current))) => {
                    let current_number = current.and_then(|c| l.iter().find(|r| r.id == c)).map(|r| r.number);
                    view! {
                    <table class="table" data-test="releases-table">
                        <thead><tr><th>"Release"</th><th>"Image"</th><th>"Git"</th><th>"Trigger"</th><th>"Created"</th><th></th></tr></thead>
                        <tbody>
                            {l.into_iter().map(|r| {
                                let id = r.id;
                                let r2 = r.clone();
                                let action = release_action(r.number, current_number);
                                let git = [r.git_ref.clone(), r.git_sha.as_ref().map(|s| s.chars().take(7).collect())]
                                    .into_iter().flatten().collect::<Vec<String>>().join(" @ ");
                                view! {
                                    <tr
                                        data-test=format!("release-{}", r.number)
                                        class:current=action == ReleaseAction::None
                                    >
                                        <td>
                                            {format!("#{}", r.number)}
                                            {(action == ReleaseAction::None).then(|| view! {
                                                " "<span class="badge badge-succeeded badge-current" data-test="current-release">"current"</span>
                                            })}
                                        </td>
                                        <td class="mono small">{r.image.to_string()}</td>
                                        <td class="mono small">{if git.is_empty() { "—".to_owned() } else { git }}</td>
                                        <td>{r.trigger.as_str()}" · "<span class="muted">{r.author.clone()}</span></td>
                                        <td class="muted small">{fmt_time(&r.created_at)}</td>
                                        <td class="row-actions">
                                            <Show when=move || can_deploy.get()>
                                                {
                                                    match action {
                                                        ReleaseAction::Rollback => view! {
                                                            <button
                                                                class="btn btn-sm rollback-btn"
                                                                data-test="rollback-release"
                                                                disabled=move || busy.get()
                                                                on:click=handler(move |_| guard.run("roll back", move || act(id, true)))
                                                            >"Rollback"</button>
                                                        }.into_any(),
                                                        ReleaseAction::Deploy => view! {
                                                            <button
                                                                class="btn btn-sm"
                                                                data-test="deploy-release"
                                                                disabled=move || busy.get()
                                                                on:click=handler(move |_| guard.run("deploy", move || act(id, false)))
                                                            >"Deploy"</button>
                                                        }.into_any(),
                                                        ReleaseAction::None => ().into_any(),
                                                    }
                                                }
                                                <button class="btn btn-sm" data-test="promote-release" on:click=handler({
                                                    let r2 = r2.clone();
                                                    move |_| promoting.set(Some(r2.clone()))
                                                })>"Promote…"</button>
                                            </Show>
                                        </td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
                }
            }}
        </section>
    }
}

/// Pick a target environment, see what would change, confirm.
#[component]
fn PromotePanel(
    release: Release,
    targets: Vec<Environment>,
    guard: TypedConfirm,
    on_close: impl Fn() + Copy + 'static,
) -> impl IntoView {
    // The protected targets' names: promoting there asks for the name.
    let protected: StoredValue<Vec<(Uuid, String)>> = StoredValue::new(
        targets
            .iter()
            .filter(|e| e.protected)
            .map(|e| (e.id, e.name.to_string()))
            .collect(),
    );
    let rid = release.id;
    let target = RwSignal::new(None::<Uuid>);
    let preview = Fetch::new(move || {
        let t = target.get();
        async move {
            match t {
                Some(t) => api::promote_preview(rid, t).await.map(Some),
                None => Ok(None),
            }
        }
    });
    let errors = FormErrors::new(&[]);
    let done = RwSignal::new(None::<String>);
    let confirm_promote = move |_| {
        let Some(env) = target.get_untracked() else {
            return;
        };
        errors.clear();
        let promote = move || {
            spawn_local(async move {
                let body = PromoteRequest {
                    environment_id: env,
                    override_reason: None,
                };
                match api::promote(rid, &body).await {
                    Ok(d) => done.set(Some(format!(
                        "Release #{} cut in the target environment: deployment {}.",
                        d.release_number,
                        d.state.as_str().replace('_', " ")
                    ))),
                    Err(e) => errors.set(e),
                }
            })
        };
        let name =
            protected.with_value(|p| p.iter().find(|(id, _)| *id == env).map(|(_, n)| n.clone()));
        guard.run_in(name.as_deref(), "promote into it", promote);
    };
    view! {
        <div class="card promote-panel" data-test="promote-panel">
            <div class="card-header">
                <h3>{format!("Promote release #{}", release.number)}</h3>
                <button class="btn btn-ghost btn-sm" on:click=handler(move |_| on_close())>"Close"</button>
            </div>
            <div class="card-body">
                <div class="field">
                    <label for="promote-target">"Target environment"</label>
                    <select id="promote-target" data-test="promote-target" on:change=handler(move |ev| target.set(Uuid::parse_str(&event_target_value(&ev)).ok()))>
                        <option value="">"Choose…"</option>
                        {targets.into_iter().map(|e| view! { <option value=e.id.to_string()>{e.name.to_string()}</option> }).collect_view()}
                    </select>
                </div>
                {move || match preview.get() {
                    None => view! { <Loading /> }.into_any(),
                    Some(Err(e)) => view! { <ErrorBox error=e /> }.into_any(),
                    Some(Ok(None)) => view! { <p class="muted">"Choose where to promote it."</p> }.into_any(),
                    Some(Ok(Some(p))) => {
                        let list = |l: Vec<String>| if l.is_empty() { "—".to_owned() } else { l.join(", ") };
                        view! {
                            <dl class="spec" data-test="promote-preview">
                                <dt>"Image before"</dt><dd class="mono">{p.image_before.to_string()}</dd>
                                <dt>"Image after"</dt><dd class="mono">{p.image_after.to_string()}</dd>
                                <dt>"Env added"</dt><dd class="mono diff-add">{list(p.env_added)}</dd>
                                <dt>"Env removed"</dt><dd class="mono diff-del">{list(p.env_removed)}</dd>
                                <dt>"Env changed"</dt><dd class="mono">{list(p.env_changed)}</dd>
                                <dt>"Other changes"</dt><dd class="mono">{list(p.other_changes)}</dd>
                            </dl>
                            <div class="form-actions">
                                <button class="btn btn-primary" data-test="promote-confirm" on:click=handler(confirm_promote)>"Promote"</button>
                            </div>
                        }.into_any()
                    }
                }}
                <FrozenAlert errors />
                {move || done.get().map(|m| view! { <div class="alert alert-success" data-test="promote-done">{m}</div> })}
            </div>
        </div>
    }
}

/// Errors, with `deploy_frozen` called out (its message names the next allowed time).
#[component]
pub fn FrozenAlert(errors: FormErrors) -> impl IntoView {
    move || {
        errors.current().map(|e| {
            let title = if e.error == ErrorCode::DeployFrozen {
                "Deployments are frozen here. "
            } else {
                ""
            };
            view! { <div class="alert alert-error" data-test="form-error"><strong>{title}</strong>{e.message}</div> }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use slipway_types::ImageRef;

    fn dep(release: u128, number: i64, state: DeploymentState, finished_min: u32) -> Deployment {
        let at = Utc
            .with_ymd_and_hms(2026, 11, 30, 9, finished_min, 0)
            .single()
            .unwrap_or_default();
        Deployment {
            id: Uuid::from_u128(1000 + u128::from(finished_min)),
            release_id: Uuid::from_u128(release),
            release_number: number,
            image: ImageRef::try_from("app:1").expect("image"),
            service_id: Uuid::nil(),
            environment_id: Uuid::nil(),
            project_id: Uuid::nil(),
            state,
            reason: None,
            requested_by: "admin".into(),
            created_at: at,
            started_at: Some(at),
            finished_at: Some(at),
            steps: vec![],
            batch_id: None,
            waits_for: vec![],
        }
    }

    #[test]
    fn the_current_release_is_the_newest_success() {
        let list = vec![
            dep(3, 3, DeploymentState::Failed, 30),
            dep(1, 1, DeploymentState::Succeeded, 10),
            dep(2, 2, DeploymentState::Succeeded, 20),
            // A rollback to #1 that succeeded last makes #1 current again.
            dep(1, 1, DeploymentState::Succeeded, 40),
        ];
        assert_eq!(current_release(&list), Some(Uuid::from_u128(1)));
        assert_eq!(current_release(&list[..3]), Some(Uuid::from_u128(2)));
        assert_eq!(current_release(&list[..1]), None);
    }

    #[test]
    fn earlier_releases_roll_back_newer_ones_deploy() {
        assert_eq!(release_action(2, Some(2)), ReleaseAction::None);
        assert_eq!(release_action(1, Some(2)), ReleaseAction::Rollback);
        assert_eq!(release_action(3, Some(2)), ReleaseAction::Deploy);
        assert_eq!(release_action(1, None), ReleaseAction::Deploy);
    }
}
