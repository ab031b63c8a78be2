//! The Gateway API's `Duration` (GEP-2257): `^([0-9]{1,5}(h|m|s|ms)){1,4}$`.

/// The duration in milliseconds, or why the text is not a Gateway API duration.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let bad = || {
        format!("invalid duration {s:?}: expected 1 to 4 of <1-5 digits><h|m|s|ms>, e.g. 1h30m or 500ms (GEP-2257)")
    };
    let (mut rest, mut total, mut parts) = (s, 0u64, 0);
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 || digits > 5 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (1, 2)
        } else if rest.starts_with('h') {
            (3_600_000, 1)
        } else if rest.starts_with('m') {
            (60_000, 1)
        } else if rest.starts_with('s') {
            (1_000, 1)
        } else {
            return Err(bad());
        };
        rest = &rest[len..];
        total += n * unit;
        parts += 1;
    }
    if parts == 0 || parts > 4 {
        return Err(bad());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gep_2257_forms() {
        assert_eq!(parse_duration("1h"), Ok(3_600_000));
        assert_eq!(parse_duration("1h30m10s500ms"), Ok(5_410_500));
        assert_eq!(parse_duration("0s"), Ok(0));
        for bad in ["", "1", "1.5s", "123456s", "1h1h1h1h1h", "1d", "-1s", "1 s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
