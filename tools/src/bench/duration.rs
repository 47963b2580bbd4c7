//! Parsing of durations typed on the command line: `30s`, `500ms`, `2m`, `1.5s`, or a bare
//! number of seconds. Pure; no I/O.

use std::time::Duration;

/// Longest duration accepted, s (a day: a longer benchmark is a typo).
pub const DURATION_MAX_SECS: u64 = 86_400;

/// Parses `text` as a duration; the error says what is accepted.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, unit_secs) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (t, 1.0)
    };
    let value: f64 = number.trim().parse().map_err(|_| {
        format!("{text:?} is not a duration: use a number with ms, s, m or h (e.g. 30s, 500ms)")
    })?;
    let secs = value * unit_secs;
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("{text:?}: a duration must be zero or positive"));
    }
    if secs > DURATION_MAX_SECS as f64 {
        return Err(format!(
            "{text:?}: longer than the {DURATION_MAX_SECS} s limit"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn refusals() {
        for bad in ["", "s", "abc", "-1s", "10x", "2d", "NaNs", "1e9s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }
}
