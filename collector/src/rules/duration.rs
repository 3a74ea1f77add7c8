//! Durations as rule packs spell them: a whole number and one unit, `"30s"`, `"10m"`, `"24h"`,
//! `"7d"`. Internally every time is Unix milliseconds, so durations are kept as whole
//! milliseconds too ([`Span`]) and never as floats.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A non-negative length of time in whole milliseconds.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Span {
    /// The length in milliseconds.
    pub millis: i64,
}

impl Span {
    /// No time at all.
    pub const ZERO: Span = Span { millis: 0 };

    /// A span of `millis` milliseconds.
    pub const fn from_millis(millis: i64) -> Span {
        Span { millis }
    }

    /// The same span as a [`Duration`].
    pub fn as_duration(self) -> Duration {
        Duration::from_millis(self.millis.max(0) as u64)
    }

    /// The span in minutes, for human-readable details.
    pub fn as_minutes_f64(self) -> f64 {
        self.millis as f64 / 60_000.0
    }
}

impl fmt::Display for Span {
    /// The largest unit that divides the span exactly, so `"10m"` prints as it was written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(i64, &str); 4] = [
            (86_400_000, "d"),
            (3_600_000, "h"),
            (60_000, "m"),
            (1_000, "s"),
        ];
        for (ms, unit) in UNITS {
            if self.millis != 0 && self.millis % ms == 0 {
                return write!(f, "{}{unit}", self.millis / ms);
            }
        }
        write!(f, "{}ms", self.millis)
    }
}

/// Why a string is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "duration {0:?} is invalid; write a whole number and one unit: ms, s, m, h or d (e.g. \"10m\")"
)]
pub struct DurationError(pub String);

/// Parses `"250ms"`, `"30s"`, `"10m"`, `"24h"` or `"7d"`.
pub fn parse_duration(s: &str) -> Result<Span, DurationError> {
    let bad = || DurationError(s.to_owned());
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = s.split_at(digits);
    if number.is_empty() {
        return Err(bad());
    }
    let n: i64 = number.parse().map_err(|_| bad())?;
    let factor = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    n.checked_mul(factor).map(Span::from_millis).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_each_unit() {
        assert_eq!(parse_duration("30s"), Ok(Span::from_millis(30_000)));
        assert_eq!(parse_duration("10m"), Ok(Span::from_millis(600_000)));
        assert_eq!(parse_duration("24h"), Ok(Span::from_millis(86_400_000)));
        assert_eq!(parse_duration("2d"), Ok(Span::from_millis(172_800_000)));
        assert_eq!(parse_duration("250ms"), Ok(Span::from_millis(250)));
        assert_eq!(parse_duration("0s"), Ok(Span::ZERO));
    }

    #[test]
    fn malformed_durations_are_rejected() {
        for bad in [
            "",
            "10",
            "m",
            "1.5h",
            "-5m",
            "10 m",
            "10min",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_print_as_written() {
        assert_eq!(Span::from_millis(600_000).to_string(), "10m");
        assert_eq!(Span::from_millis(90_000).to_string(), "90s");
        assert_eq!(Span::ZERO.to_string(), "0ms");
    }
}
