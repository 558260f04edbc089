//! The state machine every deployment follows. Pure logic, no
//! IO; the API and the deploy engine drive it.
//!
//! ```text
//! awaiting_approval ──approve (enough)──▶ queued
//!   ├──reject──▶ rejected
//!   └──cancel──▶ cancelled
//! queued ──start──▶ running ──succeed──▶ succeeded
//!   │                  ├──fail──────▶ failed        (new release removed, old one serving)
//!   │                  ├──roll_back─▶ rolled_back   (switched, then reverted)
//!   ├──cancel──▶ cancelled ◀──cancel──┘
//!   └──dependency_failed──▶ failed   (a dependency of its batch did not succeed;
//!                                      it never started)
//! ```
use slipway_types::api::DeploymentState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeployEvent {
    Start,
    Succeed,
    Fail,
    RollBack,
    Cancel,
    /// The last required approval arrived.
    Approve,
    Reject,
    /// A deployment it waits for (its batch's dependency) ended without
    /// succeeding: it fails without starting.
    DependencyFailed,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a {from} deployment cannot {event}", from = from.as_str(), event = event_name(*event))]
pub struct TransitionError {
    pub from: DeploymentState,
    pub event: DeployEvent,
}

fn event_name(e: DeployEvent) -> &'static str {
    match e {
        DeployEvent::Start => "start",
        DeployEvent::Succeed => "succeed",
        DeployEvent::Fail => "fail",
        DeployEvent::RollBack => "be rolled back",
        DeployEvent::Cancel => "be cancelled",
        DeployEvent::Approve => "be approved",
        DeployEvent::Reject => "be rejected",
        DeployEvent::DependencyFailed => "fail for a dependency",
    }
}

pub fn transition(
    from: DeploymentState,
    event: DeployEvent,
) -> Result<DeploymentState, TransitionError> {
    use DeployEvent as E;
    use DeploymentState as S;
    match (from, event) {
        (S::Queued, E::Start) => Ok(S::Running),
        (S::Queued, E::DependencyFailed) => Ok(S::Failed),
        (S::Queued | S::Running | S::AwaitingApproval, E::Cancel) => Ok(S::Cancelled),
        (S::AwaitingApproval, E::Approve) => Ok(S::Queued),
        (S::AwaitingApproval, E::Reject) => Ok(S::Rejected),
        (S::Running, E::Succeed) => Ok(S::Succeeded),
        (S::Running, E::Fail) => Ok(S::Failed),
        (S::Running, E::RollBack) => Ok(S::RolledBack),
        _ => Err(TransitionError { from, event }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeployEvent as E;
    use DeploymentState as S;

    #[test]
    fn happy_path() {
        let s = transition(S::Queued, E::Start).and_then(|s| transition(s, E::Succeed));
        assert_eq!(s, Ok(S::Succeeded));
    }

    #[test]
    fn terminal_states_accept_nothing() {
        for s in S::ALL.into_iter().filter(|s| s.is_terminal()) {
            for e in [
                E::Start,
                E::Succeed,
                E::Fail,
                E::RollBack,
                E::Cancel,
                E::Approve,
                E::Reject,
                E::DependencyFailed,
            ] {
                assert!(transition(s, e).is_err(), "{s:?} + {e:?}");
            }
        }
    }

    #[test]
    fn queued_cannot_finish_without_running() {
        assert!(transition(S::Queued, E::Succeed).is_err());
        assert!(transition(S::Queued, E::Fail).is_err());
        assert_eq!(transition(S::Queued, E::Cancel), Ok(S::Cancelled));
        assert_eq!(
            transition(S::Succeeded, E::Cancel).map_err(|e| e.to_string()),
            Err("a succeeded deployment cannot be cancelled".into())
        );
    }

    #[test]
    fn approvals_gate_the_queue() {
        assert_eq!(transition(S::AwaitingApproval, E::Approve), Ok(S::Queued));
        assert_eq!(transition(S::AwaitingApproval, E::Reject), Ok(S::Rejected));
        assert_eq!(transition(S::AwaitingApproval, E::Cancel), Ok(S::Cancelled));
        assert!(transition(S::AwaitingApproval, E::Start).is_err());
        assert!(transition(S::Queued, E::Approve).is_err());
        assert!(transition(S::Queued, E::Reject).is_err());
        assert!(S::Rejected.is_terminal());
        assert!(!S::AwaitingApproval.is_terminal());
    }

    #[test]
    fn only_a_queued_deployment_fails_for_its_dependency() {
        assert_eq!(transition(S::Queued, E::DependencyFailed), Ok(S::Failed));
        for s in [S::AwaitingApproval, S::Running] {
            assert!(transition(s, E::DependencyFailed).is_err(), "{s:?}");
        }
        assert_eq!(
            transition(S::Running, E::DependencyFailed).map_err(|e| e.to_string()),
            Err("a running deployment cannot fail for a dependency".into())
        );
    }
}
