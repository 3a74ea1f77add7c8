//! The publication deadline: a result is published within N days (20 by default) of being
//! recorded.
//!
//! Days are calendar days counted as whole 24-hour periods from the moment the result was
//! recorded (`tasks.resolved_ms`): DOMAIN.md could not confirm whether the national text means
//! calendar or working days, so the number is configuration and the rule stays simple. A
//! bureau that wants 20 working days sets about 28.

use serde::{Deserialize, Serialize};
use spotcheck_protocol::UnixMillis;

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// The configured deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deadline {
    /// Days from recording the result to publishing it.
    pub days: u32,
}

impl Default for Deadline {
    fn default() -> Deadline {
        Deadline { days: 20 }
    }
}

impl Deadline {
    /// When a result recorded at `resolved` must be published by.
    pub fn due(self, resolved: UnixMillis) -> Due {
        Due {
            resolved_ms: resolved.0,
            due_ms: resolved.0.saturating_add(i64::from(self.days) * DAY_MS),
        }
    }
}

/// One result's deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Due {
    /// When the result was recorded.
    pub resolved_ms: i64,
    /// The last moment at which publishing is still on time.
    pub due_ms: i64,
}

impl Due {
    /// Whether `now` is past the deadline (publishing exactly at `due_ms` is on time).
    pub fn overdue(self, now: UnixMillis) -> bool {
        now.0 > self.due_ms
    }

    /// Whole days left until the deadline: 0 on its last day, negative once overdue (−1 for
    /// up to a day late, and so on).
    pub fn days_left(self, now: UnixMillis) -> i64 {
        (self.due_ms - now.0).div_euclid(DAY_MS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000;

    #[test]
    fn the_default_deadline_is_twenty_days() {
        assert_eq!(Deadline::default().days, 20);
        assert_eq!(
            Deadline::default().due(UnixMillis(T0)).due_ms,
            T0 + 20 * DAY_MS
        );
    }

    #[test]
    fn publishing_on_the_deadline_is_on_time_and_one_millisecond_later_is_overdue() {
        let due = Deadline { days: 20 }.due(UnixMillis(T0));
        let at = UnixMillis(T0 + 20 * DAY_MS);
        assert!(!due.overdue(at));
        assert_eq!(due.days_left(at), 0);
        let late = UnixMillis(at.0 + 1);
        assert!(due.overdue(late));
        assert_eq!(due.days_left(late), -1);
    }

    #[test]
    fn days_left_counts_whole_days() {
        let due = Deadline { days: 20 }.due(UnixMillis(T0));
        assert_eq!(due.days_left(UnixMillis(T0)), 20);
        assert_eq!(due.days_left(UnixMillis(T0 + 1)), 19);
        assert_eq!(due.days_left(UnixMillis(T0 + DAY_MS)), 19);
        assert_eq!(due.days_left(UnixMillis(T0 + 20 * DAY_MS + DAY_MS)), -1);
        assert_eq!(due.days_left(UnixMillis(T0 + 20 * DAY_MS + DAY_MS + 1)), -2);
    }

    #[test]
    fn a_zero_day_deadline_is_due_at_once() {
        let due = Deadline { days: 0 }.due(UnixMillis(T0));
        assert!(!due.overdue(UnixMillis(T0)));
        assert!(due.overdue(UnixMillis(T0 + 1)));
    }
}
