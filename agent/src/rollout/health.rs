//! Waiting for started containers to become healthy: the service's own check
//! (HTTP GET or TCP connect on the container port's loopback host port, or a
//! command run in the container), else the image's HEALTHCHECK, else "still
//! running after a second". What one look at a container means is [`look`],
//! a plain function; [`budget`] is how long the wait lasts.
use super::{cancelled, docker_err, err, Engine, Progress, LOG_LINES_ON_FAILURE};
use crate::docker::ManagedContainer;
use crate::spec::{PortKey, ProbeLabel};
use slipway_types::agent::{AgentError, AgentErrorCode, ContainerHealth, ContainerState};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Health wait when a plan does not say (Revert, Reconcile).
pub(super) const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a container without any health check must stay running.
const RUNNING_GRACE: Duration = Duration::from_secs(1);
/// HTTP and TCP probes of a starting container: often, so a deploy is as
/// quick as the container (one probe is a loopback connect and an inspect).
const POLL: Duration = Duration::from_millis(25);
/// Exec probes: each one is a process in the container.
const POLL_EXEC: Duration = Duration::from_millis(250);
/// A TCP probe's connection must stay open this long. Docker's userland proxy
/// accepts on the host port even when nothing listens in the container and
/// then closes at once (in about a millisecond).
const TCP_SETTLE: Duration = Duration::from_millis(100);
/// The wait lasts at least this long past a check's start period.
const AFTER_START_PERIOD: Duration = Duration::from_secs(5);

/// How a running container is asked whether it is healthy.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Check {
    /// GET `http://127.0.0.1:{host_port}{path}`: any 2xx or 3xx.
    Http { host_port: u16, path: String },
    /// A TCP connection to `127.0.0.1:{host_port}` that the container keeps open.
    Tcp { port: u16, host_port: u16 },
    /// `command` run in the container exits 0 within `timeout`.
    Exec {
        command: Vec<String>,
        timeout: Duration,
    },
}

impl Check {
    /// Time between two probes.
    pub(super) fn every(&self) -> Duration {
        match self {
            Check::Http { .. } | Check::Tcp { .. } => POLL,
            Check::Exec { .. } => POLL_EXEC,
        }
    }
}

/// What one inspect of a starting container says.
#[derive(Debug, PartialEq)]
pub(super) enum Look {
    Healthy,
    /// Ask the container.
    Probe(Check),
    /// Not yet; the reason, if this look tells one.
    Wait(Option<&'static str>),
    /// It will not become healthy; `logs`: send its last log lines with the error.
    Fail {
        error: AgentError,
        logs: bool,
    },
}

/// How long to wait for a container: the plan's `timeout`, but past the
/// check's start period (failures during it never end the wait) by
/// [`AFTER_START_PERIOD`] at least.
pub(super) fn budget(timeout: Duration, start_period: Duration) -> Duration {
    if start_period.is_zero() {
        return timeout;
    }
    timeout.max(start_period + AFTER_START_PERIOD)
}

fn unpublished(port: u16) -> Look {
    Look::Fail {
        error: err(
            AgentErrorCode::Docker,
            format!("health check port {port} is not published"),
        ),
        logs: false,
    }
}

/// `running_for`: since when the container has been seen running (`None`:
/// not running now).
pub(super) fn look(c: &ManagedContainer, running_for: Option<Duration>) -> Look {
    let crashed = matches!(
        c.state,
        ContainerState::Exited | ContainerState::Dead | ContainerState::Restarting
    ) || c.restart_count > 0;
    if crashed {
        let message = match c.exit_code {
            Some(code) if c.state != ContainerState::Running => {
                format!(
                    "container {} exited with code {code} while starting",
                    c.name
                )
            }
            _ => format!("container {} exited while starting", c.name),
        };
        return Look::Fail {
            error: err(AgentErrorCode::Crashed, message),
            logs: true,
        };
    }
    let Some(running_for) = running_for.filter(|_| c.is_running()) else {
        return Look::Wait(None);
    };
    let host_port = |port: u16| c.host_ports.get(&PortKey::tcp(port)).copied();
    if let Some((port, path)) = &c.agent.health {
        return match host_port(*port) {
            Some(host_port) => Look::Probe(Check::Http {
                host_port,
                path: path.clone(),
            }),
            None => unpublished(*port),
        };
    }
    match &c.agent.probe {
        Some(ProbeLabel::Tcp { port }) => {
            return match host_port(*port) {
                Some(host_port) => Look::Probe(Check::Tcp {
                    port: *port,
                    host_port,
                }),
                None => unpublished(*port),
            };
        }
        Some(ProbeLabel::Exec {
            command,
            timeout_secs,
        }) => {
            return Look::Probe(Check::Exec {
                command: command.clone(),
                timeout: Duration::from_secs(u64::from((*timeout_secs).max(1))),
            });
        }
        None => {}
    }
    match c.health {
        ContainerHealth::Healthy => Look::Healthy,
        ContainerHealth::Unhealthy => Look::Fail {
            error: err(
                AgentErrorCode::Unhealthy,
                format!("container {} reports unhealthy (image HEALTHCHECK)", c.name),
            ),
            logs: true,
        },
        ContainerHealth::Starting => Look::Wait(Some("image HEALTHCHECK still starting")),
        ContainerHealth::None if running_for >= RUNNING_GRACE => Look::Healthy,
        ContainerHealth::None => Look::Wait(Some("not running for 1 s yet")),
    }
}

/// A health answer: any 2xx or 3xx (redirects are not followed).
pub(super) fn answer_ok(status: reqwest::StatusCode) -> bool {
    status.is_success() || status.is_redirection()
}

/// A client for health probes: no redirects, one second per probe.
pub(super) fn probe_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(1))
        .build()
}

/// One probe of Slipway's HTTP check; `Err` says what was wrong.
pub(super) async fn probe(
    http: &reqwest::Client,
    host_port: u16,
    path: &str,
) -> Result<(), String> {
    let url = format!("http://127.0.0.1:{host_port}{path}");
    match http.get(&url).send().await {
        Ok(r) if answer_ok(r.status()) => Ok(()),
        Ok(r) => Err(format!("GET {path} answered {}", r.status())),
        Err(e) => Err(format!("GET {path} failed: {}", e.without_url())),
    }
}

/// What the first moment of a TCP connection says: still open and silent,
/// or some bytes already (a banner) = accepted; closed at once = nothing
/// listens behind Docker's proxy.
pub(super) fn tcp_settled(read: Option<std::io::Result<usize>>) -> Result<(), &'static str> {
    match read {
        None | Some(Ok(1..)) => Ok(()),
        Some(Ok(0)) => Err("closed at once"),
        Some(Err(_)) => Err("reset at once"),
    }
}

/// One probe of a TCP check of container port `port`.
pub(super) async fn probe_tcp(port: u16, host_port: u16) -> Result<(), String> {
    use tokio::io::AsyncReadExt;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], host_port));
    let connect =
        tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr));
    let mut stream = match connect.await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(format!("TCP connect to port {port} failed: {e}")),
        Err(_) => return Err(format!("TCP connect to port {port} timed out")),
    };
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(TCP_SETTLE, stream.read(&mut byte))
        .await
        .ok();
    tcp_settled(read).map_err(|why| format!("TCP connection to port {port} {why}"))
}

/// The program of an exec check, for messages (its arguments may hold
/// credentials, e.g. `redis-cli -a …`).
fn program(command: &[String]) -> &str {
    command.first().map_or("", String::as_str)
}

impl Engine {
    /// One probe of an exec check of container `id`.
    async fn probe_exec(
        &self,
        id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<(), String> {
        let name = program(command);
        match tokio::time::timeout(timeout, self.docker.exec(id, command)).await {
            Ok(Ok(o)) if o.exit_code == 0 => Ok(()),
            Ok(Ok(o)) => Err(match o.output.last() {
                Some(line) => format!(
                    "health check {name} exited with code {}: {line}",
                    o.exit_code
                ),
                None => format!("health check {name} exited with code {}", o.exit_code),
            }),
            Ok(Err(e)) => Err(format!("health check {name} could not run: {e}")),
            Err(_) => Err(format!(
                "health check {name} did not finish within {} s",
                timeout.as_secs()
            )),
        }
    }

    /// Waits until the container is healthy. Errors carry the container's logs.
    async fn wait_healthy(&self, id: &str, timeout: Duration) -> Result<Duration, AgentError> {
        let start = Instant::now();
        let mut deadline = start + timeout;
        let http = probe_client().map_err(|e| err(AgentErrorCode::Docker, e.to_string()))?;
        let mut running_since: Option<Instant> = None;
        let mut last_problem = String::from("no answer yet");
        let mut first = true;
        loop {
            let c = self.docker.inspect(id).await.map_err(docker_err)?;
            if first {
                first = false;
                let period = Duration::from_secs(u64::from(c.agent.start_period_secs));
                deadline = start + budget(timeout, period);
            }
            let running_for = c
                .is_running()
                .then(|| running_since.get_or_insert_with(Instant::now).elapsed());
            let mut every = POLL;
            let result = match look(&c, running_for) {
                Look::Healthy => Ok(()),
                Look::Probe(check) => {
                    every = check.every();
                    match check {
                        Check::Http { host_port, path } => probe(&http, host_port, &path).await,
                        Check::Tcp { port, host_port } => probe_tcp(port, host_port).await,
                        Check::Exec { command, timeout } => {
                            self.probe_exec(id, &command, timeout).await
                        }
                    }
                }
                Look::Wait(problem) => Err(problem.unwrap_or_default().to_owned()),
                Look::Fail { mut error, logs } => {
                    if logs {
                        error.logs = self.docker.tail_logs(id, LOG_LINES_ON_FAILURE).await;
                    }
                    return Err(error);
                }
            };
            match result {
                Ok(()) => return Ok(start.elapsed()),
                Err(problem) if !problem.is_empty() => last_problem = problem,
                Err(_) => {}
            }
            if Instant::now() >= deadline {
                let mut e = err(
                    AgentErrorCode::Unhealthy,
                    format!(
                        "container {} not healthy after {} s: {last_problem}",
                        c.name,
                        deadline.duration_since(start).as_secs()
                    ),
                );
                e.logs = self.docker.tail_logs(id, LOG_LINES_ON_FAILURE).await;
                return Err(e);
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Waits for all containers (`(id, name)`); the first failure wins, with
    /// the id of the container that failed.
    pub(super) async fn wait_all_healthy(
        &self,
        containers: &[(String, String)],
        timeout: Duration,
        progress: &Progress,
        cancel: &CancellationToken,
    ) -> Result<(), (AgentError, Option<String>)> {
        let waits = containers.iter().map(|(id, name)| async move {
            match self.wait_healthy(id, timeout).await {
                Ok(took) => {
                    progress.step(format!("{name} healthy after {:.1} s", took.as_secs_f64()));
                    Ok(())
                }
                Err(e) => Err((e, Some(id.clone()))),
            }
        });
        tokio::select! {
            biased;
            _ = cancel.cancelled() => Err((cancelled(), None)),
            r = futures_util::future::try_join_all(waits) => r.map(|_| ()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::fixtures::container;

    const RUNNING: Option<Duration> = Some(Duration::ZERO);

    fn fails(l: Look) -> (AgentErrorCode, String, bool) {
        match l {
            Look::Fail { error, logs } => (error.code, error.message, logs),
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn exited_restarting_or_restarted_is_a_crash() {
        let mut c = container("web", &[], &[]);
        c.state = ContainerState::Exited;
        c.exit_code = Some(3);
        let (code, message, logs) = fails(look(&c, None));
        assert_eq!(code, AgentErrorCode::Crashed);
        assert_eq!(message, "container web exited with code 3 while starting");
        assert!(logs);
        c.state = ContainerState::Restarting;
        c.exit_code = None;
        assert_eq!(
            fails(look(&c, None)).1,
            "container web exited while starting"
        );
        // Running again, but it restarted once: a crash too.
        c.state = ContainerState::Running;
        c.exit_code = Some(1);
        c.restart_count = 1;
        assert_eq!(
            fails(look(&c, RUNNING)).1,
            "container web exited while starting"
        );
    }

    #[test]
    fn not_running_yet_waits_without_a_reason() {
        let mut c = container("web", &[], &[]);
        c.state = ContainerState::Created;
        assert_eq!(look(&c, None), Look::Wait(None));
    }

    #[test]
    fn http_check_probes_the_published_loopback_port() {
        let mut c = container("web", &[(8080, 32001)], &[]);
        c.agent.health = Some((8080, "/healthz".into()));
        assert_eq!(
            look(&c, RUNNING),
            Look::Probe(Check::Http {
                host_port: 32001,
                path: "/healthz".into()
            })
        );
        // The image's HEALTHCHECK does not matter then.
        c.health = ContainerHealth::Unhealthy;
        assert!(matches!(look(&c, RUNNING), Look::Probe(Check::Http { .. })));
        c.agent.health = Some((9090, "/healthz".into()));
        let (code, message, logs) = fails(look(&c, RUNNING));
        assert_eq!(code, AgentErrorCode::Docker);
        assert!(message.contains("9090"), "{message}");
        assert!(!logs);
    }

    #[test]
    fn tcp_check_connects_to_the_published_loopback_port() {
        let mut c = container("db", &[(5432, 32002)], &[]);
        c.agent.probe = Some(ProbeLabel::Tcp { port: 5432 });
        let l = look(&c, RUNNING);
        assert_eq!(
            l,
            Look::Probe(Check::Tcp {
                port: 5432,
                host_port: 32002
            })
        );
        let Look::Probe(check) = l else { panic!() };
        assert_eq!(check.every(), POLL);
        // Not before it runs, and not when it crashed.
        c.state = ContainerState::Created;
        assert_eq!(look(&c, None), Look::Wait(None));
        c.state = ContainerState::Exited;
        assert_eq!(fails(look(&c, None)).0, AgentErrorCode::Crashed);
        c.state = ContainerState::Running;
        c.agent.probe = Some(ProbeLabel::Tcp { port: 6379 });
        let (code, message, logs) = fails(look(&c, RUNNING));
        assert_eq!(code, AgentErrorCode::Docker);
        assert!(message.contains("6379"), "{message}");
        assert!(!logs);
        // An HTTP check wins over a probe label (never both in practice).
        c.agent.health = Some((5432, "/".into()));
        assert!(matches!(look(&c, RUNNING), Look::Probe(Check::Http { .. })));
    }

    #[test]
    fn exec_check_runs_the_command_every_250_ms() {
        let mut c = container("db", &[], &[]);
        c.agent.probe = Some(ProbeLabel::Exec {
            command: vec!["pg_isready".into(), "-U".into(), "app".into()],
            timeout_secs: 3,
        });
        let l = look(&c, RUNNING);
        assert_eq!(
            l,
            Look::Probe(Check::Exec {
                command: vec!["pg_isready".into(), "-U".into(), "app".into()],
                timeout: Duration::from_secs(3)
            })
        );
        let Look::Probe(check) = l else { panic!() };
        assert_eq!(check.every(), Duration::from_millis(250));
        // A zero timeout from an old label still gets a second.
        c.agent.probe = Some(ProbeLabel::Exec {
            command: vec!["true".into()],
            timeout_secs: 0,
        });
        assert!(matches!(
            look(&c, RUNNING),
            Look::Probe(Check::Exec { timeout, .. }) if timeout == Duration::from_secs(1)
        ));
        // The image's HEALTHCHECK does not matter then either.
        c.health = ContainerHealth::Unhealthy;
        assert!(matches!(look(&c, RUNNING), Look::Probe(Check::Exec { .. })));
        c.state = ContainerState::Restarting;
        assert_eq!(fails(look(&c, None)).0, AgentErrorCode::Crashed);
    }

    #[test]
    fn start_period_extends_the_wait() {
        let s = Duration::from_secs;
        assert_eq!(budget(s(20), s(0)), s(20));
        // Short start period: the plan's timeout covers it.
        assert_eq!(budget(s(20), s(10)), s(20));
        // Longer than the timeout: the wait lasts past it.
        assert_eq!(budget(s(20), s(60)), s(65));
    }

    #[test]
    fn a_tcp_connection_closed_at_once_is_not_a_listener() {
        assert_eq!(tcp_settled(None), Ok(()));
        assert_eq!(tcp_settled(Some(Ok(1))), Ok(()));
        assert!(tcp_settled(Some(Ok(0))).is_err());
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(tcp_settled(Some(Err(reset))).is_err());
    }

    #[tokio::test]
    async fn tcp_probe_of_a_real_listener_and_of_nothing() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        // Accepts and keeps the connection open, like a database.
        let server = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
            drop(s);
        });
        assert_eq!(probe_tcp(5432, port).await, Ok(()));
        server.abort();
        // Accepts and closes at once, like Docker's proxy with nothing behind it.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                drop(s);
            }
        });
        let e = probe_tcp(5432, port).await.unwrap_err();
        assert!(e.contains("5432") && e.contains("at once"), "{e}");
        // Nothing listens at all.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let e = probe_tcp(5432, closed).await.unwrap_err();
        assert!(e.contains("connect"), "{e}");
    }

    #[test]
    fn image_healthcheck_then_running_grace() {
        let mut c = container("web", &[], &[]);
        c.health = ContainerHealth::Starting;
        assert!(matches!(look(&c, RUNNING), Look::Wait(Some(_))));
        c.health = ContainerHealth::Healthy;
        assert_eq!(look(&c, RUNNING), Look::Healthy);
        c.health = ContainerHealth::Unhealthy;
        assert_eq!(fails(look(&c, RUNNING)).0, AgentErrorCode::Unhealthy);
        c.health = ContainerHealth::None;
        assert!(matches!(look(&c, RUNNING), Look::Wait(Some(_))));
        assert_eq!(look(&c, Some(RUNNING_GRACE)), Look::Healthy);
    }

    #[test]
    fn health_answers() {
        use reqwest::StatusCode;
        assert!(answer_ok(StatusCode::OK));
        assert!(answer_ok(StatusCode::NO_CONTENT));
        assert!(answer_ok(StatusCode::FOUND));
        assert!(!answer_ok(StatusCode::NOT_FOUND));
        assert!(!answer_ok(StatusCode::SERVICE_UNAVAILABLE));
    }
}
