//! An agent behind an internal CA (issue 12, defect 10). A real TLS server on
//! 127.0.0.1 (tokio-rustls) with a certificate from a CA made here (rcgen)
//! plays the control plane for the agent's two connections: `POST
//! /api/v1/agent/enroll` over https:// and the agent WebSocket over wss://
//! (a real WebSocket upgrade, then the protocol's challenge).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers
mod support;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use futures_util::{SinkExt, StreamExt};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use slipway_types::agent::{challenge_message, AgentMessage, ServerMessage, PROTOCOL_VERSION};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use uuid::Uuid;

/// An internal CA and a server certificate it issued for 127.0.0.1.
struct InternalCa {
    ca_pem: String,
    server: Arc<rustls::ServerConfig>,
}

fn internal_ca() -> InternalCa {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "Slipway test internal CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "slipway.internal");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = leaf.signed_by(&key, &*ca).unwrap();
    let chain = vec![cert.der().clone(), ca.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    InternalCa {
        ca_pem: ca.pem(),
        server: Arc::new(server),
    }
}

/// The CA file an operator would write: an unrelated certificate first, then
/// the internal CA (a bundle of several certificates).
fn write_ca_file(dir: &Path, ca: &InternalCa) -> PathBuf {
    let other = rcgen::generate_simple_self_signed(vec!["other.test".to_owned()]).unwrap();
    let path = dir.join("internal-ca.pem");
    std::fs::write(&path, format!("{}\n{}", other.cert.pem(), ca.ca_pem)).unwrap();
    path
}

/// What the in-test control plane saw, in order.
#[derive(Debug)]
enum Seen {
    /// A TLS handshake failed (the client's alert, as the server reports it).
    TlsFailed(String),
    /// An enrollment request (its JSON body).
    Enroll(serde_json::Value),
    /// A Hello on the WebSocket, and whether its signature verified with the
    /// key sent at enrollment.
    Hello { host_id: Uuid, verified: bool },
}

struct ControlPlane {
    /// `https://127.0.0.1:PORT`.
    url: String,
    seen: mpsc::UnboundedReceiver<Seen>,
}

impl ControlPlane {
    async fn next(&mut self) -> Seen {
        tokio::time::timeout(Duration::from_secs(30), self.seen.recv())
            .await
            .expect("the agent reaches the control plane within 30 s")
            .expect("control plane running")
    }
}

/// Serves enrollment (answering `host_id`) and the agent WebSocket over TLS
/// with `tls`, until the test ends.
async fn control_plane(tls: Arc<rustls::ServerConfig>, host_id: Uuid) -> ControlPlane {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let (tx, seen) = mpsc::unbounded_channel();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let public_key: Arc<Mutex<Option<String>>> = Arc::default();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, tx, public_key) = (acceptor.clone(), tx.clone(), public_key.clone());
            tokio::spawn(async move {
                match acceptor.accept(tcp).await {
                    Ok(stream) => serve(stream, host_id, &tx, &public_key).await,
                    Err(e) => {
                        let _ = tx.send(Seen::TlsFailed(e.to_string()));
                    }
                }
            });
        }
    });
    ControlPlane { url, seen }
}

/// The request head (as sent) and body of one HTTP/1.1 request.
async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let body_start = loop {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "request ended early");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8(buf[..body_start].to_vec()).unwrap();
    let len: usize = header(&head, "content-length")
        .map(|v| v.parse().unwrap())
        .unwrap_or(0);
    while buf.len() < body_start + len {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "body ended early");
        buf.extend_from_slice(&chunk[..n]);
    }
    (head, buf[body_start..body_start + len].to_vec())
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    host_id: Uuid,
    tx: &mpsc::UnboundedSender<Seen>,
    public_key: &Mutex<Option<String>>,
) {
    let (head, body) = read_request(&mut stream).await;
    if head.starts_with("POST /api/v1/agent/enroll ") {
        let request: serde_json::Value = serde_json::from_slice(&body).unwrap();
        *public_key.lock().unwrap() = request["public_key"].as_str().map(str::to_owned);
        let answer = format!(r#"{{"host_id":"{host_id}","host_name":"internal-1"}}"#);
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
            answer.len()
        );
        stream.write_all(response.as_bytes()).await.unwrap();
        stream.shutdown().await.unwrap();
        let _ = tx.send(Seen::Enroll(request));
    } else if head.starts_with("GET /api/v1/agent/connect ") {
        let key = header(&head, "sec-websocket-key").expect("a WebSocket upgrade");
        let response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {}\r\n\r\n",
            derive_accept_key(key.as_bytes())
        );
        stream.write_all(response.as_bytes()).await.unwrap();
        let mut ws = WebSocketStream::from_raw_socket(stream, Role::Server, None).await;
        let nonce = Uuid::new_v4().to_string();
        let challenge = ServerMessage::Challenge {
            nonce: nonce.clone(),
            protocol_version: PROTOCOL_VERSION,
        };
        ws.send(Message::text(serde_json::to_string(&challenge).unwrap()))
            .await
            .unwrap();
        while let Some(Ok(frame)) = ws.next().await {
            let Message::Text(text) = frame else { continue };
            let AgentMessage::Hello {
                host_id, signature, ..
            } = serde_json::from_str(text.as_str()).unwrap()
            else {
                panic!("expected hello, got {text}")
            };
            let key = public_key.lock().unwrap().clone().expect("enrolled first");
            let key: [u8; 32] = B64.decode(key).unwrap().try_into().unwrap();
            let verified =
                Signature::from_slice(&B64.decode(signature).unwrap()).is_ok_and(|sig| {
                    VerifyingKey::from_bytes(&key)
                        .is_ok_and(|k| k.verify(&challenge_message(&nonce, host_id), &sig).is_ok())
                });
            let _ = tx.send(Seen::Hello { host_id, verified });
            return;
        }
    } else {
        panic!("unexpected request: {head}");
    }
}

fn agent_args(
    server: &str,
    data_dir: &Path,
    docker: &str,
    ca_file: Option<&Path>,
) -> slipway_agent::AgentArgs {
    let mut argv = vec![
        "slipway-agent".to_owned(),
        "--server".into(),
        server.into(),
        "--token".into(),
        "tok-internal".into(),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--docker-host".into(),
        docker.into(),
        "--no-proxy".into(),
    ];
    if let Some(path) = ca_file {
        argv.push("--ca-file".into());
        argv.push(path.display().to_string());
    }
    <slipway_agent::AgentCli as clap::Parser>::try_parse_from(argv)
        .unwrap()
        .args
}

/// The real agent (`run`, as `slipway-agent` runs it): refused without
/// `--ca-file`, enrolled over https:// and connected over wss:// with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_behind_an_internal_ca_connects_with_its_ca_file() {
    let (docker, _) = support::docker().await;
    let ca = internal_ca();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = write_ca_file(dir.path(), &ca);
    let host_id = Uuid::new_v4();

    // Without --ca-file the agent does not trust the server's certificate:
    // the TLS handshake fails (the agent sends "unknown CA"), nothing enrolls.
    let mut cp = control_plane(ca.server.clone(), host_id).await;
    let data = tempfile::tempdir().unwrap();
    let agent = tokio::spawn(slipway_agent::run(agent_args(
        &cp.url,
        data.path(),
        &docker,
        None,
    )));
    match cp.next().await {
        Seen::TlsFailed(alert) => assert!(alert.contains("UnknownCA"), "{alert}"),
        other => panic!("the agent trusted an unknown CA: {other:?}"),
    }
    assert!(!agent.is_finished(), "the agent retries a TLS failure");
    agent.abort();
    assert!(!data.path().join("identity.json").exists());

    // With --ca-file: enrollment over https://, then the wss:// connection,
    // whose Hello is signed with the key enrolled.
    let mut cp = control_plane(ca.server.clone(), host_id).await;
    let agent = tokio::spawn(slipway_agent::run(agent_args(
        &cp.url,
        data.path(),
        &docker,
        Some(&ca_file),
    )));
    match cp.next().await {
        Seen::Enroll(request) => assert_eq!(request["token"], "tok-internal"),
        other => panic!("expected enrollment, got {other:?}"),
    }
    match cp.next().await {
        Seen::Hello {
            host_id: hello_host,
            verified,
        } => {
            assert_eq!(hello_host, host_id);
            assert!(verified, "Hello not signed with the enrolled key");
        }
        other => panic!("expected the agent's hello over wss://, got {other:?}"),
    }
    assert!(data.path().join("identity.json").exists());
    agent.abort();
}

/// The WebSocket dial itself: a certificate error says so and names the fix;
/// with the CA file the server's challenge arrives over wss://.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_dial_trusts_the_ca_file() {
    let ca = internal_ca();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = write_ca_file(dir.path(), &ca);
    let mut cp = control_plane(ca.server.clone(), Uuid::new_v4()).await;
    let url = format!(
        "{}/api/v1/agent/connect",
        cp.url.replacen("https://", "wss://", 1)
    );

    let system_only = slipway_agent::tls::client_config(None).unwrap();
    let e = match slipway_agent::connection::dial(&url, &system_only).await {
        Ok(_) => panic!("connected to a server whose CA is not trusted"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("invalid peer certificate"), "{e}");
    assert!(e.contains("--ca-file"), "{e}");
    assert!(matches!(cp.next().await, Seen::TlsFailed(_)));

    let with_ca = slipway_agent::tls::client_config(Some(&ca_file)).unwrap();
    let mut ws = slipway_agent::connection::dial(&url, &with_ca)
        .await
        .expect("wss:// with the CA file");
    let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("a frame")
        .expect("open")
        .expect("frame");
    let Message::Text(text) = frame else {
        panic!("{frame:?}")
    };
    assert!(matches!(
        serde_json::from_str(text.as_str()).unwrap(),
        ServerMessage::Challenge { .. }
    ));
}

/// A missing or unusable `--ca-file` stops the agent at start, naming the
/// file, before it talks to Docker or the server.
#[tokio::test]
async fn a_bad_ca_file_is_a_startup_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk-ca.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    for path in [dir.path().join("missing-ca.pem"), junk] {
        let args = agent_args(
            "https://127.0.0.1:9",
            &dir.path().join("data"),
            "unix:///nonexistent/docker.sock",
            Some(&path),
        );
        let e = slipway_agent::run(args).await.expect_err("bad CA file");
        assert!(
            matches!(e, slipway_agent::RunError::Tls(_)),
            "{e} (not a TLS setup error)"
        );
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        assert_eq!(e.exit_code(), 1);
    }
}
