//! The agent's side of the protocol against an in-test control plane (a real
//! WebSocket / HTTP server speaking `slipway_types::agent`), with the real
//! Docker Engine behind the agent.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers
mod support;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use futures_util::{SinkExt, StreamExt};
use slipway_agent::connection::{ConnError, Connector, ServiceLocks};
use slipway_agent::identity::Identity;
use slipway_agent::rollout::Engine;
use slipway_types::agent::{
    challenge_message, AgentErrorCode, AgentEvent, AgentMessage, AgentRequest, AgentResponse,
    ContainerPort, ContainerSpec, ProtocolErrorCode, ReconcilePlan, RolloutPlan, ServerMessage,
    ServiceKey, PROTOCOL_VERSION,
};
use slipway_types::api::{HealthCheck, Protocol, Resources};
use slipway_types::{ImageRef, Port};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use uuid::Uuid;

type Ws = WebSocketStream<TcpStream>;

async fn send(ws: &mut Ws, msg: &ServerMessage) {
    ws.send(Message::text(serde_json::to_string(msg).unwrap()))
        .await
        .unwrap();
}

/// Next agent frame that is not a heartbeat or status.
async fn recv(ws: &mut Ws) -> AgentMessage {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("agent frame within 30 s")
            .expect("connection open")
            .expect("frame");
        if let Message::Text(t) = frame {
            let m: AgentMessage = serde_json::from_str(t.as_str()).unwrap();
            if !matches!(m, AgentMessage::Heartbeat | AgentMessage::Status { .. }) {
                return m;
            }
        }
    }
}

/// Accepts one agent connection and runs the handshake; returns the socket
/// after Welcome.
async fn accept_agent(listener: &TcpListener, host_id: Uuid, public_key: &str) -> Ws {
    let (tcp, _) = tokio::time::timeout(Duration::from_secs(30), listener.accept())
        .await
        .expect("agent connects")
        .unwrap();
    let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
    let nonce = Uuid::new_v4().to_string();
    send(
        &mut ws,
        &ServerMessage::Challenge {
            nonce: nonce.clone(),
            protocol_version: PROTOCOL_VERSION,
        },
    )
    .await;
    let AgentMessage::Hello {
        host_id: hid,
        protocol_version,
        signature,
        facts,
    } = recv(&mut ws).await
    else {
        panic!("expected hello")
    };
    assert_eq!(hid, host_id);
    assert_eq!(protocol_version, PROTOCOL_VERSION);
    assert!(!facts.docker_version.is_empty(), "{facts:?}");
    assert!(facts.cpus >= 1 && facts.memory_bytes > 0, "{facts:?}");
    let pk: [u8; 32] = B64.decode(public_key).unwrap().try_into().unwrap();
    let sig = Signature::from_slice(&B64.decode(signature).unwrap()).unwrap();
    VerifyingKey::from_bytes(&pk)
        .unwrap()
        .verify(&challenge_message(&nonce, host_id), &sig)
        .expect("valid signature");
    send(
        &mut ws,
        &ServerMessage::Welcome {
            host_id,
            heartbeat_secs: 1,
        },
    )
    .await;
    ws
}

fn plan(service: &ServiceKey, release: i64) -> RolloutPlan {
    let port = |p: i64| Port::try_from(p).unwrap();
    RolloutPlan {
        deployment_id: Uuid::new_v4(),
        release_id: Uuid::new_v4(),
        release_number: release,
        service: service.clone(),
        container: ContainerSpec {
            image: ImageRef::try_from("slipway-test/web:v1").unwrap(),
            command: Some(vec![
                "sh".into(),
                "-c".into(),
                "mkdir -p /www && echo ok > /www/healthz && exec httpd -f -p 8080 -h /www".into(),
            ]),
            env: BTreeMap::new(),
            ports: vec![ContainerPort {
                container: port(8080),
                published: None,
                protocol: Protocol::Tcp,
                mode: Default::default(),
                host_ip: None,
            }],
            volumes: vec![],
            health_check: Some(HealthCheck {
                interval_secs: 1,
                timeout_secs: 1,
                retries: 1,
                ..HealthCheck::http("/healthz", port(8080))
            }),
            resources: Resources::default(),
            user: None,
            read_only: false,
            cap_drop: vec![],
            cap_add: vec![],
            no_new_privileges: true,
            ..ContainerSpec::of_image(ImageRef::try_from("x:1").unwrap())
        },
        replicas: 1,
        keep_previous: 1,
        health_timeout_secs: 20,
        drain_timeout_secs: 1,
        registry_auth: None,
        phase: Default::default(),
        strategy: slipway_types::api::RolloutStrategy::StartFirst,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_requests_reconnect_and_revocation() {
    let (_, docker) = support::docker().await;
    let host_id = Uuid::new_v4();
    let identity = Identity::generate(host_id);
    let public_key = identity.public_key_b64();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tag = Uuid::new_v4().simple().to_string();
    let engine = Engine {
        docker: docker.clone(),
        proxy: None,
        host_id,
        prefix: format!("c-{}-", &tag[..8]),
        proxy_bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        proxy_guard: None,
    };
    let data_dir = tempfile::tempdir().unwrap();
    let connector = Connector {
        engine,
        identity: Arc::new(identity),
        connect_url: format!("ws://{addr}/api/v1/agent/connect"),
        tls: slipway_agent::tls::client_config(None).unwrap(),
        data_dir: data_dir.path().to_owned(),
        locks: ServiceLocks::default(),
    };
    let agent = tokio::spawn(async move { connector.run_forever().await });

    let mut ws = accept_agent(&listener, host_id, &public_key).await;

    // Status right after Welcome, heartbeats after that.
    let mut saw_status = false;
    let mut saw_heartbeat = false;
    while !(saw_status && saw_heartbeat) {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("frames")
            .unwrap()
            .unwrap();
        if let Message::Text(t) = frame {
            match serde_json::from_str::<AgentMessage>(t.as_str()).unwrap() {
                AgentMessage::Status { containers, .. } => {
                    assert!(containers.is_empty());
                    saw_status = true;
                }
                AgentMessage::Heartbeat => saw_heartbeat = true,
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    // Logs of a container that is not ours → Failure NotFound.
    send(
        &mut ws,
        &ServerMessage::Request {
            id: 1,
            request: AgentRequest::ContainerLogs {
                container_id: "no-such-container".into(),
                tail: 10,
                follow: false,
            },
        },
    )
    .await;
    match recv(&mut ws).await {
        AgentMessage::Failure { id: 1, error } => assert_eq!(error.code, AgentErrorCode::NotFound),
        other => panic!("unexpected {other:?}"),
    }

    // Two rollouts of one service: the second waits for the first.
    let service = ServiceKey {
        project: "p".into(),
        environment: "e".into(),
        service: "s".into(),
        service_id: Uuid::new_v4(),
        environment_id: Uuid::new_v4(),
    };
    let (p1, p2) = (plan(&service, 1), plan(&service, 2));
    send(
        &mut ws,
        &ServerMessage::Request {
            id: 10,
            request: AgentRequest::Rollout(p1.clone()),
        },
    )
    .await;
    send(
        &mut ws,
        &ServerMessage::Request {
            id: 11,
            request: AgentRequest::Rollout(p2.clone()),
        },
    )
    .await;
    let mut order = Vec::new();
    let mut switched = Vec::new();
    let mut responses = 0;
    while responses < 2 {
        match recv(&mut ws).await {
            AgentMessage::Event {
                id,
                event: AgentEvent::Step { .. },
            } => order.push((id, false)),
            // Each rollout switches once, before its answer.
            AgentMessage::Event {
                id,
                event: AgentEvent::Switched,
            } => {
                assert!(!order.contains(&(id, true)), "switched after the answer");
                switched.push(id);
            }
            AgentMessage::Response { id, response } => {
                assert!(
                    matches!(response, AgentResponse::RolledOut { .. }),
                    "{response:?}"
                );
                order.push((id, true));
                responses += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let first_done = order.iter().position(|e| *e == (10, true)).unwrap();
    let first_of_second = order.iter().position(|(id, _)| *id == 11).unwrap();
    assert!(
        first_done < first_of_second,
        "requests of one service must not overlap: {order:?}"
    );
    assert_eq!(switched, vec![10, 11]);

    // Reconcile: p2 serves, p1 kept → converged already.
    let desired = ReconcilePlan {
        services: vec![slipway_types::agent::DesiredService {
            service: service.clone(),
            serving: Some(p2.deployment_id),
            keep: vec![p1.deployment_id],
            drain_timeout_secs: 1,
        }],
    };
    send(
        &mut ws,
        &ServerMessage::Request {
            id: 20,
            request: AgentRequest::Reconcile(desired),
        },
    )
    .await;
    match recv(&mut ws).await {
        AgentMessage::Response { id: 20, response } => {
            assert_eq!(response, AgentResponse::Reconciled { actions: vec![] })
        }
        other => panic!("unexpected {other:?}"),
    }

    // A rollout that never gets healthy is in flight when the server drops the
    // connection: its new container is removed, the serving one is untouched.
    let mut p3 = plan(&service, 3);
    p3.container.health_check.as_mut().unwrap().path = Some("/missing".into());
    p3.health_timeout_secs = 120;
    send(
        &mut ws,
        &ServerMessage::Request {
            id: 30,
            request: AgentRequest::Rollout(p3.clone()),
        },
    )
    .await;
    loop {
        match recv(&mut ws).await {
            AgentMessage::Event {
                id: 30,
                event: AgentEvent::Step { message },
            } if message.starts_with("started container") => break,
            AgentMessage::Event { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    drop(ws);
    let (docker_ref, service_id, aborted) = (&docker, service.service_id, p3.deployment_id);
    let all = support::eventually(
        Duration::from_secs(15),
        "the aborted rollout removes its container",
        || async move {
            let all = docker_ref
                .list_managed(host_id, Some(service_id))
                .await
                .unwrap();
            (!all.iter().any(|c| c.deployment_id == Some(aborted))).then_some(all)
        },
    )
    .await;
    assert!(
        all.iter()
            .any(|c| c.deployment_id == Some(p2.deployment_id) && c.is_running()),
        "{all:?}"
    );

    // The agent comes back.
    let mut ws = accept_agent(&listener, host_id, &public_key).await;
    // Revoked: the agent stops for good.
    send(
        &mut ws,
        &ServerMessage::Error {
            code: ProtocolErrorCode::Revoked,
            message: "host revoked".into(),
        },
    )
    .await;
    let end = tokio::time::timeout(Duration::from_secs(10), agent)
        .await
        .expect("agent stops")
        .unwrap();
    assert!(
        matches!(
            end,
            ConnError::Fatal {
                code: ProtocolErrorCode::Revoked,
                ..
            }
        ),
        "{end:?}"
    );
    let err = slipway_agent::RunError::Refused(end);
    assert_eq!(err.exit_code(), 3);

    support::cleanup_host(&docker, host_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_mismatch_is_fatal() {
    let (_, docker) = support::docker().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connector = Connector {
        engine: Engine {
            docker,
            proxy: None,
            host_id: Uuid::new_v4(),
            prefix: "v-".into(),
            proxy_bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            proxy_guard: None,
        },
        identity: Arc::new(Identity::generate(Uuid::new_v4())),
        connect_url: format!("ws://{addr}/api/v1/agent/connect"),
        tls: slipway_agent::tls::client_config(None).unwrap(),
        data_dir: std::env::temp_dir(),
        locks: ServiceLocks::default(),
    };
    let agent = tokio::spawn(async move { connector.run_forever().await });
    let (tcp, _) = listener.accept().await.unwrap();
    let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
    send(
        &mut ws,
        &ServerMessage::Challenge {
            nonce: "n".into(),
            protocol_version: PROTOCOL_VERSION + 1,
        },
    )
    .await;
    let end = tokio::time::timeout(Duration::from_secs(10), agent)
        .await
        .expect("agent stops")
        .unwrap();
    assert!(
        matches!(
            end,
            ConnError::Fatal {
                code: ProtocolErrorCode::VersionMismatch,
                ..
            }
        ),
        "{end:?}"
    );
}

/// Serves one HTTP request with `status` and `body`; returns the request body.
async fn one_http_answer(listener: TcpListener, status: &'static str, body: String) -> String {
    let (mut tcp, _) = listener.accept().await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let body_start = loop {
        let n = tcp.read(&mut chunk).await.unwrap();
        assert!(n > 0, "request ended early");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..body_start]).to_lowercase();
    assert!(head.starts_with("post /api/v1/agent/enroll "), "{head}");
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0);
    while buf.len() < body_start + len {
        let n = tcp.read(&mut chunk).await.unwrap();
        assert!(n > 0);
        buf.extend_from_slice(&chunk[..n]);
    }
    let answer = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(answer.as_bytes()).await.unwrap();
    String::from_utf8(buf[body_start..body_start + len].to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment() {
    let host = support::docker_host();
    let args = |server: String, dir: &std::path::Path, token: Option<&str>| {
        let mut argv = vec![
            "slipway-agent".to_owned(),
            "--server".into(),
            server,
            "--data-dir".into(),
            dir.display().to_string(),
            "--docker-host".into(),
            host.clone(),
            "--no-proxy".into(),
        ];
        if let Some(t) = token {
            argv.push("--token".into());
            argv.push(t.into());
        }
        <slipway_agent::AgentCli as clap::Parser>::try_parse_from(argv)
            .unwrap()
            .args
    };

    // No identity and no token.
    let dir = tempfile::tempdir().unwrap();
    let e = slipway_agent::run(args("http://127.0.0.1:9".into(), dir.path(), None))
        .await
        .expect_err("no token");
    assert_eq!(e.exit_code(), 2, "{e}");

    // The server rejects the token: exit code 2, message shown, no identity written.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = format!("http://{}", listener.local_addr().unwrap());
    let answer = tokio::spawn(one_http_answer(
        listener,
        "403 Forbidden",
        r#"{"error":"forbidden","message":"enrollment token already used"}"#.into(),
    ));
    let e = slipway_agent::run(args(server, dir.path(), Some("tok-secret")))
        .await
        .expect_err("rejected");
    assert_eq!(e.exit_code(), 2, "{e}");
    assert!(e.to_string().contains("already used"), "{e}");
    let sent: serde_json::Value = serde_json::from_str(&answer.await.unwrap()).unwrap();
    assert_eq!(sent["token"], "tok-secret");
    assert_eq!(
        B64.decode(sent["public_key"].as_str().unwrap())
            .unwrap()
            .len(),
        32
    );
    assert!(!dir.path().join("identity.json").exists());

    // Accepted: enroll() returns the identity with the server's host id.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = format!("http://{}", listener.local_addr().unwrap());
    let host_id = Uuid::new_v4();
    let answer = tokio::spawn(one_http_answer(
        listener,
        "200 OK",
        format!(r#"{{"host_id":"{host_id}","host_name":"web-1"}}"#),
    ));
    let id = slipway_agent::identity::enroll(
        &reqwest::Client::new(),
        &server,
        &slipway_types::agent::Sensitive("tok".into()),
        slipway_types::agent::HostFacts::default(),
    )
    .await
    .unwrap();
    assert_eq!(id.host_id, host_id);
    let sent: serde_json::Value = serde_json::from_str(&answer.await.unwrap()).unwrap();
    assert_eq!(sent["public_key"], id.public_key_b64());
}
