//! `/approvals`: deployments waiting for approval; approve or reject them.
use crate::components::handler;
use crate::components::Fetch;
use crate::{
    api::{self, invalid},
    components::{releases::FrozenAlert, ui::fmt_time, ErrorBox, FormErrors, Loading, StateBadge},
};
use leptos::{prelude::*, task::spawn_local};
use slipway_types::{api::ApprovalRequest, ApiErrorBody};

/// Names of a deployment's service and environment.
async fn names(a: &ApprovalRequest) -> (String, String, String) {
    let d = &a.deployment;
    let svc = api::service(d.service_id).await.map(|s| s.name.to_string());
    let env = api::environment(d.environment_id)
        .await
        .map(|e| e.name.to_string());
    let project = api::project(d.project_id).await.map(|p| p.name.to_string());
    (
        project.unwrap_or_default(),
        env.unwrap_or_default(),
        svc.unwrap_or_else(|_| d.service_id.to_string()),
    )
}

#[component]
pub fn ApprovalsPage() -> impl IntoView {
    let version = RwSignal::new(0u32);
    let list = Fetch::new(move || {
        version.track();
        async move {
            let mut out = Vec::new();
            for a in api::pending_approvals().await? {
                let n = names(&a).await;
                out.push((a, n));
            }
            Ok::<_, ApiErrorBody>(out)
        }
    });
    let refresh = move || version.update(|v| *v += 1);
    view! {
        <div class="page-header">
            <div>
                <h1>"Approvals"</h1>
                <p class="muted">"Deployments waiting for approval in environments that require it."</p>
            </div>
            <div class="actions">
                <button class="btn" on:click=handler(move |_| refresh())>"Refresh"</button>
            </div>
        </div>
        <section class="card">
            {move || match list.get() {
                None => view! { <Loading /> }.into_any(),
                Some(Err(e)) => view! { <ErrorBox error=e /> }.into_any(),
                Some(Ok(l)) if l.is_empty() => view! {
                    <p class="muted card-body" data-test="approvals-empty">"Nothing is waiting for approval."</p>
                }.into_any(),
                Some(Ok(l)) => view! {
                    <table class="table" data-test="approvals">
                        <thead><tr>
                            <th>"Service"</th><th>"Release"</th><th>"Requested by"</th>
                            <th>"Approvals"</th><th>"State"</th><th></th>
                        </tr></thead>
                        <tbody>
                            {l.into_iter().map(|(a, n)| view! { <ApprovalRow a names=n on_done=refresh /> }).collect_view()}
                        </tbody>
                    </table>
                }.into_any(),
            }}
        </section>
    }
}

#[component]
fn ApprovalRow(
    a: ApprovalRequest,
    names: (String, String, String),
    on_done: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let d = a.deployment.clone();
    let id = d.id;
    let (project, env, svc) = names;
    let valid = a.approvals.iter().filter(|x| x.valid).count();
    let approvers = a
        .approvals
        .iter()
        .filter(|x| x.valid)
        .map(|x| x.approver.clone())
        .collect::<Vec<_>>()
        .join(", ");
    // The server refuses approving one's own request: offer only Reject.
    let session = crate::app::use_session();
    let requester = d.requested_by.clone();
    let own = move || {
        session
            .me
            .with(|m| m.as_ref().is_some_and(|m| m.username == requester))
    };
    let errors = FormErrors::new(&[]);
    let rejecting = RwSignal::new(false);
    let reason = RwSignal::new(String::new());
    let approve = move |_| {
        errors.clear();
        spawn_local(async move {
            match api::approve(id).await {
                Ok(_) => on_done(),
                Err(e) => errors.set(e),
            }
        });
    };
    let reject = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        errors.clear();
        let r = reason.get_untracked().trim().to_owned();
        if r.is_empty() {
            errors.set(invalid("reason", "say why it is rejected"));
            return;
        }
        spawn_local(async move {
            match api::reject(id, r).await {
                Ok(_) => on_done(),
                Err(e) => errors.set(e),
            }
        });
    };
    view! {
        <tr data-test=format!("approval-{}", d.requested_by)>
            <td>
                <a href=format!("/services/{}", d.service_id)>{svc.clone()}</a>
                <div class="muted small">{format!("{project} / {env}")}</div>
            </td>
            <td>
                {format!("#{}", d.release_number)}
                <div class="mono small muted">{d.image.to_string()}</div>
            </td>
            <td>{d.requested_by.clone()}<div class="muted small">{fmt_time(&d.created_at)}</div></td>
            <td data-test="approval-count">
                <strong>{format!("{valid} / {}", a.required_approvals)}</strong>
                <div class="muted small">{approvers}</div>
            </td>
            <td><StateBadge state=d.state /></td>
            <td class="approval-actions">
                <div class="row-actions">
                    <Show
                        when=move || !own()
                        fallback=|| view! { <span class="muted small" data-test="own-request">"your request: another approver decides"</span> }
                    >
                        <button class="btn btn-sm btn-primary" data-test="approve" on:click=handler(approve)>"Approve"</button>
                    </Show>
                    <button class="btn btn-sm btn-danger" data-test="reject" on:click=handler(move |_| rejecting.update(|r| *r = !*r))>"Reject…"</button>
                </div>
                <Show when=move || rejecting.get()>
                    <form class="reject-form" on:submit=handler(reject) data-test="reject-form" novalidate>
                        <input name="reason" placeholder="reason (required)" data-test="reject-reason" bind:value=reason />
                        <button class="btn btn-sm btn-danger" type="submit" data-test="reject-submit">"Reject"</button>
                    </form>
                </Show>
                <FrozenAlert errors />
            </td>
        </tr>
    }
}
