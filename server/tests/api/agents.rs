//! Agents against the real server: enrollment, the signed WebSocket
//! handshake, live host data, container logs over SSE, revocation. The
//! agent side is a raw WebSocket client with a real Ed25519 key.
use crate::{helpers::TestApp, store_test};
use base64::{engine::general_purpose::STANDARD, Engine};
use chrono::Utc;
use ed25519_dalek::{Signer, SigningKey};
use futures_util::{SinkExt, StreamExt};
use sea_orm::{sea_query::Expr, ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{json, Value};
use slipway_server::store::entities::host;
use slipway_types::{
    agent::{
        challenge_message, AgentEvent, AgentMessage, AgentRequest, AgentResponse, ContainerHealth,
        ContainerState, ContainerStats, ContainerStatus, HostFacts, LogStream, ProtocolErrorCode,
        ServerMessage, HEARTBEAT_SECS, PROTOCOL_VERSION,
    },
    api::{AuditEntry, Host, HostEnrollment, HostStatus, Page},
};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::{tungstenite::Message, MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

store_test!(
    an_agent_enrolls_connects_and_reports,
    enrollment_tokens_are_one_time_and_expire,
    the_handshake_refuses_impostors,
    revocation_cuts_the_agent_off,
    deleting_a_connected_host_disconnects_it
);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn facts() -> HostFacts {
    HostFacts {
        hostname: "node-1".into(),
        os: "linux".into(),
        arch: "x86_64".into(),
        docker_version: "20.10.0".into(),
        cpus: 2,
        memory_bytes: 4 << 30,
        disk_free_bytes: Some(10 << 30),
        agent_version: "0.1.0".into(),
    }
}

fn new_key() -> SigningKey {
    SigningKey::generate(&mut rand::rngs::OsRng)
}

fn public_key(k: &SigningKey) -> String {
    STANDARD.encode(k.verifying_key().as_bytes())
}

async fn new_host(app: &TestApp, name: &str) -> Uuid {
    let h: Host = app
        .post("/api/v1/hosts", &json!({"name": name}))
        .await
        .expect(201)
        .json();
    h.id
}

async fn issue(app: &TestApp, host: Uuid) -> HostEnrollment {
    app.post(&format!("/api/v1/hosts/{host}/enrollment"), &json!({}))
        .await
        .expect(201)
        .json()
}

/// The agent's enrollment call: public, no session.
async fn enroll(app: &TestApp, token: &str, key: &str) -> (u16, Value) {
    let res = reqwest::Client::new()
        .post(app.url("/api/v1/agent/enroll"))
        .json(&json!({"token": token, "public_key": key, "facts": facts()}))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// A host enrolled with a fresh key.
async fn enrolled_host(app: &TestApp, name: &str) -> (Uuid, SigningKey) {
    let id = new_host(app, name).await;
    let e = issue(app, id).await;
    let key = new_key();
    let (status, body) = enroll(app, &e.token, &public_key(&key)).await;
    assert_eq!(status, 200, "{body}");
    (id, key)
}

async fn get_host(app: &TestApp, id: Uuid) -> Host {
    app.get(&format!("/api/v1/hosts/{id}"))
        .await
        .expect(200)
        .json()
}

/// Opens the socket and returns it with the challenge's nonce.
async fn open(app: &TestApp) -> (Ws, String) {
    let url = format!(
        "{}/api/v1/agent/connect",
        app.base.replacen("http://", "ws://", 1)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    match recv(&mut ws).await {
        Some(ServerMessage::Challenge {
            nonce,
            protocol_version,
        }) => {
            assert_eq!(protocol_version, PROTOCOL_VERSION);
            (ws, nonce)
        }
        other => panic!("expected a challenge, got {other:?}"),
    }
}

/// The next server frame; `None` once the socket is closed.
async fn recv(ws: &mut Ws) -> Option<ServerMessage> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("the server said nothing for 20 s");
        match msg {
            Some(Ok(Message::Text(t))) => {
                return Some(serde_json::from_str(&t).unwrap_or_else(|e| panic!("{e}: {t}")))
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => continue,
        }
    }
}

/// The next frame that is not a heartbeat.
async fn recv_real(ws: &mut Ws) -> Option<ServerMessage> {
    loop {
        match recv(ws).await {
            Some(ServerMessage::Heartbeat) => continue,
            other => return other,
        }
    }
}

async fn send(ws: &mut Ws, msg: &AgentMessage) {
    ws.send(Message::text(serde_json::to_string(msg).unwrap()))
        .await
        .unwrap();
}

fn hello(host: Uuid, key: &SigningKey, nonce: &str, version: u32) -> AgentMessage {
    let sig = key.sign(&challenge_message(nonce, host));
    AgentMessage::Hello {
        host_id: host,
        protocol_version: version,
        signature: STANDARD.encode(sig.to_bytes()),
        facts: facts(),
    }
}

/// Handshake to `Welcome`.
async fn connect(app: &TestApp, host: Uuid, key: &SigningKey) -> Ws {
    let (mut ws, nonce) = open(app).await;
    send(&mut ws, &hello(host, key, &nonce, PROTOCOL_VERSION)).await;
    match recv(&mut ws).await {
        Some(ServerMessage::Welcome {
            host_id,
            heartbeat_secs,
        }) => {
            assert_eq!(host_id, host);
            assert_eq!(heartbeat_secs, HEARTBEAT_SECS);
        }
        other => panic!("expected welcome, got {other:?}"),
    }
    ws
}

/// The handshake fails with `code`, and the server closes the socket.
async fn expect_refused(mut ws: Ws, code: ProtocolErrorCode) -> String {
    let message = match recv(&mut ws).await {
        Some(ServerMessage::Error { code: c, message }) => {
            assert_eq!(c, code, "{message}");
            message
        }
        other => panic!("expected error {code:?}, got {other:?}"),
    };
    assert_eq!(recv(&mut ws).await, None, "the socket must be closed");
    message
}

async fn wait_for<F: Fn(&Host) -> bool>(app: &TestApp, id: Uuid, what: &str, f: F) -> Host {
    for _ in 0..100 {
        let h = get_host(app, id).await;
        if f(&h) {
            return h;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "host {id} never became {what}: {:?}",
        get_host(app, id).await
    );
}

async fn audit(app: &TestApp, action: &str) -> Vec<AuditEntry> {
    let p: Page<AuditEntry> = app
        .get(&format!("/api/v1/audit?action={action}"))
        .await
        .expect(200)
        .json();
    p.items.into_iter().filter(|e| e.action == action).collect()
}

fn container(id: &str, name: &str) -> ContainerStatus {
    ContainerStatus {
        id: id.into(),
        name: name.into(),
        service_id: Uuid::new_v4(),
        deployment_id: Uuid::new_v4(),
        release_number: 3,
        image: "registry.local/app:1.0".into(),
        state: ContainerState::Running,
        health: ContainerHealth::Healthy,
        serving: true,
        created_at: Utc::now(),
    }
}

async fn an_agent_enrolls_connects_and_reports(mut app: TestApp) {
    app.setup_admin().await;
    let viewer = app.token("viewer", &[]).await;
    let id = new_host(&app, "node-1").await;
    assert_eq!(get_host(&app, id).await.status, HostStatus::Pending);

    // Only admins issue tokens.
    let r = app
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/hosts/{id}/enrollment"),
            None,
            Some(&viewer),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);

    let e = issue(&app, id).await;
    assert_eq!(e.host_id, id);
    assert!(e.token.starts_with("swe_"), "{}", e.token);
    assert!(e.expires_at > Utc::now() + chrono::Duration::minutes(59));
    assert!(
        e.command.starts_with("slipway-agent --server http://")
            && e.command.contains(&format!("--token {}", e.token))
            && e.command.ends_with("--data-dir /var/lib/slipway-agent"),
        "{}",
        e.command
    );
    // Only the hash is stored.
    let row = host::Entity::find_by_id(id)
        .one(&app.db().await)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(row.enroll_token_hash.as_deref(), Some(e.token.as_str()));
    assert_eq!(row.enroll_token_hash.map(|h| h.len()), Some(64));

    let key = new_key();
    let (status, body) = enroll(&app, &e.token, &public_key(&key)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"host_id": id, "host_name": "node-1"}));
    let h = get_host(&app, id).await;
    assert_eq!(h.status, HostStatus::Offline, "enrolled, not connected yet");
    assert_eq!(h.facts, Some(facts()));

    // One time only.
    let (status, body) = enroll(&app, &e.token, &public_key(&key)).await;
    assert_eq!(status, 401, "{body}");

    let mut ws = connect(&app, id, &key).await;
    let h = get_host(&app, id).await;
    assert_eq!(h.status, HostStatus::Online);
    assert!(h.last_seen_at.is_some());
    assert_eq!(
        h.facts.as_ref().map(|f| f.hostname.as_str()),
        Some("node-1")
    );

    // Status frames show up in GET /hosts/{id} (not in the list).
    let c = container("c0ffee0001", "shop-web-3-1");
    send(
        &mut ws,
        &AgentMessage::Status {
            containers: vec![c.clone()],
            stats: vec![ContainerStats {
                id: c.id.clone(),
                cpu_percent: 12.5,
                memory_bytes: 1 << 20,
                memory_limit_bytes: None,
            }],
        },
    )
    .await;
    let h = wait_for(&app, id, "reporting", |h| !h.containers.is_empty()).await;
    assert_eq!(h.containers, vec![c.clone()]);
    assert_eq!(h.stats.len(), 1);
    let list: Page<Host> = app.get("/api/v1/hosts").await.expect(200).json();
    assert!(list.items.iter().all(|h| h.containers.is_empty()));

    // Logs: an unknown container is 404; a known one streams the agent's lines.
    app.get(&format!("/api/v1/hosts/{id}/containers/nope/logs"))
        .await
        .expect(404);
    let logs = app.client.get(app.url(&format!(
        "/api/v1/hosts/{id}/containers/{}/logs?tail=5&follow=false",
        c.name
    )));
    let reader = tokio::spawn(async move {
        let res = logs.send().await.unwrap();
        let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
        (res.status().as_u16(), ct, res.text().await.unwrap())
    });
    let rid = match recv_real(&mut ws).await {
        Some(ServerMessage::Request {
            id: rid,
            request:
                AgentRequest::ContainerLogs {
                    container_id,
                    tail,
                    follow,
                },
        }) => {
            assert_eq!(
                (container_id.as_str(), tail, follow),
                (c.id.as_str(), 5, false)
            );
            rid
        }
        other => panic!("expected a logs request, got {other:?}"),
    };
    for (stream, line) in [
        (LogStream::Stdout, "listening on :8080"),
        (LogStream::Stderr, "warn: x"),
    ] {
        send(
            &mut ws,
            &AgentMessage::Event {
                id: rid,
                event: AgentEvent::Log {
                    stream,
                    line: line.into(),
                },
            },
        )
        .await;
    }
    send(
        &mut ws,
        &AgentMessage::Response {
            id: rid,
            response: AgentResponse::LogsEnded,
        },
    )
    .await;
    let (status, ct, body) = reader.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(ct.starts_with("text/event-stream"), "{ct}");
    assert_eq!(
        body,
        "data: {\"stream\":\"stdout\",\"line\":\"listening on :8080\"}\n\n\
         data: {\"stream\":\"stderr\",\"line\":\"warn: x\"}\n\n\
         event: end\ndata: {\"ok\":true}\n\n"
    );

    // A client that goes away cancels the request on the agent.
    let mut res = app
        .client
        .get(app.url(&format!(
            "/api/v1/hosts/{id}/containers/{}/logs?follow=true",
            c.id
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let rid = match recv_real(&mut ws).await {
        Some(ServerMessage::Request { id: rid, .. }) => rid,
        other => panic!("expected a logs request, got {other:?}"),
    };
    send(
        &mut ws,
        &AgentMessage::Event {
            id: rid,
            event: AgentEvent::Log {
                stream: LogStream::Stdout,
                line: "one".into(),
            },
        },
    )
    .await;
    let first = res.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("\"one\""));
    drop(res);
    // The server notices at the latest when a keep-alive write fails (two
    // 15 s pings); the agent keeps its side alive meanwhile.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(50);
    let cancelled = loop {
        assert!(tokio::time::Instant::now() < deadline, "no cancel");
        tokio::select! {
            m = recv_real(&mut ws) => break m,
            _ = tokio::time::sleep(Duration::from_secs(HEARTBEAT_SECS)) => {
                send(&mut ws, &AgentMessage::Heartbeat).await;
            }
        }
    };
    assert_eq!(cancelled, Some(ServerMessage::Cancel { id: rid }));

    // The agent hangs up: the host goes offline and logs are refused.
    ws.close(None).await.unwrap();
    let h = wait_for(&app, id, "offline", |h| h.status == HostStatus::Offline).await;
    assert!(h.containers.is_empty());
    let r = app
        .get(&format!("/api/v1/hosts/{id}/containers/{}/logs", c.id))
        .await
        .expect(409);
    assert!(r.text.contains("offline"), "{}", r.text);

    let issued = audit(&app, "host.enrollment_issued").await;
    assert_eq!(issued.len(), 1);
    assert!(!issued[0].summary.to_string().contains(&e.token));
    let enrolled = audit(&app, "host.enrolled").await;
    assert_eq!(enrolled.len(), 1);
    assert_eq!(enrolled[0].actor, "agent:node-1");
}

async fn enrollment_tokens_are_one_time_and_expire(mut app: TestApp) {
    app.setup_admin().await;
    let id = new_host(&app, "node-2").await;
    let key = public_key(&new_key());

    // Unknown tokens.
    for t in ["swe_not-a-real-token", "garbage", ""] {
        let (status, body) = enroll(&app, t, &key).await;
        assert_eq!(status, 401, "{t}: {body}");
        assert_eq!(body["error"], "invalid_credentials");
    }

    // An invalid key is 422 like any invalid field, and leaves the token usable.
    let e = issue(&app, id).await;
    for bad in [
        "not base64!".to_owned(),
        STANDARD.encode([1u8; 31]),
        STANDARD.encode({
            let mut b = [0u8; 32];
            b[0] = 2; // not on the curve
            b
        }),
    ] {
        let (status, body) = enroll(&app, &e.token, &bad).await;
        assert_eq!(status, 422, "{bad}: {body}");
        assert_eq!(body["error"], "invalid_input", "{body}");
        assert_eq!(body["field"], "public_key");
    }

    // A new token replaces the old one.
    let e2 = issue(&app, id).await;
    assert_ne!(e.token, e2.token);
    let (status, _) = enroll(&app, &e.token, &key).await;
    assert_eq!(status, 401, "the replaced token no longer works");

    // Expired.
    let db = app.db().await;
    host::Entity::update_many()
        .col_expr(
            host::Column::EnrollExpiresAt,
            Expr::value(Utc::now() - chrono::Duration::seconds(1)),
        )
        .filter(host::Column::Id.eq(id))
        .exec(&db)
        .await
        .unwrap();
    let (status, body) = enroll(&app, &e2.token, &key).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("expired"),
        "{body}"
    );
    assert_eq!(get_host(&app, id).await.status, HostStatus::Pending);

    let failed = audit(&app, "agent.enroll_failed").await;
    assert_eq!(failed.len(), 5, "{failed:?}");
    assert!(failed.iter().all(|f| f.actor == "agent"));
    assert!(failed
        .iter()
        .all(|f| f.source_ip.as_deref() == Some("127.0.0.1")));
    assert_eq!(
        failed
            .iter()
            .filter(|f| f.target_id.as_deref() == Some(&id.to_string()))
            .count(),
        1,
        "the expired attempt names its host"
    );
    // A fresh token works.
    let e3 = issue(&app, id).await;
    let (status, body) = enroll(&app, &e3.token, &key).await;
    assert_eq!(status, 200, "{body}");
}

async fn the_handshake_refuses_impostors(mut app: TestApp) {
    app.setup_admin().await;
    let (id, key) = enrolled_host(&app, "node-3").await;

    // Signed with another key.
    let (mut ws, nonce) = open(&app).await;
    send(&mut ws, &hello(id, &new_key(), &nonce, PROTOCOL_VERSION)).await;
    expect_refused(ws, ProtocolErrorCode::BadSignature).await;

    // Replay: a valid signature over another connection's nonce.
    let (_ws_a, nonce_a) = open(&app).await;
    let (mut ws_b, nonce_b) = open(&app).await;
    assert_ne!(nonce_a, nonce_b);
    send(&mut ws_b, &hello(id, &key, &nonce_a, PROTOCOL_VERSION)).await;
    expect_refused(ws_b, ProtocolErrorCode::BadSignature).await;

    // Garbage signature.
    let (mut ws, _) = open(&app).await;
    send(
        &mut ws,
        &AgentMessage::Hello {
            host_id: id,
            protocol_version: PROTOCOL_VERSION,
            signature: "AAAA".into(),
            facts: facts(),
        },
    )
    .await;
    expect_refused(ws, ProtocolErrorCode::BadSignature).await;

    // Another protocol version.
    let (mut ws, nonce) = open(&app).await;
    send(&mut ws, &hello(id, &key, &nonce, PROTOCOL_VERSION + 1)).await;
    let msg = expect_refused(ws, ProtocolErrorCode::VersionMismatch).await;
    assert_eq!(
        msg,
        format!(
            "server speaks protocol v{PROTOCOL_VERSION}, agent v{}",
            PROTOCOL_VERSION + 1
        )
    );

    // Unknown host; a host that never enrolled.
    let (mut ws, nonce) = open(&app).await;
    let ghost = Uuid::new_v4();
    send(&mut ws, &hello(ghost, &key, &nonce, PROTOCOL_VERSION)).await;
    expect_refused(ws, ProtocolErrorCode::UnknownHost).await;
    let pending = new_host(&app, "node-4").await;
    let (mut ws, nonce) = open(&app).await;
    send(&mut ws, &hello(pending, &key, &nonce, PROTOCOL_VERSION)).await;
    expect_refused(ws, ProtocolErrorCode::Revoked).await;

    // Not a hello / not JSON.
    let (mut ws, _) = open(&app).await;
    send(&mut ws, &AgentMessage::Heartbeat).await;
    expect_refused(ws, ProtocolErrorCode::Malformed).await;
    let (mut ws, _) = open(&app).await;
    ws.send(Message::text("{nope")).await.unwrap();
    expect_refused(ws, ProtocolErrorCode::Malformed).await;

    // None of this made the host online; the real key still works, and a
    // malformed frame after the handshake ends the connection.
    assert_eq!(get_host(&app, id).await.status, HostStatus::Offline);
    let mut ws = connect(&app, id, &key).await;
    ws.send(Message::text("{\"type\":\"status\",\"containers\":7}"))
        .await
        .unwrap();
    expect_refused(ws, ProtocolErrorCode::Malformed).await;
    wait_for(&app, id, "offline", |h| h.status == HostStatus::Offline).await;

    let failed = audit(&app, "agent.auth_failed").await;
    assert_eq!(failed.len(), 3, "{failed:?}");
    assert!(failed
        .iter()
        .all(|f| f.target_id.as_deref() == Some(&id.to_string()) && f.actor == "agent"));
}

async fn revocation_cuts_the_agent_off(mut app: TestApp) {
    app.setup_admin().await;
    let (id, key) = enrolled_host(&app, "node-5").await;
    let mut ws = connect(&app, id, &key).await;
    // A pending re-enrollment token must die with the revocation too.
    let pending = issue(&app, id).await;

    let h: Host = app
        .post(&format!("/api/v1/hosts/{id}/revoke"), &json!({}))
        .await
        .expect(200)
        .json();
    assert_eq!(h.status, HostStatus::Revoked);
    match recv_real(&mut ws).await {
        Some(ServerMessage::Error { code, .. }) => assert_eq!(code, ProtocolErrorCode::Revoked),
        other => panic!("expected the revocation, got {other:?}"),
    }
    assert_eq!(recv(&mut ws).await, None, "the socket must be closed");
    // Stays revoked (the ended connection does not mark it offline).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let h = get_host(&app, id).await;
    assert_eq!(h.status, HostStatus::Revoked);
    assert!(h.containers.is_empty());
    let row = host::Entity::find_by_id(id)
        .one(&app.db().await)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.public_key, None);
    assert_eq!(row.enroll_token_hash, None);

    // Cannot reconnect, cannot re-enroll, cannot get a new token.
    let (mut ws, nonce) = open(&app).await;
    send(&mut ws, &hello(id, &key, &nonce, PROTOCOL_VERSION)).await;
    expect_refused(ws, ProtocolErrorCode::Revoked).await;
    let (status, body) = enroll(&app, &pending.token, &public_key(&new_key())).await;
    assert_eq!(status, 401, "{body}");
    app.post(&format!("/api/v1/hosts/{id}/enrollment"), &json!({}))
        .await
        .expect(409);

    let revokes = audit(&app, "host.revoke").await;
    assert_eq!(revokes.len(), 1);
    assert_eq!(revokes[0].actor, "admin");
}

async fn deleting_a_connected_host_disconnects_it(mut app: TestApp) {
    app.setup_admin().await;
    let (id, key) = enrolled_host(&app, "node-6").await;
    let mut ws = connect(&app, id, &key).await;
    app.delete(&format!("/api/v1/hosts/{id}")).await.expect(204);
    match recv_real(&mut ws).await {
        Some(ServerMessage::Error { code, .. }) => assert_eq!(code, ProtocolErrorCode::Revoked),
        other => panic!("expected the disconnect, got {other:?}"),
    }
    assert_eq!(recv(&mut ws).await, None);
    let (mut ws, nonce) = open(&app).await;
    send(&mut ws, &hello(id, &key, &nonce, PROTOCOL_VERSION)).await;
    expect_refused(ws, ProtocolErrorCode::UnknownHost).await;
}
