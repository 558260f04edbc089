//! Settings: defaults < optional TOML file (`SLIPWAY_CONFIG`) < `SLIPWAY_*`
//! environment variables. Every key has the same name in both places
//! (`bind` ↔ `SLIPWAY_BIND`). Unknown keys and invalid values fail at start
//! with a message naming the setting.
use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf};

/// Every setting: (key, default, description). The README table mirrors this.
pub const SETTINGS: &[(&str, &str, &str)] = &[
    (
        "bind",
        "127.0.0.1:8080",
        "Address the HTTP server listens on",
    ),
    (
        "data_dir",
        "./data",
        "Directory for the SQLite database and the generated master key",
    ),
    (
        "database_url",
        "sqlite://<data_dir>/slipway.db",
        "SQLite file URL or postgres://user:pass@host:port/db",
    ),
    (
        "public_url",
        "http://<bind>",
        "URL users reach Slipway at; https:// makes cookies Secure",
    ),
    (
        "static_dir",
        "./static",
        "Directory of the built dashboard (index.html, pkg/)",
    ),
    (
        "master_key",
        "(generated into <data_dir>/master.key)",
        "Base64 of 32 random bytes encrypting secrets at rest",
    ),
    (
        "cors_origins",
        "(none)",
        "Comma-separated origins allowed to call the API from a browser",
    ),
    ("log_format", "json", "json or pretty"),
    (
        "log",
        "info",
        "tracing filter, e.g. info,slipway_server=debug",
    ),
    (
        "session_ttl_hours",
        "12",
        "Absolute lifetime of a login session",
    ),
    (
        "session_idle_minutes",
        "120",
        "A session unused this long expires",
    ),
    ("max_body_bytes", "1048576", "Largest accepted request body"),
    (
        "login_attempts_per_minute",
        "10",
        "Login attempts checked per client IP and per user name per minute (all replicas)",
    ),
    (
        "enroll_attempts_per_minute",
        "10",
        "Failed agent enrollments allowed per client IP per minute (all replicas)",
    ),
    (
        "oidc_max_session_age",
        "(none)",
        "Single sign-on sessions older than this (e.g. 8h, 30m, 90s) must log in through the provider again",
    ),
    ("db_max_connections", "16", "Connection pool size"),
    (
        "oidc_providers",
        "(none)",
        "JSON array of OpenID Connect providers (see README)",
    ),
    (
        "local_login",
        "true",
        "Allow user name + password login (first-run setup always works)",
    ),
    (
        "trusted_proxies",
        "(none)",
        "Comma-separated proxy IPs whose X-Forwarded-For/-Proto headers are believed",
    ),
    (
        "audit_witness_file",
        "(none)",
        "File outside data_dir to which the signed audit head is appended (for `slipway audit verify --witness`)",
    ),
    (
        "audit_witness_interval_seconds",
        "60",
        "How often the audit head is published to the witness when it moved",
    ),
];

/// One OpenID Connect provider. The redirect URI to register at the
/// provider is `<public_url>/auth/oidc/<id>/callback`.
#[derive(Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcProviderConfig {
    /// Short id used in URLs (a DNS label).
    pub id: String,
    /// Button text on the login page.
    pub name: String,
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// Scopes besides `openid`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// Claim used as the user name (falls back to preferred_username, email, sub).
    #[serde(default = "default_username_claim")]
    pub username_claim: String,
}

fn default_scopes() -> Vec<String> {
    vec!["profile".into(), "email".into(), "groups".into()]
}

fn default_username_claim() -> String {
    "preferred_username".into()
}

impl std::fmt::Debug for OidcProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcProvider")
            .field("id", &self.id)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

fn parse_providers(s: &str) -> Result<Vec<OidcProviderConfig>, ConfigError> {
    let list: Vec<OidcProviderConfig> =
        serde_json::from_str(s).map_err(|e| invalid("oidc_providers", e.to_string()))?;
    let mut ids = std::collections::BTreeSet::new();
    for p in &list {
        slipway_types::names::check_dns_label(&p.id)
            .map_err(|e| invalid("oidc_providers", format!("id {:?} {e}", p.id)))?;
        if !ids.insert(p.id.clone()) {
            return Err(invalid(
                "oidc_providers",
                format!("id {:?} is used twice", p.id),
            ));
        }
        if !(p.issuer.starts_with("https://") || p.issuer.starts_with("http://")) {
            return Err(invalid(
                "oidc_providers",
                format!("issuer of {:?} must be an http(s) URL", p.id),
            ));
        }
        if p.client_id.is_empty() || p.client_secret.is_empty() || p.name.is_empty() {
            return Err(invalid(
                "oidc_providers",
                format!("{:?} needs name, client_id and client_secret", p.id),
            ));
        }
    }
    Ok(list)
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown setting `{0}` (known: {known})", known = known_keys())]
    Unknown(String),
    #[error("invalid value for setting `{key}` ({env}): {message}", env = env_name(key))]
    Invalid { key: String, message: String },
    #[error("cannot read config file {path}: {message}")]
    File { path: String, message: String },
}

fn known_keys() -> String {
    SETTINGS.iter().map(|s| s.0).collect::<Vec<_>>().join(", ")
}

pub fn env_name(key: &str) -> String {
    format!("SLIPWAY_{}", key.to_ascii_uppercase())
}

#[derive(Clone)]
pub struct Settings {
    pub bind: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub public_url: String,
    pub static_dir: PathBuf,
    /// Never logged; see `Debug` below.
    pub master_key: Option<String>,
    pub cors_origins: Vec<String>,
    pub log_format: LogFormat,
    pub log: String,
    pub session_ttl_hours: i64,
    pub session_idle_minutes: i64,
    pub max_body_bytes: usize,
    pub login_attempts_per_minute: u32,
    pub enroll_attempts_per_minute: u32,
    /// `None`: OIDC sessions last as long as any other.
    pub oidc_max_session_age: Option<std::time::Duration>,
    pub db_max_connections: u32,
    pub oidc_providers: Vec<OidcProviderConfig>,
    pub local_login: bool,
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Where the audit head is published (`audit::witness`); never in `data_dir`.
    pub audit_witness_file: Option<PathBuf>,
    pub audit_witness_interval: std::time::Duration,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("bind", &self.bind)
            .field("data_dir", &self.data_dir)
            .field("database", &redact_url(&self.database_url))
            .field("public_url", &self.public_url)
            .field(
                "master_key",
                &self.master_key.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

/// `postgres://user:pw@host/db` → `postgres://user:***@host/db`
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..s + 3], user, &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

impl Settings {
    /// Reads the process environment and the optional `SLIPWAY_CONFIG` file.
    pub fn load() -> Result<Self, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("SLIPWAY_"))
            .collect();
        Self::from_sources(&env)
    }

    /// Builds settings from `SLIPWAY_*` variables (and the file they may name).
    pub fn from_sources(env: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let mut values: BTreeMap<String, String> = BTreeMap::new();
        if let Some(path) = env.get("SLIPWAY_CONFIG") {
            values.extend(read_file(path)?);
        }
        for (k, v) in env {
            let Some(key) = k.strip_prefix("SLIPWAY_") else {
                continue;
            };
            let key = key.to_ascii_lowercase();
            // Variables consumed by the CLI, the agent (`slipway agent`),
            // the test harness and the dashboard build (xtask), not settings.
            if matches!(key.as_str(), "config" | "admin_password" | "token" | "url")
                || key.starts_with("test_")
                || key.starts_with("agent_")
                || key.starts_with("wasm_")
            {
                continue;
            }
            if !SETTINGS.iter().any(|s| s.0 == key) {
                return Err(ConfigError::Unknown(k.clone()));
            }
            values.insert(key, v.clone());
        }
        Self::from_map(values)
    }

    fn from_map(mut v: BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let mut take = |k: &str| v.remove(k).filter(|s| !s.trim().is_empty());
        let bind: SocketAddr = parse(
            "bind",
            take("bind").unwrap_or_else(|| "127.0.0.1:8080".into()),
        )?;
        let data_dir = PathBuf::from(take("data_dir").unwrap_or_else(|| "./data".into()));
        let database_url = match take("database_url") {
            Some(u) => {
                if !(u.starts_with("sqlite:")
                    || u.starts_with("postgres://")
                    || u.starts_with("postgresql://"))
                {
                    return Err(invalid(
                        "database_url",
                        "must start with sqlite: or postgres://",
                    ));
                }
                u
            }
            None => format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("slipway.db").display()
            ),
        };
        let public_url = take("public_url").unwrap_or_else(|| format!("http://{bind}"));
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            return Err(invalid("public_url", "must start with http:// or https://"));
        }
        let public_url = public_url.trim_end_matches('/').to_owned();
        let static_dir = PathBuf::from(take("static_dir").unwrap_or_else(|| "./static".into()));
        let master_key = take("master_key");
        let cors_origins = take("cors_origins")
            .map(|s| {
                s.split(',')
                    .map(|o| o.trim().trim_end_matches('/').to_owned())
                    .filter(|o| !o.is_empty())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        for o in &cors_origins {
            if !(o.starts_with("http://") || o.starts_with("https://")) {
                return Err(invalid(
                    "cors_origins",
                    format!("{o:?} is not an http(s) origin"),
                ));
            }
        }
        let log_format = match take("log_format").as_deref() {
            None | Some("json") => LogFormat::Json,
            Some("pretty") => LogFormat::Pretty,
            Some(other) => {
                return Err(invalid(
                    "log_format",
                    format!("{other:?}: expected json or pretty"),
                ))
            }
        };
        let log = take("log").unwrap_or_else(|| "info".into());
        let session_ttl_hours = bounded(
            "session_ttl_hours",
            take("session_ttl_hours"),
            12,
            1,
            24 * 90,
        )?;
        let session_idle_minutes = bounded(
            "session_idle_minutes",
            take("session_idle_minutes"),
            120,
            1,
            60 * 24 * 90,
        )?;
        let max_body_bytes = bounded(
            "max_body_bytes",
            take("max_body_bytes"),
            1 << 20,
            1024,
            1 << 30,
        )? as usize;
        let login_attempts_per_minute = bounded(
            "login_attempts_per_minute",
            take("login_attempts_per_minute"),
            10,
            1,
            10_000,
        )? as u32;
        let enroll_attempts_per_minute = bounded(
            "enroll_attempts_per_minute",
            take("enroll_attempts_per_minute"),
            10,
            1,
            10_000,
        )? as u32;
        let oidc_max_session_age = take("oidc_max_session_age")
            .map(|s| parse_age(&s).map_err(|m| invalid("oidc_max_session_age", m)))
            .transpose()?;
        let db_max_connections = bounded(
            "db_max_connections",
            take("db_max_connections"),
            16,
            1,
            1000,
        )? as u32;
        let oidc_providers = match take("oidc_providers") {
            Some(s) => parse_providers(&s)?,
            None => Vec::new(),
        };
        let local_login = match take("local_login").as_deref() {
            None | Some("true") | Some("1") => true,
            Some("false") | Some("0") => false,
            Some(other) => {
                return Err(invalid(
                    "local_login",
                    format!("{other:?}: expected true or false"),
                ))
            }
        };
        let trusted_proxies = take("trusted_proxies")
            .map(|s| {
                s.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| parse::<std::net::IpAddr>("trusted_proxies", p.to_owned()))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();
        let audit_witness_file = take("audit_witness_file").map(PathBuf::from);
        if let Some(w) = &audit_witness_file {
            if inside(w, &data_dir) {
                return Err(invalid(
                    "audit_witness_file",
                    format!(
                        "{} is inside data_dir: a witness must be out of reach of whoever holds the data",
                        w.display()
                    ),
                ));
            }
        }
        let audit_witness_interval = std::time::Duration::from_secs(bounded(
            "audit_witness_interval_seconds",
            take("audit_witness_interval_seconds"),
            60,
            1,
            86_400,
        )? as u64);
        if let Some((k, _)) = v.into_iter().next() {
            return Err(ConfigError::Unknown(k));
        }
        Ok(Self {
            bind,
            data_dir,
            database_url,
            public_url,
            static_dir,
            master_key,
            cors_origins,
            log_format,
            log,
            session_ttl_hours,
            session_idle_minutes,
            max_body_bytes,
            login_attempts_per_minute,
            enroll_attempts_per_minute,
            oidc_max_session_age,
            db_max_connections,
            oidc_providers,
            local_login,
            trusted_proxies,
            audit_witness_file,
            audit_witness_interval,
        })
    }

    pub fn secure_cookies(&self) -> bool {
        self.public_url.starts_with("https://")
    }

    pub fn is_sqlite(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }
}

/// Whether `path` lies inside `dir`, compared as absolute paths with `.`
/// and `..` resolved (links are not followed, so neither needs to exist).
fn inside(path: &std::path::Path, dir: &std::path::Path) -> bool {
    fn normal(p: &std::path::Path) -> Option<PathBuf> {
        let mut out = PathBuf::new();
        for c in std::path::absolute(p).ok()?.components() {
            match c {
                std::path::Component::CurDir => {}
                std::path::Component::ParentDir => {
                    out.pop();
                }
                other => out.push(other),
            }
        }
        Some(out)
    }
    match (normal(path), normal(dir)) {
        (Some(p), Some(d)) => p.starts_with(d),
        _ => false,
    }
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

fn parse<T: std::str::FromStr>(key: &str, s: String) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    s.trim()
        .parse()
        .map_err(|e: T::Err| invalid(key, format!("{s:?}: {e}")))
}

fn bounded(
    key: &str,
    s: Option<String>,
    default: i64,
    min: i64,
    max: i64,
) -> Result<i64, ConfigError> {
    let n = match s {
        None => return Ok(default),
        Some(s) => parse::<i64>(key, s)?,
    };
    if (min..=max).contains(&n) {
        Ok(n)
    } else {
        Err(invalid(key, format!("{n} is outside {min}..={max}")))
    }
}

/// `90s`, `30m`, `8h`, `2d` (a bare number is seconds): 1 s to 90 days.
fn parse_age(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let err = || format!("{s:?}: expected e.g. 90s, 30m, 8h or 2d");
    let (num, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: u64 = num.parse().map_err(|_| err())?;
    let secs = match unit {
        's' => Some(n),
        'm' => n.checked_mul(60),
        'h' => n.checked_mul(3600),
        'd' => n.checked_mul(86_400),
        _ => None,
    }
    .ok_or_else(err)?;
    if !(1..=90 * 86_400).contains(&secs) {
        return Err(format!("{s:?} is outside 1s..=90d"));
    }
    Ok(std::time::Duration::from_secs(secs))
}

fn read_file(path: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let file_err = |message: String| ConfigError::File {
        path: path.into(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| file_err(e.to_string()))?;
    let mut out = BTreeMap::new();
    for (k, v) in table {
        if !SETTINGS.iter().any(|s| s.0 == k) {
            return Err(ConfigError::Unknown(format!("{k} (in {path})")));
        }
        let s = match v {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(a) if k == "oidc_providers" => {
                serde_json::to_string(&a).map_err(|e| invalid(&k, e.to_string()))?
            }
            toml::Value::Array(a) => a
                .into_iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| x.to_string())
                })
                .collect::<Vec<_>>()
                .join(","),
            other => return Err(invalid(&k, format!("unsupported TOML value {other}"))),
        };
        out.insert(k, s);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ages_take_a_unit() {
        let secs = |s: &str| parse_age(s).map(|d| d.as_secs());
        assert_eq!(secs("90s"), Ok(90));
        assert_eq!(secs("30m"), Ok(1800));
        assert_eq!(secs(" 8h "), Ok(28_800));
        assert_eq!(secs("2d"), Ok(172_800));
        assert_eq!(secs("45"), Ok(45));
        for bad in ["", "h", "0s", "8x", "-1h", "91d", "99999999999999999999d"] {
            assert!(parse_age(bad).is_err(), "{bad}");
        }
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults() {
        let s = Settings::from_sources(&env(&[])).expect("defaults load");
        assert_eq!(s.bind.to_string(), "127.0.0.1:8080");
        assert!(s.database_url.starts_with("sqlite://./data/slipway.db"));
        assert_eq!(s.public_url, "http://127.0.0.1:8080");
        assert!(!s.secure_cookies());
    }

    #[test]
    fn unknown_env_setting_is_named() {
        let e = Settings::from_sources(&env(&[("SLIPWAY_BIMD", "x")]))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("SLIPWAY_BIMD"), "{e}");
    }

    #[test]
    fn invalid_value_is_named() {
        let e = Settings::from_sources(&env(&[("SLIPWAY_BIND", "nope")]))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("SLIPWAY_BIND"), "{e}");
        let e = Settings::from_sources(&env(&[("SLIPWAY_MAX_BODY_BYTES", "1")]))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("max_body_bytes"), "{e}");
    }

    #[test]
    fn file_then_env() {
        let dir = std::env::temp_dir().join(format!("slipway-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let f = dir.join("slipway.toml");
        std::fs::write(&f, "bind = \"127.0.0.1:9000\"\nlog_format = \"pretty\"\n").expect("write");
        let p = f.display().to_string();
        let s = Settings::from_sources(&env(&[
            ("SLIPWAY_CONFIG", &p),
            ("SLIPWAY_LOG_FORMAT", "json"),
        ]))
        .expect("loads");
        assert_eq!(s.bind.port(), 9000);
        assert_eq!(s.log_format, LogFormat::Json);
        std::fs::write(&f, "bnd = 1\n").expect("write");
        assert!(matches!(
            Settings::from_sources(&env(&[("SLIPWAY_CONFIG", &p)])),
            Err(ConfigError::Unknown(_))
        ));
    }

    #[test]
    fn oidc_providers_are_parsed_and_checked() {
        let ok = r#"[{"id":"corp","name":"Corp SSO","issuer":"https://id.example.com","client_id":"slipway","client_secret":"s"}]"#;
        let s = Settings::from_sources(&env(&[("SLIPWAY_OIDC_PROVIDERS", ok)])).expect("loads");
        assert_eq!(s.oidc_providers[0].scopes, ["profile", "email", "groups"]);
        assert!(!format!("{:?}", s.oidc_providers[0]).contains("client_secret"));
        for bad in [
            "not json",
            r#"[{"id":"Corp","name":"x","issuer":"https://a","client_id":"c","client_secret":"s"}]"#,
            r#"[{"id":"corp","name":"x","issuer":"ftp://a","client_id":"c","client_secret":"s"}]"#,
            r#"[{"id":"corp","name":"x","issuer":"https://a","client_id":"c","client_secret":"s","extra":1}]"#,
        ] {
            let e = Settings::from_sources(&env(&[("SLIPWAY_OIDC_PROVIDERS", bad)]))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains("oidc_providers"), "{bad}: {e}");
        }
        let e = Settings::from_sources(&env(&[("SLIPWAY_LOCAL_LOGIN", "maybe")]))
            .err()
            .map(|e| e.to_string());
        assert!(e.unwrap_or_default().contains("local_login"));
    }

    #[test]
    fn audit_witness_must_be_outside_the_data_dir() {
        let e = Settings::from_sources(&env(&[
            ("SLIPWAY_DATA_DIR", "/srv/slipway"),
            (
                "SLIPWAY_AUDIT_WITNESS_FILE",
                "/srv/other/../slipway/./witness.log",
            ),
        ]))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(e.contains("audit_witness_file"), "{e}");
        let s = Settings::from_sources(&env(&[
            ("SLIPWAY_DATA_DIR", "/srv/slipway"),
            ("SLIPWAY_AUDIT_WITNESS_FILE", "/var/log/slipway-witness.log"),
        ]))
        .expect("outside is fine");
        assert_eq!(s.audit_witness_interval.as_secs(), 60);
    }

    #[test]
    fn database_passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:hunter2@db:5432/slipway"),
            "postgres://app:***@db:5432/slipway"
        );
    }
}
