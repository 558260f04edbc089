//! What a container of a stack is on the Docker host, against the real
//! Docker Engine: environment networks (service names resolve inside an
//! environment, not across), container options (config files, tmpfs, init,
//! extra hosts, entrypoint, stop timeout, TCP ports) and one-off runs
//! (output, exit codes, timeout, cancel, leftovers). Needs
//! `SLIPWAY_TEST_DOCKER_HOST` or `DOCKER_HOST` and the image
//! `slipway-test/web:v1` (busybox): without them the tests fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers
mod support;

use slipway_agent::docker::Docker;
use slipway_agent::rollout::{Engine, Progress};
use slipway_agent::spec;
use slipway_types::agent::{
    AgentErrorCode, AgentEvent, AgentResponse, ContainerPort, ContainerSpec, ReconcilePlan,
    RolloutPlan, RunOncePlan, RunPurpose, ServiceKey,
};
use slipway_types::api::{ConfigFile, ExtraHost, PortMode, Protocol, RolloutStrategy, Tmpfs};
use slipway_types::{ImageRef, Port};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const IMAGE: &str = "slipway-test/web:v1";

struct Harness {
    engine: Engine,
    host: String,
    _files: tempfile::TempDir,
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

async fn harness() -> Harness {
    let (host, docker) = support::docker().await;
    let files = tempfile::tempdir().unwrap();
    let tag = Uuid::new_v4().simple().to_string();
    let engine = Engine {
        docker: docker.with_files_dir(files.path().join("files")),
        proxy: None,
        host_id: Uuid::new_v4(),
        prefix: format!("t-{}-", &tag[..8]),
        proxy_bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        proxy_guard: None,
    };
    Harness {
        engine,
        host,
        _files: files,
    }
}

/// The raw engine, to look at what the agent created.
async fn bollard(host: &str) -> bollard::Docker {
    let d = match host.strip_prefix("unix://") {
        Some(path) => {
            bollard::Docker::connect_with_socket(path, 60, bollard::API_DEFAULT_VERSION).unwrap()
        }
        None => bollard::Docker::connect_with_http(
            &host.replacen("tcp://", "http://", 1),
            60,
            bollard::API_DEFAULT_VERSION,
        )
        .unwrap(),
    };
    d.negotiate_version().await.unwrap()
}

fn port(p: u16) -> Port {
    Port::try_from(i64::from(p)).unwrap()
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn service(environment: &str, environment_id: Uuid, name: &str) -> ServiceKey {
    ServiceKey {
        project: "shop".into(),
        environment: environment.into(),
        service: name.into(),
        service_id: Uuid::new_v4(),
        environment_id,
    }
}

fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

/// busybox httpd answering `body` on 8080.
fn httpd(body: &str) -> Vec<String> {
    sh(&format!(
        "mkdir -p /www && echo {body} > /www/index.html && exec httpd -f -p 8080 -h /www"
    ))
}

fn container(command: Vec<String>) -> ContainerSpec {
    ContainerSpec {
        command: Some(command),
        ..ContainerSpec::of_image(ImageRef::try_from(IMAGE).unwrap())
    }
}

fn rollout_plan(service: &ServiceKey, container: ContainerSpec) -> RolloutPlan {
    RolloutPlan {
        deployment_id: Uuid::new_v4(),
        release_id: Uuid::new_v4(),
        release_number: 1,
        service: service.clone(),
        container,
        replicas: 1,
        keep_previous: 1,
        health_timeout_secs: 30,
        drain_timeout_secs: 1,
        registry_auth: None,
        phase: Default::default(),
        strategy: RolloutStrategy::StartFirst,
    }
}

fn run_plan(service: &ServiceKey, container: ContainerSpec, timeout_secs: u32) -> RunOncePlan {
    RunOncePlan {
        deployment_id: Uuid::new_v4(),
        release_number: 1,
        service: service.clone(),
        purpose: RunPurpose::ReleaseCommand,
        container,
        command: None,
        timeout_secs,
        registry_auth: None,
    }
}

/// What a one-off run answered, and the output lines it streamed.
struct Ran {
    result: Result<AgentResponse, slipway_types::agent::AgentError>,
    lines: Vec<String>,
}

impl Ran {
    fn completed(&self) -> (i64, &[String]) {
        match &self.result {
            Ok(AgentResponse::Completed {
                exit_code, tail, ..
            }) => (*exit_code, tail),
            other => panic!("expected Completed, got {other:?}; output {:?}", self.lines),
        }
    }
}

impl Harness {
    async fn run(&self, plan: &RunOncePlan, cancel: &CancellationToken) -> Ran {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let result = self.engine.run_once(plan, &Progress::new(tx), cancel).await;
        let mut lines = Vec::new();
        while let Ok(e) = rx.try_recv() {
            if let AgentEvent::Log { line, .. } = e {
                lines.push(line);
            }
        }
        Ran { result, lines }
    }

    async fn run_script(&self, service: &ServiceKey, script: &str) -> Ran {
        let plan = run_plan(service, container(sh(script)), 60);
        self.run(&plan, &CancellationToken::new()).await
    }

    async fn deploy(&self, plan: &RolloutPlan) {
        let r = self
            .engine
            .rollout(plan, &Progress::discard(), &CancellationToken::new())
            .await;
        assert!(
            matches!(r, Ok(AgentResponse::RolledOut { .. })),
            "rollout failed: {r:?}"
        );
    }

    async fn runs_left(&self) -> usize {
        self.engine
            .docker
            .list_runs(self.engine.host_id)
            .await
            .unwrap()
            .len()
    }
}

#[tokio::test]
async fn environments_resolve_their_own_services_only() {
    let h = harness().await;
    let (env_a, env_b) = (Uuid::new_v4(), Uuid::new_v4());
    let pg_a = service("prod", env_a, "postgres");
    let mut c = container(httpd("from-prod"));
    c.aliases = vec!["postgres".into(), "db".into()];
    h.deploy(&rollout_plan(&pg_a, c)).await;

    // Another service of the same environment reaches it by name and alias.
    let api_a = service("prod", env_a, "api");
    let ran = h
        .run_script(
            &api_a,
            "nslookup postgres >/dev/null && timeout 5 wget -qO- http://postgres:8080/ && timeout 5 wget -qO- http://db:8080/",
        )
        .await;
    let (code, tail) = ran.completed();
    assert_eq!(code, 0, "output: {:?}", ran.lines);
    assert_eq!(tail, ["from-prod", "from-prod"]);

    // Another environment cannot resolve it, nor reach its address.
    let networks = h
        .engine
        .docker
        .list_networks(h.engine.host_id)
        .await
        .unwrap();
    let net_a = networks
        .iter()
        .find(|n| n.environment_id == Some(env_a))
        .expect("environment A's network");
    assert_eq!(net_a.name, spec::network_name(&h.engine.prefix, &pg_a));
    let raw = bollard(&h.host).await;
    let inspected = raw.inspect_network(&net_a.id, None).await.unwrap();
    let ip_a = inspected
        .containers
        .unwrap_or_default()
        .values()
        .find_map(|c| c.ipv4_address.clone())
        .expect("postgres has an address on A's network");
    let ip_a = ip_a.split('/').next().unwrap().to_owned();
    let api_b = service("staging", env_b, "api");
    let ran = h
        .run_script(
            &api_b,
            &format!(
                "if nslookup postgres; then echo resolved; exit 0; fi; \
                 if timeout 3 wget -qO- http://{ip_a}:8080/; then echo reached; exit 0; fi; exit 7"
            ),
        )
        .await;
    let (code, _) = ran.completed();
    assert_eq!(code, 7, "staging resolved or reached prod: {:?}", ran.lines);

    // Each environment has its own labelled network; the one-offs are gone.
    let networks = h
        .engine
        .docker
        .list_networks(h.engine.host_id)
        .await
        .unwrap();
    assert_eq!(networks.len(), 2, "{networks:?}");
    assert_eq!(h.runs_left().await, 0);

    // Reconcile keeps the used network and removes the unused one of an
    // environment without desired services.
    let r = h
        .engine
        .reconcile(
            &ReconcilePlan { services: vec![] },
            &Progress::discard(),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    let AgentResponse::Reconciled { actions } = r else {
        panic!("{r:?}")
    };
    let net_b = spec::network_name(&h.engine.prefix, &api_b);
    assert!(
        actions.contains(&format!("removed network {net_b}")),
        "{actions:?}"
    );
    let left = h
        .engine
        .docker
        .list_networks(h.engine.host_id)
        .await
        .unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].environment_id, Some(env_a));
}

#[tokio::test]
async fn concurrent_creates_share_one_network() {
    let h = harness().await;
    let env = Uuid::new_v4();
    let specs: Vec<_> = (0..4)
        .map(|i| {
            let s = service("prod", env, &format!("svc{i}"));
            rollout_plan(&s, container(httpd("x")))
        })
        .collect();
    // Two agents (two processes' worth of state) on one engine.
    let (_, other) = support::docker().await;
    let mut creates = Vec::new();
    for (i, plan) in specs.iter().enumerate() {
        let spec = spec::create_specs(&h.engine.prefix, h.engine.host_id, plan, false)
            .unwrap()
            .remove(0);
        let docker = if i % 2 == 0 {
            h.engine.docker.clone()
        } else {
            other.clone()
        };
        creates.push(async move { docker.create(&spec).await });
    }
    for r in futures_util::future::join_all(creates).await {
        r.unwrap();
    }
    let networks = h
        .engine
        .docker
        .list_networks(h.engine.host_id)
        .await
        .unwrap();
    assert_eq!(networks.len(), 1, "{networks:?}");
}

#[tokio::test]
async fn container_options_reach_the_container() {
    let h = harness().await;
    let s = service("prod", Uuid::new_v4(), "web");
    let tcp = free_port();
    let mut c = container(vec![
        "mkdir -p /www && cp /etc/app/site.txt /www/index.html && exec httpd -f -p 8080 -h /www"
            .into(),
    ]);
    c.entrypoint = Some(vec!["/bin/sh".into(), "-c".into()]);
    c.files = vec![ConfigFile {
        target: "/etc/app/site.txt".into(),
        content: "configured by slipway\n".into(),
    }];
    c.tmpfs = vec![Tmpfs {
        target: "/scratch".into(),
        size_mb: Some(8),
    }];
    c.init = true;
    c.stop_grace_period_secs = Some(2);
    c.extra_hosts = vec![ExtraHost {
        host: "gateway.test".into(),
        ip: "host-gateway".into(),
    }];
    c.ports = vec![ContainerPort {
        container: port(8080),
        published: Some(port(tcp)),
        protocol: Protocol::Tcp,
        mode: PortMode::Tcp,
        host_ip: None,
    }];
    h.deploy(&rollout_plan(&s, c.clone())).await;

    // The TCP port is bound by Docker on 127.0.0.1, straight to the container.
    let body = reqwest::get(format!("http://127.0.0.1:{tcp}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "configured by slipway\n");

    let containers = h
        .engine
        .docker
        .list_managed(h.engine.host_id, Some(s.service_id))
        .await
        .unwrap();
    let raw = bollard(&h.host).await;
    let inspected = raw
        .inspect_container(&containers[0].id, None)
        .await
        .unwrap();
    let config = inspected.config.unwrap();
    assert_eq!(config.stop_timeout, Some(2));
    let host_config = inspected.host_config.unwrap();
    assert_eq!(host_config.init, Some(true));
    let tmpfs = host_config.tmpfs.unwrap();
    assert_eq!(tmpfs["/scratch"], "size=8m");
    let binds = host_config.binds.unwrap();
    assert!(
        binds.iter().any(|b| b.ends_with(":/etc/app/site.txt:ro")),
        "{binds:?}"
    );

    // Inside: the file is read-only, /scratch a tmpfs, PID 1 Docker's init,
    // the gateway name resolves. A one-off gets the same options.
    let mut inside = c.clone();
    inside.ports = vec![];
    inside.command = Some(vec![[
        "cat /etc/app/site.txt",
        "(echo changed > /etc/app/site.txt) 2>/dev/null && echo writable || echo read-only",
        "grep -q ' /scratch tmpfs' /proc/mounts && echo tmpfs",
        "cat /proc/1/comm",
        "grep -q gateway.test /etc/hosts && echo hosts",
    ]
    .join("; ")]);
    let ran = h
        .run(&run_plan(&s, inside, 30), &CancellationToken::new())
        .await;
    let (code, tail) = ran.completed();
    assert_eq!(code, 0, "{:?}", ran.lines);
    assert_eq!(
        tail,
        [
            "configured by slipway",
            "read-only",
            "tmpfs",
            "docker-init",
            "hosts"
        ]
    );

    // `docker stop` waits the service's grace period, not the engine's 10 s
    // (a shell as PID 1 ignores SIGTERM).
    let mut stubborn = container(sh("trap '' TERM; while true; do sleep 1; done"));
    stubborn.stop_grace_period_secs = Some(1);
    let s2 = service("prod", Uuid::new_v4(), "stubborn");
    h.deploy(&rollout_plan(&s2, stubborn)).await;
    let id = h
        .engine
        .docker
        .list_managed(h.engine.host_id, Some(s2.service_id))
        .await
        .unwrap()[0]
        .id
        .clone();
    let t = Instant::now();
    h.engine.docker.stop(&id).await.unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(6),
        "stop took {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn one_off_runs_report_output_exit_code_and_timeout() {
    let h = harness().await;
    let s = service("prod", Uuid::new_v4(), "api");

    let ran = h
        .run_script(&s, "echo migrating; echo warning >&2; echo done")
        .await;
    let (code, tail) = ran.completed();
    assert_eq!(code, 0);
    // Docker reads stdout and stderr apart: each in order, not interleaved.
    let mut lines = ran.lines.clone();
    lines.sort();
    assert_eq!(lines, ["done", "migrating", "warning"]);
    let stdout: Vec<&String> = ran.lines.iter().filter(|l| *l != "warning").collect();
    assert_eq!(stdout, ["migrating", "done"]);
    assert_eq!(tail, ran.lines.as_slice());
    assert_eq!(h.runs_left().await, 0);

    let ran = h
        .run_script(&s, "for i in $(seq 1 30); do echo line $i; done; exit 3")
        .await;
    let (code, tail) = ran.completed();
    assert_eq!(code, 3);
    assert_eq!(ran.lines.len(), 30);
    assert_eq!(tail.len(), 20);
    assert_eq!(tail.last().map(String::as_str), Some("line 30"));
    assert_eq!(h.runs_left().await, 0);

    let plan = run_plan(&s, container(sh("echo waiting forever; exec sleep 600")), 2);
    let t = Instant::now();
    let ran = h.run(&plan, &CancellationToken::new()).await;
    let e = ran.result.expect_err("a timeout");
    assert_eq!(e.code, AgentErrorCode::Timeout);
    assert_eq!(e.logs, ["waiting forever"]);
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    assert_eq!(h.runs_left().await, 0, "the killed one-off is removed");
}

#[tokio::test]
async fn a_cancelled_one_off_is_removed() {
    let h = harness().await;
    let s = service("prod", Uuid::new_v4(), "api");
    let cancel = CancellationToken::new();
    let plan = run_plan(&s, container(sh("echo started; exec sleep 600")), 600);
    let run = {
        let engine = h.engine.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move { engine.run_once(&plan, &Progress::discard(), &cancel).await })
    };
    support::eventually(Duration::from_secs(30), "the one-off runs", || async {
        let runs = h.engine.docker.list_runs(h.engine.host_id).await.unwrap();
        let r = runs.first()?;
        h.engine
            .docker
            .inspect(&r.id)
            .await
            .is_ok_and(|c| c.is_running())
            .then_some(())
    })
    .await;
    cancel.cancel();
    let e = run.await.unwrap().expect_err("cancelled");
    assert_eq!(e.code, AgentErrorCode::Cancelled);
    assert_eq!(h.runs_left().await, 0);
}

#[tokio::test]
async fn reconcile_removes_one_offs_of_a_crashed_agent_only() {
    let h = harness().await;
    let s = service("prod", Uuid::new_v4(), "api");
    let plan = run_plan(&s, container(sh("exec sleep 600")), 600);
    // A one-off of an earlier agent process (another session), left running.
    let (_, earlier) = support::docker().await;
    let leftover =
        spec::run_spec(&h.engine.prefix, h.engine.host_id, earlier.session(), &plan).unwrap();
    let id = earlier.create(&leftover).await.unwrap();
    earlier.start(&id).await.unwrap();
    // And one of this process, still running.
    let mut mine_plan = plan.clone();
    mine_plan.deployment_id = Uuid::new_v4();
    let mine = spec::run_spec(
        &h.engine.prefix,
        h.engine.host_id,
        h.engine.docker.session(),
        &mine_plan,
    )
    .unwrap();
    let mine_id = h.engine.docker.create(&mine).await.unwrap();
    // One-offs are no replicas of the service.
    assert!(h
        .engine
        .docker
        .list_managed(h.engine.host_id, Some(s.service_id))
        .await
        .unwrap()
        .is_empty());

    let r = h
        .engine
        .reconcile(
            &ReconcilePlan { services: vec![] },
            &Progress::discard(),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    let AgentResponse::Reconciled { actions } = r else {
        panic!("{r:?}")
    };
    assert!(
        actions.contains(&format!(
            "removed leftover one-off container {}",
            leftover.name
        )),
        "{actions:?}"
    );
    let left = h.engine.docker.list_runs(h.engine.host_id).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, mine_id);
    // Its network is in use by this process's one-off: kept.
    assert_eq!(
        h.engine
            .docker
            .list_networks(h.engine.host_id)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn unused_config_files_are_pruned_by_reconcile() {
    let h = harness().await;
    let s = service("prod", Uuid::new_v4(), "web");
    let mut c = container(httpd("x"));
    c.stop_grace_period_secs = Some(1);
    c.files = vec![ConfigFile {
        target: "/etc/a.conf".into(),
        content: "a\n".into(),
    }];
    let first = rollout_plan(&s, c.clone());
    h.deploy(&first).await;
    let dir = h.engine.docker.files_dir().unwrap().to_path_buf();
    let digest_a = spec::mounted_file("/etc/a.conf", "a\n").digest;
    assert!(dir.join(&digest_a).exists());
    c.files[0].content = "b\n".into();
    let mut second = rollout_plan(&s, c);
    second.release_number = 2;
    second.keep_previous = 0;
    h.deploy(&second).await;
    let digest_b = spec::mounted_file("/etc/a.conf", "b\n").digest;

    let r = h
        .engine
        .reconcile(
            &ReconcilePlan {
                services: vec![slipway_types::agent::DesiredService {
                    service: s.clone(),
                    serving: Some(second.deployment_id),
                    keep: vec![],
                    drain_timeout_secs: 1,
                }],
            },
            &Progress::discard(),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    let AgentResponse::Reconciled { actions } = r else {
        panic!("{r:?}")
    };
    assert!(
        actions.contains(&"removed 1 unused config file(s)".to_string()),
        "{actions:?}"
    );
    assert!(!dir.join(&digest_a).exists());
    assert!(dir.join(&digest_b).exists());
}
