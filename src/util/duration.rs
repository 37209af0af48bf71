//! Durations in the stack file: Go-style `"90s"`, `"1m"`, `"1h30m"`, `"250ms"`.

use std::time::Duration;

/// Parses `"1h30m"`, `"10m"`, `"45s"`, `"250ms"` or `"0"`. Units: `ms`, `s`, `m`, `h`, `d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("invalid duration \"\": expected e.g. \"30s\", \"10m\" or \"1h30m\"".into());
    }
    let bad =
        || format!("invalid duration \"{text}\": expected e.g. \"30s\", \"10m\" or \"1h30m\"");
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            "d" => Duration::from_secs(86_400),
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        let part = unit
            .checked_mul(u32::try_from(n).map_err(|_| bad())?)
            .ok_or_else(bad)?;
        total = total.checked_add(part).ok_or_else(bad)?;
    }
    Ok(total)
}

/// Prints a duration the way the stack file writes it: `1h30m`, `10m`, `45s`, `250ms`, `0s`.
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    let mut out = String::new();
    let mut secs = d.as_secs();
    for (unit, size) in [("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    let ms = d.subsec_millis();
    if ms > 0 {
        out.push_str(&format!("{ms}ms"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_durations_parse_and_print_back() {
        for (text, secs, ms) in [
            ("1m", 60, 0),
            ("0s", 0, 0),
            ("0", 0, 0),
            ("1h30m", 5400, 0),
            ("250ms", 0, 250),
            ("1m30s500ms", 90, 500),
            ("2d", 172_800, 0),
        ] {
            let d = parse_duration(text).unwrap();
            assert_eq!(
                d,
                Duration::from_secs(secs) + Duration::from_millis(ms),
                "{text}"
            );
        }
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1s500ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn malformed_durations_are_refused_with_the_text() {
        for text in ["", "10", "m", "1x", "-1s", "1.5m", "s10"] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains("invalid duration"), "{text}: {err}");
        }
    }
}
