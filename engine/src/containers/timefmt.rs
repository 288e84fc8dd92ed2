//! Timestamps as Docker prints them: RFC 3339 with nanoseconds in UTC
//! (Go's RFC3339Nano trims trailing zeros), and Go's zero time for "never".

use chrono::{DateTime, SecondsFormat, Utc};

/// Go's zero `time.Time`, which Docker prints for times that never happened.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// `t` as Go's RFC3339Nano: fractional seconds without trailing zeros.
pub fn rfc3339_nano(t: DateTime<Utc>) -> String {
    let full = t.to_rfc3339_opts(SecondsFormat::Nanos, true);
    match full.split_once('.') {
        Some((secs, frac)) => {
            let digits = frac.trim_end_matches('Z').trim_end_matches('0');
            if digits.is_empty() {
                format!("{secs}Z")
            } else {
                format!("{secs}.{digits}Z")
            }
        }
        None => full,
    }
}

/// The current time, RFC3339Nano.
pub fn now() -> String {
    rfc3339_nano(Utc::now())
}

/// Parses an RFC 3339 time (any precision) or Go's zero time.
pub fn parse(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A `since`/`until` bound as Docker accepts it: RFC 3339, or Unix seconds
/// with an optional fraction.
pub fn parse_bound(text: &str) -> Option<DateTime<Utc>> {
    if let Some(t) = parse(text) {
        return Some(t);
    }
    let (secs, frac) = text.split_once('.').unwrap_or((text, "0"));
    let secs: i64 = secs.parse().ok()?;
    let nanos: u32 = format!("{frac:0<9}").get(..9)?.parse().ok()?;
    DateTime::from_timestamp(secs, nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanosecond_times_drop_trailing_zeros_like_go() -> Result<(), String> {
        let t = parse("2024-05-01T10:20:30.123400000Z").ok_or("parse")?;
        assert_eq!(rfc3339_nano(t), "2024-05-01T10:20:30.1234Z");
        let whole = parse("2024-05-01T10:20:30Z").ok_or("parse")?;
        assert_eq!(rfc3339_nano(whole), "2024-05-01T10:20:30Z");
        assert!(parse(ZERO_TIME).is_some());
        Ok(())
    }

    #[test]
    fn bounds_take_unix_seconds_too() -> Result<(), String> {
        let t = parse_bound("1714558830.5").ok_or("parse")?;
        assert_eq!(rfc3339_nano(t), "2024-05-01T10:20:30.5Z");
        assert_eq!(
            parse_bound("2024-05-01T10:20:30Z"),
            parse("2024-05-01T10:20:30Z")
        );
        assert!(parse_bound("yesterday").is_none());
        Ok(())
    }
}
