//! The agent starts the ingress proxy as a detached `slipway-agent proxy`
//! process when its admin API does not answer, and reuses a running one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers
mod support;

use slipway_agent::proxy::ProxyLauncher;
use slipway_proxy::RouteSpec;
use std::time::Duration;

#[tokio::test]
async fn starts_detached_proxy_once() {
    let dir = tempfile::tempdir().unwrap();
    let admin = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let launcher = ProxyLauncher::new(admin, dir.path().to_owned())
        .with_exe(env!("CARGO_BIN_EXE_slipway-agent").into());
    launcher.ensure_running().await.expect("proxy starts");
    let pid = launcher.spawned_pid().expect("a proxy was spawned");
    let client = launcher.client();
    assert!(client.health().await.unwrap().ok);

    // A second launcher finds it running and starts nothing.
    let again = ProxyLauncher::new(admin, dir.path().to_owned())
        .with_exe(env!("CARGO_BIN_EXE_slipway-agent").into());
    again.ensure_running().await.unwrap();
    assert_eq!(again.spawned_pid(), None);

    // Routes are persisted in the data dir.
    let listen = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    client
        .put_route(
            "t-route",
            &RouteSpec {
                listen,
                upstreams: vec!["127.0.0.1:9".parse().unwrap()],
            },
        )
        .await
        .unwrap();
    let state = std::fs::read_to_string(dir.path().join("routes.json")).unwrap();
    assert!(state.contains("t-route"), "{state}");
    assert!(dir.path().join("proxy.log").exists());

    // Stop the proxy we started (by its pid) and check it is gone.
    let pid = i32::try_from(pid).unwrap();
    // SAFETY: plain kill(2) of the child this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let client = &client;
    support::eventually(
        Duration::from_secs(5),
        "the proxy stops answering after SIGTERM",
        || async move { client.health().await.is_err().then_some(()) },
    )
    .await;
}
