//! OpenID Connect login (authorization code + PKCE) against any compliant
//! provider, with the `openidconnect` crate: discovery, `state` and `nonce`
//! checks, id-token signature/issuer/audience/expiry validation (60 s clock
//! skew), and a JWKS refresh when a token is signed by a key we have not seen
//! (provider key rotation).
use crate::config::OidcProviderConfig;
use chrono::{DateTime, Duration, Utc};
use openidconnect::{
    core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata},
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, IssuerUrl,
    Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use serde_json::Value;
use std::{collections::HashMap, sync::RwLock, time::Instant};

/// How long a fetched discovery document (with its JWKS) is reused.
const METADATA_TTL: std::time::Duration = std::time::Duration::from_secs(3600);
/// Tolerated clock difference with the provider for `exp`.
const CLOCK_SKEW_SECS: i64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("unknown identity provider {0}")]
    UnknownProvider(String),
    #[error("identity provider discovery failed: {0}")]
    Discovery(String),
    #[error("invalid provider configuration: {0}")]
    Config(String),
    #[error("code exchange failed: {0}")]
    Exchange(String),
    #[error("the provider returned no id_token")]
    NoIdToken,
    #[error("id_token rejected: {0}")]
    InvalidIdToken(String),
}

impl OidcError {
    /// Short reason code for the audit log and the login page.
    pub fn reason(&self) -> &'static str {
        match self {
            OidcError::UnknownProvider(_) => "unknown_provider",
            OidcError::Discovery(_) | OidcError::Config(_) => "provider_unavailable",
            OidcError::Exchange(_) => "code_exchange_failed",
            OidcError::NoIdToken | OidcError::InvalidIdToken(_) => "invalid_id_token",
        }
    }
}

/// What a verified id_token tells us.
#[derive(Debug, Clone)]
pub struct Identity {
    pub issuer: String,
    pub subject: String,
    pub username: String,
    pub email: Option<String>,
    pub name: Option<String>,
    /// Every claim of the verified id_token (for role mapping).
    pub claims: Value,
}

/// A login in progress: what to remember until the callback.
pub struct Begun {
    pub authorize_url: String,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

pub struct Oidc {
    providers: Vec<OidcProviderConfig>,
    public_url: String,
    http: reqwest::Client,
    metadata: RwLock<HashMap<String, (Instant, CoreProviderMetadata)>>,
}

impl Oidc {
    pub fn new(providers: Vec<OidcProviderConfig>, public_url: &str) -> Result<Self, OidcError> {
        let http = reqwest::Client::builder()
            // The spec forbids following redirects on the token endpoint (SSRF).
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| OidcError::Config(e.to_string()))?;
        Ok(Self {
            providers,
            public_url: public_url.to_owned(),
            http,
            metadata: RwLock::new(HashMap::new()),
        })
    }

    pub fn providers(&self) -> &[OidcProviderConfig] {
        &self.providers
    }

    pub fn provider(&self, id: &str) -> Result<&OidcProviderConfig, OidcError> {
        self.providers
            .iter()
            .find(|p| p.id == id)
            .ok_or_else(|| OidcError::UnknownProvider(id.to_owned()))
    }

    pub fn redirect_uri(&self, id: &str) -> String {
        format!("{}/auth/oidc/{id}/callback", self.public_url)
    }

    async fn metadata(
        &self,
        p: &OidcProviderConfig,
        refresh: bool,
    ) -> Result<CoreProviderMetadata, OidcError> {
        if !refresh {
            let cache = self.metadata.read().unwrap_or_else(|e| e.into_inner());
            if let Some((at, m)) = cache.get(&p.id) {
                if at.elapsed() < METADATA_TTL {
                    return Ok(m.clone());
                }
            }
        }
        let issuer =
            IssuerUrl::new(p.issuer.clone()).map_err(|e| OidcError::Config(e.to_string()))?;
        let m = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| OidcError::Discovery(error_chain(&e)))?;
        self.metadata
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(p.id.clone(), (Instant::now(), m.clone()));
        Ok(m)
    }

    fn client(
        &self,
        p: &OidcProviderConfig,
        m: CoreProviderMetadata,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        OidcError,
    > {
        let redirect = RedirectUrl::new(self.redirect_uri(&p.id))
            .map_err(|e| OidcError::Config(e.to_string()))?;
        Ok(CoreClient::from_provider_metadata(
            m,
            ClientId::new(p.client_id.clone()),
            Some(ClientSecret::new(p.client_secret.clone())),
        )
        .set_redirect_uri(redirect))
    }

    /// Starts a login: the URL to send the browser to and the secrets to keep.
    pub async fn begin(&self, id: &str) -> Result<Begun, OidcError> {
        let p = self.provider(id)?;
        let client = self.client(p, self.metadata(p, false).await?)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for s in &p.scopes {
            req = req.add_scope(Scope::new(s.clone()));
        }
        let (url, state, nonce) = req.url();
        Ok(Begun {
            authorize_url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Finishes a login: exchanges the code (with the PKCE verifier) and
    /// verifies the id_token against the provider's keys and our nonce.
    pub async fn finish(
        &self,
        id: &str,
        code: &str,
        nonce: &str,
        pkce_verifier: &str,
    ) -> Result<Identity, OidcError> {
        let p = self.provider(id)?;
        let metadata = self.metadata(p, false).await?;
        let client = self.client(p, metadata)?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| OidcError::Config(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|e| OidcError::Exchange(error_chain(&e)))?;
        let id_token = response.id_token().ok_or(OidcError::NoIdToken)?.clone();
        let nonce = Nonce::new(nonce.to_owned());
        let verify =
            |client: &CoreClient<_, _, _, _, _, _>| -> Result<(), ClaimsVerificationError> {
                let verifier = client
                    .id_token_verifier()
                    .set_time_fn(|| Utc::now() - Duration::seconds(CLOCK_SKEW_SECS));
                id_token.claims(&verifier, &nonce).map(|_| ())
            };
        match verify(&client) {
            Ok(()) => {}
            // An unknown or changed key: the provider may have rotated; refetch its JWKS once.
            Err(ClaimsVerificationError::SignatureVerification(_)) => {
                let fresh = self.client(p, self.metadata(p, true).await?)?;
                verify(&fresh).map_err(|e| OidcError::InvalidIdToken(e.to_string()))?;
            }
            Err(e) => return Err(OidcError::InvalidIdToken(e.to_string())),
        }
        // Verified: read every claim from the token's payload.
        let claims = payload_claims(&id_token.to_string())
            .ok_or_else(|| OidcError::InvalidIdToken("unreadable payload".into()))?;
        let s = |k: &str| claims.get(k).and_then(Value::as_str).map(str::to_owned);
        let subject = s("sub").ok_or_else(|| OidcError::InvalidIdToken("no sub".into()))?;
        let email = s("email");
        let username = s(&p.username_claim)
            .or_else(|| s("preferred_username"))
            .or_else(|| email.clone())
            .unwrap_or_else(|| subject.clone());
        Ok(Identity {
            issuer: p.issuer.clone(),
            subject,
            username,
            email,
            name: s("name"),
            claims,
        })
    }
}

fn payload_claims(jwt: &str) -> Option<Value> {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
    let payload = jwt.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Pending logins expire after this long.
pub fn login_expired(created_at: DateTime<Utc>) -> bool {
    Utc::now() - created_at > Duration::minutes(10)
}
