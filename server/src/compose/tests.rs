//! Unit tests of the compose conversion, many on the seeds' own files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use super::*;
use slipway_types::{
    api::{
        ConfigFile, ExtraHost, HealthCheck, HealthKind, PortMapping, PortMode, Protocol,
        RolloutStrategy, SecretRef, Tmpfs, VolumeMount,
    },
    EnvVarName, Port,
};

const ANALYTICS: &str = include_str!("testdata/analytics.yml");
const RAG_MAIL: &str = include_str!("testdata/rag-mail.yml");
const HARDENED: &str = include_str!("testdata/hardened.yml");

fn files(list: &[(&str, &str)]) -> BTreeMap<String, String> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn ok(yaml: &str) -> Converted {
    ok_with(yaml, &[])
}

fn ok_with(yaml: &str, uploads: &[(&str, &str)]) -> Converted {
    convert(yaml, &files(uploads)).unwrap_or_else(|e| panic!("expected success, got: {e}"))
}

fn rejected(yaml: &str) -> (Vec<String>, Vec<String>) {
    rejected_with(yaml, &[])
}

fn rejected_with(yaml: &str, uploads: &[(&str, &str)]) -> (Vec<String>, Vec<String>) {
    match convert(yaml, &files(uploads)) {
        Err(ComposeError::Rejected {
            unsupported,
            invalid,
        }) => (unsupported, invalid),
        other => panic!("expected Rejected, got {other:?}"),
    }
}

fn svc<'a>(c: &'a Converted, name: &str) -> &'a ServiceSpec {
    &c.services
        .iter()
        .find(|s| s.name.as_str() == name)
        .unwrap_or_else(|| panic!("no service {name}"))
        .spec
}

fn one(yaml_service: &str) -> ServiceSpec {
    let c = ok(&format!("services:\n  web:\n{yaml_service}"));
    c.services[0].spec.clone()
}

fn p(container: u16, published: Option<u16>, protocol: Protocol) -> PortMapping {
    PortMapping {
        container: Port::try_from(i64::from(container)).unwrap(),
        published: published.map(|h| Port::try_from(i64::from(h)).unwrap()),
        protocol,
        mode: PortMode::Http,
        host_ip: None,
    }
}

#[test]
fn seed_analytics_stack_rejects_only_the_relative_bind_mount() {
    let (unsupported, invalid) = rejected(ANALYTICS);
    assert!(unsupported.is_empty(), "{unsupported:?}");
    assert_eq!(invalid.len(), 1, "{invalid:?}");
    assert!(
        invalid[0].starts_with(
            "services.postgres.volumes[1]: ./crates/storage/migrations is a relative host path: \
                 if it is a single file, upload its content with the import as \
                 files[\"./crates/storage/migrations\"]; a directory cannot be imported"
        ),
        "{invalid:?}"
    );
}

#[test]
fn seed_analytics_stack_imports_without_the_bind_mount() {
    let c = ok(&ANALYTICS.replace(
        "      - ./crates/storage/migrations:/docker-entrypoint-initdb.d\n",
        "",
    ));
    let names: Vec<&str> = c.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["analytics-api", "postgres", "redis"]);

    let api = svc(&c, "analytics-api");
    assert_eq!(api.image.as_str(), "analytics-api:1.0.0");
    assert_eq!(
        api.ports,
        [
            p(8080, Some(8080), Protocol::Tcp),
            p(9091, Some(9091), Protocol::Tcp)
        ]
    );
    assert_eq!(api.env.len(), 6);
    assert_eq!(api.env[&EnvVarName::try_from("API_PORT").unwrap()], "8080");
    assert_eq!(
        api.secrets,
        [SecretRef {
            env: EnvVarName::try_from("JWT_SECRET").unwrap(),
            secret: EnvVarName::try_from("JWT_SECRET").unwrap(),
        }]
    );
    assert_eq!(
        api.health_check,
        Some(HealthCheck {
            interval_secs: 30,
            timeout_secs: 10,
            retries: 3,
            ..HealthCheck::http("/health", Port::try_from(8080).unwrap())
        })
    );

    let redis = svc(&c, "redis");
    assert_eq!(
        redis.command.as_deref().unwrap(),
        [
            "redis-server",
            "--maxmemory",
            "2gb",
            "--maxmemory-policy",
            "allkeys-lru"
        ]
    );
    assert_eq!(
        redis.volumes,
        [VolumeMount {
            source: "redis-data".into(),
            target: "/data".into(),
            read_only: false
        }]
    );
    assert_eq!(
        api.depends_on
            .keys()
            .map(|k| k.as_str())
            .collect::<Vec<_>>(),
        ["postgres", "redis"]
    );
    assert!(api
        .depends_on
        .values()
        .all(|c| *c == DependsCondition::ServiceStarted));
    let pg = svc(&c, "postgres");
    assert_eq!(pg.volumes[0].source, "postgres-data");
    assert_eq!(pg.effective_strategy(), RolloutStrategy::StopFirst);
    assert_eq!(pg.secrets[0].secret.as_str(), "POSTGRES_PASSWORD");

    for expected in [
        "version (obsolete)",
        "services.analytics-api.restart (",
        "services.postgres.volumes[0] (volume postgres_data is named postgres-data",
        "services.postgres.ports[0] (published through Slipway's HTTP proxy, but 5432 looks \
             like PostgreSQL",
    ] {
        assert!(
            c.ignored.iter().any(|i| i.starts_with(expected)),
            "{expected} not in {:?}",
            c.ignored
        );
    }
}

#[test]
fn seed_rag_mail_stack_lists_every_problem_at_once() {
    let (unsupported, invalid) = rejected(RAG_MAIL);
    assert_eq!(unsupported.len(), 1, "{unsupported:?}");
    assert!(unsupported[0].starts_with("services.app.build ("));
    assert_eq!(invalid.len(), 2, "{invalid:?}");
    assert_eq!(
        invalid[0],
        "services.nginx.volumes[0]: ./nginx.conf is a file on your machine: upload its content \
         with the import as files[\"./nginx.conf\"] (it is stored with the release and mounted \
         read-only at /etc/nginx/nginx.conf)"
    );
    assert!(
        invalid[1].starts_with("services.nginx.volumes[1]: ./ssl is a relative host path"),
        "{invalid:?}"
    );
    let msg = convert(RAG_MAIL, &BTreeMap::new()).unwrap_err().to_string();
    assert!(msg.starts_with("the compose file uses keys Slipway cannot honour: services.app.build"));
    assert!(msg.contains("services.nginx.volumes[1]"), "{msg}");
}

#[test]
fn hardened_stack_maps_every_supported_key() {
    let c = ok(HARDENED);
    let api = svc(&c, "api");
    assert_eq!(api.image.as_str(), "ghcr.io/deepersensor/api:1.4.2");
    assert_eq!(
        api.command.as_deref().unwrap(),
        ["/usr/local/bin/api", "--port", "8080"]
    );
    assert_eq!(
        api.ports,
        [
            p(8080, Some(8080), Protocol::Tcp),
            p(9500, None, Protocol::Tcp)
        ]
    );
    assert_eq!(
        api.env[&EnvVarName::try_from("PRICE_LABEL").unwrap()],
        "costs $$5",
        "kept as written: Slipway's templates read $$ as a literal $"
    );
    assert_eq!(api.secrets[0].env.as_str(), "JWT_SECRET");
    assert_eq!(api.replicas, 3);
    assert_eq!(api.resources.cpus, Some(2.0));
    assert_eq!(api.resources.memory_mb, Some(4096));
    assert_eq!(api.hardening.user.as_deref(), Some("1000:1000"));
    assert!(api.hardening.read_only);
    assert!(api.hardening.no_new_privileges);
    assert_eq!(api.hardening.cap_drop[0].as_str(), "ALL");
    assert_eq!(api.hardening.cap_add[0].as_str(), "NET_BIND_SERVICE");
    assert_eq!(
        api.volumes,
        [
            VolumeMount {
                source: "api-cache".into(),
                target: "/var/cache/api".into(),
                read_only: false
            },
            VolumeMount {
                source: "/etc/ssl/certs".into(),
                target: "/etc/ssl/certs".into(),
                read_only: true
            },
        ]
    );
    let hc = api.health_check.as_ref().unwrap();
    assert_eq!(
        (
            hc.path.as_deref().unwrap_or_default(),
            hc.port.map_or(0, |p| p.get())
        ),
        ("/health", 8080)
    );
    assert_eq!(
        (
            hc.interval_secs,
            hc.timeout_secs,
            hc.retries,
            hc.start_period_secs
        ),
        (15, 5, 5, 20)
    );
    assert_eq!(
        api.depends_on.get(&ResourceName::try_from("loki").unwrap()),
        Some(&DependsCondition::ServiceStarted)
    );
    for expected in [
        "services.api.deploy.resources.reservations",
        "services.api.restart",
    ] {
        assert!(
            c.ignored.iter().any(|i| i.starts_with(expected)),
            "{expected} not in {:?}",
            c.ignored
        );
    }
    let loki = svc(&c, "loki");
    assert_eq!(loki.replicas, 1);
    // Slipway's secure default stays on when compose says nothing.
    assert!(loki.hardening.no_new_privileges);
}

#[test]
fn unsupported_keys_are_listed_together_across_services() {
    let yaml = "\
services:
  db:
    image: postgres:16
    privileged: true
    pid: host
    devices:
      - /dev/fuse:/dev/fuse
  web:
    build: .
    network_mode: host
    working_dir: /app
";
    let (unsupported, invalid) = rejected(yaml);
    assert!(invalid.is_empty(), "{invalid:?}");
    let keys: Vec<&str> = unsupported
        .iter()
        .map(|u| u.split(' ').next().unwrap())
        .collect();
    for k in [
        "services.db.privileged",
        "services.db.pid",
        "services.db.devices",
        "services.web.build",
        "services.web.network_mode",
        "services.web.working_dir",
    ] {
        assert!(keys.contains(&k), "{k} not in {keys:?}");
    }
    assert_eq!(keys.len(), 6, "{keys:?}");
    // Every refused key of this file comes with a hint.
    assert!(
        unsupported.iter().all(|u| u.contains(" (")),
        "{unsupported:?}"
    );
    let msg = convert_str(yaml).unwrap_err().to_string();
    assert!(msg.starts_with("the compose file uses keys Slipway cannot honour: services.db."));
}

#[test]
fn ports_short_and_long_syntax() {
    let s = one(
            "    image: nginx\n    ports:\n      - \"9000\"\n      - 8443:443\n      - \"127.0.0.1:5353:53/udp\"\n      - target: 80\n        published: \"8081\"\n        protocol: tcp\n        mode: host\n",
        );
    assert_eq!(
        s.ports,
        [
            p(9000, None, Protocol::Tcp),
            p(443, Some(8443), Protocol::Tcp),
            PortMapping {
                mode: PortMode::Tcp,
                host_ip: Some("127.0.0.1".parse().unwrap()),
                ..p(53, Some(5353), Protocol::Udp)
            },
            p(80, Some(8081), Protocol::Tcp),
        ]
    );
}

#[test]
fn port_ranges_and_foreign_host_ips_are_refused() {
    let (_, invalid) = rejected(
            "services:\n  web:\n    image: nginx\n    ports:\n      - \"3000-3005:3000-3005\"\n      - \"10.0.0.5:80:80\"\n      - target: 81\n        host_ip: 192.168.1.2\n",
        );
    assert_eq!(invalid.len(), 3, "{invalid:?}");
    assert!(invalid[0].starts_with("services.web.ports[0]: port range"));
    assert!(invalid[1].contains("host IP 10.0.0.5"));
    assert!(invalid[2].starts_with("services.web.ports[2].host_ip: host IP 192.168.1.2"));
}

#[test]
fn healthcheck_http_probes_are_extracted() {
    let hc = |test: &str| {
        let c = ok(&format!(
            "services:\n  web:\n    image: nginx\n    healthcheck:\n      test: {test}\n"
        ));
        (c.services[0].spec.health_check.clone(), c.ignored)
    };
    let (h, _) = hc(r#"["CMD", "curl", "-f", "http://localhost:8080/health"]"#);
    let h = h.unwrap();
    assert_eq!(
        (
            h.path.as_deref().unwrap_or_default(),
            h.port.map_or(0, |p| p.get())
        ),
        ("/health", 8080)
    );
    assert_eq!((h.interval_secs, h.timeout_secs, h.retries), (10, 3, 3));
    let (h, _) = hc(r#"["CMD", "wget", "-qO-", "http://127.0.0.1/ready?full=1"]"#);
    let h = h.unwrap();
    assert_eq!(
        (
            h.path.as_deref().unwrap_or_default(),
            h.port.map_or(0, |p| p.get())
        ),
        ("/ready?full=1", 80)
    );
    let (h, _) = hc(r#"curl --fail "http://localhost:3000/api/health" || exit 1"#);
    let h = h.unwrap();
    assert_eq!(
        (
            h.path.as_deref().unwrap_or_default(),
            h.port.map_or(0, |p| p.get())
        ),
        ("/api/health", 3000)
    );
    let (h, _) = hc(r#"["CMD-SHELL", "/usr/bin/curl -sf http://0.0.0.0:9000/ping"]"#);
    assert_eq!(h.unwrap().port.map(|p| p.get()), Some(9000));
}

#[test]
fn healthcheck_timings_are_checked_like_the_api() {
    let (_, invalid) = rejected(
            "services:\n  web:\n    image: nginx\n    healthcheck:\n      test: [\"CMD\", \"curl\", \"http://localhost/\"]\n      interval: 5s\n      timeout: 1m\n",
        );
    assert_eq!(invalid.len(), 1);
    assert!(
        invalid[0].starts_with("services.web.health_check.timeout_secs"),
        "{invalid:?}"
    );
}

#[test]
fn environment_list_and_map_are_equivalent() {
    let list = one("    image: app:1\n    environment:\n      - A=1\n      - B=x=y\n      - EMPTY=\n      - TOKEN\n");
    let map = one("    image: app:1\n    environment:\n      A: 1\n      B: x=y\n      EMPTY: \"\"\n      TOKEN:\n");
    assert_eq!(list, map);
    assert_eq!(list.env.len(), 3);
    assert_eq!(list.env[&EnvVarName::try_from("EMPTY").unwrap()], "");
    assert_eq!(list.env[&EnvVarName::try_from("B").unwrap()], "x=y");
    assert_eq!(list.secrets[0].secret.as_str(), "TOKEN");
}

#[test]
fn command_strings_are_split_like_a_shell() {
    let s = one("    image: app:1\n    command: sh -c 'echo \"hi there\" && sleep 1' --flag=\"a b\" c\\ d\n");
    assert_eq!(
        s.command.unwrap(),
        [
            "sh",
            "-c",
            "echo \"hi there\" && sleep 1",
            "--flag=a b",
            "c d"
        ]
    );
    assert_eq!(split_shell("  a   b ").unwrap(), ["a", "b"]);
    assert_eq!(split_shell("''").unwrap(), [""]);
    assert!(split_shell("echo 'oops").is_err());
    assert!(split_shell("echo \"oops").is_err());
}

#[test]
fn service_names_must_be_dns_labels_and_image_is_required() {
    let (_, invalid) =
        rejected("services:\n  My_App:\n    image: app:1\n  worker:\n    command: run\n");
    assert_eq!(invalid.len(), 2, "{invalid:?}");
    assert!(invalid[0].starts_with("services.My_App: service name \"My_App\""));
    assert_eq!(invalid[1], "services.worker: image is required");
}

#[test]
fn yaml_syntax_errors_carry_the_position() {
    let e = convert_str("services:\n  web:\n    image: [unclosed\n").unwrap_err();
    assert!(matches!(e, ComposeError::Syntax(_)));
    assert!(e.to_string().contains("line"), "{e}");
    let e = convert_str("services:\n  web:\n    image: nginx\n    bogus_key: 1\n").unwrap_err();
    assert!(matches!(e, ComposeError::Syntax(_)), "{e}");
    assert!(matches!(
        convert_str("services: {}\n"),
        Err(ComposeError::NoServices)
    ));
}

#[test]
fn memory_units_and_legacy_limits() {
    let s = one("    image: app:1\n    cpus: 0.5\n    mem_limit: 512m\n");
    assert_eq!(s.resources.cpus, Some(0.5));
    assert_eq!(s.resources.memory_mb, Some(512));
    let s = one("    image: app:1\n    deploy:\n      resources:\n        limits:\n          memory: 10000k\n");
    assert_eq!(s.resources.memory_mb, Some(10));
}

#[test]
fn security_opt_other_than_no_new_privileges_is_refused() {
    let s = one("    image: app:1\n    security_opt: [\"no-new-privileges=false\"]\n");
    assert!(!s.hardening.no_new_privileges);
    let (unsupported, _) = rejected(
        "services:\n  web:\n    image: app:1\n    security_opt: [\"seccomp=unconfined\"]\n",
    );
    assert_eq!(
            unsupported,
            ["services.web.security_opt[0] (seccomp=unconfined: only no-new-privileges is supported)"]
        );
}

#[test]
fn deploy_global_mode_and_placement_are_refused() {
    let (unsupported, _) = rejected(
            "services:\n  web:\n    image: app:1\n    deploy:\n      mode: global\n      placement:\n        constraints: [\"node.role==manager\"]\n",
        );
    assert_eq!(
        unsupported,
        [
            "services.web.deploy.mode (global)",
            "services.web.deploy.placement"
        ]
    );
}

fn convert_str(yaml: &str) -> Result<Converted, ComposeError> {
    convert(yaml, &BTreeMap::new())
}

const STACK: &str = include_str!("testdata/stack.yml");
const DEITA: &str = include_str!("testdata/deita.yml");
const JANUA_DEV: &str = include_str!("testdata/janua-dev.yml");

const NGINX_CONF: &str = "events {}\nhttp { server { listen 80; location /api/ { proxy_pass http://backend:8000; } } }\n";
const PROMETHEUS_YML: &str =
    "scrape_configs:\n  - job_name: api\n    static_configs:\n      - targets: ['api:8000']\n";
const DOT_ENV: &str = "# api settings\nRUST_LOG=info\nAPI_PORT=8080\nJWT_SECRET=overridden\n";

fn name(s: &str) -> ResourceName {
    ResourceName::try_from(s).unwrap()
}

fn env(spec: &ServiceSpec, key: &str) -> String {
    spec.env[&EnvVarName::try_from(key).unwrap()].clone()
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

fn has_note(c: &Converted, prefix: &str) {
    assert!(
        c.ignored.iter().any(|i| i.starts_with(prefix)),
        "{prefix} not in {:?}",
        c.ignored
    );
}

#[test]
fn seed_api_postgres_redis_stack_imports_with_its_env_file() {
    let (_, invalid) = rejected(STACK);
    assert_eq!(
        invalid,
        ["services.api.env_file[0]: .env is a file on your machine: upload its content with the \
          import as files[\".env\"] (its KEY=VALUE lines become the service's variables)"]
    );
    let c = ok_with(STACK, &[(".env", DOT_ENV)]);
    let names: Vec<&str> = c.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["api", "migrate", "postgres", "redis"]);

    let api = svc(&c, "api");
    assert_eq!(
        env(api, "DATABASE_URL"),
        "postgresql://app:${DB_PASSWORD}@postgres:5432/app"
    );
    assert_eq!(env(api, "RUST_LOG"), "info");
    assert_eq!(env(api, "API_PORT"), "8080");
    // environment wins over the env file.
    assert!(!api
        .env
        .contains_key(&EnvVarName::try_from("JWT_SECRET").unwrap()));
    assert_eq!(api.secrets[0].secret.as_str(), "JWT_SECRET");
    assert_eq!(
        api.depends_on,
        BTreeMap::from([
            (
                name("migrate"),
                DependsCondition::ServiceCompletedSuccessfully
            ),
            (name("postgres"), DependsCondition::ServiceHealthy),
            (name("redis"), DependsCondition::ServiceStarted),
        ])
    );
    let hc = api.health_check.as_ref().unwrap();
    assert_eq!(hc.kind, HealthKind::Http);
    assert_eq!(hc.start_period_secs, 20);
    assert_eq!(
        api.tmpfs,
        [Tmpfs {
            target: "/tmp".into(),
            size_mb: Some(64)
        }]
    );
    assert_eq!(api.stop_grace_period_secs, Some(30));
    assert!(api.init);
    assert_eq!(
        api.extra_hosts,
        [ExtraHost {
            host: "host.docker.internal".into(),
            ip: "host-gateway".into()
        }]
    );
    assert_eq!(api.strategy, Some(RolloutStrategy::StartFirst));
    assert_eq!(api.replicas, 2);
    assert_eq!(
        api.release_command.as_ref().unwrap().command,
        argv(&["sqlx", "migrate", "run", "--source", "/app/migrations"])
    );
    assert_eq!(api.aliases, [name("backend")]);

    let migrate = svc(&c, "migrate");
    assert_eq!(migrate.kind, ServiceKind::Job);
    assert_eq!(migrate.entrypoint.as_deref().unwrap(), ["/app/api"]);
    assert_eq!(
        migrate.depends_on[&name("postgres")],
        DependsCondition::ServiceHealthy
    );

    let pg = svc(&c, "postgres");
    assert_eq!(
        pg.ports,
        [PortMapping {
            mode: PortMode::Tcp,
            host_ip: Some("127.0.0.1".parse().unwrap()),
            ..p(5432, Some(5432), Protocol::Tcp)
        }]
    );
    assert_eq!(
        pg.health_check
            .as_ref()
            .unwrap()
            .command
            .as_deref()
            .unwrap(),
        argv(&["/bin/sh", "-c", "pg_isready -U ${POSTGRES_USER} -d app"])
    );
    assert_eq!(pg.strategy, Some(RolloutStrategy::StopFirst));
    assert_eq!(pg.stop_grace_period_secs, Some(60));
    assert_eq!(pg.secrets[0].secret.as_str(), "DB_PASSWORD");

    let redis = svc(&c, "redis");
    let hc = redis.health_check.as_ref().unwrap();
    assert_eq!(hc.kind, HealthKind::Exec);
    assert_eq!(hc.command.as_deref().unwrap(), ["redis-cli", "ping"]);

    for note in [
        "services.api.logging (",
        "services.api.networks (the services of an environment share one network: default merged",
        "services.api.env_file[0] (.env read: its values are stored",
        "services.api.tmpfs[0] (tmpfs option mode=1777 is not applied)",
        "services.api.deploy.update_config.parallelism (",
        "services.migrate.restart (a job runs once per deployment)",
        "networks.default (",
        "x-logging (extension)",
    ] {
        has_note(&c, note);
    }
}

#[test]
fn seed_deita_stack_imports_with_nginx_conf_uploaded() {
    let (_, invalid) = rejected(DEITA);
    assert_eq!(invalid.len(), 1, "{invalid:?}");
    assert!(
        invalid[0].contains("files[\"./nginx.conf\"]"),
        "{invalid:?}"
    );
    // Uploaded as written, or without the `./`: the same file.
    for key in ["./nginx.conf", "nginx.conf"] {
        let c = ok_with(DEITA, &[(key, NGINX_CONF)]);
        let front = svc(&c, "frontend");
        assert_eq!(
            front.files,
            [ConfigFile {
                target: "/etc/nginx/conf.d/default.conf".into(),
                content: NGINX_CONF.into()
            }]
        );
        assert!(front.volumes.is_empty());
        assert_eq!(
            front.health_check,
            Some(HealthCheck {
                interval_secs: 30,
                ..HealthCheck::http("/", Port::try_from(80).unwrap())
            })
        );
        let backend = svc(&c, "backend");
        assert_eq!(
            backend.release_command.as_ref().unwrap().command,
            argv(&["uv", "run", "alembic", "upgrade", "head"])
        );
        assert_eq!(backend.effective_strategy(), RolloutStrategy::StopFirst);
        assert_eq!(
            env(backend, "DATABASE_URL"),
            "postgresql+asyncpg://deita:${POSTGRES_PASSWORD}@postgres:5432/deita"
        );
        assert_eq!(
            svc(&c, "postgres").health_check.as_ref().unwrap().command,
            Some(argv(&["/bin/sh", "-c", "pg_isready -U deita"]))
        );
    }
}

#[test]
fn seed_rag_mail_stack_imports_once_nginx_conf_is_uploaded_and_built_elsewhere() {
    let uploads = [("./nginx.conf", NGINX_CONF)];
    let (unsupported, invalid) = rejected_with(RAG_MAIL, &uploads);
    assert_eq!(unsupported.len(), 1, "{unsupported:?}");
    assert_eq!(invalid.len(), 1, "{invalid:?}");
    assert!(invalid[0].starts_with("services.nginx.volumes[1]: ./ssl is a relative host path"));
    let yaml = RAG_MAIL
        .replace("    build: .\n", "    image: ghcr.io/acme/rag-mail:1.0.0\n")
        .replace("      - ./ssl:/etc/nginx/ssl:ro\n", "");
    let c = ok_with(&yaml, &uploads);
    let app = svc(&c, "app");
    assert_eq!(
        env(&app.clone(), "DATABASE_URL"),
        "postgresql+psycopg2://rag_user:${DB_PASSWORD}@db:5432/rag_mail"
    );
    assert_eq!(app.secrets.len(), 4);
    let nginx = svc(&c, "nginx");
    assert_eq!(nginx.files[0].target, "/etc/nginx/nginx.conf");
    assert_eq!(nginx.depends_on.keys().next().unwrap().as_str(), "app");
}

#[test]
fn seed_prometheus_stack_imports_once_prometheus_yml_is_uploaded() {
    let uploads = [("./monitoring/prometheus.yml", PROMETHEUS_YML)];
    let (unsupported, invalid) = rejected_with(JANUA_DEV, &uploads);
    assert_eq!(unsupported.len(), 1, "{unsupported:?}");
    assert!(unsupported[0].starts_with("services.api.build ("));
    assert_eq!(invalid.len(), 1, "{invalid:?}");
    assert!(
        invalid[0].starts_with("services.api.volumes[0]: . is a directory on your machine"),
        "{invalid:?}"
    );
    let yaml = JANUA_DEV
        .replace("    build: .\n", "    image: janua/api:latest\n")
        .replace("      - .:/app\n", "");
    let c = ok_with(&yaml, &uploads);
    let prom = svc(&c, "prometheus");
    assert_eq!(
        prom.files,
        [ConfigFile {
            target: "/etc/prometheus/prometheus.yml".into(),
            content: PROMETHEUS_YML.into()
        }]
    );
    has_note(
        &c,
        "services.prometheus.volumes[0] (config files are mounted read-only)",
    );
}

#[test]
fn missing_files_are_listed_all_at_once_and_unused_uploads_noted() {
    let yaml = "services:\n  web:\n    image: nginx\n    env_file: [./web.env]\n    volumes:\n      - ./nginx.conf:/etc/nginx/nginx.conf:ro\n      - ./html:/usr/share/nginx/html\n  prom:\n    image: prom/prometheus\n    env_file:\n      - path: ./optional.env\n        required: false\n    volumes:\n      - ./monitoring/prometheus.yml:/etc/prometheus/prometheus.yml\n";
    let (_, invalid) = rejected(yaml);
    let paths: Vec<&str> = invalid
        .iter()
        .map(|i| i.split(": ").next().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "services.web.env_file[0]",
            "services.web.volumes[0]",
            "services.web.volumes[1]",
            "services.prom.volumes[0]",
        ],
        "{invalid:?}"
    );
    for expected in [
        "files[\"./web.env\"]",
        "files[\"./nginx.conf\"]",
        "files[\"./monitoring/prometheus.yml\"]",
    ] {
        assert!(invalid.iter().any(|i| i.contains(expected)), "{expected}");
    }
    let c = ok_with(
        &yaml.replace("      - ./html:/usr/share/nginx/html\n", ""),
        &[
            ("./web.env", "A=1\n"),
            ("./nginx.conf", NGINX_CONF),
            ("monitoring/prometheus.yml", PROMETHEUS_YML),
            ("./unused.txt", "x"),
        ],
    );
    has_note(
        &c,
        "services.prom.env_file[0] (./optional.env was not uploaded",
    );
    has_note(&c, "files[\"./unused.txt\"] (not used by the compose file");
    assert_eq!(env(svc(&c, "web"), "A"), "1");
}

#[test]
fn env_file_values_are_merged_under_environment() {
    let yaml = "services:\n  web:\n    image: app:1\n    env_file:\n      - base.env\n      - prod.env\n    environment:\n      MODE: from-environment\n";
    let c = ok_with(
        yaml,
        &[
            (
                "base.env",
                "MODE=base\nLEVEL=1\nPRICE='$5'\nURL=\"http://${HOST}/x\"\nTOKEN=${API_TOKEN}\nBARE\n",
            ),
            ("prod.env", "LEVEL=2\n"),
        ],
    );
    let s = &c.services[0].spec;
    assert_eq!(env(s, "MODE"), "from-environment");
    assert_eq!(env(s, "LEVEL"), "2");
    assert_eq!(env(s, "PRICE"), "$$5", "a single-quoted $ is literal");
    assert_eq!(env(s, "URL"), "http://${HOST}/x");
    let secrets: Vec<(&str, &str)> = s
        .secrets
        .iter()
        .map(|r| (r.env.as_str(), r.secret.as_str()))
        .collect();
    assert_eq!(secrets, [("TOKEN", "API_TOKEN"), ("BARE", "BARE")]);

    let (_, invalid) = rejected_with(yaml, &[("base.env", "OK=1\nnot valid\n"), ("prod.env", "")]);
    assert_eq!(
        invalid,
        ["services.web.env_file[0]: base.env line 2: expected KEY=VALUE"]
    );
}

#[test]
fn interpolation_keeps_templates_in_environment_and_refuses_the_rest() {
    let s = one("    image: app:1\n    environment:\n      DB_PASS: ${PG_PASSWORD}\n      API_KEY: $OPENAI_KEY\n      URL: postgres://u:${PW}@db/x\n      SHORT: http://$HOST:80\n      PRICE: costs $$5 or $ 6\n");
    assert_eq!(s.secrets.len(), 2);
    assert_eq!(env(&s, "URL"), "postgres://u:${PW}@db/x");
    assert_eq!(env(&s, "SHORT"), "http://${HOST}:80");
    assert_eq!(env(&s, "PRICE"), "costs $$5 or $$ 6");

    let (_, invalid) = rejected(
        "services:\n  web:\n    image: app:1\n    command: echo ${HOME}\n    environment:\n      DEF: ${X:-default}\n      REQ: ${Y?Y is required}\n      DASH: a-${Z-none}\n",
    );
    assert_eq!(invalid.len(), 4, "{invalid:?}");
    assert!(invalid[0]
        .starts_with("services.web.command: uses ${HOME}: Slipway does not interpolate here"));
    for (var, name) in [
        ("${X:-default}", "X"),
        ("${Y?Y is required}", "Y"),
        ("${Z-none}", "Z"),
    ] {
        assert!(
            invalid.iter().any(|i| i.contains(&format!(
                "{var} is not supported: Slipway resolves only ${{NAME}}"
            )) && i.contains(&format!("define {name} there"))),
            "{var}: {invalid:?}"
        );
    }
    // `$$` in a command is compose's escape for a literal `$`.
    let s = one("    image: app:1\n    command: [\"sh\", \"-c\", \"echo $$HOME\"]\n");
    assert_eq!(s.command.unwrap(), argv(&["sh", "-c", "echo $HOME"]));
    // compose_spec itself refuses `$` in image names, with the position.
    let e = convert_str("services:\n  web:\n    image: ${REGISTRY}/app:1\n").unwrap_err();
    assert!(matches!(e, ComposeError::Syntax(_)), "{e}");
    assert!(e.to_string().contains("line 3"), "{e}");
}

#[test]
fn healthchecks_become_exec_checks_unless_they_probe_local_http() {
    let hc = |test: &str| {
        let c = ok(&format!(
            "services:\n  db:\n    image: postgres:16\n    healthcheck:\n      test: {test}\n      interval: 5s\n      timeout: 2s\n      retries: 10\n      start_period: 1m30s\n"
        ));
        c.services[0].spec.health_check.clone().unwrap()
    };
    let h = hc(r#"["CMD", "pg_isready", "-U", "app"]"#);
    assert_eq!(
        h,
        HealthCheck {
            interval_secs: 5,
            timeout_secs: 2,
            retries: 10,
            start_period_secs: 90,
            ..HealthCheck::exec(argv(&["pg_isready", "-U", "app"]))
        }
    );
    let h = hc(r#"["CMD-SHELL", "redis-cli ping | grep PONG"]"#);
    assert_eq!(
        h.command.unwrap(),
        argv(&["/bin/sh", "-c", "redis-cli ping | grep PONG"])
    );
    let h = hc(r#"pg_isready -U "$${POSTGRES_USER}""#);
    assert_eq!(
        h.command.unwrap(),
        argv(&["/bin/sh", "-c", "pg_isready -U \"${POSTGRES_USER}\""])
    );
    // Remote or https URLs are not Slipway's HTTP probe: run as written.
    let h = hc(r#"["CMD", "curl", "-f", "https://localhost/health"]"#);
    assert_eq!(h.kind, HealthKind::Exec);
    for off in ["      test: [\"NONE\"]\n", "      disable: true\n"] {
        let c = ok(&format!(
            "services:\n  db:\n    image: postgres:16\n    healthcheck:\n{off}"
        ));
        assert_eq!(c.services[0].spec.health_check, None);
        has_note(&c, "services.db.healthcheck (disabled");
    }
    // Only a timeout: the interval is at least as long.
    let c = ok("services:\n  db:\n    image: postgres:16\n    healthcheck:\n      test: [\"CMD\", \"true\"]\n      timeout: 30s\n");
    let h = c.services[0].spec.health_check.clone().unwrap();
    assert_eq!((h.interval_secs, h.timeout_secs), (30, 30));
    let (_, invalid) = rejected(
        "services:\n  db:\n    image: postgres:16\n    healthcheck:\n      test: [\"CMD-SHELL\", \"pg_isready -U ${PGUSER}\"]\n",
    );
    assert!(
        invalid[0].starts_with("services.db.healthcheck.test: uses ${PGUSER}"),
        "{invalid:?}"
    );
}

#[test]
fn depends_on_list_and_map_forms_and_their_errors() {
    let c = ok("services:\n  web:\n    image: app:1\n    depends_on: [db, cache]\n  db:\n    image: postgres:16\n  cache:\n    image: redis:7\n");
    assert_eq!(
        svc(&c, "web").depends_on,
        BTreeMap::from([
            (name("cache"), DependsCondition::ServiceStarted),
            (name("db"), DependsCondition::ServiceStarted),
        ])
    );
    let c = ok("services:\n  web:\n    image: app:1\n    depends_on:\n      db:\n        condition: service_healthy\n        restart: true\n  db:\n    image: postgres:16\n    healthcheck:\n      test: [\"CMD\", \"pg_isready\"]\n");
    assert_eq!(
        svc(&c, "web").depends_on[&name("db")],
        DependsCondition::ServiceHealthy
    );
    has_note(&c, "services.web.depends_on.db.restart (");

    let (_, invalid) = rejected("services:\n  web:\n    image: app:1\n    depends_on: [db, web]\n  a:\n    image: app:1\n    depends_on: [b]\n  b:\n    image: app:1\n    depends_on:\n      a:\n        condition: service_started\n");
    assert_eq!(
        invalid,
        [
            "services.web.depends_on: db is not a service of this file (a dependency must be \
             imported with the services that wait for it)",
            "services.web.depends_on: web depends on itself",
            "depends_on: a cycle: a → b → a",
        ]
    );
    let (_, invalid) = rejected("services:\n  a:\n    image: app:1\n    depends_on: [b]\n  b:\n    image: app:1\n    depends_on: [c]\n  c:\n    image: app:1\n    depends_on: [a]\n");
    assert_eq!(invalid, ["depends_on: a cycle: a → b → c → a"]);
}

#[test]
fn a_service_waited_for_to_complete_is_a_job() {
    let base = "services:\n  api:\n    image: app:1\n    depends_on:\n      migrate:\n        condition: service_completed_successfully\n  migrate:\n    image: app:1\n    command: migrate\n";
    let c = ok(&format!(
        "{base}    restart: on-failure\n    healthcheck:\n      test: [\"CMD\", \"true\"]\n"
    ));
    let m = svc(&c, "migrate");
    assert_eq!(m.kind, ServiceKind::Job);
    assert_eq!(m.health_check, None);
    has_note(
        &c,
        "services.migrate.healthcheck (a job's exit status is its result)",
    );
    assert_eq!(svc(&c, "api").kind, ServiceKind::Service);

    let (_, invalid) = rejected(&format!(
        "{base}    restart: always\n    ports: [\"9000:9000\"]\n"
    ));
    assert_eq!(invalid.len(), 1, "{invalid:?}");
    assert!(invalid[0].starts_with("services.migrate.restart: migrate runs once per deployment"));
    let (_, invalid) = rejected(&format!("{base}    ports: [\"9000:9000\"]\n"));
    assert_eq!(
        invalid,
        ["services.migrate.ports: a job publishes no ports"]
    );
    let (_, invalid) = rejected(&format!("{base}    x-slipway-release-command: migrate\n"));
    assert!(
        invalid[0].starts_with("services.migrate.release_command: a job has no release command")
    );
    let (_, invalid) = rejected(&format!(
        "{base}  worker:\n    image: app:1\n    depends_on:\n      migrate:\n        condition: service_healthy\n"
    ));
    assert!(
        invalid[0].starts_with("services.worker.depends_on.migrate: migrate runs to completion"),
        "{invalid:?}"
    );
}

#[test]
fn update_config_order_is_the_rollout_strategy() {
    for (order, strategy) in [
        ("start-first", RolloutStrategy::StartFirst),
        ("stop-first", RolloutStrategy::StopFirst),
    ] {
        let s = one(&format!(
            "    image: app:1\n    deploy:\n      update_config:\n        order: {order}\n"
        ));
        assert_eq!(s.strategy, Some(strategy));
    }
    assert_eq!(one("    image: app:1\n").strategy, None);
    // A loopback TCP port cannot be held by two containers.
    let (_, invalid) = rejected("services:\n  db:\n    image: postgres:16\n    ports: [\"127.0.0.1:5432:5432\"]\n    deploy:\n      update_config:\n        order: start-first\n");
    assert!(
        invalid[0].starts_with("services.db.strategy: "),
        "{invalid:?}"
    );
}

#[test]
fn networks_merge_into_one_and_keep_their_aliases() {
    let c = ok("services:\n  api:\n    image: app:1\n    networks:\n      front:\n        aliases: [api-v1, backend]\n      back:\n        aliases: [backend]\n  db:\n    image: postgres:16\n    networks: [back]\nnetworks:\n  front:\n  back:\n    external: true\n");
    assert_eq!(svc(&c, "api").aliases, [name("api-v1"), name("backend")]);
    assert!(svc(&c, "db").aliases.is_empty());
    has_note(
        &c,
        "services.api.networks (the services of an environment share one network: front, back merged",
    );
    has_note(&c, "services.db.networks (");
    has_note(&c, "networks.front (");
    has_note(&c, "networks.back (");

    let (unsupported, invalid) = rejected("services:\n  api:\n    image: app:1\n    networks:\n      default:\n        aliases: [api.v1, db]\n        ipv4_address: 172.16.0.10\n  db:\n    image: postgres:16\n  host:\n    image: app:1\n    network_mode: host\n");
    assert_eq!(
        unsupported,
        [
            "services.api.networks.default.ipv4_address/ipv6_address (services reach each other \
             by name on the environment network: use the service name or an alias)",
            "services.host.network_mode (services run on the environment's network)",
        ]
    );
    assert_eq!(invalid.len(), 1, "{invalid:?}");
    assert!(invalid[0].starts_with("services.api.networks.default.aliases: alias \"api.v1\""));
    let (_, invalid) = rejected("services:\n  api:\n    image: app:1\n    networks:\n      default:\n        aliases: [db]\n  db:\n    image: postgres:16\n");
    assert_eq!(
        invalid,
        ["services.api.networks: alias db is the name of another service"]
    );
}

#[test]
fn loopback_ports_are_tcp_ports_and_others_go_through_the_proxy() {
    let s = one("    image: postgres:16\n    ports:\n      - \"127.0.0.1:15432:5432\"\n      - target: 9187\n        published: \"9187\"\n        host_ip: \"::1\"\n");
    assert_eq!(
        s.ports,
        [
            PortMapping {
                mode: PortMode::Tcp,
                host_ip: Some("127.0.0.1".parse().unwrap()),
                ..p(5432, Some(15432), Protocol::Tcp)
            },
            PortMapping {
                mode: PortMode::Tcp,
                host_ip: Some("::1".parse().unwrap()),
                ..p(9187, Some(9187), Protocol::Tcp)
            },
        ]
    );
    assert_eq!(s.effective_strategy(), RolloutStrategy::StopFirst);
    let s = one("    image: app:1\n    ports: [\"0.0.0.0:8080:8080\", \"8081:8081\"]\n");
    assert!(s
        .ports
        .iter()
        .all(|p| p.mode == PortMode::Http && p.host_ip.is_none()));
    let (_, invalid) = rejected(
        "services:\n  db:\n    image: postgres:16\n    ports: [\"127.0.0.1::5432\"]\n  api:\n    image: app:1\n    ports: [\"127.0.0.1:8080:8080\"]\n    deploy:\n      replicas: 3\n",
    );
    assert_eq!(
        invalid,
        [
            "services.db.ports[0]: a port bound on 127.0.0.1 needs its host port, e.g. \
             \"127.0.0.1:5432:5432\"",
            "services.api.replicas: a service that binds a `tcp` port runs one replica per host",
        ]
    );
}

#[test]
fn entrypoint_tmpfs_stop_grace_period_init_and_extra_hosts() {
    let s = one("    image: app:1\n    entrypoint: /docker-entrypoint.sh --verbose\n    tmpfs: /run\n    stop_grace_period: 1m30s\n    init: true\n    extra_hosts:\n      db.internal: 10.0.0.5\n      gw: host-gateway\n    volumes:\n      - type: tmpfs\n        target: /cache\n        tmpfs:\n          size: 10m\n");
    assert_eq!(
        s.entrypoint.unwrap(),
        argv(&["/docker-entrypoint.sh", "--verbose"])
    );
    assert_eq!(
        s.tmpfs,
        [
            Tmpfs {
                target: "/cache".into(),
                size_mb: Some(10)
            },
            Tmpfs {
                target: "/run".into(),
                size_mb: None
            },
        ]
    );
    assert_eq!(s.stop_grace_period_secs, Some(90));
    assert!(s.init);
    assert_eq!(
        s.extra_hosts,
        [
            ExtraHost {
                host: "db.internal".into(),
                ip: "10.0.0.5".into()
            },
            ExtraHost {
                host: "gw".into(),
                ip: "host-gateway".into()
            },
        ]
    );
    let s = one("    image: app:1\n    entrypoint: [\"tini\", \"--\"]\n    tmpfs: [\"/tmp:size=100k\", /var/run]\n    extra_hosts: [\"a.example:1.2.3.4\", \"b=::1\"]\n");
    assert_eq!(s.entrypoint.unwrap(), argv(&["tini", "--"]));
    assert_eq!(s.tmpfs[0].size_mb, Some(1));
    assert_eq!(s.extra_hosts[1].ip, "::1");

    let (_, invalid) = rejected("services:\n  web:\n    image: app:1\n    entrypoint: []\n    extra_hosts: [\"x:not-an-ip\"]\n    tmpfs: [\"/tmp:size=lots\"]\n    volumes:\n      - /data\n");
    let paths: Vec<&str> = invalid
        .iter()
        .map(|i| i.split(": ").next().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "services.web.entrypoint",
            "services.web.volumes[0]",
            "services.web.tmpfs[0]",
            "services.web.extra_hosts.x",
        ],
        "{invalid:?}"
    );
}

#[test]
fn release_command_extension() {
    let s = one("    image: app:1\n    x-slipway-release-command: alembic upgrade head\n");
    let rc = s.release_command.unwrap();
    assert_eq!(rc.command, argv(&["alembic", "upgrade", "head"]));
    assert_eq!(rc.timeout_secs, ReleaseCommand::default_timeout());
    let s = one(
        "    image: app:1\n    x-slipway-release-command: [\"sh\", \"-c\", \"migrate && seed\"]\n",
    );
    assert_eq!(
        s.release_command.unwrap().command,
        argv(&["sh", "-c", "migrate && seed"])
    );
    let (unsupported, invalid) = rejected("services:\n  web:\n    image: app:1\n    x-slipway-release-command: {run: x}\n    x-slipway-relase-command: typo\n");
    assert_eq!(
        invalid,
        ["services.web.x-slipway-release-command: expected a string or a list of strings"]
    );
    assert_eq!(unsupported.len(), 1);
    assert!(unsupported[0]
        .starts_with("services.web.x-slipway-relase-command (unknown Slipway extension"));
    // Other extensions are ignored, as before.
    let c = ok("services:\n  web:\n    image: app:1\n    x-team: payments\n");
    has_note(&c, "services.web.x-team (extension)");
}

#[test]
fn merge_keys_and_anchors_are_applied() {
    let c = ok("x-common: &common\n  restart: unless-stopped\n  environment:\n    LOG: info\nservices:\n  a:\n    <<: *common\n    image: app:1\n  b:\n    <<: *common\n    image: app:2\n");
    assert_eq!(env(svc(&c, "a"), "LOG"), "info");
    assert_eq!(env(svc(&c, "b"), "LOG"), "info");
    // A mistake in such a file is still reported.
    let e = convert_str("x-c: &c\n  bogus: 1\nservices:\n  a:\n    <<: *c\n    image: app:1\n")
        .unwrap_err();
    assert!(matches!(e, ComposeError::Syntax(_)), "{e}");
    assert!(e.to_string().contains("bogus"), "{e}");
}

#[test]
fn refused_keys_carry_hints() {
    let (unsupported, _) = rejected("services:\n  web:\n    image: app:1\n    privileged: true\n    sysctls:\n      net.core.somaxconn: 1024\n    ulimits:\n      nofile: 65536\n    hostname: web1\n    dns: 8.8.8.8\n    stop_signal: SIGINT\n    shm_size: 1g\n");
    assert_eq!(unsupported.len(), 7, "{unsupported:?}");
    assert!(
        unsupported.iter().all(|u| u.contains(" (")),
        "{unsupported:?}"
    );
}
