//! `/api/v1`: one table declares every route — method, path, handler,
//! minimum role, the kind of change (what a token limited to some actions
//! may do), summary, bodies. It registers the handlers and produces the
//! OpenAPI document, so the two cannot drift. The role column documents what
//! the handler's `Auth<R>` extractor enforces; the route-enumeration test
//! checks each mutating route against it.
pub mod deployments;
pub mod environments;
pub mod extract;
pub mod hosts;
pub mod openapi;
pub mod overview;
pub mod projects;
pub mod services;
pub mod variables;

use crate::{audit, auth, ci, error::ApiError, store::is_unique_violation};
use actix_web::{http::Method, web, HttpResponse};
use extract::PageQuery;
use openapi::{
    EventStream, JsonObject, JsonOrCsv, NoBody, NoQuery, Payload, PayloadFn, QueryParams, SchemaFn,
    WebSocket,
};
use sea_orm::DbErr;
use slipway_types::{agent, api::*, ResourceName, Role};

pub struct RouteDoc {
    pub method: &'static str,
    pub path: &'static str,
    /// None: public.
    pub role: Option<Role>,
    /// The kind of change, for tokens limited to some (`TokenAction`); None
    /// for reads and for public routes, which no token reaches.
    pub action: Option<TokenAction>,
    pub summary: &'static str,
    /// The query parameters: the schema of the handler's `web::Query` type.
    pub query: Option<SchemaFn>,
    /// The request body's type, when the route takes one.
    pub request: Option<PayloadFn>,
    pub response: PayloadFn,
    /// The success statuses (PUT of a variable answers 201 when it creates it).
    pub statuses: &'static [u16],
}

/// The table names Rust types; the document asks them for their schemas,
/// so it cannot drift from what the handlers parse and answer.
macro_rules! routes {
    ($( $method:ident $path:literal => $handler:path, $role:ident $action:ident, $summary:literal,
        $query:ty, $req:ty => $($status:literal)|+ $resp:ty; )*) => {
        pub const ROUTES: &[RouteDoc] = &[$(
            RouteDoc {
                method: stringify!($method),
                path: concat!("/api/v1", $path),
                role: $role,
                action: $action,
                summary: $summary,
                query: if <$query as QueryParams>::PRESENT {
                    Some(<$query as QueryParams>::schema as SchemaFn)
                } else {
                    None
                },
                request: if <$req as Payload>::PRESENT {
                    Some(<$req as Payload>::content as PayloadFn)
                } else {
                    None
                },
                response: <$resp as Payload>::content as PayloadFn,
                statuses: &[$($status),+],
            },
        )*];

        /// Registers every `/api/v1` route.
        pub fn configure(cfg: &mut web::ServiceConfig) {
            let mut table = ResourceTable::default();
            $( table.add($path, stringify!($method), web::$method().to($handler)); )*
            table.register(cfg);
        }
    };
}

/// Routes grouped by path, so that a path is matched once whatever its
/// methods (a request tries far fewer patterns), and a known path with a
/// method it lacks answers 405 with `Allow`.
#[derive(Default)]
struct ResourceTable {
    resources: Vec<(&'static str, Vec<&'static str>, Vec<actix_web::Route>)>,
}

impl ResourceTable {
    fn add(&mut self, path: &'static str, method: &'static str, route: actix_web::Route) {
        match self.resources.iter_mut().find(|(p, _, _)| *p == path) {
            Some((_, methods, routes)) => {
                methods.push(method);
                routes.push(route);
            }
            None => self.resources.push((path, vec![method], vec![route])),
        }
    }

    fn register(mut self, cfg: &mut web::ServiceConfig) {
        // A resource answers for its whole path, so a more specific path
        // (`/role-mappings/preview`) must come before one that also matches
        // it (`/role-mappings/{id}`): fewer parameters first, else in order.
        self.resources
            .sort_by_key(|(path, _, _)| path.matches('{').count());
        for (path, methods, routes) in self.resources {
            let allow = methods
                .iter()
                .map(|m| m.to_ascii_uppercase())
                .collect::<Vec<_>>()
                .join(", ");
            let resource = routes.into_iter().fold(
                web::resource(path).default_service(web::to(move || {
                    let allow = allow.clone();
                    async move { Err::<HttpResponse, _>(ApiError::MethodNotAllowed(allow)) }
                })),
                |resource, route| resource.route(route),
            );
            cfg.service(resource);
        }
    }
}

const PUBLIC: Option<Role> = None;
const VIEWER: Option<Role> = Some(Role::Viewer);
const DEPLOYER: Option<Role> = Some(Role::Deployer);
const APPROVER: Option<Role> = Some(Role::Approver);
const ADMIN: Option<Role> = Some(Role::Admin);

const READ: Option<TokenAction> = None;
const NO_TOKEN: Option<TokenAction> = None;
const DEPLOY: Option<TokenAction> = Some(TokenAction::Deploy);
const APPROVE: Option<TokenAction> = Some(TokenAction::Approve);
const CONFIGURE: Option<TokenAction> = Some(TokenAction::Configure);

/// The kind of change a request makes, from the row of the route it matched
/// (`pattern` as actix reports it, `/api/v1/...`): None for reads. A
/// mutating request that matched no row (every route is in the table, so it
/// cannot happen) counts as `configure`, the broadest kind.
pub fn token_action(method: &Method, pattern: &str) -> Option<TokenAction> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    ROUTES
        .iter()
        .find(|r| r.path == pattern && r.method.eq_ignore_ascii_case(method.as_str()))
        .map_or(Some(TokenAction::Configure), |r| r.action)
}

routes! {
    get "/openapi.json" => openapi::document, PUBLIC READ, "This document", NoQuery, NoBody => 200 serde_json::Value;
    get "/setup" => auth::routes::setup_status, PUBLIC READ, "Whether first-run setup is needed", NoQuery, NoBody => 200 SetupStatus;
    post "/setup" => auth::routes::setup, PUBLIC NO_TOKEN, "Create the first admin (only while no user exists)", NoQuery, SetupRequest => 201 Me;
    post "/auth/login" => auth::routes::login, PUBLIC NO_TOKEN, "Log in with a local account (rate limited)", NoQuery, LoginRequest => 200 Me;
    get "/auth/options" => auth::sso::login_options, PUBLIC READ, "Login methods: local and OIDC providers", NoQuery, NoBody => 200 LoginOptions;
    post "/auth/logout" => auth::routes::logout, VIEWER CONFIGURE, "End this session", NoQuery, NoBody => 204 NoBody;
    post "/auth/logout-everywhere" => auth::users::logout_everywhere, VIEWER CONFIGURE, "End all of the caller's sessions", NoQuery, NoBody => 204 NoBody;
    get "/auth/me" => auth::routes::me, VIEWER READ, "The caller, with the CSRF token of its session", NoQuery, NoBody => 200 Me;
    get "/overview" => overview::overview, VIEWER READ, "Projects × environments × services with their last deployment", NoQuery, NoBody => 200 Overview;
    get "/projects" => projects::list, VIEWER READ, "List projects", PageQuery, NoBody => 200 Page<Project>;
    post "/projects" => projects::create, ADMIN CONFIGURE, "Create a project", NoQuery, NewProject => 201 Project;
    get "/projects/{id}" => projects::get, VIEWER READ, "Get a project", NoQuery, NoBody => 200 Project;
    patch "/projects/{id}" => projects::update, ADMIN CONFIGURE, "Rename or describe a project", NoQuery, UpdateProject => 200 Project;
    delete "/projects/{id}" => projects::delete, ADMIN CONFIGURE, "Delete an empty project", NoQuery, NoBody => 204 NoBody;
    get "/projects/{id}/environments" => environments::list, VIEWER READ, "List a project's environments", PageQuery, NoBody => 200 Page<Environment>;
    post "/projects/{id}/environments" => environments::create, ADMIN CONFIGURE, "Create an environment", NoQuery, NewEnvironment => 201 Environment;
    get "/environments/{id}" => environments::get, VIEWER READ, "Get an environment", NoQuery, NoBody => 200 Environment;
    patch "/environments/{id}" => environments::update, ADMIN CONFIGURE, "Rename or (un)protect an environment", NoQuery, UpdateEnvironment => 200 Environment;
    delete "/environments/{id}" => environments::delete, ADMIN CONFIGURE, "Delete an environment without services", NoQuery, NoBody => 204 NoBody;
    get "/environments/{id}/services" => services::list, VIEWER READ, "List an environment's services", PageQuery, NoBody => 200 Page<Service>;
    post "/environments/{id}/services" => services::create, ADMIN CONFIGURE, "Create a service", NoQuery, NewService => 201 Service;
    post "/environments/{id}/compose" => crate::compose::routes::import, ADMIN CONFIGURE, "Import services from a docker-compose file (all or nothing)", NoQuery, ComposeImport => 200 ComposeImportResult;
    get "/environments/{id}/variables" => variables::list, VIEWER READ, "List variables and secrets (secret values never)", NoQuery, NoBody => 200 Vec<Variable>;
    put "/environments/{id}/variables/{name}" => variables::put, ADMIN CONFIGURE, "Set a variable or secret (new version)", NoQuery, PutVariable => 200 | 201 Variable;
    delete "/environments/{id}/variables/{name}" => variables::delete, ADMIN CONFIGURE, "Delete a variable or secret", NoQuery, NoBody => 204 NoBody;
    get "/services/{id}" => services::get, VIEWER READ, "Get a service", NoQuery, NoBody => 200 Service;
    patch "/services/{id}" => services::update, ADMIN CONFIGURE, "Rename a service or replace its spec", NoQuery, UpdateService => 200 Service;
    delete "/services/{id}" => services::delete, ADMIN CONFIGURE, "Delete a service and its history", NoQuery, NoBody => 204 NoBody;
    post "/services/{id}/deployments" => deployments::create, DEPLOYER DEPLOY, "Cut a release (or reuse one) and queue its deployment", NoQuery, CreateDeployment => 202 Deployment;
    post "/environments/{id}/deployments" => crate::deploy::routes::deploy_environment, DEPLOYER DEPLOY, "Deploy environment: the changed services (or the chosen ones) in dependency order, each waiting for its dependencies", NoQuery, DeployEnvironment => 202 | 200 EnvironmentDeployment;
    get "/hosts" => hosts::list, VIEWER READ, "List hosts", PageQuery, NoBody => 200 Page<Host>;
    post "/hosts" => hosts::create, ADMIN CONFIGURE, "Register a host", NoQuery, NewHost => 201 Host;
    get "/hosts/{id}" => hosts::get, VIEWER READ, "Get a host", NoQuery, NoBody => 200 Host;
    patch "/hosts/{id}" => hosts::update, ADMIN CONFIGURE, "Rename, relabel or reassign a host", NoQuery, UpdateHost => 200 Host;
    delete "/hosts/{id}" => hosts::delete, ADMIN CONFIGURE, "Remove a host", NoQuery, NoBody => 204 NoBody;
    post "/hosts/{id}/enrollment" => crate::agents::enroll::create_enrollment, ADMIN CONFIGURE, "Issue a one-time agent enrollment token (shown once)", NoQuery, NoBody => 201 HostEnrollment;
    post "/hosts/{id}/revoke" => crate::agents::enroll::revoke, ADMIN CONFIGURE, "Revoke a host: its agent is cut off at once and cannot reconnect", NoQuery, NoBody => 200 Host;
    post "/agent/enroll" => crate::agents::enroll::enroll, PUBLIC NO_TOKEN, "Agent trades a one-time token for its identity (Ed25519 public key)", NoQuery, agent::EnrollRequest => 200 agent::EnrollResponse;
    get "/agent/connect" => crate::agents::connect::connect, PUBLIC READ, "Agent WebSocket (challenge–response with the host's Ed25519 key)", NoQuery, NoBody => 101 WebSocket;
    get "/hosts/{id}/containers/{container}/logs" => crate::agents::logs::container_logs, VIEWER READ, "Container logs as server-sent events (tail=, follow=)", crate::agents::logs::LogsQuery, NoBody => 200 EventStream<LogLine>;
    get "/releases" => deployments::list_releases, VIEWER READ, "List releases (filters: service, environment, project)", deployments::ListFilter, NoBody => 200 Page<Release>;
    get "/releases/{id}" => deployments::get_release, VIEWER READ, "Get a release", NoQuery, NoBody => 200 Release;
    get "/deployments" => deployments::list, VIEWER READ, "List deployments (filters: service, environment, project, state)", deployments::ListFilter, NoBody => 200 Page<Deployment>;
    get "/deployments/{id}" => deployments::get, VIEWER READ, "Get a deployment with its step log", NoQuery, NoBody => 200 Deployment;
    get "/deployments/{id}/events" => crate::deploy::routes::deployment_events, VIEWER READ, "Live step log and state of a deployment (server-sent events of DeploymentEvent)", NoQuery, NoBody => 200 EventStream<DeploymentEvent>;
    get "/events" => crate::deploy::routes::events, VIEWER READ, "Live deployment and host changes (server-sent events of LiveEvent)", NoQuery, NoBody => 200 EventStream<LiveEvent>;
    post "/releases/{id}/rollback" => crate::deploy::routes::rollback, DEPLOYER DEPLOY, "Roll back: redeploy this earlier release of its service", NoQuery, NoBody => 202 Deployment;
    post "/deployments/{id}/cancel" => deployments::cancel, DEPLOYER DEPLOY, "Cancel a queued or running deployment", NoQuery, NoBody => 200 Deployment;
    get "/environments/{id}/policy" => ci::policy::get, VIEWER READ, "Deploy policy: required approvals, maintenance windows, freezes", NoQuery, NoBody => 200 EnvironmentPolicy;
    patch "/environments/{id}/policy" => ci::policy::update, ADMIN CONFIGURE, "Change the deploy policy", NoQuery, UpdatePolicy => 200 EnvironmentPolicy;
    post "/deployments/{id}/approve" => ci::policy::approve, APPROVER APPROVE, "Approve a deployment awaiting approval (not your own)", NoQuery, ApproveRequest => 200 Deployment;
    post "/deployments/{id}/reject" => ci::policy::reject, APPROVER APPROVE, "Reject a deployment awaiting approval", NoQuery, RejectRequest => 200 Deployment;
    get "/approvals" => ci::policy::list, VIEWER READ, "Deployments awaiting approval (state=pending)", ci::policy::ApprovalFilter, NoBody => 200 Page<ApprovalRequest>;
    post "/releases/{id}/promote" => ci::promote::promote, DEPLOYER DEPLOY, "Promote a release to another environment of its project", NoQuery, PromoteRequest => 202 Deployment;
    get "/releases/{id}/promote-preview" => ci::promote::preview, VIEWER READ, "What promoting a release would change (environment_id=)", ci::promote::PreviewQuery, NoBody => 200 PromotePreview;
    get "/projects/{id}/webhooks" => ci::hooks::list_webhooks, ADMIN READ, "A project's webhook endpoints", NoQuery, NoBody => 200 Vec<Webhook>;
    post "/projects/{id}/webhooks" => ci::hooks::create_webhook, ADMIN CONFIGURE, "Create a webhook endpoint (secret shown once)", NoQuery, NewWebhook => 201 CreatedWebhook;
    post "/webhooks/{id}/rotate" => ci::hooks::rotate_webhook, ADMIN CONFIGURE, "Rotate a webhook secret (new secret shown once)", NoQuery, NoBody => 200 CreatedWebhook;
    delete "/webhooks/{id}" => ci::hooks::delete_webhook, ADMIN CONFIGURE, "Delete a webhook endpoint", NoQuery, NoBody => 204 NoBody;
    get "/projects/{id}/deliveries" => ci::hooks::list_deliveries, VIEWER READ, "Webhook deliveries received for a project", PageQuery, NoBody => 200 Page<WebhookDelivery>;
    post "/deliveries/{id}/redeliver" => ci::hooks::redeliver, ADMIN DEPLOY, "Process a stored delivery again (new delivery)", NoQuery, NoBody => 202 HookResponse;
    get "/services/{id}/triggers" => ci::hooks::list_triggers, ADMIN READ, "A service's trigger rules", NoQuery, NoBody => 200 Vec<TriggerRule>;
    post "/services/{id}/triggers" => ci::hooks::create_trigger, ADMIN CONFIGURE, "Add a trigger rule", NoQuery, NewTriggerRule => 201 TriggerRule;
    delete "/triggers/{id}" => ci::hooks::delete_trigger, ADMIN CONFIGURE, "Delete a trigger rule", NoQuery, NoBody => 204 NoBody;
    post "/hooks/github/{project_id}" => ci::hooks::github, PUBLIC NO_TOKEN, "GitHub webhook (X-Hub-Signature-256)", NoQuery, JsonObject => 202 HookResponse;
    post "/hooks/gitlab/{project_id}" => ci::hooks::gitlab, PUBLIC NO_TOKEN, "GitLab webhook (X-Gitlab-Token)", NoQuery, JsonObject => 202 HookResponse;
    post "/hooks/generic/{project_id}" => ci::hooks::generic, PUBLIC NO_TOKEN, "Generic signed webhook (X-Slipway-Signature)", NoQuery, GenericHookPayload => 202 HookResponse;
    get "/audit" => audit::routes::list, APPROVER READ, "Audit log (filters: actor, action, target_type, target_id, since, until; format=json|csv)", audit::routes::AuditQuery, NoBody => 200 JsonOrCsv<Page<AuditEntry>>;
    get "/users" => auth::users::list, ADMIN READ, "List users with their roles, grants and sessions", PageQuery, NoBody => 200 Page<User>;
    get "/users/{id}" => auth::users::get, ADMIN READ, "Get a user", NoQuery, NoBody => 200 User;
    patch "/users/{id}" => auth::users::update, ADMIN CONFIGURE, "Disable/enable a user or set a local user's role", NoQuery, UpdateUser => 200 User;
    post "/users/{id}/grants" => auth::users::add_grant, ADMIN CONFIGURE, "Grant a role (everywhere or in one environment)", NoQuery, NewRoleGrant => 201 RoleGrant;
    delete "/users/{id}/grants/{grant}" => auth::users::remove_grant, ADMIN CONFIGURE, "Remove a role grant", NoQuery, NoBody => 204 NoBody;
    delete "/users/{id}/sessions" => auth::users::revoke_sessions, ADMIN CONFIGURE, "End every session of a user", NoQuery, NoBody => 204 NoBody;
    get "/role-mappings" => auth::users::list_mappings, ADMIN READ, "Claim → role mapping rules", NoQuery, NoBody => 200 Vec<RoleMapping>;
    post "/role-mappings" => auth::users::create_mapping, ADMIN CONFIGURE, "Add a mapping rule", NoQuery, NewRoleMapping => 201 RoleMapping;
    delete "/role-mappings/{id}" => auth::users::delete_mapping, ADMIN CONFIGURE, "Delete a mapping rule", NoQuery, NoBody => 204 NoBody;
    post "/role-mappings/preview" => auth::users::preview_mapping, ADMIN CONFIGURE, "Which roles would these claims get?", NoQuery, ClaimsPreviewRequest => 200 ClaimsPreview;
    get "/tokens" => auth::routes::list_tokens, ADMIN READ, "List API tokens", PageQuery, NoBody => 200 Page<ApiToken>;
    post "/tokens" => auth::routes::create_token, ADMIN CONFIGURE, "Create an API token (secret shown once)", NoQuery, CreateToken => 201 CreatedToken;
    delete "/tokens/{id}" => auth::routes::revoke_token, ADMIN CONFIGURE, "Revoke an API token", NoQuery, NoBody => 204 NoBody;
}

/// Names read back from the store were validated on the way in.
pub fn stored_name(s: String) -> Result<ResourceName, ApiError> {
    ResourceName::try_from(s)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("stored name invalid: {e}")))
}

/// A unique-constraint violation becomes a 409 with `message`.
pub fn conflict_on_duplicate(e: DbErr, message: impl Into<String>) -> ApiError {
    if is_unique_violation(&e) {
        ApiError::Conflict(message.into())
    } else {
        ApiError::Store(e)
    }
}
