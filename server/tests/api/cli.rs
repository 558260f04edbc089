use crate::{
    helpers::{item_named, spawn_app, Backend, TestApp},
    store_test,
};
use reqwest::Method;

store_test!(cli_token_create_works_against_the_api);

async fn cli_token_create_works_against_the_api(mut app: TestApp) {
    app.setup_admin().await;
    let out = app.cli(&[
        "token",
        "create",
        "--role",
        "deployer",
        "--expires",
        "30d",
        "--name",
        "ci",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(secret.starts_with("slp_"));
    let me = app
        .send(Method::GET, "/api/v1/auth/me", None, Some(&secret))
        .await
        .expect(200);
    assert_eq!(me.body["role"], "deployer");
    assert_eq!(me.body["username"], "token:ci");
    let tokens = app.get("/api/v1/tokens").await.expect(200);
    let ci = item_named(&tokens.body, "ci").clone();
    assert!(ci["expires_at"].is_string());
    assert!(ci["created_by"].as_str().unwrap().starts_with("cli:"));
    let audit = app
        .get("/api/v1/audit?action=token.create")
        .await
        .expect(200);
    assert_eq!(audit.body["total"], 1);

    // Bad input: clear message, non-zero exit, nothing created.
    let bad = app.cli(&["token", "create", "--role", "root"]);
    assert_ne!(bad.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("root"));
    let bad = app.cli(&[
        "token",
        "create",
        "--role",
        "viewer",
        "--expires",
        "forever",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid expiry"));
    let bad = app.cli(&[
        "token",
        "create",
        "--role",
        "viewer",
        "--env",
        &uuid::Uuid::new_v4().to_string(),
    ]);
    assert_eq!(bad.status.code(), Some(2));
    let tokens = app.get("/api/v1/tokens").await.expect(200);
    assert_eq!(tokens.body["total"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_version_migrate_and_config_errors() {
    let app = spawn_app(Backend::Sqlite).await;
    let v = app.cli(&["--version"]);
    assert_eq!(v.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("slipway "));
    let m = app.cli(&["migrate"]);
    assert_eq!(
        m.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&m.stderr)
    );
    // Unknown and invalid settings are named.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_slipway"))
        .arg("migrate")
        .env("SLIPWAY_DATBASE_URL", "x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SLIPWAY_DATBASE_URL"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_slipway"))
        .arg("serve")
        .env("SLIPWAY_BIND", "not-an-address")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SLIPWAY_BIND"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_first_run_admin_then_login() {
    let app = spawn_app(Backend::Sqlite).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["user", "create-admin", "--username", "ops"])
        .env("SLIPWAY_DATABASE_URL", &app.database_url)
        .env("SLIPWAY_DATA_DIR", app.data_dir.path())
        .env("SLIPWAY_ADMIN_PASSWORD", "a long enough password")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        app.get("/api/v1/setup").await.expect(200).body["needs_setup"],
        false
    );
    app.post(
        "/api/v1/auth/login",
        &serde_json::json!({"username": "ops", "password": "a long enough password"}),
    )
    .await
    .expect(200);
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["user", "create-admin", "--username", "ops2"])
        .env("SLIPWAY_DATABASE_URL", &app.database_url)
        .env("SLIPWAY_DATA_DIR", app.data_dir.path())
        .env("SLIPWAY_ADMIN_PASSWORD", "a long enough password")
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
}

#[cfg(unix)]
fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// The real `slipway serve` under umask 022 keeps its data private: the data
/// directory 0700, the database (and its -wal/-shm) and the master key 0600;
/// files left too open by an earlier version are narrowed at start.
#[cfg(unix)]
#[test]
fn data_files_are_private_under_a_normal_umask() {
    use std::io::BufRead;
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let slipway = |args: &str| {
        let mut c = std::process::Command::new("sh");
        c.arg("-c")
            .arg(format!("umask 022 && exec \"$0\" {args}"))
            .arg(env!("CARGO_BIN_EXE_slipway"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SLIPWAY_DATA_DIR", &data)
            .env("SLIPWAY_BIND", "127.0.0.1:0")
            .env("SLIPWAY_STATIC_DIR", tmp.path().join("static"));
        c
    };
    let mut server = slipway("serve")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait (bounded by the server's own start) for its "listening" line.
    let stderr = server.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("slipway listening") {
                let _ = tx.send(());
            }
        }
    });
    let started = rx.recv_timeout(std::time::Duration::from_secs(60));
    let db = data.join("slipway.db");
    let files = [
        db.clone(),
        data.join("slipway.db-wal"),
        data.join("slipway.db-shm"),
        data.join("master.key"),
    ];
    let modes: Vec<(String, u32)> = std::iter::once(data.clone())
        .chain(files.iter().cloned())
        .map(|p| (p.display().to_string(), mode(&p)))
        .collect();
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(started.is_ok(), "slipway serve did not start");
    assert_eq!(modes[0].1, 0o700, "{modes:?}");
    for (p, m) in &modes[1..] {
        assert_eq!(*m, 0o600, "{p}: {m:o}");
    }

    // Too open (as an older version or a careless copy left them): narrowed.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in &files {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let verify = slipway("audit verify").output().unwrap();
    assert_eq!(
        verify.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    assert_eq!(mode(&data), 0o700);
    for f in files.iter().filter(|f| f.exists()) {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    assert!(db.exists() && data.join("master.key").exists());
}
