//! How far one host's part of a deployment got (a `deployment_targets` row).
//! The engine writes it as each host is rolled out; reconciliation and the
//! dashboard read it.
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetState {
    /// Planned; the host has not been asked yet.
    Pending,
    /// The host is rolling out (or switching traffic to) the new release.
    Running,
    /// The host serves the new release.
    Switched,
    /// The host's rollout failed (the agent removed what it created).
    Failed,
    /// The host served the new release and was put back on the previous one.
    Reverted,
}

impl TargetState {
    pub const ALL: [TargetState; 5] = [
        TargetState::Pending,
        TargetState::Running,
        TargetState::Switched,
        TargetState::Failed,
        TargetState::Reverted,
    ];

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::Pending => "pending",
            TargetState::Running => "running",
            TargetState::Switched => "switched",
            TargetState::Failed => "failed",
            TargetState::Reverted => "reverted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for t in TargetState::ALL {
            assert_eq!(TargetState::parse(t.as_str()), Some(t));
            assert_eq!(
                serde_json::to_string(&t).ok(),
                Some(format!("\"{}\"", t.as_str()))
            );
        }
        assert_eq!(TargetState::parse("online"), None);
    }
}
