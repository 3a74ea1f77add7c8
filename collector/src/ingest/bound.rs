//! Bounds on what rejected messages may cost: the dead-letter quota per source and day, and
//! the rate limit of the log lines that report rejections.
//!
//! A dead letter that is confirmed to its agent (it names a registered agent's seq) is the
//! only copy of that batch and is always kept. Every other dead letter (unknown agents, bad
//! MACs, bad topics, batches let go by the sequencer) is charged to its source: the registered
//! agent it names, or else the one shared source `unknown`, so that inventing agent names buys
//! no extra room. Past `ingest.dead_letter_quota_bytes` in a day (UTC) a message is only
//! counted.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use spotcheck_protocol::UnixMillis;

/// The source every dead letter not tied to a registered agent is charged to.
pub const UNKNOWN_SOURCE: &str = "unknown";

const DAY_MS: i64 = 86_400_000;

/// The quota and the log limit, shared by the source tasks.
#[derive(Debug)]
pub struct Bounds {
    /// Dead-letter bytes per source and day.
    pub quota: std::sync::Mutex<Quota>,
    /// Rejection log lines.
    pub log: std::sync::Mutex<LogLimit>,
}

impl Bounds {
    /// A quota of `quota_per_day` bytes per source; at most 10 log lines per rejection code
    /// a minute.
    pub fn new(quota_per_day: u64) -> Bounds {
        Bounds {
            quota: std::sync::Mutex::new(Quota::new(quota_per_day)),
            log: std::sync::Mutex::new(LogLimit::new(Duration::from_secs(60), 10)),
        }
    }

    /// Whether to log a rejection of `code` now.
    pub fn log(&self, code: &'static str) -> LogLine {
        match self.log.lock() {
            Ok(mut l) => l.allow(code, Instant::now()),
            Err(_) => LogLine::Log { suppressed: 0 },
        }
    }
}

/// Bytes of dead letters charged per source, for the current UTC day.
#[derive(Debug)]
pub struct Quota {
    per_day: u64,
    day: i64,
    used: HashMap<String, u64>,
}

impl Quota {
    /// A quota of `per_day` bytes per source and day.
    pub fn new(per_day: u64) -> Quota {
        Quota {
            per_day,
            day: i64::MIN,
            used: HashMap::new(),
        }
    }

    /// Charges `bytes` to `source`; `false` (and nothing charged) if that would exceed the
    /// source's quota for the day of `now`.
    pub fn charge(&mut self, source: &str, bytes: u64, now: UnixMillis) -> bool {
        let day = now.0.div_euclid(DAY_MS);
        if day != self.day {
            self.day = day;
            self.used.clear();
        }
        let used = self.used.entry(source.to_owned()).or_insert(0);
        if used.saturating_add(bytes) > self.per_day {
            return false;
        }
        *used += bytes;
        true
    }
}

/// What [`LogLimit::allow`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum LogLine {
    /// Log it, saying how many lines of this kind were suppressed since the last one logged.
    Log {
        /// Lines suppressed since the last one logged.
        suppressed: u64,
    },
    /// Do not log it (it is counted for the next line that is logged).
    Suppress,
}

/// At most `per_window` log lines per kind (a rejection code) in each `window`; the rest are
/// counted and the count is reported on the next line logged.
#[derive(Debug)]
pub struct LogLimit {
    window: Duration,
    per_window: u32,
    kinds: HashMap<&'static str, (Instant, u32, u64)>,
}

impl LogLimit {
    /// `per_window` lines per kind in each `window`.
    pub fn new(window: Duration, per_window: u32) -> LogLimit {
        LogLimit {
            window,
            per_window,
            kinds: HashMap::new(),
        }
    }

    /// Whether to log a line of `kind` now.
    pub fn allow(&mut self, kind: &'static str, now: Instant) -> LogLine {
        let (start, logged, suppressed) = self.kinds.entry(kind).or_insert((now, 0, 0));
        if now.duration_since(*start) >= self.window {
            *start = now;
            *logged = 0;
        }
        if *logged < self.per_window {
            *logged += 1;
            LogLine::Log {
                suppressed: std::mem::take(suppressed),
            }
        } else {
            *suppressed += 1;
            LogLine::Suppress
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_gets_its_quota_per_day_and_no_more() {
        let mut q = Quota::new(100);
        let day = UnixMillis(5 * DAY_MS + 1);
        assert!(q.charge(UNKNOWN_SOURCE, 60, day));
        assert!(!q.charge(UNKNOWN_SOURCE, 60, day), "over the quota");
        assert!(q.charge(UNKNOWN_SOURCE, 40, day), "what is left still fits");
        assert!(q.charge("a1", 100, day), "each source has its own");
        assert!(
            q.charge(UNKNOWN_SOURCE, 60, UnixMillis(6 * DAY_MS)),
            "a new day"
        );
    }

    #[test]
    fn repeated_lines_are_limited_and_the_suppressed_are_counted() {
        let mut l = LogLimit::new(Duration::from_secs(60), 2);
        let t = Instant::now();
        assert_eq!(l.allow("bad_json", t), LogLine::Log { suppressed: 0 });
        assert_eq!(l.allow("bad_json", t), LogLine::Log { suppressed: 0 });
        for _ in 0..5 {
            assert_eq!(l.allow("bad_json", t), LogLine::Suppress);
        }
        assert_eq!(l.allow("bad_mac", t), LogLine::Log { suppressed: 0 });
        let later = t + Duration::from_secs(61);
        assert_eq!(l.allow("bad_json", later), LogLine::Log { suppressed: 5 });
    }
}
