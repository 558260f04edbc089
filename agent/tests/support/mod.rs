//! Shared by the agent's test binaries (each uses a part).
#![allow(dead_code)]

#[path = "../../../proxy/tests/support/eventually.rs"]
mod eventually_impl;
#[allow(unused_imports)] // not every test binary polls
pub use eventually_impl::eventually;

/// The Docker Engine the tests run against: `SLIPWAY_TEST_DOCKER_HOST` (set
/// by scripts/test, which starts a private engine and builds the test
/// images), else `DOCKER_HOST`. A test that needs Docker fails
/// without it: it never passes having tested nothing.
pub fn docker_host() -> String {
    std::env::var("SLIPWAY_TEST_DOCKER_HOST")
        .ok()
        .or_else(|| std::env::var("DOCKER_HOST").ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| {
            panic!(
                "neither SLIPWAY_TEST_DOCKER_HOST nor DOCKER_HOST is set: the agent's Docker tests \
                 need a Docker Engine with the test images. Run ./scripts/test, which starts one \
                 and builds them."
            )
        })
}

/// A connection to [`docker_host`]; fails the test, naming the address, when
/// the engine does not answer.
pub async fn docker() -> (String, slipway_agent::docker::Docker) {
    let host = docker_host();
    match slipway_agent::docker::Docker::connect(&host).await {
        Ok(d) => (host, d),
        Err(e) => panic!("the Docker Engine at {host} does not answer: {e}"),
    }
}

/// Removes every container (one-offs too) and environment network of
/// `host_id`: what a test's agent left on the engine.
pub async fn cleanup_host(d: &slipway_agent::docker::Docker, host_id: uuid::Uuid) {
    if let Ok(all) = d.list_managed(host_id, None).await {
        for c in all {
            let _ = d.remove(&c.id).await;
        }
    }
    if let Ok(runs) = d.list_runs(host_id).await {
        for r in runs {
            let _ = d.remove(&r.id).await;
        }
    }
    if let Ok(nets) = d.list_networks(host_id).await {
        for n in nets {
            let _ = d.remove_network(&n).await;
        }
    }
}
