//! Durations as Istio's YAML writes them.
//!
//! Istio accepts protobuf Duration strings (`5s`, `0.5s`) and, through its YAML loader, Go's
//! `time.ParseDuration` forms (`1m`, `24h`, `1h30m`, `250ms`, `10us`). Values are kept with
//! nanosecond precision and their sign, so the validator can say "must be at least 1ms"
//! instead of a parse error for `-1s` or `0.1ms`.

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A signed duration with nanosecond precision, parsed from a Go/protobuf duration string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration {
    nanos: i64,
}

const NANOS_PER_MILLI: i64 = 1_000_000;
const NANOS_PER_SEC: i64 = 1_000_000_000;

impl Duration {
    /// Zero.
    pub const ZERO: Duration = Duration { nanos: 0 };

    /// A duration of `ms` milliseconds.
    pub const fn from_millis(ms: i64) -> Self {
        Duration {
            nanos: ms * NANOS_PER_MILLI,
        }
    }

    /// A duration of `s` seconds.
    pub const fn from_secs(s: i64) -> Self {
        Duration {
            nanos: s * NANOS_PER_SEC,
        }
    }

    /// A duration of `n` nanoseconds.
    pub const fn from_nanos(n: i64) -> Self {
        Duration { nanos: n }
    }

    /// Nanoseconds (may be negative).
    pub fn as_nanos(&self) -> i64 {
        self.nanos
    }

    /// True when the value is below zero.
    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// True when the value is exactly zero.
    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// The duration as a std duration; negative values clamp to zero.
    pub fn to_std(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.nanos.max(0) as u64)
    }

    /// Istio's `agent.ValidateDuration` rule: at least 1ms and a whole number of milliseconds.
    pub fn check_istio(&self) -> Result<(), String> {
        if self.nanos < NANOS_PER_MILLI {
            return Err(format!("duration must be at least 1ms, got {self}"));
        }
        if self.nanos % NANOS_PER_MILLI != 0 {
            return Err(format!(
                "duration must be a whole number of milliseconds, got {self}"
            ));
        }
        Ok(())
    }

    /// Parses a Go/protobuf duration string.
    pub fn parse(s: &str) -> Result<Self, String> {
        let orig = s;
        let s = s.trim();
        if s.is_empty() {
            return Err("empty duration".to_string());
        }
        let (neg, mut rest) = match s.as_bytes()[0] {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        if rest == "0" {
            return Ok(Duration::ZERO);
        }
        if rest.is_empty() {
            return Err(format!("invalid duration {orig:?}"));
        }
        let mut total: i128 = 0;
        while !rest.is_empty() {
            let num_end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(|| {
                    format!("invalid duration {orig:?}: missing unit (use ns, us, ms, s, m or h)")
                })?;
            let num = &rest[..num_end];
            if num.is_empty() || num == "." || num.matches('.').count() > 1 {
                return Err(format!("invalid duration {orig:?}"));
            }
            rest = &rest[num_end..];
            let unit_end = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let unit = &rest[..unit_end];
            rest = &rest[unit_end..];
            let scale: i128 = match unit {
                "ns" => 1,
                "us" | "µs" | "μs" => 1_000,
                "ms" => 1_000_000,
                "s" => 1_000_000_000,
                "m" => 60_000_000_000,
                "h" => 3_600_000_000_000,
                "" => {
                    return Err(format!(
                        "invalid duration {orig:?}: missing unit (use ns, us, ms, s, m or h)"
                    ))
                }
                other => {
                    return Err(format!(
                    "invalid duration {orig:?}: unknown unit {other:?} (use ns, us, ms, s, m or h)"
                ))
                }
            };
            let (int_part, frac_part) = match num.split_once('.') {
                Some((i, f)) => (i, f),
                None => (num, ""),
            };
            let int: i128 = if int_part.is_empty() {
                0
            } else {
                int_part
                    .parse()
                    .map_err(|_| format!("invalid duration {orig:?}: number too large"))?
            };
            total = total
                .checked_add(int.checked_mul(scale).ok_or("duration too large")?)
                .ok_or("duration too large")?;
            // Fractions are applied digit by digit so `0.000000999s` stays exact.
            let mut div: i128 = 1;
            for d in frac_part.bytes() {
                div *= 10;
                if div > 1_000_000_000_000_000_000 {
                    break;
                }
                total += (d - b'0') as i128 * scale / div;
            }
            if total > i64::MAX as i128 {
                return Err(format!("invalid duration {orig:?}: too large"));
            }
        }
        let nanos = if neg { -(total as i64) } else { total as i64 };
        Ok(Duration { nanos })
    }
}

impl fmt::Display for Duration {
    /// Canonical protobuf JSON form: seconds with up to 9 fractional digits, e.g. `1.5s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let neg = self.nanos < 0;
        let abs = self.nanos.unsigned_abs();
        let secs = abs / NANOS_PER_SEC as u64;
        let frac = abs % NANOS_PER_SEC as u64;
        if neg {
            f.write_str("-")?;
        }
        if frac == 0 {
            write!(f, "{secs}s")
        } else {
            let digits = format!("{frac:09}");
            write!(f, "{secs}.{}s", digits.trim_end_matches('0'))
        }
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"5s\", \"250ms\" or \"1m\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                Duration::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_and_proto_forms() {
        assert_eq!(Duration::parse("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(Duration::parse("0.5s").unwrap(), Duration::from_millis(500));
        assert_eq!(Duration::parse("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(Duration::parse("24h").unwrap(), Duration::from_secs(86400));
        assert_eq!(Duration::parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(
            Duration::parse("250ms").unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(
            Duration::parse("10us").unwrap(),
            Duration::from_nanos(10_000)
        );
        assert_eq!(
            Duration::parse("0.000000999s").unwrap(),
            Duration::from_nanos(999)
        );
        assert_eq!(Duration::parse("-1s").unwrap(), Duration::from_secs(-1));
        assert_eq!(Duration::parse("0").unwrap(), Duration::ZERO);
        assert_eq!(Duration::parse(".5s").unwrap(), Duration::from_millis(500));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "5", "5x", "s", "1..2s", "abc", "1s2", "9999999999999h"] {
            assert!(Duration::parse(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn istio_rule_requires_whole_millis() {
        assert!(Duration::from_millis(1).check_istio().is_ok());
        assert!(Duration::from_nanos(999_999).check_istio().is_err());
        assert!(Duration::from_nanos(1_500_000).check_istio().is_err());
        assert!(Duration::ZERO.check_istio().is_err());
        assert!(Duration::from_secs(-1).check_istio().is_err());
    }

    #[test]
    fn displays_canonically() {
        assert_eq!(Duration::from_millis(1500).to_string(), "1.5s");
        assert_eq!(Duration::from_secs(30).to_string(), "30s");
        assert_eq!(Duration::from_nanos(999).to_string(), "0.000000999s");
    }
}
