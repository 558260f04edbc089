//! Rollout / Revert / Reconcile against the real Docker Engine and a real
//! in-test ingress proxy. Needs `SLIPWAY_TEST_DOCKER_HOST` or `DOCKER_HOST`
//! and the image `slipway-test/web:v1`: without them the tests fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers
mod support;

use slipway_agent::docker::Docker;
use slipway_agent::rollout::{Engine, Progress};
use slipway_proxy::ProxyClient;
use slipway_types::agent::{
    AgentErrorCode, AgentEvent, AgentResponse, ContainerPort, ContainerSpec, DesiredService,
    ReconcilePlan, RevertPlan, RolloutPhase, RolloutPlan, ServiceKey,
};
use slipway_types::api::{HealthCheck, Protocol, Resources};
use slipway_types::{ImageRef, Port};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

struct Harness {
    engine: Engine,
    proxy: ProxyClient,
    host: String,
    service: ServiceKey,
    published: u16,
}

impl Drop for Harness {
    /// Removes every container and network of this test's host id, even
    /// after a panic.
    fn drop(&mut self) {
        let host = self.host.clone();
        let host_id = self.engine.host_id;
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let Ok(d) = Docker::connect(&host).await else {
                    return;
                };
                support::cleanup_host(&d, host_id).await;
            });
        })
        .join();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

async fn harness() -> Harness {
    let (host, docker) = support::docker().await;
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_addr = admin.local_addr().unwrap();
    tokio::spawn(slipway_proxy::serve(admin, None));
    let proxy = ProxyClient::new(admin_addr);
    let tag = Uuid::new_v4().simple().to_string();
    let engine = Engine {
        docker,
        proxy: Some(proxy.clone()),
        host_id: Uuid::new_v4(),
        prefix: format!("t-{}-", &tag[..8]),
        proxy_bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        proxy_guard: None,
    };
    Harness {
        engine,
        proxy,
        host,
        service: ServiceKey {
            project: "shop".into(),
            environment: "prod".into(),
            service: "web".into(),
            service_id: Uuid::new_v4(),
            environment_id: Uuid::new_v4(),
        },
        published: free_port(),
    }
}

fn port(p: u16) -> Port {
    Port::try_from(i64::from(p)).unwrap()
}

fn httpd(version: &str) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!(
            "echo starting {version}; mkdir -p /www && echo {version} > /www/index.html && echo ok > /www/healthz && exec httpd -f -p 8080 -h /www"
        ),
    ]
}

impl Harness {
    fn plan(&self, release: i64, command: Vec<String>, health_path: &str) -> RolloutPlan {
        RolloutPlan {
            deployment_id: Uuid::new_v4(),
            release_id: Uuid::new_v4(),
            release_number: release,
            service: self.service.clone(),
            container: ContainerSpec {
                image: ImageRef::try_from("slipway-test/web:v1").unwrap(),
                command: Some(command),
                env: BTreeMap::new(),
                ports: vec![ContainerPort {
                    container: port(8080),
                    published: Some(port(self.published)),
                    protocol: Protocol::Tcp,
                    mode: Default::default(),
                    host_ip: None,
                }],
                volumes: vec![],
                health_check: Some(HealthCheck {
                    interval_secs: 1,
                    timeout_secs: 1,
                    retries: 1,
                    ..HealthCheck::http(health_path, port(8080))
                }),
                resources: Resources {
                    cpus: Some(0.5),
                    memory_mb: Some(64),
                },
                user: None,
                read_only: false,
                cap_drop: vec![],
                cap_add: vec![],
                no_new_privileges: true,
                ..ContainerSpec::of_image(ImageRef::try_from("x:1").unwrap())
            },
            replicas: 1,
            keep_previous: 2,
            health_timeout_secs: 20,
            drain_timeout_secs: 2,
            registry_auth: None,
            phase: Default::default(),
            strategy: slipway_types::api::RolloutStrategy::StartFirst,
        }
    }

    async fn get(&self) -> String {
        let url = format!("http://127.0.0.1:{}/", self.published);
        match reqwest::get(&url).await {
            Ok(r) => r.text().await.unwrap_or_default().trim().to_owned(),
            Err(e) => format!("error: {e}"),
        }
    }

    /// Containers of this service: (deployment, running).
    async fn containers(&self) -> Vec<(Uuid, bool)> {
        self.engine
            .docker
            .list_managed(self.engine.host_id, Some(self.service.service_id))
            .await
            .unwrap()
            .into_iter()
            .map(|c| (c.deployment_id.unwrap(), c.is_running()))
            .collect()
    }

    async fn rollout(
        &self,
        plan: &RolloutPlan,
    ) -> Result<AgentResponse, slipway_types::agent::AgentError> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let r = self
            .engine
            .rollout(plan, &Progress::new(tx), &CancellationToken::new())
            .await;
        let mut steps = Vec::new();
        while let Ok(AgentEvent::Step { message }) = rx.try_recv() {
            steps.push(message);
        }
        eprintln!("rollout r{}: {steps:#?}", plan.release_number);
        r
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_revert_reconcile() {
    let h = harness().await;

    // v1
    let p1 = h.plan(1, httpd("v1"), "/healthz");
    let r1 = h.rollout(&p1).await.expect("v1 rollout");
    let AgentResponse::RolledOut {
        containers: c1,
        previous_deployment_id,
    } = r1
    else {
        panic!("unexpected {r1:?}")
    };
    assert_eq!(c1.len(), 1);
    assert_eq!(previous_deployment_id, None);
    assert_eq!(h.get().await, "v1");
    let (statuses, _) = h.engine.status().await.unwrap();
    assert_eq!(statuses.len(), 1);
    assert!(statuses[0].serving, "{statuses:?}");
    assert_eq!(statuses[0].deployment_id, p1.deployment_id);
    // The service's HTTP check, probed for the report.
    assert_eq!(
        statuses[0].health,
        slipway_types::agent::ContainerHealth::Healthy
    );

    // The same plan again is a no-op.
    let again = h.rollout(&p1).await.expect("repeat");
    assert!(matches!(again, AgentResponse::RolledOut { ref containers, .. } if *containers == c1));

    // v2 with two replicas
    let mut p2 = h.plan(2, httpd("v2"), "/healthz");
    p2.replicas = 2;
    let r2 = h.rollout(&p2).await.expect("v2 rollout");
    assert!(
        matches!(r2, AgentResponse::RolledOut { ref containers, previous_deployment_id: Some(prev) }
        if containers.len() == 2 && prev == p1.deployment_id),
        "{r2:?}"
    );
    for _ in 0..4 {
        assert_eq!(h.get().await, "v2");
    }
    let cs = h.containers().await;
    assert!(
        cs.contains(&(p1.deployment_id, false)),
        "v1 kept stopped: {cs:?}"
    );
    assert_eq!(
        cs.iter()
            .filter(|(d, r)| *d == p2.deployment_id && *r)
            .count(),
        2
    );

    // v3 never becomes healthy
    let mut p3 = h.plan(3, httpd("v3"), "/missing");
    p3.health_timeout_secs = 3;
    let e3 = h.rollout(&p3).await.expect_err("v3 must fail");
    assert_eq!(e3.code, AgentErrorCode::Unhealthy, "{e3:?}");
    assert!(e3.message.contains("404"), "{e3:?}");
    assert!(
        e3.logs.iter().any(|l| l.contains("starting v3")),
        "{:?}",
        e3.logs
    );
    assert!(!h
        .containers()
        .await
        .iter()
        .any(|(d, _)| *d == p3.deployment_id));
    assert_eq!(h.get().await, "v2");

    // revert v2 → v1
    let rv = h
        .engine
        .revert(
            &RevertPlan {
                service: h.service.clone(),
                failed_deployment_id: p2.deployment_id,
                restore_deployment_id: Some(p1.deployment_id),
                drain_timeout_secs: 2,
            },
            &Progress::discard(),
            &CancellationToken::new(),
        )
        .await
        .expect("revert");
    assert!(
        matches!(rv, AgentResponse::Reverted { ref containers } if *containers == c1),
        "{rv:?}"
    );
    assert_eq!(h.get().await, "v1");
    assert_eq!(h.containers().await, vec![(p1.deployment_id, true)]);

    // reconcile: an orphan container of this service is removed, a lost route restored
    let orphan_plan = h.plan(9, httpd("v9"), "/healthz");
    let specs =
        slipway_agent::spec::create_specs(&h.engine.prefix, h.engine.host_id, &orphan_plan, true)
            .unwrap();
    h.engine.docker.create(&specs[0]).await.unwrap();
    let route =
        slipway_agent::spec::route_name(&h.engine.prefix, h.service.service_id, h.published);
    h.proxy.delete_route(&route).await.unwrap();
    assert!(h.get().await.starts_with("error"));
    let desired = ReconcilePlan {
        services: vec![DesiredService {
            service: h.service.clone(),
            serving: Some(p1.deployment_id),
            keep: vec![],
            drain_timeout_secs: 1,
        }],
    };
    let rc = h
        .engine
        .reconcile(&desired, &Progress::discard(), &CancellationToken::new())
        .await
        .expect("reconcile");
    let AgentResponse::Reconciled { actions } = rc else {
        panic!("{rc:?}")
    };
    assert!(
        actions
            .iter()
            .any(|a| a.starts_with("removed") && a.contains("-r9-")),
        "{actions:?}"
    );
    assert!(
        actions.iter().any(|a| a.starts_with("routed")),
        "{actions:?}"
    );
    assert_eq!(h.get().await, "v1");
    assert_eq!(h.containers().await, vec![(p1.deployment_id, true)]);
    // Converged: nothing to do.
    let rc = h
        .engine
        .reconcile(&desired, &Progress::discard(), &CancellationToken::new())
        .await
        .expect("reconcile 2");
    assert_eq!(rc, AgentResponse::Reconciled { actions: vec![] });

    // v4 with keep_previous = 0 prunes v1.
    let mut p4 = h.plan(4, httpd("v4"), "/healthz");
    p4.keep_previous = 0;
    h.rollout(&p4).await.expect("v4");
    assert_eq!(h.get().await, "v4");
    assert_eq!(h.containers().await, vec![(p4.deployment_id, true)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_leave_nothing_behind() {
    let h = harness().await;

    let crash = h.plan(
        1,
        vec![
            "sh".into(),
            "-c".into(),
            "echo about to fail; exit 3".into(),
        ],
        "/healthz",
    );
    let e = h.rollout(&crash).await.expect_err("crash");
    assert_eq!(e.code, AgentErrorCode::Crashed, "{e:?}");
    assert!(
        e.logs.iter().any(|l| l.contains("about to fail")),
        "{:?}",
        e.logs
    );
    assert!(h.containers().await.is_empty());

    let mut missing = h.plan(2, httpd("x"), "/healthz");
    missing.container.image = ImageRef::try_from("slipway-test/nope:1").unwrap();
    let e = h.rollout(&missing).await.expect_err("image");
    assert_eq!(e.code, AgentErrorCode::ImageMissing, "{e:?}");
    assert!(h.containers().await.is_empty());

    // A published port taken by something else.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut conflict = h.plan(3, httpd("v3"), "/healthz");
    conflict.container.ports[0].published = Some(port(taken.local_addr().unwrap().port()));
    let e = h.rollout(&conflict).await.expect_err("port conflict");
    assert_eq!(e.code, AgentErrorCode::PortConflict, "{e:?}");
    assert!(h.containers().await.is_empty());

    // Cancelled while waiting for health: once the container has started.
    let mut slow = h.plan(4, httpd("v4"), "/missing");
    slow.health_timeout_secs = 60;
    let cancel = CancellationToken::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let c2 = cancel.clone();
    tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            if matches!(&event, AgentEvent::Step { message } if message.starts_with("started container"))
            {
                c2.cancel();
            }
        }
    });
    let started = std::time::Instant::now();
    let e = h
        .engine
        .rollout(&slow, &Progress::new(tx), &cancel)
        .await
        .expect_err("cancelled");
    assert_eq!(e.code, AgentErrorCode::Cancelled, "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(h.containers().await.is_empty());

    // Published port without a proxy.
    let mut no_proxy = h.engine.clone();
    no_proxy.proxy = None;
    let e = no_proxy
        .rollout(
            &h.plan(5, httpd("v5"), "/healthz"),
            &Progress::discard(),
            &CancellationToken::new(),
        )
        .await
        .expect_err("no proxy");
    assert_eq!(e.code, AgentErrorCode::InvalidSpec, "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_of_own_containers_only() {
    let h = harness().await;
    let p = h.plan(1, httpd("v1"), "/healthz");
    let AgentResponse::RolledOut { containers, .. } = h.rollout(&p).await.expect("rollout") else {
        panic!()
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let r = h
        .engine
        .logs(
            &containers[0],
            10,
            false,
            &Progress::new(tx),
            &CancellationToken::new(),
        )
        .await
        .expect("logs");
    assert_eq!(r, AgentResponse::LogsEnded);
    let mut lines = Vec::new();
    while let Ok(AgentEvent::Log { line, .. }) = rx.try_recv() {
        lines.push(line);
    }
    assert!(lines.iter().any(|l| l == "starting v1"), "{lines:?}");

    // Another host's engine may not read it.
    let mut other = h.engine.clone();
    other.host_id = Uuid::new_v4();
    let e = other
        .logs(
            &containers[0],
            10,
            false,
            &Progress::discard(),
            &CancellationToken::new(),
        )
        .await
        .expect_err("not ours");
    assert_eq!(e.code, AgentErrorCode::NotFound);

    // follow=true streams until cancelled (here: once a line arrived).
    let cancel = CancellationToken::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let c2 = cancel.clone();
    let first_line = tokio::spawn(async move {
        let first = loop {
            match rx.recv().await {
                Some(AgentEvent::Log { line, .. }) => break Some(line),
                Some(_) => {}
                None => break None,
            }
        };
        c2.cancel();
        first
    });
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        h.engine
            .logs(&containers[0], 5, true, &Progress::new(tx), &cancel),
    )
    .await
    .expect("cancel ends the stream")
    .expect("logs");
    assert_eq!(r, AgentResponse::LogsEnded);
    assert!(cancel.is_cancelled(), "the stream ended by itself");
    assert!(
        first_line.await.unwrap().is_some(),
        "no line before the end"
    );
}

/// A service without published ports on several hosts: `prepare` starts the
/// new containers, `switch` (nothing to route) retires the old ones, and a
/// resent `prepare`/`switch` is answered the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_and_switch_without_published_ports_retire_the_old_release() {
    let h = harness().await;
    let unpublished = |release: i64, phase: RolloutPhase| {
        let mut p = h.plan(release, httpd(&format!("v{release}")), "/healthz");
        p.container.ports[0].published = None;
        p.phase = phase;
        p
    };
    let p1 = unpublished(1, RolloutPhase::Full);
    assert!(matches!(
        h.rollout(&p1).await,
        Ok(AgentResponse::RolledOut { .. })
    ));
    assert_eq!(h.containers().await, vec![(p1.deployment_id, true)]);

    let mut p2 = unpublished(2, RolloutPhase::Prepare);
    let prepared = h.rollout(&p2).await;
    assert!(
        matches!(prepared, Ok(AgentResponse::Prepared { .. })),
        "{prepared:?}"
    );
    // A resent prepare finds its containers ready.
    assert!(matches!(
        h.rollout(&p2).await,
        Ok(AgentResponse::Prepared { .. })
    ));
    let mut running: Vec<_> = h.containers().await;
    running.sort();
    let mut want = vec![(p1.deployment_id, true), (p2.deployment_id, true)];
    want.sort();
    assert_eq!(running, want, "both serve until the switch");

    p2.phase = RolloutPhase::Switch;
    let switched = h.rollout(&p2).await;
    assert!(
        matches!(&switched, Ok(AgentResponse::RolledOut { previous_deployment_id: Some(d), .. }) if *d == p1.deployment_id),
        "{switched:?}"
    );
    let mut after = h.containers().await;
    after.sort();
    let mut want = vec![(p1.deployment_id, false), (p2.deployment_id, true)];
    want.sort();
    assert_eq!(
        after, want,
        "the old release is stopped and kept for rollback"
    );
}
