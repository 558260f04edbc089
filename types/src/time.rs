//! Timestamps on the wire: RFC 3339 text in UTC, `2026-11-23T19:27:00.123Z`.
//!
//! Every `DateTime<Utc>` field of the contract goes through [`rfc3339`] (or
//! [`rfc3339_opt`] for an `Option`). The text is exactly what chrono's own
//! serde support writes (fraction of 0, 3, 6 or 9 digits, `Z`); reading is a
//! small strict parser instead of chrono's general one, which the dashboard
//! would otherwise carry in its wasm for this one format.
//!
//! Accepted: `YYYY-MM-DD`, `T` (or `t`, or a space), `HH:MM:SS`, an optional
//! fraction (1 to 9 digits are kept, more are truncated), then `Z`/`z` or an
//! offset `±HH:MM` (or `±HHMM`). A leap second `:60` is kept as chrono does.
use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta, Timelike, Utc};
use std::fmt::{self, Write};

/// Why a timestamp was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadTimestamp;

impl fmt::Display for BadTimestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not an RFC 3339 timestamp (like 2026-11-23T19:27:00Z)")
    }
}

impl std::error::Error for BadTimestamp {}

/// Parses an RFC 3339 timestamp (see the module docs for the accepted forms).
pub fn parse_rfc3339(s: &str) -> Result<DateTime<Utc>, BadTimestamp> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Result<u32, BadTimestamp> {
        let digits = b.get(from..from + len).ok_or(BadTimestamp)?;
        digits.iter().try_fold(0u32, |n, d| match d {
            b'0'..=b'9' => Ok(n * 10 + u32::from(d - b'0')),
            _ => Err(BadTimestamp),
        })
    };
    let at = |i: usize, allowed: &[u8]| -> Result<(), BadTimestamp> {
        match b.get(i) {
            Some(c) if allowed.contains(c) => Ok(()),
            _ => Err(BadTimestamp),
        }
    };
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    at(4, b"-")?;
    at(7, b"-")?;
    at(10, b"Tt ")?;
    let (hour, minute, mut second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    at(13, b":")?;
    at(16, b":")?;
    let mut i = 19;
    let mut nanos = 0u32;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while let Some(d @ b'0'..=b'9') = b.get(i) {
            if i - start < 9 {
                nanos = nanos * 10 + u32::from(d - b'0');
            }
            i += 1;
        }
        match i - start {
            0 => return Err(BadTimestamp),
            n @ 1..=8 => nanos *= 10u32.pow(9 - n as u32),
            _ => {}
        }
    }
    let offset_secs: i64 = match b.get(i) {
        Some(b'Z' | b'z') => {
            i += 1;
            0
        }
        Some(sign @ (b'+' | b'-')) => {
            let hours = num(i + 1, 2)?;
            let colon = usize::from(b.get(i + 3) == Some(&b':'));
            let minutes = num(i + 3 + colon, 2)?;
            if hours > 23 || minutes > 59 {
                return Err(BadTimestamp);
            }
            let secs = i64::from(hours * 3600 + minutes * 60);
            i += 5 + colon;
            if *sign == b'-' {
                -secs
            } else {
                secs
            }
        }
        _ => return Err(BadTimestamp),
    };
    if i != b.len() {
        return Err(BadTimestamp);
    }
    // chrono keeps a leap second as second 59 with a fraction of 1 s or more.
    if second == 60 {
        second = 59;
        nanos += 1_000_000_000;
    }
    let year = i32::try_from(year).map_err(|_| BadTimestamp)?;
    let date = NaiveDate::from_ymd_opt(year, month, day).ok_or(BadTimestamp)?;
    let time = NaiveTime::from_hms_nano_opt(hour, minute, second, nanos).ok_or(BadTimestamp)?;
    date.and_time(time)
        .checked_sub_signed(TimeDelta::seconds(offset_secs))
        .map(|t| t.and_utc())
        .ok_or(BadTimestamp)
}

/// Writes `t` as chrono's serde support does: `2026-11-23T19:27:00Z`, with a
/// fraction of 3, 6 or 9 digits when there is one.
pub fn format_rfc3339(t: &DateTime<Utc>) -> String {
    let mut out = String::with_capacity(32);
    // Writing to a String cannot fail.
    let _ = write_rfc3339(&mut out, t);
    out
}

fn write_rfc3339(out: &mut String, t: &DateTime<Utc>) -> fmt::Result {
    use chrono::Datelike;
    let year = t.year();
    if (0..=9999).contains(&year) {
        write!(out, "{year:04}")?;
    } else {
        write!(out, "{year:+05}")?;
    }
    let nanos = t.nanosecond();
    let (second, frac) = if nanos >= 1_000_000_000 {
        (60, nanos - 1_000_000_000)
    } else {
        (t.second(), nanos)
    };
    write!(
        out,
        "-{:02}-{:02}T{:02}:{:02}:{second:02}",
        t.month(),
        t.day(),
        t.hour(),
        t.minute()
    )?;
    if frac == 0 {
    } else if frac % 1_000_000 == 0 {
        write!(out, ".{:03}", frac / 1_000_000)?;
    } else if frac % 1_000 == 0 {
        write!(out, ".{:06}", frac / 1_000)?;
    } else {
        write!(out, ".{frac:09}")?;
    }
    out.write_char('Z')
}

struct Visitor;

impl serde::de::Visitor<'_> for Visitor {
    type Value = DateTime<Utc>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an RFC 3339 timestamp")
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
        parse_rfc3339(s).map_err(|_| E::invalid_value(serde::de::Unexpected::Str(s), &self))
    }
}

/// `#[serde(with = "crate::time::rfc3339")]` for a `DateTime<Utc>` field.
pub mod rfc3339 {
    use chrono::{DateTime, Utc};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_rfc3339(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        d.deserialize_str(super::Visitor)
    }
}

/// `#[serde(default, with = "crate::time::rfc3339_opt")]` for an
/// `Option<DateTime<Utc>>` field (`null` or absent is `None`).
pub mod rfc3339_opt {
    use chrono::{DateTime, Utc};
    use serde::{de, Deserializer, Serializer};
    use std::fmt;

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_some(&super::format_rfc3339(t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        d.deserialize_option(OptVisitor)
    }

    struct OptVisitor;

    impl<'de> de::Visitor<'de> for OptVisitor {
        type Value = Option<DateTime<Utc>>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an RFC 3339 timestamp or null")
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            super::rfc3339::deserialize(d).map(Some)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn chrono_text(t: &DateTime<Utc>) -> String {
        let json = serde_json::to_string(t).unwrap_or_default();
        json.trim_matches('"').to_owned()
    }

    #[test]
    fn writes_what_chrono_writes() {
        let base = Utc.with_ymd_and_hms(2026, 11, 23, 19, 27, 5).single();
        let base = base.unwrap_or_default();
        for nanos in [
            0,
            1,
            10,
            999,
            1_000,
            120_000,
            123_456,
            1_000_000,
            5_000_000,
            123_456_789,
            999_999_999,
        ] {
            let t = base + TimeDelta::nanoseconds(nanos);
            assert_eq!(format_rfc3339(&t), chrono_text(&t), "{nanos} ns");
        }
        for (y, mo, d) in [
            (1, 1, 1),
            (999, 12, 31),
            (1970, 1, 1),
            (2024, 2, 29),
            (9999, 12, 31),
        ] {
            let t = Utc
                .with_ymd_and_hms(y, mo, d, 0, 0, 0)
                .single()
                .unwrap_or_default();
            assert_eq!(format_rfc3339(&t), chrono_text(&t));
        }
    }

    #[test]
    fn reads_what_it_writes_and_what_chrono_reads() {
        for text in [
            "2026-11-23T19:27:05Z",
            "2026-11-23T19:27:05.1Z",
            "2026-11-23T19:27:05.123456Z",
            "2026-11-23T19:27:05.123456789Z",
            "2026-11-23t19:27:05z",
            "2026-11-23 19:27:05Z",
            "2026-11-23T19:27:05+01:00",
            "2026-11-23T19:27:05-05:30",
            "2026-11-23T19:27:05.5+0200",
            "2026-12-31T23:59:60Z",
            "0001-01-01T00:00:00Z",
        ] {
            let ours = parse_rfc3339(text);
            let theirs = text.parse::<DateTime<Utc>>().map_err(|_| BadTimestamp);
            assert_eq!(ours, theirs, "{text}");
            let t = ours.unwrap_or_default();
            assert_eq!(
                parse_rfc3339(&format_rfc3339(&t)),
                Ok(t),
                "{text} round trip"
            );
        }
        assert_eq!(
            parse_rfc3339("2026-11-23T19:27:05.1234567891Z"),
            parse_rfc3339("2026-11-23T19:27:05.123456789Z")
        );
    }

    #[test]
    fn refuses_what_is_not_a_timestamp() {
        for text in [
            "",
            "2026-11-23",
            "2026-11-23T19:27Z",
            "2026-11-23T19:27:05",
            "2026-11-23T19:27:05.Z",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-23T24:00:00Z",
            "2026-11-23T19:60:00Z",
            "2026-11-23T19:27:05+24:00",
            "2026-11-23T19:27:05+01",
            "2026-11-23T19:27:05Z ",
            "+2026-11-23T19:27:05Z",
            "2026/11/23T19:27:05Z",
            "２026-11-23T19:27:05Z",
        ] {
            assert_eq!(parse_rfc3339(text), Err(BadTimestamp), "{text:?}");
        }
    }

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Row {
        #[serde(with = "rfc3339")]
        at: DateTime<Utc>,
        #[serde(default, with = "rfc3339_opt")]
        until: Option<DateTime<Utc>>,
    }

    #[test]
    fn serde_helpers_match_chronos_own_format() {
        let at = Utc
            .with_ymd_and_hms(2026, 11, 23, 19, 27, 5)
            .single()
            .unwrap_or_default();
        let row = Row {
            at,
            until: Some(at + TimeDelta::milliseconds(250)),
        };
        let json = serde_json::to_value(&row).unwrap_or_default();
        assert_eq!(json["at"], serde_json::to_value(at).unwrap_or_default());
        assert_eq!(json["until"], "2026-11-23T19:27:05.250Z");
        let back: Row = serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, row);
        let absent: Row = serde_json::from_str(r#"{"at":"2026-11-23T19:27:05Z"}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(absent.until, None);
        let null: Row = serde_json::from_str(r#"{"at":"2026-11-23T19:27:05Z","until":null}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(null.until, None);
        let err = serde_json::from_str::<Row>(r#"{"at":"yesterday"}"#)
            .map(|_| ())
            .unwrap_err();
        assert!(err.to_string().contains("RFC 3339"), "{err}");
    }
}
