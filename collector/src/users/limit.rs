//! The login rate limit: failed logins counted per user name and per client address in
//! fixed windows. Over the limit, a login is refused with 429 before the password is checked.
//! Memory is bounded: each table holds at most [`Limits::max_keys`] keys; when full, expired
//! windows go first, then the oldest.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Failed logins per user name per window.
    pub per_name: u32,
    /// Failed logins per client address per window.
    pub per_addr: u32,
    /// The window.
    pub window: Duration,
    /// Keys kept per table.
    pub max_keys: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            per_name: 5,
            per_addr: 20,
            window: Duration::from_secs(15 * 60),
            max_keys: 10_000,
        }
    }
}

#[derive(Default)]
struct Table {
    entries: HashMap<String, (u32, Instant)>,
}

impl Table {
    fn count(&self, key: &str, now: Instant, window: Duration) -> u32 {
        match self.entries.get(key) {
            Some(&(n, start)) if now.duration_since(start) < window => n,
            _ => 0,
        }
    }

    fn retry_after(&self, key: &str, now: Instant, window: Duration) -> Duration {
        self.entries
            .get(key)
            .map(|&(_, start)| window.saturating_sub(now.duration_since(start)))
            .unwrap_or_default()
    }

    fn fail(&mut self, key: &str, now: Instant, window: Duration, max_keys: usize) {
        if !self.entries.contains_key(key) && self.entries.len() >= max_keys {
            self.entries
                .retain(|_, (_, start)| now.duration_since(*start) < window);
            if self.entries.len() >= max_keys {
                if let Some(oldest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (_, start))| *start)
                    .map(|(k, _)| k.clone())
                {
                    self.entries.remove(&oldest);
                }
            }
        }
        let e = self.entries.entry(key.to_owned()).or_insert((0, now));
        if now.duration_since(e.1) >= window {
            *e = (0, now);
        }
        e.0 += 1;
    }
}

/// The limiter, shared by every request.
#[derive(Default)]
pub struct LoginLimiter {
    limits: Limits,
    names: Mutex<Table>,
    addrs: Mutex<Table>,
}

impl LoginLimiter {
    /// A limiter with these limits.
    pub fn new(limits: Limits) -> LoginLimiter {
        LoginLimiter {
            limits,
            ..LoginLimiter::default()
        }
    }

    /// `Err(wait)` if this name or address has used up its failures.
    pub fn check(&self, name: &str, addr: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let w = self.limits.window;
        let names = self.names.lock().expect("limiter lock");
        if names.count(name, now, w) >= self.limits.per_name {
            return Err(names.retry_after(name, now, w));
        }
        drop(names);
        let addrs = self.addrs.lock().expect("limiter lock");
        if addrs.count(addr, now, w) >= self.limits.per_addr {
            return Err(addrs.retry_after(addr, now, w));
        }
        Ok(())
    }

    /// Counts a failed login.
    pub fn fail(&self, name: &str, addr: &str) {
        let now = Instant::now();
        let (w, max) = (self.limits.window, self.limits.max_keys);
        self.names
            .lock()
            .expect("limiter lock")
            .fail(name, now, w, max);
        self.addrs
            .lock()
            .expect("limiter lock")
            .fail(addr, now, w, max);
    }

    /// Keys held (names, addresses).
    pub fn len(&self) -> (usize, usize) {
        (
            self.names.lock().expect("limiter lock").entries.len(),
            self.addrs.lock().expect("limiter lock").entries.len(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_limited_after_its_failures_and_memory_stays_bounded() {
        let l = LoginLimiter::new(Limits {
            per_name: 3,
            per_addr: 1000,
            window: Duration::from_secs(60),
            max_keys: 100,
        });
        for _ in 0..3 {
            assert!(l.check("alice", "1.2.3.4").is_ok());
            l.fail("alice", "1.2.3.4");
        }
        let wait = l.check("alice", "5.6.7.8").unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(60));
        assert!(l.check("bob", "1.2.3.4").is_ok());
        for i in 0..1000 {
            l.fail(&format!("user{i}"), "9.9.9.9");
        }
        let (names, addrs) = l.len();
        assert!(names <= 100 && addrs <= 100, "{names} {addrs}");
    }

    #[test]
    fn an_address_is_limited_across_names() {
        let l = LoginLimiter::new(Limits {
            per_name: 1000,
            per_addr: 2,
            ..Limits::default()
        });
        l.fail("a", "10.0.0.1");
        l.fail("b", "10.0.0.1");
        assert!(l.check("c", "10.0.0.1").is_err());
        assert!(l.check("c", "10.0.0.2").is_ok());
    }
}
