//! Agent enrollment and host revocation.
//!
//! An admin issues a one-time token for a host (only its SHA-256 is stored);
//! the agent trades it, once and before it expires, for the host's identity
//! by sending its Ed25519 public key. From then on the agent proves itself
//! on every connection by signing a fresh challenge (see `connect`).
//! Revoking a host forgets its key and cuts its agent off at once.
use crate::{
    api::{extract::ValidJson, hosts},
    audit::{ActorInfo, AuditTx, Event},
    auth::{self, Admin, Auth},
    error::{ApiError, ApiResult},
    live::Live,
    state::AppState,
    store::entities::host,
};
use actix_web::{web, HttpRequest, HttpResponse};
use base64::{
    alphabet,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
    Engine,
};
use chrono::{DateTime, Utc};
use ed25519_dalek::VerifyingKey;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use serde_json::json;
use slipway_types::{
    agent::{EnrollRequest, EnrollResponse, ProtocolErrorCode},
    api::{HostEnrollment, HostStatus, LiveEvent},
};
use uuid::Uuid;

/// Every enrollment token starts with this, so it is recognisable in a
/// paste and by secret scanners.
pub const TOKEN_PREFIX: &str = "swe_";
/// How long an issued enrollment token stays valid.
pub const TOKEN_TTL_SECS: i64 = 3600;

/// Standard base64, padding optional (agents differ in what they emit).
pub(crate) const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("public_key is not valid base64")]
    Base64,
    #[error("public_key must be 32 bytes (an Ed25519 public key), got {0}")]
    Length(usize),
    #[error("public_key is not a valid Ed25519 public key")]
    Point,
}

/// Decodes and checks an agent's public key: 32 bytes of standard base64
/// that decompress to a curve point of full order (small-order "weak" keys
/// would let anyone forge signatures).
pub fn decode_public_key(s: &str) -> Result<VerifyingKey, KeyError> {
    let bytes = BASE64.decode(s.trim()).map_err(|_| KeyError::Base64)?;
    let arr: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| KeyError::Length(bytes.len()))?;
    let key = VerifyingKey::from_bytes(&arr).map_err(|_| KeyError::Point)?;
    if key.is_weak() {
        return Err(KeyError::Point);
    }
    Ok(key)
}

/// A short, stable name of a public key for audit entries and logs.
pub fn fingerprint(key: &VerifyingKey) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(key.as_bytes());
    format!("SHA256:{}", hex::encode(&d[..8]))
}

/// A fresh one-time token: `swe_` + 32 random bytes, URL-safe base64.
pub fn new_token() -> String {
    format!("{TOKEN_PREFIX}{}", auth::random_secret())
}

/// The copy-paste command shown with a token.
pub fn install_command(public_url: &str, token: &str) -> String {
    format!("slipway-agent --server {public_url} --token {token} --data-dir /var/lib/slipway-agent")
}

/// Why a presented token does not enroll anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRejection {
    Unknown,
    Expired,
    Revoked,
}

impl TokenRejection {
    fn reason(self) -> &'static str {
        match self {
            TokenRejection::Unknown => "unknown or already used enrollment token",
            TokenRejection::Expired => "the enrollment token has expired: issue a new one",
            TokenRejection::Revoked => "the host is revoked",
        }
    }
}

/// Whether a host row found by the token's hash accepts `presented_hash`
/// at `now`. Pure: the hash comparison is repeated in constant time so the
/// database lookup is not the only check.
pub fn check_token(
    stored_hash: Option<&str>,
    expires_at: Option<DateTime<Utc>>,
    status: &str,
    presented_hash: &str,
    now: DateTime<Utc>,
) -> Result<(), TokenRejection> {
    let Some(stored) = stored_hash else {
        return Err(TokenRejection::Unknown);
    };
    if !auth::constant_time_eq(stored.as_bytes(), presented_hash.as_bytes()) {
        return Err(TokenRejection::Unknown);
    }
    if status == HostStatus::Revoked.as_str() {
        return Err(TokenRejection::Revoked);
    }
    match expires_at {
        Some(t) if t > now => Ok(()),
        _ => Err(TokenRejection::Expired),
    }
}

fn publish(state: &AppState, id: Uuid, status: HostStatus) {
    state
        .live
        .publish(Live::Event(LiveEvent::Host { id, status }));
}

/// `POST /hosts/{id}/enrollment`: a new one-time token (replacing any
/// pending one), shown once.
pub async fn create_enrollment(
    auth: Auth<Admin>,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let actor = auth.scope(None)?;
    let mut tx = AuditTx::begin(&state.db).await?;
    let h = hosts::find(tx.conn(), id.into_inner()).await?;
    if h.status == "revoked" {
        return Err(ApiError::Conflict(format!(
            "host {} is revoked: delete it and register the machine as a new host",
            h.name
        )));
    }
    let token = new_token();
    let expires_at = Utc::now() + chrono::Duration::seconds(TOKEN_TTL_SECS);
    host::Entity::update(host::ActiveModel {
        id: Set(h.id),
        enroll_token_hash: Set(Some(auth::sha256_hex(&token))),
        enroll_expires_at: Set(Some(expires_at)),
        ..Default::default()
    })
    .exec(tx.conn())
    .await?;
    tx.record(
        &actor,
        Event::new(
            "host.enrollment_issued",
            "host",
            h.id,
            json!({"name": h.name, "expires_at": expires_at, "token": "<redacted>"}),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(HostEnrollment {
        host_id: h.id,
        command: install_command(&state.settings.public_url, &token),
        token,
        expires_at,
    }))
}

/// `POST /agent/enroll` (public; the one-time token is the credential).
pub async fn enroll(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: ValidJson<EnrollRequest>,
) -> ApiResult<HttpResponse> {
    let body = body.0;
    let (source_ip, request_id) = auth::request_context(&req);
    // Its own limit (not the login one), reserved before the token is checked.
    let attempt = state
        .enroll_limiter
        .reserve(&state.db, &[("ip", source_ip.as_deref().unwrap_or("?"))])
        .await?;
    let presented = body.token.0.trim();
    let hash = auth::sha256_hex(presented);
    let now = Utc::now();
    // Checked only once the token is accepted (401 before 422).
    let key = decode_public_key(&body.public_key);

    let mut tx = AuditTx::begin(&state.db).await?;
    let found = if presented.starts_with(TOKEN_PREFIX) {
        host::Entity::find()
            .filter(host::Column::EnrollTokenHash.eq(hash.as_str()))
            .one(tx.conn())
            .await?
    } else {
        None
    };
    let checked = match &found {
        Some(h) => check_token(
            h.enroll_token_hash.as_deref(),
            h.enroll_expires_at,
            &h.status,
            &hash,
            now,
        ),
        None => Err(TokenRejection::Unknown),
    };
    if let Err(why) = checked {
        let actor = ActorInfo {
            name: "agent".into(),
            source_ip: source_ip.clone(),
            request_id,
        };
        tx.record(
            &actor,
            Event {
                action: "agent.enroll_failed",
                target_type: "host",
                target_id: found.as_ref().map(|h| h.id.to_string()),
                summary: json!({"reason": why.reason(), "hostname": body.facts.hostname}),
            },
        )
        .await?;
        tx.commit().await?;
        attempt.keep();
        tracing::warn!(source_ip = ?source_ip, reason = why.reason(), "agent enrollment rejected");
        return Err(ApiError::CredentialsRejected(why.reason().into()));
    }
    let Some(h) = found else {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "accepted enrollment token without a host"
        )));
    };
    let key = match key {
        Ok(k) => k,
        Err(e) => {
            // Nothing changes: the token stays valid for a retry with a
            // proper key, and the attempt was no guess.
            drop(tx);
            state.enroll_limiter.release(&state.db, attempt).await?;
            return Err(ApiError::invalid("public_key", e.to_string()));
        }
    };
    let facts =
        serde_json::to_string(&body.facts).map_err(|e| ApiError::Internal(anyhow::anyhow!(e)))?;
    host::Entity::update(host::ActiveModel {
        id: Set(h.id),
        status: Set(HostStatus::Offline.as_str().into()),
        public_key: Set(Some(BASE64.encode(key.as_bytes()))),
        enroll_token_hash: Set(None),
        enroll_expires_at: Set(None),
        facts: Set(Some(facts)),
        ..Default::default()
    })
    .exec(tx.conn())
    .await?;
    let actor = ActorInfo {
        name: format!("agent:{}", h.name),
        source_ip: source_ip.clone(),
        request_id,
    };
    tx.record(
        &actor,
        Event::new(
            "host.enrolled",
            "host",
            h.id,
            json!({
                "name": h.name,
                "key": fingerprint(&key),
                "hostname": body.facts.hostname,
                "agent_version": body.facts.agent_version,
            }),
        ),
    )
    .await?;
    tx.commit().await?;
    if let Err(e) = state.enroll_limiter.release(&state.db, attempt).await {
        tracing::warn!(error = %e, "enrollment limiter: cannot release an attempt");
    }
    // A connection made with the previous key must not outlive it.
    state.hub.disconnect(
        h.id,
        ProtocolErrorCode::Replaced,
        "the host was enrolled again with a new key",
    );
    tracing::info!(host_id = %h.id, key = %fingerprint(&key), "agent enrolled");
    publish(&state, h.id, HostStatus::Offline);
    Ok(HttpResponse::Ok().json(EnrollResponse {
        host_id: h.id,
        host_name: h.name,
    }))
}

/// `POST /hosts/{id}/revoke`: forget the host's key and pending token and
/// cut its agent off.
pub async fn revoke(
    auth: Auth<Admin>,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> ApiResult<web::Json<slipway_types::api::Host>> {
    let actor = auth.scope(None)?;
    let mut tx = AuditTx::begin(&state.db).await?;
    let h = hosts::find(tx.conn(), id.into_inner()).await?;
    host::Entity::update(host::ActiveModel {
        id: Set(h.id),
        status: Set("revoked".into()),
        public_key: Set(None),
        enroll_token_hash: Set(None),
        enroll_expires_at: Set(None),
        ..Default::default()
    })
    .exec(tx.conn())
    .await?;
    tx.record(
        &actor,
        Event::new(
            "host.revoke",
            "host",
            h.id,
            json!({"name": h.name, "previous_status": h.status}),
        ),
    )
    .await?;
    let out = hosts::to_api(tx.conn(), hosts::find(tx.conn(), h.id).await?).await?;
    tx.commit().await?;
    // After the commit: a connection verified before it is cut here; one
    // verified after it fails its own conditional status update.
    state
        .hub
        .disconnect(h.id, ProtocolErrorCode::Revoked, "host revoked");
    tracing::info!(host_id = %h.id, "host revoked");
    publish(&state, h.id, HostStatus::Revoked);
    Ok(web::Json(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    #[test]
    fn tokens_are_prefixed_random_and_url_safe() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        let body = &a[TOKEN_PREFIX.len()..];
        assert_eq!(body.len(), 43, "32 bytes, unpadded base64");
        assert!(body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }

    #[test]
    fn public_keys_must_be_32_byte_points_of_full_order() {
        let sk = SigningKey::from_bytes(&[7u8; 32]);
        let pk = BASE64.encode(sk.verifying_key().as_bytes());
        assert_eq!(decode_public_key(&pk), Ok(sk.verifying_key()));
        // Unpadded is accepted too.
        assert!(decode_public_key(pk.trim_end_matches('=')).is_ok());
        assert_eq!(decode_public_key("not base64!"), Err(KeyError::Base64));
        assert_eq!(
            decode_public_key(&BASE64.encode([1u8; 31])),
            Err(KeyError::Length(31))
        );
        // The identity point has small order: a weak key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            decode_public_key(&BASE64.encode(identity)),
            Err(KeyError::Point)
        );
        // y = 2 is not on the curve.
        let mut off_curve = [0u8; 32];
        off_curve[0] = 2;
        assert_eq!(
            decode_public_key(&BASE64.encode(off_curve)),
            Err(KeyError::Point)
        );
    }

    #[test]
    fn a_token_is_accepted_only_while_pending_and_unexpired() {
        let now = Utc::now();
        let later = Some(now + chrono::Duration::minutes(5));
        let earlier = Some(now - chrono::Duration::seconds(1));
        let h = auth::sha256_hex("swe_x");
        assert_eq!(check_token(Some(&h), later, "pending", &h, now), Ok(()));
        assert_eq!(check_token(Some(&h), later, "offline", &h, now), Ok(()));
        assert_eq!(
            check_token(Some(&h), earlier, "pending", &h, now),
            Err(TokenRejection::Expired)
        );
        assert_eq!(
            check_token(Some(&h), None, "pending", &h, now),
            Err(TokenRejection::Expired)
        );
        assert_eq!(
            check_token(None, later, "pending", &h, now),
            Err(TokenRejection::Unknown)
        );
        let other = auth::sha256_hex("swe_y");
        assert_eq!(
            check_token(Some(&h), later, "pending", &other, now),
            Err(TokenRejection::Unknown)
        );
        assert_eq!(
            check_token(Some(&h), later, "revoked", &h, now),
            Err(TokenRejection::Revoked)
        );
    }

    #[test]
    fn the_install_command_names_server_token_and_data_dir() {
        assert_eq!(
            install_command("https://slipway.example", "swe_abc"),
            "slipway-agent --server https://slipway.example --token swe_abc --data-dir /var/lib/slipway-agent"
        );
    }
}
