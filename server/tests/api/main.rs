//! Black-box API tests: one binary (fast linking), each store test run on
//! SQLite and on a real PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support/eventually.rs"]
mod eventually;
mod helpers;

mod agents;
mod approvals;
mod audit;
mod auth;
mod cache;
mod cli;
mod compose;
mod crud;
mod deployments;
mod environment_deploy;
mod oidc;
mod ops;
mod protected;
mod replicas;
mod routes;
mod secrets;
mod validation;
mod webhooks;
