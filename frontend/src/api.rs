//! The one HTTP client of the dashboard.
//!
//! Every call goes to `/api/v1` with `credentials: same-origin`, decodes the
//! bodies with the `slipway-types` DTOs and fails with the server's own
//! [`ApiErrorBody`]. Mutating calls carry `X-CSRF-Token`, taken from
//! `GET /api/v1/auth/me` (or from the login/setup answer) and refreshed once if
//! the server answers `csrf_failed`. A `401 unauthenticated` anywhere calls the
//! hook installed with [`on_unauthenticated`] (the app sends the user to /login).
use gloo_net::http::{Method, RequestBuilder, Response};
use serde::{de::DeserializeOwned, Serialize};
use slipway_types::{
    api::{
        ApiToken, ApprovalRequest, ApproveRequest, AuditEntry, ClaimsPreview, ClaimsPreviewRequest,
        ComposeImport, ComposeImportResult, CreateDeployment, CreateToken, CreatedToken,
        CreatedWebhook, DeployEnvironment, Deployment, Environment, EnvironmentDeployment,
        EnvironmentPolicy, HookResponse, Host, HostEnrollment, LoginOptions, LoginRequest, Me,
        NewEnvironment, NewHost, NewProject, NewRoleGrant, NewRoleMapping, NewService,
        NewTriggerRule, NewWebhook, Overview, Page, Project, PromotePreview, PromoteRequest,
        PutVariable, RejectRequest, Release, RoleGrant, RoleMapping, Service, SetupRequest,
        SetupStatus, TriggerRule, UpdateEnvironment, UpdateHost, UpdatePolicy, UpdateProject,
        UpdateService, UpdateUser, User, Variable, Webhook, WebhookDelivery,
    },
    ApiErrorBody, ErrorCode,
};
use std::{cell::RefCell, rc::Rc};
use uuid::Uuid;
use web_sys::RequestCredentials;

pub type ApiResult<T> = Result<T, ApiErrorBody>;

pub const BASE: &str = "/api/v1";

thread_local! {
    static CSRF: RefCell<Option<String>> = const { RefCell::new(None) };
    static ON_UNAUTHENTICATED: RefCell<Option<Rc<dyn Fn()>>> = RefCell::new(None);
}

/// Installs what to do when the server says the session is gone.
pub fn on_unauthenticated(f: impl Fn() + 'static) {
    ON_UNAUTHENTICATED.with(|h| *h.borrow_mut() = Some(Rc::new(f)));
}

fn remember(me: &Me) {
    CSRF.with(|c| *c.borrow_mut() = me.csrf_token.clone());
}

fn forget_csrf() {
    CSRF.with(|c| *c.borrow_mut() = None);
}

/// An error that did not come from the server (network down, undecodable body).
pub fn client_error(message: impl Into<String>) -> ApiErrorBody {
    ApiErrorBody {
        error: ErrorCode::Unavailable,
        message: message.into(),
        field: None,
    }
}

/// A client-side validation failure shaped like the server's.
pub fn invalid(field: &str, message: impl Into<String>) -> ApiErrorBody {
    ApiErrorBody {
        error: ErrorCode::InvalidInput,
        message: message.into(),
        field: Some(field.to_owned()),
    }
}

/// List endpoints answer `Page<T>`; accept a bare array too. Only `items`
/// of a page matters here (`total`, `limit`, `offset` are skipped).
///
/// Picked out of the JSON tree before decoding, in one function for every
/// item type: a generic visitor (or `#[serde(untagged)]`) would be compiled
/// once per item type.
#[inline(never)]
fn list_items(value: serde_json::Value) -> ApiResult<serde_json::Value> {
    use serde_json::Value;
    match value {
        list @ Value::Array(_) => Ok(list),
        // A scan, not `remove`: that would add the B-tree's rebalancing code.
        Value::Object(page) => match page.into_iter().find(|(k, _)| k == "items") {
            Some((_, items)) => Ok(items),
            None => Err(client_error(
                "unexpected answer from the server: a page without `items`",
            )),
        },
        _ => Err(client_error(
            "unexpected answer from the server: expected a page or a list",
        )),
    }
}

struct Call<'a> {
    method: Method,
    path: &'a str,
    body: Option<String>,
    /// Login and setup: no session yet, so no CSRF token and no redirect on 401.
    public: bool,
}

async fn csrf_token() -> Option<String> {
    if let Some(t) = CSRF.with(|c| c.borrow().clone()) {
        return Some(t);
    }
    let me_call = Call {
        method: Method::GET,
        path: "/auth/me",
        body: None,
        public: false,
    };
    match raw(&me_call, None).await {
        Ok(resp) if resp.ok() => {
            let me: Me = from_json(json_value(resp).await.ok()?).ok()?;
            remember(&me);
            me.csrf_token
        }
        _ => None,
    }
}

async fn raw(call: &Call<'_>, csrf: Option<String>) -> ApiResult<Response> {
    let url = format!("{BASE}{}", call.path);
    let mut builder = RequestBuilder::new(&url)
        .method(call.method.clone())
        .credentials(RequestCredentials::SameOrigin)
        .header("Accept", "application/json");
    if let Some(token) = csrf {
        builder = builder.header("X-CSRF-Token", &token);
    }
    let request = match &call.body {
        Some(json) => builder
            .header("Content-Type", "application/json")
            .body(json.clone()),
        None => builder.build(),
    }
    .map_err(|e| client_error(format!("could not build the request: {e}")))?;
    request
        .send()
        .await
        .map_err(|e| client_error(format!("the server could not be reached: {e}")))
}

async fn error_of(resp: Response) -> ApiErrorBody {
    let status = resp.status();
    let status_text = resp.status_text();
    match json_value(resp).await.and_then(from_json::<ApiErrorBody>) {
        Ok(body) => body,
        Err(_) => ApiErrorBody {
            error: match status {
                401 => ErrorCode::Unauthenticated,
                403 => ErrorCode::Forbidden,
                404 => ErrorCode::NotFound,
                409 => ErrorCode::Conflict,
                422 => ErrorCode::InvalidInput,
                _ => ErrorCode::Internal,
            },
            message: format!("the server answered {status} {status_text}"),
            field: None,
        },
    }
}

/// Sends a call; on `csrf_failed` refreshes the token and tries once more.
async fn send(call: Call<'_>) -> ApiResult<Response> {
    let mut retried = false;
    loop {
        let mutating = call.method != Method::GET && call.method != Method::HEAD;
        let csrf = if mutating && !call.public {
            csrf_token().await
        } else {
            None
        };
        let resp = raw(&call, csrf).await?;
        if resp.ok() {
            return Ok(resp);
        }
        let err = error_of(resp).await;
        if err.error == ErrorCode::CsrfFailed && !retried {
            retried = true;
            forget_csrf();
            continue;
        }
        // An expired single sign-on session also sends the user to log in again.
        let unauthenticated = matches!(
            err.error,
            ErrorCode::Unauthenticated | ErrorCode::ReauthenticationRequired
        );
        if unauthenticated && !call.public {
            forget_csrf();
            if let Some(hook) = ON_UNAUTHENTICATED.with(|h| h.borrow().clone()) {
                hook();
            }
        }
        return Err(err);
    }
}

async fn decode<T: DeserializeOwned>(resp: Response) -> ApiResult<T> {
    from_json(json_value(resp).await?)
}

fn from_json<T: DeserializeOwned>(value: serde_json::Value) -> ApiResult<T> {
    slipway_types::decode::from_value::<T>(value).map_err(undecodable)
}

/// Not generic, so the message is built once, not once per answer type.
#[inline(never)]
fn undecodable(e: slipway_types::decode::DecodeError) -> ApiErrorBody {
    client_error(format!("unexpected answer from the server: {e}"))
}

/// Sends a call and reads its JSON answer: not generic, so each typed call
/// only adds its own decoding.
#[inline(never)]
async fn call_json(call: Call<'_>) -> ApiResult<serde_json::Value> {
    json_value(send(call).await?).await
}

/// The body as a JSON tree: the one instantiation of serde_json's parser.
#[inline(never)]
async fn json_value(resp: Response) -> ApiResult<serde_json::Value> {
    let text = resp
        .text()
        .await
        .map_err(|e| client_error(format!("could not read the answer: {e}")))?;
    serde_json::from_str(&text).map_err(|e| not_json(&e))
}

/// Where the text stopped being JSON. Not serde_json's own message: its
/// `Display` brings serde_json's whole table of error texts into the wasm.
#[inline(never)]
fn not_json(e: &serde_json::Error) -> ApiErrorBody {
    client_error(format!(
        "unexpected answer from the server: not JSON (line {}, column {})",
        e.line(),
        e.column()
    ))
}

/// Decodes a JSON text (an event stream's `data:`) through [`serde_json::Value`],
/// like the API answers, so the text parser is instantiated once.
pub fn parse_json<T: DeserializeOwned>(text: &str) -> Option<T> {
    slipway_types::decode::from_value(parse_value(text)?).ok()
}

#[inline(never)]
fn parse_value(text: &str) -> Option<serde_json::Value> {
    serde_json::from_str(text).ok()
}

/// Encodes a request body. Writing a DTO into a `String` cannot fail (no
/// maps with non-string keys, no failing `Serialize`), so the error is not
/// spelled out: formatting serde_json's error would pull in its error texts.
fn to_json<B: Serialize>(body: &B) -> ApiResult<String> {
    serde_json::to_string(body).map_err(|_| unencodable())
}

#[inline(never)]
fn unencodable() -> ApiErrorBody {
    client_error("could not encode the request")
}

pub async fn get<T: DeserializeOwned>(path: &str) -> ApiResult<T> {
    from_json(
        call_json(Call {
            method: Method::GET,
            path,
            body: None,
            public: false,
        })
        .await?,
    )
}

pub async fn get_list<T: DeserializeOwned>(path: &str) -> ApiResult<Vec<T>> {
    let answer = call_json(Call {
        method: Method::GET,
        path,
        body: None,
        public: false,
    })
    .await?;
    from_json(list_items(answer)?)
}

async fn with_body<B: Serialize, T: DeserializeOwned>(
    method: Method,
    path: &str,
    body: &B,
) -> ApiResult<T> {
    from_json(
        call_json(Call {
            method,
            path,
            body: Some(to_json(body)?),
            public: false,
        })
        .await?,
    )
}

pub async fn post<B: Serialize, T: DeserializeOwned>(path: &str, body: &B) -> ApiResult<T> {
    with_body(Method::POST, path, body).await
}

pub async fn patch<B: Serialize, T: DeserializeOwned>(path: &str, body: &B) -> ApiResult<T> {
    with_body(Method::PATCH, path, body).await
}

pub async fn put<B: Serialize, T: DeserializeOwned>(path: &str, body: &B) -> ApiResult<T> {
    with_body(Method::PUT, path, body).await
}

/// A POST that carries no body (actions such as cancel, revoke, rollback).
pub async fn post_empty<T: DeserializeOwned>(path: &str) -> ApiResult<T> {
    from_json(
        call_json(Call {
            method: Method::POST,
            path,
            body: None,
            public: false,
        })
        .await?,
    )
}

pub async fn delete(path: &str) -> ApiResult<()> {
    send(Call {
        method: Method::DELETE,
        path,
        body: None,
        public: false,
    })
    .await
    .map(drop)
}

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ------------------------------------------------------------- typed calls

pub async fn setup_status() -> ApiResult<SetupStatus> {
    get("/setup").await
}

pub async fn setup(req: &SetupRequest) -> ApiResult<Me> {
    let resp = send(Call {
        method: Method::POST,
        path: "/setup",
        body: Some(to_json(req)?),
        public: true,
    })
    .await?;
    let me: Me = decode(resp).await?;
    remember(&me);
    Ok(me)
}

pub async fn login(req: &LoginRequest) -> ApiResult<Me> {
    let resp = send(Call {
        method: Method::POST,
        path: "/auth/login",
        body: Some(to_json(req)?),
        public: true,
    })
    .await?;
    let me: Me = decode(resp).await?;
    remember(&me);
    Ok(me)
}

pub async fn logout() -> ApiResult<()> {
    let r = send(Call {
        method: Method::POST,
        path: "/auth/logout",
        body: None,
        public: false,
    })
    .await
    .map(drop);
    forget_csrf();
    r
}

/// Ends every session of the caller, this one included.
pub async fn logout_everywhere() -> ApiResult<()> {
    let r = send(Call {
        method: Method::POST,
        path: "/auth/logout-everywhere",
        body: None,
        public: false,
    })
    .await
    .map(drop);
    forget_csrf();
    r
}

/// Which login methods the login page offers (public).
pub async fn login_options() -> ApiResult<LoginOptions> {
    let resp = send(Call {
        method: Method::GET,
        path: "/auth/options",
        body: None,
        public: true,
    })
    .await?;
    decode(resp).await
}

pub async fn me() -> ApiResult<Me> {
    let me: Me = get("/auth/me").await?;
    remember(&me);
    Ok(me)
}

pub async fn overview() -> ApiResult<Overview> {
    get("/overview").await
}

pub async fn projects() -> ApiResult<Vec<Project>> {
    get_list("/projects?limit=500").await
}
pub async fn create_project(p: &NewProject) -> ApiResult<Project> {
    post("/projects", p).await
}
pub async fn project(id: Uuid) -> ApiResult<Project> {
    get(&format!("/projects/{id}")).await
}
pub async fn update_project(id: Uuid, u: &UpdateProject) -> ApiResult<Project> {
    patch(&format!("/projects/{id}"), u).await
}
pub async fn delete_project(id: Uuid) -> ApiResult<()> {
    delete(&format!("/projects/{id}")).await
}

pub async fn environments(project: Uuid) -> ApiResult<Vec<Environment>> {
    get_list(&format!("/projects/{project}/environments?limit=500")).await
}
pub async fn create_environment(project: Uuid, e: &NewEnvironment) -> ApiResult<Environment> {
    post(&format!("/projects/{project}/environments"), e).await
}
pub async fn environment(id: Uuid) -> ApiResult<Environment> {
    get(&format!("/environments/{id}")).await
}
pub async fn update_environment(id: Uuid, u: &UpdateEnvironment) -> ApiResult<Environment> {
    patch(&format!("/environments/{id}"), u).await
}
pub async fn delete_environment(id: Uuid) -> ApiResult<()> {
    delete(&format!("/environments/{id}")).await
}

pub async fn services(environment: Uuid) -> ApiResult<Vec<Service>> {
    get_list(&format!("/environments/{environment}/services?limit=500")).await
}
pub async fn create_service(environment: Uuid, s: &NewService) -> ApiResult<Service> {
    post(&format!("/environments/{environment}/services"), s).await
}
pub async fn service(id: Uuid) -> ApiResult<Service> {
    get(&format!("/services/{id}")).await
}
pub async fn update_service(id: Uuid, u: &UpdateService) -> ApiResult<Service> {
    patch(&format!("/services/{id}"), u).await
}
pub async fn delete_service(id: Uuid) -> ApiResult<()> {
    delete(&format!("/services/{id}")).await
}

pub async fn variables(environment: Uuid) -> ApiResult<Vec<Variable>> {
    get_list(&format!("/environments/{environment}/variables")).await
}
pub async fn put_variable(environment: Uuid, name: &str, v: &PutVariable) -> ApiResult<Variable> {
    put(
        &format!("/environments/{environment}/variables/{}", enc(name)),
        v,
    )
    .await
}
pub async fn delete_variable(environment: Uuid, name: &str) -> ApiResult<()> {
    delete(&format!(
        "/environments/{environment}/variables/{}",
        enc(name)
    ))
    .await
}

pub async fn deploy(service: Uuid, d: &CreateDeployment) -> ApiResult<Deployment> {
    post(&format!("/services/{service}/deployments"), d).await
}
/// Deploys an environment's services in dependency order (422 names a
/// `depends_on` cycle).
pub async fn deploy_environment(
    environment: Uuid,
    d: &DeployEnvironment,
) -> ApiResult<EnvironmentDeployment> {
    post(&format!("/environments/{environment}/deployments"), d).await
}
pub async fn deployments(service: Uuid) -> ApiResult<Vec<Deployment>> {
    get_list(&format!("/deployments?service={service}&limit=50")).await
}
pub async fn cancel_deployment(id: Uuid) -> ApiResult<Deployment> {
    post_empty(&format!("/deployments/{id}/cancel")).await
}
/// Redeploys an earlier release (trigger `rollback`).
pub async fn rollback(release: Uuid) -> ApiResult<Deployment> {
    post_empty(&format!("/releases/{release}/rollback")).await
}
pub async fn compose_import(
    environment: Uuid,
    c: &ComposeImport,
) -> ApiResult<ComposeImportResult> {
    post(&format!("/environments/{environment}/compose"), c).await
}

// ------------------------------------------------------------- event streams (SSE URLs)

/// Dashboard-wide live events ([`slipway_types::api::LiveEvent`]).
pub fn events_url() -> String {
    format!("{BASE}/events")
}
/// Steps and state of one deployment ([`slipway_types::api::DeploymentEvent`]).
pub fn deployment_events_url(id: Uuid) -> String {
    format!("{BASE}/deployments/{id}/events")
}
/// A container's output ([`slipway_types::api::LogLine`]), last `tail` lines then follow.
pub fn container_logs_url(host: Uuid, container: &str, tail: u32) -> String {
    format!(
        "{BASE}/hosts/{host}/containers/{}/logs?tail={tail}&follow=true",
        enc(container)
    )
}

/// Audit filters, also used to build the CSV export link.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditQuery {
    pub actor: String,
    pub action: String,
    pub target_type: String,
    pub since: String,
    pub until: String,
    pub limit: u64,
    pub offset: u64,
}

impl AuditQuery {
    pub fn query_string(&self, format: &str) -> String {
        let mut q = vec![format!("format={format}")];
        for (k, v) in [
            ("actor", &self.actor),
            ("action", &self.action),
            ("target_type", &self.target_type),
            ("since", &self.since),
            ("until", &self.until),
        ] {
            let v = v.trim();
            if !v.is_empty() {
                q.push(format!("{k}={}", enc(v)));
            }
        }
        if format == "json" {
            q.push(format!("limit={}&offset={}", self.limit, self.offset));
        }
        q.join("&")
    }

    pub fn csv_url(&self) -> String {
        format!("{BASE}/audit?{}", self.query_string("csv"))
    }
}

pub async fn audit(q: &AuditQuery) -> ApiResult<Page<AuditEntry>> {
    get(&format!("/audit?{}", q.query_string("json"))).await
}

pub async fn hosts() -> ApiResult<Vec<Host>> {
    get_list("/hosts?limit=500").await
}
pub async fn create_host(h: &NewHost) -> ApiResult<Host> {
    post("/hosts", h).await
}
pub async fn delete_host(id: Uuid) -> ApiResult<()> {
    delete(&format!("/hosts/{id}")).await
}
pub async fn update_host(id: Uuid, u: &UpdateHost) -> ApiResult<Host> {
    patch(&format!("/hosts/{id}"), u).await
}
pub async fn host(id: Uuid) -> ApiResult<Host> {
    get(&format!("/hosts/{id}")).await
}
/// A fresh one-time enrollment token and the command that uses it.
pub async fn enroll_host(id: Uuid) -> ApiResult<HostEnrollment> {
    post_empty(&format!("/hosts/{id}/enrollment")).await
}
pub async fn revoke_host(id: Uuid) -> ApiResult<Host> {
    post_empty(&format!("/hosts/{id}/revoke")).await
}

pub async fn tokens() -> ApiResult<Vec<ApiToken>> {
    get_list("/tokens?limit=500").await
}
pub async fn create_token(t: &CreateToken) -> ApiResult<CreatedToken> {
    post("/tokens", t).await
}
pub async fn revoke_token(id: Uuid) -> ApiResult<()> {
    delete(&format!("/tokens/{id}")).await
}

// ------------------------------------------------------------- CI: webhooks, triggers, promotion, approvals

pub async fn webhooks(project: Uuid) -> ApiResult<Vec<Webhook>> {
    get_list(&format!("/projects/{project}/webhooks")).await
}
pub async fn create_webhook(project: Uuid, w: &NewWebhook) -> ApiResult<CreatedWebhook> {
    post(&format!("/projects/{project}/webhooks"), w).await
}
pub async fn rotate_webhook(id: Uuid) -> ApiResult<CreatedWebhook> {
    post(&format!("/webhooks/{id}/rotate"), &serde_json::json!({})).await
}
pub async fn delete_webhook(id: Uuid) -> ApiResult<()> {
    delete(&format!("/webhooks/{id}")).await
}
pub async fn deliveries(project: Uuid) -> ApiResult<Vec<WebhookDelivery>> {
    get_list(&format!("/projects/{project}/deliveries?limit=50")).await
}
pub async fn redeliver(id: Uuid) -> ApiResult<HookResponse> {
    post(
        &format!("/deliveries/{id}/redeliver"),
        &serde_json::json!({}),
    )
    .await
}
pub async fn triggers(service: Uuid) -> ApiResult<Vec<TriggerRule>> {
    get_list(&format!("/services/{service}/triggers")).await
}
pub async fn create_trigger(service: Uuid, t: &NewTriggerRule) -> ApiResult<TriggerRule> {
    post(&format!("/services/{service}/triggers"), t).await
}
pub async fn delete_trigger(id: Uuid) -> ApiResult<()> {
    delete(&format!("/triggers/{id}")).await
}
pub async fn releases(service: Uuid) -> ApiResult<Vec<Release>> {
    get_list(&format!("/releases?service={service}&limit=50")).await
}
pub async fn release(id: Uuid) -> ApiResult<Release> {
    get(&format!("/releases/{id}")).await
}
pub async fn deployment(id: Uuid) -> ApiResult<Deployment> {
    get(&format!("/deployments/{id}")).await
}
pub async fn promote_preview(release: Uuid, env: Uuid) -> ApiResult<PromotePreview> {
    get(&format!(
        "/releases/{release}/promote-preview?environment_id={env}"
    ))
    .await
}
pub async fn promote(release: Uuid, p: &PromoteRequest) -> ApiResult<Deployment> {
    post(&format!("/releases/{release}/promote"), p).await
}
pub async fn policy(env: Uuid) -> ApiResult<EnvironmentPolicy> {
    get(&format!("/environments/{env}/policy")).await
}
pub async fn update_policy(env: Uuid, u: &UpdatePolicy) -> ApiResult<EnvironmentPolicy> {
    patch(&format!("/environments/{env}/policy"), u).await
}
pub async fn pending_approvals() -> ApiResult<Vec<ApprovalRequest>> {
    get_list("/approvals?state=pending&limit=200").await
}
pub async fn approve(deployment: Uuid) -> ApiResult<Deployment> {
    post(
        &format!("/deployments/{deployment}/approve"),
        &ApproveRequest::default(),
    )
    .await
}
pub async fn reject(deployment: Uuid, reason: String) -> ApiResult<Deployment> {
    post(
        &format!("/deployments/{deployment}/reject"),
        &RejectRequest { reason },
    )
    .await
}

/// An environment as pickers and lists show it: `project / environment`.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvChoice {
    pub id: Uuid,
    pub label: String,
}

/// Every environment of every project, labelled with its project's name.
pub async fn environment_choices() -> ApiResult<Vec<EnvChoice>> {
    let mut out = Vec::new();
    for p in projects().await? {
        for e in environments(p.id).await? {
            out.push(EnvChoice {
                id: e.id,
                label: format!("{} / {}", p.name, e.name),
            });
        }
    }
    Ok(out)
}

pub async fn users() -> ApiResult<Vec<User>> {
    get_list("/users?limit=500").await
}
pub async fn update_user(id: Uuid, u: &UpdateUser) -> ApiResult<User> {
    patch(&format!("/users/{id}"), u).await
}
pub async fn add_grant(user: Uuid, g: &NewRoleGrant) -> ApiResult<RoleGrant> {
    post(&format!("/users/{user}/grants"), g).await
}
pub async fn remove_grant(user: Uuid, grant: Uuid) -> ApiResult<()> {
    delete(&format!("/users/{user}/grants/{grant}")).await
}
pub async fn end_sessions(user: Uuid) -> ApiResult<()> {
    delete(&format!("/users/{user}/sessions")).await
}

pub async fn role_mappings() -> ApiResult<Vec<RoleMapping>> {
    get_list("/role-mappings").await
}
pub async fn create_role_mapping(m: &NewRoleMapping) -> ApiResult<RoleMapping> {
    post("/role-mappings", m).await
}
pub async fn delete_role_mapping(id: Uuid) -> ApiResult<()> {
    delete(&format!("/role-mappings/{id}")).await
}
pub async fn preview_claims(claims: serde_json::Value) -> ApiResult<ClaimsPreview> {
    post("/role-mappings/preview", &ClaimsPreviewRequest { claims }).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(enc("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }

    #[test]
    fn audit_query_skips_empty_filters() {
        let q = AuditQuery {
            action: "project.create".into(),
            since: "2026-11-23T10:00:00Z".into(),
            limit: 50,
            offset: 100,
            ..Default::default()
        };
        assert_eq!(
            q.query_string("json"),
            "format=json&action=project.create&since=2026-11-23T10%3A00%3A00Z&limit=50&offset=100"
        );
        assert_eq!(
            q.csv_url(),
            "/api/v1/audit?format=csv&action=project.create&since=2026-11-23T10%3A00%3A00Z"
        );
    }

    #[test]
    fn stream_urls() {
        let id = Uuid::nil();
        assert_eq!(
            container_logs_url(id, "abc/1", 200),
            "/api/v1/hosts/00000000-0000-0000-0000-000000000000/containers/abc%2F1/logs?tail=200&follow=true"
        );
        assert_eq!(
            deployment_events_url(id),
            "/api/v1/deployments/00000000-0000-0000-0000-000000000000/events"
        );
        assert_eq!(events_url(), "/api/v1/events");
    }

    #[test]
    fn lists_accept_a_page_or_a_bare_array() {
        let items = |json: &str| {
            serde_json::from_str(json)
                .map_err(|e| not_json(&e))
                .and_then(list_items)
                .and_then(from_json::<Vec<u32>>)
                .map_err(|e| e.message)
        };
        assert_eq!(
            items(r#"{"items":[1,2],"total":2,"limit":50,"offset":0}"#),
            Ok(vec![1, 2])
        );
        assert_eq!(items("[3]"), Ok(vec![3]));
        assert_eq!(
            items(r#"{"total":1,"limit":50,"offset":0,"items":[7],"extra":{"a":[1]}}"#),
            Ok(vec![7])
        );
        assert!(items(r#"{"total":0}"#).is_err_and(|m| m.contains("without `items`")));
        assert!(items(r#""x""#).is_err());
        assert!(items(r#"{"items":["x"]}"#).is_err_and(|m| m.starts_with("unexpected answer")));
        assert_eq!(
            items("{\n  \"items\": [1,]"),
            Err("unexpected answer from the server: not JSON (line 2, column 15)".to_owned())
        );
    }
}
