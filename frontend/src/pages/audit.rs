//! `/audit`: the audit log with filters, pagination and CSV export.
use crate::components::handler;
use crate::components::Fetch;
use crate::{
    api::{self, AuditQuery},
    components::{ui::fmt_time, ErrorBox, Loading},
};
use leptos::prelude::*;
use slipway_types::api::AuditEntry;

const PAGE: u64 = 50;

/// `datetime-local` input (`2026-11-23T19:27`) → RFC 3339 in UTC.
fn to_rfc3339(v: &str) -> String {
    let v = v.trim();
    match v.len() {
        0 => String::new(),
        16 => format!("{v}:00Z"),
        _ if v.ends_with('Z') => v.to_owned(),
        _ => format!("{v}Z"),
    }
}

#[component]
pub fn AuditPage() -> impl IntoView {
    let actor = RwSignal::new(String::new());
    let action = RwSignal::new(String::new());
    let target_type = RwSignal::new(String::new());
    let since = RwSignal::new(String::new());
    let until = RwSignal::new(String::new());
    let query = RwSignal::new(AuditQuery {
        limit: PAGE,
        ..Default::default()
    });
    let page = Fetch::new(move || {
        let q = query.get();
        async move { api::audit(&q).await }
    });

    let apply = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        query.set(AuditQuery {
            actor: actor.get_untracked(),
            action: action.get_untracked(),
            target_type: target_type.get_untracked(),
            since: to_rfc3339(&since.get_untracked()),
            until: to_rfc3339(&until.get_untracked()),
            limit: PAGE,
            offset: 0,
        });
    };
    let reset = move |_| {
        for s in [actor, action, target_type, since, until] {
            s.set(String::new());
        }
        query.set(AuditQuery {
            limit: PAGE,
            ..Default::default()
        });
    };
    let csv = move || query.with(AuditQuery::csv_url);

    view! {
        <div class="page-header">
            <div>
                <h1>"Audit log"</h1>
                <p class="muted">"Every change, who made it and from where. Entries are hash-chained."</p>
            </div>
            <a class="btn" href=csv data-test="audit-csv" rel="external" download="slipway-audit.csv">
                "Export CSV"
            </a>
        </div>
        <form class="card filters" on:submit=handler(apply) data-test="audit-filters">
            <div class="field">
                <label for="f-actor">"Actor"</label>
                <input id="f-actor" name="actor" placeholder="admin" bind:value=actor />
            </div>
            <div class="field">
                <label for="f-action">"Action"</label>
                <input id="f-action" name="action" placeholder="project.create" bind:value=action />
            </div>
            <div class="field">
                <label for="f-target">"Target type"</label>
                <input id="f-target" name="target_type" placeholder="service" bind:value=target_type />
            </div>
            <div class="field">
                <label for="f-since">"Since (UTC)"</label>
                <input id="f-since" name="since" type="datetime-local" bind:value=since />
            </div>
            <div class="field">
                <label for="f-until">"Until (UTC)"</label>
                <input id="f-until" name="until" type="datetime-local" bind:value=until />
            </div>
            <div class="filter-actions">
                <button class="btn btn-primary" type="submit" data-test="audit-apply">"Filter"</button>
                <button class="btn btn-ghost" type="button" on:click=handler(reset)>"Reset"</button>
            </div>
        </form>
        <section class="card">
            {move || match page.get() {
                None => view! { <Loading /> }.into_any(),
                Some(Err(e)) => view! { <ErrorBox error=e /> }.into_any(),
                Some(Ok(p)) => {
                    let (total, offset, n) = (p.total, p.offset, p.items.len() as u64);
                    view! {
                        <AuditTable items=p.items />
                        <div class="pager">
                            <span class="muted small" data-test="audit-count">
                                {if total == 0 {
                                    "No entries".to_owned()
                                } else {
                                    format!("{}–{} of {total}", offset + 1, offset + n)
                                }}
                            </span>
                            <div class="actions">
                                <button
                                    class="btn btn-sm"
                                    disabled={offset == 0}
                                    on:click=handler(move |_| query.update(|q| q.offset = q.offset.saturating_sub(PAGE)))
                                >
                                    "← Newer"
                                </button>
                                <button
                                    class="btn btn-sm"
                                    disabled={offset + n >= total}
                                    on:click=handler(move |_| query.update(|q| q.offset += PAGE))
                                >
                                    "Older →"
                                </button>
                            </div>
                        </div>
                    }
                        .into_any()
                }
            }}
        </section>
    }
}

#[component]
fn AuditTable(items: Vec<AuditEntry>) -> impl IntoView {
    if items.is_empty() {
        return view! { <p class="muted card-body">"Nothing matches these filters."</p> }
            .into_any();
    }
    view! {
        <table class="table" data-test="audit-table">
            <thead>
                <tr>
                    <th>"#"</th>
                    <th>"When"</th>
                    <th>"Actor"</th>
                    <th>"Action"</th>
                    <th>"Target"</th>
                    <th>"Details"</th>
                </tr>
            </thead>
            <tbody>
                {items
                    .into_iter()
                    .map(|e| {
                        let summary = match &e.summary {
                            serde_json::Value::Null => String::new(),
                            // Not `Value`'s `Display`: it would add a pretty printer.
                            v => serde_json::to_string(v).unwrap_or_default(),
                        };
                        view! {
                            <tr data-test=format!("audit-{}", e.action)>
                                <td class="muted">{e.seq}</td>
                                <td class="nowrap small">{fmt_time(&e.at)}</td>
                                <td>{e.actor.clone()}</td>
                                <td><span class="badge badge-action">{e.action.clone()}</span></td>
                                <td class="small">
                                    {e.target_type.clone()}
                                    {e
                                        .target_id
                                        .clone()
                                        .map(|t| {
                                            let short: String = t.chars().take(8).collect();
                                            view! { <span class="muted mono" title=t>" " {short}</span> }
                                        })}
                                </td>
                                <td class="mono small summary" title=summary.clone()>{summary.clone()}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}
