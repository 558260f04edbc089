//! The project page's CI sections: webhook endpoints and recent deliveries.
use super::handler;
use crate::components::Fetch;
use crate::{
    api,
    app::use_session,
    components::{ui::fmt_time, ErrorBox, FormAlert, FormErrors, Loading},
    pages::confirm,
};
use leptos::{prelude::*, task::spawn_local};
use slipway_types::api::{NewWebhook, Webhook, WebhookDelivery, WebhookProvider};
use uuid::Uuid;

fn origin() -> String {
    web_sys::window()
        .and_then(|w| w.location().origin().ok())
        .unwrap_or_default()
}

/// A secret shown once, with a copy button.
#[component]
pub fn SecretOnce(
    secret: String,
    what: &'static str,
    on_close: impl Fn() + Copy + 'static,
) -> impl IntoView {
    let copied = RwSignal::new(false);
    let s2 = secret.clone();
    let copy = move |_| {
        if let Some(w) = web_sys::window() {
            let _ = w.navigator().clipboard().write_text(&s2);
            copied.set(true);
        }
    };
    view! {
        <div class="card secret-once" data-test="webhook-secret">
            <div>
                <strong>{format!("Copy the {what} now.")}</strong>
                " It will not be shown again."
            </div>
            <div class="secret-row">
                <code class="secret" data-test="webhook-secret-value">{secret}</code>
                <button class="btn btn-sm" on:click=handler(copy) data-test="copy-webhook-secret">
                    {move || if copied.get() { "Copied" } else { "Copy" }}
                </button>
                <button class="btn btn-ghost btn-sm" on:click=handler(move |_| on_close())>"Done"</button>
            </div>
        </div>
    }
}

/// Webhook endpoints of a project (admin): create, rotate, delete.
#[component]
pub fn WebhooksSection(project: Uuid) -> impl IntoView {
    let version = RwSignal::new(0u32);
    let list = Fetch::new(move || {
        version.track();
        api::webhooks(project)
    });
    let secret = RwSignal::new(None::<String>);
    let errors = FormErrors::new(&[]);
    let provider = RwSignal::new("github".to_owned());
    let create = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        errors.clear();
        let Some(p) = WebhookProvider::parse(&provider.get_untracked()) else {
            return;
        };
        spawn_local(async move {
            match api::create_webhook(project, &NewWebhook { provider: p }).await {
                Ok(c) => {
                    secret.set(Some(c.secret));
                    version.update(|v| *v += 1);
                }
                Err(e) => errors.set(e),
            }
        });
    };
    let on_secret = move |s: String| {
        secret.set(Some(s));
        version.update(|v| *v += 1);
    };
    view! {
        <section class="card" data-test="webhooks">
            <div class="card-header">
                <h2>"Webhooks"</h2>
                <form class="inline-actions" on:submit=handler(create) data-test="webhook-form">
                    <select name="provider" data-test="webhook-provider" on:change=handler(move |ev| provider.set(event_target_value(&ev)))>
                        <option value="github">"GitHub"</option>
                        <option value="gitlab">"GitLab"</option>
                        <option value="generic">"Generic (signed JSON)"</option>
                    </select>
                    <button class="btn btn-primary btn-sm" type="submit" data-test="webhook-submit">"Add webhook"</button>
                </form>
            </div>
            <FormAlert errors />
            {move || secret.get().map(|s| view! { <SecretOnce secret=s what="webhook secret" on_close=move || secret.set(None) /> })}
            {move || match list.get() {
                None => view! { <Loading /> }.into_any(),
                Some(Err(e)) => view! { <ErrorBox error=e /> }.into_any(),
                Some(Ok(l)) if l.is_empty() => view! {
                    <p class="muted card-body">"No webhooks. Add one and paste its URL and secret into GitHub, GitLab or your CI."</p>
                }.into_any(),
                Some(Ok(l)) => view! {
                    <table class="table" data-test="webhooks-table">
                        <thead><tr><th>"Provider"</th><th>"URL"</th><th>"Created"</th><th></th></tr></thead>
                        <tbody>
                            {l.into_iter().map(|w| view! {
                                <WebhookRow w errors on_secret on_deleted=move || version.update(|v| *v += 1) />
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any(),
            }}
        </section>
    }
}

#[component]
fn WebhookRow(
    w: Webhook,
    errors: FormErrors,
    on_secret: impl Fn(String) + Copy + 'static,
    on_deleted: impl Fn() + Copy + 'static,
) -> impl IntoView {
    let id = w.id;
    let rotate = move |_| {
        if !confirm("Rotate the secret? The old one stops working at once.") {
            return;
        }
        spawn_local(async move {
            match api::rotate_webhook(id).await {
                Ok(c) => on_secret(c.secret),
                Err(e) => errors.set(e),
            }
        });
    };
    let remove = move |_| {
        if !confirm("Delete this webhook?") {
            return;
        }
        spawn_local(async move {
            match api::delete_webhook(id).await {
                Ok(()) => on_deleted(),
                Err(e) => errors.set(e),
            }
        });
    };
    let provider = w.provider.as_str();
    view! {
        <tr data-test=format!("webhook-{provider}")>
            <td><span class="badge badge-action">{provider}</span></td>
            <td class="mono small" data-test="webhook-url">{format!("{}{}", origin(), w.path)}</td>
            <td class="muted small">
                {fmt_time(&w.created_at)}
                {w.rotated_at.map(|r| format!(" · rotated {}", fmt_time(&r)))}
            </td>
            <td class="row-actions">
                <button class="btn btn-sm" on:click=handler(rotate) data-test="rotate-webhook">"Rotate"</button>
                <button class="btn btn-sm btn-danger" on:click=handler(remove) data-test="delete-webhook">"Delete"</button>
            </td>
        </tr>
    }
}

/// Recent deliveries, refreshed every 5 s.
#[component]
pub fn DeliveriesSection(project: Uuid) -> impl IntoView {
    let session = use_session();
    let version = RwSignal::new(0u32);
    let list = Fetch::new(move || {
        version.track();
        api::deliveries(project)
    });
    let poll = set_interval_with_handle(
        move || version.update(|v| *v += 1),
        std::time::Duration::from_secs(5),
    );
    on_cleanup(move || {
        if let Ok(h) = poll {
            h.clear();
        }
    });
    let errors = FormErrors::new(&[]);
    // Keep the last answer on screen while the next one loads.
    let shown = RwSignal::new(None);
    Effect::new(move |_| {
        if let Some(r) = list.get() {
            shown.set(Some(r));
        }
    });
    view! {
        <section class="card" data-test="deliveries">
            <div class="card-header">
                <h2>"Recent deliveries"</h2>
                <span class="muted small">"refreshes every 5 s"</span>
            </div>
            <FormAlert errors />
            {move || match shown.get() {
                None => view! { <Loading /> }.into_any(),
                Some(Err(e)) => view! { <ErrorBox error=e /> }.into_any(),
                Some(Ok(l)) if l.is_empty() => view! { <p class="muted card-body">"No deliveries yet."</p> }.into_any(),
                Some(Ok(l)) => {
                    let admin = session.is_admin();
                    view! {
                        <table class="table" data-test="deliveries-table">
                            <thead><tr>
                                <th>"Received"</th><th>"Provider"</th><th>"Event"</th><th>"Verified"</th>
                                <th>"Outcome"</th><th>"Links"</th><th></th>
                            </tr></thead>
                            <tbody>
                                {l.into_iter().map(|d| view! {
                                    <DeliveryRow d admin errors on_redelivered=move || version.update(|v| *v += 1) />
                                }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any()
                }
            }}
        </section>
    }
}

#[component]
fn DeliveryRow(
    d: WebhookDelivery,
    admin: bool,
    errors: FormErrors,
    on_redelivered: impl Fn() + Copy + 'static,
) -> impl IntoView {
    let id = d.id;
    let redeliver = move |_| {
        spawn_local(async move {
            match api::redeliver(id).await {
                Ok(_) => on_redelivered(),
                Err(e) => errors.set(e),
            }
        });
    };
    let test = format!(
        "delivery-{}",
        d.delivery_id.clone().unwrap_or_else(|| d.id.to_string())
    );
    view! {
        <tr data-test=test>
            <td class="muted small">{fmt_time(&d.received_at)}</td>
            <td>{d.provider.as_str()}</td>
            <td class="mono small">{d.event.clone()}</td>
            <td>
                {if d.verified {
                    view! { <span class="ok" title="signature verified">"✓"</span> }.into_any()
                } else {
                    view! { <span class="bad" title="signature missing or wrong">"✗"</span> }.into_any()
                }}
            </td>
            <td>
                <span class=format!("badge badge-delivery-{}", d.status)>{d.status.clone()}</span>
                " "
                <span class="small" data-test="delivery-outcome">{d.outcome.clone()}</span>
            </td>
            <td class="small">
                {d.release_ids.iter().map(|r| view! { <ReleaseLink id=*r /> }).collect_view()}
                {d.deployment_ids.iter().map(|r| view! { <DeploymentLink id=*r /> }).collect_view()}
            </td>
            <td class="row-actions">
                {(admin && d.verified).then(|| view! {
                    <button class="btn btn-sm" on:click=handler(redeliver) data-test="redeliver">"Redeliver"</button>
                })}
            </td>
        </tr>
    }
}

#[component]
fn ReleaseLink(id: Uuid) -> impl IntoView {
    let r = Fetch::new(move || api::release(id));
    move || {
        r.get().and_then(Result::ok).map(|r| {
            view! {
                <a class="link-chip" data-test="delivery-release" href=format!("/services/{}", r.service_id)>
                    {format!("release #{}", r.number)}
                </a>
            }
        })
    }
}

#[component]
fn DeploymentLink(id: Uuid) -> impl IntoView {
    let r = Fetch::new(move || api::deployment(id));
    move || {
        r.get().and_then(Result::ok).map(|d| {
            view! {
                <a class="link-chip" data-test="delivery-deployment" href=format!("/services/{}", d.service_id)>
                    {format!("deployment of #{}", d.release_number)}
                </a>
            }
        })
    }
}
