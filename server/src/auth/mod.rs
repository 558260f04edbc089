//! Who is calling and what they may do. Two credentials exist: a session
//! cookie (browsers, CSRF-protected) and a bearer API token (CI, scripts).
//! Every route takes an [`Auth<R>`] extractor naming its minimum role; routes
//! that change something in one environment narrow it with [`Auth::scope`],
//! which also yields the [`ActorInfo`] the audit log needs — so a mutation
//! cannot be written without passing the scope check.
pub mod oidc;
pub mod password;
pub mod ratelimit;
pub mod rbac;
pub mod routes;
pub mod sessions;
pub mod sso;
pub mod tokens;
pub mod users;

use crate::{audit::ActorInfo, error::ApiError, ops::RequestId, state::AppState};
use actix_web::{
    body::MessageBody,
    dev::{Payload, ServiceRequest, ServiceResponse},
    http::Method,
    middleware::Next,
    web, FromRequest, HttpMessage, HttpRequest,
};
use futures_util::future::{ready, Ready};
use slipway_types::{api::TokenAction, Role};
use std::{collections::BTreeMap, marker::PhantomData, net::IpAddr};
use uuid::Uuid;

pub const SESSION_COOKIE: &str = "slipway_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// User name, or `token:<name>` for API tokens.
    pub name: String,
    pub user_id: Option<Uuid>,
    /// Role everywhere.
    pub role: Role,
    /// Users: higher roles held in single environments (role grants).
    pub env_roles: BTreeMap<Uuid, Role>,
    /// `Some` for tokens limited to these environments (read-only elsewhere).
    pub environments: Option<Vec<Uuid>>,
    /// `Some` for tokens limited to these kinds of change.
    pub actions: Option<Vec<TokenAction>>,
    pub session: Option<sessions::SessionRef>,
}

impl Principal {
    /// The role this principal holds in `env` (or globally when `env` is None).
    pub fn effective_role(&self, env: Option<Uuid>) -> Role {
        let granted = match env.and_then(|e| self.env_roles.get(&e)) {
            Some(r) => self.role.max(*r),
            None => self.role,
        };
        match (&self.environments, env) {
            (None, _) => granted,
            (Some(list), Some(e)) if list.contains(&e) => granted,
            (Some(_), _) => Role::Viewer,
        }
    }

    /// The highest role held anywhere: the gate every route checks first.
    pub fn max_role(&self) -> Role {
        self.env_roles.values().copied().fold(self.role, Role::max)
    }
}

/// Marker types naming a route's minimum role.
pub trait MinRole {
    const ROLE: Role;
}
pub struct Viewer;
pub struct Deployer;
pub struct Approver;
pub struct Admin;
impl MinRole for Viewer {
    const ROLE: Role = Role::Viewer;
}
impl MinRole for Deployer {
    const ROLE: Role = Role::Deployer;
}
impl MinRole for Approver {
    const ROLE: Role = Role::Approver;
}
impl MinRole for Admin {
    const ROLE: Role = Role::Admin;
}

/// Extractor: 401 without valid credentials, 403 below role `R`, 403 on a
/// cookie-authenticated mutation without the CSRF header.
pub struct Auth<R: MinRole> {
    pub principal: Principal,
    source_ip: Option<String>,
    request_id: Option<String>,
    _role: PhantomData<R>,
}

impl<R: MinRole> Auth<R> {
    /// Checks `R` against the principal's role in `env` (None = a change not
    /// tied to one environment) and returns the actor for the audit entry.
    pub fn scope(&self, env: Option<Uuid>) -> Result<ActorInfo, ApiError> {
        if self.principal.effective_role(env) < R::ROLE {
            return Err(forbidden(R::ROLE, env));
        }
        Ok(ActorInfo {
            name: self.principal.name.clone(),
            source_ip: self.source_ip.clone(),
            request_id: self.request_id.clone(),
        })
    }
}

impl<R: MinRole> Auth<R> {
    /// The actor for actions on the caller's own session (logout), which
    /// every role may do whatever its environment scope.
    pub fn own_actor(&self) -> ActorInfo {
        ActorInfo {
            name: self.principal.name.clone(),
            source_ip: self.source_ip.clone(),
            request_id: self.request_id.clone(),
        }
    }
}

/// A token limited to some kinds of change may make only those.
fn check_action(p: &Principal, req: &HttpRequest) -> Result<(), ApiError> {
    let Some(allowed) = &p.actions else {
        return Ok(());
    };
    let pattern = req.match_pattern().unwrap_or_default();
    let Some(action) = crate::api::token_action(req.method(), &pattern) else {
        return Ok(());
    };
    if allowed.contains(&action) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "this token may not {}: it is limited to {}",
            action.as_str(),
            allowed
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

fn forbidden(role: Role, env: Option<Uuid>) -> ApiError {
    match env {
        Some(e) => ApiError::Forbidden(format!("this needs the {role} role in environment {e}")),
        None => ApiError::Forbidden(format!("this needs the {role} role")),
    }
}

/// Request context for audit entries of unauthenticated actions (login, setup).
pub fn request_context(req: &HttpRequest) -> (Option<String>, Option<String>) {
    let trusted = req
        .app_data::<web::Data<AppState>>()
        .map(|s| s.settings.trusted_proxies.clone())
        .unwrap_or_default();
    let xff = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    let ip = req
        .peer_addr()
        .map(|a| client_ip(a.ip(), xff, &trusted).to_string());
    let rid = req.extensions().get::<RequestId>().map(|r| r.0.clone());
    (ip, rid)
}

/// The client's address: the peer, unless the peer is a trusted proxy, in
/// which case the right-most `X-Forwarded-For` hop that is not itself a
/// trusted proxy (hops further left could be forged by the client).
pub fn client_ip(peer: IpAddr, xff: Option<&str>, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let Some(xff) = xff else {
        return peer;
    };
    let mut last = peer;
    for hop in xff.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) if trusted.contains(&ip) => last = ip,
            Ok(ip) => return ip,
            Err(_) => return last,
        }
    }
    last
}

/// True when a trusted proxy says the client used https.
pub fn forwarded_https(req: &HttpRequest, trusted: &[IpAddr]) -> bool {
    req.peer_addr().is_some_and(|p| trusted.contains(&p.ip()))
        && req
            .headers()
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// What the authentication middleware found, kept in request extensions.
#[derive(Clone)]
enum Authn {
    Ok(Principal),
    Unauthenticated,
    /// An OIDC session past `oidc_max_session_age`.
    Reauthenticate,
    Csrf,
    Failed(String),
}

/// Resolves the caller's credentials once per `/api/v1` request, before any
/// extractor runs, so that `Auth<R>` answers synchronously and a role check
/// always wins over body validation (a viewer gets 403, not a 422 hint).
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let outcome = match req.app_data::<web::Data<AppState>>() {
        Some(state) => match authenticate(state, req.request()).await {
            Ok(p) => Authn::Ok(p),
            Err(ApiError::Unauthenticated) => Authn::Unauthenticated,
            Err(ApiError::Reauthenticate) => Authn::Reauthenticate,
            Err(ApiError::Csrf) => Authn::Csrf,
            Err(e) => {
                tracing::error!(error = %format!("{e:?}"), "authentication failed");
                Authn::Failed(e.to_string())
            }
        },
        None => Authn::Failed("app state missing".into()),
    };
    req.extensions_mut().insert(outcome);
    next.call(req).await
}

impl<R: MinRole + 'static> FromRequest for Auth<R> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let outcome = req.extensions().get::<Authn>().cloned();
        ready(match outcome {
            Some(Authn::Ok(principal)) if principal.max_role() >= R::ROLE => {
                if let Err(e) = check_action(&principal, req) {
                    return ready(Err(e));
                }
                let (source_ip, request_id) = request_context(req);
                Ok(Auth {
                    principal,
                    source_ip,
                    request_id,
                    _role: PhantomData,
                })
            }
            Some(Authn::Ok(_)) => Err(forbidden(R::ROLE, None)),
            Some(Authn::Unauthenticated) => Err(ApiError::Unauthenticated),
            Some(Authn::Reauthenticate) => Err(ApiError::Reauthenticate),
            Some(Authn::Csrf) => Err(ApiError::Csrf),
            Some(Authn::Failed(m)) => Err(ApiError::Internal(anyhow::anyhow!(m))),
            None => Err(ApiError::Internal(anyhow::anyhow!(
                "auth middleware not installed"
            ))),
        })
    }
}

async fn authenticate(state: &AppState, req: &HttpRequest) -> Result<Principal, ApiError> {
    if let Some(h) = req.headers().get(actix_web::http::header::AUTHORIZATION) {
        let value = h.to_str().map_err(|_| ApiError::Unauthenticated)?;
        let secret = value
            .strip_prefix("Bearer ")
            .ok_or(ApiError::Unauthenticated)?;
        return tokens::authenticate(&state.db, &state.read_cache, secret.trim()).await;
    }
    let cookie = req
        .cookie(SESSION_COOKIE)
        .ok_or(ApiError::Unauthenticated)?;
    let principal = sessions::authenticate(state, cookie.value()).await?;
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe {
        let sent = req
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let expected = principal
            .session
            .as_ref()
            .map(|s| s.csrf_token.as_str())
            .unwrap_or("");
        if expected.is_empty() || !constant_time_eq(sent.as_bytes(), expected.as_bytes()) {
            return Err(ApiError::Csrf);
        }
    }
    Ok(principal)
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// 32 random bytes, URL-safe base64.
pub fn random_secret() -> String {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// Hex SHA-256, how session ids and token secrets are stored.
pub fn sha256_hex(s: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(s.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(role: Role, envs: Option<Vec<Uuid>>) -> Principal {
        Principal {
            name: "t".into(),
            user_id: None,
            role,
            env_roles: BTreeMap::new(),
            environments: envs,
            actions: None,
            session: None,
        }
    }

    #[test]
    fn environment_grants_raise_the_role_only_there() {
        let staging = Uuid::new_v4();
        let prod = Uuid::new_v4();
        let mut p = principal(Role::Viewer, None);
        p.env_roles.insert(staging, Role::Deployer);
        assert_eq!(p.effective_role(Some(staging)), Role::Deployer);
        assert_eq!(p.effective_role(Some(prod)), Role::Viewer);
        assert_eq!(p.effective_role(None), Role::Viewer);
        assert_eq!(p.max_role(), Role::Deployer);
    }

    #[test]
    fn scoped_tokens_are_read_only_outside_their_environments() {
        let staging = Uuid::new_v4();
        let prod = Uuid::new_v4();
        let p = principal(Role::Deployer, Some(vec![staging]));
        assert_eq!(p.effective_role(Some(staging)), Role::Deployer);
        assert_eq!(p.effective_role(Some(prod)), Role::Viewer);
        assert_eq!(p.effective_role(None), Role::Viewer);
        let unscoped = principal(Role::Admin, None);
        assert_eq!(unscoped.effective_role(Some(prod)), Role::Admin);
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let proxy = ip("10.0.0.2");
        let trusted = [proxy];
        // Untrusted peer: its header is ignored.
        assert_eq!(
            client_ip(ip("198.51.100.7"), Some("203.0.113.9"), &trusted),
            ip("198.51.100.7")
        );
        // Trusted peer: the right-most untrusted hop; a forged left part is skipped.
        assert_eq!(
            client_ip(proxy, Some("1.2.3.4, 203.0.113.9"), &trusted),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_ip(proxy, Some("203.0.113.9, 10.0.0.2"), &trusted),
            ip("203.0.113.9")
        );
        assert_eq!(client_ip(proxy, None, &trusted), proxy);
        assert_eq!(client_ip(proxy, Some("garbage"), &trusted), proxy);
    }

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
