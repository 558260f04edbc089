//! `GET /agent/connect`: the WebSocket every agent dials in on.
//!
//! The server speaks first with a fresh random nonce; the agent answers with
//! a `Hello` signed by the Ed25519 key it enrolled with. Only then is the
//! connection registered in the [`AgentHub`](super::AgentHub) and the host
//! marked online. The nonce lives only in this connection, so a signature
//! captured from another connection never verifies again.
use super::enroll::{decode_public_key, fingerprint, BASE64};
use crate::{
    api::hosts,
    audit::{ActorInfo, AuditTx, Event},
    auth,
    live::Live,
    state::AppState,
    store::entities::host,
};
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, Session};
use base64::Engine;
use chrono::Utc;
use ed25519_dalek::Signature;
use sea_orm::{sea_query::Expr, ColumnTrait, EntityTrait, QueryFilter};
use serde_json::json;
use slipway_types::{
    agent::{
        challenge_message, AgentMessage, HostFacts, ProtocolErrorCode, ServerMessage,
        DEAD_AFTER_SECS, HEARTBEAT_SECS, PROTOCOL_VERSION,
    },
    api::{HostStatus, LiveEvent},
};
use std::time::Duration;
use tokio::time::Instant;
use uuid::Uuid;

/// The agent must answer the challenge within this long.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest frame (and reassembled message) an agent may send.
pub const MAX_FRAME_BYTES: usize = 1 << 20;
/// `last_seen_at` is written at most this often while connected.
const TOUCH_EVERY: Duration = Duration::from_secs(30);

/// Why a `Hello` is refused; each maps to the protocol error sent back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    #[error("server speaks protocol v{PROTOCOL_VERSION}, agent v{0}")]
    VersionMismatch(u32),
    #[error("no host {0}: it was deleted or never existed")]
    UnknownHost(Uuid),
    #[error("{0}")]
    Revoked(&'static str),
    #[error("{0}")]
    BadSignature(&'static str),
}

impl HelloError {
    pub fn code(&self) -> ProtocolErrorCode {
        match self {
            HelloError::VersionMismatch(_) => ProtocolErrorCode::VersionMismatch,
            HelloError::UnknownHost(_) => ProtocolErrorCode::UnknownHost,
            HelloError::Revoked(_) => ProtocolErrorCode::Revoked,
            HelloError::BadSignature(_) => ProtocolErrorCode::BadSignature,
        }
    }
}

pub fn check_version(agent: u32) -> Result<(), HelloError> {
    if agent == PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(HelloError::VersionMismatch(agent))
    }
}

/// Verifies a `Hello` against what the store knows of the host (`None`:
/// no such host). Pure: no IO.
pub fn verify_hello(
    nonce: &str,
    host_id: Uuid,
    signature: &str,
    stored: Option<(HostStatus, Option<&str>)>,
) -> Result<(), HelloError> {
    let (status, public_key) = stored.ok_or(HelloError::UnknownHost(host_id))?;
    if status == HostStatus::Revoked {
        return Err(HelloError::Revoked("this host was revoked"));
    }
    let Some(public_key) = public_key else {
        return Err(HelloError::Revoked(
            "this host has no enrolled key: enroll the agent again",
        ));
    };
    let key = decode_public_key(public_key).map_err(|_| {
        HelloError::Revoked("the host's stored key is unusable: enroll the agent again")
    })?;
    let sig = BASE64
        .decode(signature.trim())
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b.as_slice()).ok())
        .map(|b| Signature::from_bytes(&b))
        .ok_or(HelloError::BadSignature(
            "the signature is not 64 bytes of base64",
        ))?;
    key.verify_strict(&challenge_message(nonce, host_id), &sig)
        .map_err(|_| HelloError::BadSignature("the challenge signature does not verify"))
}

/// The upgrade; the connection itself runs on the worker's local executor.
pub async fn connect(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    let (res, session, stream) = actix_ws::handle(&req, body)?;
    let stream = stream
        .max_frame_size(MAX_FRAME_BYTES)
        .aggregate_continuations()
        .max_continuation_size(MAX_FRAME_BYTES);
    let (source_ip, request_id) = auth::request_context(&req);
    actix_web::rt::spawn(async move {
        let peer = ActorInfo {
            name: "agent".into(),
            source_ip,
            request_id,
        };
        run(state, session, stream, peer).await;
    });
    Ok(res)
}

async fn send(session: &mut Session, msg: &ServerMessage) -> bool {
    match serde_json::to_string(msg) {
        Ok(text) => session.text(text).await.is_ok(),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a server frame");
            false
        }
    }
}

/// Sends a fatal protocol error, then closes.
async fn fail(session: &mut Session, code: ProtocolErrorCode, message: String) {
    let close = match code {
        ProtocolErrorCode::Malformed | ProtocolErrorCode::VersionMismatch => CloseCode::Protocol,
        ProtocolErrorCode::Replaced => CloseCode::Normal,
        _ => CloseCode::Policy,
    };
    let reason = CloseReason {
        code: close,
        description: Some(message.clone()),
    };
    send(session, &ServerMessage::Error { code, message }).await;
    let _ = session.clone().close(Some(reason)).await;
}

enum First {
    Hello {
        host_id: Uuid,
        protocol_version: u32,
        signature: String,
        facts: HostFacts,
    },
    Fail(ProtocolErrorCode, String),
    Gone,
}

async fn wait_hello(session: &mut Session, stream: &mut AggregatedMessageStream) -> First {
    let deadline = Instant::now() + HELLO_TIMEOUT;
    loop {
        let frame = match tokio::time::timeout_at(deadline, stream.recv()).await {
            Ok(f) => f,
            Err(_) => {
                return First::Fail(
                    ProtocolErrorCode::Malformed,
                    format!("no hello within {} s", HELLO_TIMEOUT.as_secs()),
                )
            }
        };
        match frame {
            Some(Ok(AggregatedMessage::Text(t))) => {
                return match serde_json::from_str::<AgentMessage>(&t) {
                    Ok(AgentMessage::Hello {
                        host_id,
                        protocol_version,
                        signature,
                        facts,
                    }) => First::Hello {
                        host_id,
                        protocol_version,
                        signature,
                        facts,
                    },
                    Ok(_) => First::Fail(
                        ProtocolErrorCode::Malformed,
                        "the first frame must be a hello".into(),
                    ),
                    Err(e) => hello_parse_error(&t, e),
                }
            }
            Some(Ok(AggregatedMessage::Ping(b))) => {
                if session.pong(&b).await.is_err() {
                    return First::Gone;
                }
            }
            Some(Ok(AggregatedMessage::Pong(_))) => {}
            Some(Ok(AggregatedMessage::Binary(_))) => {
                return First::Fail(
                    ProtocolErrorCode::Malformed,
                    "frames must be JSON text".into(),
                )
            }
            Some(Ok(AggregatedMessage::Close(_))) | None => return First::Gone,
            Some(Err(e)) => {
                return First::Fail(ProtocolErrorCode::Malformed, format!("bad frame: {e}"))
            }
        }
    }
}

/// A hello that does not parse may still come from an agent of another
/// protocol version: tell it so rather than "malformed".
fn hello_parse_error(text: &str, e: serde_json::Error) -> First {
    let version = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .filter(|v| v["type"] == "hello")
        .and_then(|v| v["protocol_version"].as_u64())
        .and_then(|v| u32::try_from(v).ok());
    match version {
        Some(v) if v != PROTOCOL_VERSION => First::Fail(
            ProtocolErrorCode::VersionMismatch,
            HelloError::VersionMismatch(v).to_string(),
        ),
        _ => First::Fail(
            ProtocolErrorCode::Malformed,
            format!("malformed hello: {e}"),
        ),
    }
}

fn publish(state: &AppState, id: Uuid, status: HostStatus) {
    state
        .live
        .publish(Live::Event(LiveEvent::Host { id, status }));
}

async fn audit_auth_failure(state: &AppState, peer: &ActorInfo, host_id: Uuid, why: &HelloError) {
    let res = async {
        let mut tx = AuditTx::begin(&state.db).await?;
        tx.record(
            peer,
            Event::new(
                "agent.auth_failed",
                "host",
                host_id,
                json!({"reason": why.to_string()}),
            ),
        )
        .await?;
        tx.commit().await
    }
    .await;
    if let Err(e) = res {
        tracing::error!(error = %e, host_id = %host_id, "cannot record agent.auth_failed");
    }
}

async fn run(
    state: web::Data<AppState>,
    mut session: Session,
    mut stream: AggregatedMessageStream,
    peer: ActorInfo,
) {
    let nonce = auth::random_secret();
    let challenge = ServerMessage::Challenge {
        nonce: nonce.clone(),
        protocol_version: PROTOCOL_VERSION,
    };
    if !send(&mut session, &challenge).await {
        return;
    }
    let (host_id, protocol_version, signature, facts) = match wait_hello(&mut session, &mut stream)
        .await
    {
        First::Hello {
            host_id,
            protocol_version,
            signature,
            facts,
        } => (host_id, protocol_version, signature, facts),
        First::Fail(code, message) => {
            tracing::info!(source_ip = ?peer.source_ip, code = ?code, %message, "agent handshake failed");
            fail(&mut session, code, message).await;
            return;
        }
        First::Gone => return,
    };
    if let Err(e) = check_version(protocol_version) {
        tracing::warn!(host_id = %host_id, source_ip = ?peer.source_ip, error = %e, "agent refused");
        fail(&mut session, e.code(), e.to_string()).await;
        return;
    }
    let stored = match host::Entity::find_by_id(host_id).one(&state.db).await {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, host_id = %host_id, "cannot load host for agent handshake");
            let _ = session.close(Some(CloseCode::Error.into())).await;
            return;
        }
    };
    let status = match stored.as_ref().map(hosts::status).transpose() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, host_id = %host_id, "cannot read host status for agent handshake");
            let _ = session.close(Some(CloseCode::Error.into())).await;
            return;
        }
    };
    let verified = verify_hello(
        &nonce,
        host_id,
        &signature,
        stored
            .as_ref()
            .zip(status)
            .map(|(h, s)| (s, h.public_key.as_deref())),
    );
    let (h, key) = match (verified, stored) {
        (Ok(()), Some(h)) => match h.public_key.clone() {
            Some(k) => (h, k),
            None => return,
        },
        (Ok(()), None) => return,
        (Err(e), _) => {
            tracing::warn!(host_id = %host_id, source_ip = ?peer.source_ip, error = %e, "agent refused");
            if matches!(e, HelloError::BadSignature(_)) {
                audit_auth_failure(&state, &peer, host_id, &e).await;
            }
            fail(&mut session, e.code(), e.to_string()).await;
            return;
        }
    };
    serve(state, session, stream, peer, h, key, facts).await;
}

/// Marks the host online unless it was revoked (or re-enrolled with another
/// key) since the Hello was verified. Runs after `hub.register`, and revoke
/// commits before `hub.disconnect`, so one of the two always catches a race.
async fn mark_online(
    state: &AppState,
    host_id: Uuid,
    key: &str,
    facts: &HostFacts,
) -> Result<bool, sea_orm::DbErr> {
    let facts = serde_json::to_string(facts).map_err(|e| sea_orm::DbErr::Custom(e.to_string()))?;
    let r = host::Entity::update_many()
        .col_expr(
            host::Column::Status,
            Expr::value(HostStatus::Online.as_str()),
        )
        .col_expr(host::Column::LastSeenAt, Expr::value(Utc::now()))
        .col_expr(host::Column::Facts, Expr::value(facts))
        .filter(host::Column::Id.eq(host_id))
        .filter(host::Column::Status.ne(HostStatus::Revoked.as_str()))
        .filter(host::Column::PublicKey.eq(key))
        .exec(&state.db)
        .await?;
    Ok(r.rows_affected == 1)
}

/// `status` becomes `to` only if it is `from` (never overwrites `revoked`).
async fn set_status(state: &AppState, host_id: Uuid, from: HostStatus, to: HostStatus) -> bool {
    let r = host::Entity::update_many()
        .col_expr(host::Column::Status, Expr::value(to.as_str()))
        .col_expr(host::Column::LastSeenAt, Expr::value(Utc::now()))
        .filter(host::Column::Id.eq(host_id))
        .filter(host::Column::Status.eq(from.as_str()))
        .exec(&state.db)
        .await;
    match r {
        Ok(r) => r.rows_affected > 0,
        Err(e) => {
            tracing::error!(error = %e, host_id = %host_id, "cannot update host status");
            false
        }
    }
}

/// Refreshes `last_seen_at` and re-asserts `online`. `false` when the host
/// was revoked, deleted or enrolled with another key meanwhile — possibly
/// through another control-plane replica, whose hub cannot reach this
/// connection: it ends here within [`TOUCH_EVERY`].
async fn touch(state: &AppState, host_id: Uuid, key: &str) -> bool {
    let r = host::Entity::update_many()
        .col_expr(
            host::Column::Status,
            Expr::value(HostStatus::Online.as_str()),
        )
        .col_expr(host::Column::LastSeenAt, Expr::value(Utc::now()))
        .filter(host::Column::Id.eq(host_id))
        .filter(host::Column::Status.ne(HostStatus::Revoked.as_str()))
        .filter(host::Column::PublicKey.eq(key))
        .exec(&state.db)
        .await;
    match r {
        Ok(r) => r.rows_affected > 0,
        Err(e) => {
            // A store hiccup is not a reason to drop a healthy agent.
            tracing::warn!(error = %e, host_id = %host_id, "cannot update last_seen_at");
            true
        }
    }
}

async fn serve(
    state: web::Data<AppState>,
    mut session: Session,
    mut stream: AggregatedMessageStream,
    peer: ActorInfo,
    h: host::Model,
    key: String,
    facts: HostFacts,
) {
    let host_id = h.id;
    let key_id = decode_public_key(&key)
        .map(|k| fingerprint(&k))
        .unwrap_or_default();
    let (conn_id, mut outbox) = state.hub.register(host_id, facts.clone());
    match mark_online(&state, host_id, &key, &facts).await {
        Ok(true) => {}
        Ok(false) => {
            state.hub.unregister(host_id, conn_id);
            fail(
                &mut session,
                ProtocolErrorCode::Revoked,
                "this host was revoked".into(),
            )
            .await;
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, host_id = %host_id, "cannot mark host online");
            state.hub.unregister(host_id, conn_id);
            let _ = session.close(Some(CloseCode::Error.into())).await;
            return;
        }
    }
    let welcome = ServerMessage::Welcome {
        host_id,
        heartbeat_secs: HEARTBEAT_SECS,
    };
    let mut why = if send(&mut session, &welcome).await {
        None
    } else {
        Some("connection lost".to_owned())
    };
    tracing::info!(host_id = %host_id, host = %h.name, conn_id, key = %key_id, source_ip = ?peer.source_ip, "agent connected");
    publish(&state, host_id, HostStatus::Online);

    let beat = Duration::from_secs(HEARTBEAT_SECS);
    let dead = Duration::from_secs(DEAD_AFTER_SECS);
    let mut heartbeat = tokio::time::interval_at(Instant::now() + beat, beat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_rx = Instant::now();
    let mut last_touch = Instant::now();
    while why.is_none() {
        tokio::select! {
            out = outbox.recv() => match out {
                Some(ServerMessage::Error { code, message }) => {
                    why = Some(format!("closed by the server: {message}"));
                    fail(&mut session, code, message).await;
                }
                Some(msg) => {
                    if !send(&mut session, &msg).await {
                        why = Some("connection lost".into());
                    }
                }
                None => {
                    why = Some("removed from the hub".into());
                    let _ = session.clone().close(None).await;
                }
            },
            frame = stream.recv() => {
                last_rx = Instant::now();
                match frame {
                    Some(Ok(AggregatedMessage::Text(t))) => {
                        match serde_json::from_str::<AgentMessage>(&t) {
                            Ok(msg) => state.hub.handle(host_id, conn_id, msg),
                            Err(e) => {
                                let message = format!("malformed frame: {e}");
                                why = Some(message.clone());
                                fail(&mut session, ProtocolErrorCode::Malformed, message).await;
                            }
                        }
                    }
                    Some(Ok(AggregatedMessage::Binary(_))) => {
                        why = Some("binary frame".into());
                        fail(&mut session, ProtocolErrorCode::Malformed, "frames must be JSON text".into()).await;
                    }
                    Some(Ok(AggregatedMessage::Ping(b))) => {
                        if session.pong(&b).await.is_err() {
                            why = Some("connection lost".into());
                        }
                    }
                    Some(Ok(AggregatedMessage::Pong(_))) => {}
                    Some(Ok(AggregatedMessage::Close(_))) => {
                        why = Some("closed by the agent".into());
                        let _ = session.clone().close(None).await;
                    }
                    Some(Err(e)) => {
                        let message = format!("bad frame: {e}");
                        why = Some(message.clone());
                        fail(&mut session, ProtocolErrorCode::Malformed, message).await;
                    }
                    None => why = Some("connection lost".into()),
                }
                if why.is_none() && last_touch.elapsed() >= TOUCH_EVERY {
                    last_touch = Instant::now();
                    if !touch(&state, host_id, &key).await {
                        why = Some("revoked, deleted or re-enrolled".into());
                        fail(&mut session, ProtocolErrorCode::Revoked, "this host was revoked".into()).await;
                    }
                }
            }
            _ = heartbeat.tick() => {
                if last_rx.elapsed() >= dead {
                    why = Some(format!("silent for {} s", last_rx.elapsed().as_secs()));
                    let _ = session.clone().close(Some(CloseCode::Away.into())).await;
                } else if !send(&mut session, &ServerMessage::Heartbeat).await {
                    why = Some("connection lost".into());
                }
            }
        }
    }
    let why = why.unwrap_or_default();
    if state.hub.unregister(host_id, conn_id) {
        set_status(&state, host_id, HostStatus::Online, HostStatus::Offline).await;
        // A new connection may have registered (and marked the host online)
        // between our unregister and the write above: put it back.
        if state.hub.is_online(host_id) {
            set_status(&state, host_id, HostStatus::Offline, HostStatus::Online).await;
        } else {
            publish(&state, host_id, HostStatus::Offline);
        }
    }
    tracing::info!(host_id = %host_id, conn_id, reason = %why, "agent disconnected");
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn signed(key: &SigningKey, nonce: &str, host: Uuid) -> String {
        BASE64.encode(key.sign(&challenge_message(nonce, host)).to_bytes())
    }

    #[test]
    fn only_the_enrolled_key_signing_this_nonce_for_this_host_passes() {
        let key = SigningKey::from_bytes(&[3u8; 32]);
        let other = SigningKey::from_bytes(&[4u8; 32]);
        let pk = BASE64.encode(key.verifying_key().as_bytes());
        let host = Uuid::new_v4();
        let stored = Some((HostStatus::Offline, Some(pk.as_str())));
        assert_eq!(
            verify_hello("n1", host, &signed(&key, "n1", host), stored),
            Ok(())
        );
        let bad = |r: Result<(), HelloError>| matches!(r, Err(HelloError::BadSignature(_)));
        assert!(bad(verify_hello(
            "n1",
            host,
            &signed(&other, "n1", host),
            stored
        )));
        // Replayed from another connection (nonce) or another host.
        assert!(bad(verify_hello(
            "n2",
            host,
            &signed(&key, "n1", host),
            stored
        )));
        assert!(bad(verify_hello(
            "n1",
            host,
            &signed(&key, "n1", Uuid::new_v4()),
            stored
        )));
        assert!(bad(verify_hello("n1", host, "AAAA", stored)));
        assert!(bad(verify_hello("n1", host, "%%%", stored)));

        let sig = signed(&key, "n1", host);
        assert_eq!(
            verify_hello("n1", host, &sig, None),
            Err(HelloError::UnknownHost(host))
        );
        assert!(matches!(
            verify_hello(
                "n1",
                host,
                &sig,
                Some((HostStatus::Revoked, Some(pk.as_str())))
            ),
            Err(HelloError::Revoked(_))
        ));
        assert!(matches!(
            verify_hello("n1", host, &sig, Some((HostStatus::Pending, None))),
            Err(HelloError::Revoked(_))
        ));
    }

    #[test]
    fn versions_must_match_exactly() {
        assert_eq!(check_version(PROTOCOL_VERSION), Ok(()));
        let e = check_version(PROTOCOL_VERSION + 1).unwrap_err();
        assert_eq!(e.code(), ProtocolErrorCode::VersionMismatch);
        assert_eq!(
            e.to_string(),
            format!(
                "server speaks protocol v{PROTOCOL_VERSION}, agent v{}",
                PROTOCOL_VERSION + 1
            )
        );
    }

    #[test]
    fn a_hello_of_another_version_that_does_not_parse_is_a_version_mismatch() {
        let e = serde_json::from_str::<AgentMessage>("{}").unwrap_err();
        let next = format!(
            r#"{{"type":"hello","protocol_version":{},"new_field":{{}}}}"#,
            PROTOCOL_VERSION + 1
        );
        assert!(matches!(
            hello_parse_error(&next, e),
            First::Fail(ProtocolErrorCode::VersionMismatch, _)
        ));
        let e = serde_json::from_str::<AgentMessage>("{").unwrap_err();
        assert!(matches!(
            hello_parse_error("{", e),
            First::Fail(ProtocolErrorCode::Malformed, _)
        ));
    }
}
