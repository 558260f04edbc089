//! The environment page's deploy policy: approvals, maintenance windows, freezes.
use super::handler;
use crate::components::Fetch;
use crate::{
    api::{self, invalid},
    app::use_session,
    components::{ui::fmt_opt_time, ErrorBox, FieldError, FormAlert, FormErrors, Loading},
};
use leptos::{prelude::*, task::spawn_local};
use slipway_types::{
    api::{
        DeployFreeze, EnvironmentPolicy, MaintenanceWindow, TimeOfDay, UpdatePolicy, Validate,
        Weekday,
    },
    time::{format_rfc3339, parse_rfc3339},
    ApiErrorBody,
};
use uuid::Uuid;

const DAYS: [(Weekday, &str); 7] = [
    (Weekday::Mon, "mon"),
    (Weekday::Tue, "tue"),
    (Weekday::Wed, "wed"),
    (Weekday::Thu, "thu"),
    (Weekday::Fri, "fri"),
    (Weekday::Sat, "sat"),
    (Weekday::Sun, "sun"),
];

/// `mon,tue 02:00-04:00`, one window a line.
pub fn windows_to_text(w: &[MaintenanceWindow]) -> String {
    w.iter()
        .map(|w| {
            let days = w
                .days
                .iter()
                .filter_map(|d| DAYS.iter().find(|(x, _)| x == d).map(|(_, n)| *n))
                .collect::<Vec<_>>()
                .join(",");
            format!("{days} {}-{}", String::from(w.start), String::from(w.end))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn parse_windows(text: &str) -> Result<Vec<MaintenanceWindow>, ApiErrorBody> {
    let bad = |i: usize, m: String| invalid("windows", format!("line {}: {m}", i + 1));
    text.lines()
        .map(str::trim)
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| {
            let (days, range) = l
                .split_once(' ')
                .ok_or_else(|| bad(i, "write `mon,tue 02:00-04:00`".into()))?;
            let days = days
                .split(',')
                .map(|d| {
                    DAYS.iter()
                        .find(|(_, n)| d.trim().eq_ignore_ascii_case(n))
                        .map(|(w, _)| *w)
                        .ok_or_else(|| bad(i, format!("`{d}` is not a day (mon … sun)")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let (start, end) = range
                .trim()
                .split_once('-')
                .ok_or_else(|| bad(i, "write the times as 02:00-04:00".into()))?;
            let t = |s: &str| TimeOfDay::try_from(s.trim().to_owned()).map_err(|m| bad(i, m));
            Ok(MaintenanceWindow {
                days,
                start: t(start)?,
                end: t(end)?,
            })
        })
        .collect()
}

/// `2026-12-24T00:00:00Z 2026-12-27T00:00:00Z holidays`, one freeze a line.
pub fn freezes_to_text(f: &[DeployFreeze]) -> String {
    f.iter()
        .map(|f| {
            format!(
                "{} {} {}",
                format_rfc3339(&f.from),
                format_rfc3339(&f.to),
                f.reason
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn parse_freezes(text: &str) -> Result<Vec<DeployFreeze>, ApiErrorBody> {
    let bad = |i: usize, m: String| invalid("freezes", format!("line {}: {m}", i + 1));
    text.lines()
        .map(str::trim)
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| {
            let mut parts = l.splitn(3, ' ');
            let mut time = |what: &str| {
                parts
                    .next()
                    .and_then(|s| parse_rfc3339(s).ok())
                    .ok_or_else(|| bad(i, format!("{what} must be an RFC 3339 time")))
            };
            let from = time("from")?;
            let to = time("to")?;
            let reason = parts.next().unwrap_or("").trim().to_owned();
            if reason.is_empty() {
                return Err(bad(i, "give a reason after the two times".into()));
            }
            Ok(DeployFreeze { from, to, reason })
        })
        .collect()
}

#[component]
pub fn PolicySection(environment: Uuid) -> impl IntoView {
    let session = use_session();
    let policy = Fetch::new(move || api::policy(environment));
    view! {
        <section class="card" data-test="policy">
            <div class="card-header">
                <h2>"Deploy policy"</h2>
            </div>
            {move || match policy.get() {
                None => view! { <Loading /> }.into_any(),
                Some(Err(e)) => view! { <ErrorBox error=e /> }.into_any(),
                Some(Ok(p)) if session.is_admin() => {
                    view! { <PolicyForm p /> }.into_any()
                }
                Some(Ok(p)) => view! { <PolicyView p /> }.into_any(),
            }}
        </section>
    }
}

#[component]
fn PolicyView(p: EnvironmentPolicy) -> impl IntoView {
    let or_none = |s: String| if s.is_empty() { "—".to_owned() } else { s };
    view! {
        <dl class="spec">
            <dt>"Required approvals"</dt><dd data-test="policy-approvals">{p.required_approvals.to_string()}</dd>
            <dt>"Approval valid for"</dt><dd>{format!("{} h", p.approval_ttl_hours)}</dd>
            <dt>"Maintenance windows"</dt><dd class="mono">{or_none(windows_to_text(&p.windows))}</dd>
            <dt>"Freezes"</dt><dd class="mono">{or_none(freezes_to_text(&p.freezes))}</dd>
            <dt>"Updated"</dt><dd class="muted">{format!("{} {}", fmt_opt_time(&p.updated_at), p.updated_by.unwrap_or_default())}</dd>
        </dl>
    }
}

#[component]
fn PolicyForm(p: EnvironmentPolicy) -> impl IntoView {
    let approvals = RwSignal::new(p.required_approvals.to_string());
    let ttl = RwSignal::new(p.approval_ttl_hours.to_string());
    let windows = RwSignal::new(windows_to_text(&p.windows));
    let freezes = RwSignal::new(freezes_to_text(&p.freezes));
    let saved = RwSignal::new(false);
    let errors = FormErrors::new(&[
        "required_approvals",
        "approval_ttl_hours",
        "windows",
        "freezes",
    ]);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        errors.clear();
        saved.set(false);
        let build = || -> Result<UpdatePolicy, ApiErrorBody> {
            let u =
                UpdatePolicy {
                    required_approvals: Some(approvals.get_untracked().trim().parse().map_err(
                        |_| invalid("required_approvals", "a whole number from 0 to 5"),
                    )?),
                    approval_ttl_hours: Some(
                        ttl.get_untracked().trim().parse().map_err(|_| {
                            invalid("approval_ttl_hours", "a whole number of hours")
                        })?,
                    ),
                    windows: Some(parse_windows(&windows.get_untracked())?),
                    freezes: Some(parse_freezes(&freezes.get_untracked())?),
                };
            u.validate().map_err(|e| invalid(&e.field, e.message))?;
            Ok(u)
        };
        match build() {
            Err(e) => errors.set(e),
            Ok(u) => spawn_local(async move {
                match api::update_policy(p.environment_id, &u).await {
                    Ok(_) => saved.set(true),
                    Err(e) => errors.set(e),
                }
            }),
        }
    };
    view! {
        <form class="card-body" on:submit=handler(submit) data-test="policy-form" novalidate>
            <FormAlert errors />
            <div class="form-grid">
                <div class="field">
                    <label for="policy-approvals">"Required approvals"</label>
                    <input id="policy-approvals" inputmode="numeric" bind:value=approvals />
                    <p class="hint">"0 = deployments start at once"</p>
                    <FieldError errors field="required_approvals" />
                </div>
                <div class="field">
                    <label for="policy-ttl">"Approval valid for (hours)"</label>
                    <input id="policy-ttl" inputmode="numeric" bind:value=ttl />
                    <FieldError errors field="approval_ttl_hours" />
                </div>
                <div class="field">
                    <label for="policy-windows">"Maintenance windows (UTC)"</label>
                    <textarea id="policy-windows" rows="3" placeholder="sat,sun 02:00-04:00" bind:value=windows></textarea>
                    <p class="hint">"One per line; none = any time"</p>
                    <FieldError errors field="windows" />
                </div>
                <div class="field">
                    <label for="policy-freezes">"Freezes"</label>
                    <textarea id="policy-freezes" rows="3" placeholder="2026-12-24T00:00:00Z 2026-12-27T00:00:00Z holidays" bind:value=freezes></textarea>
                    <p class="hint">"One per line: from, to (RFC 3339), reason"</p>
                    <FieldError errors field="freezes" />
                </div>
            </div>
            <div class="form-actions">
                {move || saved.get().then(|| view! { <span class="muted small" data-test="policy-saved">"Saved."</span> })}
                <button class="btn btn-primary" type="submit" data-test="policy-submit">"Save policy"</button>
            </div>
        </form>
    }
}
