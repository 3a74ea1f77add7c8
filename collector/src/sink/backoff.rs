//! How long to wait before retrying a write: exponential backoff with jitter, or what the
//! server asked for in `Retry-After` (seconds or an HTTP date), capped.

use std::time::Duration;

use time::OffsetDateTime;

/// The first retry waits about this long.
pub const INITIAL: Duration = Duration::from_millis(100);
/// No wait is longer than this, whatever the server asks.
pub const MAX: Duration = Duration::from_secs(30);

/// Exponential backoff: 100 ms, 200 ms, 400 ms … up to a cap; reset after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    cap: Duration,
}

impl Backoff {
    /// Backoff that never waits longer than `cap`.
    pub fn new(cap: Duration) -> Backoff {
        Backoff { next: INITIAL, cap }
    }

    /// The base wait for the next retry (before jitter), doubling each time.
    pub fn next_base(&mut self) -> Duration {
        let d = self.next.min(self.cap);
        self.next = (self.next * 2).min(self.cap);
        d
    }

    /// The next wait with "equal jitter" (half fixed, half random), so that many collectors
    /// that lost the same server do not come back in step. `unit` is a number in [0, 1).
    pub fn next_with_jitter(&mut self, unit: f64) -> Duration {
        let base = self.next_base();
        base / 2 + base.mul_f64(unit.clamp(0.0, 1.0) / 2.0)
    }

    /// After a success: start again from the initial wait.
    pub fn reset(&mut self) {
        self.next = INITIAL;
    }

    /// The wait for a retry the server asked for with `Retry-After`: its value, capped; the
    /// backoff's own next wait when the header is absent or unreadable.
    pub fn after(&mut self, retry_after: Option<&str>, now: OffsetDateTime, unit: f64) -> Duration {
        match retry_after.and_then(|v| parse_retry_after(v, now)) {
            Some(d) => {
                // Still advance, so that a server that keeps saying "0" is not hammered.
                let own = self.next_base();
                d.min(self.cap).max(own.min(INITIAL))
            }
            None => self.next_with_jitter(unit),
        }
    }
}

/// `Retry-After: 120` or `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT` (RFC 9110 §10.2.3); a
/// date in the past means now.
pub fn parse_retry_after(value: &str, now: OffsetDateTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let at = time::PrimitiveDateTime::parse(value, &format)
        .ok()?
        .assume_utc();
    let wait = at - now;
    Some(if wait.is_negative() {
        Duration::ZERO
    } else {
        Duration::try_from(wait).ok()?
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn waits_double_up_to_the_cap_and_reset_after_success() {
        let mut b = Backoff::new(Duration::from_millis(500));
        let waits: Vec<u128> = (0..5).map(|_| b.next_base().as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 500, 500]);
        b.reset();
        assert_eq!(b.next_base(), INITIAL);
    }

    #[test]
    fn jitter_stays_between_half_and_the_whole_base() {
        let mut b = Backoff::new(MAX);
        assert_eq!(b.next_with_jitter(0.0), Duration::from_millis(50));
        assert_eq!(b.next_with_jitter(0.999_999).as_millis(), 199);
    }

    #[test]
    fn retry_after_seconds_and_http_dates_are_honoured() {
        let now = datetime!(2015-10-21 07:27:00 UTC);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn the_servers_wait_is_used_but_capped() {
        let now = datetime!(2026-01-01 00:00:00 UTC);
        let mut b = Backoff::new(Duration::from_secs(10));
        assert_eq!(b.after(Some("3"), now, 0.5), Duration::from_secs(3));
        assert_eq!(b.after(Some("3600"), now, 0.5), Duration::from_secs(10));
        // A "retry now" still waits the initial backoff, never zero.
        assert_eq!(b.after(Some("0"), now, 0.5), INITIAL);
        // Without the header: the backoff's own (jittered) wait.
        let own = b.after(None, now, 0.0);
        assert!(
            own >= Duration::from_millis(50) && own <= Duration::from_secs(10),
            "{own:?}"
        );
    }
}
