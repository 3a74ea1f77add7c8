//! When a group speaks, after Alertmanager's dispatcher (`dispatch.go`'s aggregation
//! group): a group's first message waits `group_wait` after its first event, so what
//! arrives together goes together; later events wait until `group_interval` after the last
//! message; something already told is not told again within `repeat_interval` (routing
//! marks it suppressed; Alertmanager re-sends a firing alert's state every repeat interval,
//! Spotcheck's events are facts, so the interval is one of silence instead). A sensor
//! flapping around its threshold thus sends one message.

use std::time::Duration;

use super::config::{NotifyConfig, Route};

/// A route's timings, with the `[notify]` defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Before a group's first message.
    pub group_wait: Duration,
    /// Between a group's messages.
    pub group_interval: Duration,
    /// Before telling the same thing again.
    pub repeat_interval: Duration,
}

impl Timing {
    /// `route`'s timings.
    pub fn of(route: &Route, defaults: &NotifyConfig) -> Timing {
        let s = Duration::from_secs;
        Timing {
            group_wait: s(route.group_wait_s.unwrap_or(defaults.group_wait_s)),
            group_interval: s(route.group_interval_s.unwrap_or(defaults.group_interval_s)),
            repeat_interval: s(route
                .repeat_interval_s
                .unwrap_or(defaults.repeat_interval_s)),
        }
    }

    /// Whether a group whose oldest waiting event is from `first_ms` and whose last message
    /// went at `last_sent_ms` speaks at `now`.
    pub fn due(&self, first_ms: i64, last_sent_ms: Option<i64>, now: i64) -> bool {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        match last_sent_ms {
            None => now >= first_ms.saturating_add(ms(self.group_wait)),
            Some(last) => now >= last.saturating_add(ms(self.group_interval)),
        }
    }
}

/// The wait before attempt `attempt + 1` (1-based `attempt` just failed): `base · 2^(n−1)`,
/// at most `max`.
pub fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let factor = 1u32
        .checked_shl(attempt.saturating_sub(1).min(30))
        .unwrap_or(u32::MAX);
    base.saturating_mul(factor).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing {
        group_wait: Duration::from_secs(30),
        group_interval: Duration::from_secs(300),
        repeat_interval: Duration::from_secs(3600),
    };

    #[test]
    fn a_new_group_waits_group_wait_and_a_told_one_waits_group_interval() {
        assert!(!T.due(0, None, 29_999));
        assert!(T.due(0, None, 30_000));
        assert!(!T.due(500_000, Some(400_000), 699_999));
        assert!(T.due(500_000, Some(400_000), 700_000));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let b = |n| backoff(n, Duration::from_secs(2), Duration::from_secs(60));
        assert_eq!(b(1), Duration::from_secs(2));
        assert_eq!(b(2), Duration::from_secs(4));
        assert_eq!(b(5), Duration::from_secs(32));
        assert_eq!(b(6), Duration::from_secs(60));
        assert_eq!(b(100), Duration::from_secs(60));
    }
}
