//! Badges, loading and error placeholders.
use leptos::prelude::*;
use slipway_types::{
    api::{DeploymentState, HostStatus},
    ApiErrorBody,
};

#[component]
pub fn StateBadge(state: DeploymentState) -> impl IntoView {
    let label = state.as_str().replace('_', " ");
    view! {
        <span class=format!("badge badge-{}", state.as_str()) data-test="state-badge">
            {label}
        </span>
    }
}

/// `online` / `offline` / `pending` / `revoked`, coloured like deployment states.
#[component]
pub fn HostStatusBadge(status: HostStatus) -> impl IntoView {
    let (label, color) = host_status(status);
    view! {
        <span class=format!("badge {color} host-status host-status-{label}") data-test="host-status">
            {label}
        </span>
    }
}

pub fn host_status(s: HostStatus) -> (&'static str, &'static str) {
    match s {
        HostStatus::Pending => ("pending", "badge-queued"),
        HostStatus::Online => ("online", "badge-succeeded"),
        HostStatus::Offline => ("offline", "badge-failed"),
        HostStatus::Revoked => ("revoked", "badge-cancelled"),
    }
}

#[component]
pub fn Loading() -> impl IntoView {
    view! { <div class="loading" aria-busy="true"><span class="spinner"></span>"Loading…"</div> }
}

#[component]
pub fn ErrorBox(error: ApiErrorBody) -> impl IntoView {
    view! {
        <div class="alert alert-error" data-test="load-error">
            <strong>{error.error.as_str().replace('_', " ")}</strong>
            ": "
            {error.message}
        </div>
    }
}

/// `2026-11-23 19:27 UTC`. Written out by hand: chrono's `format` pulls its
/// whole strftime interpreter into the wasm.
pub fn fmt_time(t: &chrono::DateTime<chrono::Utc>) -> String {
    use chrono::{Datelike, Timelike};
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// `19:27:05`
pub fn fmt_clock(t: &chrono::DateTime<chrono::Utc>) -> String {
    use chrono::Timelike;
    format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
}

pub fn fmt_opt_time(t: &Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.as_ref().map(fmt_time).unwrap_or_else(|| "—".into())
}

/// `512 MiB`, `1.5 GiB`: binary units, one decimal from GiB up.
///
/// Integer arithmetic only: Rust's float formatting would add its whole
/// shortest/exact digit machinery to the wasm for two call sites.
pub fn fmt_bytes(b: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = KIB * 1024;
    const GIB: u64 = MIB * 1024;
    const TIB: u64 = GIB * 1024;
    if b >= TIB {
        format!("{} TiB", tenths(b, TIB))
    } else if b >= GIB {
        format!("{} GiB", tenths(b, GIB))
    } else if b >= MIB {
        format!("{} MiB", b / MIB)
    } else if b >= KIB {
        format!("{} KiB", b / KIB)
    } else {
        format!("{b} B")
    }
}

/// `n / unit` rounded to one decimal: `1.5` (`unit` ≤ 2^60, so no overflow;
/// u64 because u128 would add its own formatting and division code).
fn tenths(n: u64, unit: u64) -> String {
    let (mut whole, mut tenth) = (n / unit, ((n % unit) * 10 + unit / 2) / unit);
    if tenth == 10 {
        (whole, tenth) = (whole + 1, 0);
    }
    format!("{whole}.{tenth}")
}

/// A percentage with one decimal: `12.3 %` (`—` if not a finite number ≥ 0).
pub fn fmt_percent(p: f64) -> String {
    if !(p.is_finite() && p >= 0.0) {
        return "—".into();
    }
    let t = (p * 10.0).round() as u64;
    format!("{}.{} %", t / 10, t % 10)
}

/// Reads a plain decimal such as `0.5`, `2` or `.25` (no sign, no exponent)
/// into the nearest `f64`, as `str::parse` would: digits as an integer divided
/// by a power of ten, both exact in an `f64`, so the one rounding is the
/// division's. `None` for anything else or beyond 15 digits. Rust's float
/// parser would bring its tables (over 10 kB) into the wasm for one field.
pub fn parse_decimal(s: &str) -> Option<f64> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.len() + frac.len() == 0 || int.len() + frac.len() > 15 {
        return None;
    }
    let mut m = 0u64;
    for b in int.bytes().chain(frac.bytes()) {
        if !b.is_ascii_digit() {
            return None;
        }
        m = m * 10 + u64::from(b - b'0');
    }
    let scale = (0..frac.len()).fold(1.0f64, |p, _| p * 10.0);
    Some(m as f64 / scale)
}

/// CPUs as written in a spec: `0.5`, `2`, `1.25`, to Docker's resolution of
/// a billionth of a CPU, without trailing zeros.
pub fn fmt_cpus(c: f64) -> String {
    const NANO: u64 = 1_000_000_000;
    if !(c.is_finite() && c >= 0.0) {
        return "—".into();
    }
    let n = (c * NANO as f64).round() as u64;
    let (whole, frac) = (n / NANO, n % NANO);
    if frac == 0 {
        return whole.to_string();
    }
    let digits = format!("{frac:09}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_like_strftime() {
        use chrono::TimeZone;
        let t = chrono::Utc
            .with_ymd_and_hms(2026, 1, 3, 4, 5, 6)
            .single()
            .unwrap_or_default();
        assert_eq!(fmt_time(&t), t.format("%Y-%m-%d %H:%M UTC").to_string());
        assert_eq!(fmt_time(&t), "2026-01-03 04:05 UTC");
        assert_eq!(fmt_clock(&t), t.format("%H:%M:%S").to_string());
        assert_eq!(fmt_opt_time(&None), "—");
    }

    #[test]
    fn bytes_are_human() {
        assert_eq!(fmt_bytes(0), "0 B");
        assert_eq!(fmt_bytes(2048), "2 KiB");
        assert_eq!(fmt_bytes(512 * 1024 * 1024), "512 MiB");
        assert_eq!(fmt_bytes(3 * 1024 * 1024 * 1024 / 2), "1.5 GiB");
        assert_eq!(fmt_bytes(2 * 1024 * 1024 * 1024 * 1024), "2.0 TiB");
        assert_eq!(fmt_bytes(7 * 1024 * 1024 * 1024 / 4), "1.8 GiB");
        assert_eq!(fmt_bytes(u64::MAX), "16777216.0 TiB");
    }

    #[test]
    fn cpus_and_percentages_are_written_without_float_formatting() {
        for (c, text) in [
            (0.5, "0.5"),
            (2.0, "2"),
            (1.25, "1.25"),
            (0.000000001, "0.000000001"),
        ] {
            assert_eq!(fmt_cpus(c), text);
            assert_eq!(fmt_cpus(c), c.to_string());
        }
        assert_eq!(fmt_cpus(f64::NAN), "—");
        assert_eq!(fmt_percent(12.345), "12.3 %");
        assert_eq!(fmt_percent(0.0), "0.0 %");
        assert_eq!(fmt_percent(250.06), "250.1 %");
        assert_eq!(fmt_percent(-1.0), "—");
    }

    #[test]
    fn decimals_parse_like_the_standard_parser() {
        for text in [
            "0",
            "2",
            "0.5",
            "1.25",
            ".5",
            "5.",
            "0.1",
            "0.2",
            "0.3",
            "3.14159",
            "0.000000001",
            "123456789012345",
            "99999.9999999999",
            "0.7",
            "1.1",
            "64",
            "007.50",
        ] {
            assert_eq!(parse_decimal(text), text.parse::<f64>().ok(), "{text}");
        }
        for text in [
            "",
            ".",
            "-1",
            "+1",
            "1e3",
            "inf",
            "NaN",
            "1.2.3",
            "1,5",
            " 1",
            "0x1",
            "1234567890123456",
        ] {
            assert_eq!(parse_decimal(text), None, "{text:?}");
        }
    }
}
