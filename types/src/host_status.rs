//! How [`HostStatus`] is spelled on the wire and in the store (the enum is
//! declared with the hosts API). The server compares and writes the host's
//! `status` column only through these, never through string literals.
use crate::api::HostStatus;

impl HostStatus {
    pub const ALL: [HostStatus; 4] = [
        HostStatus::Pending,
        HostStatus::Online,
        HostStatus::Offline,
        HostStatus::Revoked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HostStatus::Pending => "pending",
            HostStatus::Online => "online",
            HostStatus::Offline => "offline",
            HostStatus::Revoked => "revoked",
        }
    }

    /// The status spelled `s`; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|h| h.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_spelling_round_trips_and_matches_serde() -> Result<(), serde_json::Error> {
        for s in HostStatus::ALL {
            assert_eq!(HostStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_string(&s)?, format!("\"{}\"", s.as_str()));
        }
        assert_eq!(HostStatus::parse("Online"), None);
        assert_eq!(HostStatus::parse(""), None);
        Ok(())
    }
}
