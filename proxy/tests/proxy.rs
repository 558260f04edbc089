//! End-to-end tests over real loopback TCP: backends, proxy, admin client.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/eventually.rs"]
mod eventually;
use eventually::eventually;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use slipway_proxy::{serve_until, ProxyClient, ProxyClientError, ProxyOptions, RouteSpec};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// A tiny HTTP backend answering its name; `/headers` echoes the forwarding
/// headers, `/echo` the request body. A request to `/held` is announced (see
/// [`Backend::arrived`]) and answered only once the test calls
/// [`Backend::release`]: a request that is in flight for exactly as long as
/// the test wants, without guessing durations.
struct Backend {
    addr: SocketAddr,
    kill: watch::Sender<bool>,
    /// Resolves once the listener and every connection are closed.
    dead: oneshot::Receiver<()>,
    held: mpsc::UnboundedReceiver<()>,
    release: watch::Sender<bool>,
}

impl Backend {
    async fn start(name: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (kill, killed) = watch::channel(false);
        let (release, released) = watch::channel(false);
        let (held_tx, held) = mpsc::unbounded_channel();
        let (dead_tx, dead) = oneshot::channel();
        tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            let mut k = killed.clone();
            loop {
                let stream = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => continue,
                    },
                    _ = k.wait_for(|k| *k) => break,
                };
                let mut k = killed.clone();
                let (held_tx, released) = (held_tx.clone(), released.clone());
                connections.spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (held_tx, mut released) = (held_tx.clone(), released.clone());
                        async move {
                            let body = match req.uri().path() {
                                "/echo" => {
                                    let got = req.into_body().collect().await.unwrap().to_bytes();
                                    return Ok::<_, Infallible>(Response::new(Full::new(got)));
                                }
                                "/held" => {
                                    let _ = held_tx.send(());
                                    let _ = released.wait_for(|r| *r).await;
                                    format!("{name}-held")
                                }
                                "/headers" => {
                                    let h = |n: &str| {
                                        req.headers()
                                            .get(n)
                                            .and_then(|v| v.to_str().ok())
                                            .unwrap_or("-")
                                            .to_string()
                                    };
                                    format!(
                                        "{}|{}|{}",
                                        h("x-forwarded-for"),
                                        h("x-forwarded-proto"),
                                        h("x-hop")
                                    )
                                }
                                _ => name.to_string(),
                            };
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
                        }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = conn => {}
                        _ = k.wait_for(|k| *k) => {}
                    }
                });
            }
            // Killed (or dropped): the listener closes here, then every connection.
            drop(listener);
            while connections.join_next().await.is_some() {}
            let _ = dead_tx.send(());
        });
        Self {
            addr,
            kill,
            dead,
            held,
            release,
        }
    }

    /// Waits until a `/held` request has arrived here.
    async fn arrived(&mut self) {
        tokio::time::timeout(Duration::from_secs(10), self.held.recv())
            .await
            .expect("a /held request arrives within 10 s")
            .expect("backend running");
    }

    /// Answers the `/held` requests (those waiting and those to come).
    fn release(&self) {
        self.release.send_replace(true);
    }

    /// Kills it like a container that dies: listener and all connections close
    /// at once; returns once they are closed.
    async fn kill(self) {
        self.kill.send_replace(true);
        tokio::time::timeout(Duration::from_secs(10), self.dead)
            .await
            .expect("backend closes within 10 s")
            .expect("backend task ended");
    }
}

struct TestProxy {
    client: ProxyClient,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), slipway_proxy::ProxyError>>,
}

impl TestProxy {
    async fn start(state_file: Option<PathBuf>, options: ProxyOptions) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_until(listener, state_file, options, async move {
            let _ = stopped.await;
        }));
        let client = ProxyClient::new(admin);
        let health = client.health().await.unwrap();
        assert!(health.ok);
        Self {
            client,
            stop: Some(stop),
            task,
        }
    }

    /// A proxy with route `name` on a free port to `upstreams`.
    async fn routed(name: &str, upstreams: &[SocketAddr]) -> (Self, SocketAddr) {
        let proxy = Self::start(None, ProxyOptions::default()).await;
        let listen = free_port();
        proxy
            .client
            .put_route(name, &spec(listen, upstreams))
            .await
            .unwrap();
        (proxy, listen)
    }

    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(15), &mut self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

/// A loopback port that is free right now, taken below the kernel's ephemeral range
/// (32768+) so that outgoing test connections cannot grab it before the proxy binds it.
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

async fn connect(addr: SocketAddr) -> SendRequest<Empty<Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

async fn get_on(sender: &mut SendRequest<Empty<Bytes>>, path: &str) -> (StatusCode, String) {
    sender.ready().await.unwrap();
    let req = Request::get(path)
        .header("host", "app.test")
        .body(Empty::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn get(addr: SocketAddr, path: &str) -> (StatusCode, String) {
    let mut s = connect(addr).await;
    get_on(&mut s, path).await
}

fn spec(listen: SocketAddr, upstreams: &[SocketAddr]) -> RouteSpec {
    RouteSpec {
        listen,
        upstreams: upstreams.to_vec(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_and_switches_upstreams() {
    let b1 = Backend::start("v1").await;
    let v1 = b1.addr;
    let b2 = Backend::start("v2").await;
    let v2 = b2.addr;
    let proxy = TestProxy::start(None, ProxyOptions::default()).await;
    let listen = free_port();

    let status = proxy
        .client
        .put_route("web", &spec(listen, &[v1]))
        .await
        .unwrap();
    assert_eq!(status.name, "web");
    assert_eq!(status.listen, listen);
    assert_eq!(status.upstreams.len(), 1);
    assert_eq!(get(listen, "/").await, (StatusCode::OK, "v1".to_string()));

    // A keep-alive connection opened before the switch follows it at once.
    let mut keep = connect(listen).await;
    assert_eq!(get_on(&mut keep, "/").await.1, "v1");
    proxy
        .client
        .put_route("web", &spec(listen, &[v2]))
        .await
        .unwrap();
    assert_eq!(get_on(&mut keep, "/").await.1, "v2");
    assert_eq!(get(listen, "/").await.1, "v2");

    // Forwarding headers are set, hop-by-hop ones stripped.
    let mut s = connect(listen).await;
    s.ready().await.unwrap();
    let req = Request::get("/headers")
        .header("host", "app.test")
        .header("connection", "x-hop")
        .header("x-hop", "secret")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = s.send_request(req).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"127.0.0.1|http|-");

    let routes = proxy.client.routes().await.unwrap();
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].upstreams[0].addr, v2);
    assert!(routes[0].upstreams[0].served >= 3);

    // Round-robin over two upstreams.
    proxy
        .client
        .put_route("web", &spec(listen, &[v1, v2]))
        .await
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(get_on(&mut keep, "/").await.1);
    }
    assert_eq!(seen.iter().filter(|b| *b == "v1").count(), 2, "{seen:?}");
    assert_eq!(seen.iter().filter(|b| *b == "v2").count(), 2, "{seen:?}");

    // Delete: the port stops accepting, the route is gone.
    proxy.client.delete_route("web").await.unwrap();
    assert!(TcpStream::connect(listen).await.is_err());
    assert!(proxy.client.routes().await.unwrap().is_empty());
    assert!(matches!(
        proxy.client.delete_route("web").await,
        Err(ProxyClientError::NotFound(_))
    ));
    // The port can be reused right away.
    proxy
        .client
        .put_route("web2", &spec(listen, &[v1]))
        .await
        .unwrap();
    assert_eq!(get(listen, "/").await.1, "v1");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_failures_while_switching() {
    let b1 = Backend::start("v1").await;
    let v1 = b1.addr;
    let b2 = Backend::start("v2").await;
    let v2 = b2.addr;
    let (proxy, listen) = TestProxy::routed("web", &[v1]).await;

    // Switches back to back while the clients run; the clients go on until
    // they made their requests and at least MIN_FLIPS switches happened.
    const MIN_FLIPS: u32 = 20;
    let done = Arc::new(AtomicBool::new(false));
    let flips = Arc::new(AtomicU32::new(0));
    let flipper = {
        let client = proxy.client.clone();
        let (done, flips) = (Arc::clone(&done), Arc::clone(&flips));
        tokio::spawn(async move {
            while !done.load(Ordering::SeqCst) {
                let n = flips.load(Ordering::SeqCst);
                let up = if n.is_multiple_of(2) { v2 } else { v1 };
                client.put_route("web", &spec(listen, &[up])).await.unwrap();
                flips.fetch_add(1, Ordering::SeqCst);
            }
        })
    };

    const CONNS: usize = 4;
    const PER_CONN: usize = 500;
    let mut clients = Vec::new();
    for _ in 0..CONNS {
        let flips = Arc::clone(&flips);
        clients.push(tokio::spawn(async move {
            let mut s = connect(listen).await;
            let mut bodies = Vec::with_capacity(PER_CONN);
            while bodies.len() < PER_CONN || flips.load(Ordering::SeqCst) < MIN_FLIPS {
                let (status, body) = get_on(&mut s, "/").await;
                assert_eq!(status, StatusCode::OK, "body: {body}");
                bodies.push(body);
            }
            bodies
        }));
    }
    // Plus requests each on a fresh connection.
    clients.push(tokio::spawn(async move {
        let mut bodies = Vec::new();
        for _ in 0..200 {
            let (status, body) = get(listen, "/").await;
            assert_eq!(status, StatusCode::OK, "body: {body}");
            bodies.push(body);
        }
        bodies
    }));
    let mut all = Vec::new();
    for c in clients {
        all.extend(c.await.unwrap());
    }
    done.store(true, Ordering::SeqCst);
    flipper.await.unwrap();
    let flips = flips.load(Ordering::SeqCst);
    assert!(all.len() >= CONNS * PER_CONN + 200);
    assert!(
        all.iter().all(|b| b == "v1" || b == "v2"),
        "unexpected body"
    );
    let v1_count = all.iter().filter(|b| *b == "v1").count();
    assert!(
        v1_count > 0 && v1_count < all.len(),
        "both versions served ({v1_count} v1)"
    );
    assert!(flips >= MIN_FLIPS, "only {flips} switches happened");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_waits_for_in_flight_requests() {
    let mut b1 = Backend::start("v1").await;
    let v1 = b1.addr;
    let b2 = Backend::start("v2").await;
    let v2 = b2.addr;
    let (proxy, listen) = TestProxy::routed("web", &[v1]).await;

    let held = tokio::spawn(get(listen, "/held"));
    b1.arrived().await;
    let status = proxy
        .client
        .put_route("web", &spec(listen, &[v2]))
        .await
        .unwrap();
    assert_eq!(status.upstreams[0].addr, v2);
    assert_eq!(status.draining.len(), 1);
    assert_eq!(status.draining[0].addr, v1);
    assert_eq!(status.draining[0].in_flight, 1);
    // New requests go to v2 while v1 drains.
    assert_eq!(get(listen, "/").await.1, "v2");

    // A drain whose timeout ends first reports what is still in flight.
    let short = proxy
        .client
        .drain("web", v1, Duration::from_millis(50))
        .await
        .unwrap();
    assert!(!short.drained);
    assert_eq!(short.in_flight, 1);

    // A longer one returns once the request is done, and not before.
    let released = Arc::new(AtomicBool::new(false));
    let mut drain = {
        let (client, released) = (proxy.client.clone(), Arc::clone(&released));
        tokio::spawn(async move {
            let result = client.drain("web", v1, Duration::from_secs(10)).await;
            (result, released.load(Ordering::SeqCst))
        })
    };
    assert!(
        tokio::time::timeout(Duration::from_millis(200), &mut drain)
            .await
            .is_err(),
        "drain returned with the request still in flight"
    );
    released.store(true, Ordering::SeqCst);
    b1.release();
    let (result, after_release) = drain.await.unwrap();
    let result = result.unwrap();
    assert!(after_release, "drain returned before the request was done");
    assert!(result.drained);
    assert_eq!(result.in_flight, 0);
    assert_eq!(held.await.unwrap(), (StatusCode::OK, "v1-held".to_string()));
    let routes = proxy.client.routes().await.unwrap();
    assert!(routes[0].draining.is_empty());

    // Draining an upstream with nothing in flight returns at once.
    let idle = proxy
        .client
        .drain("web", v1, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(idle.drained);
    assert!(matches!(
        proxy.client.drain("nope", v1, Duration::from_secs(1)).await,
        Err(ProxyClientError::NotFound(_))
    ));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_conflict_changes_nothing() {
    let b1 = Backend::start("v1").await;
    let v1 = b1.addr;
    let proxy = TestProxy::start(None, ProxyOptions::default()).await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap();

    let err = proxy
        .client
        .put_route("web", &spec(taken_addr, &[v1]))
        .await
        .unwrap_err();
    match err {
        ProxyClientError::PortConflict(msg) => {
            assert!(msg.contains(&taken_addr.port().to_string()), "{msg}")
        }
        other => panic!("expected port conflict, got {other:?}"),
    }
    assert!(proxy.client.routes().await.unwrap().is_empty());

    // Rebinding an existing route onto a taken port keeps the route as it was.
    let listen = free_port();
    proxy
        .client
        .put_route("web", &spec(listen, &[v1]))
        .await
        .unwrap();
    let err = proxy
        .client
        .put_route("web", &spec(taken_addr, &[v1]))
        .await
        .unwrap_err();
    assert!(matches!(err, ProxyClientError::PortConflict(_)), "{err:?}");
    let routes = proxy.client.routes().await.unwrap();
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].listen, listen);
    assert_eq!(get(listen, "/").await.1, "v1");

    // Another route on the same port conflicts too.
    let err = proxy
        .client
        .put_route("other", &spec(listen, &[v1]))
        .await
        .unwrap_err();
    assert!(matches!(err, ProxyClientError::PortConflict(_)), "{err:?}");

    // Rebinding to a free port moves the route.
    let moved = free_port();
    proxy
        .client
        .put_route("web", &spec(moved, &[v1]))
        .await
        .unwrap();
    assert_eq!(get(moved, "/").await.1, "v1");
    assert!(TcpStream::connect(listen).await.is_err());

    // Validation.
    let err = proxy
        .client
        .put_route("web", &spec(moved, &[]))
        .await
        .unwrap_err();
    assert!(matches!(err, ProxyClientError::Invalid(_)), "{err:?}");
    let err = proxy
        .client
        .put_route("Bad Name", &spec(moved, &[v1]))
        .await
        .unwrap_err();
    assert!(matches!(err, ProxyClientError::Invalid(_)), "{err:?}");
    drop(taken);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_upstream_is_retried_on_a_live_one() {
    let b1 = Backend::start("v1").await;
    let v1 = b1.addr;
    let dead = free_port(); // nothing listens here: connection refused
    let (proxy, listen) = TestProxy::routed("web", &[dead, v1]).await;
    let mut keep = connect(listen).await;
    for _ in 0..20 {
        assert_eq!(
            get_on(&mut keep, "/").await,
            (StatusCode::OK, "v1".to_string())
        );
        assert_eq!(get(listen, "/").await, (StatusCode::OK, "v1".to_string()));
    }

    // A backend that dies after being pooled is also survived.
    let b2 = Backend::start("v2").await;
    let v2 = b2.addr;
    proxy
        .client
        .put_route("web", &spec(listen, &[v2, v1]))
        .await
        .unwrap();
    for _ in 0..4 {
        assert_eq!(get_on(&mut keep, "/").await.0, StatusCode::OK);
    }
    b2.kill().await;
    for _ in 0..10 {
        assert_eq!(
            get_on(&mut keep, "/").await,
            (StatusCode::OK, "v1".to_string())
        );
    }

    // Only dead upstreams: 502 with a short text body.
    proxy
        .client
        .put_route("web", &spec(listen, &[dead]))
        .await
        .unwrap();
    let (status, body) = get_on(&mut keep, "/").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(!body.is_empty() && body.len() < 100);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_times_out_with_504() {
    let b1 = Backend::start("v1").await;
    let v1 = b1.addr;
    let options = ProxyOptions {
        upstream_timeout: Duration::from_millis(200),
        ..ProxyOptions::default()
    };
    let proxy = TestProxy::start(None, options).await;
    let listen = free_port();
    proxy
        .client
        .put_route("web", &spec(listen, &[v1]))
        .await
        .unwrap();
    // Never answered (until released): the proxy gives up after 200 ms.
    assert_eq!(get(listen, "/held").await.0, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(get(listen, "/").await, (StatusCode::OK, "v1".to_string()));
    let routes = proxy.client.routes().await.unwrap();
    assert_eq!(routes[0].upstreams[0].in_flight, 0);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_file_restores_routes() {
    let b1 = Backend::start("v1").await;
    let v1 = b1.addr;
    let b2 = Backend::start("v2").await;
    let v2 = b2.addr;
    let dir = std::env::temp_dir().join(format!("slipway-proxy-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("routes.json");
    let _ = std::fs::remove_file(&state);
    let listen_a = free_port();
    let listen_b = free_port();

    let first = TestProxy::start(Some(state.clone()), ProxyOptions::default()).await;
    first
        .client
        .put_route("a", &spec(listen_a, &[v1]))
        .await
        .unwrap();
    first
        .client
        .put_route("b", &spec(listen_b, &[v1]))
        .await
        .unwrap();
    first
        .client
        .put_route("b", &spec(listen_b, &[v2]))
        .await
        .unwrap();
    first
        .client
        .put_route("gone", &spec(free_port(), &[v2]))
        .await
        .unwrap();
    first.client.delete_route("gone").await.unwrap();
    assert_eq!(get(listen_b, "/").await.1, "v2");
    first.shutdown().await;
    assert!(
        TcpStream::connect(listen_a).await.is_err(),
        "listener closed on shutdown"
    );

    let second = TestProxy::start(Some(state.clone()), ProxyOptions::default()).await;
    let routes = second.client.routes().await.unwrap();
    let names: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, vec!["a", "b"]);
    assert_eq!(get(listen_a, "/").await, (StatusCode::OK, "v1".to_string()));
    assert_eq!(get(listen_b, "/").await, (StatusCode::OK, "v2".to_string()));
    second.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_in_flight_requests_finish() {
    let mut b1 = Backend::start("v1").await;
    let v1 = b1.addr;
    let (proxy, listen) = TestProxy::routed("web", &[v1]).await;
    let mut idle_keep_alive = connect(listen).await;
    assert_eq!(get_on(&mut idle_keep_alive, "/").await.1, "v1");
    let held = tokio::spawn(get(listen, "/held"));
    b1.arrived().await;
    let mut shutdown = tokio::spawn(proxy.shutdown());
    // The proxy stops accepting at once…
    eventually(
        Duration::from_secs(5),
        "the route's listener closes",
        || async move { TcpStream::connect(listen).await.is_err().then_some(()) },
    )
    .await;
    // …but waits for the request in flight, which then completes normally.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), &mut shutdown)
            .await
            .is_err(),
        "shutdown did not wait for the request in flight"
    );
    b1.release();
    shutdown.await.unwrap();
    assert_eq!(held.await.unwrap(), (StatusCode::OK, "v1-held".to_string()));
    assert!(TcpStream::connect(listen).await.is_err());
    // The idle keep-alive connection was closed by the proxy.
    assert!(idle_keep_alive.ready().await.is_err() || idle_keep_alive.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_request_and_response_bodies() {
    let b1 = Backend::start("v1").await;
    let v1 = b1.addr;
    let (proxy, listen) = TestProxy::routed("web", &[v1]).await;
    let payload: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let stream = TcpStream::connect(listen).await.unwrap();
    let (mut s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    for _ in 0..2 {
        let req = Request::post("/echo")
            .header("host", "app.test")
            .body(Full::new(Bytes::from(payload.clone())))
            .unwrap();
        s.ready().await.unwrap();
        let resp = s.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let got = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(got.len(), payload.len());
        assert!(got[..] == payload[..]);
    }
    proxy.shutdown().await;
}

/// A raw backend that answers one request per connection while advertising keep-alive,
/// then closes the connection when the next request arrives: the race of an upstream
/// closing an idle keep-alive connection just as the proxy reuses it.
async fn one_shot_backend() -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                // Wait for the next request on this connection, then drop it unanswered.
                let _ = stream.read(&mut buf).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reused_connection_closed_by_upstream_is_retried_for_idempotent_requests() {
    let up = one_shot_backend().await;
    let (proxy, listen) = TestProxy::routed("web", &[up]).await;
    let mut keep = connect(listen).await;
    for i in 0..10 {
        assert_eq!(
            get_on(&mut keep, "/").await,
            (StatusCode::OK, "ok".to_string()),
            "request {i}"
        );
    }
    proxy.shutdown().await;
}
