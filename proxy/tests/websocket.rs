//! WebSocket upgrades through the proxy, over real loopback TCP: a real WebSocket
//! upstream (hyper server + tungstenite), a real WebSocket client, the proxy between.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/eventually.rs"]
mod eventually;
use eventually::eventually;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use slipway_proxy::{serve_until, ProxyClient, ProxyOptions, RouteSpec, RouteStatus};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Client = WebSocketStream<TcpStream>;

/// An HTTP server like an application's: plain requests get its name; a WebSocket
/// upgrade on any path but `/refuse` (403) becomes an echo socket answering
/// `<name>:<text>` (binary messages come back unchanged). `/upgrade-header` answers
/// the `Upgrade` header it received (`-` when none).
async fn ws_backend(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| backend(name, req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

async fn backend(
    name: &'static str,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let text = |status: StatusCode, body: String| {
        let mut resp = Response::new(Full::new(Bytes::from(body)));
        *resp.status_mut() = status;
        Ok(resp)
    };
    if req.uri().path() == "/upgrade-header" {
        let got = req
            .headers()
            .get("upgrade")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string();
        return text(StatusCode::OK, got);
    }
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return text(StatusCode::OK, name.to_string());
    };
    if req.uri().path() == "/refuse" {
        return text(StatusCode::FORBIDDEN, "no sockets here".to_string());
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        while let Some(Ok(msg)) = ws.next().await {
            let answer = match msg {
                Message::Text(t) => Message::text(format!("{name}:{}", t.as_str())),
                Message::Binary(b) => Message::Binary(b),
                Message::Close(_) => break,
                _ => continue,
            };
            if ws.send(answer).await.is_err() {
                break;
            }
        }
    });
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert("connection", "Upgrade".parse().unwrap());
    h.insert("upgrade", "websocket".parse().unwrap());
    h.insert(
        "sec-websocket-accept",
        derive_accept_key(key.as_bytes()).parse().unwrap(),
    );
    Ok(resp)
}

struct TestProxy {
    client: ProxyClient,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), slipway_proxy::ProxyError>>,
}

impl TestProxy {
    /// A proxy with route `name` on a free port to `upstreams`.
    async fn routed(name: &str, upstreams: &[SocketAddr]) -> (Self, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_until(
            listener,
            None,
            ProxyOptions::default(),
            async move {
                let _ = stopped.await;
            },
        ));
        let client = ProxyClient::new(admin);
        assert!(client.health().await.unwrap().ok);
        let listen = free_port();
        client
            .put_route(name, &spec(listen, upstreams))
            .await
            .unwrap();
        let proxy = Self {
            client,
            stop: Some(stop),
            task,
        };
        (proxy, listen)
    }

    async fn route(&self, name: &str) -> RouteStatus {
        let routes = self.client.routes().await.unwrap();
        routes.into_iter().find(|r| r.name == name).unwrap()
    }

    /// Stops the proxy; returns how long the shutdown took.
    async fn shutdown(mut self) -> Duration {
        let t0 = Instant::now();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(15), &mut self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        t0.elapsed()
    }
}

/// A loopback port that is free right now, taken below the kernel's ephemeral range.
fn free_port() -> SocketAddr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = 20_000 + (std::process::id() % 400) * 30;
    for _ in 0..12_000 {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = u16::try_from(20_000 + (base - 20_000 + n) % 12_000).unwrap();
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            return l.local_addr().unwrap();
        }
    }
    panic!("no free port below the ephemeral range");
}

fn spec(listen: SocketAddr, upstreams: &[SocketAddr]) -> RouteSpec {
    RouteSpec {
        listen,
        upstreams: upstreams.to_vec(),
    }
}

/// Opens a WebSocket through the proxy's `listen` port.
async fn ws_connect(listen: SocketAddr, path: &str) -> Client {
    let stream = TcpStream::connect(listen).await.unwrap();
    let (ws, resp) = tokio_tungstenite::client_async(format!("ws://app.test{path}"), stream)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    ws
}

/// Sends `text` and returns the text answer.
async fn echo(ws: &mut Client, text: &str) -> String {
    ws.send(Message::text(text)).await.unwrap();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("an answer within 10 s")
            .expect("socket open")
            .unwrap();
        match msg {
            Message::Text(t) => return t.as_str().to_string(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected message {other:?}"),
        }
    }
}

/// Waits until the socket is closed by the other side (close frame, EOF or reset).
async fn closed(ws: &mut Client) {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("socket closed within 10 s")
        {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
            Some(Ok(_)) => {}
        }
    }
}

async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (StatusCode, String) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = Request::get(path).header("host", "app.test");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = sender
        .send_request(req.body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_round_trip_through_the_proxy() {
    let v1 = ws_backend("v1").await;
    let (proxy, listen) = TestProxy::routed("web", &[v1]).await;

    // Plain requests on the same route are unchanged.
    assert_eq!(get(listen, "/", &[]).await, (StatusCode::OK, "v1".into()));

    let mut ws = ws_connect(listen, "/socket").await;
    assert_eq!(echo(&mut ws, "hello").await, "v1:hello");
    assert_eq!(echo(&mut ws, "again").await, "v1:again");
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    ws.send(Message::binary(big.clone())).await.unwrap();
    match ws.next().await.unwrap().unwrap() {
        Message::Binary(b) => assert_eq!(&b[..], &big[..]),
        other => panic!("unexpected {other:?}"),
    }
    // An open socket is one request in flight to its upstream.
    let route = proxy.route("web").await;
    assert_eq!(route.upstreams[0].in_flight, 1);

    // A second socket alongside; plain requests still flow.
    let mut ws2 = ws_connect(listen, "/other").await;
    assert_eq!(echo(&mut ws2, "two").await, "v1:two");
    assert_eq!(get(listen, "/", &[]).await.1, "v1");
    assert_eq!(proxy.route("web").await.upstreams[0].in_flight, 2);

    // Closing the sockets ends them on both sides and in the count.
    ws.close(None).await.unwrap();
    closed(&mut ws).await;
    ws2.close(None).await.unwrap();
    closed(&mut ws2).await;
    eventually(
        Duration::from_secs(5),
        "tunnels no longer in flight",
        || async { (proxy.route("web").await.upstreams[0].in_flight == 0).then_some(()) },
    )
    .await;

    // An upstream refusing the upgrade: its answer reaches the client as is.
    let (status, body) = get(
        listen,
        "/refuse",
        &[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::FORBIDDEN, "no sockets here")
    );
    // Other upgrades (h2c) are not forwarded: `Upgrade` is stripped as before.
    let (status, body) = get(
        listen,
        "/upgrade-header",
        &[
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
        ],
    )
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "-"));
    assert_eq!(proxy.route("web").await.upstreams[0].in_flight, 0);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_socket_survives_a_switch_until_drained() {
    let v1 = ws_backend("v1").await;
    let v2 = ws_backend("v2").await;
    let (proxy, listen) = TestProxy::routed("web", &[v1]).await;

    let mut old = ws_connect(listen, "/socket").await;
    let mut old_closed_by_client = ws_connect(listen, "/socket").await;
    assert_eq!(echo(&mut old, "a").await, "v1:a");
    assert_eq!(echo(&mut old_closed_by_client, "b").await, "v1:b");

    proxy
        .client
        .put_route("web", &spec(listen, &[v2]))
        .await
        .unwrap();
    // New sockets (and requests) go to the new upstream ...
    let mut new = ws_connect(listen, "/socket").await;
    assert_eq!(echo(&mut new, "c").await, "v2:c");
    assert_eq!(get(listen, "/", &[]).await.1, "v2");
    // ... while the open ones keep talking to the old one, counted as draining.
    assert_eq!(echo(&mut old, "d").await, "v1:d");
    let route = proxy.route("web").await;
    assert_eq!(route.draining.len(), 1);
    assert_eq!(route.draining[0].addr, v1);
    assert_eq!(route.draining[0].in_flight, 2);

    // A socket the client closes during the drain is simply one less to wait for.
    let drain = {
        let client = proxy.client.clone();
        tokio::spawn(async move {
            let t0 = Instant::now();
            let r = client
                .drain("web", v1, Duration::from_millis(1500))
                .await
                .unwrap();
            (r, t0.elapsed())
        })
    };
    old_closed_by_client.close(None).await.unwrap();
    closed(&mut old_closed_by_client).await;
    assert_eq!(echo(&mut old, "e").await, "v1:e");
    // The drain is bounded: at its timeout the last old socket is closed.
    let (result, took) = drain.await.unwrap();
    assert!(result.drained, "{result:?}");
    assert_eq!(result.in_flight, 0);
    assert_eq!(result.closed_tunnels, 1);
    assert!(took >= Duration::from_millis(1400), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    closed(&mut old).await;
    assert!(proxy.route("web").await.draining.is_empty());

    // Draining the current upstream never closes its sockets (only waits).
    let r = proxy
        .client
        .drain("web", v2, Duration::from_millis(100))
        .await
        .unwrap();
    assert!(!r.drained);
    assert_eq!((r.in_flight, r.closed_tunnels), (1, 0));
    assert_eq!(echo(&mut new, "f").await, "v2:f");

    // Switching back to v1 after its drain: new sockets work there again.
    proxy
        .client
        .put_route("web", &spec(listen, &[v1]))
        .await
        .unwrap();
    let mut back = ws_connect(listen, "/socket").await;
    assert_eq!(echo(&mut back, "g").await, "v1:g");
    assert_eq!(echo(&mut new, "h").await, "v2:h");

    // Proxy shutdown closes the remaining sockets at once instead of waiting out its
    // grace period.
    let took = proxy.shutdown().await;
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    closed(&mut back).await;
    closed(&mut new).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_route_closes_its_sockets() {
    let v1 = ws_backend("v1").await;
    let (proxy, listen) = TestProxy::routed("web", &[v1]).await;
    let mut ws = ws_connect(listen, "/socket").await;
    assert_eq!(echo(&mut ws, "x").await, "v1:x");
    proxy.client.delete_route("web").await.unwrap();
    closed(&mut ws).await;
    assert!(TcpStream::connect(listen).await.is_err());
    proxy.shutdown().await;
}
