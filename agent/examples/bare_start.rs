//! Baseline for the deploy benchmark (`bench/deploy`): how long the Docker Engine
//! alone needs to bring a container up and healthy, with nothing of Slipway in between.
//!
//! Each run: create a container of IMAGE with CONTAINER_PORT published on
//! 127.0.0.1 (ephemeral host port), start it, look up the host port, then poll
//! `http://127.0.0.1:HOSTPORT/PATH` every 5 ms until it answers 200. The time from
//! the create call to the first 200 is the sample. The container is removed after
//! each run (and on error). Prints one JSON object on stdout.
//!
//! With `--concurrent N` each run starts N such containers at once (the
//! physical floor of a fan-out to N agents sharing one Docker Engine): the
//! sample is the time from the first create call until the last of the N
//! answers 200.
//!
//! ```sh
//! cargo run --release -p slipway-agent --example bare_start -- \
//!     --docker-host unix:///var/run/docker.sock --image slipway-test/web:v1 --runs 10
//! ```
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::{CreateContainerOptions, RemoveContainerOptions};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(5);

#[derive(Debug, thiserror::Error)]
enum BareError {
    #[error("usage: bare_start --docker-host unix:///PATH --image IMAGE [--runs N] [--concurrent N] [--port 8080] [--path /healthz] [--timeout-secs 30] [--name-prefix bare-start-]: {0}")]
    Usage(String),
    #[error("Docker Engine: {0}")]
    Docker(#[from] bollard::errors::Error),
    #[error("container {0} has no 127.0.0.1 binding for port {1}")]
    NoHostPort(String, String),
    #[error("container {name} not healthy at {url} within {secs} s (last: {last})")]
    Timeout {
        name: String,
        url: String,
        secs: u64,
        last: String,
    },
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

#[derive(Debug)]
struct Args {
    docker_host: String,
    image: String,
    runs: usize,
    concurrent: usize,
    port: u16,
    path: String,
    timeout: Duration,
    name_prefix: String,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, BareError> {
    let mut a = Args {
        docker_host: std::env::var("DOCKER_HOST").unwrap_or_default(),
        image: String::new(),
        runs: 10,
        concurrent: 1,
        port: 8080,
        path: "/healthz".to_owned(),
        timeout: Duration::from_secs(30),
        name_prefix: "bare-start-".to_owned(),
    };
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| BareError::Usage(format!("{flag} needs a value")))?;
        let num = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| BareError::Usage(format!("{flag}: not a number: {v:?}")))
        };
        match flag.as_str() {
            "--docker-host" => a.docker_host = value,
            "--image" => a.image = value,
            "--runs" => a.runs = usize::try_from(num(&value)?).unwrap_or(usize::MAX),
            "--concurrent" => a.concurrent = usize::try_from(num(&value)?).unwrap_or(usize::MAX),
            "--port" => {
                a.port = u16::try_from(num(&value)?)
                    .map_err(|_| BareError::Usage(format!("--port out of range: {value}")))?
            }
            "--path" => a.path = value,
            "--timeout-secs" => a.timeout = Duration::from_secs(num(&value)?),
            "--name-prefix" => a.name_prefix = value,
            other => return Err(BareError::Usage(format!("unknown option {other:?}"))),
        }
    }
    if a.image.is_empty() {
        return Err(BareError::Usage("--image is required".to_owned()));
    }
    if a.runs == 0 {
        return Err(BareError::Usage("--runs must be at least 1".to_owned()));
    }
    if a.concurrent == 0 || a.concurrent > 100 {
        return Err(BareError::Usage("--concurrent must be 1..100".to_owned()));
    }
    if !a.path.starts_with('/') {
        return Err(BareError::Usage("--path must start with '/'".to_owned()));
    }
    Ok(a)
}

fn connect(host: &str) -> Result<bollard::Docker, BareError> {
    if let Some(path) = host.strip_prefix("unix://") {
        Ok(bollard::Docker::connect_with_socket(
            path,
            120,
            bollard::API_DEFAULT_VERSION,
        )?)
    } else if host.starts_with('/') {
        Ok(bollard::Docker::connect_with_socket(
            host,
            120,
            bollard::API_DEFAULT_VERSION,
        )?)
    } else if host.is_empty() {
        Err(BareError::Usage(
            "--docker-host (or DOCKER_HOST) is required".to_owned(),
        ))
    } else {
        Err(BareError::Usage(format!(
            "only unix:// Docker hosts are supported, got {host:?}"
        )))
    }
}

struct Sample {
    create_ms: f64,
    started_ms: f64,
    healthy_ms: f64,
    polls: u32,
}

async fn one_run(
    docker: &bollard::Docker,
    http: &reqwest::Client,
    a: &Args,
    name: &str,
) -> Result<Sample, BareError> {
    let key = format!("{}/tcp", a.port);
    let mut bindings = HashMap::new();
    bindings.insert(
        key.clone(),
        Some(vec![PortBinding {
            host_ip: Some("127.0.0.1".into()),
            host_port: Some(String::new()),
        }]),
    );
    let mut labels = HashMap::new();
    labels.insert("slipway.bench".to_owned(), "bare_start".to_owned());
    let body = ContainerCreateBody {
        image: Some(a.image.clone()),
        labels: Some(labels),
        exposed_ports: Some(vec![key.clone()]),
        host_config: Some(HostConfig {
            port_bindings: Some(bindings),
            ..Default::default()
        }),
        ..Default::default()
    };
    let options = CreateContainerOptions {
        name: Some(name.to_owned()),
        ..Default::default()
    };

    let t0 = Instant::now();
    let created = docker.create_container(Some(options), body).await?;
    let create_ms = ms(t0.elapsed());
    docker.start_container(&created.id, None).await?;
    let started_ms = ms(t0.elapsed());
    let inspect = docker.inspect_container(&created.id, None).await?;
    let host_port = inspect
        .network_settings
        .and_then(|n| n.ports)
        .and_then(|mut p| p.remove(&key))
        .flatten()
        .into_iter()
        .flatten()
        .filter(|b| b.host_ip.as_deref() == Some("127.0.0.1"))
        .find_map(|b| b.host_port.and_then(|p| p.parse::<u16>().ok()))
        .ok_or_else(|| BareError::NoHostPort(name.to_owned(), key.clone()))?;

    let url = format!("http://127.0.0.1:{host_port}{}", a.path);
    let mut polls = 0u32;
    let mut last;
    loop {
        polls += 1;
        match http.get(&url).send().await {
            Ok(resp) if resp.status() == reqwest::StatusCode::OK => break,
            Ok(resp) => last = format!("HTTP {}", resp.status()),
            Err(e) => last = e.to_string(),
        }
        if t0.elapsed() > a.timeout {
            return Err(BareError::Timeout {
                name: name.to_owned(),
                url,
                secs: a.timeout.as_secs(),
                last,
            });
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(Sample {
        create_ms,
        started_ms,
        healthy_ms: ms(t0.elapsed()),
        polls,
    })
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

async fn remove(docker: &bollard::Docker, name: &str) {
    let options = RemoveContainerOptions {
        force: true,
        v: true,
        link: false,
    };
    if let Err(e) = docker.remove_container(name, Some(options)).await {
        if !matches!(
            e,
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                ..
            }
        ) {
            eprintln!("bare_start: removing {name}: {e}");
        }
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => s[n / 2],
        _ => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

async fn run(a: Args) -> Result<(), BareError> {
    let docker = connect(&a.docker_host)?;
    // Connection-per-request like a health checker that does not keep sockets open,
    // and no proxy from the environment: loopback only.
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(1))
        .build()?;
    let mut samples = Vec::with_capacity(a.runs);
    let mut batches = Vec::with_capacity(a.runs);
    for i in 0..a.runs {
        let names: Vec<String> = (0..a.concurrent)
            .map(|j| format!("{}{}-{i}-{j}", a.name_prefix, std::process::id()))
            .collect();
        for name in &names {
            remove(&docker, name).await;
        }
        let t0 = Instant::now();
        let results = futures_util::future::join_all(
            names.iter().map(|name| one_run(&docker, &http, &a, name)),
        )
        .await;
        let batch_ms = ms(t0.elapsed());
        futures_util::future::join_all(names.iter().map(|name| remove(&docker, name))).await;
        let mut run = Vec::with_capacity(results.len());
        for r in results {
            run.push(r?);
        }
        let healthy: Vec<f64> = run.iter().map(|s| s.healthy_ms).collect();
        if a.concurrent == 1 {
            let s = &run[0];
            eprintln!(
                "bare_start run {}: created {:.1} ms, started {:.1} ms, healthy {:.1} ms ({} polls)",
                i + 1,
                s.create_ms,
                s.started_ms,
                s.healthy_ms,
                s.polls
            );
        } else {
            eprintln!(
                "bare_start run {}: {} at once, all healthy after {batch_ms:.1} ms (each: median {:.1} ms, first {:.1} ms)",
                i + 1,
                a.concurrent,
                median(&healthy),
                healthy.iter().copied().fold(f64::INFINITY, f64::min),
            );
        }
        batches.push(batch_ms);
        samples.extend(run);
    }
    let healthy: Vec<f64> = samples.iter().map(|s| s.healthy_ms).collect();
    let started: Vec<f64> = samples.iter().map(|s| s.started_ms).collect();
    let out = serde_json::json!({
        "image": a.image,
        "runs": a.runs,
        "concurrent": a.concurrent,
        "healthy_ms": healthy,
        "started_ms": started,
        "median_healthy_ms": median(&healthy),
        "median_started_ms": median(&started),
        // Per run: first create call → the last container's first 200.
        "all_healthy_ms": batches,
        "median_all_healthy_ms": median(&batches),
    });
    println!("{out}");
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let result = match parse_args(std::env::args().skip(1)) {
        Ok(a) => run(a).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bare_start: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Result<Args, BareError> {
        parse_args(v.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn parses_and_rejects_bad_input() {
        let a = args(&[
            "--image",
            "x:1",
            "--runs",
            "3",
            "--docker-host",
            "unix:///s",
        ]);
        assert!(matches!(a, Ok(Args { runs: 3, .. })));
        assert!(args(&["--runs", "3"]).is_err());
        assert!(args(&["--image", "x", "--runs", "0"]).is_err());
        assert!(args(&["--image", "x", "--concurrent", "0"]).is_err());
        assert!(matches!(
            args(&["--image", "x", "--concurrent", "20"]),
            Ok(Args { concurrent: 20, .. })
        ));
        assert!(args(&["--image", "x", "--runs", "many"]).is_err());
        assert!(args(&["--image", "x", "--port", "70000"]).is_err());
        assert!(args(&["--image", "x", "--path", "healthz"]).is_err());
        assert!(args(&["--image", "x", "--bogus", "1"]).is_err());
        assert!(args(&["--image"]).is_err());
    }

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
