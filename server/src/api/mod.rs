//! `/api/v1`: one table declares every route — method, path, handler,
//! minimum role, summary, bodies. It registers the handlers and produces the
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
use actix_web::web;
use sea_orm::DbErr;
use slipway_types::{ResourceName, Role};

pub struct RouteDoc {
    pub method: &'static str,
    pub path: &'static str,
    /// None: public.
    pub role: Option<Role>,
    pub summary: &'static str,
    pub request: Option<&'static str>,
    pub response: &'static str,
}

macro_rules! routes {
    ($( $method:ident $path:literal => $handler:path, $role:expr, $summary:literal, $req:expr => $resp:literal; )*) => {
        pub const ROUTES: &[RouteDoc] = &[$(
            RouteDoc {
                method: stringify!($method),
                path: concat!("/api/v1", $path),
                role: $role,
                summary: $summary,
                request: $req,
                response: $resp,
            },
        )*];

        /// Registers every `/api/v1` route.
        pub fn configure(cfg: &mut web::ServiceConfig) {
            $( cfg.route($path, web::$method().to($handler)); )*
        }
    };
}

const PUBLIC: Option<Role> = None;
const VIEWER: Option<Role> = Some(Role::Viewer);
const DEPLOYER: Option<Role> = Some(Role::Deployer);
const APPROVER: Option<Role> = Some(Role::Approver);
const ADMIN: Option<Role> = Some(Role::Admin);

routes! {
    get "/openapi.json" => openapi::document, PUBLIC, "This document", None => "OpenAPI";
    get "/setup" => auth::routes::setup_status, PUBLIC, "Whether first-run setup is needed", None => "SetupStatus";
    post "/setup" => auth::routes::setup, PUBLIC, "Create the first admin (only while no user exists)", Some("SetupRequest") => "Me";
    post "/auth/login" => auth::routes::login, PUBLIC, "Log in with a local account (rate limited)", Some("LoginRequest") => "Me";
    get "/auth/options" => auth::sso::login_options, PUBLIC, "Login methods: local and OIDC providers", None => "LoginOptions";
    post "/auth/logout" => auth::routes::logout, VIEWER, "End this session", None => "empty";
    post "/auth/logout-everywhere" => auth::users::logout_everywhere, VIEWER, "End all of the caller's sessions", None => "empty";
    get "/auth/me" => auth::routes::me, VIEWER, "The caller, with the CSRF token of its session", None => "Me";
    get "/overview" => overview::overview, VIEWER, "Projects × environments × services with their last deployment", None => "Overview";
    get "/projects" => projects::list, VIEWER, "List projects", None => "Page<Project>";
    post "/projects" => projects::create, ADMIN, "Create a project", Some("NewProject") => "Project";
    get "/projects/{id}" => projects::get, VIEWER, "Get a project", None => "Project";
    patch "/projects/{id}" => projects::update, ADMIN, "Rename or describe a project", Some("UpdateProject") => "Project";
    delete "/projects/{id}" => projects::delete, ADMIN, "Delete an empty project", None => "empty";
    get "/projects/{id}/environments" => environments::list, VIEWER, "List a project's environments", None => "Page<Environment>";
    post "/projects/{id}/environments" => environments::create, ADMIN, "Create an environment", Some("NewEnvironment") => "Environment";
    get "/environments/{id}" => environments::get, VIEWER, "Get an environment", None => "Environment";
    patch "/environments/{id}" => environments::update, ADMIN, "Rename or (un)protect an environment", Some("UpdateEnvironment") => "Environment";
    delete "/environments/{id}" => environments::delete, ADMIN, "Delete an environment without services", None => "empty";
    get "/environments/{id}/services" => services::list, VIEWER, "List an environment's services", None => "Page<Service>";
    post "/environments/{id}/services" => services::create, ADMIN, "Create a service", Some("NewService") => "Service";
    get "/environments/{id}/variables" => variables::list, VIEWER, "List variables and secrets (secret values never)", None => "Vec<Variable>";
    put "/environments/{id}/variables/{name}" => variables::put, ADMIN, "Set a variable or secret (new version)", Some("PutVariable") => "Variable";
    delete "/environments/{id}/variables/{name}" => variables::delete, ADMIN, "Delete a variable or secret", None => "empty";
    get "/services/{id}" => services::get, VIEWER, "Get a service", None => "Service";
    patch "/services/{id}" => services::update, ADMIN, "Rename a service or replace its spec", Some("UpdateService") => "Service";
    delete "/services/{id}" => services::delete, ADMIN, "Delete a service and its history", None => "empty";
    post "/services/{id}/deployments" => deployments::create, DEPLOYER, "Cut a release (or reuse one) and queue its deployment", Some("CreateDeployment") => "Deployment";
    get "/hosts" => hosts::list, VIEWER, "List hosts", None => "Page<Host>";
    post "/hosts" => hosts::create, ADMIN, "Register a host", Some("NewHost") => "Host";
    get "/hosts/{id}" => hosts::get, VIEWER, "Get a host", None => "Host";
    patch "/hosts/{id}" => hosts::update, ADMIN, "Rename, relabel or reassign a host", Some("UpdateHost") => "Host";
    delete "/hosts/{id}" => hosts::delete, ADMIN, "Remove a host", None => "empty";
    get "/releases" => deployments::list_releases, VIEWER, "List releases (filters: service, environment, project)", None => "Page<Release>";
    get "/releases/{id}" => deployments::get_release, VIEWER, "Get a release", None => "Release";
    get "/deployments" => deployments::list, VIEWER, "List deployments (filters: service, environment, project, state)", None => "Page<Deployment>";
    get "/deployments/{id}" => deployments::get, VIEWER, "Get a deployment with its step log", None => "Deployment";
    post "/deployments/{id}/cancel" => deployments::cancel, DEPLOYER, "Cancel a queued or running deployment", None => "Deployment";
    get "/environments/{id}/policy" => ci::policy::get, VIEWER, "Deploy policy: required approvals, maintenance windows, freezes", None => "EnvironmentPolicy";
    patch "/environments/{id}/policy" => ci::policy::update, ADMIN, "Change the deploy policy", Some("UpdatePolicy") => "EnvironmentPolicy";
    post "/deployments/{id}/approve" => ci::policy::approve, APPROVER, "Approve a deployment awaiting approval (not your own)", Some("ApproveRequest") => "Deployment";
    post "/deployments/{id}/reject" => ci::policy::reject, APPROVER, "Reject a deployment awaiting approval", Some("RejectRequest") => "Deployment";
    get "/approvals" => ci::policy::list, VIEWER, "Deployments awaiting approval (state=pending)", None => "Page<ApprovalRequest>";
    post "/releases/{id}/promote" => ci::promote::promote, DEPLOYER, "Promote a release to another environment of its project", Some("PromoteRequest") => "Deployment";
    get "/releases/{id}/promote-preview" => ci::promote::preview, VIEWER, "What promoting a release would change (environment_id=)", None => "PromotePreview";
    get "/projects/{id}/webhooks" => ci::hooks::list_webhooks, ADMIN, "A project's webhook endpoints", None => "Vec<Webhook>";
    post "/projects/{id}/webhooks" => ci::hooks::create_webhook, ADMIN, "Create a webhook endpoint (secret shown once)", Some("NewWebhook") => "CreatedWebhook";
    post "/webhooks/{id}/rotate" => ci::hooks::rotate_webhook, ADMIN, "Rotate a webhook secret (new secret shown once)", None => "CreatedWebhook";
    delete "/webhooks/{id}" => ci::hooks::delete_webhook, ADMIN, "Delete a webhook endpoint", None => "empty";
    get "/projects/{id}/deliveries" => ci::hooks::list_deliveries, VIEWER, "Webhook deliveries received for a project", None => "Page<WebhookDelivery>";
    post "/deliveries/{id}/redeliver" => ci::hooks::redeliver, ADMIN, "Process a stored delivery again (new delivery)", None => "HookResponse";
    get "/services/{id}/triggers" => ci::hooks::list_triggers, ADMIN, "A service's trigger rules", None => "Vec<TriggerRule>";
    post "/services/{id}/triggers" => ci::hooks::create_trigger, ADMIN, "Add a trigger rule", Some("NewTriggerRule") => "TriggerRule";
    delete "/triggers/{id}" => ci::hooks::delete_trigger, ADMIN, "Delete a trigger rule", None => "empty";
    post "/hooks/github/{project_id}" => ci::hooks::github, PUBLIC, "GitHub webhook (X-Hub-Signature-256)", Some("GitHub payload") => "HookResponse";
    post "/hooks/gitlab/{project_id}" => ci::hooks::gitlab, PUBLIC, "GitLab webhook (X-Gitlab-Token)", Some("GitLab payload") => "HookResponse";
    post "/hooks/generic/{project_id}" => ci::hooks::generic, PUBLIC, "Generic signed webhook (X-Slipway-Signature)", Some("GenericHookPayload") => "HookResponse";
    get "/audit" => audit::routes::list, APPROVER, "Audit log (filters: actor, action, target_type, target_id, since, until; format=json|csv)", None => "Page<AuditEntry>";
    get "/users" => auth::users::list, ADMIN, "List users with their roles, grants and sessions", None => "Page<User>";
    get "/users/{id}" => auth::users::get, ADMIN, "Get a user", None => "User";
    patch "/users/{id}" => auth::users::update, ADMIN, "Disable/enable a user or set a local user's role", Some("UpdateUser") => "User";
    post "/users/{id}/grants" => auth::users::add_grant, ADMIN, "Grant a role (everywhere or in one environment)", Some("NewRoleGrant") => "RoleGrant";
    delete "/users/{id}/grants/{grant}" => auth::users::remove_grant, ADMIN, "Remove a role grant", None => "empty";
    delete "/users/{id}/sessions" => auth::users::revoke_sessions, ADMIN, "End every session of a user", None => "empty";
    get "/role-mappings" => auth::users::list_mappings, ADMIN, "Claim → role mapping rules", None => "Vec<RoleMapping>";
    post "/role-mappings" => auth::users::create_mapping, ADMIN, "Add a mapping rule", Some("NewRoleMapping") => "RoleMapping";
    delete "/role-mappings/{id}" => auth::users::delete_mapping, ADMIN, "Delete a mapping rule", None => "empty";
    post "/role-mappings/preview" => auth::users::preview_mapping, ADMIN, "Which roles would these claims get?", Some("ClaimsPreviewRequest") => "ClaimsPreview";
    get "/tokens" => auth::routes::list_tokens, ADMIN, "List API tokens", None => "Page<ApiToken>";
    post "/tokens" => auth::routes::create_token, ADMIN, "Create an API token (secret shown once)", Some("CreateToken") => "CreatedToken";
    delete "/tokens/{id}" => auth::routes::revoke_token, ADMIN, "Revoke an API token", None => "empty";
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
