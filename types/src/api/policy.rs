//! Deploy policy: maintenance windows, freezes, approvals.
use super::{Deployment, Validate};
use crate::error::FieldError;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    /// Monday = 0.
    pub fn index(self) -> u32 {
        self as u32
    }
}

/// `HH:MM` (UTC), as minutes after midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TimeOfDay(u32);

impl TimeOfDay {
    pub fn minutes(self) -> u32 {
        self.0
    }
}

impl TryFrom<String> for TimeOfDay {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a time HH:MM (00:00–24:00)");
        let (h, m) = s.split_once(':').ok_or_else(bad)?;
        if h.len() != 2 || m.len() != 2 {
            return Err(bad());
        }
        let h: u32 = h.parse().map_err(|_| bad())?;
        let m: u32 = m.parse().map_err(|_| bad())?;
        if m >= 60 || h > 24 || (h == 24 && m != 0) {
            return Err(bad());
        }
        Ok(TimeOfDay(h * 60 + m))
    }
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for TimeOfDay {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TimeOfDay".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "HH:MM in UTC, 00:00–24:00.",
            "type": "string",
            "pattern": "^(?:(?:[01][0-9]|2[0-3]):[0-5][0-9]|24:00)$",
        })
    }
}

impl From<TimeOfDay> for String {
    fn from(t: TimeOfDay) -> String {
        format!("{:02}:{:02}", t.0 / 60, t.0 % 60)
    }
}

/// Deployments are allowed only inside one of the windows (when any exist).
/// A window whose end is not after its start runs past midnight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct MaintenanceWindow {
    pub days: Vec<Weekday>,
    pub start: TimeOfDay,
    pub end: TimeOfDay,
}

/// No deployments from `from` (inclusive) to `to` (exclusive).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct DeployFreeze {
    #[serde(with = "crate::time::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "DateTime<Utc>"))]
    pub from: DateTime<Utc>,
    #[serde(with = "crate::time::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "DateTime<Utc>"))]
    pub to: DateTime<Utc>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct EnvironmentPolicy {
    pub environment_id: Uuid,
    pub required_approvals: u8,
    pub approval_ttl_hours: u32,
    pub windows: Vec<MaintenanceWindow>,
    pub freezes: Vec<DeployFreeze>,
    pub updated_by: Option<String>,
    #[serde(default, with = "crate::time::rfc3339_opt")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<DateTime<Utc>>"))]
    pub updated_at: Option<DateTime<Utc>>,
}

pub const MAX_REQUIRED_APPROVALS: u8 = 5;
pub const DEFAULT_APPROVAL_TTL_HOURS: u32 = 24;
pub const MAX_APPROVAL_TTL_HOURS: u32 = 24 * 30;

/// PATCH: absent fields keep their value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdatePolicy {
    #[serde(default)]
    pub required_approvals: Option<u8>,
    #[serde(default)]
    pub approval_ttl_hours: Option<u32>,
    #[serde(default)]
    pub windows: Option<Vec<MaintenanceWindow>>,
    #[serde(default)]
    pub freezes: Option<Vec<DeployFreeze>>,
}

impl Validate for UpdatePolicy {
    fn validate(&self) -> Result<(), FieldError> {
        if self
            .required_approvals
            .is_some_and(|n| n > MAX_REQUIRED_APPROVALS)
        {
            return Err(FieldError::new(
                "required_approvals",
                format!("must be between 0 and {MAX_REQUIRED_APPROVALS}"),
            ));
        }
        if self
            .approval_ttl_hours
            .is_some_and(|h| h == 0 || h > MAX_APPROVAL_TTL_HOURS)
        {
            return Err(FieldError::new(
                "approval_ttl_hours",
                format!("must be between 1 and {MAX_APPROVAL_TTL_HOURS}"),
            ));
        }
        for (i, w) in self.windows.iter().flatten().enumerate() {
            if w.days.is_empty() {
                return Err(FieldError::new(
                    format!("windows[{i}].days"),
                    "name at least one day",
                ));
            }
            if w.start == w.end {
                return Err(FieldError::new(
                    format!("windows[{i}].end"),
                    "must differ from start",
                ));
            }
        }
        for (i, f) in self.freezes.iter().flatten().enumerate() {
            if f.to <= f.from {
                return Err(FieldError::new(
                    format!("freezes[{i}].to"),
                    "must be after from",
                ));
            }
            if f.reason.trim().is_empty() || f.reason.len() > 500 {
                return Err(FieldError::new(
                    format!("freezes[{i}].reason"),
                    "must be 1–500 characters",
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ApproveRequest {
    /// Admins only: queue it despite a freeze or outside the windows.
    #[serde(default)]
    pub override_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RejectRequest {
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Approval {
    pub approver: String,
    #[serde(with = "crate::time::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "DateTime<Utc>"))]
    pub at: DateTime<Utc>,
    #[serde(with = "crate::time::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "DateTime<Utc>"))]
    pub expires_at: DateTime<Utc>,
    /// False once `expires_at` has passed: it no longer counts.
    pub valid: bool,
}

/// A deployment awaiting approval, with the approvals it has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ApprovalRequest {
    pub deployment: Deployment,
    pub required_approvals: u8,
    pub approvals: Vec<Approval>,
}

impl Validate for ApproveRequest {}

impl Validate for RejectRequest {}
