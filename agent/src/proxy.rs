//! Keeps the host's ingress proxy running: a separate, detached process
//! (`slipway-agent proxy …`) so restarting the agent never drops traffic.
use slipway_proxy::ProxyClient;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot find the agent executable to start the proxy: {0}")]
    Exe(std::io::Error),
    #[error("cannot open the proxy log {path}: {source}")]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the proxy: {0}")]
    Spawn(std::io::Error),
    #[error("the proxy did not become healthy on {admin} within {secs} s (see {log})")]
    NotHealthy {
        admin: SocketAddr,
        secs: u64,
        log: PathBuf,
    },
}

pub struct ProxyLauncher {
    client: ProxyClient,
    admin: SocketAddr,
    data_dir: PathBuf,
    /// The program started as `{exe} proxy …`; `None` = this executable.
    exe: Option<PathBuf>,
    /// Arguments before `proxy` (e.g. `["agent"]` inside the server binary).
    subcommand_prefix: Vec<String>,
    /// Serialises concurrent start attempts.
    lock: tokio::sync::Mutex<()>,
    /// Process id of the proxy this launcher started last.
    spawned: std::sync::atomic::AtomicU32,
}

impl ProxyLauncher {
    pub fn new(admin: SocketAddr, data_dir: PathBuf) -> Self {
        Self {
            client: ProxyClient::new(admin).with_timeout(Duration::from_secs(5)),
            admin,
            data_dir,
            exe: None,
            subcommand_prefix: Vec::new(),
            lock: tokio::sync::Mutex::new(()),
            spawned: std::sync::atomic::AtomicU32::new(0),
        }
    }

    /// Starts `exe proxy …` instead of the current executable (tests, or a
    /// server binary whose proxy subcommand lives elsewhere).
    pub fn with_exe(mut self, exe: PathBuf) -> Self {
        self.exe = Some(exe);
        self
    }

    /// Starts `{exe} {prefix…} proxy …`, for binaries that embed the agent
    /// CLI as a subcommand (`slipway agent proxy …`).
    pub fn with_subcommand_prefix(mut self, prefix: Vec<String>) -> Self {
        self.subcommand_prefix = prefix;
        self
    }

    /// Process id of the proxy this launcher started, if it started one.
    pub fn spawned_pid(&self) -> Option<u32> {
        match self.spawned.load(std::sync::atomic::Ordering::SeqCst) {
            0 => None,
            pid => Some(pid),
        }
    }

    pub fn client(&self) -> ProxyClient {
        self.client.clone()
    }

    /// `GET /health`; if that fails, starts the proxy and waits for it.
    pub async fn ensure_running(&self) -> Result<(), LaunchError> {
        if self.client.health().await.is_ok() {
            return Ok(());
        }
        let _guard = self.lock.lock().await;
        if self.client.health().await.is_ok() {
            return Ok(());
        }
        let exe = match &self.exe {
            Some(e) => e.clone(),
            None => std::env::current_exe().map_err(LaunchError::Exe)?,
        };
        let log_path = self.data_dir.join("proxy.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|source| LaunchError::Log {
                path: log_path.clone(),
                source,
            })?;
        let log2 = log.try_clone().map_err(|source| LaunchError::Log {
            path: log_path.clone(),
            source,
        })?;
        tracing::info!(admin = %self.admin, "starting the ingress proxy");
        let mut cmd = std::process::Command::new(exe);
        cmd.args(&self.subcommand_prefix)
            .arg("proxy")
            .arg("--admin")
            .arg(self.admin.to_string())
            .arg("--state")
            .arg(self.data_dir.join("routes.json"))
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log2);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn().map_err(LaunchError::Spawn)?;
        self.spawned
            .store(child.id(), std::sync::atomic::Ordering::SeqCst);
        // Reap it if it ever exits while we run; it outlives the agent otherwise.
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        let secs = 10;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        while tokio::time::Instant::now() < deadline {
            if self.client.health().await.is_ok() {
                tracing::info!(admin = %self.admin, "ingress proxy is up");
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(LaunchError::NotHealthy {
            admin: self.admin,
            secs,
            log: log_path,
        })
    }
}
