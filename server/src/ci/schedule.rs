//! Deploy freezes and maintenance windows (pure; `now` is passed in).
//! A deployment may start when `now` is inside at least one maintenance
//! window (or the environment has none) and outside every freeze.
use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use slipway_types::api::{DeployFreeze, MaintenanceWindow};

/// Why a deployment cannot start now, and when it could.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frozen {
    pub reason: String,
    /// The first allowed moment within the next two weeks, if any.
    pub next_allowed: Option<DateTime<Utc>>,
}

impl Frozen {
    pub fn message(&self) -> String {
        match self.next_allowed {
            Some(t) => format!(
                "{}; next allowed time: {} (an admin may override with override_reason)",
                self.reason,
                t.to_rfc3339()
            ),
            None => format!(
                "{}; no allowed time in the next 14 days (an admin may override with override_reason)",
                self.reason
            ),
        }
    }
}

/// The windows' intervals that start on the days from `from_day` for `days` days.
fn window_intervals(
    windows: &[MaintenanceWindow],
    around: DateTime<Utc>,
    days: i64,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let mut out = Vec::new();
    let midnight = |t: DateTime<Utc>| {
        Utc.with_ymd_and_hms(t.year(), t.month(), t.day(), 0, 0, 0)
            .single()
            .unwrap_or(t)
    };
    // Start a day early: a window that began yesterday may run past midnight.
    let first = midnight(around) - Duration::days(1);
    for d in 0..=days {
        let day = first + Duration::days(d);
        let wd = day.weekday().num_days_from_monday();
        for w in windows {
            if !w.days.iter().any(|x| x.index() == wd) {
                continue;
            }
            let start = day + Duration::minutes(i64::from(w.start.minutes()));
            let mut end = day + Duration::minutes(i64::from(w.end.minutes()));
            if end <= start {
                end += Duration::days(1);
            }
            out.push((start, end));
        }
    }
    out
}

fn violation(
    windows: &[MaintenanceWindow],
    freezes: &[DeployFreeze],
    t: DateTime<Utc>,
) -> Option<String> {
    if let Some(f) = freezes.iter().find(|f| f.from <= t && t < f.to) {
        return Some(format!(
            "deploy freeze until {}: {}",
            f.to.to_rfc3339(),
            f.reason
        ));
    }
    if !windows.is_empty()
        && !window_intervals(windows, t, 2)
            .iter()
            .any(|(s, e)| *s <= t && t < *e)
    {
        return Some("outside the environment's maintenance windows".into());
    }
    None
}

/// `Ok(())` when a deployment may start at `now`.
pub fn check(
    windows: &[MaintenanceWindow],
    freezes: &[DeployFreeze],
    now: DateTime<Utc>,
) -> Result<(), Frozen> {
    let Some(reason) = violation(windows, freezes, now) else {
        return Ok(());
    };
    // Candidates: every window start and freeze end within two weeks.
    let horizon = now + Duration::days(14);
    let mut candidates: Vec<DateTime<Utc>> = window_intervals(windows, now, 15)
        .into_iter()
        .map(|(s, _)| s)
        .chain(freezes.iter().map(|f| f.to))
        .filter(|t| *t > now && *t <= horizon)
        .collect();
    candidates.sort();
    let next_allowed = candidates
        .into_iter()
        .find(|t| violation(windows, freezes, *t).is_none());
    Err(Frozen {
        reason,
        next_allowed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_types::api::{TimeOfDay, Weekday};

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    fn tod(s: &str) -> TimeOfDay {
        TimeOfDay::try_from(s.to_owned()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn window(days: &[Weekday], start: &str, end: &str) -> MaintenanceWindow {
        MaintenanceWindow {
            days: days.to_vec(),
            start: tod(start),
            end: tod(end),
        }
    }

    #[test]
    fn no_policy_allows_everything() {
        assert_eq!(check(&[], &[], at("2026-11-23T12:00:00Z")), Ok(()));
    }

    #[test]
    fn freezes_block_and_name_their_end() {
        let f = DeployFreeze {
            from: at("2026-12-20T00:00:00Z"),
            to: at("2027-01-04T00:00:00Z"),
            reason: "holidays".into(),
        };
        let freezes = [f];
        assert_eq!(check(&[], &freezes, at("2026-12-19T23:59:59Z")), Ok(()));
        let e = check(&[], &freezes, at("2026-12-24T10:00:00Z")).err();
        let e = e.unwrap_or_else(|| panic!("frozen"));
        assert!(e.reason.contains("holidays"));
        assert_eq!(e.next_allowed, Some(at("2027-01-04T00:00:00Z")));
        assert_eq!(check(&[], &freezes, at("2027-01-04T00:00:00Z")), Ok(()));
        assert!(e.message().contains("2027-01-04T00:00:00+00:00"));
    }

    #[test]
    fn windows_allow_only_inside() {
        // 2026-11-22 is a Sunday.
        let w = [window(&[Weekday::Sun], "02:00", "04:00")];
        assert_eq!(check(&w, &[], at("2026-11-22T02:00:00Z")), Ok(()));
        assert_eq!(check(&w, &[], at("2026-11-22T03:59:00Z")), Ok(()));
        let e = check(&w, &[], at("2026-11-22T04:00:00Z")).err();
        let e = e.unwrap_or_else(|| panic!("outside"));
        assert!(e.reason.contains("maintenance windows"));
        assert_eq!(e.next_allowed, Some(at("2026-11-29T02:00:00Z")));
        let e = check(&w, &[], at("2026-11-23T12:00:00Z")).err();
        assert_eq!(
            e.and_then(|e| e.next_allowed),
            Some(at("2026-11-29T02:00:00Z"))
        );
    }

    #[test]
    fn windows_past_midnight_and_freeze_inside_window() {
        // Friday 22:00 → Saturday 02:00.
        let w = [window(&[Weekday::Fri], "22:00", "02:00")];
        assert_eq!(check(&w, &[], at("2026-11-28T01:30:00Z")), Ok(()));
        assert!(check(&w, &[], at("2026-11-28T02:30:00Z")).is_err());
        // A freeze covering this Friday's window pushes the next time a week.
        let f = [DeployFreeze {
            from: at("2026-11-27T00:00:00Z"),
            to: at("2026-11-28T06:00:00Z"),
            reason: "black friday".into(),
        }];
        let e = check(&w, &f, at("2026-11-27T23:00:00Z")).err();
        assert_eq!(
            e.and_then(|e| e.next_allowed),
            Some(at("2026-12-04T22:00:00Z"))
        );
    }
}
