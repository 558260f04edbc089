//! Rollout strategies, health checks beyond HTTP, the `Switched` event and
//! the retire of old containers, against the real Docker Engine and a real
//! in-test ingress proxy. Needs `SLIPWAY_TEST_DOCKER_HOST` or `DOCKER_HOST`
//! and the image `slipway-test/web:v1`: without them the tests fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers
mod support;

use bollard::query_parameters::{ListContainersOptions, RemoveVolumeOptions};
use slipway_agent::connection::{execute, ServiceLocks};
use slipway_agent::docker::Docker;
use slipway_agent::rollout::{Engine, Progress};
use slipway_proxy::ProxyClient;
use slipway_types::agent::{
    AgentError, AgentErrorCode, AgentEvent, AgentRequest, AgentResponse, ContainerPort,
    ContainerSpec, RevertPlan, RolloutPhase, RolloutPlan, ServiceKey,
};
use slipway_types::api::{HealthCheck, Protocol, RolloutStrategy, VolumeMount};
use slipway_types::{ImageRef, Port};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::eventually;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

struct Harness {
    engine: Engine,
    host: String,
    service: ServiceKey,
    published: u16,
    /// A named volume of this test (removed at the end).
    volume: String,
    bollard: bollard::Docker,
}

impl Drop for Harness {
    /// Removes every container of this test's host id and its volume, even
    /// after a panic.
    fn drop(&mut self) {
        let host = self.host.clone();
        let host_id = self.engine.host_id;
        let volume = self.volume.clone();
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
                if let Ok(all) = d.list_managed(host_id, None).await {
                    for c in all {
                        let _ = d.remove(&c.id).await;
                    }
                }
                if let Ok(b) = connect_bollard(&host) {
                    let _ = b.remove_volume(&volume, None::<RemoveVolumeOptions>).await;
                }
            });
        })
        .join();
    }
}

fn connect_bollard(host: &str) -> Result<bollard::Docker, bollard::errors::Error> {
    match host.strip_prefix("unix://") {
        Some(path) => bollard::Docker::connect_with_socket(path, 120, bollard::API_DEFAULT_VERSION),
        None => bollard::Docker::connect_with_http(
            &host.replacen("tcp://", "http://", 1),
            120,
            bollard::API_DEFAULT_VERSION,
        ),
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn port(p: u16) -> Port {
    Port::try_from(i64::from(p)).unwrap()
}

async fn harness() -> Harness {
    let (host, docker) = support::docker().await;
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_addr = admin.local_addr().unwrap();
    tokio::spawn(slipway_proxy::serve(admin, None));
    let tag = Uuid::new_v4().simple().to_string();
    let engine = Engine {
        docker,
        proxy: Some(ProxyClient::new(admin_addr)),
        host_id: Uuid::new_v4(),
        prefix: format!("t-{}-", &tag[..8]),
        proxy_bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        proxy_guard: None,
    };
    Harness {
        engine,
        bollard: connect_bollard(&host).unwrap(),
        host,
        service: ServiceKey {
            project: "shop".into(),
            environment: "prod".into(),
            service: "db".into(),
            service_id: Uuid::new_v4(),
            environment_id: Uuid::new_v4(),
        },
        published: free_port(),
        volume: format!("t-{}-data", &tag[..8]),
    }
}

/// `sh -c "{before}, then serve {answer} with httpd on 8080 as PID 1"`
/// (which ignores SIGTERM: a stop takes the whole grace period).
fn httpd(before: &str, answer: &str) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!(
            "{before}\nmkdir -p /www && echo {answer} > /www/index.html && echo ok > /www/healthz && exec httpd -f -p 8080 -h /www"
        ),
    ]
}

/// Like [`httpd`], but stops at once on SIGTERM (keeps the stop-first tests short).
fn httpd_quick(before: &str, answer: &str) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!(
            "{before}\nmkdir -p /www && echo {answer} > /www/index.html && echo ok > /www/healthz\ntrap 'exit 0' TERM\nhttpd -f -p 8080 -h /www &\nwait"
        ),
    ]
}

/// What a request sent: its steps, how many `Switched`, and how many steps
/// came before the first one.
#[derive(Debug, Default)]
struct Events {
    steps: Vec<String>,
    switched: usize,
    switched_after: Option<usize>,
}

fn collect(rx: &mut tokio::sync::mpsc::UnboundedReceiver<AgentEvent>) -> Events {
    let mut e = Events::default();
    while let Ok(event) = rx.try_recv() {
        match event {
            AgentEvent::Step { message } => e.steps.push(message),
            AgentEvent::Switched => {
                e.switched += 1;
                e.switched_after.get_or_insert(e.steps.len());
            }
            AgentEvent::Log { .. } => {}
        }
    }
    e
}

impl Harness {
    /// A release of the service: published on `self.published`, HTTP check.
    fn plan(&self, release: i64, command: Vec<String>) -> RolloutPlan {
        RolloutPlan {
            deployment_id: Uuid::new_v4(),
            release_id: Uuid::new_v4(),
            release_number: release,
            service: self.service.clone(),
            container: ContainerSpec {
                command: Some(command),
                ports: vec![ContainerPort {
                    container: port(8080),
                    published: Some(port(self.published)),
                    protocol: Protocol::Tcp,
                    mode: Default::default(),
                    host_ip: None,
                }],
                health_check: Some(HealthCheck {
                    interval_secs: 1,
                    timeout_secs: 1,
                    retries: 1,
                    ..HealthCheck::http("/healthz", port(8080))
                }),
                ..ContainerSpec::of_image(ImageRef::try_from("slipway-test/web:v1").unwrap())
            },
            replicas: 1,
            keep_previous: 2,
            health_timeout_secs: 20,
            drain_timeout_secs: 2,
            registry_auth: None,
            phase: Default::default(),
            strategy: RolloutStrategy::StartFirst,
        }
    }

    /// A stop-first release with the named volume on /data.
    fn stateful(&self, release: i64, command: Vec<String>) -> RolloutPlan {
        let mut p = self.plan(release, command);
        p.strategy = RolloutStrategy::StopFirst;
        p.container.volumes = vec![VolumeMount {
            source: self.volume.clone(),
            target: "/data".into(),
            read_only: false,
        }];
        p
    }

    async fn rollout(&self, plan: &RolloutPlan) -> (Result<AgentResponse, AgentError>, Events) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let r = self
            .engine
            .rollout(plan, &Progress::new(tx), &CancellationToken::new())
            .await;
        let events = collect(&mut rx);
        eprintln!("rollout r{}: {events:#?}", plan.release_number);
        (r, events)
    }

    async fn get(&self) -> String {
        let url = format!("http://127.0.0.1:{}/", self.published);
        match reqwest::get(&url).await {
            Ok(r) => r.text().await.unwrap_or_default().trim().to_owned(),
            Err(e) => format!("error: {e}"),
        }
    }

    /// Running containers of the service, straight from the engine: id → deployment.
    async fn running(&self) -> HashMap<String, String> {
        running(&self.bollard, self.service.service_id).await
    }

    /// Counts the service's running containers every few milliseconds until
    /// the returned flag is set; the task answers the most seen at once.
    fn sample_running(&self) -> (Arc<AtomicBool>, tokio::task::JoinHandle<(usize, usize)>) {
        let stop = Arc::new(AtomicBool::new(false));
        let (b, service, flag) = (self.bollard.clone(), self.service.service_id, stop.clone());
        let task = tokio::spawn(async move {
            let (mut most, mut samples) = (0, 0);
            while !flag.load(Ordering::SeqCst) {
                most = most.max(running(&b, service).await.len());
                samples += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (most, samples)
        });
        (stop, task)
    }
}

async fn running(b: &bollard::Docker, service: Uuid) -> HashMap<String, String> {
    let mut filters = HashMap::new();
    filters.insert(
        "label".to_owned(),
        vec![format!(
            "{}={service}",
            slipway_types::agent::labels::SERVICE_ID
        )],
    );
    filters.insert("status".to_owned(), vec!["running".to_owned()]);
    let options = ListContainersOptions {
        all: true,
        filters: Some(filters),
        ..Default::default()
    };
    b.list_containers(Some(options))
        .await
        .unwrap()
        .into_iter()
        .map(|c| {
            let deployment = c
                .labels
                .and_then(|l| l.get(slipway_types::agent::labels::DEPLOYMENT).cloned())
                .unwrap_or_default();
            (c.id.unwrap_or_default(), deployment)
        })
        .collect()
}

/// Stop-first: never two containers of the service at once; the new release
/// sees the old one's volume; a failed release brings the same previous
/// container back on it, with what it wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_first_never_runs_two_and_a_failed_release_brings_the_previous_back() {
    let h = harness().await;

    let p1 = h.stateful(1, httpd_quick("echo from-v1 > /data/written", "v1"));
    let (r1, e1) = h.rollout(&p1).await;
    let r1 = r1.expect("v1");
    assert_eq!(e1.switched, 1, "{e1:?}");
    assert_eq!(h.get().await, "v1");

    // v2 serves what v1 wrote on the volume.
    let (stop, sampler) = h.sample_running();
    let p2 = h.stateful(
        2,
        httpd_quick("mkdir -p /www && cp /data/written /www/v1", "v2"),
    );
    let (r2, e2) = h.rollout(&p2).await;
    stop.store(true, Ordering::SeqCst);
    let (most, samples) = sampler.await.unwrap();
    let AgentResponse::RolledOut {
        containers: c2,
        previous_deployment_id,
    } = r2.expect("v2")
    else {
        panic!()
    };
    assert_eq!(previous_deployment_id, Some(p1.deployment_id));
    assert!(samples > 10, "only {samples} samples");
    assert_eq!(most, 1, "two containers of the service ran at once");
    assert_eq!(e2.switched, 1, "{e2:?}");
    assert!(
        e2.steps
            .iter()
            .any(|s| s.starts_with("stop-first: stopping 1")),
        "{e2:?}"
    );
    assert_eq!(h.get().await, "v2");
    let url = format!("http://127.0.0.1:{}/v1", h.published);
    assert_eq!(
        reqwest::get(&url)
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .trim(),
        "from-v1"
    );
    let AgentResponse::RolledOut { containers: c1, .. } = r1 else {
        panic!()
    };
    // v1 is kept, stopped.
    let v1 = h.engine.docker.inspect(&c1[0]).await.unwrap();
    assert!(!v1.is_up(), "{v1:?}");

    // v2 writes too, then v3 crashes at start: v2 (the same container) is back.
    let out = h
        .engine
        .docker
        .exec(
            &c2[0],
            &["sh".into(), "-c".into(), "echo from-v2 > /data/v2".into()],
        )
        .await
        .unwrap();
    assert_eq!(out.exit_code, 0, "{out:?}");
    let (stop, sampler) = h.sample_running();
    let p3 = h.stateful(
        3,
        vec!["sh".into(), "-c".into(), "echo v3 is broken; exit 1".into()],
    );
    let (r3, e3) = h.rollout(&p3).await;
    stop.store(true, Ordering::SeqCst);
    let (most, _) = sampler.await.unwrap();
    let e = r3.expect_err("v3 must fail");
    assert_eq!(e.code, AgentErrorCode::Crashed, "{e:?}");
    assert!(
        e.message
            .contains("the previous container(s) were started again and serve"),
        "{e:?}"
    );
    assert!(e.logs.iter().any(|l| l.contains("v3 is broken")), "{e:?}");
    assert_eq!(e3.switched, 0, "{e3:?}");
    assert_eq!(most, 1, "two containers of the service ran at once");
    let now = h.running().await;
    assert_eq!(
        now.keys().cloned().collect::<Vec<_>>(),
        c2,
        "v2's own container serves"
    );
    assert_eq!(h.get().await, "v2");
    let out = h
        .engine
        .docker
        .exec(
            &c2[0],
            &["cat".into(), "/data/v2".into(), "/data/written".into()],
        )
        .await
        .unwrap();
    assert_eq!(out.output, vec!["from-v2", "from-v1"], "{out:?}");
    // Nothing of v3 is left.
    let all = h
        .engine
        .docker
        .list_managed(h.engine.host_id, Some(h.service.service_id))
        .await
        .unwrap();
    assert!(!all
        .iter()
        .any(|c| c.deployment_id == Some(p3.deployment_id)));

    // An unhealthy v4 (cancelled while waiting) brings v2 back too.
    let mut p4 = h.stateful(4, httpd_quick("true", "v4"));
    p4.container.health_check = Some(HealthCheck {
        interval_secs: 1,
        timeout_secs: 1,
        retries: 1,
        ..HealthCheck::http("/missing", port(8080))
    });
    p4.health_timeout_secs = 60;
    let cancel = CancellationToken::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let c = cancel.clone();
    let watcher = tokio::spawn(async move {
        let mut switched = 0;
        while let Some(event) = rx.recv().await {
            match event {
                AgentEvent::Step { message } if message.starts_with("started container") => {
                    c.cancel()
                }
                AgentEvent::Switched => switched += 1,
                _ => {}
            }
        }
        switched
    });
    let e = h
        .engine
        .rollout(&p4, &Progress::new(tx), &cancel)
        .await
        .expect_err("cancelled");
    assert_eq!(e.code, AgentErrorCode::Cancelled, "{e:?}");
    assert!(e.message.contains("started again"), "{e:?}");
    assert_eq!(watcher.await.unwrap(), 0);
    assert_eq!(h.running().await.keys().cloned().collect::<Vec<_>>(), c2);
    assert_eq!(h.get().await, "v2");
}

/// Stop-first over several hosts: `prepare` starts nothing (the old release
/// keeps serving), `switch` recreates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_first_prepare_starts_nothing_and_switch_recreates() {
    let h = harness().await;
    let p1 = h.stateful(1, httpd_quick("true", "v1"));
    h.rollout(&p1).await.0.expect("v1");
    let mut p2 = h.stateful(2, httpd_quick("true", "v2"));
    p2.phase = RolloutPhase::Prepare;
    let (r, e) = h.rollout(&p2).await;
    assert_eq!(
        r.expect("prepare"),
        AgentResponse::Prepared { containers: vec![] }
    );
    assert_eq!(e.switched, 0);
    let only: Vec<String> = h.running().await.into_values().collect();
    assert_eq!(only, vec![p1.deployment_id.to_string()]);
    assert_eq!(h.get().await, "v1");

    p2.phase = RolloutPhase::Switch;
    let (r, e) = h.rollout(&p2).await;
    assert!(
        matches!(r, Ok(AgentResponse::RolledOut { previous_deployment_id: Some(d), .. }) if d == p1.deployment_id),
        "{r:?}"
    );
    assert_eq!(e.switched, 1, "{e:?}");
    let only: Vec<String> = h.running().await.into_values().collect();
    assert_eq!(only, vec![p2.deployment_id.to_string()]);
    assert_eq!(h.get().await, "v2");
    // A resent switch answers from what is there (and says it is switched).
    let (r, e) = h.rollout(&p2).await;
    assert!(matches!(r, Ok(AgentResponse::RolledOut { .. })), "{r:?}");
    assert_eq!(e.switched, 1, "{e:?}");
}

/// A revert of a stop-first service stops the failed release before the
/// kept one starts again: never two at once on the volume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_first_revert_stops_the_failed_release_before_the_kept_one_starts() {
    let h = harness().await;
    let p1 = h.stateful(1, httpd_quick("echo from-v1 > /data/written", "v1"));
    h.rollout(&p1).await.0.expect("v1");
    let p2 = h.stateful(2, httpd_quick("true", "v2"));
    h.rollout(&p2).await.0.expect("v2");
    assert_eq!(h.get().await, "v2");

    let (stop, sampler) = h.sample_running();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let r = h
        .engine
        .revert(
            &RevertPlan {
                service: h.service.clone(),
                failed_deployment_id: p2.deployment_id,
                restore_deployment_id: Some(p1.deployment_id),
                drain_timeout_secs: 1,
            },
            &Progress::new(tx),
            &CancellationToken::new(),
        )
        .await;
    stop.store(true, Ordering::SeqCst);
    let (most, _) = sampler.await.unwrap();
    let events = collect(&mut rx);
    assert!(
        matches!(r, Ok(AgentResponse::Reverted { .. })),
        "{r:?} {events:?}"
    );
    assert_eq!(most, 1, "two containers ran at once: {events:?}");
    assert_eq!(events.switched, 0, "a revert is no rollout switch");
    assert_eq!(h.get().await, "v1");
    let only: Vec<String> = h.running().await.into_values().collect();
    assert_eq!(only, vec![p1.deployment_id.to_string()]);
}

/// TCP and exec checks gate a rollout: no switch before they pass, a check
/// that never passes fails it; failures in the start period do not count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_and_exec_health_checks_gate_a_rollout() {
    let h = harness().await;

    // TCP: httpd listens only after 2 s.
    let mut tcp = h.plan(1, httpd_quick("sleep 2", "tcp"));
    tcp.container.health_check = Some(HealthCheck::tcp(port(8080)));
    let started = Instant::now();
    let (r, e) = h.rollout(&tcp).await;
    r.expect("tcp check passes once httpd listens");
    assert!(started.elapsed() >= Duration::from_secs(2), "{e:?}");
    assert_eq!(h.get().await, "tcp");
    assert_eq!(e.switched, 1);

    // TCP on a port nothing listens on: Docker's proxy accepts the
    // connection on the host port, the check must still fail.
    let mut nothing = h.plan(2, httpd_quick("true", "nothing"));
    nothing.container.health_check = Some(HealthCheck::tcp(port(9999)));
    nothing.health_timeout_secs = 2;
    let (r, e) = h.rollout(&nothing).await;
    let err = r.expect_err("nothing listens on 9999");
    assert_eq!(err.code, AgentErrorCode::Unhealthy, "{err:?}");
    assert!(err.message.contains("9999"), "{err:?}");
    assert_eq!(e.switched, 0);
    assert_eq!(h.get().await, "tcp");

    // Exec: ready once /tmp/ready exists (after 1 s).
    let mut exec = h.plan(3, httpd_quick("(sleep 1; touch /tmp/ready) &", "exec"));
    exec.container.health_check = Some(HealthCheck {
        timeout_secs: 2,
        ..HealthCheck::exec(vec!["test".into(), "-f".into(), "/tmp/ready".into()])
    });
    let started = Instant::now();
    let (r, e) = h.rollout(&exec).await;
    r.expect("exec check passes once /tmp/ready exists");
    assert!(started.elapsed() >= Duration::from_secs(1), "{e:?}");
    assert_eq!(h.get().await, "exec");
    assert_eq!(e.switched, 1);

    // Exec that never passes: its exit code in the error.
    let mut never = h.plan(4, httpd_quick("true", "never"));
    never.container.health_check = Some(HealthCheck::exec(vec![
        "test".into(),
        "-f".into(),
        "/tmp/never".into(),
    ]));
    never.health_timeout_secs = 2;
    let (r, e) = h.rollout(&never).await;
    let err = r.expect_err("never ready");
    assert_eq!(err.code, AgentErrorCode::Unhealthy, "{err:?}");
    assert!(
        err.message.contains("health check test exited with code 1"),
        "{err:?}"
    );
    assert_eq!(e.switched, 0);
    assert_eq!(h.get().await, "exec");

    // Start period: ready after 3 s, the plan waits 2 s, the start period is
    // 4 s: failures in it do not end the wait.
    let mut slow = h.plan(5, httpd_quick("(sleep 3; touch /tmp/ready) &", "slow"));
    slow.container.health_check = Some(HealthCheck {
        timeout_secs: 1,
        start_period_secs: 4,
        ..HealthCheck::exec(vec!["test".into(), "-f".into(), "/tmp/ready".into()])
    });
    slow.health_timeout_secs = 2;
    let (r, _) = h.rollout(&slow).await;
    r.expect("ready within the start period");
    assert_eq!(h.get().await, "slow");
}

/// `Switched` once per switch: on a full rollout and on a switch, not on a
/// prepare or a failed rollout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switched_is_sent_once_per_switch() {
    let h = harness().await;
    let p1 = h.plan(1, httpd_quick("true", "v1"));
    let (r, e) = h.rollout(&p1).await;
    r.expect("v1");
    assert_eq!(e.switched, 1, "{e:?}");
    // Sent right after the routes were switched, before the old ones drain.
    let after = e.switched_after.unwrap();
    assert!(
        e.steps[after - 1].starts_with("traffic switched to the new containers"),
        "{e:?}"
    );

    let mut p2 = h.plan(2, httpd_quick("true", "v2"));
    p2.phase = RolloutPhase::Prepare;
    let (r, e) = h.rollout(&p2).await;
    assert!(matches!(r, Ok(AgentResponse::Prepared { .. })), "{r:?}");
    assert_eq!(e.switched, 0, "{e:?}");
    assert_eq!(h.get().await, "v1");
    p2.phase = RolloutPhase::Switch;
    let (r, e) = h.rollout(&p2).await;
    assert!(matches!(r, Ok(AgentResponse::RolledOut { .. })), "{r:?}");
    assert_eq!(e.switched, 1, "{e:?}");
    assert_eq!(h.get().await, "v2");

    let crash = h.plan(3, vec!["sh".into(), "-c".into(), "exit 3".into()]);
    let (r, e) = h.rollout(&crash).await;
    r.expect_err("crash");
    assert_eq!(e.switched, 0, "{e:?}");

    // Without published ports: switched once the new containers serve.
    let mut quiet = h.plan(4, httpd_quick("true", "v4"));
    quiet.container.ports[0].published = None;
    let (r, e) = h.rollout(&quiet).await;
    r.expect("v4");
    assert_eq!(e.switched, 1, "{e:?}");
}

/// Ten quick rollouts through the request path (answer, then retire outside
/// the service's lock): the old containers stop in parallel, each within
/// its stop grace period (busybox httpd as PID 1 ignores SIGTERM: 10 s), so
/// at most two old ones still run 15 s after the last rollout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_quick_rollouts_retire_the_old_containers_in_parallel() {
    let h = harness().await;
    let locks = ServiceLocks::default();
    let retiring = Arc::new(AtomicUsize::new(0));
    let mut last = None;
    for release in 1..=10 {
        let plan = h.plan(release, httpd("true", &format!("v{release}")));
        let request = AgentRequest::Rollout(plan.clone());
        let (engine, locks) = (h.engine.clone(), locks.clone());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let retiring = retiring.clone();
        retiring.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            execute(
                &engine,
                &locks,
                &request,
                Progress::discard(),
                &CancellationToken::new(),
                move |r| {
                    let _ = tx.send(r);
                },
            )
            .await;
            // The retire is done once `execute` returns.
            retiring.fetch_sub(1, Ordering::SeqCst);
        });
        let answer = rx.await.unwrap();
        assert!(
            matches!(answer, Ok(AgentResponse::RolledOut { .. })),
            "{answer:?}"
        );
        last = Some(plan.deployment_id.to_string());
    }
    let after_last = Instant::now();
    let last = last.unwrap();
    assert_eq!(h.get().await, "v10");
    let old_running = |m: HashMap<String, String>| m.values().filter(|d| **d != last).count();
    eprintln!(
        "old containers running right after the last rollout: {}",
        old_running(h.running().await)
    );
    let left = eventually(
        Duration::from_secs(15),
        "at most 2 old containers running",
        || async {
            let n = old_running(h.running().await);
            (n <= 2).then_some(n)
        },
    )
    .await;
    eprintln!(
        "{left} old container(s) running {:.1} s after the last rollout",
        after_last.elapsed().as_secs_f64()
    );
    // And all retires end within one grace period (10 s) and a margin.
    eventually(Duration::from_secs(20), "every retire done", || async {
        (retiring.load(Ordering::SeqCst) == 0).then_some(())
    })
    .await;
    assert_eq!(old_running(h.running().await), 0);
    assert_eq!(h.get().await, "v10");
    // keep_previous = 2: the two releases before the last are kept, stopped.
    let all = h
        .engine
        .docker
        .list_managed(h.engine.host_id, Some(h.service.service_id))
        .await
        .unwrap();
    let mut releases: Vec<i64> = all.iter().map(|c| c.release_number).collect();
    releases.sort();
    assert_eq!(releases, vec![8, 9, 10]);
}
