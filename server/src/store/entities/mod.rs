//! SeaORM entities, one per table of `migrations/`. Only `store` and the
//! modules' store functions see these; the API speaks `slipway_types`.
pub mod api_token;
pub mod audit_checkpoint;
pub mod audit_entry;
pub mod audit_head;
pub mod deployment;
pub mod deployment_approval;
pub mod deployment_step;
pub mod deployment_target;
pub mod environment;
pub mod environment_policy;
pub mod host;
pub mod host_environment;
pub mod login_attempt;
pub mod oidc_login;
pub mod project;
pub mod release;
pub mod role_grant;
pub mod role_mapping;
pub mod service;
pub mod session;
pub mod trigger_rule;
pub mod user;
pub mod variable;
pub mod webhook;
pub mod webhook_delivery;
