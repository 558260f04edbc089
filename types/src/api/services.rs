//! Services and their spec (the container a service runs).
use super::{Validate, MAX_VALUE_BYTES};
use crate::error::FieldError;
use crate::{Capability, EnvVarName, ImageRef, Port, ResourceName};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PortMapping {
    /// Port the process listens on inside the container.
    pub container: Port,
    /// Port published on the host (served by the ingress proxy).
    #[serde(default)]
    pub published: Option<Port>,
    #[serde(default)]
    pub protocol: Protocol,
}

/// Inject the environment secret `secret` as the container env var `env`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    pub env: EnvVarName,
    pub secret: EnvVarName,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct VolumeMount {
    /// A named volume (DNS label) or an absolute host path.
    pub source: String,
    /// Absolute path inside the container.
    pub target: String,
    #[serde(default)]
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// HTTP path probed with GET, e.g. `/health`.
    pub path: String,
    pub port: Port,
    #[serde(default = "HealthCheck::default_interval")]
    pub interval_secs: u32,
    #[serde(default = "HealthCheck::default_timeout")]
    pub timeout_secs: u32,
    #[serde(default = "HealthCheck::default_retries")]
    pub retries: u32,
}

impl HealthCheck {
    fn default_interval() -> u32 {
        10
    }
    fn default_timeout() -> u32 {
        3
    }
    fn default_retries() -> u32 {
        3
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPU cores, e.g. 0.5.
    #[serde(default)]
    pub cpus: Option<f64>,
    #[serde(default)]
    pub memory_mb: Option<u32>,
}

/// Container hardening, as the seeds recommend (non-root user, read-only root
/// filesystem, dropped capabilities, no-new-privileges).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Hardening {
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default)]
    pub cap_drop: Vec<Capability>,
    #[serde(default)]
    pub cap_add: Vec<Capability>,
    #[serde(default = "default_true")]
    pub no_new_privileges: bool,
}

impl Default for Hardening {
    fn default() -> Self {
        Self {
            user: None,
            read_only: false,
            cap_drop: Vec::new(),
            cap_add: Vec::new(),
            no_new_privileges: true,
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_replicas() -> u32 {
    1
}

/// Everything needed to run a service; also the config snapshot of a release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub image: ImageRef,
    #[serde(default)]
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub ports: Vec<PortMapping>,
    #[serde(default)]
    pub env: BTreeMap<EnvVarName, String>,
    #[serde(default)]
    pub secrets: Vec<SecretRef>,
    #[serde(default)]
    pub volumes: Vec<VolumeMount>,
    #[serde(default)]
    pub health_check: Option<HealthCheck>,
    #[serde(default = "default_replicas")]
    pub replicas: u32,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default)]
    pub hardening: Hardening,
}

impl Validate for ServiceSpec {
    /// Checks that span several fields or bound sizes; single values are
    /// already checked by their types.
    fn validate(&self) -> Result<(), FieldError> {
        if let Some(cmd) = &self.command {
            if cmd.is_empty() || cmd.len() > 64 || cmd.iter().any(|a| a.len() > 4096) {
                return Err(FieldError::new(
                    "command",
                    "must have 1–64 arguments of at most 4096 bytes",
                ));
            }
        }
        if self.ports.len() > 32 {
            return Err(FieldError::new("ports", "at most 32 port mappings"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, p) in self.ports.iter().enumerate() {
            if let Some(h) = p.published {
                if !seen.insert((h, p.protocol as u8)) {
                    return Err(FieldError::new(
                        format!("ports[{i}].published"),
                        format!("port {h} is published twice"),
                    ));
                }
            }
        }
        if self.env.len() > 256 {
            return Err(FieldError::new("env", "at most 256 variables"));
        }
        for (k, v) in &self.env {
            if v.len() > MAX_VALUE_BYTES {
                return Err(FieldError::new(
                    format!("env.{k}"),
                    format!("value must be at most {MAX_VALUE_BYTES} bytes"),
                ));
            }
        }
        for (i, s) in self.secrets.iter().enumerate() {
            if self.env.contains_key(&s.env) {
                return Err(FieldError::new(
                    format!("secrets[{i}].env"),
                    format!("{} is also set as a plain env var", s.env),
                ));
            }
        }
        for (i, v) in self.volumes.iter().enumerate() {
            let named = crate::names::check_dns_label(&v.source).is_ok();
            if !named && !is_abs_path(&v.source) {
                return Err(FieldError::new(
                    format!("volumes[{i}].source"),
                    "must be a volume name (DNS label) or an absolute host path",
                ));
            }
            if !is_abs_path(&v.target) {
                return Err(FieldError::new(
                    format!("volumes[{i}].target"),
                    "must be an absolute path",
                ));
            }
        }
        if let Some(h) = &self.health_check {
            if !h.path.starts_with('/')
                || h.path.len() > 512
                || h.path.contains(char::is_whitespace)
            {
                return Err(FieldError::new(
                    "health_check.path",
                    "must start with '/' and contain no spaces",
                ));
            }
            if !(1..=3600).contains(&h.interval_secs) {
                return Err(FieldError::new(
                    "health_check.interval_secs",
                    "must be 1–3600",
                ));
            }
            if !(1..=300).contains(&h.timeout_secs) {
                return Err(FieldError::new(
                    "health_check.timeout_secs",
                    "must be 1–300",
                ));
            }
            if h.timeout_secs > h.interval_secs {
                return Err(FieldError::new(
                    "health_check.timeout_secs",
                    "must not exceed interval_secs",
                ));
            }
            if !(1..=50).contains(&h.retries) {
                return Err(FieldError::new("health_check.retries", "must be 1–50"));
            }
        }
        if !(1..=100).contains(&self.replicas) {
            return Err(FieldError::new("replicas", "must be 1–100"));
        }
        if let Some(c) = self.resources.cpus {
            if !(c.is_finite() && (0.01..=256.0).contains(&c)) {
                return Err(FieldError::new("resources.cpus", "must be 0.01–256"));
            }
        }
        if let Some(m) = self.resources.memory_mb {
            if !(6..=1_048_576).contains(&m) {
                return Err(FieldError::new("resources.memory_mb", "must be 6–1048576"));
            }
        }
        if let Some(u) = &self.hardening.user {
            let ok = !u.is_empty()
                && u.len() <= 64
                && u.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-:".contains(c));
            if !ok {
                return Err(FieldError::new(
                    "hardening.user",
                    "must be a user name or uid[:gid]",
                ));
            }
        }
        Ok(())
    }
}

fn is_abs_path(s: &str) -> bool {
    s.starts_with('/') && s.len() <= 1024 && !s.split('/').any(|c| c == "..") && !s.contains('\0')
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Service {
    pub id: Uuid,
    pub environment_id: Uuid,
    pub project_id: Uuid,
    pub name: ResourceName,
    pub spec: ServiceSpec,
    #[serde(with = "crate::time::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "DateTime<Utc>"))]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::time::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "DateTime<Utc>"))]
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NewService {
    pub name: ResourceName,
    pub spec: ServiceSpec,
}

/// Replace a service's name and/or spec (the spec is replaced whole).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateService {
    #[serde(default)]
    pub name: Option<ResourceName>,
    #[serde(default)]
    pub spec: Option<ServiceSpec>,
}

impl Validate for NewService {
    fn validate(&self) -> Result<(), FieldError> {
        self.spec.validate().map_err(|e| e.under("spec"))
    }
}

impl Validate for UpdateService {
    fn validate(&self) -> Result<(), FieldError> {
        match &self.spec {
            Some(spec) => spec.validate().map_err(|e| e.under("spec")),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ServiceSpec {
        serde_json::from_value(serde_json::json!({"image": "app:1"})).expect("minimal spec")
    }

    #[test]
    fn minimal_spec_gets_safe_defaults() {
        let s = spec();
        assert_eq!(s.replicas, 1);
        assert!(s.hardening.no_new_privileges);
        assert!(s.validate().is_ok());
    }

    #[test]
    fn spec_rejects_duplicate_published_ports() {
        let mut s = spec();
        let p = PortMapping {
            container: Port::try_from(80).expect("port"),
            published: Some(Port::try_from(8080).expect("port")),
            protocol: Protocol::Tcp,
        };
        s.ports = vec![p.clone(), p];
        assert_eq!(
            s.validate().map_err(|e| e.field),
            Err("ports[1].published".into())
        );
    }

    #[test]
    fn spec_rejects_bad_health_check_and_volumes() {
        let mut s = spec();
        s.health_check = Some(HealthCheck {
            path: "health".into(),
            port: Port::try_from(80).expect("port"),
            interval_secs: 10,
            timeout_secs: 3,
            retries: 3,
        });
        assert_eq!(
            s.validate().map_err(|e| e.field),
            Err("health_check.path".into())
        );
        let mut s = spec();
        s.volumes = vec![VolumeMount {
            source: "../etc".into(),
            target: "/data".into(),
            read_only: false,
        }];
        assert_eq!(
            s.validate().map_err(|e| e.field),
            Err("volumes[0].source".into())
        );
    }

    #[test]
    fn unknown_spec_fields_are_rejected() {
        let r: Result<ServiceSpec, _> =
            serde_json::from_value(serde_json::json!({"image": "app:1", "privileged": true}));
        assert!(r.is_err());
    }
}
