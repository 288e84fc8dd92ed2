//! Human-readable sizes and durations, as the docker CLI prints them
//! (go-units `HumanSize` and `HumanDuration`).

/// Decimal units with three significant digits: `4.26MB`, `123kB`, `0B`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{}{}", three_significant(value), UNITS[unit])
}

/// Like Go's `%.3g` for values below 1000: trailing zeros trimmed.
fn three_significant(value: f64) -> String {
    let integer_digits = if value < 1.0 {
        1
    } else {
        (value.log10().floor() as usize) + 1
    };
    let decimals = 3usize.saturating_sub(integer_digits);
    let mut s = format!("{value:.decimals$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_owned();
    }
    s
}

/// `Less than a second`, `5 seconds`, `About a minute`, `3 hours`,
/// `2 weeks`, ...
pub fn human_duration(d: chrono::TimeDelta) -> String {
    let seconds = d.num_seconds();
    let minutes = d.num_minutes();
    let hours = d.num_hours();
    if seconds < 1 {
        "Less than a second".into()
    } else if seconds == 1 {
        "1 second".into()
    } else if seconds < 60 {
        format!("{seconds} seconds")
    } else if minutes == 1 {
        "About a minute".into()
    } else if minutes < 60 {
        format!("{minutes} minutes")
    } else if hours == 1 {
        "About an hour".into()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", hours / 24 / 365)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1000), "1kB");
        assert_eq!(human_size(4_261_888), "4.26MB");
        assert_eq!(human_size(12_345_678), "12.3MB");
        assert_eq!(human_size(123_456_789), "123MB");
        assert_eq!(human_size(1_500_000_000), "1.5GB");
    }

    #[test]
    fn durations() {
        let s = chrono::TimeDelta::seconds;
        assert_eq!(human_duration(s(0)), "Less than a second");
        assert_eq!(human_duration(s(1)), "1 second");
        assert_eq!(human_duration(s(30)), "30 seconds");
        assert_eq!(human_duration(s(60)), "About a minute");
        assert_eq!(human_duration(s(600)), "10 minutes");
        assert_eq!(human_duration(s(3600)), "About an hour");
        assert_eq!(human_duration(s(5 * 3600)), "5 hours");
        assert_eq!(human_duration(s(3 * 86400)), "3 days");
        assert_eq!(human_duration(s(21 * 86400)), "3 weeks");
        assert_eq!(human_duration(s(90 * 86400)), "3 months");
        assert_eq!(human_duration(s(800 * 86400)), "2 years");
    }
}
