//! Go's `time.ParseDuration` syntax (`30s`, `1m30s`, `1.5h`, `250ms`), used by
//! HEALTHCHECK's interval flags.

use std::time::Duration;

/// Parses a duration; the flag says it was negative.
pub(crate) fn parse_go_duration(s: &str) -> Result<(bool, Duration), String> {
    let invalid = || format!("time: invalid duration {s:?}");
    let (negative, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if body == "0" {
        return Ok((negative, Duration::ZERO));
    }
    if body.is_empty() {
        return Err(invalid());
    }
    let mut total = 0f64;
    let mut rest = body;
    while !rest.is_empty() {
        let num_len = rest
            .char_indices()
            .take_while(|(_, c)| c.is_ascii_digit() || *c == '.')
            .count();
        if num_len == 0 {
            return Err(invalid());
        }
        let (num, tail) = rest.split_at(num_len);
        let n: f64 = num.parse().map_err(|_| invalid())?;
        let unit_len = tail
            .char_indices()
            .take_while(|(_, c)| !c.is_ascii_digit() && *c != '.')
            .map(|(_, c)| c.len_utf8())
            .sum::<usize>();
        let (unit, tail) = tail.split_at(unit_len);
        let nanos = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("time: missing unit in duration {s:?}")),
            _ => return Err(format!("time: unknown unit {unit:?} in duration {s:?}")),
        };
        total += n * nanos;
        rest = tail;
    }
    Ok((negative, Duration::from_nanos(total.round() as u64)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(
            parse_go_duration("30s"),
            Ok((false, Duration::from_secs(30)))
        );
        assert_eq!(
            parse_go_duration("1m30s"),
            Ok((false, Duration::from_secs(90)))
        );
        assert_eq!(
            parse_go_duration("1.5h"),
            Ok((false, Duration::from_secs(5400)))
        );
        assert_eq!(
            parse_go_duration("250ms"),
            Ok((false, Duration::from_millis(250)))
        );
        assert_eq!(parse_go_duration("-2s"), Ok((true, Duration::from_secs(2))));
        assert_eq!(parse_go_duration("0"), Ok((false, Duration::ZERO)));
        assert!(parse_go_duration("10").is_err());
        assert!(parse_go_duration("5x").is_err());
        assert!(parse_go_duration("").is_err());
    }
}
